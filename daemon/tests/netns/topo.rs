//! A namespace topology (tests/netns/netns.sh) with one totemd per node, torn down on drop.
//!
//! Node K lives in namespace `PREFIX-nK` with 10.250.0.K on link 0 and 10.250.1.K on link 1.
//! Each node has its own configuration directory (`corosync.conf`, `authkey`, and the
//! `join-secret` of `pvecm create`) and state directory in a temp dir; the daemons' control
//! sockets are plain files there too, so the test process (in the root namespace) reaches them
//! directly. A topology either gets a generated config on every node ([`Topology::new`]) or is
//! built by `pvecm create` and `pvecm add` run inside the namespaces ([`Topology::bare`],
//! [`Topology::pvecm`]); namespaces may be prepared for more nodes than run at first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};
use std::sync::OnceLock;
use std::time::Duration;

use totem_client::proto::QuorumStatus;
use totem_client::Client;

use crate::common::{self, DaemonFiles, Totemd};

/// Namespace prefix stem; each topology is `tnt<pid><letter>` so runs never collide and the
/// leftovers of a dead run are recognised by their dead pid.
const PREFIX_STEM: &str = "tnt";

/// corosync's default knet/totem port (REFERENCE.md §2: mcastport 5405); every node has its own
/// namespace, so one port for all is fine.
const PORT: u16 = 5405;

/// Environment variables of `pvecm` that would point it elsewhere than the node's own files;
/// cleared so the caller's environment cannot leak in (the join port and link ports keep their
/// defaults: every node has its own namespace).
const PVECM_ENV_CLEARED: [&str; 3] = [
    "TOTEMD_JOIN_SECRET",
    "TOTEMD_JOIN_PORT",
    "TOTEMD_LINK_PORT_BASE",
];

/// Path of the shell helper that builds the namespaces and installs faults.
pub fn helper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/netns/netns.sh")
}

/// Why the namespace tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !common::is_root() {
        return Some("needs root (ip netns, nft)".into());
    }
    for tool in ["ip", "nft"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            return Some(format!("needs `{tool}` (iproute2 / nftables)"));
        }
    }
    None
}

/// Runs the shell helper with `args`; panics with its output when it fails.
pub fn run_helper(args: &[&str]) {
    let out = Command::new("bash")
        .arg(helper())
        .args(args)
        .output()
        .expect("run netns.sh");
    assert!(
        out.status.success(),
        "netns.sh {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Totem timers written into the generated corosync.conf.
#[derive(Clone, Copy, Debug)]
pub struct Timers {
    /// `totem.token` in ms; `None` keeps corosync's default (3000, REFERENCE.md §2.1).
    pub token_ms: Option<u32>,
}

/// Namespaced nodes, each with at most one totemd, torn down (daemons killed, namespaces
/// deleted) on drop.
pub struct Topology {
    prefix: String,
    dir: tempfile::TempDir,
    slots: u32,
    daemons: BTreeMap<u32, Totemd>,
}

impl Topology {
    /// Builds `nodes` namespaces on two bridges and writes the same generated config (every
    /// node in the nodelist, `timers`) and authkey into each node's directory; starts nothing.
    pub fn new(nodes: u32, timers: Timers) -> Topology {
        let topo = Topology::bare(nodes);
        let config = generated_config(nodes, timers);
        for n in topo.node_ids() {
            std::fs::create_dir_all(topo.config_dir(n)).expect("node config dir");
            std::fs::write(topo.config_path(n), &config).expect("config");
            common::write_authkey(&topo.config_dir(n).join("authkey"), 13, 5);
        }
        topo
    }

    /// Builds `slots` namespaces and nothing else: the cluster is made with [`Topology::pvecm`]
    /// (`create` on one node, `add` on the others).
    pub fn bare(slots: u32) -> Topology {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, AtomicOrdering::Relaxed);
        let letter = char::from(b'a' + u8::try_from(n % 26).expect("small"));
        let prefix = format!("{PREFIX_STEM}{}{letter}", std::process::id());
        run_helper(&["clean-stale", PREFIX_STEM]);
        run_helper(&["destroy", &prefix]);
        let topo = Topology {
            prefix,
            dir: tempfile::tempdir().expect("temp dir"),
            slots,
            daemons: BTreeMap::new(),
        };
        // Tear-down is armed before the namespaces exist, so a failing create cleans up too.
        run_helper(&["create", &topo.prefix, &slots.to_string()]);
        topo
    }

    /// Node ids 1..=N of every prepared namespace.
    pub fn node_ids(&self) -> Vec<u32> {
        (1..=self.slots).collect()
    }

    /// The namespace of `node`.
    pub fn netns(&self, node: u32) -> String {
        format!("{}-n{node}", self.prefix)
    }

    /// `node`'s configuration directory (corosync.conf, authkey, join-secret).
    pub fn config_dir(&self, node: u32) -> PathBuf {
        self.dir.path().join(format!("n{node}"))
    }

    /// `node`'s corosync.conf.
    pub fn config_path(&self, node: u32) -> PathBuf {
        self.config_dir(node).join("corosync.conf")
    }

    /// `node`'s corosync.conf as it is now (empty when absent).
    pub fn config(&self, node: u32) -> String {
        std::fs::read_to_string(self.config_path(node)).unwrap_or_default()
    }

    fn state_dir(&self, node: u32) -> PathBuf {
        self.dir.path().join(format!("state{node}"))
    }

    /// The control socket of `node`.
    pub fn sock(&self, node: u32) -> PathBuf {
        self.dir.path().join(format!("n{node}.sock"))
    }

    /// Starts totemd on `node` inside its namespace, on the files in its directory.
    pub fn start(&mut self, node: u32) {
        let files = DaemonFiles {
            config: self.config_path(node),
            authkey: self.config_dir(node).join("authkey"),
            node: format!("n{node}"),
            socket: self.sock(node),
            state_dir: self.state_dir(node),
            log: self.dir.path().join(format!("n{node}.log")),
        };
        let daemon = Totemd::spawn(&files, Some(&self.netns(node)));
        self.daemons.insert(node, daemon);
    }

    /// Starts every node.
    pub fn start_all(&mut self) {
        for n in self.node_ids() {
            self.start(n);
        }
    }

    /// Sends `sig` (KILL, TERM) to `node`'s daemon and waits for it to exit.
    pub fn stop(&mut self, node: u32, sig: &str) {
        if let Some(daemon) = self.daemons.remove(&node) {
            daemon.stop(sig);
        }
    }

    /// Waits up to `within` for `node`'s daemon to exit on its own; whether it did.
    pub fn exits_within(&mut self, node: u32, within: Duration) -> bool {
        match self.daemons.get_mut(&node) {
            Some(daemon) => daemon.wait_exit(within),
            None => true,
        }
    }

    /// Runs `pvecm ARGS` inside `node`'s namespace on `node`'s files (`secret`: the join secret
    /// `pvecm add` reads from its environment instead of a prompt). A daemon it starts runs in
    /// the namespace; [`Topology::adopt`] makes it this topology's.
    pub fn pvecm(&self, node: u32, args: &[&str], secret: Option<&str>) -> Output {
        static PVECM: OnceLock<PathBuf> = OnceLock::new();
        let pvecm = PVECM.get_or_init(common::pvecm_binary);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns(node)])
            .arg(pvecm)
            .args(args)
            .env("TOTEMD_CONFIG_DIR", self.config_dir(node))
            .env("TOTEMD_STATE_DIR", self.state_dir(node))
            .env("TOTEMD_SOCKET", self.sock(node))
            .env("TOTEMD_NODE_NAME", format!("n{node}"))
            .env("TOTEMD_BIN", common::TOTEMD)
            .env("RUST_LOG", "info");
        for var in PVECM_ENV_CLEARED {
            cmd.env_remove(var);
        }
        if let Some(s) = secret {
            cmd.env("TOTEMD_JOIN_SECRET", s);
        }
        cmd.output().expect("run pvecm")
    }

    /// [`Topology::pvecm`] that must succeed; its stdout.
    pub fn pvecm_ok(&self, node: u32, args: &[&str], secret: Option<&str>) -> String {
        let out = self.pvecm(node, args, secret);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "pvecm {args:?} on n{node} failed: {stdout}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log(node)
        );
        stdout
    }

    /// Takes charge of the daemon `pvecm create|add` started on `node` (its pid file): it is
    /// stopped with [`Topology::stop`] and killed on drop.
    pub fn adopt(&mut self, node: u32) {
        let pid_file = self.state_dir(node).join("totemd.pid");
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}", pid_file.display()));
        self.daemons.insert(node, Totemd::adopt(pid));
    }

    /// A client of `node`, retrying while the daemon starts.
    pub fn client(&self, node: u32) -> Client {
        common::connect(&self.sock(node), || {
            format!("node {node}'s log:\n{}", self.log(node))
        })
    }

    /// `node`'s quorum status.
    pub fn status(&self, node: u32) -> QuorumStatus {
        self.client(node).status().expect("status")
    }

    /// Node ids in `node`'s current membership.
    pub fn members(&self, node: u32) -> BTreeSet<u32> {
        common::member_ids(&self.status(node))
    }

    /// Waits until each of `nodes` sees exactly `want`; returns the time the last one took.
    pub fn wait_members(&self, nodes: &[u32], want: &[u32], within: Duration) -> Duration {
        let want: BTreeSet<u32> = want.iter().copied().collect();
        let start = std::time::Instant::now();
        for &node in nodes {
            let what = format!("node {node} sees members {want:?}");
            let left = within.saturating_sub(start.elapsed());
            common::wait_for(&what, left, || {
                let has = self.members(node);
                if has == want {
                    Ok(())
                } else {
                    Err(format!("{has:?}\n{}", self.log(node)))
                }
            });
        }
        start.elapsed()
    }

    /// Waits until every node is in one ring of all nodes.
    pub fn wait_formed(&self, within: Duration) {
        let all = self.node_ids();
        self.wait_members(&all, &all, within);
    }

    /// The daemon log of `node` (the test's own start, then what a daemon `pvecm` started wrote).
    pub fn log(&self, node: u32) -> String {
        let own = self.dir.path().join(format!("n{node}.log"));
        let by_pvecm = self.state_dir(node).join("totemd.log");
        [own, by_pvecm]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect::<Vec<_>>()
            .join("")
    }

    /// Applies a fault with netns.sh: `fault(&["cut-link", "1", "0"])` runs
    /// `netns.sh cut-link PREFIX 1 0`.
    pub fn fault(&self, args: &[&str]) {
        let mut full = vec![args[0], self.prefix.as_str()];
        full.extend_from_slice(&args[1..]);
        run_helper(&full);
    }

    /// Removes every fault on every node.
    pub fn heal_all(&self) {
        let ids: Vec<String> = self.node_ids().iter().map(u32::to_string).collect();
        let mut args = vec!["heal"];
        args.extend(ids.iter().map(String::as_str));
        self.fault(&args);
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Daemons first (their Drop kills them), then the namespaces.
        self.daemons.clear();
        let _ = Command::new("bash")
            .arg(helper())
            .args(["destroy", &self.prefix])
            .status();
    }
}

/// corosync.conf for nodes 1..=`nodes` on both links, secauth on.
fn generated_config(nodes: u32, timers: Timers) -> String {
    let mut text = String::from(
        "totem {\n  version: 2\n  cluster_name: netns\n  config_version: 1\n  ip_version: ipv4\n  secauth: on\n  crypto_cipher: aes256\n  crypto_hash: sha256\n",
    );
    if let Some(token) = timers.token_ms {
        text.push_str(&format!("  token: {token}\n"));
    }
    for link in 0..2 {
        text.push_str(&format!(
            "  interface {{\n    linknumber: {link}\n    mcastport: {PORT}\n  }}\n"
        ));
    }
    text.push_str("}\n\nnodelist {\n");
    for n in 1..=nodes {
        text.push_str(&format!(
            "  node {{\n    name: n{n}\n    nodeid: {n}\n    quorum_votes: 1\n    ring0_addr: 10.250.0.{n}\n    ring1_addr: 10.250.1.{n}\n  }}\n"
        ));
    }
    text.push_str("}\n\nquorum {\n  provider: corosync_votequorum\n}\n");
    text
}
