//! Helpers the daemon's integration tests share: a deterministic authkey, starting totemd (also
//! inside a network namespace), stopping it (also one that `pvecm` started, by its pid), reaching
//! its control socket while it starts, waiting for a state with a deadline, and the `pvecm`
//! binary.
// Each test crate includes this module with `mod common;` and uses a part of it; a test crate
// exports nothing, so `unreachable_pub` does not apply.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use totem_client::proto::QuorumStatus;
use totem_client::Client;

/// The totemd binary under test.
pub const TOTEMD: &str = env!("CARGO_BIN_EXE_totemd");

/// How long a started daemon may take to answer on its control socket.
pub const CONNECT_WITHIN: Duration = Duration::from_secs(15);

/// How long a signalled daemon may take to exit (a clean leave takes milliseconds; this is only
/// a bound against a hang).
pub const EXIT_WITHIN: Duration = Duration::from_secs(40);

/// Interval between two probes of a wait.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Size of the test authkeys: corosync-keygen's default (REFERENCE.md: 256 bytes).
const AUTHKEY_BYTES: u32 = 256;

/// Writes an authkey of bytes `i * mul + add` with mode 0400; tests pick different `mul`/`add`
/// so their clusters never share a key.
pub fn write_authkey(path: &Path, mul: u32, add: u32) {
    let key: Vec<u8> = (0..AUTHKEY_BYTES)
        .map(|i| (i.wrapping_mul(mul).wrapping_add(add) & 0xff) as u8)
        .collect();
    std::fs::write(path, key).expect("write authkey");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o400))
        .expect("chmod authkey");
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

/// Where one totemd finds its files.
#[derive(Clone, Debug)]
pub struct DaemonFiles {
    /// corosync.conf.
    pub config: PathBuf,
    /// The authkey.
    pub authkey: PathBuf,
    /// The nodelist entry (`--node`).
    pub node: String,
    /// The control socket.
    pub socket: PathBuf,
    /// The state directory.
    pub state_dir: PathBuf,
    /// Where stderr goes (appended, so a restarted daemon keeps the earlier log).
    pub log: PathBuf,
}

impl DaemonFiles {
    /// Node `nN` of a cluster whose nodes share `dir`: `corosync.conf` and `authkey` there, and
    /// per node `nN.sock`, `stateN/` and `nN.log`.
    pub fn shared_dir(dir: &Path, node: u32) -> DaemonFiles {
        DaemonFiles {
            config: dir.join("corosync.conf"),
            authkey: dir.join("authkey"),
            node: format!("n{node}"),
            socket: dir.join(format!("n{node}.sock")),
            state_dir: dir.join(format!("state{node}")),
            log: dir.join(format!("n{node}.log")),
        }
    }
}

/// A running totemd, killed (SIGKILL) on drop if it still runs.
#[derive(Debug)]
pub struct Totemd {
    pid: u32,
    /// `None` for a daemon another program started ([`Totemd::adopt`]).
    child: Option<Child>,
}

impl Totemd {
    /// Starts totemd on `files`, inside network namespace `netns` when given (`ip netns exec`
    /// execs the daemon in place, so the child's pid is totemd's).
    pub fn spawn(files: &DaemonFiles, netns: Option<&str>) -> Totemd {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&files.log)
            .expect("daemon log");
        let _ = std::fs::remove_file(&files.socket);
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, TOTEMD]);
                c
            }
            None => Command::new(TOTEMD),
        };
        let child = cmd
            .arg("-f")
            .arg("-c")
            .arg(&files.config)
            .arg("--authkey")
            .arg(&files.authkey)
            .arg("--node")
            .arg(&files.node)
            .arg("--socket")
            .arg(&files.socket)
            .arg("--state-dir")
            .arg(&files.state_dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn totemd");
        Totemd {
            pid: child.id(),
            child: Some(child),
        }
    }

    /// A daemon another program started (`pvecm create|add`), by its pid.
    pub fn adopt(pid: u32) -> Totemd {
        Totemd { pid, child: None }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `sig` (KILL, TERM, STOP, ...); whether `kill` succeeded (it fails when the process
    /// is gone).
    pub fn signal(&self, sig: &str) -> bool {
        Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Whether the process still runs (a zombie of an adopted daemon counts as gone: its parent,
    /// not this test, reaps it).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
                .is_ok_and(|stat| !stat.contains(") Z ")),
        }
    }

    /// Waits up to `within` for the process to exit; whether it did.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.is_running() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        true
    }

    /// Sends `sig` and waits for the exit ([`EXIT_WITHIN`]; SIGKILL after that).
    pub fn stop(mut self, sig: &str) {
        if self.signal(sig) {
            self.wait_exit(EXIT_WITHIN);
        }
    }
}

impl Drop for Totemd {
    fn drop(&mut self) {
        if self.is_running() && self.signal("KILL") {
            self.wait_exit(EXIT_WITHIN);
        }
    }
}

/// A client of the daemon at `socket`, retrying while it starts; after [`CONNECT_WITHIN`] the
/// test fails with the error and `context()` (the daemon's log, say).
pub fn connect(socket: &Path, context: impl Fn() -> String) -> Client {
    let deadline = Instant::now() + CONNECT_WITHIN;
    loop {
        match Client::connect(socket) {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => {
                panic!("cannot connect to {}: {e}\n{}", socket.display(), context())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The status of the daemon at `socket`, or `None` when it does not answer.
pub fn try_status(socket: &Path) -> Option<QuorumStatus> {
    Client::connect(socket).and_then(|mut c| c.status()).ok()
}

/// Node ids of a status's membership.
pub fn member_ids(status: &QuorumStatus) -> BTreeSet<u32> {
    status.membership.nodes.iter().map(|n| n.id).collect()
}

/// Probes until `probe` returns `Ok`, every 20 ms; after `within` the test fails with `what`
/// and the last `Err` (the state seen). Returns the value and how long it took.
pub fn wait_for<T>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(value) => return (value, start.elapsed()),
            Err(last) => assert!(
                start.elapsed() < within,
                "{what}: not reached within {within:?}; last seen: {last}"
            ),
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// `pvecm`, built next to `totemd` when the workspace did not build it yet (it belongs to the
/// totem-client package, so cargo does not build it for this crate's tests).
pub fn pvecm_binary() -> PathBuf {
    let totemd = PathBuf::from(TOTEMD);
    let dir = totemd.parent().expect("target dir").to_owned();
    let pvecm = dir.join("pvecm");
    let target_dir = dir.parent().expect("target root");
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", "totem-client", "--bin", "pvecm"])
        .env("CARGO_TARGET_DIR", target_dir)
        .status()
        .expect("cargo build pvecm");
    assert!(status.success(), "building pvecm failed");
    assert!(pvecm.exists(), "{} missing", pvecm.display());
    pvecm
}

/// The value after `label` on the first line of `text` that starts with it (after spaces), as
/// `pvecm create` prints `Join secret:` and `Fingerprint:`.
pub fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} in {text}"))
}
