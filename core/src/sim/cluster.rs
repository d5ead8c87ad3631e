//! The discrete-event loop: N protocol cores, a virtual clock, the network, client load, and
//! raft-harness-like verbs (`cut`, `isolate`, `partition`, `heal`, `crash`, `restart`, `leave`,
//! `join`, `run_for`, `run_until`). Every input to a core is followed by draining its actions into
//! the network and the checkers, so a violation stops the run at the step that caused it.

use std::rc::Rc;

use super::checker::{Checker, ConfPhase, Ring, Violation};
use super::clock::NodeClock;
use super::net::{NetOptions, NetStats, Network};
use super::rng::{SimRng, Stream};
use super::workload::{make_payload, LoadOptions, MsgId, PAYLOAD_MAX_BYTES};
use crate::totem::{
    Action, ConfKind, ConfigError, Dest, Order, RingId, State, SubmitError, TotemConfig,
};
use crate::NodeId;

/// Nanoseconds per millisecond.
const NS_PER_MS: u64 = 1_000_000;
/// Largest cluster the simulator runs (issue 3 §3: "N nodes (1 to 32)").
pub const NODES_MAX: u32 = 32;
/// Steps at one instant after which the run is declared stuck (a core whose timer never advances
/// or two cores bouncing frames with zero delay forever).
const STEPS_AT_ONE_INSTANT_MAX: u64 = 1_000_000;

/// Why a simulation could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Node count outside 1..=32.
    #[error("node count {0} is outside 1..={NODES_MAX}")]
    NodeCount(u32),
    /// The core refused the configuration.
    #[error("node {node}: totem configuration refused: {source}")]
    Config {
        /// The node.
        node: NodeId,
        /// The core's reason.
        source: ConfigError,
    },
}

/// Everything a simulated cluster is built from.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The run's seed; every random choice derives from it.
    pub seed: u64,
    /// Nodes, with ids 1..=node_count.
    pub node_count: u32,
    /// Totem configuration template (the nodelist is filled in).
    pub totem: TotemConfig,
    /// Network behaviour.
    pub net: NetOptions,
    /// Client load.
    pub load: LoadOptions,
    /// Each node's clock drift is drawn uniformly from ±this many ppm.
    pub drift_ppm_max: u32,
    /// Nodes that are configured but not started (they may `join` later).
    pub start_stopped: Vec<NodeId>,
    /// Print every event to stderr.
    pub trace: bool,
    /// Run the checkers (off only to measure the bare protocol cost in benchmarks).
    pub checks: bool,
}

impl SimOptions {
    /// `node_count` nodes, corosync defaults, quiet network, no load, no drift.
    pub fn new(seed: u64, node_count: u32) -> SimOptions {
        SimOptions {
            seed,
            node_count,
            totem: TotemConfig::default(),
            net: NetOptions::QUIET,
            load: LoadOptions::OFF,
            drift_ppm_max: 0,
            start_stopped: Vec::new(),
            trace: false,
            checks: true,
        }
    }
}

/// Lifecycle of a simulated node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeStatus {
    /// Running.
    Up,
    /// Crashed (no clean leave); may restart.
    Crashed,
    /// Left cleanly; may join again.
    Left,
}

/// The last configuration change a node delivered, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastConf {
    /// Its ring.
    pub ring_id: RingId,
    /// Its members.
    pub members: Vec<NodeId>,
    /// Global time it was delivered, ns.
    pub at_ns: u64,
}

struct SimNode {
    id: NodeId,
    status: NodeStatus,
    srp: Option<crate::totem::Srp>,
    clock: NodeClock,
    load_rng: SimRng,
    core_rng: SimRng,
    persisted_ring_seq: u64,
    next_counter: u64,
    timer_at: Option<u64>,
    next_load_at: Option<u64>,
    queue_full: bool,
    last_regular: Option<LastConf>,
}

/// Counters for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Inputs handed to cores.
    pub steps: u64,
    /// Frames the cores refused to decode.
    pub decode_errors: u64,
    /// Submissions refused with `QueueFull`.
    pub queue_full: u64,
    /// Messages delivered (all nodes), counted even with the checkers off.
    pub delivered: u64,
}

/// A simulated cluster.
pub struct Sim {
    options: SimOptions,
    cfg: TotemConfig,
    now_ns: u64,
    nodes: Vec<SimNode>,
    net: Network,
    checker: Checker,
    stats: SimStats,
    steps_at_now: u64,
    /// A violation found outside a step (while starting a node), reported by the next step.
    pending_violation: Option<Violation>,
}

/// What the loop does next.
enum Next {
    Packet,
    Timer(usize),
    Load(usize),
}

impl Sim {
    /// Builds and starts the cluster at global time 0.
    pub fn new(options: SimOptions) -> Result<Sim, SimError> {
        if !(1..=NODES_MAX).contains(&options.node_count) {
            return Err(SimError::NodeCount(options.node_count));
        }
        let ids: Vec<NodeId> = (1..=options.node_count).collect();
        let cfg = TotemConfig {
            nodelist: ids.clone(),
            ..options.totem.clone()
        };
        let mut nodes = Vec::with_capacity(ids.len());
        for (index, &id) in ids.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let mut load_rng = SimRng::new(options.seed, Stream::Node(index));
            let drift = i64::from(options.drift_ppm_max);
            let drift_ppm =
                i32::try_from(load_rng.range_u64(0, 2 * drift as u64) as i64 - drift).unwrap_or(0);
            let offset_ns = load_rng.range_u64(0, 1_000 * NS_PER_MS);
            nodes.push(SimNode {
                id,
                status: NodeStatus::Left,
                srp: None,
                clock: NodeClock {
                    offset_ns,
                    drift_ppm,
                },
                load_rng,
                core_rng: SimRng::new(options.seed, Stream::Core(index)),
                persisted_ring_seq: 0,
                next_counter: 0,
                timer_at: None,
                next_load_at: None,
                queue_full: false,
                last_regular: None,
            });
        }
        let net = Network::new(options.net, SimRng::new(options.seed, Stream::Network));
        let mut sim = Sim {
            checker: Checker::new(&[]),
            options,
            cfg,
            now_ns: 0,
            nodes,
            net,
            stats: SimStats::default(),
            steps_at_now: 0,
            pending_violation: None,
        };
        for id in ids {
            if !sim.options.start_stopped.contains(&id) {
                sim.start(id)?;
            }
        }
        Ok(sim)
    }

    fn index(&self, node: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == node)
    }

    fn trace(&self, what: impl FnOnce() -> String) {
        if self.options.trace {
            eprintln!(
                "{:>12.3}ms {}",
                self.now_ns as f64 / NS_PER_MS as f64,
                what()
            );
        }
    }

    // ---- accessors -------------------------------------------------------------------------

    /// Global simulated time in ms.
    pub fn now_ms(&self) -> u64 {
        self.now_ns / NS_PER_MS
    }

    /// Global simulated time in ns.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// The totem configuration every node runs (with the nodelist).
    pub fn totem_config(&self) -> &TotemConfig {
        &self.cfg
    }

    /// Configured node ids.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Nodes currently up.
    pub fn live_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.status == NodeStatus::Up)
            .map(|n| n.id)
            .collect()
    }

    /// Nodes that crashed and were not restarted.
    pub fn crashed_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.status == NodeStatus::Crashed)
            .map(|n| n.id)
            .collect()
    }

    /// Nodes that left (or never started).
    pub fn stopped_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.status == NodeStatus::Left)
            .map(|n| n.id)
            .collect()
    }

    /// Lifecycle status of `node`.
    pub fn status(&self, node: NodeId) -> Option<NodeStatus> {
        self.index(node).map(|i| self.nodes[i].status)
    }

    /// Protocol state of a live node.
    pub fn state(&self, node: NodeId) -> Option<State> {
        self.index(node)
            .and_then(|i| self.nodes[i].srp.as_ref())
            .map(|s| s.state())
    }

    /// Installed ring of a live node.
    pub fn ring_id(&self, node: NodeId) -> Option<RingId> {
        self.index(node)
            .and_then(|i| self.nodes[i].srp.as_ref())
            .map(|s| s.ring_id())
    }

    /// Members of a live node's installed ring.
    pub fn members(&self, node: NodeId) -> Option<Vec<NodeId>> {
        self.index(node)
            .and_then(|i| self.nodes[i].srp.as_ref())
            .map(|s| s.members().to_vec())
    }

    /// The last regular configuration `node` delivered in its current life.
    pub fn last_regular(&self, node: NodeId) -> Option<&LastConf> {
        self.index(node)
            .and_then(|i| self.nodes[i].last_regular.as_ref())
    }

    /// The ring every live node is operational in, with every live node as a member and its
    /// regular configuration delivered everywhere; `None` while that is not so.
    pub fn converged_ring(&self) -> Option<RingId> {
        let live = self.live_nodes();
        let first = *live.first()?;
        let ring = self.last_regular(first)?.ring_id;
        let all_in = live.iter().all(|&n| {
            self.state(n) == Some(State::Operational)
                && self.ring_id(n) == Some(ring)
                && self
                    .last_regular(n)
                    .is_some_and(|c| c.ring_id == ring && c.members == live)
        });
        all_in.then_some(ring)
    }

    /// The checkers' state.
    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// Loop counters.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// Network counters.
    pub fn net_stats(&self) -> NetStats {
        self.net.stats
    }

    // ---- verbs -----------------------------------------------------------------------------

    /// Cuts both directions between `a` and `b`.
    pub fn cut(&mut self, a: NodeId, b: NodeId) {
        self.trace(|| format!("net: cut {a} <-> {b}"));
        self.net.cut(a, b);
    }

    /// Cuts only `from` → `to`.
    pub fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        self.trace(|| format!("net: cut {from} -> {to}"));
        self.net.cut_one_way(from, to);
    }

    /// Cuts `node` off from every other node.
    pub fn isolate(&mut self, node: NodeId) {
        self.trace(|| format!("net: isolate {node}"));
        for other in self.node_ids() {
            self.net.cut(node, other);
        }
    }

    /// Cuts every path between the two groups.
    pub fn partition(&mut self, left: &[NodeId], right: &[NodeId]) {
        self.trace(|| format!("net: partition {left:?} | {right:?}"));
        for &a in left {
            for &b in right {
                self.net.cut(a, b);
            }
        }
    }

    /// Restores every path.
    pub fn heal(&mut self) {
        self.trace(|| "net: heal".to_string());
        self.net.heal();
    }

    /// Changes the network behaviour for packets sent from now on.
    pub fn set_net(&mut self, options: NetOptions) {
        self.trace(|| format!("net: options {options:?}"));
        self.net.set_options(options);
    }

    /// Whether any path is cut.
    pub fn is_partitioned(&self) -> bool {
        self.net.is_partitioned()
    }

    /// Changes the client load from now on.
    pub fn set_load(&mut self, load: LoadOptions) {
        self.options.load = load;
        for i in 0..self.nodes.len() {
            self.schedule_load(i);
        }
    }

    /// Stops `node` without a word to its peers; it keeps only its persisted ring seq.
    pub fn crash(&mut self, node: NodeId) {
        let Some(i) = self.index(node) else { return };
        if self.nodes[i].status != NodeStatus::Up {
            return;
        }
        self.trace(|| format!("n{node}: crash"));
        self.stop(i, NodeStatus::Crashed);
    }

    fn stop(&mut self, i: usize, status: NodeStatus) {
        let n = &mut self.nodes[i];
        n.status = status;
        n.srp = None;
        n.timer_at = None;
        n.next_load_at = None;
        n.queue_full = false;
        n.last_regular = None;
        self.checker.stopped(n.id);
    }

    /// Starts a crashed node again with its persisted ring seq.
    pub fn restart(&mut self, node: NodeId) -> Result<(), SimError> {
        match self.status(node) {
            Some(NodeStatus::Crashed) => self.start(node),
            _ => Ok(()),
        }
    }

    /// Starts a node that left (or never started).
    pub fn join(&mut self, node: NodeId) -> Result<(), SimError> {
        match self.status(node) {
            Some(NodeStatus::Left) => self.start(node),
            _ => Ok(()),
        }
    }

    fn start(&mut self, node: NodeId) -> Result<(), SimError> {
        let Some(i) = self.index(node) else {
            return Ok(());
        };
        let now = self.nodes[i].clock.local(self.now_ns);
        let seed = self.nodes[i].core_rng.next_u64();
        let persisted = self.nodes[i].persisted_ring_seq;
        self.trace(|| format!("n{node}: start (persisted ring seq {persisted:#x})"));
        let srp = crate::totem::Srp::new(self.cfg.clone(), node, seed, persisted, now)
            .map_err(|source| SimError::Config { node, source })?;
        let n = &mut self.nodes[i];
        n.srp = Some(srp);
        n.status = NodeStatus::Up;
        self.checker.started(node);
        self.schedule_load(i);
        // A violation while starting surfaces at the next step.
        if let Err(v) = self.drain(i) {
            self.pending_violation.get_or_insert(v);
        }
        Ok(())
    }

    /// Clean leave: the core tells its peers, then the node stops.
    pub fn leave(&mut self, node: NodeId) -> Result<(), Violation> {
        let Some(i) = self.index(node) else {
            return Ok(());
        };
        if self.nodes[i].status != NodeStatus::Up {
            return Ok(());
        }
        self.trace(|| format!("n{node}: leave"));
        let now = self.nodes[i].clock.local(self.now_ns);
        if let Some(srp) = self.nodes[i].srp.as_mut() {
            srp.leave(now);
        }
        let drained = self.drain(i);
        self.stop(i, NodeStatus::Left);
        drained
    }

    /// Hands `node` a (possibly wrong) "peer unreachable" hint about `peer`.
    pub fn hint_unreachable(&mut self, node: NodeId, peer: NodeId) -> Result<(), Violation> {
        let Some(i) = self.index(node) else {
            return Ok(());
        };
        let now = self.nodes[i].clock.local(self.now_ns);
        self.trace(|| format!("n{node}: hint {peer} unreachable"));
        let Some(srp) = self.nodes[i].srp.as_mut() else {
            return Ok(());
        };
        srp.peer_unreachable(now, peer);
        self.drain(i)
    }

    /// Hands `node` a (possibly wrong) "path to `peer` changed" hint.
    pub fn hint_path_changed(&mut self, node: NodeId, peer: NodeId) -> Result<(), Violation> {
        let Some(i) = self.index(node) else {
            return Ok(());
        };
        let now = self.nodes[i].clock.local(self.now_ns);
        self.trace(|| format!("n{node}: hint path to {peer} changed"));
        let Some(srp) = self.nodes[i].srp.as_mut() else {
            return Ok(());
        };
        srp.path_changed(now, peer);
        self.drain(i)
    }

    /// Submits a client message of `len` bytes at `node` now; `Ok(None)` if the core refused it
    /// for back-pressure or because the node is down.
    pub fn submit(
        &mut self,
        node: NodeId,
        len: usize,
        order: Order,
    ) -> Result<Option<MsgId>, Violation> {
        let Some(i) = self.index(node) else {
            return Ok(None);
        };
        self.submit_at(i, len, order)
    }

    fn submit_at(
        &mut self,
        i: usize,
        len: usize,
        order: Order,
    ) -> Result<Option<MsgId>, Violation> {
        let n = &mut self.nodes[i];
        let node = n.id;
        let now = n.clock.local(self.now_ns);
        let Some(srp) = n.srp.as_mut() else {
            return Ok(None);
        };
        let id = MsgId {
            sender: node,
            counter: n.next_counter,
        };
        let safe = order == Order::Safe;
        let payload = make_payload(id, safe, len);
        match srp.submit(now, &payload, order) {
            Ok(()) => {
                n.next_counter += 1;
                self.checker.submitted(node, id, safe);
                self.trace(|| format!("n{node}: submit {id} {order:?} {}B", payload.len()));
                self.drain(i)?;
                Ok(Some(id))
            }
            Err(SubmitError::QueueFull) => {
                n.queue_full = true;
                self.stats.queue_full += 1;
                self.drain(i)?;
                Ok(None)
            }
            Err(SubmitError::TooLarge) if payload.len() <= PAYLOAD_MAX_BYTES => {
                Err(Violation::Core {
                    node,
                    what: format!("refused a {}-byte message as too large", payload.len()),
                })
            }
            Err(_) => Ok(None),
        }
    }

    // ---- the loop --------------------------------------------------------------------------

    fn next_event(&self) -> Option<(u64, Next)> {
        let mut best: Option<(u64, Next)> = self.net.next_arrival().map(|t| (t, Next::Packet));
        let mut consider = |t: u64, next: Next| {
            if !matches!(best, Some((b, _)) if b <= t) {
                best = Some((t, next));
            }
        };
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(t) = n.timer_at {
                consider(t, Next::Timer(i));
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(t) = n.next_load_at {
                consider(t, Next::Load(i));
            }
        }
        best
    }

    /// Runs one event no later than `deadline_ns`; `Ok(false)` if there was none.
    pub fn step(&mut self, deadline_ns: u64) -> Result<bool, Violation> {
        if let Some(v) = self.pending_violation.take() {
            return Err(v);
        }
        let Some((at, next)) = self.next_event() else {
            return Ok(false);
        };
        if at > deadline_ns {
            return Ok(false);
        }
        if at > self.now_ns {
            self.now_ns = at;
            self.steps_at_now = 0;
        }
        self.steps_at_now += 1;
        if self.steps_at_now > STEPS_AT_ONE_INSTANT_MAX {
            return Err(Violation::Liveness {
                what: format!("{STEPS_AT_ONE_INSTANT_MAX} steps without time advancing"),
            });
        }
        self.stats.steps += 1;
        match next {
            Next::Packet => self.deliver_packet(),
            Next::Timer(i) => self.fire_timer(i),
            Next::Load(i) => self.load_tick(i),
        }
    }

    fn deliver_packet(&mut self) -> Result<bool, Violation> {
        let Some(packet) = self.net.pop_arrived(self.now_ns) else {
            return Ok(true);
        };
        let Some(i) = self.index(packet.to) else {
            return Ok(true);
        };
        let n = &mut self.nodes[i];
        let now = n.clock.local(self.now_ns);
        let Some(srp) = n.srp.as_mut() else {
            return Ok(true);
        };
        let result = srp.handle_frame(now, packet.from, &packet.frame);
        if self.options.trace {
            let body = crate::totem::wire::Frame::decode(&packet.frame)
                .map(|f| format!("{:?}", f.body))
                .unwrap_or_else(|e| format!("undecodable: {e}"));
            let body: String = body.chars().take(300).collect();
            self.trace(|| format!("n{} <- n{}: {body}", packet.to, packet.from));
        }
        if let Err(e) = result {
            self.stats.decode_errors += 1;
            // Every frame in the simulator was encoded by a core: refusing one is a core bug.
            return Err(Violation::Core {
                node: packet.to,
                what: format!("refused a frame: {e}"),
            });
        }
        self.drain(i)?;
        Ok(true)
    }

    fn fire_timer(&mut self, i: usize) -> Result<bool, Violation> {
        let n = &mut self.nodes[i];
        n.timer_at = None;
        let now = n.clock.local(self.now_ns);
        if let Some(srp) = n.srp.as_mut() {
            srp.handle_timeout(now);
            self.drain(i)?;
        }
        Ok(true)
    }

    fn load_tick(&mut self, i: usize) -> Result<bool, Violation> {
        self.nodes[i].next_load_at = None;
        if self.nodes[i].status == NodeStatus::Up && !self.nodes[i].queue_full {
            let load = self.options.load;
            let rng = &mut self.nodes[i].load_rng;
            let (len, order) = load.draw(rng);
            self.submit_at(i, len, order)?;
        }
        self.schedule_load(i);
        Ok(true)
    }

    fn schedule_load(&mut self, i: usize) {
        let load = self.options.load;
        let n = &mut self.nodes[i];
        n.next_load_at = None;
        if n.status != NodeStatus::Up || load.rate_hz <= 0.0 {
            return;
        }
        let gap_ns = n.load_rng.exp(1e9 / load.rate_hz).max(1.0) as u64;
        n.next_load_at = Some(self.now_ns.saturating_add(gap_ns));
    }

    /// Drains node `i`'s actions into the network and the checkers, then re-reads its timer.
    fn drain(&mut self, i: usize) -> Result<(), Violation> {
        let node = self.nodes[i].id;
        let mut actions = Vec::new();
        let (state, ring) = {
            let Some(srp) = self.nodes[i].srp.as_mut() else {
                return Ok(());
            };
            while let Some(a) = srp.poll_action() {
                actions.push(a);
            }
            (srp.state(), srp.ring_id())
        };
        for action in actions {
            self.apply(i, node, state, ring, action)?;
        }
        let n = &mut self.nodes[i];
        n.timer_at = n
            .srp
            .as_ref()
            .and_then(|s| s.poll_timeout())
            .map(|t| n.clock.global_at(t).max(self.now_ns));
        Ok(())
    }

    fn apply(
        &mut self,
        i: usize,
        node: NodeId,
        state: State,
        ring: RingId,
        action: Action,
    ) -> Result<(), Violation> {
        match action {
            Action::Send { to, frame } => {
                let frame: Rc<[u8]> = Rc::from(frame);
                match to {
                    Dest::Node(peer) => self.net.send(self.now_ns, node, peer, frame),
                    Dest::All => {
                        for peer in 1..=self.options.node_count {
                            if peer != node {
                                self.net.send(self.now_ns, node, peer, Rc::clone(&frame));
                            }
                        }
                    }
                }
            }
            Action::Deliver(d) => {
                let fully_regular = state == State::Operational && d.ring_id == ring;
                let r = Ring {
                    rep: d.ring_id.rep,
                    seq: d.ring_id.seq,
                };
                self.trace(|| {
                    let id = super::workload::check_payload(&d.payload).map(|p| p.id.to_string());
                    format!(
                        "n{node}: deliver {} {:?} from {} ring {}",
                        id.unwrap_or_default(),
                        d.order,
                        d.sender,
                        d.ring_id
                    )
                });
                self.stats.delivered += 1;
                if self.options.checks {
                    self.checker.delivered(
                        node,
                        d.sender,
                        r,
                        d.order == Order::Safe,
                        fully_regular,
                        &d.payload,
                    )?;
                }
            }
            Action::Conf(c) => {
                self.trace(|| {
                    format!(
                        "n{node}: conf {:?} {} members {:?} left {:?} joined {:?}",
                        c.kind, c.ring_id, c.members, c.left, c.joined
                    )
                });
                let r = Ring {
                    rep: c.ring_id.rep,
                    seq: c.ring_id.seq,
                };
                let phase = match c.kind {
                    ConfKind::Transitional => ConfPhase::Transitional,
                    ConfKind::Regular => ConfPhase::Regular,
                };
                self.checker.conf(node, phase, r, &c.members)?;
                if phase == ConfPhase::Regular {
                    self.nodes[i].last_regular = Some(LastConf {
                        ring_id: c.ring_id,
                        members: c.members,
                        at_ns: self.now_ns,
                    });
                }
            }
            Action::PersistRingSeq(seq) => {
                let n = &mut self.nodes[i];
                if seq < n.persisted_ring_seq {
                    return Err(Violation::Core {
                        node,
                        what: format!(
                            "persisted ring seq went back from {:#x} to {seq:#x}",
                            n.persisted_ring_seq
                        ),
                    });
                }
                n.persisted_ring_seq = seq;
            }
            Action::SubmitReady => {
                self.nodes[i].queue_full = false;
            }
        }
        Ok(())
    }

    /// Runs every event up to `ms` milliseconds from now.
    pub fn run_for(&mut self, ms: u64) -> Result<(), Violation> {
        let deadline = self.now_ns.saturating_add(ms.saturating_mul(NS_PER_MS));
        while self.step(deadline)? {}
        self.now_ns = self.now_ns.max(deadline);
        Ok(())
    }

    /// Runs until `pred` holds (checked after every step) or `bound_ms` pass; returns whether it
    /// held, and leaves the clock at the step where it did.
    pub fn run_until(
        &mut self,
        mut pred: impl FnMut(&Sim) -> bool,
        bound_ms: u64,
    ) -> Result<bool, Violation> {
        let deadline = self
            .now_ns
            .saturating_add(bound_ms.saturating_mul(NS_PER_MS));
        loop {
            if pred(self) {
                return Ok(true);
            }
            if !self.step(deadline)? {
                self.now_ns = self.now_ns.max(deadline);
                return Ok(pred(self));
            }
        }
    }
}
