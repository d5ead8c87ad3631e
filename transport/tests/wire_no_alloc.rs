//! The sans-IO packet path allocates nothing per frame once warmed up (DESIGN.md "The packet
//! path": no allocation per packet in steady state). Allocations are counted per thread.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use totem_transport::dedupe::Dedupe;
use totem_transport::frag::{fragments, Reassembler, ReassemblyConfig};
use totem_transport::heartbeat::{HeartbeatConfig, KnetTimerOverrides, LinkHeartbeat};
use totem_transport::policy::{LinkMode, LinkStatus, PeerPolicy};
use totem_transport::wire::{
    ClusterId, Fragment, FrameType, Header, MonoTime, PingBody, HEADER_LEN, MAX_LINKS, NONCE_LEN,
};

fn data_header(seq: u64, fragment: Fragment, payload_len: u16) -> Header {
    Header {
        frame_type: FrameType::Data,
        encrypted: true,
        key_id: 1,
        link_number: 0,
        cluster_id: ClusterId(7),
        source_node_id: 3,
        seq,
        fragment,
        payload_len,
        nonce: [9; NONCE_LEN],
    }
}

#[test]
fn the_counter_sees_allocations() {
    // Without this the tests below would pass vacuously if the counting allocator were absent.
    let info = allocation_counter::measure(|| {
        let boxed = std::hint::black_box(Box::new([0u8; 64]));
        drop(boxed);
    });
    assert_eq!(info.count_total, 1);
}

#[test]
fn header_codec_does_not_allocate() {
    let header = data_header(1, Fragment::WHOLE, 100);
    let mut frame = vec![0u8; header.frame_len()];
    let info = allocation_counter::measure(|| {
        for seq in 0..1000 {
            let header = data_header(seq, Fragment::WHOLE, 100);
            header.encode_into(&mut frame).unwrap();
            let (decoded, payload) = Header::decode_for_cluster(&frame, ClusterId(7)).unwrap();
            assert_eq!(decoded.seq, seq);
            assert_eq!(payload.len(), 100);
        }
    });
    assert_eq!(info.count_total, 0);
}

#[test]
fn fragment_dedupe_reassemble_steady_state_does_not_allocate() {
    let message: Vec<u8> = (0..200_000).map(|i| i as u8).collect();
    let mut reassembler = Reassembler::new(ReassemblyConfig::default());
    let mut dedupe = Dedupe::new();
    let mut frame = vec![0u8; HEADER_LEN + 1500];
    let mut seq = 0u64;
    let mut run = |message_id: u32,
                   reassembler: &mut Reassembler,
                   dedupe: &mut Dedupe,
                   frame: &mut [u8]|
     -> usize {
        let mut delivered = 0;
        for (fragment, piece) in fragments(&message, message_id, 1400).unwrap() {
            seq += 1;
            let header = Header {
                encrypted: false,
                key_id: 0,
                nonce: [0; NONCE_LEN],
                ..data_header(seq, fragment, piece.len() as u16)
            };
            let len = header.encode_frame_into(piece, frame).unwrap();
            // Each frame arrives twice (active mode over two links).
            for _ in 0..2 {
                let (h, payload) = Header::decode(&frame[..len]).unwrap();
                if !dedupe.accept(h.source_node_id, h.seq) {
                    continue;
                }
                let out = reassembler.push(MonoTime(1), h.source_node_id, h.fragment, payload);
                if let Some(done) = out.unwrap() {
                    assert_eq!(done.len(), message.len());
                    delivered += 1;
                }
            }
        }
        delivered
    };
    // Warm-up: the peer's window and slots are created, pooled buffers grow to the message size.
    for id in 0..3 {
        assert_eq!(run(id, &mut reassembler, &mut dedupe, &mut frame), 1);
    }
    let info = allocation_counter::measure(|| {
        for id in 3..20 {
            assert_eq!(run(id, &mut reassembler, &mut dedupe, &mut frame), 1);
        }
    });
    assert_eq!(info.count_total, 0, "{info:?}");
}

#[test]
fn heartbeat_and_policy_steady_state_do_not_allocate() {
    let config =
        HeartbeatConfig::from_token(Duration::from_millis(3000), &KnetTimerOverrides::default())
            .unwrap();
    let mut now = MonoTime(0);
    let mut hb = LinkHeartbeat::new(config, 2, 0, now);
    let mut policy = PeerPolicy::new(2, LinkMode::RoundRobin);
    let mut links = [LinkStatus::default(); MAX_LINKS];
    links[0] = LinkStatus {
        usable: true,
        suspect: false,
        priority: 1,
    };
    links[3] = LinkStatus {
        usable: true,
        suspect: false,
        priority: 1,
    };
    let step = |now: &mut MonoTime, hb: &mut LinkHeartbeat, policy: &mut PeerPolicy| {
        let next = hb.poll_timeout().unwrap();
        *now = (*now).max(next);
        hb.handle_timeout(*now);
        if let Some(ping) = hb.poll_ping() {
            let mut body = [0u8; PingBody::LEN];
            ping.encode_into(&mut body).unwrap();
            let echoed = PingBody::decode(&body).unwrap();
            hb.handle_pong(now.saturating_add(Duration::from_micros(300)), echoed);
        }
        while let Some(event) = hb.poll_event() {
            policy.set_suspect(
                0,
                matches!(event, totem_transport::heartbeat::LinkEvent::Suspect { .. }),
            );
        }
        assert!(!policy.select().is_empty());
    };
    policy.update(links);
    for _ in 0..100 {
        step(&mut now, &mut hb, &mut policy);
    }
    let info = allocation_counter::measure(|| {
        for _ in 0..1000 {
            step(&mut now, &mut hb, &mut policy);
        }
        assert!(hb.rtt_quantile(0.99).is_some());
    });
    assert_eq!(info.count_total, 0, "{info:?}");
    assert!(hb.is_up());
}
