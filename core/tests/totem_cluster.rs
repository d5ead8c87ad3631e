//! Totem SRP end to end: N `Srp` instances wired by a tiny in-test network that delivers every
//! frame instantly or after a fixed hop time (optionally dropping or blocking some) and fires
//! timers in time order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;
use totem_core::time::MonoTime;
use totem_core::totem::config::IDLE_BEFORE_HOLD_MIN_MS;
use totem_core::totem::wire::{Body, Frame};
use totem_core::totem::{
    Action, ConfChange, ConfKind, Delivery, Dest, Order, RingId, Srp, State, SubmitError,
    TotemConfig,
};
use totem_core::NodeId;

#[derive(Clone, Debug)]
enum Event {
    Msg(Delivery),
    Conf(ConfChange),
}

type DropFn = Box<dyn FnMut(NodeId, NodeId, &Frame) -> bool>;

struct Net {
    now: MonoTime,
    cfg: TotemConfig,
    nodes: BTreeMap<NodeId, Srp>,
    /// Unordered pairs that cannot talk.
    cut: BTreeSet<(NodeId, NodeId)>,
    queue: VecDeque<(NodeId, NodeId, Vec<u8>)>,
    events: BTreeMap<NodeId, Vec<(MonoTime, Event)>>,
    persisted: BTreeMap<NodeId, u64>,
    drop: Option<DropFn>,
    frames: u64,
    /// Time each frame takes to cross (zero: frames arrive at the instant they are sent).
    hop: Duration,
}

/// The defaults for this network, where frames usually cross in no time: an idle ring would
/// never reach the idle-time floor of the token hold there, so corosync's rule applies
/// (rotations only). `the_token_is_held_after_its_rotations_and_the_idle_floor` runs the floor
/// with frames that take time.
fn instant_config(ids: &[NodeId]) -> TotemConfig {
    TotemConfig {
        idle_before_hold_min_ms: 0,
        ..TotemConfig::for_nodes(ids)
    }
}

impl Net {
    fn new(n: u32) -> Net {
        let ids: Vec<NodeId> = (1..=n).collect();
        Net::with(instant_config(&ids), Duration::ZERO)
    }

    /// Every node of `cfg.nodelist` started, frames taking `hop` each.
    fn with(cfg: TotemConfig, hop: Duration) -> Net {
        let ids = cfg.nodelist.clone();
        let mut net = Net {
            now: MonoTime::ZERO,
            cfg,
            nodes: BTreeMap::new(),
            cut: BTreeSet::new(),
            queue: VecDeque::new(),
            events: BTreeMap::new(),
            persisted: BTreeMap::new(),
            drop: None,
            frames: 0,
            hop,
        };
        for id in ids {
            net.start(id);
        }
        net
    }

    fn start(&mut self, id: NodeId) {
        let last = self.persisted.get(&id).copied().unwrap_or(0);
        let srp = Srp::new(self.cfg.clone(), id, u64::from(id) * 7919, last, self.now)
            .expect("valid config");
        self.nodes.insert(id, srp);
        self.drain(id);
    }

    fn crash(&mut self, id: NodeId) {
        self.nodes.remove(&id);
        self.queue.retain(|(f, t, _)| *f != id && *t != id);
    }

    fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x.min(y), x.max(y)));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    fn node(&mut self, id: NodeId) -> &mut Srp {
        self.nodes.get_mut(&id).expect("node is up")
    }

    fn drain(&mut self, id: NodeId) {
        let configured: Vec<NodeId> = self.cfg.nodelist.clone();
        let Some(srp) = self.nodes.get_mut(&id) else {
            return;
        };
        while let Some(a) = srp.poll_action() {
            match a {
                Action::Send {
                    to: Dest::Node(to),
                    frame,
                } => self.queue.push_back((id, to, frame)),
                Action::Send {
                    to: Dest::All,
                    frame,
                } => {
                    for &to in configured.iter().filter(|&&n| n != id) {
                        self.queue.push_back((id, to, frame.clone()));
                    }
                }
                Action::Deliver(d) => self
                    .events
                    .entry(id)
                    .or_default()
                    .push((self.now, Event::Msg(d))),
                Action::Conf(c) => self
                    .events
                    .entry(id)
                    .or_default()
                    .push((self.now, Event::Conf(c))),
                Action::PersistRingSeq(s) => {
                    let old = self.persisted.insert(id, s).unwrap_or(0);
                    assert!(s > old, "node {id} persisted ring seq {s} after {old}");
                }
                Action::SubmitReady => {}
            }
        }
    }

    fn run_queue(&mut self) {
        while let Some((from, to, frame)) = self.queue.pop_front() {
            self.frames += 1;
            assert!(self.frames < 50_000_000, "runaway frame exchange");
            if self.cut.contains(&(from.min(to), from.max(to))) || !self.nodes.contains_key(&from) {
                continue;
            }
            if let Some(f) = self.drop.as_mut() {
                let decoded = Frame::decode(&frame).expect("own frames decode");
                if f(from, to, &decoded) {
                    continue;
                }
            }
            self.now = self.now + self.hop;
            let now = self.now;
            if let Some(srp) = self.nodes.get_mut(&to) {
                srp.handle_frame(now, from, &frame).expect("valid frame");
                self.drain(to);
            }
        }
    }

    /// Runs the network and the timers up to `deadline`.
    fn run_until(&mut self, deadline: MonoTime) {
        loop {
            self.run_queue();
            let next = self.nodes.values().filter_map(|s| s.poll_timeout()).min();
            match next {
                Some(t) if t <= deadline => {
                    self.now = self.now.max(t);
                    let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
                    for id in ids {
                        let now = self.now;
                        let srp = self.node(id);
                        if srp.poll_timeout().is_some_and(|t| t <= now) {
                            srp.handle_timeout(now);
                            self.drain(id);
                        }
                    }
                }
                _ => {
                    self.now = self.now.max(deadline);
                    return;
                }
            }
        }
    }

    fn run_ms(&mut self, ms: u64) {
        let deadline = self.now.plus_ms(ms);
        self.run_until(deadline);
    }

    fn submit(&mut self, id: NodeId, payload: &[u8], order: Order) {
        let now = self.now;
        self.node(id)
            .submit(now, payload, order)
            .expect("queue has room");
        self.drain(id);
    }

    fn messages(&self, id: NodeId) -> Vec<(NodeId, Vec<u8>)> {
        self.events
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|(_, e)| match e {
                Event::Msg(d) => Some((d.sender, d.payload.clone())),
                Event::Conf(_) => None,
            })
            .collect()
    }

    fn confs(&self, id: NodeId) -> Vec<(MonoTime, ConfChange)> {
        self.events
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|(t, e)| match e {
                Event::Conf(c) => Some((*t, c.clone())),
                Event::Msg(_) => None,
            })
            .collect()
    }

    fn last_regular(&self, id: NodeId) -> Option<(MonoTime, ConfChange)> {
        self.confs(id)
            .into_iter()
            .rev()
            .find(|(_, c)| c.kind == ConfKind::Regular)
    }

    fn assert_one_ring(&self, ids: &[NodeId]) -> RingId {
        let first = &self.nodes[&ids[0]];
        for id in ids {
            let s = &self.nodes[id];
            assert_eq!(s.state(), State::Operational, "node {id} not operational");
            assert_eq!(s.members(), ids, "node {id} members");
            assert_eq!(s.ring_id(), first.ring_id(), "node {id} ring id");
        }
        first.ring_id()
    }
}

fn formed(n: u32) -> Net {
    let mut net = Net::new(n);
    net.run_ms(1000);
    let ids: Vec<NodeId> = (1..=n).collect();
    net.assert_one_ring(&ids);
    net
}

#[test]
fn three_nodes_form_one_ring_and_agree_on_order() {
    let mut net = formed(3);
    let ring = net.nodes[&1].ring_id();
    assert_eq!(ring.rep, 1);
    assert_eq!(ring.seq, 4);
    for id in 1..=3 {
        let confs = net.confs(id);
        assert_eq!(confs.len(), 2, "node {id}: {confs:?}");
        assert_eq!(confs[0].1.kind, ConfKind::Transitional);
        assert_eq!(confs[1].1.kind, ConfKind::Regular);
        assert_eq!(confs[1].1.members, vec![1, 2, 3]);
    }
    for i in 0..200u32 {
        for id in 1..=3 {
            net.submit(id, format!("{id}:{i}").as_bytes(), Order::Agreed);
        }
    }
    net.run_ms(2000);
    let m1 = net.messages(1);
    assert_eq!(m1.len(), 600);
    assert_eq!(net.messages(2), m1);
    assert_eq!(net.messages(3), m1);
    // Per-sender FIFO inside the total order.
    for id in 1..=3u32 {
        let mine: Vec<Vec<u8>> = m1
            .iter()
            .filter(|(s, _)| *s == id)
            .map(|(_, p)| p.clone())
            .collect();
        let expect: Vec<Vec<u8>> = (0..200).map(|i| format!("{id}:{i}").into_bytes()).collect();
        assert_eq!(mine, expect);
    }
}

#[test]
fn a_single_node_forms_a_ring_alone() {
    let mut net = formed(1);
    net.submit(1, b"hello", Order::Safe);
    net.submit(1, b"world", Order::Agreed);
    net.run_ms(100);
    assert_eq!(
        net.messages(1),
        vec![(1, b"hello".to_vec()), (1, b"world".to_vec())]
    );
}

#[test]
fn safe_messages_wait_until_every_member_has_them() {
    let mut net = formed(3);
    // Node 3 loses every multicast for a while; tokens still pass.
    net.drop = Some(Box::new(|_, to, f| {
        to == 3 && matches!(f.body, Body::Mcast(_))
    }));
    net.submit(1, b"agreed", Order::Agreed);
    net.submit(1, b"safe", Order::Safe);
    net.run_ms(1500);
    assert_eq!(
        net.messages(1),
        vec![(1, b"agreed".to_vec())],
        "safe delivered while node 3 lacks it"
    );
    assert_eq!(net.messages(2), vec![(1, b"agreed".to_vec())]);
    assert!(net.messages(3).is_empty());
    net.drop = None;
    net.run_ms(3000);
    let want = vec![(1, b"agreed".to_vec()), (1, b"safe".to_vec())];
    for id in 1..=3 {
        assert_eq!(net.messages(id), want, "node {id}");
    }
    net.assert_one_ring(&[1, 2, 3]);
}

#[test]
fn a_dropped_multicast_is_retransmitted_through_the_token() {
    let mut net = formed(3);
    let mut dropped = 0;
    net.drop = Some(Box::new(move |_, to, f| {
        if let Body::Mcast(m) = &f.body {
            if to == 2 && m.seq % 3 == 0 && dropped < 20 {
                dropped += 1;
                return true;
            }
        }
        false
    }));
    for i in 0..60u32 {
        net.submit(1 + i % 3, &i.to_le_bytes(), Order::Agreed);
    }
    net.run_ms(3000);
    let m1 = net.messages(1);
    assert_eq!(m1.len(), 60);
    assert_eq!(net.messages(2), m1);
    assert_eq!(net.messages(3), m1);
    net.assert_one_ring(&[1, 2, 3]);
}

#[test]
fn crash_forms_a_new_ring_after_token_timeout_and_consensus() {
    let mut net = formed(3);
    let before = net.nodes[&1].ring_id();
    net.submit(1, b"before", Order::Agreed);
    net.run_ms(100);
    let crash_at = net.now;
    net.crash(3);
    net.submit(2, b"during", Order::Agreed);
    net.run_ms(12_000);
    let ring = net.assert_one_ring(&[1, 2]);
    assert!(ring.seq > before.seq);
    let token = net.cfg.effective_token_ms();
    let consensus = net.cfg.effective_consensus_ms();
    for id in [1, 2] {
        let (t, regular) = net.last_regular(id).expect("regular conf");
        assert_eq!(regular.members, vec![1, 2]);
        assert_eq!(regular.left, vec![3]);
        let took = (t - crash_at).as_millis() as u64;
        assert!(
            took >= token,
            "re-formed after {took} ms, before the token timeout"
        );
        assert!(
            took <= token + consensus + 1000,
            "re-formed after {took} ms"
        );
        let confs = net.confs(id);
        let trans = &confs[confs.len() - 2].1;
        assert_eq!(trans.kind, ConfKind::Transitional);
        assert_eq!(trans.members, vec![1, 2]);
    }
    assert_eq!(net.messages(1), net.messages(2));
    assert!(net.messages(1).contains(&(2, b"during".to_vec())));
}

#[test]
fn clean_leave_reforms_well_under_the_token_timeout() {
    let mut net = formed(3);
    let t0 = net.now;
    let now = net.now;
    net.node(3).leave(now);
    net.drain(3);
    net.run_ms(300);
    net.assert_one_ring(&[1, 2]);
    let (t, regular) = net.last_regular(1).expect("regular");
    assert_eq!(regular.left, vec![3]);
    assert!((t - t0).as_millis() < 200, "took {:?}", t - t0);
    assert_eq!(
        net.node(3).submit(now, b"x", Order::Agreed),
        Err(SubmitError::NotOperational)
    );
}

#[test]
fn partition_and_merge_keep_virtual_synchrony() {
    let mut net = formed(3);
    net.partition(&[1, 2], &[3]);
    net.submit(1, b"a-side", Order::Agreed);
    net.submit(3, b"b-side", Order::Agreed);
    net.run_ms(15_000);
    net.assert_one_ring(&[1, 2]);
    net.assert_one_ring(&[3]);
    assert!(
        net.messages(1).contains(&(3, b"b-side".to_vec()))
            == net.messages(2).contains(&(3, b"b-side".to_vec()))
    );
    assert_eq!(net.messages(1), net.messages(2));
    net.submit(3, b"alone", Order::Safe);
    net.run_ms(1000);
    assert!(net.messages(3).contains(&(3, b"alone".to_vec())));
    assert!(!net.messages(1).contains(&(3, b"alone".to_vec())));
    net.heal();
    net.run_ms(5000);
    let ring = net.assert_one_ring(&[1, 2, 3]);
    for id in 1..=3 {
        let (_, regular) = net.last_regular(id).expect("regular");
        assert_eq!(regular.ring_id, ring);
        assert_eq!(regular.members, vec![1, 2, 3]);
    }
    let (_, r3) = net.last_regular(3).expect("regular");
    assert_eq!(r3.joined, vec![1, 2]);
    net.submit(2, b"merged", Order::Agreed);
    net.run_ms(500);
    for id in 1..=3 {
        assert_eq!(net.messages(id).last(), Some(&(2, b"merged".to_vec())));
    }
}

#[test]
fn a_restarted_node_never_reuses_a_ring_seq() {
    let mut net = formed(3);
    let first = net.nodes[&3].ring_id();
    net.crash(3);
    net.run_ms(12_000);
    let without = net.assert_one_ring(&[1, 2]);
    assert!(without.seq > first.seq);
    let persisted = net.persisted[&3];
    assert_eq!(persisted, first.seq);
    net.start(3);
    net.run_ms(3000);
    let back = net.assert_one_ring(&[1, 2, 3]);
    assert!(back.seq > without.seq && back.seq > persisted);
    assert_eq!(net.persisted[&3], back.seq);
}

#[test]
fn restart_with_a_high_persisted_seq_lifts_the_ring_seq() {
    let mut net = Net::new(0);
    net.cfg = instant_config(&[1, 2]);
    net.persisted.insert(2, 0x1a8);
    net.start(1);
    net.start(2);
    net.run_ms(1000);
    let ring = net.assert_one_ring(&[1, 2]);
    assert_eq!(
        ring,
        RingId {
            rep: 1,
            seq: 0x1a8 + 4
        }
    );
    assert_eq!(ring.to_string(), "1.1ac");
}

#[test]
fn one_mib_message_is_delivered_intact() {
    let mut net = formed(3);
    let big: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    net.submit(2, b"small-before", Order::Agreed);
    net.submit(2, &big, Order::Agreed);
    net.submit(3, b"small-other", Order::Agreed);
    net.run_ms(5000);
    for id in 1..=3 {
        let msgs = net.messages(id);
        assert_eq!(msgs.len(), 3, "node {id}");
        assert!(msgs.contains(&(2, big.clone())), "node {id}");
    }
    assert_eq!(net.messages(1), net.messages(2));
    assert_eq!(net.messages(1), net.messages(3));
    let now = net.now;
    let too_big = vec![0u8; (1 << 20) + 1];
    assert_eq!(
        net.node(1).submit(now, &too_big, Order::Agreed),
        Err(SubmitError::TooLarge)
    );
}

#[test]
fn full_submit_queue_pushes_back_then_signals_ready() {
    let mut net = Net::new(0);
    net.cfg = TotemConfig {
        submit_queue_limit: 4,
        ..instant_config(&[1, 2])
    };
    net.start(1);
    net.start(2);
    let now = net.now;
    // Still gathering: submissions queue.
    for i in 0..4u8 {
        net.node(1).submit(now, &[i], Order::Agreed).expect("room");
    }
    assert_eq!(
        net.node(1).submit(now, b"x", Order::Agreed),
        Err(SubmitError::QueueFull)
    );
    let mut ready = false;
    net.run_queue();
    for _ in 0..100 {
        let now = net.now.plus_ms(10);
        net.run_until(now);
        let srp = net.node(1);
        if srp.queued_messages() == 0 {
            ready = true;
            break;
        }
    }
    assert!(ready);
    assert_eq!(net.messages(2).len(), 4);
}

#[test]
fn unreachable_hint_starts_membership_early() {
    let mut net = formed(3);
    let t0 = net.now;
    net.crash(3);
    // Node 2 passes the token to node 3: the hint makes it give up at once.
    for id in [1, 2] {
        let now = net.now;
        net.node(id).peer_unreachable(now, 3);
        net.drain(id);
    }
    net.run_ms(2000);
    net.assert_one_ring(&[1, 2]);
    let (t, _) = net.last_regular(1).expect("regular");
    assert!((t - t0).as_millis() < 1000, "took {:?}", t - t0);
}

#[test]
fn a_path_change_hint_resends_a_lost_token_at_once() {
    let mut net = formed(3);
    // The ring is idle and its representative (node 1) holds the token. The next token to node 2
    // is lost, as on a link cut before the transport fails over.
    let mut dropped = false;
    net.drop = Some(Box::new(move |_, to, f| {
        if to == 2 && matches!(f.body, Body::Token(_)) && !dropped {
            dropped = true;
            return true;
        }
        false
    }));
    net.submit(1, b"after the cut", Order::Agreed);
    net.run_ms(100);
    let delivered = |net: &Net, id| {
        net.messages(id)
            .iter()
            .any(|(_, p)| p.as_slice() == b"after the cut")
    };
    assert!(
        !delivered(&net, 1),
        "without the hint the ring waits for token_retransmit"
    );
    // The transport fails the path to node 2 over: the lost token goes again at once.
    let t0 = net.now;
    for id in [1, 3] {
        let now = net.now;
        net.node(id).path_changed(now, 2);
        net.drain(id);
    }
    net.run_queue();
    assert_eq!(net.now, t0, "no timer was needed");
    for id in 1..=3 {
        assert!(delivered(&net, id), "node {id} has not delivered");
    }
    net.assert_one_ring(&[1, 2, 3]);
}

#[test]
fn a_message_on_an_idle_ring_does_not_wait_for_the_hold_timer() {
    // Whoever multicast last, a submit on any node of an idle ring (the representative holds
    // the token) goes out without waiting for `hold` (685 ms with the defaults): the node that
    // submits must know the token may be held and send a token-hold cancel.
    for (nodes, last_sender, submitter) in [3u32, 5]
        .into_iter()
        .flat_map(|n| (1..=n).flat_map(move |l| (1..=n).map(move |s| (n, l, s))))
    {
        {
            let mut net = formed(nodes);
            net.submit(last_sender, b"before", Order::Agreed);
            // Idle again: the representative holds the token (its hold timer, 685 ms, not yet due).
            net.run_ms(100);
            let t0 = net.now;
            net.submit(submitter, b"after idle", Order::Agreed);
            net.run_queue();
            assert_eq!(net.now, t0);
            for id in 1..=nodes {
                assert_eq!(
                    net.messages(id).last().map(|(_, p)| p.as_slice()),
                    Some(&b"after idle"[..]),
                    "{nodes} nodes, last sender {last_sender}, submitter {submitter}: node {id} \
                     still waits"
                );
            }
        }
    }
}

#[test]
fn the_token_is_held_after_its_rotations_and_the_idle_floor() {
    // 50 µs a hop: 30 idle rotations of three nodes take 4.5 ms, under the 10 ms floor.
    let hop = Duration::from_micros(50);
    let floor = Duration::from_millis(IDLE_BEFORE_HOLD_MIN_MS);
    for (floor_ms, submitter) in [0, IDLE_BEFORE_HOLD_MIN_MS]
        .into_iter()
        .flat_map(|f| (1..=3).map(move |s| (f, s)))
    {
        let cfg = TotemConfig {
            idle_before_hold_min_ms: floor_ms,
            ..TotemConfig::for_nodes(&[1, 2, 3])
        };
        let mut net = Net::with(cfg, hop);
        net.run_ms(1000);
        net.assert_one_ring(&[1, 2, 3]);
        // The last message: the ring is busy until its token comes round, idle from there.
        net.submit(submitter, b"busy", Order::Agreed);
        let busy = net.now;
        // Frames flow until the representative holds the token (no timer runs here).
        net.run_queue();
        let held_after = net.now.saturating_since(busy);
        if floor_ms == 0 {
            assert!(
                held_after < floor,
                "corosync's rule holds after 31 rotations, {held_after:?}"
            );
        } else {
            assert!(
                held_after >= floor,
                "held after {held_after:?}, before the floor"
            );
            assert!(held_after < floor * 2, "held only after {held_after:?}");
        }
        // Held: a message from any node is sent and delivered without the hold timer.
        for sender in 1..=3 {
            let sent = net.now;
            net.submit(sender, &[sender as u8], Order::Agreed);
            net.run_queue();
            for id in 1..=3 {
                assert_eq!(
                    net.messages(id).last().map(|(_, p)| p.clone()),
                    Some(vec![sender as u8]),
                    "floor {floor_ms} ms: node {id} waits for node {sender}'s message"
                );
            }
            let idle = net.now.saturating_since(sent);
            assert!(
                idle >= Duration::from_millis(floor_ms),
                "held again after {idle:?}"
            );
        }
    }
}

#[test]
fn a_wrong_path_change_hint_changes_nothing() {
    let mut net = formed(3);
    let ring = net.assert_one_ring(&[1, 2, 3]);
    for round in 0..20u32 {
        for id in 1..=3 {
            let now = net.now;
            net.node(id).path_changed(now, 1 + (id + round) % 3);
            net.drain(id);
        }
        net.submit(1 + round % 3, &round.to_le_bytes(), Order::Agreed);
        net.run_ms(10);
    }
    net.run_ms(1000);
    assert_eq!(net.assert_one_ring(&[1, 2, 3]), ring, "no reconfiguration");
    let m1 = net.messages(1);
    assert_eq!(m1.len(), 20);
    assert_eq!(net.messages(2), m1);
    assert_eq!(net.messages(3), m1);
}

#[test]
fn a_wrong_unreachable_hint_only_costs_a_reconfiguration() {
    let mut net = formed(3);
    let now = net.now;
    net.node(2).peer_unreachable(now, 3);
    net.drain(2);
    net.run_ms(20_000);
    net.assert_one_ring(&[1, 2, 3]);
    net.submit(3, b"still here", Order::Safe);
    net.run_ms(2000);
    for id in 1..=3 {
        assert_eq!(net.messages(id).last(), Some(&(3, b"still here".to_vec())));
    }
}

#[test]
fn messages_in_flight_at_a_crash_reach_every_survivor_alike() {
    let mut net = formed(5);
    // Node 5's multicasts only reach node 4 before it dies.
    net.drop = Some(Box::new(|from, to, f| {
        from == 5 && to != 4 && matches!(f.body, Body::Mcast(_))
    }));
    for i in 0..30u32 {
        net.submit(5, &i.to_le_bytes(), Order::Agreed);
        net.submit(1, &(1000 + i).to_le_bytes(), Order::Safe);
    }
    net.run_ms(50);
    net.crash(5);
    net.drop = None;
    net.run_ms(15_000);
    net.assert_one_ring(&[1, 2, 3, 4]);
    let m1 = net.messages(1);
    for id in 2..=4 {
        assert_eq!(net.messages(id), m1, "node {id}");
    }
    let from5 = m1.iter().filter(|(s, _)| *s == 5).count();
    assert!(
        from5 > 0,
        "node 4 held node 5's messages; recovery must spread them"
    );
}
