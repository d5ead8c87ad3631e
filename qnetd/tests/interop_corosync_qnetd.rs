//! Interoperability with Debian's corosync-qnetd: the same totem-core qdevice client, driven over
//! TCP on loopback, must get the same votes from `corosync-qnetd -f -s off` as from totem-qnetd
//! for ffsplit (2 nodes both connected, then split; one node alone) and lms (3 nodes, then split).
//!
//! Setup: if corosync-qnetd is missing and we are root, `apt-get install -y corosync-qnetd`; if it
//! is missing otherwise, the test prints why and skips. corosync-qnetd runs as a child with its
//! lock file and local socket in a temporary directory, on a free port of 127.0.0.1.

mod common;

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use totem_core::qdevice::wire::{TieBreaker, Vote};
use totem_core::qdevice::ServerConfig;
use totem_qnetd::runtime::{self, Options};

struct CorosyncQnetd {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for CorosyncQnetd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl CorosyncQnetd {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn which(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Find corosync-qnetd, installing it with apt-get when we are root; `Err` is the skip reason.
fn corosync_qnetd_binary() -> Result<PathBuf, String> {
    if let Some(path) = which("corosync-qnetd") {
        return Ok(path);
    }
    if !is_root() {
        return Err(
            "corosync-qnetd is not installed and we are not root to apt-get install it".into(),
        );
    }
    let install = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install(&["install", "-y", "-qq", "corosync-qnetd"]) {
        let _ = install(&["update", "-qq"]);
        if !install(&["install", "-y", "-qq", "corosync-qnetd"]) {
            return Err("apt-get install corosync-qnetd failed".into());
        }
    }
    which("corosync-qnetd").ok_or_else(|| "corosync-qnetd still not found after install".into())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
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

fn start_corosync_qnetd(binary: &Path) -> CorosyncQnetd {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let log = dir.path().join("corosync-qnetd.log");
    let settings = format!(
        "lock_file={},local_socket_file={}",
        dir.path().join("qnetd.pid").display(),
        dir.path().join("qnetd.sock").display()
    );
    let log_file = File::create(&log).expect("log file");
    let child = Command::new(binary)
        .args([
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
        ])
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .stdin(Stdio::null())
        .spawn()
        .expect("start corosync-qnetd");
    let q = CorosyncQnetd {
        child,
        addr,
        log,
        _dir: dir,
    };
    assert!(
        wait_listening(addr, Duration::from_secs(10)),
        "corosync-qnetd did not listen:\n{}",
        q.log_text()
    );
    q
}

#[test]
fn same_votes_from_corosync_qnetd_and_totem_qnetd() {
    let binary = match corosync_qnetd_binary() {
        Ok(path) => path,
        Err(reason) => {
            println!("SKIPPED interop with corosync-qnetd: {reason}");
            return;
        }
    };
    let theirs = start_corosync_qnetd(&binary);
    let ours = runtime::spawn(Options {
        listen: "127.0.0.1:0".parse().expect("addr"),
        authkey: None,
        server: ServerConfig::default(),
    })
    .expect("totem-qnetd");

    type Scenario = (&'static str, fn(SocketAddr) -> Observed, Observed);
    let scenarios: [Scenario; 4] = [
        (
            "ffsplit 2 nodes, tie breaker lowest",
            |a| ffsplit_two_nodes(a, "ff-low", TieBreaker::LOWEST, None),
            vec![vec![Vote::Ack, Vote::Ack], vec![Vote::Ack, Vote::Nack]],
        ),
        (
            "ffsplit 2 nodes, tie breaker highest",
            |a| ffsplit_two_nodes(a, "ff-high", TieBreaker::HIGHEST, None),
            vec![vec![Vote::Ack, Vote::Ack], vec![Vote::Nack, Vote::Ack]],
        ),
        (
            "ffsplit one node alone",
            |a| ffsplit_lone_node(a, "ff-lone", None),
            vec![vec![Vote::Ack]],
        ),
        (
            "lms 3 nodes, then {1,2}|{3}",
            |a| lms_three_nodes(a, "lms3", None),
            vec![vec![Vote::Ack; 3], vec![Vote::Ack, Vote::Ack, Vote::Nack]],
        ),
    ];
    for (name, run, expected) in scenarios {
        let from_corosync = run(theirs.addr);
        let from_ours = run(ours.local_addr());
        println!("{name}: corosync-qnetd {from_corosync:?}, totem-qnetd {from_ours:?}");
        assert_eq!(
            from_corosync,
            expected,
            "{name} with corosync-qnetd; its log:\n{}",
            theirs.log_text()
        );
        assert_eq!(
            from_ours, from_corosync,
            "{name}: totem-qnetd differs from corosync-qnetd"
        );
    }
    // The 2+1 failover with short timeouts (device timeout 2 s -> heartbeat 1.6 s, DPD 2.4 s):
    // both arbiters hand the survivor the vote once the peer is gone.
    let timing = totem_core::qdevice::Timing::from_timeout_ms(2_000);
    for (death, label) in [(Death::Killed, "killed"), (Death::Silent, "silent")] {
        let detection = Duration::from_millis(300);
        let t_theirs =
            regain_after_peer_death(theirs.addr, &format!("f-{label}"), timing, detection, death);
        let t_ours = regain_after_peer_death(
            ours.local_addr(),
            &format!("f-{label}"),
            timing,
            detection,
            death,
        );
        println!(
            "FIGURE short timeouts, {label} peer: quorum regained after {} ms with corosync-qnetd, {} ms with totem-qnetd",
            t_theirs.as_millis(),
            t_ours.as_millis()
        );
        for t in [t_theirs, t_ours] {
            assert!(
                t >= detection && t < Duration::from_secs(6),
                "{label}: {t:?}"
            );
        }
    }
    ours.shutdown();
}
