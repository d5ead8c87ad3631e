//! Closed process groups, what corosync's CPG service is: which processes on which nodes belong to
//! which named group, kept identical on every node because every node applies the same events in
//! the same total order (joins, leaves and syncs are Totem messages; node loss is a configuration
//! change, itself delivered in order).
//!
//! This module is pure state; the daemon's core thread feeds it delivered [`CpgMsg`]s and regular
//! configurations, and forwards the returned [`GroupChange`]s to the local clients of each group.
//!
//! After every regular configuration each node multicasts a [`CpgMsg::Sync`] listing its own local
//! members (only a node is authoritative about its own processes). Applying a node's sync replaces
//! what the others believed about that node, so nodes that come out of different partitions
//! converge once the syncs are delivered, and they are delivered in the same order everywhere.

pub mod local;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};

pub use wire::{CpgMsg, GroupName, WireError, GROUP_NAME_MAX};

/// A cluster node id (corosync `nodeid`).
pub type NodeId = u32;

/// One process in a group: the node it runs on and its process id there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    /// Node the process runs on.
    pub node: NodeId,
    /// Its process id on that node.
    pub pid: u32,
}

/// Why a member joined or left, numbered as corosync's `cpg_reason_t` (`CPG_REASON_*`), which
/// applications print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The process called join.
    Join = 1,
    /// The process called leave.
    Leave = 2,
    /// Its node left the membership.
    NodeDown = 3,
    /// Its node came into the membership (learned through a sync).
    NodeUp = 4,
    /// The process died or closed its connection without leaving.
    ProcDown = 5,
}

/// A change of one group's membership, as each local member of the group is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupChange {
    /// The group.
    pub group: GroupName,
    /// Members after the change, sorted.
    pub members: Vec<Member>,
    /// Members that left, with why.
    pub left: Vec<(Member, Reason)>,
    /// Members that joined, with why.
    pub joined: Vec<(Member, Reason)>,
}

/// Every group's membership as this node knows it.
#[derive(Debug, Default)]
pub struct ProcessGroups {
    groups: BTreeMap<GroupName, BTreeSet<Member>>,
}

impl ProcessGroups {
    /// No groups.
    pub fn new() -> ProcessGroups {
        ProcessGroups::default()
    }

    /// Members of `group`, sorted; empty when nobody is in it.
    pub fn members(&self, group: &GroupName) -> Vec<Member> {
        self.groups
            .get(group)
            .map(|m| m.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Names of the groups that have at least one member.
    pub fn group_names(&self) -> impl Iterator<Item = &GroupName> {
        self.groups.keys()
    }

    /// Members that run on `node`, as `(group, pid)`, for that node's sync message.
    pub fn members_on(&self, node: NodeId) -> Vec<(GroupName, u32)> {
        let mut out = Vec::new();
        for (group, members) in &self.groups {
            for m in members.iter().filter(|m| m.node == node) {
                out.push((group.clone(), m.pid));
            }
        }
        out
    }

    /// Applies a delivered message from `from`. Multicasts change nothing here (the caller
    /// delivers them to the group's local members) and return an empty list.
    pub fn apply(&mut self, from: NodeId, msg: &CpgMsg) -> Vec<GroupChange> {
        match msg {
            CpgMsg::Join { group, pid } => {
                let member = Member {
                    node: from,
                    pid: *pid,
                };
                self.add(group, member, Reason::Join).into_iter().collect()
            }
            CpgMsg::Leave { group, pid, died } => {
                let member = Member {
                    node: from,
                    pid: *pid,
                };
                let reason = if *died {
                    Reason::ProcDown
                } else {
                    Reason::Leave
                };
                self.remove(group, member, reason).into_iter().collect()
            }
            CpgMsg::Mcast { .. } => Vec::new(),
            CpgMsg::Sync { members } => self.apply_sync(from, members),
        }
    }

    /// Applies a regular configuration: members on nodes outside `nodes` are gone (NodeDown).
    pub fn apply_configuration(&mut self, nodes: &[NodeId]) -> Vec<GroupChange> {
        let alive: BTreeSet<NodeId> = nodes.iter().copied().collect();
        let mut changes = Vec::new();
        for (group, members) in self.groups.iter_mut() {
            let gone: Vec<Member> = members
                .iter()
                .filter(|m| !alive.contains(&m.node))
                .copied()
                .collect();
            if gone.is_empty() {
                continue;
            }
            for m in &gone {
                members.remove(m);
            }
            changes.push(GroupChange {
                group: group.clone(),
                members: members.iter().copied().collect(),
                left: gone.into_iter().map(|m| (m, Reason::NodeDown)).collect(),
                joined: Vec::new(),
            });
        }
        self.groups.retain(|_, members| !members.is_empty());
        changes
    }

    /// Makes `from`'s members exactly those it lists: the others' belief about that node is
    /// replaced by the node's own word.
    fn apply_sync(&mut self, from: NodeId, listed: &[(GroupName, u32)]) -> Vec<GroupChange> {
        let listed: BTreeSet<(GroupName, u32)> = listed.iter().cloned().collect();
        let mut names: BTreeSet<GroupName> = listed.iter().map(|(g, _)| g.clone()).collect();
        names.extend(self.groups.keys().cloned());
        let mut changes = Vec::new();
        for group in names {
            let current = self.groups.entry(group.clone()).or_default();
            let mut left = Vec::new();
            let mut joined = Vec::new();
            let stale: Vec<Member> = current
                .iter()
                .filter(|m| m.node == from && !listed.contains(&(group.clone(), m.pid)))
                .copied()
                .collect();
            for m in stale {
                current.remove(&m);
                left.push((m, Reason::NodeDown));
            }
            for (_, pid) in listed.iter().filter(|(g, _)| *g == group) {
                let m = Member {
                    node: from,
                    pid: *pid,
                };
                if current.insert(m) {
                    joined.push((m, Reason::NodeUp));
                }
            }
            if !left.is_empty() || !joined.is_empty() {
                changes.push(GroupChange {
                    group: group.clone(),
                    members: current.iter().copied().collect(),
                    left,
                    joined,
                });
            }
        }
        self.groups.retain(|_, members| !members.is_empty());
        changes
    }

    fn add(&mut self, group: &GroupName, member: Member, reason: Reason) -> Option<GroupChange> {
        let members = self.groups.entry(group.clone()).or_default();
        if !members.insert(member) {
            return None;
        }
        Some(GroupChange {
            group: group.clone(),
            members: members.iter().copied().collect(),
            left: Vec::new(),
            joined: vec![(member, reason)],
        })
    }

    fn remove(&mut self, group: &GroupName, member: Member, reason: Reason) -> Option<GroupChange> {
        let members = self.groups.get_mut(group)?;
        if !members.remove(&member) {
            return None;
        }
        let change = GroupChange {
            group: group.clone(),
            members: members.iter().copied().collect(),
            left: vec![(member, reason)],
            joined: Vec::new(),
        };
        if members.is_empty() {
            self.groups.remove(group);
        }
        Some(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(name: &str) -> GroupName {
        GroupName::new(name).expect("valid test group name")
    }

    #[test]
    fn join_leave_and_node_down() {
        let mut pg = ProcessGroups::new();
        let c = pg.apply(
            1,
            &CpgMsg::Join {
                group: g("a"),
                pid: 10,
            },
        );
        assert_eq!(
            c[0].joined,
            vec![(Member { node: 1, pid: 10 }, Reason::Join)]
        );
        pg.apply(
            2,
            &CpgMsg::Join {
                group: g("a"),
                pid: 20,
            },
        );
        // A repeated join is not a change.
        assert!(pg
            .apply(
                2,
                &CpgMsg::Join {
                    group: g("a"),
                    pid: 20
                }
            )
            .is_empty());
        let c = pg.apply_configuration(&[1]);
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].left,
            vec![(Member { node: 2, pid: 20 }, Reason::NodeDown)]
        );
        assert_eq!(c[0].members, vec![Member { node: 1, pid: 10 }]);
        let c = pg.apply(
            1,
            &CpgMsg::Leave {
                group: g("a"),
                pid: 10,
                died: true,
            },
        );
        assert_eq!(c[0].left[0].1, Reason::ProcDown);
        assert_eq!(pg.group_names().count(), 0);
    }

    #[test]
    fn sync_replaces_belief_about_the_sender_only() {
        let mut a = ProcessGroups::new();
        a.apply(
            1,
            &CpgMsg::Join {
                group: g("x"),
                pid: 1,
            },
        );
        a.apply(
            2,
            &CpgMsg::Join {
                group: g("x"),
                pid: 2,
            },
        );
        a.apply(
            2,
            &CpgMsg::Join {
                group: g("y"),
                pid: 3,
            },
        );
        // Node 2 says it now only has pid 4 in x.
        let c = a.apply(
            2,
            &CpgMsg::Sync {
                members: vec![(g("x"), 4)],
            },
        );
        assert_eq!(
            a.members(&g("x")),
            vec![Member { node: 1, pid: 1 }, Member { node: 2, pid: 4 }]
        );
        assert!(a.members(&g("y")).is_empty());
        assert_eq!(c.len(), 2);
        assert_eq!(a.members_on(2), vec![(g("x"), 4)]);
    }

    #[test]
    fn nodes_from_two_partitions_converge_after_syncs() {
        // Node 1 saw node 2's old member; node 3 never did. After both receive the same syncs
        // in the same order they agree.
        let mut n1 = ProcessGroups::new();
        let mut n3 = ProcessGroups::new();
        n1.apply(
            2,
            &CpgMsg::Join {
                group: g("x"),
                pid: 9,
            },
        );
        n3.apply(
            3,
            &CpgMsg::Join {
                group: g("x"),
                pid: 7,
            },
        );
        n1.apply(
            3,
            &CpgMsg::Join {
                group: g("z"),
                pid: 1,
            },
        );
        let syncs = [
            (2, CpgMsg::Sync { members: vec![] }),
            (
                3,
                CpgMsg::Sync {
                    members: vec![(g("x"), 7)],
                },
            ),
        ];
        for (from, m) in &syncs {
            n1.apply(*from, m);
            n3.apply(*from, m);
        }
        for name in [g("x"), g("z")] {
            assert_eq!(n1.members(&name), n3.members(&name));
        }
    }
}
