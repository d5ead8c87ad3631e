//! A 2-node cluster (127.0.0.1, 127.0.0.2) with a quorum device, model net, algorithm ffsplit,
//! against a real arbiter: our `totem-qnetd`, and Debian's `corosync-qnetd -f -s off` when it is
//! installed. Both nodes up → quorate with the device's vote (expected votes 3, quorum 2, total
//! votes 3, the `Qdevice` row present); SIGKILL node 2 → node 1 alone is quorate again thanks to
//! the device vote (total votes 2). The same with node 2 frozen by SIGSTOP (a silent peer, as a
//! dead host looks), with default timeouts. The time from the failure to quorum regained is
//! printed.
//!
//! `totem-qnetd` is not a binary of this crate, so `CARGO_BIN_EXE_totem-qnetd` does not exist:
//! it is looked up next to `totemd` in the same target directory (`.ci/run` builds all binaries
//! before the tests) and the test skips with a printed reason when it is absent.

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{DaemonFiles, Totemd};
use totem_client::proto::{QuorumFlags, QuorumStatus};

/// Nodes of the cluster under test.
const NODES: u32 = 2;
/// How long the cluster may take to form and reach quorum (generous: CI machines are shared).
const FORM_DEADLINE: Duration = Duration::from_secs(60);
/// How long the survivor may take to regain quorum after its peer is killed, with default
/// timeouts: token 3 s + consensus 3.6 s, then one qnetd round trip; far above that here.
const REGAIN_DEADLINE: Duration = Duration::from_secs(90);

/// The arbiter under test.
enum Arbiter {
    Ours,
    Corosync,
}

/// How node 2 fails.
#[derive(Clone, Copy, Debug)]
enum Failure {
    /// SIGKILL: on loopback its sockets close at once, so the peer and qnetd notice at once
    /// (ICMP port unreachable, TCP reset).
    Kill,
    /// SIGSTOP: a silent node, as a dead host or a cut cable looks; Totem's token timeout and
    /// qnetd's dead-peer detection must notice.
    Freeze,
}

/// Short timers for a quick test; `None` keeps corosync's defaults (for the figure).
#[derive(Clone, Copy)]
struct Timers {
    token_ms: Option<u32>,
    device_timeout_ms: Option<u32>,
}

const SHORT: Timers = Timers {
    token_ms: Some(1000),
    device_timeout_ms: Some(2000),
};
const DEFAULT: Timers = Timers {
    token_ms: None,
    device_timeout_ms: None,
};

struct Qnetd {
    child: Child,
    log: PathBuf,
}

impl Drop for Qnetd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_listening(addr: SocketAddr, within: Duration) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// `totem-qnetd` next to `totemd`; `Err` is the skip reason.
fn our_qnetd_binary() -> Result<PathBuf, String> {
    let totemd = Path::new(env!("CARGO_BIN_EXE_totemd"));
    let path = totemd
        .parent()
        .map(|d| d.join("totem-qnetd"))
        .ok_or("no directory around totemd")?;
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is not built (build the totem-qnetd package into the same target directory)",
            path.display()
        ))
    }
}

/// Debian's corosync-qnetd, if installed; `Err` is the skip reason.
fn corosync_qnetd_binary() -> Result<PathBuf, String> {
    ["/usr/bin/corosync-qnetd", "/usr/sbin/corosync-qnetd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| "corosync-qnetd is not installed (apt-get install corosync-qnetd)".into())
}

fn start_arbiter(which: &Arbiter, dir: &Path) -> Result<(Qnetd, u16), String> {
    let port = free_port();
    let log = dir.join("qnetd.log");
    let log_file = File::create(&log).expect("qnetd log");
    let mut cmd = match which {
        Arbiter::Ours => {
            let mut c = Command::new(our_qnetd_binary()?);
            c.args([
                "-f",
                "-s",
                "off",
                "-l",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ]);
            c
        }
        Arbiter::Corosync => {
            let mut c = Command::new(corosync_qnetd_binary()?);
            let settings = format!(
                "lock_file={},local_socket_file={}",
                dir.join("qnetd.pid").display(),
                dir.join("qnetd.sock").display()
            );
            c.args([
                "-f",
                "-d",
                "-s",
                "off",
                "-l",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-S",
                &settings,
            ]);
            c
        }
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start the arbiter: {e}"))?;
    let q = Qnetd { child, log };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    assert!(
        wait_listening(addr, Duration::from_secs(10)),
        "the arbiter did not listen:\n{}",
        std::fs::read_to_string(&q.log).unwrap_or_default()
    );
    Ok((q, port))
}

struct Cluster {
    dir: tempfile::TempDir,
    procs: BTreeMap<u32, Totemd>,
}

impl Cluster {
    fn new(dir: tempfile::TempDir, ring_port: u16, qnetd_port: u16, timers: Timers) -> Cluster {
        common::write_authkey(&dir.path().join("authkey"), 13, 5);
        let mut text = format!(
            "totem {{\n  version: 2\n  cluster_name: qdtest{ring_port}\n  config_version: 1\n  ip_version: ipv4\n  secauth: on\n"
        );
        if let Some(ms) = timers.token_ms {
            text.push_str(&format!("  token: {ms}\n"));
        }
        text.push_str(&format!(
            "  interface {{\n    linknumber: 0\n    mcastport: {ring_port}\n  }}\n}}\n\nnodelist {{\n"
        ));
        for n in 1..=NODES {
            text.push_str(&format!(
                "  node {{\n    name: n{n}\n    nodeid: {n}\n    quorum_votes: 1\n    ring0_addr: 127.0.0.{n}\n  }}\n"
            ));
        }
        text.push_str("}\n\nquorum {\n  provider: corosync_votequorum\n  device {\n    model: net\n    votes: 1\n");
        if let Some(ms) = timers.device_timeout_ms {
            text.push_str(&format!("    timeout: {ms}\n"));
        }
        text.push_str(&format!(
            "    net {{\n      host: 127.0.0.1\n      port: {qnetd_port}\n      algorithm: ffsplit\n      tie_breaker: lowest\n      tls: off\n    }}\n  }}\n}}\n"
        ));
        std::fs::write(dir.path().join("corosync.conf"), text).expect("config");
        Cluster {
            dir,
            procs: BTreeMap::new(),
        }
    }

    fn sock(&self, node: u32) -> PathBuf {
        DaemonFiles::shared_dir(self.dir.path(), node).socket
    }

    fn start(&mut self, node: u32) {
        let files = DaemonFiles::shared_dir(self.dir.path(), node);
        self.procs.insert(node, Totemd::spawn(&files, None));
    }

    fn fail(&mut self, node: u32, failure: Failure) {
        match failure {
            Failure::Kill => {
                if let Some(daemon) = self.procs.remove(&node) {
                    daemon.stop("KILL");
                }
            }
            Failure::Freeze => {
                let daemon = self.procs.get(&node).expect("node runs");
                assert!(daemon.signal("STOP"), "kill -STOP failed");
            }
        }
    }

    fn log_path(&self, node: u32) -> PathBuf {
        DaemonFiles::shared_dir(self.dir.path(), node).log
    }

    fn log(&self, node: u32) -> String {
        std::fs::read_to_string(self.log_path(node)).unwrap_or_default()
    }

    /// Waits until `node`'s status satisfies `want`; returns how long it took.
    fn wait_for(
        &self,
        node: u32,
        what: &str,
        within: Duration,
        want: impl Fn(&QuorumStatus) -> bool,
    ) -> Duration {
        let what = format!("node {node}: {what}");
        let ((), took) = common::wait_for(&what, within, || {
            match common::try_status(&self.sock(node)) {
                Some(s) if want(&s) => Ok(()),
                last => Err(format!(
                    "{last:#?}\n--- node {node} log ---\n{}",
                    self.log(node)
                )),
            }
        });
        took
    }
}

fn members(s: &QuorumStatus) -> Vec<u32> {
    let mut ids: Vec<u32> = s.membership.nodes.iter().map(|n| n.id).collect();
    ids.sort_unstable();
    ids
}

/// What `pvecm status` shows for a voting device: the `Qdevice` row with 1 vote, `Qdevice` on
/// the Flags line, and the local node's Qdevice column `A,V` (alive, casting its vote).
fn device_registered(s: &QuorumStatus) -> bool {
    let local_alive_and_voting = s.membership.nodes.iter().any(|n| {
        n.local
            && n.qdevice_flags.contains(QuorumFlags::QDEVICE_ALIVE)
            && n.qdevice_flags.contains(QuorumFlags::QDEVICE_CAST_VOTE)
    });
    s.membership
        .qdevice
        .as_ref()
        .is_some_and(|d| d.name == "Qdevice" && d.votes == 1)
        && s.flags.contains(QuorumFlags::QDEVICE_REGISTERED)
        && local_alive_and_voting
}

/// Both up → quorate with the device's vote; SIGKILL node 2 → node 1 quorate with it. Returns
/// the time from the kill to node 1 quorate again, or `None` when skipped.
fn two_nodes_survive_a_failure(
    arbiter: Arbiter,
    timers: Timers,
    failure: Failure,
    ring_port: u16,
) -> Option<Duration> {
    let dir = tempfile::tempdir().expect("temp dir");
    let (qnetd, qnetd_port) = match start_arbiter(&arbiter, dir.path()) {
        Ok(started) => started,
        Err(reason) => {
            println!("SKIP: {reason}");
            return None;
        }
    };
    let mut cluster = Cluster::new(dir, ring_port, qnetd_port, timers);
    for n in 1..=NODES {
        cluster.start(n);
    }
    for n in 1..=NODES {
        cluster.wait_for(
            n,
            "both members, quorate with the device vote",
            FORM_DEADLINE,
            |s| {
                members(s) == [1, 2]
                    && s.quorate
                    && s.expected_votes == 3
                    && s.quorum == 2
                    && s.total_votes == 3
                    && device_registered(s)
            },
        );
    }

    let killed_at = Instant::now();
    cluster.fail(2, failure);
    cluster.wait_for(
        1,
        "node 1 alone, quorate with the device vote",
        REGAIN_DEADLINE,
        |s| {
            members(s) == [1]
                && s.quorate
                && s.quorum == 2
                && s.total_votes == 2
                && device_registered(s)
        },
    );
    let regained = killed_at.elapsed();
    let log = cluster.log(1);
    assert!(
        log.contains("connected to qnetd"),
        "node 1 never logged its qnetd connection:\n{log}"
    );
    drop(cluster);
    drop(qnetd);
    Some(regained)
}

fn ring_port(offset: u16) -> u16 {
    // Unique to this run and test so parallel tests and other test binaries do not collide.
    31_000 + u16::try_from(std::process::id() % 1000).unwrap_or(0) * 16 + offset * 2
}

#[test]
fn totem_qnetd_short_timeouts() {
    if let Some(t) = two_nodes_survive_a_failure(Arbiter::Ours, SHORT, Failure::Kill, ring_port(0))
    {
        println!("totem-qnetd, token 1 s, device timeout 2 s: node 1 quorate again {t:?} after SIGKILL of node 2");
    }
}

#[test]
fn totem_qnetd_default_timeouts() {
    if let Some(t) =
        two_nodes_survive_a_failure(Arbiter::Ours, DEFAULT, Failure::Kill, ring_port(1))
    {
        println!("totem-qnetd, default timeouts (token 3 s, device 10 s): node 1 quorate again {t:?} after SIGKILL of node 2");
    }
}

#[test]
fn corosync_qnetd_short_timeouts() {
    if let Some(t) =
        two_nodes_survive_a_failure(Arbiter::Corosync, SHORT, Failure::Kill, ring_port(2))
    {
        println!("corosync-qnetd, token 1 s, device timeout 2 s: node 1 quorate again {t:?} after SIGKILL of node 2");
    }
}

#[test]
fn totem_qnetd_default_timeouts_frozen_peer() {
    let found = two_nodes_survive_a_failure(Arbiter::Ours, DEFAULT, Failure::Freeze, ring_port(3));
    if let Some(t) = found {
        println!("totem-qnetd, default timeouts (token 3 s, device 10 s): node 1 quorate again {t:?} after SIGSTOP of node 2");
    }
}

#[test]
fn corosync_qnetd_default_timeouts_frozen_peer() {
    let found =
        two_nodes_survive_a_failure(Arbiter::Corosync, DEFAULT, Failure::Freeze, ring_port(4));
    if let Some(t) = found {
        println!("corosync-qnetd, default timeouts (token 3 s, device 10 s): node 1 quorate again {t:?} after SIGSTOP of node 2");
    }
}
