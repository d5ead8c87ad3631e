//! The qdevice client and the qnetd server logic talking in memory on a simulated clock: the
//! handshake, ffsplit and lms votes, heartbeats, dead-peer detection, and the 2+1 figure (how long
//! the surviving node of a 2-node cluster with a quorum device needs to regain quorum after its
//! peer dies, with default timeouts), computed end to end with votequorum in the loop.

use std::collections::BTreeMap;

use totem_core::qdevice::wire::{DecisionAlgorithm, RingId, TieBreaker, Vote};
use totem_core::qdevice::{
    ClientAction, ClientConfig, ClusterView, ConnId, Phase, QdeviceClient, QnetdServer,
    ServerAction, ServerConfig, Timing,
};
use totem_core::quorum::{self, Action, QdeviceConfig, QuorumConfig, Votequorum};
use totem_core::time::MonoTime;
use totem_core::NodeId;

/// Totem's failure detection for 2 nodes with defaults: token 3000 ms + consensus 1.2 × token
/// (REFERENCE.md §2.1). The surviving node forms its new membership this long after the death.
const TOTEM_DETECTION_2_NODES_MS: u64 = 3_000 + 3_600;

struct Node {
    client: QdeviceClient,
    conn: ConnId,
    /// Network cut: nothing in or out, but the server sees no FIN either.
    silent: bool,
    votequorum: Option<Votequorum>,
    last_vote: Option<(RingId, bool)>,
}

struct World {
    server: QnetdServer,
    nodes: BTreeMap<NodeId, Node>,
    now: MonoTime,
}

fn client_config(node_id: NodeId, algorithm: DecisionAlgorithm, tb: TieBreaker) -> ClientConfig {
    let mut cfg = ClientConfig::new("c1", node_id);
    cfg.algorithm = algorithm;
    cfg.tie_breaker = tb;
    cfg
}

fn view(config_nodes: &[NodeId], ring: RingId, members: &[NodeId]) -> ClusterView {
    ClusterView {
        config_nodes: config_nodes.to_vec(),
        config_version: None,
        ring_id: ring,
        members: members.to_vec(),
        quorate: true,
    }
}

fn ring(node_id: NodeId, seq: u64) -> RingId {
    RingId { node_id, seq }
}

impl World {
    fn new() -> World {
        World {
            server: QnetdServer::new(ServerConfig::default()),
            nodes: BTreeMap::new(),
            now: MonoTime::ZERO,
        }
    }

    fn connect(&mut self, cfg: ClientConfig, view: ClusterView) {
        let id = cfg.node_id;
        let conn = self.server.accept(self.now);
        let client = QdeviceClient::new(cfg, view);
        self.nodes.insert(
            id,
            Node {
                client,
                conn,
                silent: false,
                votequorum: None,
                last_vote: None,
            },
        );
        self.pump();
    }

    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            let now = self.now;
            for node in self.nodes.values_mut() {
                while let Some(action) = node.client.poll_action() {
                    moved = true;
                    match action {
                        ClientAction::Send(bytes) if !node.silent => {
                            self.server.handle_bytes(now, node.conn, &bytes)
                        }
                        ClientAction::Send(_) => {}
                        ClientAction::Poll { ring_id, cast_vote } => {
                            node.last_vote = Some((ring_id, cast_vote));
                            if let Some(vq) = node.votequorum.as_mut() {
                                let r = quorum::RingId {
                                    rep: ring_id.node_id,
                                    seq: ring_id.seq,
                                };
                                let _ = vq.qdevice_poll(now, r, cast_vote);
                            }
                        }
                        ClientAction::Disconnect(_) => {
                            if !node.silent {
                                self.server.handle_closed(node.conn);
                            }
                        }
                    }
                }
                if let Some(vq) = node.votequorum.as_mut() {
                    deliver_to_self(vq);
                }
            }
            while let Some(action) = self.server.poll_action() {
                moved = true;
                if let ServerAction::Send(conn, bytes) = action {
                    if let Some(node) = self
                        .nodes
                        .values_mut()
                        .find(|n| n.conn == conn && !n.silent)
                    {
                        node.client.handle_bytes(now, &bytes);
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("messages never settled");
    }

    fn next_deadline(&self) -> Option<MonoTime> {
        let clients = self.nodes.values().filter(|n| !n.silent).flat_map(|n| {
            [
                n.client.poll_timeout(),
                n.votequorum.as_ref().and_then(|v| v.poll_timeout()),
            ]
        });
        clients.chain([self.server.poll_timeout()]).flatten().min()
    }

    fn advance_to(&mut self, end: MonoTime) {
        while let Some(at) = self.next_deadline().filter(|at| *at <= end) {
            self.now = at;
            for node in self.nodes.values_mut().filter(|n| !n.silent) {
                node.client.handle_timeout(at);
                if let Some(vq) = node.votequorum.as_mut() {
                    vq.handle_timeout(at);
                }
            }
            self.server.handle_timeout(at);
            self.pump();
        }
        self.now = end;
    }

    fn advance(&mut self, ms: u64) {
        self.advance_to(self.now.plus_ms(ms));
    }

    fn membership(&mut self, node: NodeId, ring_id: RingId, members: &[NodeId]) {
        let now = self.now;
        let n = self.nodes.get_mut(&node).expect("node");
        if let Some(vq) = n.votequorum.as_mut() {
            let r = quorum::RingId {
                rep: ring_id.node_id,
                seq: ring_id.seq,
            };
            vq.handle_membership(now, r, members);
            deliver_to_self(vq);
        }
        n.client.set_membership(now, ring_id, members);
        self.pump();
    }

    fn vote(&self, node: NodeId) -> Vote {
        self.nodes[&node].client.vote()
    }
}

/// A lone node's Totem delivers its own multicasts back to it.
fn deliver_to_self(vq: &mut Votequorum) {
    let local = vq.status().local_node_id;
    for _ in 0..100 {
        let mut any = false;
        while let Some(action) = vq.poll_action() {
            if let Action::Multicast(msg) = action {
                vq.handle_message(local, msg);
                any = true;
            }
        }
        if !any {
            return;
        }
    }
}

#[test]
fn ffsplit_two_nodes_both_connected_then_split_follows_tie_breaker() {
    for (tb, winner, loser) in [
        (TieBreaker::LOWEST, 1, 2),
        (TieBreaker::HIGHEST, 2, 1),
        (TieBreaker::node(2), 2, 1),
    ] {
        let mut w = World::new();
        let all = [1, 2];
        for id in all {
            w.connect(
                client_config(id, DecisionAlgorithm::Ffsplit, tb),
                view(&all, ring(1, 4), &all),
            );
        }
        assert_eq!(w.server.cluster_count(), 1);
        assert_eq!(
            (w.vote(1), w.vote(2)),
            (Vote::Ack, Vote::Ack),
            "full cluster: both ACK"
        );
        // Network split between the nodes; both still reach qnetd.
        w.membership(1, ring(1, 8), &[1]);
        assert_eq!(
            w.vote(1),
            Vote::WaitForReply,
            "node 1 waits while 2 still reports the old ring"
        );
        w.membership(2, ring(2, 8), &[2]);
        assert_eq!(w.vote(winner), Vote::Ack, "tie breaker {tb:?}");
        assert_eq!(w.vote(loser), Vote::Nack, "tie breaker {tb:?}");
        assert!(w.nodes[&winner].client.casting());
        assert_eq!(w.nodes[&loser].last_vote.map(|v| v.1), Some(false));
    }
}

#[test]
fn ffsplit_lone_node_gets_the_vote() {
    let mut w = World::new();
    w.connect(
        client_config(1, DecisionAlgorithm::Ffsplit, TieBreaker::LOWEST),
        view(&[1, 2], ring(1, 4), &[1]),
    );
    assert_eq!(w.vote(1), Vote::Ack);
    assert_eq!(w.nodes[&1].last_vote, Some((ring(1, 4), true)));
    // A lone node of an odd (3-node) cluster never gets it: 1 of 3 is a minority.
    let mut w = World::new();
    w.connect(
        client_config(3, DecisionAlgorithm::Ffsplit, TieBreaker::LOWEST),
        view(&[1, 2, 3], ring(3, 4), &[3]),
    );
    assert_eq!(w.vote(3), Vote::Nack);
}

#[test]
fn lms_single_partition_then_largest_partition_wins() {
    let mut w = World::new();
    let all = [1, 2, 3];
    for id in all {
        w.connect(
            client_config(id, DecisionAlgorithm::Lms, TieBreaker::LOWEST),
            view(&all, ring(1, 4), &all),
        );
    }
    assert!(all.iter().all(|id| w.vote(*id) == Vote::Ack));
    w.membership(3, ring(3, 8), &[3]);
    w.membership(1, ring(1, 8), &[1, 2]);
    w.membership(2, ring(1, 8), &[1, 2]);
    w.advance(2_000); // lms re-checks every heartbeat/4 while ring ids disagree
    assert_eq!(
        (w.vote(1), w.vote(2), w.vote(3)),
        (Vote::Ack, Vote::Ack, Vote::Nack)
    );
}

#[test]
fn init_errors_for_mismatched_clients() {
    let mut w = World::new();
    w.connect(
        client_config(1, DecisionAlgorithm::Ffsplit, TieBreaker::LOWEST),
        view(&[1, 2], ring(1, 4), &[1, 2]),
    );
    // Same node id again, and a different tie breaker: refused with corosync's error codes.
    w.connect(
        client_config(1, DecisionAlgorithm::Ffsplit, TieBreaker::LOWEST),
        view(&[1, 2], ring(1, 4), &[1, 2]),
    );
    let dup = w.nodes.get(&1).expect("node").client.phase();
    assert_eq!(dup, Phase::Closed);
    w.connect(
        client_config(2, DecisionAlgorithm::Ffsplit, TieBreaker::HIGHEST),
        view(&[1, 2], ring(1, 4), &[1, 2]),
    );
    assert_eq!(w.nodes[&2].client.phase(), Phase::Closed);
    w.connect(
        client_config(2, DecisionAlgorithm::Lms, TieBreaker::LOWEST),
        view(&[1, 2], ring(1, 4), &[1, 2]),
    );
    assert_eq!(w.nodes[&2].client.phase(), Phase::Closed);
}

#[test]
fn heartbeats_keep_the_connection_and_dead_peer_detection_drops_a_silent_one() {
    let mut w = World::new();
    let all = [1, 2];
    for id in all {
        w.connect(
            client_config(id, DecisionAlgorithm::Ffsplit, TieBreaker::HIGHEST),
            view(&all, ring(1, 4), &all),
        );
    }
    // Both connected at 0 s, echo every 8 s: their last heartbeat before the cut is at 64 s.
    w.advance(64_001);
    assert_eq!(
        w.server.connection_count(),
        2,
        "echo every 8 s keeps both alive"
    );
    assert_eq!(w.nodes[&1].client.phase(), Phase::Connected);
    // Node 2 is cut off without a FIN; node 1 sees the split and waits for the server.
    w.nodes.get_mut(&2).expect("node").silent = true;
    let cut = w.now;
    w.membership(1, ring(1, 8), &[1]);
    assert_eq!(w.vote(1), Vote::WaitForReply);
    w.advance(11_000);
    assert_eq!(w.vote(1), Vote::WaitForReply, "still within 1.5 heartbeats");
    w.advance(1_000);
    assert_eq!(
        w.server.connection_count(),
        1,
        "dropped 12 s after its last message"
    );
    assert_eq!(
        w.vote(1),
        Vote::Ack,
        "the lone survivor gets the vote once its peer is gone"
    );
    assert!(w.now.saturating_since(cut).as_millis() <= 12_000);
}

#[test]
fn client_drops_an_unanswering_server_after_one_missed_heartbeat() {
    let mut w = World::new();
    w.connect(
        client_config(1, DecisionAlgorithm::Ffsplit, TieBreaker::LOWEST),
        view(&[1, 2], ring(1, 4), &[1]),
    );
    assert_eq!(w.vote(1), Vote::Ack);
    // The server stops answering: simulate by detaching its end (silent server).
    let conn = w.nodes[&1].conn;
    w.server.handle_closed(conn);
    w.nodes.get_mut(&1).expect("node").conn = ConnId::MAX;
    w.advance(8_000); // first echo goes out unanswered
    assert_eq!(w.nodes[&1].client.phase(), Phase::Connected);
    w.advance(8_000); // next tick: no reply -> disconnect, vote withdrawn
    assert_eq!(w.nodes[&1].client.phase(), Phase::Closed);
    assert_eq!(w.nodes[&1].last_vote.map(|v| v.1), Some(false));
}

/// 2 nodes + qnetd, ffsplit, default timeouts, votequorum in the loop. Node 2 dies at `death`
/// (host lost: no FIN, qnetd must detect it); Totem on node 1 forms the new membership 6.6 s
/// later. Returns when node 1 is quorate again, in ms after the death (`None` if never in 60 s).
fn regain_after_peer_death(echo_phase_ms: u64, peer_sends_fin: bool) -> Option<u64> {
    let mut w = World::new();
    let all = [1, 2];
    let mut qcfg = QuorumConfig::simple(1, 2);
    qcfg.qdevice = Some(QdeviceConfig {
        votes: Some(1),
        ..QdeviceConfig::default()
    });
    for id in all {
        qcfg.local_node_id = id;
        let mut vq = Votequorum::new(&qcfg).expect("config");
        vq.handle_membership(w.now, quorum::RingId { rep: 1, seq: 4 }, &all);
        // Both nodes see each other's node info (Totem would carry it); only self needed here:
        deliver_to_self(&mut vq);
        vq.qdevice_register("Qdevice").expect("register");
        deliver_to_self(&mut vq);
        w.connect(
            client_config(id, DecisionAlgorithm::Ffsplit, TieBreaker::LOWEST),
            view(&all, ring(1, 4), &all),
        );
        w.nodes.get_mut(&id).expect("node").votequorum = Some(vq);
        // Node 2 connects `echo_phase_ms` later so its heartbeats fall at another phase.
        w.advance(echo_phase_ms);
    }
    // Peer votes as Totem would deliver them: node 1 learns node 2's NodeInfo.
    for (from, to) in [(2, 1), (1, 2)] {
        let status = w.nodes[&from].votequorum.as_ref().expect("vq").status();
        let msg = quorum::QuorumMsg::NodeInfo {
            node_id: from,
            votes: 1,
            expected_votes: status.expected_votes,
            flags: quorum::NodeFlags::default(),
        };
        let vq = w
            .nodes
            .get_mut(&to)
            .expect("node")
            .votequorum
            .as_mut()
            .expect("vq");
        vq.handle_message(from, msg);
        deliver_to_self(vq);
    }
    w.advance(30_000);
    let vq1 = w.nodes[&1].votequorum.as_ref().expect("vq");
    assert!(
        vq1.is_quorate(),
        "2+1 quorate before the failure: {:?}",
        vq1.status()
    );
    let death = w.now;
    if peer_sends_fin {
        let conn = w.nodes[&2].conn;
        w.nodes.get_mut(&2).expect("node").silent = true;
        w.server.handle_closed(conn);
    } else {
        w.nodes.get_mut(&2).expect("node").silent = true;
    }
    w.advance(TOTEM_DETECTION_2_NODES_MS);
    w.membership(1, ring(1, 8), &[1]);
    for step in 0..600u64 {
        if w.nodes[&1]
            .votequorum
            .as_ref()
            .is_some_and(|v| v.is_quorate() && v.ring_id().seq == 8)
        {
            return Some(w.now.saturating_since(death).as_millis() as u64);
        }
        let _ = step;
        w.advance(100);
    }
    None
}

#[test]
fn figure_two_plus_one_regains_quorum_with_default_timeouts() {
    let timing = Timing::default();
    assert_eq!(
        (timing.heartbeat_interval_ms, timing.timeout_ms),
        (8_000, 10_000)
    );
    let mut worst = 0;
    let mut best = u64::MAX;
    for phase in (0..8_000).step_by(500) {
        let t = regain_after_peer_death(phase, false).expect("quorum regained");
        // Never before Totem noticed, never later than qnetd's dead-peer detection (12 s after
        // the peer's last heartbeat, so at most 12 s after its death).
        assert!(
            (TOTEM_DETECTION_2_NODES_MS..=12_000).contains(&t),
            "phase {phase}: {t} ms"
        );
        worst = worst.max(t);
        best = best.min(t);
    }
    let with_fin = regain_after_peer_death(0, true).expect("quorum regained");
    assert_eq!(
        with_fin, TOTEM_DETECTION_2_NODES_MS,
        "a closed connection is noticed at once"
    );
    println!(
        "FIGURE 2+1 regain quorum after peer death (simulated, default timeouts): host lost \
         {best}..{worst} ms (qnetd DPD 12 s after the last heartbeat), process killed (TCP \
         closed) {with_fin} ms (Totem token+consensus)"
    );
}

#[test]
fn vote_lease_withdraws_before_qnetd_can_reassign_it() {
    let mut w = World::new();
    w.connect(
        client_config(1, DecisionAlgorithm::Ffsplit, TieBreaker::LOWEST),
        view(&[1, 2], ring(1, 4), &[1]),
    );
    assert_eq!(w.nodes[&1].last_vote, Some((ring(1, 4), true)));
    // The echo sent at 8 s is answered; then the server goes silent (cut, no FIN).
    w.advance(8_001);
    w.nodes.get_mut(&1).expect("node").conn = ConnId::MAX;
    // Lease = 8 s + 1.25 heartbeats (10 s) = 18 s; qnetd's DPD would fire at 8 s + 12 s = 20 s.
    w.advance_to(MonoTime::ZERO.plus_ms(17_999));
    assert!(w.nodes[&1].client.casting(), "still inside the lease");
    assert_eq!(w.nodes[&1].last_vote.map(|v| v.1), Some(true));
    w.advance_to(MonoTime::ZERO.plus_ms(18_000));
    assert!(!w.nodes[&1].client.casting(), "lease lapsed");
    assert_eq!(
        w.nodes[&1].last_vote,
        Some((ring(1, 4), false)),
        "vote withdrawn at once"
    );
    assert_eq!(
        w.nodes[&1].client.phase(),
        Phase::Connected,
        "before the echo timeout"
    );
}
