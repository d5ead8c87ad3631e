//! qnetd's decision algorithms as pure functions over a cluster's connected clients
//! (REFERENCE.md §5; facts from corosync-qdevice `qnetd-algo-ffsplit.c`, `qnetd-algo-lms.c`,
//! `qnetd-algo-utils.c`). The server keeps the state; these decide.

use super::wire::{Heuristics, RingId, TieBreaker, TieBreakerMode, Vote};
use crate::NodeId;

/// What the algorithms see of one connected client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientView {
    /// The client's node id.
    pub node_id: NodeId,
    /// Its configured node list.
    pub config_nodes: Vec<NodeId>,
    /// Its last reported membership.
    pub membership: Vec<NodeId>,
    /// Its last reported ring id.
    pub ring_id: RingId,
    /// Its last heuristics result.
    pub heuristics: Option<Heuristics>,
    /// Its tie breaker.
    pub tie_breaker: TieBreaker,
    /// Whether it enabled keep_active_partition_tie_breaker.
    pub keep_active_partition_tie_breaker: bool,
    /// lms: the last ACK/NACK/WAIT it was given (`None` = new).
    pub lms_last_result: Option<Vote>,
}

/// ffsplit: every client agrees on the config and, for every connected member of a client's
/// membership, on ring id and membership (`qnetd_algo_ffsplit_is_membership_stable`).
pub fn ffsplit_membership_stable(clients: &[ClientView]) -> bool {
    for (i, a) in clients.iter().enumerate() {
        for (j, b) in clients.iter().enumerate() {
            if i != j && !a.config_nodes.iter().all(|n| b.config_nodes.contains(n)) {
                return false;
            }
        }
    }
    for a in clients {
        for node in &a.membership {
            let Some(b) = clients.iter().find(|c| c.node_id == *node) else {
                continue;
            };
            if a.ring_id != b.ring_id {
                return false;
            }
            if !a.membership.iter().all(|n| b.membership.contains(n)) {
                return false;
            }
        }
    }
    true
}

/// (active clients, heuristics pass, heuristics fail) of a client's partition.
fn partition_stats(client: &ClientView, clients: &[ClientView]) -> (i64, i64, i64) {
    let mut stats = (0, 0, 0);
    for node in &client.membership {
        if let Some(member) = clients.iter().find(|c| c.node_id == *node) {
            stats.0 += 1;
            match member.heuristics {
                Some(Heuristics::Pass) => stats.1 += 1,
                Some(Heuristics::Fail) => stats.2 += 1,
                None => {}
            }
        }
    }
    stats
}

/// Whether `client`'s partition holds the tie-breaker node (`is_preferred_partition`).
fn is_preferred_partition(client: &ClientView) -> bool {
    let preferred = match client.tie_breaker.mode {
        TieBreakerMode::Lowest => client.config_nodes.iter().min().copied(),
        TieBreakerMode::Highest => client.config_nodes.iter().max().copied(),
        TieBreakerMode::NodeId => Some(client.tie_breaker.node_id),
    };
    preferred.is_some_and(|id| client.membership.contains(&id))
}

/// Whether partition `a` beats the best so far (`qnetd_algo_ffsplit_partition_cmp`).
fn ffsplit_beats(
    a: &ClientView,
    best: Option<&ClientView>,
    clients: &[ClientView],
    quorate_partition: &[NodeId],
    keep_active: bool,
) -> bool {
    let config = a.config_nodes.len();
    let members = a.membership.len();
    if members > config / 2 {
        return true;
    }
    if config % 2 != 0 || members < config / 2 {
        return false;
    }
    // Exact 50:50 split of an even cluster.
    let (a_active, a_pass, a_fail) = partition_stats(a, clients);
    let (b_active, b_pass, b_fail) = best
        .map(|b| partition_stats(b, clients))
        .unwrap_or_default();
    let a_score = a_active + a_pass - a_fail;
    let b_score = b_active + b_pass - b_fail;
    if a_score != b_score {
        return a_score > b_score;
    }
    if a_active != b_active {
        return a_active > b_active;
    }
    if let (true, Some(b)) = (keep_active, best) {
        let a_was = quorate_partition.contains(&a.node_id);
        let b_was = quorate_partition.contains(&b.node_id);
        if a_was != b_was {
            return a_was;
        }
    }
    is_preferred_partition(a)
}

/// ffsplit: the membership of the partition that gets the vote, if any
/// (`qnetd_algo_ffsplit_select_partition`). `clients` in connection order.
pub fn ffsplit_select_partition(
    clients: &[ClientView],
    quorate_partition: &[NodeId],
) -> Option<Vec<NodeId>> {
    let keep_active = clients.iter().all(|c| c.keep_active_partition_tie_breaker);
    let mut best: Option<&ClientView> = None;
    for client in clients {
        if ffsplit_beats(client, best, clients, quorate_partition, keep_active) {
            best = Some(client);
        }
    }
    best.map(|b| b.membership.clone())
}

/// lms: the vote for `client` (index into `clients`), or `WaitForReply` when ring ids of the
/// partition do not agree yet (`do_lms_algorithm`). `clients` in connection order.
pub fn lms_decide(clients: &[ClientView], index: usize) -> Vote {
    let Some(me) = clients.get(index) else {
        return Vote::Nack;
    };
    let ring_id = me.ring_id;
    for (j, other) in clients.iter().enumerate() {
        if j == index {
            continue;
        }
        let in_partition =
            me.membership.contains(&other.node_id) || other.membership.contains(&me.node_id);
        if in_partition && other.ring_id != ring_id {
            return Vote::WaitForReply;
        }
    }
    // Partitions = distinct ring ids of initialised clients: (ring, nodes, score).
    let mut partitions: Vec<(RingId, i64, i64)> = Vec::new();
    for c in clients.iter().filter(|c| c.ring_id.seq != 0) {
        let bonus = match c.heuristics {
            Some(Heuristics::Pass) => 1,
            Some(Heuristics::Fail) => -1,
            None => 0,
        };
        match partitions.iter_mut().find(|p| p.0 == c.ring_id) {
            Some(p) => {
                p.1 += 1;
                p.2 += 1 + bonus;
            }
            None => partitions.push((c.ring_id, 1, 1 + bonus)),
        }
    }
    match partitions.len() {
        0 => return Vote::WaitForReply,
        1 => return Vote::Ack, // "This is votequorum's problem, not ours"
        _ => {}
    }
    if me.lms_last_result.is_none() {
        let other_active = clients.iter().enumerate().any(|(j, o)| {
            j != index && o.ring_id != ring_id && o.lms_last_result == Some(Vote::Ack)
        });
        if other_active {
            return Vote::Nack; // a new partition while another one holds the vote
        }
    }
    for key in [|p: &(RingId, i64, i64)| p.2, |p: &(RingId, i64, i64)| p.1] {
        let best = partitions.iter().map(key).max().unwrap_or(0);
        let leaders: Vec<_> = partitions.iter().filter(|p| key(p) == best).collect();
        if let [only] = leaders.as_slice() {
            return if only.0 == ring_id {
                Vote::Ack
            } else {
                Vote::Nack
            };
        }
    }
    let tie_breaker_node = match me.tie_breaker.mode {
        TieBreakerMode::Lowest => clients.iter().map(|c| c.node_id).min(),
        TieBreakerMode::Highest => clients.iter().map(|c| c.node_id).max(),
        TieBreakerMode::NodeId => Some(me.tie_breaker.node_id),
    };
    let Some(tb) = tie_breaker_node else {
        return Vote::Nack;
    };
    let tb_ring = clients.iter().find(|c| c.node_id == tb).map(|c| c.ring_id);
    if me.node_id == tb || tb_ring == Some(ring_id) {
        Vote::Ack
    } else {
        Vote::Nack
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(
        node_id: NodeId,
        config: &[NodeId],
        members: &[NodeId],
        ring: (NodeId, u64),
    ) -> ClientView {
        ClientView {
            node_id,
            config_nodes: config.to_vec(),
            membership: members.to_vec(),
            ring_id: RingId {
                node_id: ring.0,
                seq: ring.1,
            },
            heuristics: None,
            tie_breaker: TieBreaker::LOWEST,
            keep_active_partition_tie_breaker: false,
            lms_last_result: None,
        }
    }

    #[test]
    fn ffsplit_even_split_goes_to_lowest() {
        let all = [1, 2, 3, 4];
        let clients = [
            view(1, &all, &[1, 2], (1, 8)),
            view(3, &all, &[3, 4], (3, 8)),
        ];
        assert!(ffsplit_membership_stable(&clients));
        assert_eq!(ffsplit_select_partition(&clients, &[]), Some(vec![1, 2]));
        let mut high = clients.clone();
        for c in &mut high {
            c.tie_breaker = TieBreaker::HIGHEST;
        }
        assert_eq!(ffsplit_select_partition(&high, &[]), Some(vec![3, 4]));
        let mut by_id = clients.clone();
        for c in &mut by_id {
            c.tie_breaker = TieBreaker::node(4);
        }
        assert_eq!(ffsplit_select_partition(&by_id, &[]), Some(vec![3, 4]));
    }

    #[test]
    fn ffsplit_more_active_clients_win_then_keep_active() {
        let all = [1, 2, 3, 4];
        // 3 and 4 both connected, only 1 of {1,2}: {3,4} has more active clients.
        let clients = [
            view(1, &all, &[1, 2], (1, 8)),
            view(3, &all, &[3, 4], (3, 8)),
            view(4, &all, &[3, 4], (3, 8)),
        ];
        assert_eq!(ffsplit_select_partition(&clients, &[]), Some(vec![3, 4]));
        // Equal activity: keep_active (on for all) keeps the previously quorate partition.
        let mut equal = vec![
            view(2, &all, &[1, 2], (1, 8)),
            view(3, &all, &[3, 4], (3, 8)),
        ];
        for c in &mut equal {
            c.keep_active_partition_tie_breaker = true;
        }
        assert_eq!(ffsplit_select_partition(&equal, &[3, 4]), Some(vec![3, 4]));
        assert_eq!(ffsplit_select_partition(&equal, &[1, 2]), Some(vec![1, 2]));
        assert_eq!(ffsplit_select_partition(&equal, &[]), Some(vec![1, 2]));
    }

    #[test]
    fn ffsplit_minority_never_wins_and_unstable_is_detected() {
        let all = [1, 2, 3];
        let clients = [view(1, &all, &[1], (1, 8))];
        assert_eq!(ffsplit_select_partition(&clients, &[]), None);
        let split_view = [
            view(1, &[1, 2], &[1, 2], (1, 4)),
            view(2, &[1, 2], &[2], (2, 8)),
        ];
        assert!(!ffsplit_membership_stable(&split_view));
    }

    #[test]
    fn lms_largest_partition_then_tie_breaker() {
        let all = [1, 2, 3, 4, 5];
        let clients = [
            view(1, &all, &[1, 2], (1, 8)),
            view(2, &all, &[1, 2], (1, 8)),
            view(3, &all, &[3], (3, 8)),
        ];
        assert_eq!(lms_decide(&clients, 0), Vote::Ack);
        assert_eq!(lms_decide(&clients, 2), Vote::Nack);
        let alone = [view(4, &all, &[4], (4, 12))];
        assert_eq!(lms_decide(&alone, 0), Vote::Ack);
        let tie = [view(1, &all, &[1], (1, 8)), view(3, &all, &[3], (3, 8))];
        assert_eq!(lms_decide(&tie, 0), Vote::Ack);
        assert_eq!(lms_decide(&tie, 1), Vote::Nack);
        let waiting = [
            view(1, &all, &[1, 2], (1, 8)),
            view(2, &all, &[1, 2], (1, 4)),
        ];
        assert_eq!(lms_decide(&waiting, 0), Vote::WaitForReply);
    }
}
