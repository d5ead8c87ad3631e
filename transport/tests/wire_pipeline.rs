//! The pure packet path end to end, without sockets: fragment → frame encode → (links: loss,
//! duplication, reorder) → decode with the cluster check → dedupe → reassembly.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use totem_transport::dedupe::Dedupe;
use totem_transport::frag::{fragments, Reassembler, ReassemblyConfig};
use totem_transport::pmtud::{IpVersion, Pmtud, PmtudConfig};
use totem_transport::policy::{LinkMode, LinkStatus, PeerPolicy};
use totem_transport::wire::{
    ClusterId, FrameType, Header, MonoTime, WireError, MAX_LINKS, NONCE_LEN,
};

const SENDER: u32 = 1;

/// Discovers the data MTU of an Ethernet path (1500) the way the reactor would drive Pmtud.
fn ethernet_data_mtu() -> usize {
    let cfg = PmtudConfig {
        interval: Duration::from_secs(30),
        reply_timeout: Duration::from_millis(1500),
        ip_version: IpVersion::V4,
        encrypted: false,
    };
    let mut pmtud = Pmtud::new(cfg, 2, 0);
    let now = MonoTime(0);
    pmtud.handle_link_state(now, true);
    while let Some(probe) = pmtud.poll_probe() {
        if usize::from(probe.body.frame_len) + 28 > 1500 {
            pmtud.handle_send_error(now, probe.body.probe_id, Some(1500));
        } else {
            pmtud.handle_reply(now, probe.body);
        }
    }
    pmtud.data_mtu().unwrap()
}

/// Encodes `message` into unencrypted data frames for `links`, one copy per link.
fn frames_for(
    cluster: ClusterId,
    message: &[u8],
    message_id: u32,
    seq: &mut u64,
    links: &[u8],
    data_mtu: usize,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (fragment, piece) in fragments(message, message_id, data_mtu).unwrap() {
        for &link in links {
            let header = Header {
                frame_type: FrameType::Data,
                encrypted: false,
                key_id: 0,
                link_number: link,
                cluster_id: cluster,
                source_node_id: SENDER,
                seq: *seq,
                fragment,
                payload_len: piece.len() as u16,
                nonce: [0; NONCE_LEN],
            };
            let mut frame = vec![0u8; header.frame_len()];
            header.encode_frame_into(piece, &mut frame).unwrap();
            assert!(frame.len() + 28 <= 1500, "every frame fits the path MTU");
            out.push(frame);
        }
        *seq += 1;
    }
    out
}

#[test]
fn active_mode_delivers_each_message_once_across_links() {
    let cluster = ClusterId::from_cluster_name("pve");
    let data_mtu = ethernet_data_mtu();
    assert_eq!(data_mtu, 1500 - 28 - 48);

    let mut policy = PeerPolicy::new(2, LinkMode::Active);
    let mut links = [LinkStatus::default(); MAX_LINKS];
    for status in links.iter_mut().take(3) {
        *status = LinkStatus {
            usable: true,
            suspect: false,
            priority: 1,
        };
    }
    policy.update(links);
    let mask = policy.select();
    let chosen: Vec<u8> = mask.iter().collect();
    assert_eq!(chosen, [0, 1, 2]);

    let messages: Vec<Vec<u8>> = [10usize, 1400, 1452, 1453, 100_000, 1 << 20]
        .iter()
        .map(|&len| (0..len).map(|i| (i % 251) as u8).collect())
        .collect();
    let mut seq = 1_000;
    let mut wire = Vec::new();
    for (id, message) in messages.iter().enumerate() {
        wire.extend(frames_for(
            cluster, message, id as u32, &mut seq, &chosen, data_mtu,
        ));
    }
    // Reorder deterministically: interleave from both ends.
    let mut arrival = Vec::with_capacity(wire.len());
    let (mut lo, mut hi) = (0, wire.len());
    while lo < hi {
        hi -= 1;
        arrival.push(&wire[hi]);
        if lo < hi {
            arrival.push(&wire[lo]);
            lo += 1;
        }
    }

    let mut dedupe = Dedupe::new();
    let mut reassembler = Reassembler::new(ReassemblyConfig::default());
    let mut delivered = Vec::new();
    for datagram in arrival {
        let (header, payload) = Header::decode_for_cluster(datagram, cluster).unwrap();
        if !dedupe.accept(header.source_node_id, header.seq) {
            continue;
        }
        if let Some(message) = reassembler
            .push_frame(MonoTime(1), &header, payload)
            .unwrap()
        {
            delivered.push(message.to_vec());
        }
    }
    delivered.sort_by_key(|m| m.len());
    assert_eq!(delivered, messages);
    assert_eq!(dedupe.counters().duplicates, 2 * dedupe.counters().accepted);
    assert_eq!(reassembler.counters().duplicate_fragments, 0);
}

#[test]
fn frames_of_another_cluster_are_dropped_before_anything_else() {
    let ours = ClusterId::from_cluster_name("pve");
    let theirs = ClusterId::from_cluster_name("lab");
    let mut seq = 0;
    let frames = frames_for(theirs, b"hello", 0, &mut seq, &[0], 1400);
    let result = Header::decode_for_cluster(&frames[0], ours);
    assert_eq!(
        result.err(),
        Some(WireError::ForeignCluster {
            expected: ours.0,
            got: theirs.0
        })
    );
}
