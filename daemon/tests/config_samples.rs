//! Real corosync.conf files (Proxmox VE examples, corosync's example, a pcs-style two-node
//! cluster) load with the values corosync would use, and pvecm-written files rewrite unchanged.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use totemd::config::model::{IpVersion, LinkMode, TieBreaker};
use totemd::config::{self, load_file, parse, write_canonical, LoadError, Loaded, Resolver};

/// Host names of the pve-docs examples, without DNS or /etc/hosts.
struct FakeDns(HashMap<&'static str, Vec<IpAddr>>);

impl FakeDns {
    fn pve_docs() -> Self {
        let ip = |text: &str| text.parse::<IpAddr>().expect("ip");
        Self(HashMap::from([
            ("uno", vec![ip("fd00::1"), ip("10.10.10.1")]),
            ("due", vec![ip("fd00::2"), ip("10.10.10.2")]),
            ("tre", vec![ip("fd00::3"), ip("10.10.10.3")]),
        ]))
    }
}

impl Resolver for FakeDns {
    fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        self.0
            .get(host)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unknown host"))
    }
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn load(name: &str) -> Loaded {
    match load_file(&data(name), &FakeDns::pve_docs()) {
        Ok(loaded) => loaded,
        Err(error) => panic!("{name}: {:?}", error.problems()),
    }
}

#[test]
fn pve_three_nodes() {
    let loaded = load("pve-3node.conf");
    let config = &loaded.config;
    assert_eq!(config.totem.cluster_name.as_deref(), Some("testcluster"));
    assert_eq!(config.totem.config_version, 4);
    assert_eq!(config.totem.ip_version, IpVersion::Ipv4Then6);
    assert_eq!(config.totem.link_mode, LinkMode::Passive);
    assert_eq!(config.totem.secauth, Some(true));
    // REFERENCE.md §1.3: a PVE-created 3-node cluster (coefficient 125) runs token 3125 ms,
    // knet ping timeout 1562 ms and interval 781 ms.
    let timings = config.totem.timings(config.nodes.len());
    assert_eq!(timings.token_ms, 3125);
    assert_eq!(timings.consensus_ms, 3750);
    let ping = config.interface(0).ping_timers(timings.token_ms);
    assert_eq!((ping.timeout_ms, ping.interval_ms), (1562, 781));
    let ids: Vec<u32> = loaded.nodes.iter().map(|n| n.nodeid).collect();
    assert_eq!(ids, vec![2, 3, 1]);
    assert_eq!(loaded.nodes[2].links[0].addr.to_string(), "10.10.10.1:5405");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn pvecm_layout_rewrites_byte_for_byte() {
    for name in [
        "pve-3node.conf",
        "pve-redundant-links.conf",
        "pve-qdevice.conf",
    ] {
        let text = std::fs::read_to_string(data(name)).expect("read");
        let tree = parse(&text).expect("parse");
        assert_eq!(write_canonical(&tree).expect("write"), text, "{name}");
    }
}

#[test]
fn pve_docs_hostnames_resolve_per_ip_version() {
    let loaded = load("pve-hostnames.conf");
    // ip_version ipv4-6: the IPv4 address wins although the resolver lists IPv6 first.
    let uno = loaded
        .nodes
        .iter()
        .find(|n| n.name.as_deref() == Some("uno"))
        .expect("uno");
    assert_eq!(uno.links[0].addr.ip().to_string(), "10.10.10.1");
    // Rewriting the hand-edited layout yields pvecm's (blank lines inside nodelist dropped).
    let text = std::fs::read_to_string(data("pve-hostnames.conf")).expect("read");
    let canonical = write_canonical(&parse(&text).expect("parse")).expect("write");
    assert!(canonical.starts_with(
        "logging {\n  debug: off\n  to_syslog: yes\n}\n\nnodelist {\n  node {\n    name: due\n"
    ));
    assert!(canonical.ends_with("  interface {\n    linknumber: 0\n  }\n  ip_version: ipv4-6\n  secauth: on\n  version: 2\n}\n\n"));
}

#[test]
fn redundant_links_with_priorities() {
    let loaded = load("pve-redundant-links.conf");
    let config = &loaded.config;
    assert_eq!(config.link_numbers(), vec![0, 1]);
    assert_eq!(config.interface(0).knet_link_priority, 15);
    assert_eq!(config.interface(1).knet_link_priority, 20);
    assert_eq!(config.interface(1).port, 5406);
    for node in &loaded.nodes {
        assert_eq!(node.links.len(), 2);
        assert_eq!(node.links[1].addr.port(), 5406);
    }
}

#[test]
fn qdevice_section() {
    let loaded = load("pve-qdevice.conf");
    let device = loaded.config.quorum.device.as_ref().expect("device");
    assert_eq!(device.model.as_deref(), Some("net"));
    assert_eq!(device.votes, Some(1));
    let net = device.net.as_ref().expect("net");
    assert_eq!(net.algorithm.as_deref(), Some("ffsplit"));
    assert_eq!(net.host.as_deref(), Some("192.168.15.100"));
    assert_eq!(net.tls.as_deref(), Some("on"));
    assert_eq!(net.port, 5403);
    assert_eq!(loaded.config.totem.timings(4).token_ms, 3250);
}

#[test]
fn pcs_two_node() {
    let loaded = load("two-node.conf");
    let quorum = &loaded.config.quorum;
    assert!(quorum.two_node);
    assert_eq!(
        quorum.wait_for_all, None,
        "implicit, left to the quorum module"
    );
    assert_eq!(quorum.auto_tie_breaker_node, TieBreaker::Lowest);
    assert!(loaded.config.logging.to_logfile);
    // Two nodes: no coefficient, corosync's plain defaults.
    let timings = loaded.config.totem.timings(2);
    assert_eq!(
        (
            timings.token_ms,
            timings.token_retransmit_ms,
            timings.hold_ms,
            timings.consensus_ms
        ),
        (3000, 714, 561, 3600)
    );
}

#[test]
fn corosync_example_parses_but_has_no_links() {
    let text = std::fs::read_to_string(data("corosync-example.conf")).expect("read");
    let tree = parse(&text).expect("corosync's own example parses");
    let (config, warnings) = config::Config::from_tree(&tree).expect("and types");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.nodes.len(), 2);
    assert_eq!(config.logging.subsystems[0].subsys, "QUORUM");
    // Its ringN_addr lines are commented out, so there is nothing to connect.
    match load_file(&data("corosync-example.conf"), &FakeDns::pve_docs()) {
        Err(LoadError::Invalid(errors)) => {
            assert!(errors
                .iter()
                .any(|e| e.message.contains("no link to run on")));
        }
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn system_section_sets_the_scheduling_as_corosync_reads_it() {
    use totemd::config::model::{Nice, System};
    let read = |body: &str| {
        let tree = parse(&format!("system {{\n{body}}}\n")).expect("parses");
        let (config, warnings) = config::Config::from_tree(&tree).expect("types");
        let warnings: Vec<String> = warnings.into_iter().map(|w| w.message).collect();
        (config.system, warnings)
    };
    // Absent: the normal scheduling class, no nice value (a departure: corosync's default is
    // SCHED_RR; see daemon/src/sched.rs).
    assert_eq!(
        read("").0,
        System {
            sched_rr: false,
            priority: None
        }
    );
    assert!(read("  sched_rr: yes\n").0.sched_rr);
    let (system, warnings) = read("  sched_rr: no\n  priority: max\n");
    assert_eq!((system.sched_rr, system.priority), (false, Some(Nice::Max)));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(read("  priority: -5\n").0.priority, Some(Nice::Value(-5)));
    assert_eq!(read("  priority: min\n").0.priority, Some(Nice::Min));
    // corosync turns SCHED_RR off for anything but "yes": so do we, and say so.
    let (system, warnings) = read("  sched_rr: on\n");
    assert!(!system.sched_rr);
    assert!(
        warnings[0].contains("leaves realtime scheduling off"),
        "{warnings:?}"
    );
    // corosync's own process keys are kept and reported as unused.
    let (_, warnings) = read("  move_to_root_cgroup: auto\n");
    assert!(warnings[0].contains("system.move_to_root_cgroup is not used"));
    // A priority that is neither a word nor a number is refused.
    let tree = parse("system {\n  priority: high\n}\n").expect("parses");
    let error = config::Config::from_tree(&tree).expect_err("bad priority");
    assert!(
        error.to_string().contains("max, min or an integer"),
        "{error}"
    );
}
