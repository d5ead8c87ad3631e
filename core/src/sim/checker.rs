//! Checkers over the observable history of a simulated cluster: submissions, deliveries,
//! configuration changes, crashes. The simulator feeds them after every step; tests may feed them a
//! hand-made history. Each check returns the first [`Violation`] it sees.
//!
//! What is checked, and when:
//! * at each delivery: the payload is genuine and was submitted by the named sender with that order
//!   (no invented message); the node has not delivered it before (no duplicate); within the ring the
//!   message was ordered in, the node agrees with every other node on the relative order of the
//!   messages both delivered (one total order per configuration); a safe message delivered in a
//!   regular configuration is not missing at a member that already moved on without failing;
//! * at each configuration change: a regular configuration contains the node, its representative is
//!   its lowest member, all nodes agree on the members of a ring id, ring seqs of a node only grow
//!   (also across restarts), a transitional configuration precedes every regular one except the first
//!   of a node's life and is a subset of both; nodes that move together from one regular
//!   configuration to the same next one delivered the same set of messages in between (EVS); every
//!   safe message delivered in the old regular configuration was delivered by each member moving on;
//! * at quiescence ([`Checker::check_self_delivery`], [`Checker::check_converged`]): every message a
//!   sender submitted and did not crash after is delivered to itself; the members of the final ring
//!   delivered the same messages in it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use super::workload::{check_payload, MsgId, PayloadError};
use crate::NodeId;

/// A ring id as the checker sees it (the protocol's `RingId` converts into it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ring {
    /// Representative: the lowest node id of the membership.
    pub rep: NodeId,
    /// Ring sequence number.
    pub seq: u64,
}

impl fmt::Display for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}.{:x}", self.rep, self.seq)
    }
}

/// Kind of a configuration change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfPhase {
    /// The survivors of the old ring, before the new one.
    Transitional,
    /// The new ring.
    Regular,
}

/// A safety or liveness property that failed, with what is needed to understand it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A delivered payload is not a genuine simulator payload.
    #[error("node {node} delivered a bad payload: {error}")]
    BadPayload {
        /// Delivering node.
        node: NodeId,
        /// What is wrong with it.
        error: PayloadError,
    },
    /// A message nobody submitted (or submitted by another sender, or with another order).
    #[error("node {node} delivered {id} (sender {claimed_sender}, safe {safe}) which was never submitted so")]
    Invented {
        /// Delivering node.
        node: NodeId,
        /// The message.
        id: MsgId,
        /// Sender named by the delivery.
        claimed_sender: NodeId,
        /// Order named by the delivery.
        safe: bool,
    },
    /// The same message delivered twice to one node incarnation.
    #[error("node {node} delivered {id} twice")]
    Duplicate {
        /// Delivering node.
        node: NodeId,
        /// The message.
        id: MsgId,
    },
    /// Two nodes disagree on the order of two messages ordered in the same ring.
    #[error(
        "ring {ring}: node {a} delivered {first} before {second}, node {b} the other way round"
    )]
    Order {
        /// The ring the messages were ordered in.
        ring: Ring,
        /// One node.
        a: NodeId,
        /// The other.
        b: NodeId,
        /// Delivered first by `a`.
        first: MsgId,
        /// Delivered second by `a`.
        second: MsgId,
    },
    /// A safe message delivered in a regular configuration that a member moved on without.
    #[error(
        "ring {ring}: node {node} delivered safe {id} but member {member} left the ring without it"
    )]
    Safe {
        /// The regular ring.
        ring: Ring,
        /// Node that delivered it.
        node: NodeId,
        /// The message.
        id: MsgId,
        /// Member that installed a later configuration without delivering it.
        member: NodeId,
    },
    /// Two nodes moved from the same regular ring to the same next one with different deliveries.
    #[error("EVS: {a} and {b} moved from {old} to {new} having delivered {count_a} vs {count_b} messages (sets differ)")]
    Evs {
        /// The old ring.
        old: Ring,
        /// The new ring.
        new: Ring,
        /// One node.
        a: NodeId,
        /// The other.
        b: NodeId,
        /// Messages delivered by `a` in the old configuration.
        count_a: u64,
        /// Messages delivered by `b` in the old configuration.
        count_b: u64,
    },
    /// A malformed configuration change, or one out of sequence.
    #[error("node {node}, {phase:?} configuration {ring}: {what}")]
    Conf {
        /// The node.
        node: NodeId,
        /// Transitional or regular.
        phase: ConfPhase,
        /// Its ring id.
        ring: Ring,
        /// What is wrong.
        what: String,
    },
    /// A surviving sender never delivered its own message.
    #[error("node {node} never delivered its own message {id} (submitted, never crashed since)")]
    SelfDelivery {
        /// The sender.
        node: NodeId,
        /// The first such message.
        id: MsgId,
    },
    /// Members of the final ring delivered different messages in it.
    #[error("final ring {ring}: node {a} delivered {count_a} messages in it, node {b} {count_b}")]
    Diverged {
        /// The final ring.
        ring: Ring,
        /// One node.
        a: NodeId,
        /// The other.
        b: NodeId,
        /// Count at `a`.
        count_a: u64,
        /// Count at `b`.
        count_b: u64,
    },
    /// After the network healed, no single ring of all live nodes formed within the bound.
    #[error("liveness: {what}")]
    Liveness {
        /// What did not happen in time.
        what: String,
    },
    /// The protocol core refused or mishandled an input it must accept.
    #[error("node {node}: {what}")]
    Core {
        /// The node.
        node: NodeId,
        /// What happened.
        what: String,
    },
}

/// An order-independent digest of a set of messages (count + two mixed sums).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SetDigest {
    count: u64,
    sum: u64,
    xor: u64,
}

impl SetDigest {
    fn add(&mut self, id: MsgId) {
        let h = super::rng::split_seed(u64::from(id.sender) << 1 | 1, id.counter);
        self.count += 1;
        self.sum = self.sum.wrapping_add(h);
        self.xor ^= h.rotate_left(29).wrapping_mul(0x2545_F491_4F6C_DD1D);
    }
}

/// Per-node history for the current incarnation (and what survives restarts).
#[derive(Debug, Default)]
struct NodeHistory {
    /// Messages delivered in this incarnation.
    delivered: HashSet<MsgId>,
    /// The regular configuration the node is in, and its members.
    regular: Option<(Ring, Vec<NodeId>)>,
    /// A transitional configuration seen since `regular` was installed.
    transitional: Option<Vec<NodeId>>,
    /// Deliveries since `regular` was installed.
    since_regular: SetDigest,
    /// Rings this incarnation moved out of (installed a later regular configuration).
    left_rings: HashSet<Ring>,
    /// Messages submitted by this incarnation and not yet delivered to itself.
    pending_self: BTreeSet<MsgId>,
    /// Highest ring seq of any regular configuration in any incarnation.
    max_ring_seq: Option<u64>,
    /// Deliveries per ring of this incarnation (for the final convergence check).
    per_ring_count: HashMap<Ring, u64>,
    /// False once crashed, until restarted.
    up: bool,
}

/// Incremental one-total-order check for one ring.
#[derive(Debug, Default)]
struct RingOrder {
    /// For each message: the nodes that delivered it and at which position of their sequence.
    positions: HashMap<MsgId, Vec<(NodeId, u64)>>,
    /// Next position per node.
    next: HashMap<NodeId, u64>,
    /// For each node pair (low, high): highest positions among messages both delivered.
    pair_max: HashMap<(NodeId, NodeId), (u64, u64)>,
}

/// Outcome of one ring's order check on a new delivery.
struct Disagreement {
    other: NodeId,
    other_pos: u64,
}

impl RingOrder {
    /// Records that `node` delivered `id` next; returns the node it disagrees with, if any.
    ///
    /// Sorted by either node's positions, the messages two nodes both delivered must give the same
    /// sequence. A message becomes common when the second of the two delivers it, and then it is the
    /// latest at that node; so it must also be later than every earlier common message at the other.
    fn record(&mut self, node: NodeId, id: MsgId) -> Result<(), Disagreement> {
        let pos_slot = self.next.entry(node).or_insert(0);
        let pos = *pos_slot;
        *pos_slot += 1;
        let holders = self.positions.entry(id).or_default();
        for &(other, other_pos) in holders.iter() {
            let key = (node.min(other), node.max(other));
            let entry = self.pair_max.entry(key).or_insert((0, 0));
            let (max_mine, max_other) = if node < other {
                (&mut entry.0, &mut entry.1)
            } else {
                (&mut entry.1, &mut entry.0)
            };
            let first_common = *max_mine == 0 && *max_other == 0;
            // Positions are stored +1 so that 0 means "no common message yet".
            if !first_common && other_pos < *max_other {
                return Err(Disagreement { other, other_pos });
            }
            assert!(
                first_common || pos + 1 > *max_mine,
                "positions grow per node"
            );
            *max_mine = pos + 1;
            *max_other = (*max_other).max(other_pos + 1);
        }
        holders.push((node, pos));
        Ok(())
    }

    /// Finds a message `a` delivered before `id` that `b` delivered after it (for the report).
    fn witness(&self, a: NodeId, b: NodeId, id: MsgId, b_pos: u64) -> Option<MsgId> {
        let a_pos = self.positions.get(&id)?.iter().find(|(n, _)| *n == a)?.1;
        self.positions.iter().find_map(|(other, holders)| {
            let at_a = holders.iter().find(|(n, _)| *n == a)?.1;
            let at_b = holders.iter().find(|(n, _)| *n == b)?.1;
            (at_a < a_pos && at_b > b_pos).then_some(*other)
        })
    }
}

/// The checkers' state over one simulated run.
#[derive(Debug, Default)]
pub struct Checker {
    nodes: HashMap<NodeId, NodeHistory>,
    /// Every submitted message and whether it was safe.
    submitted: HashMap<MsgId, bool>,
    rings: HashMap<Ring, RingOrder>,
    /// Members of each regular ring, as first reported.
    ring_members: HashMap<Ring, Vec<NodeId>>,
    /// For each (old, new) regular transition: the first node's digest.
    transitions: HashMap<(Ring, Ring), (NodeId, SetDigest)>,
    /// Safe messages delivered in each regular ring while the deliverer was fully in it.
    safe_in_regular: HashMap<Ring, Vec<(NodeId, MsgId)>>,
    /// Totals for the report.
    deliveries: u64,
    regular_confs: u64,
}

impl Checker {
    /// A checker for a cluster whose nodes all start up.
    pub fn new(nodes: &[NodeId]) -> Checker {
        let mut checker = Checker::default();
        for &n in nodes {
            checker.nodes.insert(
                n,
                NodeHistory {
                    up: true,
                    ..NodeHistory::default()
                },
            );
        }
        checker
    }

    fn node(&mut self, node: NodeId) -> &mut NodeHistory {
        self.nodes.entry(node).or_insert_with(|| NodeHistory {
            up: true,
            ..NodeHistory::default()
        })
    }

    /// Total deliveries seen.
    pub fn deliveries(&self) -> u64 {
        self.deliveries
    }

    /// Total regular configurations installed (counted per node).
    pub fn regular_confs(&self) -> u64 {
        self.regular_confs
    }

    /// Messages submitted so far.
    pub fn submissions(&self) -> usize {
        self.submitted.len()
    }

    /// Messages still awaiting self-delivery at surviving senders.
    pub fn pending_self(&self) -> usize {
        self.nodes
            .values()
            .filter(|h| h.up)
            .map(|h| h.pending_self.len())
            .sum()
    }

    /// `node` submitted `id` and the core accepted it.
    pub fn submitted(&mut self, node: NodeId, id: MsgId, safe: bool) {
        assert_eq!(
            node, id.sender,
            "the simulator numbers messages by their sender"
        );
        let fresh = self.submitted.insert(id, safe).is_none();
        assert!(fresh, "message ids are never reused");
        self.node(node).pending_self.insert(id);
    }

    /// `node` crashed or left: its obligations end, a restart is a new incarnation.
    pub fn stopped(&mut self, node: NodeId) {
        let max_ring_seq = self.node(node).max_ring_seq;
        *self.node(node) = NodeHistory {
            up: false,
            max_ring_seq,
            ..NodeHistory::default()
        };
    }

    /// `node` started again (restart or join) with no memory but its persisted ring seq.
    pub fn started(&mut self, node: NodeId) {
        let max_ring_seq = self.node(node).max_ring_seq;
        *self.node(node) = NodeHistory {
            up: true,
            max_ring_seq,
            ..NodeHistory::default()
        };
    }

    /// `node` delivered a message ordered in `ring`. `fully_regular` tells whether the node was in
    /// its regular configuration `ring`, operational and before any transitional configuration (the
    /// only case where the safe guarantee covers all members of that configuration).
    pub fn delivered(
        &mut self,
        node: NodeId,
        sender: NodeId,
        ring: Ring,
        safe: bool,
        fully_regular: bool,
        payload: &[u8],
    ) -> Result<(), Violation> {
        let info = check_payload(payload).map_err(|error| Violation::BadPayload { node, error })?;
        let id = info.id;
        if sender != id.sender || info.safe != safe || self.submitted.get(&id) != Some(&safe) {
            return Err(Violation::Invented {
                node,
                id,
                claimed_sender: sender,
                safe,
            });
        }
        let history = self.node(node);
        if !history.delivered.insert(id) {
            return Err(Violation::Duplicate { node, id });
        }
        history.since_regular.add(id);
        *history.per_ring_count.entry(ring).or_insert(0) += 1;
        if sender == node {
            history.pending_self.remove(&id);
        }
        let in_regular_ring = history.regular.as_ref().map(|(r, _)| *r) == Some(ring)
            && history.transitional.is_none();
        self.deliveries += 1;

        let order = self.rings.entry(ring).or_default();
        if let Err(d) = order.record(node, id) {
            let first = order.witness(node, d.other, id, d.other_pos).unwrap_or(id);
            return Err(Violation::Order {
                ring,
                a: node,
                b: d.other,
                first,
                second: id,
            });
        }
        if safe && fully_regular && in_regular_ring {
            self.check_safe_against_departed(node, ring, id)?;
            self.safe_in_regular
                .entry(ring)
                .or_default()
                .push((node, id));
        }
        Ok(())
    }

    /// A safe delivery in regular `ring`: every member that already left `ring` alive must have it.
    fn check_safe_against_departed(
        &self,
        node: NodeId,
        ring: Ring,
        id: MsgId,
    ) -> Result<(), Violation> {
        let Some(members) = self.ring_members.get(&ring) else {
            return Ok(());
        };
        for member in members {
            let Some(h) = self.nodes.get(member) else {
                continue;
            };
            if h.up && h.left_rings.contains(&ring) && !h.delivered.contains(&id) {
                return Err(Violation::Safe {
                    ring,
                    node,
                    id,
                    member: *member,
                });
            }
        }
        Ok(())
    }

    /// `node` delivered a configuration change.
    pub fn conf(
        &mut self,
        node: NodeId,
        phase: ConfPhase,
        ring: Ring,
        members: &[NodeId],
    ) -> Result<(), Violation> {
        let fail = |what: String| Violation::Conf {
            node,
            phase,
            ring,
            what,
        };
        if !members.contains(&node) {
            return Err(fail(format!("members {members:?} do not include the node")));
        }
        if members.windows(2).any(|w| w[0] >= w[1]) {
            return Err(fail(format!(
                "members {members:?} are not sorted and unique"
            )));
        }
        match phase {
            ConfPhase::Transitional => self.transitional(node, ring, members),
            ConfPhase::Regular => self.regular(node, ring, members),
        }
    }

    fn transitional(
        &mut self,
        node: NodeId,
        ring: Ring,
        members: &[NodeId],
    ) -> Result<(), Violation> {
        let fail = |what: String| Violation::Conf {
            node,
            phase: ConfPhase::Transitional,
            ring,
            what,
        };
        let h = self.node(node);
        if h.transitional.is_some() {
            return Err(fail(
                "two transitional configurations without a regular one between".into(),
            ));
        }
        if let Some((old, old_members)) = &h.regular {
            if let Some(stray) = members.iter().find(|m| !old_members.contains(m)) {
                return Err(fail(format!(
                    "member {stray} was not in the old ring {old} {old_members:?}"
                )));
            }
        }
        h.transitional = Some(members.to_vec());
        Ok(())
    }

    fn regular(&mut self, node: NodeId, ring: Ring, members: &[NodeId]) -> Result<(), Violation> {
        let fail = |what: String| Violation::Conf {
            node,
            phase: ConfPhase::Regular,
            ring,
            what,
        };
        if members.first() != Some(&ring.rep) {
            return Err(fail(format!(
                "representative is not the lowest member of {members:?}"
            )));
        }
        match self.ring_members.get(&ring) {
            Some(known) if known.as_slice() != members => {
                return Err(fail(format!(
                    "members {members:?}, another node reported {known:?}"
                )));
            }
            Some(_) => {}
            None => {
                self.ring_members.insert(ring, members.to_vec());
            }
        }
        let h = self.node(node);
        if let Some(max) = h.max_ring_seq {
            if ring.seq <= max {
                return Err(fail(format!(
                    "ring seq {:#x} does not exceed the node's earlier {max:#x}",
                    ring.seq
                )));
            }
        }
        h.max_ring_seq = Some(ring.seq);
        let previous = h.regular.take();
        let transitional = h.transitional.take();
        let digest = std::mem::take(&mut h.since_regular);
        h.regular = Some((ring, members.to_vec()));
        self.regular_confs += 1;
        let Some((old, _)) = previous else {
            return Ok(());
        };
        let Some(trans) = transitional else {
            return Err(fail(format!(
                "no transitional configuration after leaving {old}"
            )));
        };
        if let Some(stray) = trans.iter().find(|m| !members.contains(m)) {
            return Err(fail(format!(
                "transitional member {stray} is not in the new ring"
            )));
        }
        self.node(node).left_rings.insert(old);
        self.check_evs(node, old, ring, digest)?;
        self.check_safe_on_departure(node, old)
    }

    fn check_evs(
        &mut self,
        node: NodeId,
        old: Ring,
        new: Ring,
        digest: SetDigest,
    ) -> Result<(), Violation> {
        match self.transitions.get(&(old, new)) {
            Some(&(first, first_digest)) if first_digest != digest => Err(Violation::Evs {
                old,
                new,
                a: first,
                b: node,
                count_a: first_digest.count,
                count_b: digest.count,
            }),
            Some(_) => Ok(()),
            None => {
                self.transitions.insert((old, new), (node, digest));
                Ok(())
            }
        }
    }

    /// `node` left regular ring `old` alive: it must have every safe message delivered there.
    fn check_safe_on_departure(&self, node: NodeId, old: Ring) -> Result<(), Violation> {
        let Some(safe) = self.safe_in_regular.get(&old) else {
            return Ok(());
        };
        let Some(h) = self.nodes.get(&node) else {
            return Ok(());
        };
        match safe.iter().find(|(_, id)| !h.delivered.contains(id)) {
            Some(&(by, id)) => Err(Violation::Safe {
                ring: old,
                node: by,
                id,
                member: node,
            }),
            None => Ok(()),
        }
    }

    /// At quiescence: every live sender delivered all it submitted.
    pub fn check_self_delivery(&self) -> Result<(), Violation> {
        let mut ids: Vec<_> = self.nodes.iter().filter(|(_, h)| h.up).collect();
        ids.sort_by_key(|(n, _)| **n);
        for (node, h) in ids {
            if let Some(id) = h.pending_self.first() {
                return Err(Violation::SelfDelivery {
                    node: *node,
                    id: *id,
                });
            }
        }
        Ok(())
    }

    /// At quiescence: the given nodes, all in regular ring `ring`, delivered as many messages in it.
    pub fn check_converged(&self, ring: Ring, nodes: &[NodeId]) -> Result<(), Violation> {
        let count = |n: NodeId| {
            self.nodes
                .get(&n)
                .and_then(|h| h.per_ring_count.get(&ring).copied())
                .unwrap_or(0)
        };
        let Some((&first, rest)) = nodes.split_first() else {
            return Ok(());
        };
        for &other in rest {
            if count(other) != count(first) {
                return Err(Violation::Diverged {
                    ring,
                    a: first,
                    b: other,
                    count_a: count(first),
                    count_b: count(other),
                });
            }
        }
        Ok(())
    }
}
