//! The typed view of a corosync.conf [`Tree`]: totem, interfaces, nodelist, quorum, logging.
//!
//! The types and corosync's defaults (REFERENCE.md §2.1); [`Config::from_tree`] (in `read.rs`)
//! fills them from a tree. Timings that corosync derives from others (token with coefficient,
//! token_retransmit, hold, consensus, knet ping timers) are computed by [`Totem::timings`] and
//! [`Interface::ping_timers`].

use std::collections::BTreeMap;
use std::fmt;

use super::tree::{Pos, Tree};

/// Totem protocol version corosync accepts (`totemconfig.c`: "can only parse version 2").
pub const TOTEM_VERSION: u32 = 2;
/// Most links (`INTERFACE_MAX`, `include/corosync/totem/totem.h`; knet `KNET_MAX_LINK`).
pub const LINKS_MAX: u8 = 8;
/// corosync's default port; link N uses `DEFAULT_PORT + N` (`totemconfig.c` `DEFAULT_PORT`).
pub const DEFAULT_PORT: u16 = 5405;
/// Default qnetd port (`corosync-qdevice` `qnet-config.h`, REFERENCE.md §5).
pub const QNETD_DEFAULT_PORT: u16 = 5403;

// Defaults from exec/totemconfig.c (REFERENCE.md §2.1).
/// `TOKEN_TIMEOUT`.
pub const TOKEN_MS_DEFAULT: u32 = 3000;
/// `TOKEN_COEFFICIENT`: added per node beyond two.
pub const TOKEN_COEFFICIENT_MS_DEFAULT: u32 = 650;
/// `TOKEN_WARNING`, percent of the token timeout.
pub const TOKEN_WARNING_PERCENT_DEFAULT: u32 = 75;
/// `TOKEN_RETRANSMITS_BEFORE_LOSS_CONST`.
pub const TOKEN_RETRANSMITS_BEFORE_LOSS_DEFAULT: u32 = 4;
/// `JOIN_TIMEOUT`.
pub const JOIN_MS_DEFAULT: u32 = 50;
/// `MERGE_TIMEOUT`.
pub const MERGE_MS_DEFAULT: u32 = 200;
/// `DOWNCHECK_TIMEOUT`.
pub const DOWNCHECK_MS_DEFAULT: u32 = 1000;
/// `FAIL_TO_RECV_CONST`.
pub const FAIL_RECV_CONST_DEFAULT: u32 = 2500;
/// `SEQNO_UNCHANGED_CONST`.
pub const SEQNO_UNCHANGED_CONST_DEFAULT: u32 = 30;
/// `MAX_NETWORK_DELAY`.
pub const MAX_NETWORK_DELAY_MS_DEFAULT: u32 = 50;
/// `WINDOW_SIZE`.
pub const WINDOW_SIZE_DEFAULT: u32 = 50;
/// `MAX_MESSAGES`.
pub const MAX_MESSAGES_DEFAULT: u32 = 17;
/// `MISS_COUNT_CONST`.
pub const MISS_COUNT_CONST_DEFAULT: u32 = 5;
/// `KNET_PMTUD_INTERVAL` (corosync's, not libknet's 60 s).
pub const KNET_PMTUD_INTERVAL_S_DEFAULT: u32 = 30;
/// `KNET_PONG_COUNT` (corosync's, not libknet's 5).
pub const KNET_PONG_COUNT_DEFAULT: u32 = 2;
/// `KNET_PING_PRECISION`, samples.
pub const KNET_PING_PRECISION_DEFAULT: u32 = 2048;
/// Default link priority (`totemconfig.c`: `knet_link_priority = 1`).
pub const KNET_LINK_PRIORITY_DEFAULT: u8 = 1;
/// Kernel tick corosync assumes (`HZ` from `<sys/param.h>`, 100 on Linux).
pub const HZ: u32 = 100;
/// `MINIMUM_TIMEOUT = (1000/HZ)*3`: no timeout may be shorter.
pub const MINIMUM_TIMEOUT_MS: u32 = (1000 / HZ) * 3;
/// `MINIMUM_TIMEOUT_HOLD = MINIMUM_TIMEOUT * 0.8 - 1000/HZ`.
pub const MINIMUM_TIMEOUT_HOLD_MS: u32 = MINIMUM_TIMEOUT_MS * 8 / 10 - 1000 / HZ;
/// votequorum `DEFAULT_LMS_WIN` (REFERENCE.md §3.2).
pub const LAST_MAN_STANDING_WINDOW_MS_DEFAULT: u32 = 10_000;

const _: () = assert!(MINIMUM_TIMEOUT_MS == 30);
const _: () = assert!(MINIMUM_TIMEOUT_HOLD_MS == 14);

/// A note about the file that does not stop it from being used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: warning: {}", self.pos, self.message)
    }
}

/// A value or combination the daemon cannot run with. `pos` is 0:0 when no line applies.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct ConfigError {
    pub pos: Pos,
    pub message: String,
}

impl ConfigError {
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        Self {
            pos,
            message: message.into(),
        }
    }
}

/// `totem.ip_version`: which address families a name resolves to, in order of preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVersion {
    Ipv4,
    Ipv6,
    /// Both; the first IPv4 address if there is one, else the first IPv6.
    Ipv4Then6,
    /// Both; the first IPv6 address if there is one, else the first IPv4 (knet's default).
    Ipv6Then4,
}

/// `totem.transport`. Only knet is run by totemd; the others parse so the error can say so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Knet,
    Udp,
    Udpu,
}

/// `totem.link_mode` (REFERENCE.md §1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMode {
    Passive,
    Active,
    RoundRobin,
}

/// `totem.crypto_cipher` values corosync accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CryptoCipher {
    None,
    Aes256,
    Aes192,
    Aes128,
}

/// `totem.crypto_hash` values corosync accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CryptoHash {
    None,
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

/// The `totem` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Totem {
    /// Required, must be 2; `None` when absent (an error at validation).
    pub version: Option<u32>,
    pub cluster_name: Option<String>,
    pub config_version: u64,
    pub ip_version: IpVersion,
    pub transport: Transport,
    pub link_mode: LinkMode,
    /// `secauth` as written: `Some(true)` for `on`, `Some(false)` for anything else.
    pub secauth: Option<bool>,
    pub crypto_model: Option<String>,
    pub crypto_cipher: Option<CryptoCipher>,
    pub crypto_hash: Option<CryptoHash>,
    pub keyfile: Option<String>,
    pub token_ms: u32,
    pub token_coefficient_ms: u32,
    pub token_warning_percent: u32,
    pub token_retransmits_before_loss_const: u32,
    /// Explicit values; `None` means derived (see [`Totem::timings`]).
    pub token_retransmit_ms: Option<u32>,
    pub hold_ms: Option<u32>,
    pub consensus_ms: Option<u32>,
    pub join_ms: u32,
    pub send_join_ms: u32,
    pub merge_ms: u32,
    pub downcheck_ms: u32,
    pub fail_recv_const: u32,
    pub seqno_unchanged_const: u32,
    pub max_messages: u32,
    pub window_size: u32,
    pub miss_count_const: u32,
    pub max_network_delay_ms: u32,
    pub heartbeat_failures_allowed: u32,
    /// `netmtu`; 0 or absent means the transport's default (65536 for knet).
    pub netmtu: u32,
    pub knet_mtu: u32,
    pub knet_pmtud_interval_s: u32,
    pub knet_compression_model: String,
    pub knet_compression_threshold: u32,
    pub knet_compression_level: i32,
    pub ip_dscp: u8,
    pub block_unlisted_ips: bool,
    pub cancel_token_hold_on_retransmit: bool,
    /// Deprecated `totem.nodeid` (corosync warns and ignores it with a nodelist).
    pub nodeid: Option<u32>,
    /// Where each totem key's value was written, for messages about it.
    pub value_pos: BTreeMap<String, Pos>,
}

impl Default for Totem {
    fn default() -> Self {
        Self {
            version: None,
            cluster_name: None,
            config_version: 0,
            ip_version: IpVersion::Ipv6Then4,
            transport: Transport::Knet,
            link_mode: LinkMode::Passive,
            secauth: None,
            crypto_model: None,
            crypto_cipher: None,
            crypto_hash: None,
            keyfile: None,
            token_ms: TOKEN_MS_DEFAULT,
            token_coefficient_ms: TOKEN_COEFFICIENT_MS_DEFAULT,
            token_warning_percent: TOKEN_WARNING_PERCENT_DEFAULT,
            token_retransmits_before_loss_const: TOKEN_RETRANSMITS_BEFORE_LOSS_DEFAULT,
            token_retransmit_ms: None,
            hold_ms: None,
            consensus_ms: None,
            join_ms: JOIN_MS_DEFAULT,
            send_join_ms: 0,
            merge_ms: MERGE_MS_DEFAULT,
            downcheck_ms: DOWNCHECK_MS_DEFAULT,
            fail_recv_const: FAIL_RECV_CONST_DEFAULT,
            seqno_unchanged_const: SEQNO_UNCHANGED_CONST_DEFAULT,
            max_messages: MAX_MESSAGES_DEFAULT,
            window_size: WINDOW_SIZE_DEFAULT,
            miss_count_const: MISS_COUNT_CONST_DEFAULT,
            max_network_delay_ms: MAX_NETWORK_DELAY_MS_DEFAULT,
            heartbeat_failures_allowed: 0,
            netmtu: 0,
            knet_mtu: 0,
            knet_pmtud_interval_s: KNET_PMTUD_INTERVAL_S_DEFAULT,
            knet_compression_model: "none".into(),
            knet_compression_threshold: 0,
            knet_compression_level: 0,
            ip_dscp: 0,
            block_unlisted_ips: true,
            cancel_token_hold_on_retransmit: false,
            nodeid: None,
            value_pos: BTreeMap::new(),
        }
    }
}

/// The timeouts corosync runs with, after defaults and derivations (`totemconfig.c`
/// `totem_volatile_config_read`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// `token + (nodes - 2) * token_coefficient` when there are three nodes or more.
    pub token_ms: u32,
    pub token_retransmit_ms: u32,
    pub hold_ms: u32,
    pub consensus_ms: u32,
    pub join_ms: u32,
    pub merge_ms: u32,
    pub downcheck_ms: u32,
    pub max_network_delay_ms: u32,
}

/// knet's largest packet (`KNET_MAX_PACKET_SIZE`, REFERENCE.md §1.5): corosync's netmtu when
/// none is written and the transport is knet (`totemconfig.c`).
pub const KNET_NETMTU_DEFAULT: u32 = 65_536;

impl Totem {
    /// `netmtu` in effect: the written value, or knet's default when absent or 0.
    pub fn netmtu_effective(&self) -> u32 {
        if self.netmtu == 0 {
            KNET_NETMTU_DEFAULT
        } else {
            self.netmtu
        }
    }

    /// The effective timeouts for a nodelist of `node_count` nodes.
    pub fn timings(&self, node_count: usize) -> Timings {
        let extra_nodes = u64::try_from(node_count.saturating_sub(2)).unwrap_or(u64::MAX);
        let token = if node_count > 2 {
            let grown = u64::from(self.token_ms)
                .saturating_add(extra_nodes.saturating_mul(u64::from(self.token_coefficient_ms)));
            u32::try_from(grown).unwrap_or(u32::MAX)
        } else {
            self.token_ms
        };
        // token / (retransmits + 0.2), in integers: token * 10 / (retransmits * 10 + 2).
        let retransmit_derived =
            u64::from(token) * 10 / (u64::from(self.token_retransmits_before_loss_const) * 10 + 2);
        let token_retransmit_ms = self
            .token_retransmit_ms
            .unwrap_or(u32::try_from(retransmit_derived).unwrap_or(u32::MAX));
        // retransmit * 0.8 - 1000/HZ, never below zero.
        let hold_derived =
            (u64::from(token_retransmit_ms) * 8 / 10).saturating_sub(u64::from(1000 / HZ));
        let hold_ms = self
            .hold_ms
            .unwrap_or(u32::try_from(hold_derived).unwrap_or(u32::MAX));
        let consensus_derived = u64::from(token) * 12 / 10;
        let consensus_ms = self
            .consensus_ms
            .unwrap_or(u32::try_from(consensus_derived).unwrap_or(u32::MAX));
        Timings {
            token_ms: token,
            token_retransmit_ms,
            hold_ms,
            consensus_ms,
            join_ms: self.join_ms,
            merge_ms: self.merge_ms,
            downcheck_ms: self.downcheck_ms,
            max_network_delay_ms: self.max_network_delay_ms,
        }
    }

    /// The cipher and hash in effect (`totemconfig.c` `totem_get_crypto`): `secauth: on` or no
    /// `secauth` means aes256 + sha256, any other `secauth` value means none, and explicit
    /// `crypto_cipher` / `crypto_hash` win.
    pub fn effective_crypto(&self) -> (CryptoCipher, CryptoHash) {
        let (cipher, hash) = match self.secauth {
            None | Some(true) => (CryptoCipher::Aes256, CryptoHash::Sha256),
            Some(false) => (CryptoCipher::None, CryptoHash::None),
        };
        (
            self.crypto_cipher.unwrap_or(cipher),
            self.crypto_hash.unwrap_or(hash),
        )
    }
}

/// One `totem.interface` block: the settings of one link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub linknumber: u8,
    /// Higher wins in passive mode; 0 counts as 1 (REFERENCE.md §1.1).
    pub knet_link_priority: u8,
    pub knet_ping_interval_ms: Option<u32>,
    pub knet_ping_timeout_ms: Option<u32>,
    pub knet_ping_precision: u32,
    pub knet_pong_count: u32,
    /// `mcastport`: the UDP port; default `5405 + linknumber`.
    pub port: u16,
    /// UDP-transport keys, kept for the error/warning only.
    pub bindnetaddr: Option<String>,
    pub mcastaddr: Option<String>,
    pub ttl: Option<u8>,
    /// Where the block starts.
    pub pos: Pos,
    /// Where the link number is written (the block's position when it is not).
    pub linknumber_pos: Pos,
}

/// Ping interval and timeout of one link, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingTimers {
    pub interval_ms: u32,
    pub timeout_ms: u32,
}

impl Interface {
    /// A link with every setting at its default.
    pub(crate) fn new(linknumber: u8, pos: Pos) -> Self {
        Self {
            linknumber,
            knet_link_priority: KNET_LINK_PRIORITY_DEFAULT,
            knet_ping_interval_ms: None,
            knet_ping_timeout_ms: None,
            knet_ping_precision: KNET_PING_PRECISION_DEFAULT,
            knet_pong_count: KNET_PONG_COUNT_DEFAULT,
            port: DEFAULT_PORT.saturating_add(u16::from(linknumber)),
            bindnetaddr: None,
            mcastaddr: None,
            ttl: None,
            pos,
            linknumber_pos: pos,
        }
    }

    /// Ping timers from the runtime token (`totemconfig.c` `totem_calc_knet_ping_timers`):
    /// timeout = token / pong_count, interval = token / (pong_count * 2), unless configured.
    pub fn ping_timers(&self, runtime_token_ms: u32) -> PingTimers {
        let pong_count = self.knet_pong_count.max(1);
        PingTimers {
            interval_ms: self
                .knet_ping_interval_ms
                .unwrap_or(runtime_token_ms / pong_count.saturating_mul(2)),
            timeout_ms: self
                .knet_ping_timeout_ms
                .unwrap_or(runtime_token_ms / pong_count),
        }
    }
}

/// An address as written in `ringN_addr`: an IP literal or a host name, resolved later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddr {
    pub link: u8,
    pub text: String,
    pub pos: Pos,
}

/// One `nodelist.node` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: Option<String>,
    pub nodeid: Option<u32>,
    pub nodeid_pos: Pos,
    pub quorum_votes: u32,
    /// `ring0_addr` .. `ring7_addr`, in link order.
    pub addrs: Vec<NodeAddr>,
    pub pos: Pos,
}

impl Node {
    /// The address for `link`, if the node has one.
    pub fn addr(&self, link: u8) -> Option<&NodeAddr> {
        self.addrs.iter().find(|addr| addr.link == link)
    }

    /// The name, or else ring0_addr, for messages (pvecm keys nodes the same way).
    pub fn label(&self) -> String {
        match (&self.name, self.addr(0)) {
            (Some(name), _) => name.clone(),
            (None, Some(addr)) => addr.text.clone(),
            (None, None) => format!("node at line {}", self.pos.line),
        }
    }
}

/// `quorum.auto_tie_breaker_node`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TieBreaker {
    Lowest,
    Highest,
    /// Node ids in order of preference.
    List(Vec<u32>),
}

/// `quorum.device.net`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QdeviceNet {
    pub host: Option<String>,
    pub port: u16,
    pub algorithm: Option<String>,
    pub tie_breaker: Option<String>,
    pub tls: Option<String>,
}

/// `quorum.device`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qdevice {
    pub model: Option<String>,
    pub votes: Option<u32>,
    pub timeout_ms: Option<u32>,
    pub sync_timeout_ms: Option<u32>,
    pub master_wins: Option<bool>,
    pub net: Option<QdeviceNet>,
    pub pos: Pos,
}

/// The `quorum` section. Option combinations are the quorum module's business; only typing here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quorum {
    pub provider: Option<String>,
    pub expected_votes: Option<u32>,
    pub two_node: bool,
    /// `None` when not written: two_node then turns it on implicitly (REFERENCE.md §3.2).
    pub wait_for_all: Option<bool>,
    pub last_man_standing: bool,
    pub last_man_standing_window_ms: u32,
    pub auto_tie_breaker: bool,
    pub auto_tie_breaker_node: TieBreaker,
    pub allow_downscale: bool,
    pub expected_votes_tracking: bool,
    pub device: Option<Qdevice>,
}

impl Default for Quorum {
    fn default() -> Self {
        Self {
            provider: None,
            expected_votes: None,
            two_node: false,
            wait_for_all: None,
            last_man_standing: false,
            last_man_standing_window_ms: LAST_MAN_STANDING_WINDOW_MS_DEFAULT,
            auto_tie_breaker: false,
            auto_tie_breaker_node: TieBreaker::Lowest,
            allow_downscale: false,
            expected_votes_tracking: false,
            device: None,
        }
    }
}

/// `logging.debug`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugLevel {
    Off,
    On,
    Trace,
}

/// `logging.timestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timestamp {
    Off,
    On,
    Hires,
}

/// One `logging.logger_subsys` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggerSubsys {
    pub subsys: String,
    pub debug: Option<DebugLevel>,
}

/// The `system` section's scheduling keys (corosync's `exec/main.c`); its other keys are kept
/// and reported as unused. The default (normal scheduling class, no nice value) departs from
/// corosync's SCHED_RR; the measured reason is in `daemon/src/sched.rs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct System {
    /// `sched_rr`: run every daemon thread SCHED_RR at the highest priority. Only the value
    /// `yes` turns it on (as in corosync, where only `yes` keeps it on).
    pub sched_rr: bool,
    /// `priority`: the nice value when `sched_rr` is off (`max` = -20, `min` = 19, or a number).
    pub priority: Option<Nice>,
}

/// `system.priority`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nice {
    /// `max`: the highest priority (nice -20).
    Max,
    /// `min`: the lowest (nice 19).
    Min,
    /// A nice value; the kernel clamps it to -20..=19.
    Value(i32),
}

/// The `logging` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logging {
    pub to_syslog: bool,
    pub to_stderr: bool,
    pub to_logfile: bool,
    pub logfile: Option<String>,
    pub debug: DebugLevel,
    pub timestamp: Timestamp,
    pub fileline: bool,
    pub function_name: bool,
    pub syslog_facility: Option<String>,
    pub syslog_priority: Option<String>,
    pub logfile_priority: Option<String>,
    pub subsystems: Vec<LoggerSubsys>,
}

impl Default for Logging {
    /// corosync.conf.5: syslog on, stderr and logfile off, debug and timestamp off.
    fn default() -> Self {
        Self {
            to_syslog: true,
            to_stderr: false,
            to_logfile: false,
            logfile: None,
            debug: DebugLevel::Off,
            timestamp: Timestamp::Off,
            fileline: false,
            function_name: false,
            syslog_facility: None,
            syslog_priority: None,
            logfile_priority: None,
            subsystems: Vec::new(),
        }
    }
}

/// A whole corosync.conf, typed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub totem: Totem,
    /// Sorted by link number. Empty means one default link 0 (corosync's behaviour).
    pub interfaces: Vec<Interface>,
    pub nodes: Vec<Node>,
    pub quorum: Quorum,
    pub logging: Logging,
    pub system: System,
}

impl Config {
    /// Types `tree`; unknown keys become warnings, bad values errors (the first one).
    pub fn from_tree(tree: &Tree) -> Result<(Config, Vec<Warning>), ConfigError> {
        super::read::read_config(tree)
    }

    /// The link numbers in use: the configured interfaces, or else those the nodes have
    /// addresses for (corosync needs no interface block for knet).
    pub fn link_numbers(&self) -> Vec<u8> {
        let mut links: Vec<u8> = self.interfaces.iter().map(|i| i.linknumber).collect();
        for node in &self.nodes {
            links.extend(node.addrs.iter().map(|addr| addr.link));
        }
        links.sort_unstable();
        links.dedup();
        links
    }

    /// The interface settings for `link`, defaults when it has no block.
    pub fn interface(&self, link: u8) -> Interface {
        self.interfaces
            .iter()
            .find(|interface| interface.linknumber == link)
            .cloned()
            .unwrap_or_else(|| Interface::new(link, Pos::default()))
    }
}
