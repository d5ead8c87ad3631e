//! The votequorum arithmetic as pure functions: the quorum formula and the run-time checks of
//! `corosync-quorumtool -e` / `-v` (REFERENCE.md §3.1, §3.3).

/// `max((E+2)/2, (V+2)/2)` with integer division: floor(E/2)+1 against the highest expected votes
/// and against the votes present (corosync `exec/votequorum.c` `calculate_quorum`, "taken from the
/// OpenVMS Cluster Systems manual").
pub fn quorum_formula(highest_expected: u32, total_votes: u32) -> u32 {
    let from_expected = highest_expected.saturating_add(2) / 2;
    let from_votes = total_votes.saturating_add(2) / 2;
    from_expected.max(from_votes)
}

/// What one quorum calculation needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuorumInputs {
    /// Highest expected votes over member nodes (or the value forced by `-e` / LMS).
    pub highest_expected: u32,
    /// Votes of member nodes plus the qdevice's when it casts its vote.
    pub total_votes: u32,
    /// Member nodes plus one for a voting qdevice (corosync's `total_nodes`).
    pub total_nodes: u32,
    /// The quorum before this calculation.
    pub previous_quorum: u32,
    /// Whether the quorum may go down (only `-e`, `-v`, LMS and leaving nodes allow it).
    pub allow_decrease: bool,
    /// `two_node: 1` is configured.
    pub two_node: bool,
}

/// The quorum after applying the never-decrease rule and two_node (REFERENCE.md §3.1).
pub fn calculate_quorum(inputs: QuorumInputs) -> u32 {
    let mut quorum = quorum_formula(inputs.highest_expected, inputs.total_votes);
    if !inputs.allow_decrease {
        quorum = quorum.max(inputs.previous_quorum);
    }
    if inputs.two_node && inputs.total_nodes <= 2 {
        quorum = 1;
    }
    quorum
}

/// Why a run-time change of expected votes or votes was refused; `Display` is what
/// corosync-quorumtool prints (`tools/corosync-quorumtool.c` l.262, 274, 1100-1116).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// `-e` with a non-positive value (checked by the command line before any request).
    #[error("New expected votes value was not valid, try a positive number")]
    ExpectedNotPositive,
    /// `-e N` with `N < total votes`, or a quorate cluster whose new quorum exceeds its votes.
    #[error("Unable to set expected votes: CS_ERR_INVALID_PARAM")]
    ExpectedInvalid,
    /// `-v` for a node id the cluster has never seen.
    #[error("Unable to set votes {votes} for nodeid: {node_id}: CS_ERR_NAME_NOT_FOUND")]
    VotesNodeNotFound {
        /// Requested votes.
        votes: u32,
        /// Node the change was for.
        node_id: u32,
    },
    /// `-v` whose resulting quorum would fall below half the votes or above all of them.
    #[error("Unable to set votes {votes} for nodeid: {node_id}: CS_ERR_INVALID_PARAM")]
    VotesInvalid {
        /// Requested votes.
        votes: u32,
        /// Node the change was for.
        node_id: u32,
    },
}

/// corosync's check for `votequorum_setexpected`: the new quorum is computed with decrease allowed;
/// refuse if `new_expected < total_votes`, or if the cluster is quorate and would not stay so.
pub fn check_set_expected(
    new_expected: u32,
    total_votes: u32,
    total_nodes: u32,
    two_node: bool,
    quorate: bool,
) -> Result<u32, ChangeError> {
    if new_expected == 0 {
        return Err(ChangeError::ExpectedNotPositive);
    }
    let new_quorum = calculate_quorum(QuorumInputs {
        highest_expected: new_expected,
        total_votes,
        total_nodes,
        previous_quorum: 0,
        allow_decrease: true,
        two_node,
    });
    if new_expected < total_votes || (quorate && new_quorum > total_votes) {
        return Err(ChangeError::ExpectedInvalid);
    }
    Ok(new_quorum)
}

/// corosync's check for `votequorum_setvotes`: with the node's votes replaced, the quorum
/// (decrease allowed, highest expected from the members) must lie in `[total/2, total]`.
pub fn check_set_votes(new_quorum: u32, total_votes: u32) -> bool {
    new_quorum >= total_votes / 2 && new_quorum <= total_votes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(e: u32, v: u32) -> u32 {
        quorum_formula(e, v)
    }

    #[test]
    fn formula_matches_documented_examples() {
        // pvecm status examples: 4 nodes -> quorum 3, 3 nodes -> quorum 2.
        assert_eq!(q(4, 4), 3);
        assert_eq!(q(3, 3), 2);
        assert_eq!(q(3, 2), 2);
        assert_eq!(q(3, 1), 2);
        // Odd and even expected.
        assert_eq!(q(8, 8), 5);
        assert_eq!(q(5, 5), 3);
        assert_eq!(q(2, 2), 2);
        assert_eq!(q(1, 1), 1);
        // Votes above expected push quorum up.
        assert_eq!(q(3, 7), 4);
    }

    #[test]
    fn never_decreases_unless_allowed() {
        let base = QuorumInputs {
            highest_expected: 2,
            total_votes: 2,
            total_nodes: 2,
            previous_quorum: 3,
            allow_decrease: false,
            two_node: false,
        };
        assert_eq!(calculate_quorum(base), 3);
        assert_eq!(
            calculate_quorum(QuorumInputs {
                allow_decrease: true,
                ..base
            }),
            2
        );
    }

    #[test]
    fn two_node_only_up_to_two_nodes() {
        let base = QuorumInputs {
            highest_expected: 2,
            total_votes: 1,
            total_nodes: 1,
            previous_quorum: 2,
            allow_decrease: false,
            two_node: true,
        };
        assert_eq!(calculate_quorum(base), 1);
        let three = QuorumInputs {
            highest_expected: 3,
            total_votes: 3,
            total_nodes: 3,
            ..base
        };
        assert_eq!(calculate_quorum(three), 2);
    }

    #[test]
    fn set_expected_checks() {
        // Lone inquorate node of 3: `-e 1` accepted, quorum 1 (reference e1-on-inquorate).
        assert_eq!(check_set_expected(1, 1, 1, false, false), Ok(1));
        // Full cluster of 3: `-e 1` refused (reference e1-after-rejoin).
        assert_eq!(
            check_set_expected(1, 3, 3, false, true),
            Err(ChangeError::ExpectedInvalid)
        );
        assert_eq!(check_set_expected(3, 3, 3, false, true), Ok(2));
        assert_eq!(
            check_set_expected(0, 3, 3, false, true),
            Err(ChangeError::ExpectedNotPositive)
        );
        assert_eq!(
            ChangeError::ExpectedInvalid.to_string(),
            "Unable to set expected votes: CS_ERR_INVALID_PARAM"
        );
    }

    proptest::proptest! {
        #[test]
        fn formula_is_a_strict_majority(e in 0u32..10_000, v in 0u32..10_000) {
            let quorum = quorum_formula(e, v);
            proptest::prop_assert!(quorum * 2 > e);
            proptest::prop_assert!(quorum * 2 > v);
            proptest::prop_assert!(quorum >= 1);
        }
    }
}
