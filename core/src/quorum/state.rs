//! votequorum on one node as a sans-IO state machine.
//!
//! Inputs: membership changes from Totem ([`Votequorum::handle_membership`]), votequorum messages
//! delivered in agreed order, the sender's own included ([`Votequorum::handle_message`]),
//! quorum-device polls ([`Votequorum::qdevice_poll`]), run-time requests (`set_expected`,
//! `set_votes`, `leave`) and timers ([`Votequorum::handle_timeout`]). Outputs are drained with
//! [`Votequorum::poll_action`] after every input: messages to multicast through Totem and
//! quorum-change events; [`Votequorum::poll_timeout`] gives the next deadline and
//! [`Votequorum::status`] the `corosync-quorumtool -s` snapshot.
//!
//! The rules are corosync's `exec/votequorum.c` (REFERENCE.md §3): a node becomes a member when its
//! NodeInfo arrives in the current ring; leaving nodes are marked dead at the membership change;
//! quorum is recalculated when a NodeInfo changes something, when a reconfiguration is delivered,
//! when the last_man_standing window expires and when the ring's sync completes.
//!
//! The sync of a new ring completes when the NodeInfo of every member has been delivered in it
//! (corosync's sync barrier: every node sends its NodeInfo in `sync_process` and the service
//! activates only after all nodes passed the barrier) and, with a live quorum device, after the
//! device polled with the new ring id or its sync timeout expired. Until then the quorum
//! membership that [`Votequorum::status`] reports, and the [`Action::QuorumChanged`] event, stay
//! those of the previous ring, as corosync's quorum service only learns of a ring at
//! `votequorum_sync_activate`: applications never see a new ring with half its votes counted.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::calc::{self, ChangeError, QuorumInputs};
use super::config::{AutoTieBreaker, ConfigError, Effective, QuorumConfig};
use super::flags::Flags;
use super::status::{NodeStatus, QdeviceStatus, QuorumStatus, RingId};
use super::wire::{NodeFlags, QuorumMsg, ReconfigureParam, WireError};
use crate::time::MonoTime;
use crate::NodeId;

/// The node id votequorum uses for the quorum device (`VOTEQUORUM_QDEVICE_NODEID`).
pub const QDEVICE_NODE_ID: NodeId = 0;
/// Upper bound on queued actions; each input queues at most a handful, so reaching it means the
/// driver stopped draining `poll_action`.
const OUTBOX_CAPACITY_MAX: usize = 1024;

/// What the driver must do after an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Multicast this message to the ring in agreed order (it comes back to us too).
    Multicast(QuorumMsg),
    /// Quorum state as of the end of a sync or a change: tell applications.
    QuorumChanged {
        /// Whether this partition may act.
        quorate: bool,
        /// The members of the ring.
        members: Vec<NodeId>,
        /// The ring.
        ring_id: RingId,
    },
}

/// Why an input was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Undecodable bytes.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A device poll for a ring that is not the current one (`CS_ERR_MESSAGE_ERROR`).
    #[error("quorum device poll for ring {got}, current ring is {current}")]
    StaleRing {
        /// Ring the poll names.
        got: RingId,
        /// Our ring.
        current: RingId,
    },
    /// A device operation without a configured or registered device (`CS_ERR_NOT_EXIST`).
    #[error("no quorum device is configured or registered")]
    NoQdevice,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Membership {
    Member,
    Dead,
    Leaving,
}

#[derive(Clone, Debug)]
struct Node {
    votes: u32,
    expected_votes: u32,
    flags: NodeFlags,
    state: Membership,
    name: String,
}

/// The quorum device as this node's votequorum sees it.
#[derive(Clone, Debug, Default)]
struct Device {
    configured: bool,
    votes: u32,
    name: Option<String>,
    timeout_ms: u64,
    sync_timeout_ms: u64,
}

/// Timers, indexed by [`Timer`]; the next deadline is the minimum.
#[derive(Clone, Copy, Debug, Default)]
struct Timers([Option<MonoTime>; 3]);

#[derive(Clone, Copy, Debug)]
enum Timer {
    LastManStanding = 0,
    QdevicePoll = 1,
    QdeviceSync = 2,
}

impl Timers {
    fn set(&mut self, timer: Timer, at: Option<MonoTime>) {
        self.0[timer as usize] = at;
    }
    fn get(&self, timer: Timer) -> Option<MonoTime> {
        self.0[timer as usize]
    }
    fn next(&self) -> Option<MonoTime> {
        self.0.iter().flatten().min().copied()
    }
}

/// votequorum for one node. See the module documentation for the driving order.
#[derive(Debug)]
pub struct Votequorum {
    eff: Effective,
    local: NodeId,
    nodes: BTreeMap<NodeId, Node>,
    device: Device,
    us_flags: NodeFlags,
    members: Vec<NodeId>,
    previous_members: Vec<NodeId>,
    ring_id: RingId,
    quorum: u32,
    quorate: bool,
    total_votes: u32,
    wait_for_all_status: bool,
    last_man_standing: bool,
    lowest_node_id: NodeId,
    highest_node_id: NodeId,
    sync_in_progress: bool,
    /// Members of the syncing ring whose NodeInfo has not been delivered in it yet.
    sync_awaiting: BTreeSet<NodeId>,
    /// The members and ring of the last completed sync: what status reports.
    reported_members: Vec<NodeId>,
    reported_ring_id: RingId,
    timers: Timers,
    outbox: VecDeque<Action>,
}

impl Votequorum {
    /// Start votequorum with `config`; the node is alone (its own singleton membership, ring seq 0)
    /// until Totem reports the first membership.
    pub fn new(config: &QuorumConfig) -> Result<Votequorum, ConfigError> {
        let eff = config.validate()?;
        let local = config.local_node_id;
        let mut nodes = BTreeMap::new();
        for node in &config.nodes {
            nodes.insert(
                node.node_id,
                Node {
                    votes: node.votes,
                    expected_votes: eff.expected_votes,
                    flags: NodeFlags::default(),
                    state: Membership::Dead,
                    name: node.name.clone(),
                },
            );
        }
        let us = nodes.entry(local).or_insert_with(|| Node {
            votes: eff.local_votes,
            expected_votes: eff.expected_votes,
            flags: NodeFlags::default(),
            state: Membership::Dead,
            name: format!("node{local}"),
        });
        us.state = Membership::Member;
        us.votes = eff.local_votes;
        let device = match &config.qdevice {
            Some(q) => Device {
                configured: true,
                votes: eff.qdevice_votes,
                name: None,
                timeout_ms: q.timeout_ms,
                sync_timeout_ms: q.sync_timeout_ms,
            },
            None => Device::default(),
        };
        let mut us_flags = NodeFlags::FIRST;
        us_flags.set(NodeFlags::WFA_STATUS, eff.wait_for_all);
        let mut vq = Votequorum {
            last_man_standing: config.last_man_standing,
            wait_for_all_status: eff.wait_for_all,
            eff,
            local,
            nodes,
            device,
            us_flags,
            members: vec![local],
            previous_members: Vec::new(),
            ring_id: RingId { rep: local, seq: 0 },
            quorum: 0,
            quorate: false,
            total_votes: 0,
            lowest_node_id: local,
            highest_node_id: local,
            sync_in_progress: false,
            sync_awaiting: BTreeSet::new(),
            reported_members: vec![local],
            reported_ring_id: RingId { rep: local, seq: 0 },
            timers: Timers::default(),
            outbox: VecDeque::new(),
        };
        vq.sync_us_node();
        vq.recalculate(false, false);
        Ok(vq)
    }

    // ----- getters ---------------------------------------------------------------------------

    /// Whether this partition is quorate now.
    pub fn is_quorate(&self) -> bool {
        self.quorate
    }

    /// The current quorum.
    pub fn quorum(&self) -> u32 {
        self.quorum
    }

    /// The current ring id.
    pub fn ring_id(&self) -> RingId {
        self.ring_id
    }

    /// Corosync's derived configuration (two_node, wait_for_all, device votes, warnings).
    pub fn effective_config(&self) -> &Effective {
        &self.eff
    }

    /// The next instant [`Votequorum::handle_timeout`] must be called at.
    pub fn poll_timeout(&self) -> Option<MonoTime> {
        self.timers.next()
    }

    /// The next action to perform; call until `None` after every input.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.outbox.pop_front()
    }

    // ----- inputs ----------------------------------------------------------------------------

    /// A new Totem membership (regular configuration) with its ring id.
    pub fn handle_membership(&mut self, now: MonoTime, ring_id: RingId, members: &[NodeId]) {
        let mut members: Vec<NodeId> = members.to_vec();
        members.sort_unstable();
        members.dedup();
        if members.len() > 1 {
            self.us_flags.set(NodeFlags::FIRST, false);
        }
        let mut left_nodes = false;
        for id in &self.members {
            if !members.contains(id) {
                left_nodes = true;
                if let Some(node) = self.nodes.get_mut(id) {
                    node.state = Membership::Dead;
                }
            }
        }
        if self.last_man_standing {
            let member_count = u32::try_from(members.len()).unwrap_or(u32::MAX);
            let lowest_here =
                self.eff.auto_tie_breaker.is_some() && self.member_present(self.lowest_node_id);
            if (member_count >= self.quorum && left_nodes)
                || (member_count <= self.quorum && lowest_here)
            {
                let window = self.eff.config.last_man_standing_window_ms;
                self.timers
                    .set(Timer::LastManStanding, Some(now.plus_ms(window)));
            }
        }
        self.previous_members = std::mem::replace(&mut self.members, members);
        self.ring_id = ring_id;
        self.sync_in_progress = true;
        self.sync_awaiting = self.members.iter().copied().collect();
        // A device vote counts only in the ring it was cast for: the device must poll again with
        // the new ring id (corosync achieves the same by pausing the device during sync).
        self.us_flags.set(NodeFlags::QDEVICE_CAST_VOTE, false);
        // Recalculate now, without the departed nodes and the old device vote, so that
        // `is_quorate` never answers for the old ring while the sync runs (corosync only reports
        // quorum at the end of the sync; we also keep the live value honest).
        self.recalculate(false, false);
        self.sync_us_node();
        self.push(Action::Multicast(self.node_info_msg()));
        if self.device.configured {
            self.push(Action::Multicast(QuorumMsg::NodeInfo {
                node_id: QDEVICE_NODE_ID,
                votes: self.device.votes,
                expected_votes: 0,
                flags: NodeFlags::default(),
            }));
        }
        let device_alive = self.us_flags.contains(NodeFlags::QDEVICE_REGISTERED)
            && self.us_flags.contains(NodeFlags::QDEVICE_ALIVE);
        if device_alive {
            let sync_ms = self.device.sync_timeout_ms;
            self.timers
                .set(Timer::QdeviceSync, Some(now.plus_ms(sync_ms)));
        }
    }

    /// Decode and apply a votequorum message delivered by Totem from `sender`.
    pub fn handle_bytes(&mut self, sender: NodeId, bytes: &[u8]) -> Result<(), InputError> {
        let msg = QuorumMsg::decode(bytes)?;
        self.handle_message(sender, msg);
        Ok(())
    }

    /// Apply a votequorum message delivered in agreed order from `sender` (ourselves included).
    pub fn handle_message(&mut self, sender: NodeId, msg: QuorumMsg) {
        match msg {
            QuorumMsg::NodeInfo {
                node_id,
                votes,
                expected_votes,
                flags,
            } => self.on_node_info(sender, node_id, votes, expected_votes, flags),
            QuorumMsg::Reconfigure {
                param,
                node_id,
                value,
            } => self.on_reconfigure(param, node_id, value),
        }
    }

    /// A timer may have expired (spurious calls are harmless).
    pub fn handle_timeout(&mut self, now: MonoTime) {
        // The expiry check must run (it clears the timer) even when not quorate.
        let lms_expired = self.expired(Timer::LastManStanding, now);
        if lms_expired && self.quorate {
            self.recalculate(true, true);
        }
        if self.expired(Timer::QdevicePoll, now) {
            // The device stopped polling: it is no longer alive and its vote no longer counts.
            let before = self.us_flags;
            self.us_flags.set(NodeFlags::QDEVICE_ALIVE, false);
            self.us_flags.set(NodeFlags::QDEVICE_CAST_VOTE, false);
            self.withdraw_now_if_lost(before);
            if before != self.us_flags {
                self.push(Action::Multicast(self.node_info_msg()));
            }
            if self.timers.get(Timer::QdeviceSync).is_some() {
                self.timers.set(Timer::QdeviceSync, None);
                self.finish_sync_if_complete();
            }
        }
        if self.expired(Timer::QdeviceSync, now) {
            self.finish_sync_if_complete();
        }
    }

    /// The quorum device on this node registers under `name` (corosync-qdevice uses `Qdevice`).
    pub fn qdevice_register(&mut self, name: &str) -> Result<(), InputError> {
        if !self.device.configured {
            return Err(InputError::NoQdevice);
        }
        self.device.name = Some(name.to_string());
        self.us_flags.set(NodeFlags::QDEVICE_REGISTERED, true);
        self.push(Action::Multicast(self.node_info_msg()));
        Ok(())
    }

    /// The quorum device unregisters: its vote is withdrawn.
    pub fn qdevice_unregister(&mut self) {
        self.device.name = None;
        let before = self.us_flags;
        for flag in [
            NodeFlags::QDEVICE_REGISTERED,
            NodeFlags::QDEVICE_ALIVE,
            NodeFlags::QDEVICE_CAST_VOTE,
        ] {
            self.us_flags.set(flag, false);
        }
        self.timers.set(Timer::QdevicePoll, None);
        self.withdraw_now_if_lost(before);
        if before != self.us_flags {
            self.push(Action::Multicast(self.node_info_msg()));
        }
        if self.timers.get(Timer::QdeviceSync).is_some() {
            self.timers.set(Timer::QdeviceSync, None);
            self.finish_sync_if_complete();
        }
    }

    /// The quorum device polls for `ring_id`, casting its vote or not; it must poll again within
    /// `quorum.device.timeout` or the vote expires. A poll for another ring is refused.
    pub fn qdevice_poll(
        &mut self,
        now: MonoTime,
        ring_id: RingId,
        cast_vote: bool,
    ) -> Result<(), InputError> {
        if !self.us_flags.contains(NodeFlags::QDEVICE_REGISTERED) {
            return Err(InputError::NoQdevice);
        }
        if ring_id != self.ring_id {
            return Err(InputError::StaleRing {
                got: ring_id,
                current: self.ring_id,
            });
        }
        let before = self.us_flags;
        self.us_flags.set(NodeFlags::QDEVICE_ALIVE, true);
        self.us_flags.set(NodeFlags::QDEVICE_CAST_VOTE, cast_vote);
        self.withdraw_now_if_lost(before);
        if before != self.us_flags {
            self.push(Action::Multicast(self.node_info_msg()));
        }
        self.timers.set(
            Timer::QdevicePoll,
            Some(now.plus_ms(self.device.timeout_ms)),
        );
        if self.timers.get(Timer::QdeviceSync).is_some() {
            self.timers.set(Timer::QdeviceSync, None);
            self.finish_sync_if_complete();
        }
        Ok(())
    }

    /// `corosync-quorumtool -e N`: validated here, applied on every member when the multicast
    /// Reconfigure is delivered.
    pub fn set_expected(&mut self, expected_votes: u32) -> Result<(), ChangeError> {
        let (total_votes, total_nodes) = self.counted_votes_and_nodes();
        calc::check_set_expected(
            expected_votes,
            total_votes,
            total_nodes,
            self.eff.two_node,
            self.quorate,
        )?;
        self.push(Action::Multicast(QuorumMsg::Reconfigure {
            param: ReconfigureParam::ExpectedVotes,
            node_id: self.local,
            value: expected_votes,
        }));
        Ok(())
    }

    /// `corosync-quorumtool -v votes -n node`: validated here, applied on delivery.
    pub fn set_votes(&mut self, node_id: NodeId, votes: u32) -> Result<(), ChangeError> {
        if !self.nodes.contains_key(&node_id) {
            return Err(ChangeError::VotesNodeNotFound { votes, node_id });
        }
        let saved = self.nodes.get(&node_id).map(|n| n.votes).unwrap_or(0);
        self.set_node_votes(node_id, votes);
        let (quorum, total_votes) = self.compute_quorum(true, 0);
        self.set_node_votes(node_id, saved);
        if !calc::check_set_votes(quorum, total_votes) {
            return Err(ChangeError::VotesInvalid { votes, node_id });
        }
        self.push(Action::Multicast(QuorumMsg::Reconfigure {
            param: ReconfigureParam::NodeVotes,
            node_id,
            value: votes,
        }));
        Ok(())
    }

    /// This node is shutting down cleanly: peers may lower quorum without waiting.
    pub fn leave(&mut self) {
        self.us_flags.set(NodeFlags::LEAVING, true);
        self.push(Action::Multicast(self.node_info_msg()));
    }

    // ----- status ----------------------------------------------------------------------------

    /// The `corosync-quorumtool -s` snapshot. The membership and ring are those of the last
    /// completed sync (see the module documentation); votes and quorum are live.
    pub fn status(&self) -> QuorumStatus {
        let highest_expected = self
            .members
            .iter()
            .filter_map(|id| self.nodes.get(id))
            .filter(|n| n.state == Membership::Member)
            .map(|n| n.expected_votes)
            .max()
            .unwrap_or(0);
        let rows = self
            .reported_members
            .iter()
            .filter_map(|id| self.nodes.get(id).map(|n| (*id, n)))
            .map(|(id, n)| NodeStatus {
                node_id: id,
                votes: n.votes,
                expected_votes: n.expected_votes,
                name: n.name.clone(),
                qdevice_flags: device_flags(n.flags),
                local: id == self.local,
            })
            .collect();
        let qdevice = self.device.name.as_ref().map(|name| QdeviceStatus {
            votes: self.device.votes,
            casting: self.us_flags.contains(NodeFlags::QDEVICE_CAST_VOTE),
            name: name.clone(),
        });
        QuorumStatus {
            local_node_id: self.local,
            ring_id: self.reported_ring_id,
            member_count: u32::try_from(self.reported_members.len()).unwrap_or(u32::MAX),
            quorate: self.quorate,
            expected_votes: self.us().map(|n| n.expected_votes).unwrap_or(0),
            highest_expected,
            total_votes: self.total_votes,
            quorum: self.quorum,
            flags: self.status_flags(),
            nodes: rows,
            qdevice,
        }
    }

    // ----- internals -------------------------------------------------------------------------

    fn push(&mut self, action: Action) {
        assert!(
            self.outbox.len() < OUTBOX_CAPACITY_MAX,
            "poll_action is not being drained"
        );
        self.outbox.push_back(action);
    }

    fn expired(&mut self, timer: Timer, now: MonoTime) -> bool {
        match self.timers.get(timer) {
            Some(at) if at <= now => {
                self.timers.set(timer, None);
                true
            }
            _ => false,
        }
    }

    fn us(&self) -> Option<&Node> {
        self.nodes.get(&self.local)
    }

    fn member_present(&self, id: NodeId) -> bool {
        self.nodes
            .get(&id)
            .is_some_and(|n| n.state == Membership::Member)
    }

    fn set_node_votes(&mut self, id: NodeId, votes: u32) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.votes = votes;
        }
    }

    /// Copy our live flags into our own node entry.
    fn sync_us_node(&mut self) {
        let mut flags = self.us_flags;
        flags.set(NodeFlags::QUORATE, self.quorate);
        flags.set(NodeFlags::WFA_STATUS, self.wait_for_all_status);
        self.us_flags = flags;
        if let Some(us) = self.nodes.get_mut(&self.local) {
            us.flags = flags;
            us.state = Membership::Member;
        }
    }

    /// The device's vote was withdrawn: count without it at once. Adding votes waits for our
    /// NodeInfo to come back through Totem (as in corosync), but losing them must not: qnetd may
    /// give the vote to another partition as soon as this withdrawal is acknowledged.
    fn withdraw_now_if_lost(&mut self, before: NodeFlags) {
        let had = before.contains(NodeFlags::QDEVICE_CAST_VOTE);
        if had && !self.us_flags.contains(NodeFlags::QDEVICE_CAST_VOTE) {
            self.recalculate(false, false);
        }
    }

    fn node_info_msg(&self) -> QuorumMsg {
        let us = self.us();
        QuorumMsg::NodeInfo {
            node_id: self.local,
            votes: us.map(|n| n.votes).unwrap_or(0),
            expected_votes: us.map(|n| n.expected_votes).unwrap_or(0),
            flags: self.us_flags,
        }
    }

    fn on_node_info(
        &mut self,
        sender: NodeId,
        node_id: NodeId,
        votes: u32,
        expected_votes: u32,
        flags: NodeFlags,
    ) {
        if node_id == QDEVICE_NODE_ID {
            // Device votes: a quorate sender's value wins while we are inquorate.
            let sender_quorate = self
                .nodes
                .get(&sender)
                .is_some_and(|n| n.flags.contains(NodeFlags::QUORATE));
            let old = self.device.votes;
            self.device.votes = if !self.quorate && sender_quorate {
                votes
            } else {
                old.max(votes)
            };
            if old != self.device.votes {
                self.recalculate(false, false);
            }
            return;
        }
        if !self.members.contains(&node_id) || sender != node_id {
            return; // stale: from a previous configuration, or about someone else
        }
        let completes_sync = self.sync_awaiting.remove(&node_id) && self.sync_awaiting.is_empty();
        let quorate_before = self.quorate;
        let us_expected = self.us().map(|n| n.expected_votes).unwrap_or(0);
        let name = self.nodes.get(&node_id).map(|n| n.name.clone());
        let old = self.nodes.get(&node_id).cloned();
        let mut allow_decrease = false;
        let mut by_node = false;
        let mut node = Node {
            votes,
            expected_votes: us_expected,
            flags,
            state: Membership::Member,
            name: name.unwrap_or_else(|| format!("node{node_id}")),
        };
        if flags.contains(NodeFlags::LEAVING) {
            node.state = Membership::Leaving;
            allow_decrease = true;
            by_node = true;
        }
        if !quorate_before && flags.contains(NodeFlags::QUORATE) && node_id != self.local {
            allow_decrease = true;
            if let Some(us) = self.nodes.get_mut(&self.local) {
                us.expected_votes = expected_votes;
            }
        }
        if flags.contains(NodeFlags::QUORATE) {
            node.expected_votes = expected_votes;
        } else if node_id != self.local {
            node.expected_votes = self.us().map(|n| n.expected_votes).unwrap_or(0);
        } else {
            node.expected_votes = us_expected;
        }
        if self.last_man_standing && votes > 1 {
            // corosync: "Last Man Standing feature is supported only when all cluster nodes
            // votes are set to 1. Disabling LMS."
            self.last_man_standing = false;
            self.timers.set(Timer::LastManStanding, None);
        }
        let changed = match &old {
            None => true,
            Some(o) => {
                o.votes != node.votes
                    || o.expected_votes != node.expected_votes
                    || o.flags != node.flags
                    || o.state != node.state
            }
        };
        if node_id == self.local {
            // Our own entry keeps our locally held expected votes.
            node.expected_votes = us_expected;
        }
        self.nodes.insert(node_id, node);
        if changed || node_id == self.local || flags.contains(NodeFlags::FIRST) {
            self.recalculate(allow_decrease, by_node);
        }
        if self.eff.wait_for_all
            && !flags.contains(NodeFlags::WFA_STATUS)
            && flags.contains(NodeFlags::QUORATE)
        {
            self.wait_for_all_status = false;
            self.sync_us_node();
        }
        if completes_sync {
            self.finish_sync_if_complete();
        }
    }

    fn on_reconfigure(&mut self, param: ReconfigureParam, node_id: NodeId, value: u32) {
        match param {
            ReconfigureParam::ExpectedVotes => {
                self.set_member_expected(value);
                self.recalculate(true, false);
            }
            ReconfigureParam::NodeVotes => {
                if !self.nodes.contains_key(&node_id) {
                    return;
                }
                self.set_node_votes(node_id, value);
                self.recalculate(true, false);
            }
            ReconfigureParam::CancelWaitForAll => {
                self.wait_for_all_status = false;
                self.recalculate(false, false);
            }
        }
    }

    fn set_member_expected(&mut self, value: u32) {
        if value == 0 {
            return;
        }
        let members = self.members.clone();
        for id in members {
            if let Some(node) = self.nodes.get_mut(&id) {
                if node.state == Membership::Member {
                    node.expected_votes = value;
                }
            }
        }
    }

    /// Completes the sync once every member's NodeInfo is in and the device no longer holds it.
    fn finish_sync_if_complete(&mut self) {
        if self.sync_in_progress
            && self.sync_awaiting.is_empty()
            && self.timers.get(Timer::QdeviceSync).is_none()
        {
            self.sync_activate();
        }
    }

    /// Sync finished: recalculate and report the quorum of the new ring.
    fn sync_activate(&mut self) {
        self.timers.set(Timer::QdeviceSync, None);
        self.sync_in_progress = false;
        self.reported_members = self.members.clone();
        self.reported_ring_id = self.ring_id;
        self.recalculate(false, false);
        self.push(Action::QuorumChanged {
            quorate: self.quorate,
            members: self.members.clone(),
            ring_id: self.ring_id,
        });
    }

    /// Member votes and member count (+ the device's, when configured with votes), as corosync's
    /// `get_total_votes`.
    fn counted_votes_and_nodes(&self) -> (u32, u32) {
        let mut votes = 0u32;
        let mut count = 0u32;
        for node in self
            .nodes
            .values()
            .filter(|n| n.state == Membership::Member)
        {
            votes = votes.saturating_add(node.votes);
            count += 1;
        }
        if self.device.votes > 0 && self.device.configured {
            votes = votes.saturating_add(self.device.votes);
            count += 1;
        }
        (votes, count)
    }

    /// corosync's `calculate_quorum`: returns (quorum, total votes counted).
    fn compute_quorum(&self, allow_decrease: bool, max_expected: u32) -> (u32, u32) {
        let mut highest_expected = 0u32;
        let mut total_votes = 0u32;
        let mut total_nodes = 0u32;
        for node in self
            .nodes
            .values()
            .filter(|n| n.state == Membership::Member)
        {
            highest_expected = highest_expected.max(node.expected_votes);
            total_votes = total_votes.saturating_add(node.votes);
            total_nodes += 1;
        }
        if self.us_flags.contains(NodeFlags::QDEVICE_CAST_VOTE) {
            total_votes = total_votes.saturating_add(self.device.votes);
            total_nodes += 1;
        }
        if max_expected > 0 {
            highest_expected = max_expected;
        }
        let quorum = calc::calculate_quorum(QuorumInputs {
            highest_expected,
            total_votes,
            total_nodes,
            previous_quorum: self.quorum,
            allow_decrease,
            two_node: self.eff.two_node,
        });
        (quorum, total_votes)
    }

    /// corosync's `recalculate_quorum` followed by `are_we_quorate`.
    fn recalculate(&mut self, allow_decrease: bool, by_current_nodes: bool) {
        let (all_votes, member_count) = self.counted_votes_and_nodes();
        let max_expected = if by_current_nodes { member_count } else { 0 };
        if let Some(us) = self.nodes.get_mut(&self.local) {
            if all_votes > us.expected_votes {
                us.expected_votes = all_votes;
            }
        }
        let (quorum, total_votes) = self.compute_quorum(allow_decrease, max_expected);
        self.quorum = quorum;
        self.total_votes = total_votes;
        if max_expected > 0 {
            self.set_member_expected(max_expected);
        }
        self.decide_quorate(total_votes);
    }

    /// corosync's `are_we_quorate`.
    fn decide_quorate(&mut self, total_votes: u32) {
        let us_expected = self.us().map(|n| n.expected_votes).unwrap_or(0);
        if self.eff.wait_for_all && self.wait_for_all_status {
            if total_votes != us_expected {
                // "Waiting for all cluster members. Current votes: %d expected_votes: %d"
                self.set_quorate(false);
                return;
            }
            self.wait_for_all_status = false;
        }
        let mut quorate = self.quorum <= total_votes;
        if quorate {
            self.refresh_tie_breaker_ids();
        }
        if !quorate && self.eff.auto_tie_breaker.is_some() && total_votes == us_expected / 2 {
            let previous = i64::try_from(self.previous_members.len()).unwrap_or(i64::MAX);
            let current = i64::try_from(self.members.len()).unwrap_or(i64::MAX);
            if previous - current < i64::from(self.quorum) && self.check_auto_tie_breaker() {
                quorate = true;
            }
        }
        self.set_quorate(quorate);
        if self.eff.wait_for_all {
            self.wait_for_all_status = !quorate;
        }
        self.sync_us_node();
    }

    fn set_quorate(&mut self, quorate: bool) {
        let changed = self.quorate != quorate;
        self.quorate = quorate;
        self.sync_us_node();
        if changed && !self.sync_in_progress {
            self.push(Action::QuorumChanged {
                quorate,
                members: self.members.clone(),
                ring_id: self.ring_id,
            });
        }
    }

    /// Lowest / highest member ids, remembered while quorate (corosync `get_lowest_node_id`).
    fn refresh_tie_breaker_ids(&mut self) {
        let member_ids = self
            .nodes
            .iter()
            .filter(|(_, n)| n.state == Membership::Member)
            .map(|(id, _)| *id);
        let (mut lowest, mut highest) = (self.local, self.local);
        for id in member_ids {
            lowest = lowest.min(id);
            highest = highest.max(id);
        }
        self.lowest_node_id = lowest;
        self.highest_node_id = highest;
    }

    /// corosync's `check_auto_tie_breaker`.
    fn check_auto_tie_breaker(&self) -> bool {
        match &self.eff.auto_tie_breaker {
            None => false,
            Some(AutoTieBreaker::Lowest) => self.member_present(self.lowest_node_id),
            Some(AutoTieBreaker::Highest) => self.member_present(self.highest_node_id),
            Some(AutoTieBreaker::List(list)) => {
                for (index, id) in list.iter().enumerate() {
                    if self.members.contains(id) {
                        let earlier_was_there = list[..index]
                            .iter()
                            .any(|e| self.previous_members.contains(e));
                        return !earlier_was_there;
                    }
                }
                false
            }
        }
    }

    fn status_flags(&self) -> Flags {
        let mut flags = Flags::default();
        flags.set(Flags::TWO_NODE, self.eff.two_node);
        flags.set(Flags::QUORATE, self.quorate);
        flags.set(Flags::WAIT_FOR_ALL, self.eff.wait_for_all);
        flags.set(Flags::LAST_MAN_STANDING, self.last_man_standing);
        flags.set(Flags::AUTO_TIE_BREAKER, self.eff.auto_tie_breaker.is_some());
        flags.set(Flags::ALLOW_DOWNSCALE, self.eff.config.allow_downscale);
        let device = device_flags(self.us_flags);
        Flags(flags.0 | device.0)
    }
}

/// Map the message flags of a node's device onto the quorumtool bits.
fn device_flags(flags: NodeFlags) -> Flags {
    let mut out = Flags::default();
    out.set(
        Flags::QDEVICE_REGISTERED,
        flags.contains(NodeFlags::QDEVICE_REGISTERED),
    );
    out.set(
        Flags::QDEVICE_ALIVE,
        flags.contains(NodeFlags::QDEVICE_ALIVE),
    );
    out.set(
        Flags::QDEVICE_CAST_VOTE,
        flags.contains(NodeFlags::QDEVICE_CAST_VOTE),
    );
    out.set(
        Flags::QDEVICE_MASTER_WINS,
        flags.contains(NodeFlags::QDEVICE_MASTER_WINS),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::QuorumConfig;

    fn node(local: NodeId) -> Votequorum {
        Votequorum::new(&QuorumConfig::simple(local, 3)).expect("valid config")
    }

    /// Drains `vq`: the multicasts and the quorum events it produced.
    fn drain(vq: &mut Votequorum) -> (Vec<QuorumMsg>, Vec<(bool, Vec<NodeId>)>) {
        let (mut sent, mut events) = (Vec::new(), Vec::new());
        while let Some(action) = vq.poll_action() {
            match action {
                Action::Multicast(msg) => sent.push(msg),
                Action::QuorumChanged {
                    quorate, members, ..
                } => events.push((quorate, members)),
            }
        }
        (sent, events)
    }

    /// The bug behind a flaky cluster test: a forming ring of 3 was reported inquorate (its
    /// peers' votes not in yet), then quorate a moment later. The sync now completes only when
    /// every member's NodeInfo is delivered, so the first report of the ring is the right one,
    /// and status shows the old ring until then.
    #[test]
    fn a_forming_ring_is_reported_once_with_all_its_votes() {
        let ring = RingId { rep: 1, seq: 4 };
        let mut nodes: Vec<Votequorum> = (1..=3).map(node).collect();
        let mut infos = Vec::new();
        for vq in &mut nodes {
            drain(vq);
            vq.handle_membership(MonoTime::ZERO, ring, &[1, 2, 3]);
            let (sent, events) = drain(vq);
            assert!(events.is_empty(), "reported before the sync: {events:?}");
            assert_eq!(
                vq.status().member_count,
                1,
                "status shows the new ring early"
            );
            infos.extend(sent.into_iter().map(|m| (vq.local, m)));
        }
        // Deliver in one agreed order; node 1 reports only after the last NodeInfo.
        let vq = &mut nodes[0];
        for (i, (sender, msg)) in infos.iter().enumerate() {
            vq.handle_message(*sender, *msg);
            let (_, events) = drain(vq);
            if i + 1 < infos.len() {
                assert!(events.is_empty(), "reported mid-sync: {events:?}");
            } else {
                assert_eq!(events, vec![(true, vec![1, 2, 3])]);
            }
        }
        let status = vq.status();
        assert!(status.quorate);
        assert_eq!((status.member_count, status.ring_id), (3, ring));
    }

    /// A NodeInfo from a node outside the new ring, or one node speaking for another, does not
    /// complete the sync.
    #[test]
    fn only_members_own_node_info_completes_the_sync() {
        let mut vq = node(1);
        vq.handle_membership(MonoTime::ZERO, RingId { rep: 1, seq: 4 }, &[1, 2]);
        let (sent, _) = drain(&mut vq);
        for msg in sent {
            vq.handle_message(1, msg);
        }
        let info = |node_id| QuorumMsg::NodeInfo {
            node_id,
            votes: 1,
            expected_votes: 3,
            flags: NodeFlags::default(),
        };
        vq.handle_message(3, info(3));
        vq.handle_message(1, info(2));
        assert!(drain(&mut vq).1.is_empty());
        vq.handle_message(2, info(2));
        assert_eq!(drain(&mut vq).1, vec![(true, vec![1, 2])]);
    }
}
