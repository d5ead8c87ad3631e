//! Checks on a typed [`Config`] that corosync (or pvecm) would make before running with it.
//!
//! Each check names its source. Errors stop the daemon from using the file; warnings are printed.
//! Quorum option combinations (two_node with qdevice, ...) belong to the quorum module; only
//! what cannot be typed or run at all is refused here.

use std::collections::BTreeMap;

use super::model::{
    Config, ConfigError, CryptoCipher, CryptoHash, Transport, Warning, LINKS_MAX,
    MINIMUM_TIMEOUT_HOLD_MS, MINIMUM_TIMEOUT_MS, TOTEM_VERSION,
};
use super::tree::Pos;

/// knet node ids are 16-bit (`KNET_MAX_HOST 65536`, REFERENCE.md §1.5; `totemconfig.c`:
/// "Knet requires nodeid to be less than 65536").
pub const KNET_NODEID_LIMIT: u32 = 65_536;
/// pvecm's cluster name limit (`API2/ClusterConfig.pm`: `maxLength => 15`).
pub const PVECM_CLUSTER_NAME_CHARS_MAX: usize = 15;
/// knet's heartbeat thread tick (`KNET_THREADS_TIMER_RES`, 200 ms, REFERENCE.md §1.3): ping
/// timers below it do not work as written.
pub const KNET_HEARTBEAT_TICK_MS: u32 = 200;
/// The only quorum provider corosync 3 has.
pub const QUORUM_PROVIDER: &str = "corosync_votequorum";

/// What validation found: errors (the file must not be used) and warnings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<Warning>,
}

impl Findings {
    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push(ConfigError::new(pos, message));
    }

    fn warn(&mut self, pos: Pos, message: impl Into<String>) {
        self.warnings.push(Warning {
            pos,
            message: message.into(),
        });
    }
}

/// Runs every check; errors come in file order where they have a position.
pub fn validate(config: &Config) -> Findings {
    let mut findings = Findings::default();
    check_totem(config, &mut findings);
    check_timings(config, &mut findings);
    check_links(config, &mut findings);
    check_nodes(config, &mut findings);
    check_quorum(config, &mut findings);
    check_logging(config, &mut findings);
    findings.errors.sort_by_key(|error| error.pos);
    findings.warnings.sort_by_key(|warning| warning.pos);
    findings
}

fn totem_pos(config: &Config, key: &str) -> Pos {
    config.totem.value_pos.get(key).copied().unwrap_or_default()
}

fn check_totem(config: &Config, findings: &mut Findings) {
    let totem = &config.totem;
    match totem.version {
        Some(TOTEM_VERSION) => {}
        Some(_) => findings.error(
            totem_pos(config, "version"),
            "This totem parser can only parse version 2 configurations (totem.version must be 2)",
        ),
        None => findings.error(Pos::default(), "totem.version is missing; it must be 2"),
    }
    if totem.transport != Transport::Knet {
        findings.error(
            totem_pos(config, "transport"),
            "totemd runs only the knet transport (udp and udpu are not supported)",
        );
    }
    check_cluster_name(config, findings);
    let (cipher, hash) = totem.effective_crypto();
    if cipher != CryptoCipher::None && hash == CryptoHash::None {
        findings.error(
            totem_pos(config, "crypto_hash"),
            "crypto_cipher requires crypto_hash with value other than none",
        );
    } else if cipher == CryptoCipher::None {
        findings.warn(
            totem_pos(config, "crypto_cipher"),
            "cluster traffic is not encrypted (crypto_cipher none or secauth off)",
        );
    } else if cipher != CryptoCipher::Aes256 || hash != CryptoHash::Sha256 {
        findings.warn(
            totem_pos(config, "crypto_cipher"),
            "totemd always protects traffic with AES-256-GCM; crypto_cipher/crypto_hash only \
             choose whether it is on",
        );
    }
}

/// corosync sets no rule for cluster_name; pvecm allows `[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?`
/// of at most 15 characters (pve-common `pve_verify_node_name`, `ClusterConfig.pm`).
fn check_cluster_name(config: &Config, findings: &mut Findings) {
    let pos = totem_pos(config, "cluster_name");
    let Some(name) = &config.totem.cluster_name else {
        findings.warn(Pos::default(), "totem.cluster_name is not set");
        return;
    };
    if name.is_empty() {
        findings.error(pos, "totem.cluster_name is empty");
        return;
    }
    let allowed = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let hyphen_at_end = name.starts_with('-') || name.ends_with('-');
    if !allowed || hyphen_at_end {
        findings.warn(
            pos,
            format!(
                "cluster name {name:?} is not a valid pvecm cluster name (letters, digits and \
                 inner hyphens only)"
            ),
        );
    }
    if name.chars().count() > PVECM_CLUSTER_NAME_CHARS_MAX {
        findings.warn(
            pos,
            format!(
                "cluster name {name:?} is longer than the {PVECM_CLUSTER_NAME_CHARS_MAX} \
                 characters pvecm allows"
            ),
        );
    }
}

/// `totemconfig.c` `totem_volatile_config_validate`.
fn check_timings(config: &Config, findings: &mut Findings) {
    let totem = &config.totem;
    let timings = totem.timings(config.nodes.len());
    let minimum_checks = [
        (
            "max_network_delay",
            "max_network_delay",
            timings.max_network_delay_ms,
        ),
        ("token", "token timeout", timings.token_ms),
        ("join", "join timeout", timings.join_ms),
        ("consensus", "consensus timeout", timings.consensus_ms),
        ("merge", "merge timeout", timings.merge_ms),
        ("downcheck", "downcheck timeout", timings.downcheck_ms),
    ];
    for (key, label, value) in minimum_checks {
        if value < MINIMUM_TIMEOUT_MS {
            findings.error(
                totem_pos(config, key),
                format!("The {label} parameter ({value} ms) may not be less than ({MINIMUM_TIMEOUT_MS} ms)."),
            );
        }
    }
    if totem.token_warning_percent > 100 {
        findings.error(
            totem_pos(config, "token_warning"),
            format!(
                "The token warning parameter ({}%) must be between 0 (disabled) and 100.",
                totem.token_warning_percent
            ),
        );
    }
    if timings.token_retransmit_ms < MINIMUM_TIMEOUT_MS {
        let message = if totem.token_retransmit_ms.is_some() {
            format!(
                "The token retransmit timeout parameter ({} ms) may not be less than ({MINIMUM_TIMEOUT_MS} ms).",
                timings.token_retransmit_ms
            )
        } else {
            "Not appropriate token or token_retransmits_before_loss_const value set".to_owned()
        };
        findings.error(totem_pos(config, "token_retransmit"), message);
    }
    if timings.hold_ms < MINIMUM_TIMEOUT_HOLD_MS {
        findings.error(
            totem_pos(config, "hold"),
            format!(
                "The token hold timeout parameter ({} ms) may not be less than ({MINIMUM_TIMEOUT_HOLD_MS} ms).",
                timings.hold_ms
            ),
        );
    }
    if timings.consensus_ms < timings.join_ms {
        findings.error(
            totem_pos(config, "consensus"),
            format!(
                "The consensus timeout parameter ({} ms) may not be less than join timeout ({} ms).",
                timings.consensus_ms, timings.join_ms
            ),
        );
    }
    if timings.consensus_ms < timings.token_ms {
        findings.warn(
            totem_pos(config, "consensus"),
            format!(
                "consensus ({} ms) is shorter than token ({} ms); corosync.conf(5) says it \
                 should be at least 1.2 * token",
                timings.consensus_ms, timings.token_ms
            ),
        );
    }
}

fn check_links(config: &Config, findings: &mut Findings) {
    for interface in &config.interfaces {
        if interface.linknumber >= LINKS_MAX {
            findings.error(
                interface.linknumber_pos,
                format!(
                    "interface ring number {} is bigger than allowed maximum {}",
                    interface.linknumber,
                    LINKS_MAX - 1
                ),
            );
        }
        let explicit_ping = (
            interface.knet_ping_interval_ms.is_some(),
            interface.knet_ping_timeout_ms.is_some(),
        );
        if explicit_ping.0 != explicit_ping.1 {
            findings.warn(
                interface.pos,
                format!(
                    "link {}: knet_ping_interval and knet_ping_timeout are a pair; with only \
                     one set, the other is derived from the token timeout",
                    interface.linknumber
                ),
            );
        }
        let timers = interface.ping_timers(config.totem.timings(config.nodes.len()).token_ms);
        if timers.interval_ms < KNET_HEARTBEAT_TICK_MS || timers.timeout_ms < KNET_HEARTBEAT_TICK_MS
        {
            findings.warn(
                interface.pos,
                format!(
                    "link {}: ping interval {} ms / timeout {} ms is below knet's {KNET_HEARTBEAT_TICK_MS} ms \
                     heartbeat tick",
                    interface.linknumber, timers.interval_ms, timers.timeout_ms
                ),
            );
        }
        if interface.bindnetaddr.is_some() || interface.mcastaddr.is_some() {
            findings.warn(
                interface.pos,
                format!(
                    "link {}: bindnetaddr and mcastaddr are for the udp transport; knet takes \
                     addresses from the nodelist (ignored)",
                    interface.linknumber
                ),
            );
        }
    }
}

fn check_nodes(config: &Config, findings: &mut Findings) {
    if config.nodes.is_empty() {
        findings.error(
            Pos::default(),
            "nodelist has no node: the knet transport needs every node listed",
        );
        return;
    }
    let links = config.link_numbers();
    if links.is_empty() {
        findings.error(
            config
                .nodes
                .first()
                .map(|node| node.pos)
                .unwrap_or_default(),
            "no node has a ring0_addr (or any ringN_addr): there is no link to run on",
        );
    }
    let multi_link = links.len() > 1;
    let mut ids: BTreeMap<u32, Pos> = BTreeMap::new();
    let mut names: BTreeMap<&str, Pos> = BTreeMap::new();
    let mut addresses: BTreeMap<(u8, &str), (String, Pos)> = BTreeMap::new();
    for node in &config.nodes {
        let label = node.label();
        match node.nodeid {
            None | Some(0) => findings.error(
                if node.nodeid.is_some() { node.nodeid_pos } else { node.pos },
                format!("Knet requires an explicit nodeid (1 or more) for node {label}"),
            ),
            Some(id) if id >= KNET_NODEID_LIMIT => findings.error(
                node.nodeid_pos,
                format!("Knet requires nodeid to be less than {KNET_NODEID_LIMIT} (node {label} has {id})"),
            ),
            Some(id) => {
                if let Some(first) = ids.insert(id, node.nodeid_pos) {
                    ids.insert(id, first);
                    findings.error(
                        node.nodeid_pos,
                        format!("Nodeid {id} appears twice in corosync.conf (first at line {})", first.line),
                    );
                }
            }
        }
        match &node.name {
            Some(name) => {
                if let Some(first) = names.get(name.as_str()) {
                    findings.error(
                        node.pos,
                        format!(
                            "node name {name:?} appears twice (first at line {})",
                            first.line
                        ),
                    );
                } else {
                    names.insert(name, node.pos);
                }
            }
            None if multi_link => findings.error(
                node.pos,
                "for a multi-link configuration, all nodes must have a 'name' attribute",
            ),
            None => {}
        }
        for &link in &links {
            match node.addr(link) {
                None => findings.error(
                    node.pos,
                    format!("node {label} has no ring{link}_addr but link {link} is in use"),
                ),
                Some(addr) => {
                    if let Some((other, _)) = addresses.get(&(link, addr.text.as_str())) {
                        findings.error(
                            addr.pos,
                            format!(
                                "address {} on link {link} of node {label} is already used by node {other}",
                                addr.text
                            ),
                        );
                    } else {
                        addresses.insert((link, addr.text.as_str()), (label.clone(), addr.pos));
                    }
                }
            }
        }
    }
}

fn check_quorum(config: &Config, findings: &mut Findings) {
    let quorum = &config.quorum;
    match quorum.provider.as_deref() {
        Some(QUORUM_PROVIDER) => {}
        Some(other) => findings.error(
            Pos::default(),
            format!("quorum provider {other:?} is not supported (only {QUORUM_PROVIDER})"),
        ),
        None => findings.warn(
            Pos::default(),
            "no quorum.provider: quorum is not tracked (every partition counts as quorate)",
        ),
    }
    if let Some(device) = &quorum.device {
        match device.model.as_deref() {
            Some("net") => {
                let has_host = device.net.as_ref().is_some_and(|net| net.host.is_some());
                if !has_host {
                    findings.error(
                        device.pos,
                        "quorum.device model net needs net { host: ... }",
                    );
                }
            }
            Some(other) => findings.error(
                device.pos,
                format!("quorum.device.model {other:?} is not supported (only net)"),
            ),
            None => findings.error(device.pos, "quorum.device needs a model (net)"),
        }
    }
}

fn check_logging(config: &Config, findings: &mut Findings) {
    let logging = &config.logging;
    if logging.to_logfile && logging.logfile.is_none() {
        findings.warn(
            Pos::default(),
            "logging.to_logfile is on but no logging.logfile is set",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse::parse;

    fn findings(text: &str) -> Findings {
        let tree = parse(text).expect("parse");
        let (config, _) = Config::from_tree(&tree).expect("typed");
        validate(&config)
    }

    const HEAD: &str =
        "totem {\n version: 2\n cluster_name: c\n}\nquorum {\n provider: corosync_votequorum\n}\n";

    #[test]
    fn good_config_has_no_errors() {
        let text = format!("{HEAD}nodelist {{\n node {{\n  name: a\n  nodeid: 1\n  ring0_addr: 10.0.0.1\n }}\n node {{\n  name: b\n  nodeid: 2\n  ring0_addr: 10.0.0.2\n }}\n}}\n");
        let found = findings(&text);
        assert_eq!(found.errors, vec![]);
    }

    #[test]
    fn duplicate_ids_names_and_missing_links() {
        let text = format!("{HEAD}nodelist {{\n node {{\n  name: a\n  nodeid: 1\n  ring0_addr: 10.0.0.1\n  ring1_addr: 10.1.0.1\n }}\n node {{\n  name: a\n  nodeid: 1\n  ring0_addr: 10.0.0.2\n }}\n}}\n");
        let found = findings(&text);
        let messages: Vec<_> = found
            .errors
            .iter()
            .map(|e| (e.pos.line, e.message.as_str()))
            .collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert_eq!(messages[0].0, 15);
        assert!(messages[0].1.contains("appears twice"));
        assert!(messages.iter().any(|(_, m)| m.contains("no ring1_addr")));
        assert!(messages
            .iter()
            .any(|(line, m)| *line == 15 && m.contains("node name")));
    }

    #[test]
    fn nodeid_rules() {
        let text = format!("{HEAD}nodelist {{\n node {{\n  nodeid: 0\n  ring0_addr: 10.0.0.1\n }}\n node {{\n  nodeid: 70000\n  ring0_addr: 10.0.0.2\n }}\n}}\n");
        let found = findings(&text);
        assert_eq!(found.errors.len(), 2);
        assert_eq!(found.errors[0].pos, Pos::new(10, 11));
        assert!(found.errors[1].message.contains("less than 65536"));
    }

    #[test]
    fn timing_relations() {
        let text = "totem {\n version: 2\n cluster_name: c\n join: 500\n consensus: 400\n token: 20\n}\nnodelist {\n node {\n  nodeid: 1\n  ring0_addr: 10.0.0.1\n }\n}\n";
        let found = findings(text);
        let messages: Vec<_> = found.errors.iter().map(|e| e.message.as_str()).collect();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("token timeout parameter (20 ms)")),
            "{messages:?}"
        );
        assert!(messages
            .iter()
            .any(|m| m.contains("less than join timeout (500 ms)")));
    }

    #[test]
    fn cluster_name_and_crypto() {
        let text = "totem {\n version: 2\n cluster_name: my_cluster_name_too_long\n crypto_cipher: aes256\n crypto_hash: none\n}\nnodelist {\n node {\n  nodeid: 1\n  ring0_addr: 10.0.0.1\n }\n}\n";
        let found = findings(text);
        assert_eq!(found.errors.len(), 1);
        assert_eq!(found.errors[0].pos, Pos::new(5, 15));
        assert!(found.warnings.iter().filter(|w| w.pos.line == 3).count() == 2);
    }
}
