//! The SRP state machine: public driving API, timers, and OPERATIONAL/RECOVERY token handling
//! (ordering, retransmission, flow control, agreed and safe delivery). Membership formation
//! (GATHER, COMMIT, RECOVERY entry and ring installation) lives in [`membership`].

mod membership;

use super::config::{ConfigError, TotemConfig, MAX_MESSAGE_BYTES};
use super::frag::{Packer, Reassembler};
use super::ring::Ring;
use super::wire::{
    Body, CommitToken, DecodeError, Frame, Mcast, Token, MCAST_OVERHEAD_MAX, RETRANSMIT_ENTRIES_MAX,
};
use super::{Action, Delivery, Dest, Order, RingId, State, SubmitError};
use crate::time::MonoTime;
use crate::NodeId;
use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

/// Most messages a ring may have outstanding between the token's aru and its seq; senders stop
/// beyond it so a lagging member bounds everyone's buffers (own choice: 20 full windows).
pub(crate) const MAX_SEQ_AHEAD_OF_ARU: u64 = 1000;

/// The timers, one slot each (quinn style: a fixed array, the next deadline is the minimum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// No token for the token loss timeout: form a new membership.
    TokenLoss,
    /// Resend the token (or commit token) we passed on.
    TokenRetransmit,
    /// The representative releases the token it holds on an idle ring.
    Hold,
    /// GATHER: resend the join.
    Join,
    /// GATHER: a join delayed by `send_join` is due.
    SendJoin,
    /// GATHER: give up waiting for consensus.
    Consensus,
}

const TIMER_COUNT: usize = 6;
const ALL_TIMERS: [Timer; TIMER_COUNT] = [
    Timer::TokenLoss,
    Timer::TokenRetransmit,
    Timer::Hold,
    Timer::Join,
    Timer::SendJoin,
    Timer::Consensus,
];

#[derive(Debug, Default)]
struct Timers([Option<MonoTime>; TIMER_COUNT]);

impl Timers {
    fn set(&mut self, t: Timer, at: MonoTime) {
        self.0[t as usize] = Some(at);
    }
    fn cancel(&mut self, t: Timer) {
        self.0[t as usize] = None;
    }
    fn is_set(&self, t: Timer) -> bool {
        self.0[t as usize].is_some()
    }
    fn next(&self) -> Option<MonoTime> {
        self.0.iter().flatten().min().copied()
    }
    /// Clears and returns the timer if it is due.
    fn take_due(&mut self, t: Timer, now: MonoTime) -> bool {
        match self.0[t as usize] {
            Some(at) if at <= now => {
                self.0[t as usize] = None;
                true
            }
            _ => false,
        }
    }
}

/// Token bookkeeping for the ring the token currently circulates on.
#[derive(Debug, Default)]
struct TokenState {
    /// Hop counter of the last token accepted (duplicates are dropped).
    last_token_seq: Option<u64>,
    /// Token visits to this node on this ring.
    visits: u64,
    /// Token aru and seq as forwarded at the previous visit.
    prev_aru: u64,
    prev_seq: u64,
    /// Rotations during which the ring's seq did not change.
    idle_rotations: u32,
    /// When the ring was last seen busy (its seq moved, or a node asked for the token).
    busy_at: MonoTime,
    /// Messages this node multicast at its previous visit (its share of `fcc`).
    my_last_sent: u32,
    /// Backlog this node reported at its previous visit.
    my_last_backlog: u32,
    /// Consecutive visits with our aru stuck below the ring's seq.
    fail_recv_count: u32,
    last_visit_my_aru: u64,
    /// The token held by the representative on an idle ring.
    held: Option<Token>,
    /// Last token-like frame passed on, its destination and the ring seq it carried.
    sent: Option<(NodeId, Vec<u8>, u64)>,
    /// RECOVERY: this node set the token's retrans_flg.
    set_retrans_flg: bool,
}

/// A membership being formed (COMMIT, RECOVERY).
#[derive(Debug)]
struct Forming {
    ring_id: RingId,
    members: Vec<NodeId>,
    /// Hop counter of the last commit token accepted.
    last_ct_seq: u64,
    /// RECOVERY state, once entered.
    recovery: Option<Recovery>,
}

/// RECOVERY: what the old ring needs before the new one is installed.
#[derive(Debug)]
struct Recovery {
    /// The last installed ring, whose messages are being completed.
    old: Ring,
    /// Old-ring messages this node still has to multicast on the new ring.
    retrans: VecDeque<Mcast>,
    /// Members coming from the same old ring (the transitional configuration).
    trans_members: Vec<NodeId>,
    /// Highest old-ring seq some survivor knew every old member had.
    old_safe: u64,
    /// Representative: the first token of the new ring was sent.
    first_token_sent: bool,
}

/// One node's Totem single-ring protocol instance.
///
/// Driving order: after [`Srp::new`] and after every `handle_*`, `submit`, `leave` or
/// `peer_unreachable` call, drain [`Srp::poll_action`] until `None`, then arm a timer for
/// [`Srp::poll_timeout`] and call [`Srp::handle_timeout`] when it passes. Times must not go
/// backwards. Spurious `handle_timeout` calls are harmless.
#[derive(Debug)]
pub struct Srp {
    cfg: TotemConfig,
    me: NodeId,
    rng: u64,
    state: State,
    /// `leave` was called: the instance is inert.
    left_cluster: bool,
    /// The ring the token circulates on: the installed ring, or in RECOVERY the new ring.
    ring: Ring,
    tk: TokenState,
    last_merge_detect: Option<MonoTime>,
    /// Every member installed the current ring (the token came round without the install flag).
    /// Until then, merge requests from outsiders wait in `pending_*` so that a fresh ring is not
    /// torn down before all its members installed it.
    settled: bool,
    pending_proc: BTreeSet<NodeId>,
    pending_failed: BTreeSet<NodeId>,
    /// Highest ring seq heard of, and the one last persisted.
    highest_ring_seq: u64,
    persisted_seq: u64,
    /// GATHER sets.
    proc_set: BTreeSet<NodeId>,
    failed_set: BTreeSet<NodeId>,
    consensus: BTreeSet<NodeId>,
    /// GATHER: nodes a join was received from during the current consensus period, and nodes
    /// that disagreed at the previous consensus expiry.
    heard: BTreeSet<NodeId>,
    strikes: BTreeSet<NodeId>,
    forming: Option<Forming>,
    packer: Packer,
    submit_blocked: bool,
    reassembler: Reassembler,
    timers: Timers,
    actions: VecDeque<Action>,
    /// Frames addressed to this node itself (a ring of one), handled after the current input.
    loopback: VecDeque<Body>,
}

impl Srp {
    /// A node starting up: it enters GATHER and forms a ring with whoever answers (alone if
    /// nobody does). `last_ring_seq` is the value of the last [`Action::PersistRingSeq`] (0 on
    /// first start); every ring this node joins will have a larger seq.
    pub fn new(
        cfg: TotemConfig,
        me: NodeId,
        seed: u64,
        last_ring_seq: u64,
        now: MonoTime,
    ) -> Result<Srp, ConfigError> {
        cfg.validate()?;
        if me == 0 {
            return Err(ConfigError::ZeroNodeId);
        }
        let mut placeholder = Ring::new(
            RingId {
                rep: me,
                seq: last_ring_seq.saturating_add(1),
            },
            Vec::new(),
        );
        placeholder.placeholder = true;
        let mut srp = Srp {
            cfg,
            me,
            rng: seed ^ 0x9E37_79B9_7F4A_7C15,
            state: State::Gather,
            left_cluster: false,
            ring: placeholder,
            tk: TokenState::default(),
            last_merge_detect: None,
            settled: false,
            pending_proc: BTreeSet::new(),
            pending_failed: BTreeSet::new(),
            highest_ring_seq: last_ring_seq,
            persisted_seq: last_ring_seq,
            proc_set: BTreeSet::from([me]),
            failed_set: BTreeSet::new(),
            consensus: BTreeSet::new(),
            heard: BTreeSet::new(),
            strikes: BTreeSet::new(),
            forming: None,
            packer: Packer::default(),
            submit_blocked: false,
            reassembler: Reassembler::default(),
            timers: Timers::default(),
            actions: VecDeque::new(),
            loopback: VecDeque::new(),
        };
        srp.start_gather(now, &[], &[], "startup");
        srp.run_loopback(now);
        Ok(srp)
    }

    /// A frame received from `from` (as authenticated by the transport).
    pub fn handle_frame(
        &mut self,
        now: MonoTime,
        from: NodeId,
        frame: &[u8],
    ) -> Result<(), DecodeError> {
        let frame = Frame::decode(frame)?;
        if frame.sender != from {
            return Err(DecodeError::SenderMismatch {
                claimed: frame.sender,
                from,
            });
        }
        if self.left_cluster || from == self.me {
            return Ok(());
        }
        self.dispatch(now, from, frame.body);
        self.run_loopback(now);
        Ok(())
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: MonoTime) {
        if self.left_cluster {
            return;
        }
        for t in ALL_TIMERS {
            if self.timers.take_due(t, now) {
                self.fire(now, t);
            }
        }
        self.run_loopback(now);
    }

    /// Queues a client message (any size up to 1 MiB) for total-order multicast.
    pub fn submit(
        &mut self,
        now: MonoTime,
        payload: &[u8],
        order: Order,
    ) -> Result<(), SubmitError> {
        if self.left_cluster {
            return Err(SubmitError::NotOperational);
        }
        if payload.len() > MAX_MESSAGE_BYTES {
            return Err(SubmitError::TooLarge);
        }
        if self.packer.len() >= self.cfg.submit_queue_limit {
            self.submit_blocked = true;
            return Err(SubmitError::QueueFull);
        }
        let was_empty = self.packer.is_empty();
        self.packer.push(payload.to_vec(), order);
        if self.state == State::Operational {
            if let Some(tok) = self.tk.held.take() {
                self.timers.cancel(Timer::Hold);
                self.forward_token(now, tok);
            } else if was_empty
                && self.tk.idle_rotations >= self.cfg.seqno_unchanged_const
                && self.idle_long_enough(now, self.cfg.idle_before_hold_min_ms / 2)
            {
                // The representative holds only after MORE than seqno_unchanged_const idle
                // visits (see `on_token`), and no node's count lags the representative's by
                // more than one visit, so every node that may find the token held sends the
                // cancel (corosync: `my_seq_unchanged >= seqno_unchanged_const` on non-reps,
                // `>` on the rep, `exec/totemsrp.c` message_handler_orf_token). The same holds
                // for the idle time (`idle_before_hold_min_ms`), which nodes see start within
                // one rotation of each other: a rotation longer than half of it makes the
                // rotation count the stricter rule, so half of it is a safe margin.
                self.send(
                    Dest::All,
                    Body::TokenHoldCancel {
                        ring_id: self.ring.id,
                    },
                );
            }
        }
        self.run_loopback(now);
        Ok(())
    }

    /// Clean shutdown: tells the peers this node leaves so they re-form at once, then goes inert.
    pub fn leave(&mut self, now: MonoTime) {
        if self.left_cluster {
            return;
        }
        let _ = now;
        tracing::info!("totem: node {} leaving the cluster", self.me);
        let mut proc_list: BTreeSet<NodeId> = self.proc_set.clone();
        proc_list.extend(self.ring.members.iter().copied());
        let join = super::wire::Join {
            ring_seq: self.highest_ring_seq,
            proc_list: proc_list.into_iter().collect(),
            failed_list: vec![self.me],
        };
        self.send(Dest::All, Body::Join(join));
        self.left_cluster = true;
        self.timers = Timers::default();
        self.tk.held = None;
        self.loopback.clear();
    }

    /// Transport hint: `node` is unreachable (e.g. ICMP port unreachable). Starts membership
    /// formation early when the node is the one the token or the consensus waits for; a wrong
    /// hint only excludes a live node until it merges back.
    pub fn peer_unreachable(&mut self, now: MonoTime, node: NodeId) {
        if self.left_cluster || node == self.me {
            return;
        }
        let relevant = match self.state {
            State::Operational => self.successor() == node && self.ring.members.contains(&node),
            State::Gather => {
                self.proc_set.contains(&node)
                    && !self.failed_set.contains(&node)
                    && !self.consensus.contains(&node)
            }
            State::Commit | State::Recovery => self.forming.as_ref().is_some_and(|f| {
                f.members.contains(&node) && successor_in(&f.members, self.me) == node
            }),
        };
        if relevant {
            tracing::info!("totem: node {node} reported unreachable, forming new configuration");
            self.start_gather(now, &[], &[node], "peer unreachable");
            self.run_loopback(now);
        }
    }

    /// A transport hint: the path to `node` just failed over (a link to it turned suspect or
    /// went down while another carries on), so a frame sent to it shortly before may be lost.
    /// When the token (or commit token) this node passed last went to `node` and nothing shows
    /// it arrived yet, it is resent now instead of after `token_retransmit` (869 ms with
    /// corosync's defaults on three nodes): a cut link then stalls the ring for the failover
    /// detection, not for the retransmit timeout. Lost multicasts need nothing extra: the next
    /// token's retransmit list recovers them. Harmless when wrong: a duplicate token is
    /// discarded by its token sequence, and nothing else changes.
    pub fn path_changed(&mut self, now: MonoTime, node: NodeId) {
        if self.left_cluster || node == self.me {
            return;
        }
        let Some((to, frame, _)) = self.tk.sent.clone() else {
            return;
        };
        if to != node || !self.timers.is_set(Timer::TokenRetransmit) {
            return;
        }
        tracing::debug!("totem: path to node {node} changed, resending the token now");
        self.actions.push_back(Action::Send {
            to: Dest::Node(to),
            frame,
        });
        self.timers.set(
            Timer::TokenRetransmit,
            now.plus_ms(self.cfg.effective_token_retransmit_ms()),
        );
    }

    /// The next instant [`Srp::handle_timeout`] must be called, if any.
    pub fn poll_timeout(&self) -> Option<MonoTime> {
        if self.left_cluster {
            None
        } else {
            self.timers.next()
        }
    }

    /// The next action to carry out; drain until `None` after every input.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Current protocol state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The installed ring (before the first ring forms: a placeholder id naming this node).
    pub fn ring_id(&self) -> RingId {
        self.installed().id
    }

    /// Members of the installed ring, ascending (empty before the first ring forms).
    pub fn members(&self) -> &[NodeId] {
        &self.installed().members
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.me
    }

    /// Whether [`Srp::leave`] was called.
    pub fn has_left(&self) -> bool {
        self.left_cluster
    }

    /// Client messages waiting to be multicast.
    pub fn queued_messages(&self) -> usize {
        self.packer.len()
    }

    fn installed(&self) -> &Ring {
        match self.forming.as_ref().and_then(|f| f.recovery.as_ref()) {
            Some(r) => &r.old,
            None => &self.ring,
        }
    }

    /// Whether the ring has been idle for `min_ms` (see `TotemConfig::idle_before_hold_min_ms`).
    /// A ring of one passes its token to itself within one call, at one `now`: there only the
    /// rotation count applies, or the token would circle forever.
    fn idle_long_enough(&self, now: MonoTime, min_ms: u64) -> bool {
        self.ring.members.len() <= 1
            || now.saturating_since(self.tk.busy_at) >= Duration::from_millis(min_ms)
    }

    // ----- plumbing -----

    fn send(&mut self, to: Dest, body: Body) {
        if to == Dest::Node(self.me) {
            self.loopback.push_back(body);
            return;
        }
        let frame = Frame {
            sender: self.me,
            body,
        }
        .encode();
        self.actions.push_back(Action::Send { to, frame });
    }

    fn run_loopback(&mut self, now: MonoTime) {
        while let Some(body) = self.loopback.pop_front() {
            if self.left_cluster {
                self.loopback.clear();
                return;
            }
            self.dispatch(now, self.me, body);
        }
    }

    fn dispatch(&mut self, now: MonoTime, from: NodeId, body: Body) {
        if !plausible(&body) {
            tracing::debug!("totem: dropping implausible frame from node {from}");
            return;
        }
        match body {
            Body::Token(t) => self.on_token(now, t),
            Body::Mcast(m) => self.on_mcast(now, from, m),
            Body::MergeDetect { ring_id } => self.on_merge_detect(now, from, ring_id),
            Body::Join(j) => self.on_join(now, from, j),
            Body::CommitToken(c) => self.on_commit_token(now, c),
            Body::TokenHoldCancel { ring_id } => {
                if self.state == State::Operational && ring_id == self.ring.id {
                    // Someone has a message: the ring is no longer idle for anybody, so a
                    // representative that has not held the token yet does not start to when it
                    // arrives (the cancel may overtake the token); as corosync's
                    // message_handler_token_hold_cancel (`my_seq_unchanged = 0`).
                    self.tk.idle_rotations = 0;
                    self.tk.busy_at = now;
                    if let Some(tok) = self.tk.held.take() {
                        self.timers.cancel(Timer::Hold);
                        self.forward_token(now, tok);
                    }
                }
            }
        }
    }

    fn fire(&mut self, now: MonoTime, t: Timer) {
        match t {
            Timer::TokenLoss => {
                if self.state != State::Gather {
                    tracing::info!(
                        "A processor failed, forming new configuration: token timed out ({}ms), waiting {}ms for consensus.",
                        self.cfg.token_loss_ms(),
                        self.cfg.effective_consensus_ms()
                    );
                    self.start_gather(now, &[], &[], "token loss");
                }
            }
            Timer::TokenRetransmit => {
                if let Some((to, frame, _)) = self.tk.sent.clone() {
                    self.actions.push_back(Action::Send {
                        to: Dest::Node(to),
                        frame,
                    });
                    self.timers.set(
                        Timer::TokenRetransmit,
                        now.plus_ms(self.cfg.effective_token_retransmit_ms()),
                    );
                }
            }
            Timer::Hold => {
                if let Some(tok) = self.tk.held.take() {
                    self.forward_token(now, tok);
                }
            }
            Timer::Join => self.on_join_timer(now),
            Timer::SendJoin => self.send_join_now(),
            Timer::Consensus => self.on_consensus_timeout(now),
        }
    }

    fn next_random(&mut self) -> u64 {
        // SplitMix64: the seed drives the only randomness (send_join jitter).
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn successor(&self) -> NodeId {
        successor_in(&self.ring.members, self.me)
    }

    // ----- ordering: token and multicast -----

    fn on_token(&mut self, now: MonoTime, mut tok: Token) {
        if !matches!(self.state, State::Operational | State::Recovery)
            || tok.ring_id != self.ring.id
        {
            return;
        }
        if self
            .tk
            .last_token_seq
            .is_some_and(|last| tok.token_seq <= last)
        {
            return; // a retransmitted copy of a token already handled
        }
        self.tk.last_token_seq = Some(tok.token_seq);
        self.tk.sent = None;
        self.timers.cancel(Timer::TokenRetransmit);
        self.timers
            .set(Timer::TokenLoss, now.plus_ms(self.cfg.token_loss_ms()));
        let is_rep = self.me == self.ring.id.rep;
        if tok.install {
            if self.state == State::Recovery {
                self.install(now);
            } else if is_rep {
                tok.install = false; // a full rotation: everybody installed
                self.settled = true;
            }
        } else if self.state == State::Operational {
            self.settled = true;
        }
        if self.settled && self.state == State::Operational && !self.pending_proc.is_empty() {
            self.start_gather(now, &[], &[], "merge with other nodes");
            return;
        }
        if self.state == State::Recovery && is_rep && self.recovery_complete(&tok) {
            self.install(now);
            tok.install = true;
        }
        let recovering = self.state == State::Recovery;

        // Retransmissions others asked for.
        let mut sent: u32 = 0;
        let mut rtr = Vec::with_capacity(tok.rtr.len());
        for s in std::mem::take(&mut tok.rtr) {
            if let Some(m) = self.ring.buf.get(&s) {
                let m = m.clone();
                self.send(Dest::All, Body::Mcast(m));
                sent += 1;
            } else if !rtr.contains(&s) {
                rtr.push(s);
            }
        }

        // New messages, within the flow-control window.
        let others = tok.fcc.saturating_sub(self.tk.my_last_sent);
        let window_room = self
            .cfg
            .window_size
            .saturating_sub(others)
            .saturating_sub(sent);
        let unstable_room = MAX_SEQ_AHEAD_OF_ARU.saturating_sub(tok.seq.saturating_sub(tok.aru));
        let allowed = u64::from(self.cfg.max_messages.saturating_sub(sent).min(window_room))
            .min(unstable_room);
        let budget = self
            .cfg
            .max_payload_bytes
            .saturating_sub(MCAST_OVERHEAD_MAX);
        for _ in 0..allowed {
            let next = if recovering {
                self.next_recovery_message(tok.seq + 1)
            } else {
                self.next_client_message(tok.seq + 1, budget)
            };
            let Some(m) = next else { break };
            tok.seq += 1;
            self.ring.insert(m.seq, m.clone());
            self.send(Dest::All, Body::Mcast(m));
            sent += 1;
        }
        tok.fcc = others.saturating_add(sent);
        self.tk.my_last_sent = sent;
        let backlog = u32::try_from(self.packer.len()).unwrap_or(u32::MAX);
        tok.backlog = tok
            .backlog
            .saturating_sub(self.tk.my_last_backlog)
            .saturating_add(backlog);
        self.tk.my_last_backlog = backlog;
        if self.submit_blocked && self.packer.len() < self.cfg.submit_queue_limit {
            self.submit_blocked = false;
            self.actions.push_back(Action::SubmitReady);
        }

        // All-received-up-to (corosync's aru/aru_addr rule) and our retransmit requests.
        if self.ring.aru < tok.aru || tok.aru_addr == self.me || tok.aru_addr == 0 {
            tok.aru = self.ring.aru.min(tok.seq);
            tok.aru_addr = if tok.aru >= tok.seq { 0 } else { self.me };
        }
        let missing = self.ring.missing(tok.seq, RETRANSMIT_ENTRIES_MAX);
        if !missing.is_empty() {
            tracing::debug!("Retransmit List: {missing:?}");
        }
        for s in missing {
            if rtr.len() >= RETRANSMIT_ENTRIES_MAX {
                break;
            }
            if !rtr.contains(&s) {
                rtr.push(s);
            }
        }
        tok.rtr = rtr;

        // Safe point: every member had everything up to the lower aru of two consecutive visits.
        if self.tk.visits > 0 {
            let safe = self.tk.prev_aru.min(tok.aru);
            self.ring.safe_upto = self.ring.safe_upto.max(safe);
        }
        if tok.seq == self.tk.prev_seq && self.tk.visits > 0 {
            self.tk.idle_rotations = self.tk.idle_rotations.saturating_add(1);
        } else {
            self.tk.idle_rotations = 0;
            self.tk.busy_at = now;
        }
        self.tk.prev_aru = tok.aru;
        self.tk.prev_seq = tok.seq;
        self.tk.visits += 1;

        // Failed to receive: our aru has been stuck below the ring's seq for too long.
        if self.ring.aru < tok.seq && self.ring.aru == self.tk.last_visit_my_aru {
            self.tk.fail_recv_count += 1;
        } else {
            self.tk.fail_recv_count = 0;
        }
        self.tk.last_visit_my_aru = self.ring.aru;
        if self.tk.fail_recv_count >= self.cfg.fail_recv_const {
            tracing::warn!("FAILED TO RECEIVE");
            self.start_gather(now, &[], &[], "failed to receive");
            return;
        }

        if recovering {
            let pending = self
                .forming
                .as_ref()
                .and_then(|f| f.recovery.as_ref())
                .is_some_and(|r| !r.retrans.is_empty());
            if pending {
                tok.retrans_flg = true;
                self.tk.set_retrans_flg = true;
            } else if tok.retrans_flg && self.tk.set_retrans_flg {
                tok.retrans_flg = false;
                self.tk.set_retrans_flg = false;
            }
        } else {
            tok.retrans_flg = false;
        }

        let hold = self.state == State::Operational
            && is_rep
            && self.tk.idle_rotations > self.cfg.seqno_unchanged_const
            && self.idle_long_enough(now, self.cfg.idle_before_hold_min_ms)
            && self.packer.is_empty()
            && !tok.install
            && (!self.cfg.cancel_token_hold_on_retransmit || tok.rtr.is_empty());
        if hold {
            self.tk.held = Some(tok);
            self.timers
                .set(Timer::Hold, now.plus_ms(self.cfg.effective_hold_ms()));
        } else {
            self.forward_token(now, tok);
        }

        // Deliver once the token is on its way, as corosync does ("Deliver messages after token
        // has been transmitted to improve performance", exec/totemsrp.c): the next node starts
        // its visit while this one hands its deliveries to the application.
        if !recovering {
            self.deliver_ring();
            self.ring.free_stable();
            let merge_due = match self.last_merge_detect {
                None => true,
                Some(last) => now >= last.plus_ms(self.cfg.merge_ms),
            };
            if is_rep && merge_due {
                self.last_merge_detect = Some(now);
                self.send(
                    Dest::All,
                    Body::MergeDetect {
                        ring_id: self.ring.id,
                    },
                );
            }
        }
    }

    /// Representative in RECOVERY: over the last full rotation nobody multicast anything and every
    /// member had every recovery message, so all old-ring messages were exchanged.
    fn recovery_complete(&self, tok: &Token) -> bool {
        let own_pending = match self.forming.as_ref().and_then(|f| f.recovery.as_ref()) {
            Some(r) => !r.retrans.is_empty(),
            None => true,
        };
        self.tk.visits > 0
            && !own_pending
            && tok.rtr.is_empty()
            && tok.seq == self.tk.prev_seq
            && tok.aru == tok.seq
            && self.tk.prev_aru == tok.seq
            && self.ring.aru == tok.seq
    }

    fn forward_token(&mut self, now: MonoTime, mut tok: Token) {
        tok.token_seq = tok.token_seq.wrapping_add(1);
        let next = self.successor();
        if next != self.me {
            let frame = Frame {
                sender: self.me,
                body: Body::Token(tok.clone()),
            }
            .encode();
            self.tk.sent = Some((next, frame, tok.seq));
            self.timers.set(
                Timer::TokenRetransmit,
                now.plus_ms(self.cfg.effective_token_retransmit_ms()),
            );
        }
        self.send(Dest::Node(next), Body::Token(tok));
    }

    fn next_client_message(&mut self, seq: u64, budget: usize) -> Option<Mcast> {
        let (order, payload) = self.packer.next_packet(budget)?;
        Some(Mcast {
            ring_id: self.ring.id,
            seq,
            origin: self.me,
            order,
            encapsulated: None,
            payload,
        })
    }

    fn on_mcast(&mut self, now: MonoTime, from: NodeId, m: Mcast) {
        match self.state {
            State::Operational | State::Recovery if m.ring_id == self.ring.id => {
                if self
                    .tk
                    .sent
                    .as_ref()
                    .is_some_and(|(_, _, seq)| m.seq > *seq)
                {
                    // The token moved on: someone after us multicast with it.
                    self.tk.sent = None;
                    self.timers.cancel(Timer::TokenRetransmit);
                }
                let inner = m.encapsulated;
                let payload = if inner.is_some() && self.state == State::Recovery {
                    Some(m.payload.clone())
                } else {
                    None
                };
                let seq = m.seq;
                if self.ring.insert(seq, m) {
                    if let (Some(e), Some(payload)) = (inner, payload) {
                        self.store_recovered(e, payload);
                    }
                }
                if self.state == State::Operational {
                    self.deliver_ring();
                }
            }
            State::Operational => {
                let foreign =
                    !self.ring.members.contains(&from) || m.ring_id.seq > self.ring.id.seq;
                if foreign && m.ring_id.seq != 0 {
                    self.request_merge(now, from, &[from], &[], "foreign multicast");
                }
            }
            State::Gather | State::Commit => {
                if m.ring_id == self.ring.id && !self.ring.placeholder {
                    self.ring.insert(m.seq, m);
                }
            }
            State::Recovery => {}
        }
    }

    fn on_merge_detect(&mut self, now: MonoTime, from: NodeId, ring_id: RingId) {
        if self.state != State::Operational || ring_id == self.ring.id {
            return;
        }
        if !self.ring.members.contains(&from) || ring_id.seq > self.ring.id.seq {
            self.request_merge(now, from, &[from], &[], "merge detect");
        }
    }

    /// OPERATIONAL: `from` asks (by join, merge detect or multicast) to form a membership with
    /// `proc`. A member doing so abandoned the ring: gather now. An outsider waits until every
    /// member installed the ring.
    pub(super) fn request_merge(
        &mut self,
        now: MonoTime,
        from: NodeId,
        proc: &[NodeId],
        failed: &[NodeId],
        why: &str,
    ) {
        if self.settled || self.ring.members.contains(&from) {
            self.start_gather(now, proc, failed, why);
        } else {
            self.pending_proc
                .extend(proc.iter().copied().filter(|&n| n != 0));
            self.pending_failed
                .extend(failed.iter().copied().filter(|&n| n != self.me));
        }
    }

    /// Delivers the installed ring's messages in order: agreed ones when contiguous, safe ones
    /// once every member has them. Recovery carriers fill their slot and deliver nothing.
    fn deliver_ring(&mut self) {
        loop {
            let s = self.ring.delivered + 1;
            let Some(m) = self.ring.buf.get(&s) else {
                break;
            };
            if m.encapsulated.is_none() && m.order == Order::Safe && s > self.ring.safe_upto {
                break;
            }
            let deliverable = m.encapsulated.is_none();
            let (origin, order, payload) = (m.origin, m.order, m.payload.clone());
            assert!(s > self.ring.delivered, "delivery seq must increase");
            self.ring.delivered = s;
            if deliverable {
                self.deliver_packet(origin, self.ring.id, order, &payload);
            }
        }
    }

    fn deliver_packet(&mut self, origin: NodeId, ring_id: RingId, order: Order, payload: &[u8]) {
        let mut done = Vec::new();
        self.reassembler
            .push(origin, payload, MAX_MESSAGE_BYTES, &mut done);
        for payload in done {
            self.actions.push_back(Action::Deliver(Delivery {
                sender: origin,
                ring_id,
                order,
                payload,
            }));
        }
    }

    fn store_commit_retransmit(&mut self, now: MonoTime, to: NodeId, ct: &CommitToken) {
        if to == self.me {
            return;
        }
        let frame = Frame {
            sender: self.me,
            body: Body::CommitToken(ct.clone()),
        }
        .encode();
        self.tk.sent = Some((to, frame, 0));
        self.timers.set(
            Timer::TokenRetransmit,
            now.plus_ms(self.cfg.effective_token_retransmit_ms()),
        );
    }
}

/// Sequence numbers (message and ring) beyond this are never reached by a real cluster (2^62:
/// 146 years at a billion per second); frames carrying them are dropped so arithmetic on them
/// cannot overflow.
const SEQ_LIMIT: u64 = 1 << 62;

/// Whether a decoded frame's numbers are in the range the protocol can reach.
fn plausible(body: &Body) -> bool {
    let ok = |v: u64| v < SEQ_LIMIT;
    match body {
        Body::Token(t) => {
            ok(t.ring_id.seq) && ok(t.seq) && t.aru <= t.seq && t.rtr.iter().all(|&s| ok(s))
        }
        Body::Mcast(m) => {
            ok(m.ring_id.seq)
                && ok(m.seq)
                && m.encapsulated
                    .as_ref()
                    .map_or(true, |e| ok(e.ring_id.seq) && ok(e.seq))
        }
        Body::MergeDetect { ring_id } | Body::TokenHoldCancel { ring_id } => ok(ring_id.seq),
        Body::Join(j) => ok(j.ring_seq),
        Body::CommitToken(c) => {
            ok(c.ring_id.seq)
                && c.entries.iter().all(|e| {
                    ok(e.old_ring_id.seq)
                        && ok(e.high_seq)
                        && e.aru <= e.high_seq
                        && e.safe_upto <= e.high_seq
                })
        }
    }
}

/// The node after `me` in ascending ring order (wrapping); `me` if alone or absent.
fn successor_in(members: &[NodeId], me: NodeId) -> NodeId {
    match members.iter().position(|&n| n == me) {
        Some(i) => members[(i + 1) % members.len()],
        None => members
            .iter()
            .copied()
            .find(|&n| n > me)
            .or_else(|| members.first().copied())
            .unwrap_or(me),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_wraps_in_ascending_order() {
        assert_eq!(successor_in(&[1, 3, 5], 1), 3);
        assert_eq!(successor_in(&[1, 3, 5], 5), 1);
        assert_eq!(successor_in(&[4], 4), 4);
        assert_eq!(successor_in(&[], 4), 4);
    }
}
