//! The groups one local client connection has joined, with the options of each join, and the
//! rule that decides whether a multicast of that connection may go to Totem now.
//!
//! A group joined with [`JoinOptions::require_quorum`] refuses sends with
//! [`ErrorReply::NoQuorum`] while the local node is not quorate. Only sends are gated: joins,
//! leaves, membership events and deliveries are not held back, and a message accepted while the
//! node was quorate is still delivered even if the ring breaks before it is ordered (it is then
//! ordered, and delivered, inside whatever partition its sender ends up in). The default
//! (`require_quorum: false`) is corosync CPG's behaviour: a partition without quorum keeps
//! ordering its members' messages among itself.

use std::collections::BTreeMap;

use totem_client::proto::{ErrorReply, GroupName, JoinOptions};

/// The groups of one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Joined {
    groups: BTreeMap<GroupName, JoinOptions>,
}

impl Joined {
    /// No groups.
    pub fn new() -> Joined {
        Joined::default()
    }

    /// Whether the connection is in `group`.
    pub fn contains(&self, group: &GroupName) -> bool {
        self.groups.contains_key(group)
    }

    /// Records a join of `group` with `options`.
    pub fn insert(&mut self, group: GroupName, options: JoinOptions) {
        self.groups.insert(group, options);
    }

    /// Records a leave of `group`; whether the connection was in it.
    pub fn remove(&mut self, group: &GroupName) -> bool {
        self.groups.remove(group).is_some()
    }

    /// Whether the connection is in no group.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The groups, in name order.
    pub fn names(&self) -> impl Iterator<Item = &GroupName> {
        self.groups.keys()
    }

    /// Whether a multicast to `group` may be submitted now, the local node being `quorate` or
    /// not: `InvalidParam` when the connection has not joined `group`, `NoQuorum` when it joined
    /// with `require_quorum` and the node is not quorate.
    pub fn may_send(&self, group: &GroupName, quorate: bool) -> Result<(), ErrorReply> {
        let Some(options) = self.groups.get(group) else {
            return Err(not_joined(group));
        };
        if options.require_quorum && !quorate {
            return Err(ErrorReply::NoQuorum);
        }
        Ok(())
    }
}

/// The refusal of a request about a group the connection is not in.
pub fn not_joined(group: &GroupName) -> ErrorReply {
    ErrorReply::InvalidParam {
        detail: format!("this connection has not joined group {group}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(name: &str) -> GroupName {
        GroupName::new(name).expect("valid test group name")
    }

    const GATED: JoinOptions = JoinOptions {
        require_quorum: true,
    };

    #[test]
    fn a_group_joined_with_require_quorum_refuses_sends_only_while_inquorate() {
        let mut joined = Joined::new();
        joined.insert(g("gated"), GATED);
        assert_eq!(joined.may_send(&g("gated"), true), Ok(()));
        assert_eq!(
            joined.may_send(&g("gated"), false),
            Err(ErrorReply::NoQuorum)
        );
        // Quorate again: sends go through again.
        assert_eq!(joined.may_send(&g("gated"), true), Ok(()));
    }

    #[test]
    fn the_default_join_keeps_cpg_semantics_without_quorum() {
        let mut joined = Joined::new();
        joined.insert(g("cpg"), JoinOptions::default());
        joined.insert(g("gated"), GATED);
        assert_eq!(joined.may_send(&g("cpg"), false), Ok(()));
        assert_eq!(joined.may_send(&g("cpg"), true), Ok(()));
        // The option is per group: the other group of the same connection is gated.
        assert_eq!(
            joined.may_send(&g("gated"), false),
            Err(ErrorReply::NoQuorum)
        );
    }

    #[test]
    fn a_group_not_joined_is_refused_as_before_whatever_the_quorum() {
        let mut joined = Joined::new();
        joined.insert(g("gated"), GATED);
        for quorate in [true, false] {
            assert!(matches!(
                joined.may_send(&g("other"), quorate),
                Err(ErrorReply::InvalidParam { .. })
            ));
        }
        assert!(joined.remove(&g("gated")));
        assert!(!joined.remove(&g("gated")));
        assert!(joined.is_empty());
        assert!(matches!(
            joined.may_send(&g("gated"), false),
            Err(ErrorReply::InvalidParam { .. })
        ));
    }
}
