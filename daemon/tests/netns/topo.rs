//! A namespace topology (tests/netns/netns.sh) with one totemd per node, torn down on drop.
//!
//! Node K lives in namespace `PREFIX-nK` with 10.250.0.K on link 0 and 10.250.1.K on link 1; the
//! daemons' control sockets are plain files in a temp dir, so the test process (in the root
//! namespace) reaches them directly.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use totem_client::proto::QuorumStatus;
use totem_client::Client;

/// Namespace prefix stem; each topology is `tnt<pid><letter>` so runs never collide and the
/// leftovers of a dead run are recognised by their dead pid.
const PREFIX_STEM: &str = "tnt";

/// corosync's default knet/totem port (REFERENCE.md §2: mcastport 5405); every node has its own
/// namespace, so one port for all is fine.
const PORT: u16 = 5405;

/// Path of the shell helper that builds the namespaces and installs faults.
pub fn helper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/netns/netns.sh")
}

/// Why the namespace tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !root {
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

/// N namespaced nodes, each with a totemd, torn down (daemons killed, namespaces deleted) on drop.
pub struct Topology {
    prefix: String,
    dir: tempfile::TempDir,
    nodes: u32,
    timers: Timers,
    procs: Vec<Option<Child>>,
}

impl Topology {
    /// Builds `nodes` namespaces on two bridges and writes the config and authkey; starts nothing.
    pub fn new(nodes: u32, timers: Timers) -> Topology {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, AtomicOrdering::Relaxed);
        let letter = char::from(b'a' + u8::try_from(n % 26).expect("small"));
        let prefix = format!("{PREFIX_STEM}{}{letter}", std::process::id());
        run_helper(&["clean-stale", PREFIX_STEM]);
        run_helper(&["destroy", &prefix]);
        let dir = tempfile::tempdir().expect("temp dir");
        let key: Vec<u8> = (0..256u32).map(|i| (i * 13 + 5) as u8).collect();
        let key_path = dir.path().join("authkey");
        std::fs::write(&key_path, key).expect("authkey");
        std::fs::set_permissions(
            &key_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o400),
        )
        .expect("chmod authkey");
        let topo = Topology {
            prefix,
            dir,
            nodes,
            timers,
            procs: (0..nodes).map(|_| None).collect(),
        };
        // Tear-down is armed before the namespaces exist, so a failing create cleans up too.
        run_helper(&["create", &topo.prefix, &nodes.to_string()]);
        topo.write_config();
        topo
    }

    /// Node ids 1..=N.
    pub fn node_ids(&self) -> Vec<u32> {
        (1..=self.nodes).collect()
    }

    fn write_config(&self) {
        let mut text = String::from(
            "totem {\n  version: 2\n  cluster_name: netns\n  config_version: 1\n  ip_version: ipv4\n  secauth: on\n  crypto_cipher: aes256\n  crypto_hash: sha256\n",
        );
        if let Some(token) = self.timers.token_ms {
            text.push_str(&format!("  token: {token}\n"));
        }
        for link in 0..2 {
            text.push_str(&format!(
                "  interface {{\n    linknumber: {link}\n    mcastport: {PORT}\n  }}\n"
            ));
        }
        text.push_str("}\n\nnodelist {\n");
        for n in 1..=self.nodes {
            text.push_str(&format!(
                "  node {{\n    name: n{n}\n    nodeid: {n}\n    quorum_votes: 1\n    ring0_addr: 10.250.0.{n}\n    ring1_addr: 10.250.1.{n}\n  }}\n"
            ));
        }
        text.push_str("}\n\nquorum {\n  provider: corosync_votequorum\n}\n");
        std::fs::write(self.dir.path().join("corosync.conf"), text).expect("config");
    }

    /// The control socket of `node`.
    pub fn sock(&self, node: u32) -> PathBuf {
        self.dir.path().join(format!("n{node}.sock"))
    }

    /// Starts totemd on `node` inside its namespace.
    pub fn start(&mut self, node: u32) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("n{node}.log")))
            .expect("log");
        let _ = std::fs::remove_file(self.sock(node));
        // `ip netns exec` execs the daemon in place, so the child's pid is totemd's.
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("{}-n{node}", self.prefix)])
            .arg(env!("CARGO_BIN_EXE_totemd"))
            .arg("-f")
            .arg("-c")
            .arg(self.dir.path().join("corosync.conf"))
            .arg("--authkey")
            .arg(self.dir.path().join("authkey"))
            .arg("--node")
            .arg(format!("n{node}"))
            .arg("--socket")
            .arg(self.sock(node))
            .arg("--state-dir")
            .arg(self.dir.path().join(format!("state{node}")))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn totemd");
        self.procs[idx(node)] = Some(child);
    }

    /// Starts every node.
    pub fn start_all(&mut self) {
        for n in self.node_ids() {
            self.start(n);
        }
    }

    /// Sends `sig` (KILL, TERM) to `node`'s daemon and reaps it.
    pub fn stop(&mut self, node: u32, sig: &str) {
        if let Some(mut child) = self.procs[idx(node)].take() {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// A client of `node`, retrying while the daemon starts.
    pub fn client(&self, node: u32) -> Client {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match Client::connect(self.sock(node)) {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => {
                    panic!("node {node}: cannot connect: {e}\n{}", self.log(node))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// `node`'s quorum status.
    pub fn status(&self, node: u32) -> QuorumStatus {
        self.client(node).status().expect("status")
    }

    /// Node ids in `node`'s current membership.
    pub fn members(&self, node: u32) -> BTreeSet<u32> {
        self.status(node)
            .membership
            .nodes
            .iter()
            .map(|n| n.id)
            .collect()
    }

    /// Waits until each of `nodes` sees exactly `want`; returns the time the last one took.
    pub fn wait_members(&self, nodes: &[u32], want: &[u32], within: Duration) -> Duration {
        let want: BTreeSet<u32> = want.iter().copied().collect();
        let start = Instant::now();
        for &node in nodes {
            loop {
                let has = self.members(node);
                if has == want {
                    break;
                }
                assert!(
                    start.elapsed() < within,
                    "node {node} did not reach members {want:?} within {within:?} (has {has:?})\n{}",
                    self.log(node)
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        start.elapsed()
    }

    /// Waits until every node is in one ring of all nodes.
    pub fn wait_formed(&self, within: Duration) {
        let all = self.node_ids();
        self.wait_members(&all, &all, within);
    }

    /// The daemon log of `node`.
    pub fn log(&self, node: u32) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("n{node}.log"))).unwrap_or_default()
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
        for child in self.procs.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("bash")
            .arg(helper())
            .args(["destroy", &self.prefix])
            .status();
    }
}

fn idx(node: u32) -> usize {
    usize::try_from(node - 1).expect("small node id")
}
