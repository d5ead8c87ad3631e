//! totem-qnetd over TCP on loopback with totem-core's qdevice client: ffsplit, lms, many clusters
//! at once, the secure channel, dead-peer detection and the regain-quorum figure.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use totem_core::qdevice::wire::{DecisionAlgorithm, TieBreaker, Vote};
use totem_core::qdevice::{Phase, ServerConfig, Timing};
use totem_qnetd::channel::ChannelKey;
use totem_qnetd::runtime::{self, Options, RunningServer};

fn start(authkey: Option<ChannelKey>) -> RunningServer {
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    runtime::spawn(Options {
        listen,
        authkey,
        server: ServerConfig::default(),
    })
    .expect("bind")
}

#[test]
fn ffsplit_votes_follow_the_tie_breaker() {
    let server = start(None);
    let addr = server.local_addr();
    let low = ffsplit_two_nodes(addr, "ff-low", TieBreaker::LOWEST, None);
    assert_eq!(
        low,
        vec![vec![Vote::Ack, Vote::Ack], vec![Vote::Ack, Vote::Nack]]
    );
    let high = ffsplit_two_nodes(addr, "ff-high", TieBreaker::HIGHEST, None);
    assert_eq!(
        high,
        vec![vec![Vote::Ack, Vote::Ack], vec![Vote::Nack, Vote::Ack]]
    );
    assert_eq!(
        ffsplit_lone_node(addr, "ff-lone", None),
        vec![vec![Vote::Ack]]
    );
    server.shutdown();
}

#[test]
fn lms_largest_partition_keeps_the_vote() {
    let server = start(None);
    let observed = lms_three_nodes(server.local_addr(), "lms3", None);
    assert_eq!(
        observed,
        vec![vec![Vote::Ack; 3], vec![Vote::Ack, Vote::Ack, Vote::Nack]]
    );
    server.shutdown();
}

#[test]
fn many_clusters_at_once_without_configuration() {
    let server = start(None);
    let addr = server.local_addr();
    let mut all = Vec::new();
    for i in 0..5 {
        let name = format!("cluster-{i}");
        let members = [1, 2];
        for id in members {
            all.push(connect(
                addr,
                config(&name, id, DecisionAlgorithm::Ffsplit, TieBreaker::LOWEST),
                view(&members, ring(1, 4), &members),
                None,
            ));
        }
    }
    assert!(drive(&mut all, VOTE_WAIT, |c| c
        .iter()
        .all(|x| x.vote() == Vote::Ack)));
    server.shutdown();
}

#[test]
fn secure_channel_carries_votes_and_refuses_wrong_keys_and_plain_clients() {
    let key = ChannelKey::from_bytes(&[0x5a; 256]).expect("key");
    let server = start(Some(key.clone()));
    let addr = server.local_addr();
    assert_eq!(
        ffsplit_lone_node(addr, "sec", Some(&key)),
        vec![vec![Vote::Ack]]
    );

    let wrong = ChannelKey::from_bytes(&[0xa5; 256]).expect("key");
    let mut c = vec![connect(
        addr,
        config("sec2", 1, DecisionAlgorithm::Ffsplit, TieBreaker::LOWEST),
        view(&[1, 2], ring(1, 4), &[1]),
        Some(&wrong),
    )];
    drive(&mut c, Duration::from_secs(3), |c| c[0].closed.is_some());
    assert_ne!(c[0].vote(), Vote::Ack, "a wrong key must never get a vote");
    assert!(
        c[0].closed.is_some(),
        "the server closes a connection whose records fail"
    );

    // A plain corosync-style PREINIT to a secure server is dropped without any reply.
    let mut plain = TcpStream::connect(addr).expect("connect");
    plain
        .write_all(&[
            0, 0, 0, 0, 0, 14, 0, 0, 0, 4, 0, 0, 0, 1, 0, 1, 0, 2, b'c', b'1',
        ])
        .expect("write");
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    assert_eq!(
        plain.read(&mut buf).unwrap_or(0),
        0,
        "no reply, connection closed"
    );
    server.shutdown();
}

#[test]
fn dead_peer_detection_drops_a_silent_client_and_the_survivor_gets_the_vote() {
    let server = start(None);
    // Short timeouts for CI: timeout 2 s -> heartbeat 1.6 s -> qnetd drops after 2.4 s of silence.
    let timing = Timing::from_timeout_ms(2_000);
    let t = regain_after_peer_death(
        server.local_addr(),
        "dpd",
        timing,
        Duration::from_millis(300),
        Death::Silent,
    );
    assert!(
        t >= Duration::from_millis(300),
        "not before the membership change: {t:?}"
    );
    assert!(
        t < Duration::from_secs(5),
        "within the 2.4 s DPD after the last heartbeat: {t:?}"
    );
    println!(
        "FIGURE short timeouts (2 s): silent peer, quorum regained after {} ms",
        t.as_millis()
    );
    let t = regain_after_peer_death(
        server.local_addr(),
        "kill",
        timing,
        Duration::from_millis(300),
        Death::Killed,
    );
    assert!(
        t < Duration::from_secs(2),
        "a closed connection is noticed at once: {t:?}"
    );
    println!(
        "FIGURE short timeouts (2 s): killed peer, quorum regained after {} ms",
        t.as_millis()
    );
    server.shutdown();
}

/// The figure with corosync's default timeouts (10 s device timeout, 8 s heartbeat, 12 s DPD) and
/// Totem's default 2-node detection (token 3 s + consensus 3.6 s). Takes about a minute:
/// `cargo test -p totem-qnetd --test qnetd_tcp -- --ignored --nocapture`.
#[test]
#[ignore]
fn figure_default_timeouts_two_plus_one() {
    let server = start(None);
    let timing = Timing::default();
    let detection = Duration::from_millis(6_600);
    for (name, death) in [("killed", Death::Killed), ("silent", Death::Silent)] {
        let t = regain_after_peer_death(server.local_addr(), name, timing, detection, death);
        println!(
            "FIGURE default timeouts: {name} peer, quorum regained after {} ms",
            t.as_millis()
        );
        assert!(
            t >= detection && t < Duration::from_secs(20),
            "{name}: {t:?}"
        );
    }
    server.shutdown();
}

#[test]
fn client_refused_on_duplicate_node_id() {
    let server = start(None);
    let addr = server.local_addr();
    let members = [1, 2];
    let mut first = vec![connect(
        addr,
        config("dup", 1, DecisionAlgorithm::Ffsplit, TieBreaker::LOWEST),
        view(&members, ring(1, 4), &members),
        None,
    )];
    drive(&mut first, Duration::from_millis(500), |c| {
        c[0].phase() == Phase::Connected
    });
    let mut second = vec![connect(
        addr,
        config("dup", 1, DecisionAlgorithm::Ffsplit, TieBreaker::LOWEST),
        view(&members, ring(1, 4), &members),
        None,
    )];
    assert!(drive(&mut second, VOTE_WAIT, |c| c[0].closed.is_some()));
    assert!(
        second[0]
            .closed
            .as_deref()
            .is_some_and(|r| r.contains("DuplicateNodeId")),
        "{:?}",
        second[0].closed
    );
    server.shutdown();
}
