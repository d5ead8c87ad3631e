//! Totem timing and flow-control configuration: corosync 3 defaults and the values derived from them.
//!
//! Every default is a named constant whose comment gives its source (REFERENCE.md §2.1, which
//! cites corosync `exec/totemconfig.c` and corosync.conf(5)). Derived values (`token_retransmit`,
//! `hold`, `consensus`) follow corosync's formulas from the *effective* token timeout, which is what
//! a 3-node corosync 3.1.7 reports in cmap (token 3650, token_retransmit 869, hold 685, consensus
//! 4380; `reference/corosync-3.1.7/totem-defaults.txt`).

use crate::NodeId;
use thiserror::Error;

/// `token`: 3000 ms (REFERENCE.md §2.1; corosync PR #600 raised it from 1000).
pub const TOKEN_MS_DEFAULT: u64 = 3000;
/// `token_coefficient`: 650 ms, added per node beyond two when the nodelist has ≥ 3 nodes (§2.1).
pub const TOKEN_COEFFICIENT_MS_DEFAULT: u64 = 650;
/// Nodelist size from which `token_coefficient` applies (§2.1, corosync.conf(5) `token_coefficient`).
pub const TOKEN_COEFFICIENT_MIN_NODES: usize = 3;
/// `token_retransmits_before_loss_const`: 4 (§2.1).
pub const TOKEN_RETRANSMITS_BEFORE_LOSS_CONST_DEFAULT: u32 = 4;
/// `token_retransmit` lower bound: 30 ms (corosync.conf(5) `token_retransmit`: "The minimum is 30").
pub const TOKEN_RETRANSMIT_MS_MIN: u64 = 30;
/// corosync's `1000/HZ` term in `hold = token_retransmit·0.8 − 1000/HZ` with HZ = 100 (§2.1; the
/// captured 3-node value hold 685 = 869·0.8 − 10 confirms it).
pub const HOLD_TICK_MS: u64 = 10;
/// `token_warning`: 75 % of the token timeout (§2.1). Informational: the core logs the warning.
pub const TOKEN_WARNING_PERCENT_DEFAULT: u32 = 75;
/// `join`: 50 ms (§2.1).
pub const JOIN_MS_DEFAULT: u64 = 50;
/// `send_join`: 0 ms, upper bound of the random delay before a join is sent (§2.1).
pub const SEND_JOIN_MS_DEFAULT: u64 = 0;
/// `consensus` = 1.2 × token, expressed as tenths (§2.1).
pub const CONSENSUS_TOKEN_TENTHS: u64 = 12;
/// `merge`: 200 ms (§2.1).
pub const MERGE_MS_DEFAULT: u64 = 200;
/// `downcheck`: 1000 ms (§2.1). Interface-down checking is the transport's job; kept for config
/// compatibility and reported, not used by the sans-IO core.
pub const DOWNCHECK_MS_DEFAULT: u64 = 1000;
/// `fail_recv_const`: 2500 rotations without receiving an expected message (§2.1).
pub const FAIL_RECV_CONST_DEFAULT: u32 = 2500;
/// `seqno_unchanged_const`: 30 idle rotations before the token is held (§2.1).
pub const SEQNO_UNCHANGED_CONST_DEFAULT: u32 = 30;
/// Departure: the least time the ring must have been idle (besides `seqno_unchanged_const` idle
/// rotations) before the representative holds the token. corosync counts rotations only; its
/// rotation on a LAN takes about 330 µs (the end-to-end benchmark's three nodes at its light
/// load, from the frames counted per second; benches/README.md), so its 30 rotations mean about
/// 10 ms of silence. totemd's rotation there takes 85-115 µs, and 30 of them (about 3 ms) are
/// not an idle ring: with rotations alone, a light steady load (a few hundred
/// messages per second) found the token held at most messages, and every such message waited
/// for a token-hold cancel to reach the representative and the token to come round. Holding
/// after the same silence as corosync keeps what the hold is for (no token spinning on a quiet
/// ring) without that cost.
pub const IDLE_BEFORE_HOLD_MIN_MS: u64 = 10;
/// `window_size`: 50 messages per token rotation (§2.1).
pub const WINDOW_SIZE_DEFAULT: u32 = 50;
/// `max_messages`: 17 messages per node per token receipt (§2.1).
pub const MAX_MESSAGES_DEFAULT: u32 = 17;
/// `miss_count_const`: 5 (§2.1). Kept for config compatibility; link fault counting is the
/// transport's job.
pub const MISS_COUNT_CONST_DEFAULT: u32 = 5;
/// `max_network_delay`: 50 ms, used only by the heartbeat mechanism (§2.1).
pub const MAX_NETWORK_DELAY_MS_DEFAULT: u64 = 50;
/// `heartbeat_failures_allowed`: 0, heartbeat mechanism off (corosync.conf(5)).
pub const HEARTBEAT_FAILURES_ALLOWED_DEFAULT: u32 = 0;
/// `cancel_token_hold_on_retransmit`: no (§2.1).
pub const CANCEL_TOKEN_HOLD_ON_RETRANSMIT_DEFAULT: bool = false;

/// Largest encoded multicast frame: 1500-byte Ethernet MTU − 40 (IPv6) − 8 (UDP) − 48 (transport
/// header with nonce, `transport/src/wire.rs` HEADER_LEN) − 16 (AES-GCM tag) = 1388 bytes.
pub const MAX_PAYLOAD_BYTES_DEFAULT: usize = 1500 - 40 - 8 - 48 - 16;
/// Smallest `max_payload_bytes` accepted: room for the multicast header and some data.
pub const MAX_PAYLOAD_BYTES_MIN: usize = 256;
/// Largest `max_payload_bytes` accepted (corosync `TOKEN_SIZE_MAX` 64000, `totemsrp.c` l.96-101).
pub const MAX_PAYLOAD_BYTES_MAX: usize = 64_000;
/// Client messages queued while the ring cannot take them (own choice; about 1 s of full-window
/// traffic at a 20 ms rotation).
pub const SUBMIT_QUEUE_LIMIT_DEFAULT: usize = 1024;
/// Largest client message: 1 MiB (issue 3: "Messages up to 1 MiB"), fragmented by the core.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// A configuration the protocol cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A timeout or constant is out of its range.
    #[error("totem.{key} = {value} is invalid: {reason}")]
    OutOfRange {
        /// corosync.conf key.
        key: &'static str,
        /// The offending value.
        value: u64,
        /// What the range is.
        reason: &'static str,
    },
    /// The nodelist names node id 0 or a node twice.
    #[error("nodelist is invalid: {0}")]
    Nodelist(String),
    /// The local node id is 0.
    #[error("node id 0 is not a valid node id")]
    ZeroNodeId,
}

/// The totem section of corosync.conf, as the core uses it. All durations in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TotemConfig {
    /// `token`: base token loss timeout.
    pub token_ms: u64,
    /// `token_coefficient`: added per node beyond two with ≥ 3 configured nodes.
    pub token_coefficient_ms: u64,
    /// `token_retransmits_before_loss_const`.
    pub token_retransmits_before_loss_const: u32,
    /// `token_retransmit`; `None` = effective token / (retransmits + 0.2).
    pub token_retransmit_ms: Option<u64>,
    /// `hold`; `None` = token_retransmit · 0.8 − 10.
    pub hold_ms: Option<u64>,
    /// `token_warning` percent (0 = off).
    pub token_warning_percent: u32,
    /// `join`: join message retransmit period in GATHER.
    pub join_ms: u64,
    /// `send_join`: upper bound of a random delay before each join (0 = none).
    pub send_join_ms: u64,
    /// `consensus`; `None` = 1.2 × effective token.
    pub consensus_ms: Option<u64>,
    /// `merge`: period of merge-detect messages from the ring representative.
    pub merge_ms: u64,
    /// `downcheck` (transport's concern, kept for compatibility).
    pub downcheck_ms: u64,
    /// `fail_recv_const`.
    pub fail_recv_const: u32,
    /// `seqno_unchanged_const`.
    pub seqno_unchanged_const: u32,
    /// Least idle time before the token is held (see [`IDLE_BEFORE_HOLD_MIN_MS`]; 0 =
    /// corosync's rule, rotations only).
    pub idle_before_hold_min_ms: u64,
    /// `miss_count_const` (transport's concern, kept for compatibility).
    pub miss_count_const: u32,
    /// `heartbeat_failures_allowed` (0 = heartbeat mechanism off).
    pub heartbeat_failures_allowed: u32,
    /// `max_network_delay` (heartbeat mechanism).
    pub max_network_delay_ms: u64,
    /// `cancel_token_hold_on_retransmit`.
    pub cancel_token_hold_on_retransmit: bool,
    /// `window_size`: messages per token rotation, all nodes together.
    pub window_size: u32,
    /// `max_messages`: messages per node per token visit.
    pub max_messages: u32,
    /// Largest encoded multicast frame in bytes; client messages are fragmented to fit.
    pub max_payload_bytes: usize,
    /// Client messages queued before `submit` answers `QueueFull`.
    pub submit_queue_limit: usize,
    /// Configured nodes (corosync `nodelist`), used for the token coefficient.
    pub nodelist: Vec<NodeId>,
}

impl Default for TotemConfig {
    fn default() -> Self {
        TotemConfig {
            token_ms: TOKEN_MS_DEFAULT,
            token_coefficient_ms: TOKEN_COEFFICIENT_MS_DEFAULT,
            token_retransmits_before_loss_const: TOKEN_RETRANSMITS_BEFORE_LOSS_CONST_DEFAULT,
            token_retransmit_ms: None,
            hold_ms: None,
            token_warning_percent: TOKEN_WARNING_PERCENT_DEFAULT,
            join_ms: JOIN_MS_DEFAULT,
            send_join_ms: SEND_JOIN_MS_DEFAULT,
            consensus_ms: None,
            merge_ms: MERGE_MS_DEFAULT,
            downcheck_ms: DOWNCHECK_MS_DEFAULT,
            fail_recv_const: FAIL_RECV_CONST_DEFAULT,
            seqno_unchanged_const: SEQNO_UNCHANGED_CONST_DEFAULT,
            idle_before_hold_min_ms: IDLE_BEFORE_HOLD_MIN_MS,
            miss_count_const: MISS_COUNT_CONST_DEFAULT,
            heartbeat_failures_allowed: HEARTBEAT_FAILURES_ALLOWED_DEFAULT,
            max_network_delay_ms: MAX_NETWORK_DELAY_MS_DEFAULT,
            cancel_token_hold_on_retransmit: CANCEL_TOKEN_HOLD_ON_RETRANSMIT_DEFAULT,
            window_size: WINDOW_SIZE_DEFAULT,
            max_messages: MAX_MESSAGES_DEFAULT,
            max_payload_bytes: MAX_PAYLOAD_BYTES_DEFAULT,
            submit_queue_limit: SUBMIT_QUEUE_LIMIT_DEFAULT,
            nodelist: Vec::new(),
        }
    }
}

impl TotemConfig {
    /// Defaults with `nodes` as the nodelist.
    pub fn for_nodes(nodes: &[NodeId]) -> Self {
        TotemConfig {
            nodelist: nodes.to_vec(),
            ..TotemConfig::default()
        }
    }

    /// The real token timeout: token + (n − 2) · token_coefficient when the nodelist has ≥ 3
    /// nodes (corosync's `runtime.config.totem.token`).
    pub fn effective_token_ms(&self) -> u64 {
        let n = self.nodelist.len();
        if n >= TOKEN_COEFFICIENT_MIN_NODES {
            let extra = u64::try_from(n - 2).unwrap_or(u64::MAX);
            self.token_ms
                .saturating_add(extra.saturating_mul(self.token_coefficient_ms))
        } else {
            self.token_ms
        }
    }

    /// `token_retransmit`: configured, or effective token / (retransmits_before_loss + 0.2).
    pub fn effective_token_retransmit_ms(&self) -> u64 {
        self.token_retransmit_ms.unwrap_or_else(|| {
            let tenths = u64::from(self.token_retransmits_before_loss_const) * 10 + 2;
            self.effective_token_ms().saturating_mul(10) / tenths
        })
    }

    /// `hold`: configured, or token_retransmit · 0.8 − 1000/HZ.
    pub fn effective_hold_ms(&self) -> u64 {
        self.hold_ms.unwrap_or_else(|| {
            (self.effective_token_retransmit_ms().saturating_mul(8) / 10)
                .saturating_sub(HOLD_TICK_MS)
        })
    }

    /// `consensus`: configured, or 1.2 × effective token.
    pub fn effective_consensus_ms(&self) -> u64 {
        self.consensus_ms.unwrap_or_else(|| {
            self.effective_token_ms()
                .saturating_mul(CONSENSUS_TOKEN_TENTHS)
                / 10
        })
    }

    /// How long without a token before it is declared lost: the effective token timeout, or the
    /// shorter heartbeat timeout (failures · token_retransmit + max_network_delay) when the
    /// heartbeat mechanism is on, as corosync does.
    pub fn token_loss_ms(&self) -> u64 {
        let token = self.effective_token_ms();
        if self.heartbeat_failures_allowed == 0 {
            return token;
        }
        let heartbeat = u64::from(self.heartbeat_failures_allowed)
            .saturating_mul(self.effective_token_retransmit_ms())
            .saturating_add(self.max_network_delay_ms);
        heartbeat.min(token)
    }

    /// Checks the ranges corosync checks, and the ones this core relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &'static str, value: u64, reason: &'static str) -> Result<(), ConfigError> {
            Err(ConfigError::OutOfRange { key, value, reason })
        }
        if self.token_ms == 0 {
            return bad("token", 0, "must be > 0");
        }
        if self.token_retransmits_before_loss_const == 0 {
            return bad("token_retransmits_before_loss_const", 0, "must be > 0");
        }
        let retransmit = self.effective_token_retransmit_ms();
        if retransmit < TOKEN_RETRANSMIT_MS_MIN {
            return bad("token_retransmit", retransmit, "must be >= 30 ms");
        }
        let hold = self.effective_hold_ms();
        if hold == 0 || hold >= retransmit {
            return bad("hold", hold, "must be > 0 and below token_retransmit");
        }
        if self.join_ms == 0 {
            return bad("join", 0, "must be > 0");
        }
        let consensus = self.effective_consensus_ms();
        if consensus < self.join_ms {
            return bad("consensus", consensus, "must be >= join");
        }
        if self.merge_ms == 0 {
            return bad("merge", 0, "must be > 0");
        }
        if self.window_size == 0 {
            return bad("window_size", 0, "must be > 0");
        }
        if self.max_messages == 0 || self.max_messages > self.window_size {
            return bad(
                "max_messages",
                u64::from(self.max_messages),
                "must be in 1..=window_size",
            );
        }
        if self.seqno_unchanged_const == 0 {
            return bad("seqno_unchanged_const", 0, "must be > 0");
        }
        if self.fail_recv_const == 0 {
            return bad("fail_recv_const", 0, "must be > 0");
        }
        if !(MAX_PAYLOAD_BYTES_MIN..=MAX_PAYLOAD_BYTES_MAX).contains(&self.max_payload_bytes) {
            let v = u64::try_from(self.max_payload_bytes).unwrap_or(u64::MAX);
            return bad("max_payload_bytes", v, "must be in 256..=64000");
        }
        if self.submit_queue_limit == 0 {
            return bad("submit_queue_limit", 0, "must be > 0");
        }
        let mut seen = std::collections::BTreeSet::new();
        for &n in &self.nodelist {
            if n == 0 {
                return Err(ConfigError::Nodelist("node id 0".into()));
            }
            if !seen.insert(n) {
                return Err(ConfigError::Nodelist(format!("node id {n} listed twice")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_node_defaults_match_corosync_cmap() {
        // reference/corosync-3.1.7/totem-defaults.txt, 3-node nodelist.
        let c = TotemConfig::for_nodes(&[1, 2, 3]);
        assert_eq!(c.effective_token_ms(), 3650);
        assert_eq!(c.effective_token_retransmit_ms(), 869);
        assert_eq!(c.effective_hold_ms(), 685);
        assert_eq!(c.effective_consensus_ms(), 4380);
        assert_eq!(c.token_loss_ms(), 3650);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn two_node_and_empty_defaults() {
        for c in [TotemConfig::default(), TotemConfig::for_nodes(&[1, 2])] {
            assert_eq!(c.effective_token_ms(), 3000);
            assert_eq!(c.effective_token_retransmit_ms(), 714);
            assert_eq!(c.effective_hold_ms(), 561);
            assert_eq!(c.effective_consensus_ms(), 3600);
            assert_eq!(
                (c.join_ms, c.merge_ms, c.window_size, c.max_messages),
                (50, 200, 50, 17)
            );
            assert_eq!(
                (c.fail_recv_const, c.seqno_unchanged_const, c.send_join_ms),
                (2500, 30, 0)
            );
        }
        assert_eq!(MAX_PAYLOAD_BYTES_DEFAULT, 1388);
    }

    #[test]
    fn sixteen_nodes_scale_the_token() {
        let nodes: Vec<NodeId> = (1..=16).collect();
        assert_eq!(
            TotemConfig::for_nodes(&nodes).effective_token_ms(),
            3000 + 14 * 650
        );
    }

    #[test]
    fn validation_rejects_bad_values() {
        let mut c = TotemConfig {
            max_messages: 51,
            ..TotemConfig::default()
        };
        assert!(c.validate().is_err());
        c.max_messages = 17;
        c.token_ms = 100; // retransmit 23 ms < 30
        assert!(c.validate().is_err());
        let c = TotemConfig::for_nodes(&[1, 1]);
        assert!(matches!(c.validate(), Err(ConfigError::Nodelist(_))));
        let c = TotemConfig {
            heartbeat_failures_allowed: 3,
            ..TotemConfig::default()
        };
        assert_eq!(c.token_loss_ms(), 3 * 714 + 50);
    }
}
