//! pvecm against real daemons on 127.0.0.1/2/3: `create` + `add` + `add` builds a three-node
//! cluster through the secret-authenticated join endpoint (every member ends with the same file,
//! committed through the ring); the join refusals (wrong secret, duplicate name, address and node
//! id, link set mismatch, existing cluster state); `expected` with corosync's validation;
//! `qdevice setup|remove`; `addnode`; `delnode` (not myself; the deleted node stays out when it
//! comes back with its old config); writing the configuration without quorum after
//! `pvecm expected 1`. Each phase waits for a state with a generous deadline.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use common::{field, DaemonFiles, Totemd};
use totem_client::proto::QuorumStatus;

/// Deadline for a membership or quorum state (the protocol's timers are seconds).
const STATE_DEADLINE: Duration = Duration::from_secs(40);

struct Node {
    name: String,
    root: PathBuf,
}

impl Node {
    fn config_dir(&self) -> PathBuf {
        self.root.join("etc")
    }
    fn config(&self) -> String {
        std::fs::read_to_string(self.config_dir().join("corosync.conf")).unwrap_or_default()
    }
    fn socket(&self) -> PathBuf {
        self.root.join("totemd.sock")
    }
    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.root.join("state/totemd.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
    fn status(&self) -> Option<QuorumStatus> {
        common::try_status(&self.socket())
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    pvecm: PathBuf,
    join_port: u16,
    link_port: u16,
    nodes: Vec<Node>,
}

impl Harness {
    /// `slot` keeps the ports of the tests in this file apart (they run in parallel).
    fn new(slot: u16) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        // Ports unique to this run (cluster.rs uses 21000.., these tests 29000..41000).
        let base = 29_000 + u16::try_from(std::process::id() % 3000).unwrap_or(0) * 4 + slot * 2;
        let nodes = (1..=3)
            .map(|i| {
                let root = dir.path().join(format!("n{i}"));
                std::fs::create_dir_all(&root).expect("node dir");
                Node {
                    name: format!("n{i}"),
                    root,
                }
            })
            .collect();
        Harness {
            _dir: dir,
            pvecm: common::pvecm_binary(),
            join_port: base + 1,
            link_port: base,
            nodes,
        }
    }

    fn pvecm(&self, node: usize, args: &[&str], secret: Option<&str>) -> Output {
        let n = &self.nodes[node];
        let mut cmd = Command::new(&self.pvecm);
        cmd.args(args)
            .env("TOTEMD_CONFIG_DIR", n.config_dir())
            .env("TOTEMD_STATE_DIR", n.root.join("state"))
            .env("TOTEMD_SOCKET", n.socket())
            .env("TOTEMD_NODE_NAME", &n.name)
            .env("TOTEMD_BIN", env!("CARGO_BIN_EXE_totemd"))
            .env("TOTEMD_JOIN_PORT", self.join_port.to_string())
            .env("TOTEMD_LINK_PORT_BASE", self.link_port.to_string())
            .env("RUST_LOG", "info");
        match secret {
            Some(s) => cmd.env("TOTEMD_JOIN_SECRET", s),
            None => cmd.env_remove("TOTEMD_JOIN_SECRET"),
        };
        cmd.output().expect("run pvecm")
    }

    fn ok(&self, node: usize, args: &[&str], secret: Option<&str>) -> String {
        let out = self.pvecm(node, args, secret);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "pvecm {args:?} on n{} failed: {}{}",
            node + 1,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    fn refused(&self, node: usize, args: &[&str], secret: Option<&str>, why: &str) {
        let out = self.pvecm(node, args, secret);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "pvecm {args:?} should fail");
        assert!(
            err.contains(why),
            "pvecm {args:?}: expected {why:?} in {err:?}"
        );
    }

    /// Stops the daemon `pvecm` started on `node` (SIGTERM, as systemd would).
    fn stop(&self, node: usize) {
        if let Some(pid) = self.nodes[node].pid() {
            Totemd::adopt(pid).stop("TERM");
        }
    }

    /// Waits until `node`'s corosync.conf passes `check`: a committed change reaches the
    /// proposer's client when the proposer delivers it; the other nodes write their files when
    /// they deliver it, a moment apart.
    fn wait_config(&self, node: usize, what: &str, check: impl Fn(&str) -> bool) {
        let what = format!("n{}'s corosync.conf: {what}", node + 1);
        common::wait_for(&what, STATE_DEADLINE, || {
            let text = self.nodes[node].config();
            if check(&text) {
                Ok(())
            } else {
                Err(text)
            }
        });
    }

    fn wait_for(&self, node: usize, what: &str, check: impl Fn(&QuorumStatus) -> bool) {
        let what = format!("n{}: {what}", node + 1);
        common::wait_for(&what, STATE_DEADLINE, || match self.nodes[node].status() {
            Some(s) if check(&s) => Ok(()),
            last => Err(format!("{last:?}")),
        });
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i);
        }
    }
}

#[test]
fn pvecm_create_add_delnode_expected_qdevice() {
    let h = Harness::new(0);

    // create: files, a daemon, a join secret and the fingerprint.
    let created = h.ok(0, &["create", "demo", "--link0", "127.0.0.1"], None);
    let secret = field(&created, "Join secret:").to_owned();
    let fingerprint = field(&created, "Fingerprint:").to_owned();
    let conf1 = h.nodes[0].config();
    assert!(conf1.contains("config_version: 1\n") && conf1.contains("token_coefficient: 125"));
    h.wait_for(0, "quorate alone", |s| s.quorate);
    h.refused(0, &["create", "demo"], None, "already exists");

    // Refusals before anyone joined.
    h.refused(
        1,
        &["add", "127.0.0.1", "--link0", "127.0.0.2"],
        Some("0000-0000-0000-0000-0000-0000-0000-0000"),
        "wrong join secret",
    );
    h.refused(
        1,
        &[
            "add",
            "127.0.0.1",
            "--link0",
            "127.0.0.2",
            "--link1",
            "127.0.1.2",
        ],
        Some(&secret),
        "do not match the cluster's links (link0)",
    );
    h.refused(
        1,
        &["add", "127.0.0.1", "--link0", "127.0.0.1"],
        Some(&secret),
        "already used by node 'n1'",
    );
    h.refused(
        1,
        &["add", "127.0.0.1", "--link0", "127.0.0.2", "--nodeid", "1"],
        Some(&secret),
        "Node ID 1 already used by node 'n1'",
    );

    // add n2 (fingerprint checked), add n3.
    let added = h.ok(
        1,
        &[
            "add",
            "127.0.0.1",
            "--link0",
            "127.0.0.2",
            "--fingerprint",
            &fingerprint,
        ],
        Some(&secret),
    );
    assert!(
        added.contains("successfully added node 'n2' to cluster."),
        "{added}"
    );
    h.refused(
        1,
        &["add", "127.0.0.1", "--link0", "127.0.0.2"],
        Some(&secret),
        "already holds cluster state",
    );
    let out = h.pvecm(
        2,
        &["add", "127.0.0.1", "--link0", "127.0.0.3"],
        Some(&secret),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..3 {
        h.wait_for(i, "3 nodes quorate", |s| {
            s.quorate && s.membership.nodes.len() == 3
        });
    }
    let conf = h.nodes[0].config();
    assert!(conf.contains("config_version: 3\n"), "{conf}");
    h.wait_config(1, "as n1's", |c| c == conf);
    h.wait_config(2, "as n1's", |c| c == conf);
    // A name already in the cluster is refused.
    h.refused(
        0,
        &["addnode", "n2", "--link0", "127.0.0.9"],
        None,
        "already exists",
    );

    let status = h.ok(0, &["status"], None);
    println!("pvecm status on n1 of the create + add + add cluster:\n{status}");
    assert!(status.contains("Name:             demo"));
    assert!(status.contains("Config Version:   3"));
    assert!(status.contains("Nodes:            3"));
    println!("{}", h.ok(0, &["nodes"], None));

    // expected: corosync's validation.
    h.refused(0, &["expected", "2"], None, "CS_ERR_INVALID_PARAM");
    h.ok(0, &["expected", "3"], None);

    // qdevice: odd node count needs --force and gets lms.
    h.refused(
        0,
        &["qdevice", "setup", "127.0.0.9"],
        None,
        "odd node count",
    );
    h.ok(1, &["qdevice", "setup", "127.0.0.9", "--force"], None);
    for i in 0..h.nodes.len() {
        h.wait_config(i, "lms device", |c| c.contains("algorithm: lms"));
    }
    h.ok(2, &["qdevice", "remove"], None);
    h.wait_config(0, "no device", |c| !c.contains("device"));

    // delnode: not myself; n3 removed while down stays out when it comes back.
    h.refused(
        0,
        &["delnode", "n1"],
        None,
        "Cannot delete myself from cluster!",
    );
    h.refused(0, &["delnode", "n9"], None, "is not a known host");
    h.stop(2);
    h.wait_for(0, "2 nodes", |s| s.membership.nodes.len() == 2);
    h.ok(0, &["delnode", "n3"], None);
    h.wait_config(1, "n3 removed", |c| !c.contains("127.0.0.3"));
    let old = h.nodes[2].config();
    assert!(old.contains("127.0.0.3"), "n3 keeps its old file");
    let restart = Totemd::spawn(
        &DaemonFiles {
            config: h.nodes[2].config_dir().join("corosync.conf"),
            authkey: h.nodes[2].config_dir().join("authkey"),
            node: "n3".into(),
            socket: h.nodes[2].socket(),
            state_dir: h.nodes[2].root.join("state"),
            log: h.nodes[2].root.join("restart.log"),
        },
        None,
    );
    std::thread::sleep(Duration::from_secs(5));
    let s1 = h.nodes[0].status().expect("n1 status");
    assert_eq!(
        s1.membership.nodes.len(),
        2,
        "the deleted node got back in: {s1:?}"
    );
    restart.stop("TERM");

    // Without quorum the configuration cannot be written until `pvecm expected 1`.
    h.stop(1);
    h.wait_for(0, "not quorate", |s| !s.quorate);
    h.refused(0, &["delnode", "n2"], None, "no quorum");
    h.ok(0, &["expected", "1"], None);
    h.wait_for(0, "quorate again", |s| s.quorate);
    h.ok(0, &["delnode", "n2"], None);
    assert!(!h.nodes[0].config().contains("127.0.0.2"));
}

/// The documented procedure "create a cluster with redundant links and priorities": a separate
/// cluster network on link0, a second link with a higher priority, and a joiner that gives both.
#[test]
fn pvecm_redundant_links_with_priorities() {
    let h = Harness::new(1);
    let created = h.ok(
        0,
        &[
            "create",
            "redundant",
            "--link0",
            "127.0.0.1",
            "--link1",
            "address=127.0.1.1,priority=20",
        ],
        None,
    );
    let secret = field(&created, "Join secret:").to_owned();
    let conf = h.nodes[0].config();
    assert!(conf.contains("knet_link_priority: 20"), "{conf}");
    assert!(conf.contains("ring1_addr: 127.0.1.1"), "{conf}");
    h.ok(
        1,
        &[
            "add",
            "127.0.0.1",
            "--link0",
            "127.0.0.2",
            "--link1",
            "127.0.1.2",
        ],
        Some(&secret),
    );
    h.wait_for(0, "2 nodes quorate", |s| {
        s.quorate && s.membership.nodes.len() == 2
    });
    let joined = h.nodes[1].config();
    h.wait_config(0, "as n2's", |c| c == joined);
    let links = h.ok(0, &["--output-format", "json", "links"], None);
    assert!(
        links.contains("127.0.1.2") || links.contains("\"link\":1"),
        "{links}"
    );
}
