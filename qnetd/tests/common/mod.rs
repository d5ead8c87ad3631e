//! Scenarios run against any qnetd (totem-qnetd or Debian's corosync-qnetd) over TCP on loopback,
//! driving totem-core's qdevice client through `totem_qnetd::driver::TcpQdevice`.
#![allow(dead_code)] // each test binary uses a subset

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use totem_core::qdevice::wire::{DecisionAlgorithm, RingId, TieBreaker, Vote};
use totem_core::qdevice::{ClientConfig, ClusterView, Phase, Timing};
use totem_core::NodeId;
use totem_qnetd::channel::ChannelKey;
use totem_qnetd::driver::TcpQdevice;

/// Generous bound for a vote to arrive on loopback (votes take milliseconds).
pub(crate) const VOTE_WAIT: Duration = Duration::from_secs(10);

pub(crate) fn ring(node_id: NodeId, seq: u64) -> RingId {
    RingId { node_id, seq }
}

pub(crate) fn config(
    cluster: &str,
    node_id: NodeId,
    algorithm: DecisionAlgorithm,
    tb: TieBreaker,
) -> ClientConfig {
    let mut cfg = ClientConfig::new(cluster, node_id);
    cfg.algorithm = algorithm;
    cfg.tie_breaker = tb;
    cfg
}

pub(crate) fn view(config_nodes: &[NodeId], ring_id: RingId, members: &[NodeId]) -> ClusterView {
    ClusterView {
        config_nodes: config_nodes.to_vec(),
        config_version: Some(1),
        ring_id,
        members: members.to_vec(),
        quorate: true,
    }
}

pub(crate) fn connect(
    addr: SocketAddr,
    cfg: ClientConfig,
    view: ClusterView,
    key: Option<&ChannelKey>,
) -> TcpQdevice {
    TcpQdevice::connect(addr, cfg, view, key).expect("connect to qnetd")
}

/// Step every client round-robin until `done` holds or `timeout` passes.
pub(crate) fn drive(
    clients: &mut [TcpQdevice],
    timeout: Duration,
    done: impl Fn(&[TcpQdevice]) -> bool,
) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if done(clients) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        for c in clients.iter_mut() {
            if c.closed.is_none() {
                if let Err(e) = c.step() {
                    c.closed = Some(format!("i/o: {e}"));
                }
            }
        }
    }
}

fn settled(v: Vote) -> bool {
    matches!(v, Vote::Ack | Vote::Nack)
}

fn votes(clients: &[TcpQdevice]) -> Vec<Vote> {
    clients.iter().map(|c| c.vote()).collect()
}

/// What a scenario observed: the votes after each phase, per node.
pub(crate) type Observed = Vec<Vec<Vote>>;

/// ffsplit, 2-node cluster: both connect (both ACK), then a split (one ACK per tie breaker).
pub(crate) fn ffsplit_two_nodes(
    addr: SocketAddr,
    cluster: &str,
    tb: TieBreaker,
    key: Option<&ChannelKey>,
) -> Observed {
    let all = [1, 2];
    let mut clients: Vec<TcpQdevice> = all
        .iter()
        .map(|id| {
            connect(
                addr,
                config(cluster, *id, DecisionAlgorithm::Ffsplit, tb),
                view(&all, ring(1, 4), &all),
                key,
            )
        })
        .collect();
    let mut observed = Vec::new();
    assert!(
        drive(&mut clients, VOTE_WAIT, |c| c
            .iter()
            .all(|x| x.vote() == Vote::Ack)),
        "both nodes should get ACK, got {:?} (closed: {:?})",
        votes(&clients),
        clients.iter().map(|c| c.closed.clone()).collect::<Vec<_>>()
    );
    observed.push(votes(&clients));
    clients[0].set_membership(ring(1, 8), &[1]).expect("send");
    clients[1].set_membership(ring(2, 8), &[2]).expect("send");
    assert!(
        drive(&mut clients, VOTE_WAIT, |c| c
            .iter()
            .all(|x| settled(x.vote()))
            && c.iter().filter(|x| x.vote() == Vote::Ack).count() == 1),
        "split: one ACK expected, got {:?}",
        votes(&clients)
    );
    observed.push(votes(&clients));
    observed
}

/// ffsplit, 2-node cluster, one node alone: it gets the vote.
pub(crate) fn ffsplit_lone_node(
    addr: SocketAddr,
    cluster: &str,
    key: Option<&ChannelKey>,
) -> Observed {
    let mut clients = vec![connect(
        addr,
        config(cluster, 1, DecisionAlgorithm::Ffsplit, TieBreaker::LOWEST),
        view(&[1, 2], ring(1, 4), &[1]),
        key,
    )];
    assert!(
        drive(&mut clients, VOTE_WAIT, |c| settled(c[0].vote())),
        "no vote: {:?}",
        clients[0].closed
    );
    vec![votes(&clients)]
}

/// lms, 3-node cluster: all connect (all ACK); then {1,2} | {3}: the larger partition keeps it.
pub(crate) fn lms_three_nodes(
    addr: SocketAddr,
    cluster: &str,
    key: Option<&ChannelKey>,
) -> Observed {
    let all = [1, 2, 3];
    let mut clients: Vec<TcpQdevice> = all
        .iter()
        .map(|id| {
            connect(
                addr,
                config(cluster, *id, DecisionAlgorithm::Lms, TieBreaker::LOWEST),
                view(&all, ring(1, 4), &all),
                key,
            )
        })
        .collect();
    let mut observed = Vec::new();
    assert!(
        drive(&mut clients, VOTE_WAIT, |c| c
            .iter()
            .all(|x| x.vote() == Vote::Ack)),
        "lms: all ACK expected, got {:?}",
        votes(&clients)
    );
    observed.push(votes(&clients));
    clients[2].set_membership(ring(3, 8), &[3]).expect("send");
    clients[0]
        .set_membership(ring(1, 8), &[1, 2])
        .expect("send");
    clients[1]
        .set_membership(ring(1, 8), &[1, 2])
        .expect("send");
    assert!(
        drive(&mut clients, VOTE_WAIT, |c| c
            .iter()
            .all(|x| settled(x.vote()))),
        "lms split: votes did not settle: {:?}",
        votes(&clients)
    );
    observed.push(votes(&clients));
    observed
}

/// How the dead peer goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Death {
    /// Process killed: the kernel closes its TCP connection.
    Killed,
    /// Host lost: the connection stays open and silent; qnetd's dead-peer detection must notice.
    Silent,
}

/// 2+1 cluster (ffsplit): both nodes ACK; node 2 dies; Totem on node 1 needs `detection` to form
/// the new membership. Returns the time from the death until node 1's device votes ACK for the
/// new ring, i.e. until votequorum on node 1 is quorate again (1 node vote + 1 device vote of 3).
pub(crate) fn regain_after_peer_death(
    addr: SocketAddr,
    cluster: &str,
    timing: Timing,
    detection: Duration,
    death: Death,
) -> Duration {
    let all = [1, 2];
    let mut clients: Vec<TcpQdevice> = all
        .iter()
        .map(|id| {
            let mut cfg = config(
                cluster,
                *id,
                DecisionAlgorithm::Ffsplit,
                TieBreaker::HIGHEST,
            );
            cfg.timing = timing;
            connect(addr, cfg, view(&all, ring(1, 4), &all), None)
        })
        .collect();
    assert!(drive(&mut clients, VOTE_WAIT, |c| c
        .iter()
        .all(|x| x.vote() == Vote::Ack)));
    // Run a while so heartbeats flow, then node 2 dies at an arbitrary heartbeat phase.
    drive(
        &mut clients,
        Duration::from_millis(u64::from(timing.heartbeat_interval_ms) * 3 / 2),
        |_| false,
    );
    let mut node1 = clients.remove(0);
    let node2 = clients.remove(0);
    let died = Instant::now();
    let silent_peer = match death {
        Death::Killed => {
            node2.kill();
            None
        }
        Death::Silent => Some(node2), // kept open, never stepped again
    };
    node1.run_for(detection);
    node1.set_membership(ring(1, 8), &[1]).expect("send");
    let regained = node1.run_until(Duration::from_secs(60), |c| {
        c.polls
            .last()
            .is_some_and(|(_, r, cast)| *r == ring(1, 8) && *cast)
    });
    assert!(
        regained,
        "node 1 never regained the vote: {:?}, closed {:?}",
        node1.vote(),
        node1.closed
    );
    let at = node1
        .polls
        .last()
        .map(|(t, _, _)| *t)
        .unwrap_or_else(Instant::now);
    drop(silent_peer);
    assert_eq!(node1.phase(), Phase::Connected);
    at.duration_since(died)
}
