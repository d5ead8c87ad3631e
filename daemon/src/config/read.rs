//! Filling the typed [`Config`] from a corosync.conf [`Tree`].
//!
//! Values are converted the way corosync does (`exec/coroparse.c` numeric types and ranges,
//! `exec/totemconfig.c` and `exec/logconfig.c` word lists). Every key this project does not know
//! is reported as a warning with its position; it stays in the tree, so a rewrite keeps it.
//! Repeated keys warn too (corosync keeps the last one, and so does this reader).

use std::collections::BTreeMap;

use super::model::{
    Config, ConfigError, CryptoCipher, CryptoHash, DebugLevel, Interface, IpVersion, LinkMode,
    LoggerSubsys, Logging, Nice, Node, NodeAddr, Qdevice, QdeviceNet, Quorum, System, TieBreaker,
    Timestamp, Totem, Transport, Warning, DOWNCHECK_MS_DEFAULT, FAIL_RECV_CONST_DEFAULT,
    JOIN_MS_DEFAULT, KNET_PMTUD_INTERVAL_S_DEFAULT, LINKS_MAX, MAX_MESSAGES_DEFAULT,
    MAX_NETWORK_DELAY_MS_DEFAULT, MERGE_MS_DEFAULT, MISS_COUNT_CONST_DEFAULT, QNETD_DEFAULT_PORT,
    SEQNO_UNCHANGED_CONST_DEFAULT, TOKEN_MS_DEFAULT, TOKEN_RETRANSMITS_BEFORE_LOSS_DEFAULT,
    WINDOW_SIZE_DEFAULT,
};
use super::tree::{Body, Item, Pos, Section, Tree};

/// Types `tree`; unknown keys become warnings, bad values errors (the first one).
pub(crate) fn read_config(tree: &Tree) -> Result<(Config, Vec<Warning>), ConfigError> {
    let mut reader = Reader::default();
    let mut config = Config::default();
    for section in tree.root.sections() {
        match section.name.as_str() {
            "totem" => reader.totem(section, &mut config)?,
            "nodelist" => reader.nodelist(section, &mut config)?,
            "quorum" => reader.quorum(&section.body, &mut config.quorum)?,
            "logging" => reader.logging(&section.body, &mut config.logging)?,
            "system" => reader.system(&section.body, &mut config.system)?,
            "resources" | "nozzle" | "uidgid" => reader.warn(
                section.pos,
                format!("section '{}' is not used by totemd (kept)", section.name),
            ),
            other => reader.warn(section.pos, format!("unknown section '{other}' (kept)")),
        }
    }
    for item in tree.root.items() {
        reader.warn(
            item.key_pos,
            format!("unknown top-level key '{}' (kept)", item.key),
        );
    }
    config
        .interfaces
        .sort_by_key(|interface| interface.linknumber);
    Ok((config, reader.warnings))
}

/// Collects warnings while typing the tree.
#[derive(Default)]
struct Reader {
    warnings: Vec<Warning>,
}

fn bad_value(item: &Item, expected: &str) -> ConfigError {
    ConfigError::new(
        item.value_pos,
        format!(
            "invalid value {:?} for '{}': expected {expected}",
            item.value, item.key
        ),
    )
}

/// corosync's `safe_atoq`: base-10 integer (sign allowed) within the target type's range.
fn integer<T: TryFrom<i64>>(item: &Item, type_name: &str) -> Result<T, ConfigError> {
    item.value
        .parse::<i64>()
        .ok()
        .and_then(|value| T::try_from(value).ok())
        .ok_or_else(|| bad_value(item, type_name))
}

fn u32_value(item: &Item) -> Result<u32, ConfigError> {
    integer(item, "an integer 0..4294967295")
}

fn u8_value(item: &Item) -> Result<u8, ConfigError> {
    integer(item, "an integer 0..255")
}

/// quorum flags are uint8 in corosync; any non-zero value turns the option on.
fn flag_value(item: &Item) -> Result<bool, ConfigError> {
    Ok(u8_value(item)? != 0)
}

/// logging booleans: `yes`/`on` or `no`/`off` (`exec/logconfig.c`).
fn yes_no_on_off(item: &Item) -> Result<bool, ConfigError> {
    match item.value.as_str() {
        "yes" | "on" => Ok(true),
        "no" | "off" => Ok(false),
        _ => Err(bad_value(item, "yes, no, on or off")),
    }
}

fn on_off(item: &Item) -> Result<bool, ConfigError> {
    match item.value.as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(bad_value(item, "on or off")),
    }
}

fn debug_level(item: &Item) -> Result<DebugLevel, ConfigError> {
    match item.value.as_str() {
        "off" => Ok(DebugLevel::Off),
        "on" => Ok(DebugLevel::On),
        "trace" => Ok(DebugLevel::Trace),
        _ => Err(bad_value(item, "on, off or trace")),
    }
}

/// corosync's `get_dscp_value`: a class name or a number 0..63 (decimal, hex or octal).
fn dscp(item: &Item) -> Result<u8, ConfigError> {
    const NAMES: [(&str, u8); 21] = [
        ("cs0", 0),
        ("cs1", 8),
        ("cs2", 16),
        ("cs3", 24),
        ("cs4", 32),
        ("cs5", 40),
        ("cs6", 48),
        ("cs7", 56),
        ("af11", 10),
        ("af12", 12),
        ("af13", 14),
        ("af21", 18),
        ("af22", 20),
        ("af23", 22),
        ("af31", 26),
        ("af32", 28),
        ("af33", 30),
        ("af41", 34),
        ("af42", 36),
        ("af43", 38),
        ("ef", 46),
    ];
    if let Some((_, value)) = NAMES.iter().find(|(name, _)| *name == item.value) {
        return Ok(*value);
    }
    let text = item.value.as_str();
    let parsed = if let Some(hex) = text.strip_prefix("0x").or(text.strip_prefix("0X")) {
        u8::from_str_radix(hex, 16).ok()
    } else if text.len() > 1 && text.starts_with('0') {
        u8::from_str_radix(&text[1..], 8).ok()
    } else {
        text.parse::<u8>().ok()
    };
    parsed.filter(|value| *value <= 63).ok_or_else(|| {
        bad_value(
            item,
            "0..63 or a DSCP class name (cs0..cs7, af11..af43, ef)",
        )
    })
}

impl Reader {
    fn warn(&mut self, pos: Pos, message: String) {
        self.warnings.push(Warning { pos, message });
    }

    /// corosync keeps the last of repeated keys; say so, at each later occurrence.
    fn warn_repeats(&mut self, path: &str, body: &Body) {
        let mut first_seen: BTreeMap<&str, Pos> = BTreeMap::new();
        for item in body.items() {
            match first_seen.get(item.key.as_str()) {
                Some(first) => {
                    let message = format!(
                        "key '{path}.{}' is repeated (first at line {}); the last value wins",
                        item.key, first.line
                    );
                    self.warn(item.key_pos, message);
                }
                None => {
                    first_seen.insert(&item.key, item.key_pos);
                }
            }
        }
    }

    fn unknown_key(&mut self, path: &str, item: &Item) {
        self.warn(
            item.key_pos,
            format!("unknown key '{path}.{}' (kept)", item.key),
        );
    }

    fn unknown_section(&mut self, path: &str, section: &Section) {
        self.warn(
            section.pos,
            format!("unknown section '{path}.{}' (kept)", section.name),
        );
    }

    fn totem(&mut self, section: &Section, config: &mut Config) -> Result<(), ConfigError> {
        self.warn_repeats("totem", &section.body);
        let totem = &mut config.totem;
        for item in section.body.items() {
            self.totem_item(item, totem)?;
        }
        for sub in section.body.sections() {
            if sub.name == "interface" {
                let interface = self.interface(sub)?;
                if let Some(previous) = config
                    .interfaces
                    .iter()
                    .find(|i| i.linknumber == interface.linknumber)
                {
                    return Err(ConfigError::new(
                        interface.pos,
                        format!(
                            "interface for link {} is already defined at line {}",
                            interface.linknumber, previous.pos.line
                        ),
                    ));
                }
                config.interfaces.push(interface);
            } else {
                self.unknown_section("totem", sub);
            }
        }
        Ok(())
    }

    fn totem_item(&mut self, item: &Item, totem: &mut Totem) -> Result<(), ConfigError> {
        // Timers and counts where corosync treats a configured 0 as "use the default".
        let nonzero = |value: u32, default: u32| if value == 0 { default } else { value };
        let nonzero_opt = |value: u32| (value != 0).then_some(value);
        totem.value_pos.insert(item.key.clone(), item.value_pos);
        match item.key.as_str() {
            "version" => totem.version = Some(u32_value(item)?),
            "cluster_name" => totem.cluster_name = Some(item.value.clone()),
            // strtoull in corosync would wrap "-1" to 2^64-1; a sign is refused here instead.
            "config_version" => {
                totem.config_version = item
                    .value
                    .parse::<u64>()
                    .map_err(|_| bad_value(item, "an unsigned 64-bit integer"))?;
            }
            "ip_version" => {
                totem.ip_version = match item.value.as_str() {
                    "ipv4" => IpVersion::Ipv4,
                    "ipv6" => IpVersion::Ipv6,
                    "ipv4-6" => IpVersion::Ipv4Then6,
                    "ipv6-4" => IpVersion::Ipv6Then4,
                    _ => return Err(bad_value(item, "ipv4, ipv6, ipv4-6 or ipv6-4")),
                }
            }
            "transport" => {
                totem.transport = match item.value.as_str() {
                    "knet" => Transport::Knet,
                    "udp" => Transport::Udp,
                    "udpu" => Transport::Udpu,
                    _ => return Err(bad_value(item, "knet (or udp, udpu)")),
                }
            }
            "link_mode" => {
                totem.link_mode = match item.value.as_str() {
                    "passive" => LinkMode::Passive,
                    "active" => LinkMode::Active,
                    "rr" => LinkMode::RoundRobin,
                    _ => return Err(bad_value(item, "passive, active or rr")),
                }
            }
            "secauth" => totem.secauth = Some(item.value == "on"),
            "crypto_model" => totem.crypto_model = Some(item.value.clone()),
            "crypto_cipher" => {
                totem.crypto_cipher = Some(match item.value.as_str() {
                    "none" => CryptoCipher::None,
                    "aes256" => CryptoCipher::Aes256,
                    "aes192" => CryptoCipher::Aes192,
                    "aes128" => CryptoCipher::Aes128,
                    _ => return Err(bad_value(item, "none, aes256, aes192 or aes128")),
                })
            }
            "crypto_hash" => {
                totem.crypto_hash = Some(match item.value.as_str() {
                    "none" => CryptoHash::None,
                    "md5" => CryptoHash::Md5,
                    "sha1" => CryptoHash::Sha1,
                    "sha256" => CryptoHash::Sha256,
                    "sha384" => CryptoHash::Sha384,
                    "sha512" => CryptoHash::Sha512,
                    _ => return Err(bad_value(item, "none, md5, sha1, sha256, sha384 or sha512")),
                })
            }
            "keyfile" => totem.keyfile = Some(item.value.clone()),
            "token" => totem.token_ms = nonzero(u32_value(item)?, TOKEN_MS_DEFAULT),
            "token_coefficient" => totem.token_coefficient_ms = u32_value(item)?,
            "token_warning" => totem.token_warning_percent = u32_value(item)?,
            "token_retransmits_before_loss_const" => {
                totem.token_retransmits_before_loss_const =
                    nonzero(u32_value(item)?, TOKEN_RETRANSMITS_BEFORE_LOSS_DEFAULT)
            }
            "token_retransmit" => totem.token_retransmit_ms = nonzero_opt(u32_value(item)?),
            "hold" => totem.hold_ms = nonzero_opt(u32_value(item)?),
            "consensus" => totem.consensus_ms = nonzero_opt(u32_value(item)?),
            "join" => totem.join_ms = nonzero(u32_value(item)?, JOIN_MS_DEFAULT),
            "send_join" => totem.send_join_ms = u32_value(item)?,
            "merge" => totem.merge_ms = nonzero(u32_value(item)?, MERGE_MS_DEFAULT),
            "downcheck" => totem.downcheck_ms = nonzero(u32_value(item)?, DOWNCHECK_MS_DEFAULT),
            "fail_recv_const" => {
                totem.fail_recv_const = nonzero(u32_value(item)?, FAIL_RECV_CONST_DEFAULT)
            }
            "seqno_unchanged_const" => {
                totem.seqno_unchanged_const =
                    nonzero(u32_value(item)?, SEQNO_UNCHANGED_CONST_DEFAULT)
            }
            "max_messages" => totem.max_messages = nonzero(u32_value(item)?, MAX_MESSAGES_DEFAULT),
            "window_size" => totem.window_size = nonzero(u32_value(item)?, WINDOW_SIZE_DEFAULT),
            "miss_count_const" => {
                totem.miss_count_const = nonzero(u32_value(item)?, MISS_COUNT_CONST_DEFAULT)
            }
            "max_network_delay" => {
                totem.max_network_delay_ms = nonzero(u32_value(item)?, MAX_NETWORK_DELAY_MS_DEFAULT)
            }
            "heartbeat_failures_allowed" => totem.heartbeat_failures_allowed = u32_value(item)?,
            "netmtu" => totem.netmtu = u32_value(item)?,
            "knet_mtu" => totem.knet_mtu = u32_value(item)?,
            "knet_pmtud_interval" => {
                totem.knet_pmtud_interval_s =
                    nonzero(u32_value(item)?, KNET_PMTUD_INTERVAL_S_DEFAULT)
            }
            "knet_compression_model" => totem.knet_compression_model = item.value.clone(),
            "knet_compression_threshold" => totem.knet_compression_threshold = u32_value(item)?,
            "knet_compression_level" => {
                totem.knet_compression_level = integer(item, "a 32-bit integer")?
            }
            "ip_dscp" => totem.ip_dscp = dscp(item)?,
            "block_unlisted_ips" | "cancel_token_hold_on_retransmit" => {
                let value = match item.value.as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(bad_value(item, "yes or no")),
                };
                if item.key == "block_unlisted_ips" {
                    totem.block_unlisted_ips = value;
                } else {
                    totem.cancel_token_hold_on_retransmit = value;
                }
            }
            "nodeid" => {
                totem.nodeid = Some(u32_value(item)?);
                self.warn(
                    item.key_pos,
                    "totem.nodeid is deprecated and ignored; set nodeid in the nodelist".into(),
                );
            }
            "threads" | "clear_node_high_bit" | "key" | "miss_count" => self.warn(
                item.key_pos,
                format!("totem.{} is not used by totemd (kept)", item.key),
            ),
            _ => self.unknown_key("totem", item),
        }
        Ok(())
    }

    fn interface(&mut self, section: &Section) -> Result<Interface, ConfigError> {
        let body = &section.body;
        self.warn_repeats("totem.interface", body);
        let linknumber_item = body.item("linknumber");
        let linknumber = match linknumber_item {
            Some(item) => u8_value(item)?,
            None => 0,
        };
        let mut interface = Interface::new(linknumber, section.pos);
        interface.linknumber_pos = linknumber_item.map_or(section.pos, |item| item.value_pos);
        for item in body.items() {
            match item.key.as_str() {
                "linknumber" => {}
                "knet_link_priority" => interface.knet_link_priority = u8_value(item)?,
                "knet_ping_interval" => interface.knet_ping_interval_ms = Some(u32_value(item)?),
                "knet_ping_timeout" => interface.knet_ping_timeout_ms = Some(u32_value(item)?),
                "knet_ping_precision" => interface.knet_ping_precision = u32_value(item)?,
                "knet_pong_count" => interface.knet_pong_count = u32_value(item)?,
                "knet_transport" => {
                    if item.value != "udp" {
                        return Err(bad_value(item, "udp (the only knet transport totemd runs)"));
                    }
                }
                "mcastport" => interface.port = integer(item, "a port 0..65535")?,
                "bindnetaddr" => interface.bindnetaddr = Some(item.value.clone()),
                "mcastaddr" => interface.mcastaddr = Some(item.value.clone()),
                "ttl" => interface.ttl = Some(u8_value(item)?),
                "broadcast" => self.warn(
                    item.key_pos,
                    "totem.interface.broadcast is for the udp transport; ignored".into(),
                ),
                "ringnumber" => self.warn(
                    item.key_pos,
                    "totem.interface.ringnumber is obsolete; use linknumber (ignored)".into(),
                ),
                _ => self.unknown_key("totem.interface", item),
            }
        }
        for sub in body.sections() {
            self.unknown_section("totem.interface", sub);
        }
        Ok(interface)
    }

    fn nodelist(&mut self, section: &Section, config: &mut Config) -> Result<(), ConfigError> {
        for item in section.body.items() {
            self.unknown_key("nodelist", item);
        }
        for sub in section.body.sections() {
            if sub.name == "node" {
                config.nodes.push(self.node(sub)?);
            } else {
                self.unknown_section("nodelist", sub);
            }
        }
        Ok(())
    }

    fn node(&mut self, section: &Section) -> Result<Node, ConfigError> {
        let mut node = Node {
            name: None,
            nodeid: None,
            nodeid_pos: Pos::default(),
            quorum_votes: 1,
            addrs: Vec::new(),
            pos: section.pos,
        };
        self.warn_repeats("nodelist.node", &section.body);
        for item in section.body.items() {
            match item.key.as_str() {
                "name" => node.name = Some(item.value.clone()),
                "nodeid" => {
                    node.nodeid = Some(u32_value(item)?);
                    node.nodeid_pos = item.value_pos;
                }
                "quorum_votes" => node.quorum_votes = u32_value(item)?,
                key => match ring_link(key) {
                    Some(Ok(link)) => {
                        node.addrs.retain(|addr| addr.link != link);
                        node.addrs.push(NodeAddr {
                            link,
                            text: item.value.clone(),
                            pos: item.value_pos,
                        });
                    }
                    Some(Err(link)) => {
                        return Err(ConfigError::new(
                            item.key_pos,
                            format!(
                                "interface ring number {link} is bigger than allowed maximum {}",
                                LINKS_MAX - 1
                            ),
                        ))
                    }
                    None => self.unknown_key("nodelist.node", item),
                },
            }
        }
        node.addrs.sort_by_key(|addr| addr.link);
        for sub in section.body.sections() {
            self.unknown_section("nodelist.node", sub);
        }
        Ok(node)
    }

    fn quorum(&mut self, body: &Body, quorum: &mut Quorum) -> Result<(), ConfigError> {
        self.warn_repeats("quorum", body);
        for item in body.items() {
            match item.key.as_str() {
                "provider" => quorum.provider = Some(item.value.clone()),
                "expected_votes" => quorum.expected_votes = Some(u32_value(item)?),
                "two_node" => quorum.two_node = flag_value(item)?,
                "wait_for_all" => quorum.wait_for_all = Some(flag_value(item)?),
                "last_man_standing" => quorum.last_man_standing = flag_value(item)?,
                "last_man_standing_window" => quorum.last_man_standing_window_ms = u32_value(item)?,
                "auto_tie_breaker" => quorum.auto_tie_breaker = flag_value(item)?,
                "auto_tie_breaker_node" => quorum.auto_tie_breaker_node = tie_breaker(item)?,
                "allow_downscale" => quorum.allow_downscale = flag_value(item)?,
                "expected_votes_tracking" => quorum.expected_votes_tracking = flag_value(item)?,
                "votes" | "leaving_timeout" => {
                    u32_value(item)?;
                    self.warn(
                        item.key_pos,
                        format!("quorum.{} is not used by totemd (kept)", item.key),
                    );
                }
                _ => self.unknown_key("quorum", item),
            }
        }
        for sub in body.sections() {
            if sub.name == "device" {
                quorum.device = Some(self.qdevice(sub)?);
            } else {
                self.unknown_section("quorum", sub);
            }
        }
        Ok(())
    }

    fn qdevice(&mut self, section: &Section) -> Result<Qdevice, ConfigError> {
        let mut device = Qdevice {
            model: None,
            votes: None,
            timeout_ms: None,
            sync_timeout_ms: None,
            master_wins: None,
            net: None,
            pos: section.pos,
        };
        for item in section.body.items() {
            match item.key.as_str() {
                "model" => device.model = Some(item.value.clone()),
                "votes" => device.votes = Some(u32_value(item)?),
                "timeout" => device.timeout_ms = Some(u32_value(item)?),
                "sync_timeout" => device.sync_timeout_ms = Some(u32_value(item)?),
                "master_wins" => device.master_wins = Some(flag_value(item)?),
                _ => self.unknown_key("quorum.device", item),
            }
        }
        for sub in section.body.sections() {
            match sub.name.as_str() {
                "net" => device.net = Some(self.qdevice_net(&sub.body)?),
                "heartbeats" | "heuristics" => self.warn(
                    sub.pos,
                    format!("quorum.device.{} is not used by totemd (kept)", sub.name),
                ),
                _ => self.unknown_section("quorum.device", sub),
            }
        }
        Ok(device)
    }

    fn qdevice_net(&mut self, body: &Body) -> Result<QdeviceNet, ConfigError> {
        let mut net = QdeviceNet {
            host: None,
            port: QNETD_DEFAULT_PORT,
            algorithm: None,
            tie_breaker: None,
            tls: None,
        };
        for item in body.items() {
            match item.key.as_str() {
                "host" => net.host = Some(item.value.clone()),
                "port" => net.port = integer(item, "a port 0..65535")?,
                "algorithm" => match item.value.as_str() {
                    "ffsplit" | "lms" | "test" | "2nodelms" => {
                        net.algorithm = Some(item.value.clone())
                    }
                    _ => return Err(bad_value(item, "ffsplit or lms")),
                },
                "tie_breaker" => net.tie_breaker = Some(item.value.clone()),
                "tls" => match item.value.as_str() {
                    "on" | "off" | "required" => net.tls = Some(item.value.clone()),
                    _ => return Err(bad_value(item, "on, off or required")),
                },
                "connect_timeout" | "force_ip_version" | "keep_active_partition_tie_breaker" => {
                    self.warn(
                        item.key_pos,
                        format!(
                            "quorum.device.net.{} is not used by totemd (kept)",
                            item.key
                        ),
                    )
                }
                _ => self.unknown_key("quorum.device.net", item),
            }
        }
        Ok(net)
    }

    fn logging(&mut self, body: &Body, logging: &mut Logging) -> Result<(), ConfigError> {
        self.warn_repeats("logging", body);
        for item in body.items() {
            match item.key.as_str() {
                "to_syslog" => logging.to_syslog = yes_no_on_off(item)?,
                "to_stderr" => logging.to_stderr = yes_no_on_off(item)?,
                "to_logfile" => logging.to_logfile = yes_no_on_off(item)?,
                "logfile" => logging.logfile = Some(item.value.clone()),
                "debug" => logging.debug = debug_level(item)?,
                "timestamp" => {
                    logging.timestamp = match item.value.as_str() {
                        "on" => Timestamp::On,
                        "off" => Timestamp::Off,
                        "hires" => Timestamp::Hires,
                        _ => return Err(bad_value(item, "on, off or hires")),
                    }
                }
                "fileline" => logging.fileline = on_off(item)?,
                "function_name" => logging.function_name = on_off(item)?,
                "blackbox" => {
                    on_off(item)?;
                }
                "syslog_facility" => logging.syslog_facility = Some(item.value.clone()),
                "syslog_priority" => logging.syslog_priority = Some(item.value.clone()),
                "logfile_priority" => logging.logfile_priority = Some(item.value.clone()),
                _ => self.unknown_key("logging", item),
            }
        }
        for sub in body.sections() {
            match sub.name.as_str() {
                "logger_subsys" => logging.subsystems.push(self.logger_subsys(sub)?),
                _ => self.unknown_section("logging", sub),
            }
        }
        Ok(())
    }

    /// `system`: the scheduling keys (corosync's `exec/main.c`); the rest are corosync's own
    /// process settings (state_dir, run_dir, move_to_root_cgroup, ...), kept and reported.
    fn system(&mut self, body: &Body, system: &mut System) -> Result<(), ConfigError> {
        self.warn_repeats("system", body);
        for item in body.items() {
            match item.key.as_str() {
                "sched_rr" => {
                    system.sched_rr = item.value == "yes";
                    if !matches!(item.value.as_str(), "yes" | "no") {
                        self.warn(
                            item.value_pos,
                            format!(
                                "sched_rr {:?} leaves realtime scheduling off, as in corosync \
                                 (only \"yes\" turns it on)",
                                item.value
                            ),
                        );
                    }
                }
                "priority" => {
                    system.priority = Some(match item.value.as_str() {
                        "max" => Nice::Max,
                        "min" => Nice::Min,
                        _ => Nice::Value(integer(item, "max, min or an integer")?),
                    })
                }
                _ => self.warn(
                    item.key_pos,
                    format!("system.{} is not used by totemd (kept)", item.key),
                ),
            }
        }
        for sub in body.sections() {
            self.unknown_section("system", sub);
        }
        Ok(())
    }

    fn logger_subsys(&mut self, section: &Section) -> Result<LoggerSubsys, ConfigError> {
        let subsys = section.body.item("subsys").ok_or_else(|| {
            ConfigError::new(section.pos, "No subsys key in logger_subsys directive")
        })?;
        let mut result = LoggerSubsys {
            subsys: subsys.value.clone(),
            debug: None,
        };
        for item in section.body.items() {
            match item.key.as_str() {
                "subsys" => {}
                "debug" => result.debug = Some(debug_level(item)?),
                "to_syslog" | "to_stderr" | "to_logfile" => {
                    yes_no_on_off(item)?;
                }
                "logfile" | "syslog_facility" | "syslog_priority" | "logfile_priority"
                | "timestamp" | "fileline" | "function_name" => {}
                _ => self.unknown_key("logging.logger_subsys", item),
            }
        }
        Ok(result)
    }
}

/// `ringN_addr` → `Some(Ok(N))` for N < 8, `Some(Err(N))` beyond; `None` for other keys.
fn ring_link(key: &str) -> Option<Result<u8, u32>> {
    let digits = key.strip_prefix("ring")?.strip_suffix("_addr")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let link: u32 = digits.parse().unwrap_or(u32::MAX);
    Some(match u8::try_from(link) {
        Ok(link) if link < LINKS_MAX => Ok(link),
        _ => Err(link),
    })
}

/// `lowest`, `highest`, or a space-separated list of node ids (votequorum.5).
fn tie_breaker(item: &Item) -> Result<TieBreaker, ConfigError> {
    match item.value.as_str() {
        "lowest" => Ok(TieBreaker::Lowest),
        "highest" => Ok(TieBreaker::Highest),
        list => {
            let ids: Option<Vec<u32>> = list
                .split_ascii_whitespace()
                .map(|word| word.parse::<u32>().ok())
                .collect();
            match ids {
                Some(ids) if !ids.is_empty() => Ok(TieBreaker::List(ids)),
                _ => Err(bad_value(
                    item,
                    "lowest, highest or a space-separated list of node ids",
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse::parse;

    fn typed(text: &str) -> (Config, Vec<Warning>) {
        Config::from_tree(&parse(text).expect("parse")).expect("typed")
    }

    #[test]
    fn defaults_match_corosync() {
        let (config, warnings) = typed("totem {\n version: 2\n}\n");
        assert!(warnings.is_empty());
        let t = config.totem.timings(2);
        assert_eq!(t.token_ms, 3000);
        assert_eq!(t.token_retransmit_ms, 714);
        assert_eq!(t.hold_ms, 561);
        assert_eq!(t.consensus_ms, 3600);
        assert_eq!(config.totem.ip_version, IpVersion::Ipv6Then4);
        assert_eq!(
            config.totem.effective_crypto(),
            (CryptoCipher::Aes256, CryptoHash::Sha256)
        );
        let t3 = config.totem.timings(3);
        assert_eq!(t3.token_ms, 3650);
        assert_eq!(
            config.interface(0).ping_timers(t3.token_ms).timeout_ms,
            1825
        );
        assert_eq!(
            config.interface(0).ping_timers(t3.token_ms).interval_ms,
            912
        );
        assert_eq!(config.interface(1).port, 5406);
    }

    #[test]
    fn unknown_keys_warn_with_position() {
        let (_, warnings) = typed("totem {\n version: 2\n frobnicate: 1\n}\nextra {\n}\n");
        assert_eq!(warnings.len(), 2);
        assert_eq!(warnings[0].pos, Pos::new(3, 2));
        assert!(warnings[0].message.contains("totem.frobnicate"));
        assert_eq!(warnings[1].pos, Pos::new(5, 1));
    }

    #[test]
    fn repeated_keys_warn_and_the_last_wins() {
        let (config, warnings) = typed("totem {\n version: 2\n token: 1000\n token: 2000\n}\n");
        assert_eq!(config.totem.token_ms, 2000);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].pos, Pos::new(4, 2));
        assert!(warnings[0].message.contains("first at line 3"));
    }

    #[test]
    fn zero_timeouts_mean_default_as_in_corosync() {
        let (config, _) = typed("totem {\n token: 0\n consensus: 0\n join: 0\n}\n");
        let timings = config.totem.timings(2);
        assert_eq!(
            (timings.token_ms, timings.consensus_ms, timings.join_ms),
            (3000, 3600, 50)
        );
    }

    #[test]
    fn bad_values_point_at_the_value() {
        let tree = parse("totem {\n token: 3000 # ms\n}\n").expect("parse");
        let error = Config::from_tree(&tree).expect_err("bad token");
        assert_eq!(error.pos, Pos::new(2, 9));
        let tree = parse("totem {\n interface {\n  knet_link_priority: 256\n }\n}\n").expect("p");
        let error = Config::from_tree(&tree).expect_err("bad priority");
        assert_eq!(error.pos, Pos::new(3, 23));
        let tree = parse("nodelist {\n node {\n  ring8_addr: 10.0.0.1\n }\n}\n").expect("p");
        assert!(Config::from_tree(&tree).is_err());
    }

    #[test]
    fn tie_breaker_list_and_dscp() {
        let (config, _) =
            typed("quorum {\n auto_tie_breaker_node: 1 3 5\n}\ntotem {\n ip_dscp: af41\n}\n");
        assert_eq!(
            config.quorum.auto_tie_breaker_node,
            TieBreaker::List(vec![1, 3, 5])
        );
        assert_eq!(config.totem.ip_dscp, 34);
        let (config, _) = typed("totem {\n ip_dscp: 0x2e\n}\n");
        assert_eq!(config.totem.ip_dscp, 46);
    }
}
