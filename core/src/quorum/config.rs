//! The `quorum { }` and `nodelist { }` settings votequorum reads, and corosync's start-up checks
//! on them (REFERENCE.md §3.2; `exec/votequorum.c` `votequorum_readconfig`).

use crate::NodeId;

/// `last_man_standing_window` default: 10 s (`DEFAULT_LMS_WIN`, `exec/votequorum.c:89`).
pub const LMS_WINDOW_DEFAULT_MS: u64 = 10_000;
/// `quorum.device.timeout` default: 10 s (`VOTEQUORUM_QDEVICE_DEFAULT_TIMEOUT`, REFERENCE.md §5).
pub const QDEVICE_TIMEOUT_DEFAULT_MS: u64 = 10_000;
/// `quorum.device.sync_timeout` default: 30 s (REFERENCE.md §5).
pub const QDEVICE_SYNC_TIMEOUT_DEFAULT_MS: u64 = 30_000;

/// One `nodelist.node` entry as votequorum sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// `nodeid`.
    pub node_id: NodeId,
    /// `quorum_votes` (default 1).
    pub votes: u32,
    /// `name` (or ring0_addr) for the status listing.
    pub name: String,
}

/// `auto_tie_breaker_node`: which half of an exact 50 % split keeps quorum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutoTieBreaker {
    /// The partition holding the lowest node id (the default).
    Lowest,
    /// The partition holding the highest node id.
    Highest,
    /// The first listed node present, unless an earlier one was in the previous partition.
    List(Vec<NodeId>),
}

impl AutoTieBreaker {
    /// Parse `lowest`, `highest` or a space-separated list of node ids, as corosync does
    /// (`parse_atb_string`); `None` when nothing valid is given (corosync then disables ATB).
    pub fn parse(text: &str) -> Option<AutoTieBreaker> {
        match text.trim() {
            "lowest" => Some(AutoTieBreaker::Lowest),
            "highest" => Some(AutoTieBreaker::Highest),
            other => {
                let ids: Vec<NodeId> = other
                    .split_whitespace()
                    .map_while(|word| word.parse::<NodeId>().ok())
                    .take_while(|id| *id != 0)
                    .collect();
                (!ids.is_empty()).then_some(AutoTieBreaker::List(ids))
            }
        }
    }
}

/// `quorum.device` settings votequorum needs (the net model's own settings live in qdevice).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QdeviceConfig {
    /// `quorum.device.votes`; `None` = computed as (sum of node votes) − 1 when every node has 1.
    pub votes: Option<u32>,
    /// `quorum.device.timeout`: the vote expires when the device has not polled for this long.
    pub timeout_ms: u64,
    /// `quorum.device.sync_timeout`.
    pub sync_timeout_ms: u64,
}

impl Default for QdeviceConfig {
    fn default() -> Self {
        QdeviceConfig {
            votes: None,
            timeout_ms: QDEVICE_TIMEOUT_DEFAULT_MS,
            sync_timeout_ms: QDEVICE_SYNC_TIMEOUT_DEFAULT_MS,
        }
    }
}

/// Everything votequorum is configured with on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumConfig {
    /// This node's id.
    pub local_node_id: NodeId,
    /// The nodelist (may be empty when `expected_votes` is given).
    pub nodes: Vec<NodeConfig>,
    /// `quorum.expected_votes` (overrides the nodelist sum).
    pub expected_votes: Option<u32>,
    /// `quorum.votes` for a node without nodelist (default 1).
    pub votes_without_nodelist: u32,
    /// `two_node`.
    pub two_node: bool,
    /// `wait_for_all`; `None` = not set, which means "as two_node".
    pub wait_for_all: Option<bool>,
    /// `last_man_standing`.
    pub last_man_standing: bool,
    /// `last_man_standing_window` in ms.
    pub last_man_standing_window_ms: u64,
    /// `auto_tie_breaker` (+ `auto_tie_breaker_node`).
    pub auto_tie_breaker: Option<AutoTieBreaker>,
    /// `allow_downscale` (printed only; corosync calls it unsupported).
    pub allow_downscale: bool,
    /// `quorum.device`.
    pub qdevice: Option<QdeviceConfig>,
}

impl QuorumConfig {
    /// A nodelist of `count` nodes numbered 1..=count, one vote each, this node `local`.
    pub fn simple(local: NodeId, count: u32) -> QuorumConfig {
        QuorumConfig {
            local_node_id: local,
            nodes: (1..=count)
                .map(|id| NodeConfig {
                    node_id: id,
                    votes: 1,
                    name: format!("n{id}"),
                })
                .collect(),
            expected_votes: None,
            votes_without_nodelist: 1,
            two_node: false,
            wait_for_all: None,
            last_man_standing: false,
            last_man_standing_window_ms: LMS_WINDOW_DEFAULT_MS,
            auto_tie_breaker: None,
            allow_downscale: false,
            qdevice: None,
        }
    }
}

/// A configuration corosync refuses to start with; `Display` is corosync's error text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Neither a nodelist nor `quorum.expected_votes`.
    #[error("configuration error: nodelist or quorum.expected_votes must be configured!")]
    NoNodelistNorExpected,
    /// `two_node` together with a quorum device.
    #[error(
        "configuration error: two_node and quorum device cannot be configured at the same time!"
    )]
    TwoNodeWithQdevice,
    /// `last_man_standing` together with a quorum device.
    #[error("configuration error: quorum.device is not compatible with last_man_standing")]
    LmsWithQdevice,
    /// `auto_tie_breaker` together with a quorum device.
    #[error("configuration error: quorum.device is not compatible with auto_tie_breaker")]
    AtbWithQdevice,
    /// ATB + LMS in an odd-sized cluster without wait_for_all.
    #[error("configuration error: auto_tie_breaker & last_man_standing not available in odd sized cluster")]
    AtbLmsOddCluster,
    /// `expected_votes` + a device without `quorum.device.votes`.
    #[error("configuration error: quorum.device.votes must be specified when quorum.expected_votes is set")]
    QdeviceVotesNeededWithExpected,
    /// A device without votes in a nodelist where some node has more than one vote.
    #[error(
        "configuration error: quorum.device.votes must be specified when not all nodes votes 1"
    )]
    QdeviceVotesNeededUnevenVotes,
    /// Device votes leave fewer than two node votes.
    #[error("configuration error: quorum.device.votes is too high or expected_votes is too low")]
    QdeviceVotesTooHigh,
    /// The local node id is not in the nodelist.
    #[error("configuration error: local node id {0} is not in the nodelist")]
    LocalNodeNotInNodelist(NodeId),
    /// Node id 0 (reserved for the quorum device) or a duplicate id.
    #[error("configuration error: node id {0} is invalid or duplicated")]
    BadNodeId(NodeId),
}

/// A validated configuration with corosync's derived values and silent downgrades applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    /// The configuration as given.
    pub config: QuorumConfig,
    /// This node's votes.
    pub local_votes: u32,
    /// This node's expected votes at start (nodelist sum + device votes, or `expected_votes`).
    pub expected_votes: u32,
    /// `two_node` after corosync's rules (off with ATB).
    pub two_node: bool,
    /// `wait_for_all` after corosync's rules (implied by two_node unless set).
    pub wait_for_all: bool,
    /// ATB after corosync's rules (off in an odd cluster without wait_for_all).
    pub auto_tie_breaker: Option<AutoTieBreaker>,
    /// Votes of the quorum device (0 without one).
    pub qdevice_votes: u32,
    /// Human-readable notes about settings corosync silently changed.
    pub warnings: Vec<String>,
}

impl QuorumConfig {
    /// Apply corosync's start-up checks; errors are the configurations corosync refuses.
    pub fn validate(&self) -> Result<Effective, ConfigError> {
        self.check_node_ids()?;
        let have_nodelist = !self.nodes.is_empty();
        if !have_nodelist && self.expected_votes.is_none() {
            return Err(ConfigError::NoNodelistNorExpected);
        }
        let have_qdevice = self.qdevice.is_some();
        if self.two_node && have_qdevice {
            return Err(ConfigError::TwoNodeWithQdevice);
        }
        let mut warnings = Vec::new();
        let mut two_node = self.two_node;
        let mut atb = self.auto_tie_breaker.clone();
        let wait_for_all_autoset = self.wait_for_all.is_none();
        let mut wait_for_all = self.wait_for_all.unwrap_or(false);
        if wait_for_all_autoset {
            wait_for_all = two_node;
        }
        if two_node && atb.is_some() {
            warnings
                .push("two_node and auto_tie_breaker are both specified: two_node disabled".into());
            two_node = false;
            if wait_for_all_autoset {
                wait_for_all = false;
            }
        }
        let node_votes_sum: u32 = self.nodes.iter().map(|n| n.votes).sum();
        if atb.is_some() && node_votes_sum % 2 == 1 && !wait_for_all {
            if self.last_man_standing {
                return Err(ConfigError::AtbLmsOddCluster);
            }
            warnings
                .push("auto_tie_breaker in an odd cluster needs wait_for_all: ATB disabled".into());
            atb = None;
        }
        if have_qdevice && self.last_man_standing {
            return Err(ConfigError::LmsWithQdevice);
        }
        if have_qdevice && atb.is_some() {
            return Err(ConfigError::AtbWithQdevice);
        }
        let (qdevice_votes, expected_votes) = self.device_and_expected(node_votes_sum)?;
        let local_votes = if have_nodelist {
            self.nodes
                .iter()
                .find(|n| n.node_id == self.local_node_id)
                .map(|n| n.votes)
                .ok_or(ConfigError::LocalNodeNotInNodelist(self.local_node_id))?
        } else {
            self.votes_without_nodelist
        };
        Ok(Effective {
            config: self.clone(),
            local_votes,
            expected_votes,
            two_node,
            wait_for_all,
            auto_tie_breaker: atb,
            qdevice_votes,
            warnings,
        })
    }

    fn check_node_ids(&self) -> Result<(), ConfigError> {
        for (index, node) in self.nodes.iter().enumerate() {
            let duplicate = self.nodes[..index]
                .iter()
                .any(|n| n.node_id == node.node_id);
            if node.node_id == 0 || duplicate {
                return Err(ConfigError::BadNodeId(node.node_id));
            }
        }
        if self.local_node_id == 0 {
            return Err(ConfigError::BadNodeId(0));
        }
        Ok(())
    }

    /// Device votes and this node's expected votes, as `votequorum_readconfig` derives them.
    fn device_and_expected(&self, node_votes_sum: u32) -> Result<(u32, u32), ConfigError> {
        let node_count = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
        let mut node_expected = node_votes_sum;
        let mut qdevice_votes = 0;
        if let Some(device) = &self.qdevice {
            match device.votes {
                None if self.expected_votes.is_some() => {
                    return Err(ConfigError::QdeviceVotesNeededWithExpected)
                }
                None if node_count != node_votes_sum => {
                    return Err(ConfigError::QdeviceVotesNeededUnevenVotes)
                }
                None => {
                    qdevice_votes = node_votes_sum.saturating_sub(1);
                    node_expected = node_votes_sum + qdevice_votes;
                }
                Some(votes) => {
                    if let Some(expected) = self.expected_votes {
                        if i64::from(expected) - i64::from(votes) < 2 {
                            return Err(ConfigError::QdeviceVotesTooHigh);
                        }
                    }
                    qdevice_votes = votes;
                    if self.expected_votes.is_none() {
                        node_expected = node_votes_sum + votes;
                    }
                }
            }
        }
        Ok((qdevice_votes, self.expected_votes.unwrap_or(node_expected)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atb_parse() {
        assert_eq!(
            AutoTieBreaker::parse("lowest"),
            Some(AutoTieBreaker::Lowest)
        );
        assert_eq!(
            AutoTieBreaker::parse("highest"),
            Some(AutoTieBreaker::Highest)
        );
        assert_eq!(
            AutoTieBreaker::parse("1 3 5"),
            Some(AutoTieBreaker::List(vec![1, 3, 5]))
        );
        assert_eq!(AutoTieBreaker::parse("bogus"), None);
    }

    #[test]
    fn incompatibilities_are_errors() {
        let mut c = QuorumConfig::simple(1, 2);
        c.two_node = true;
        c.qdevice = Some(QdeviceConfig::default());
        assert_eq!(
            c.validate().expect_err("must be refused"),
            ConfigError::TwoNodeWithQdevice
        );

        let mut c = QuorumConfig::simple(1, 3);
        c.last_man_standing = true;
        c.qdevice = Some(QdeviceConfig::default());
        assert_eq!(
            c.validate().expect_err("must be refused"),
            ConfigError::LmsWithQdevice
        );

        let mut c = QuorumConfig::simple(1, 4);
        c.auto_tie_breaker = Some(AutoTieBreaker::Lowest);
        c.qdevice = Some(QdeviceConfig::default());
        assert_eq!(
            c.validate().expect_err("must be refused"),
            ConfigError::AtbWithQdevice
        );

        let mut c = QuorumConfig::simple(1, 3);
        c.auto_tie_breaker = Some(AutoTieBreaker::Lowest);
        c.last_man_standing = true;
        assert_eq!(
            c.validate().expect_err("must be refused"),
            ConfigError::AtbLmsOddCluster
        );

        let mut c = QuorumConfig::simple(1, 3);
        c.nodes.clear();
        assert_eq!(
            c.validate().expect_err("must be refused"),
            ConfigError::NoNodelistNorExpected
        );
    }

    #[test]
    fn derived_values() {
        let mut c = QuorumConfig::simple(1, 2);
        c.two_node = true;
        let e = c.validate().expect("valid in test");
        assert!(e.two_node && e.wait_for_all);
        assert_eq!(e.expected_votes, 2);

        c.wait_for_all = Some(false);
        assert!(!c.validate().expect("valid in test").wait_for_all);

        // Device votes default to N-1: 3 nodes + 2 = 5 expected; 4 nodes with votes 1 + 1 -> 5.
        let mut c = QuorumConfig::simple(1, 3);
        c.qdevice = Some(QdeviceConfig::default());
        let e = c.validate().expect("valid in test");
        assert_eq!((e.qdevice_votes, e.expected_votes), (2, 5));
        let mut c = QuorumConfig::simple(1, 4);
        c.qdevice = Some(QdeviceConfig {
            votes: Some(1),
            ..QdeviceConfig::default()
        });
        let e = c.validate().expect("valid in test");
        assert_eq!((e.qdevice_votes, e.expected_votes), (1, 5));

        // ATB in an odd cluster without wait_for_all is switched off, not an error.
        let mut c = QuorumConfig::simple(1, 3);
        c.auto_tie_breaker = Some(AutoTieBreaker::Lowest);
        assert_eq!(c.validate().expect("valid in test").auto_tie_breaker, None);
    }
}
