//! The file and process side of `pvecm create` and `pvecm add`: where the cluster files live,
//! the first corosync.conf in pvecm's layout (REFERENCE.md §4.3 `create_conf`), writing what a
//! join received, and starting the local totemd.

use std::io::{self, Write as _};
use std::net::{IpAddr, ToSocketAddrs};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::link_spec::LinkSpec;
use crate::{Client, ClientError};

/// Directory of corosync.conf, authkey and the join secret (also `TOTEMD_CONFIG_DIR`).
pub const CONFIG_DIR_DEFAULT: &str = "/etc/totemd";
/// Environment variable naming the configuration directory.
pub const CONFIG_DIR_ENV: &str = "TOTEMD_CONFIG_DIR";
/// State directory of the daemon (ring sequence, pvecm's log and pid files).
pub const STATE_DIR_DEFAULT: &str = "/var/lib/totemd";
/// Environment variable naming the state directory.
pub const STATE_DIR_ENV: &str = "TOTEMD_STATE_DIR";
/// The totemd binary to start (else the one beside `pvecm`, else `totemd` on `PATH`).
pub const DAEMON_BIN_ENV: &str = "TOTEMD_BIN";
/// When set, `pvecm create` writes `mcastport: BASE + linknumber` in each interface so several
/// clusters can share one host (demos, tests); pvecm itself never writes a port.
pub const LINK_PORT_BASE_ENV: &str = "TOTEMD_LINK_PORT_BASE";
/// pvecm's default token coefficient in ms (current pve-cluster `create_conf`, REFERENCE.md §4.3).
pub const TOKEN_COEFFICIENT_MS_DEFAULT: u32 = 125;
/// How long `pvecm` waits for a started daemon to answer on its socket.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(15);
/// Poll interval while waiting for the daemon.
const DAEMON_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The files of one node's cluster membership.
#[derive(Clone, Debug)]
pub struct ClusterPaths {
    /// corosync.conf.
    pub config: PathBuf,
    /// authkey.
    pub authkey: PathBuf,
    /// join-secret.
    pub secret: PathBuf,
    /// State directory.
    pub state_dir: PathBuf,
    /// Control socket.
    pub socket: PathBuf,
}

impl ClusterPaths {
    /// Paths under `config_dir` and `state_dir`.
    pub fn new(config_dir: &Path, state_dir: &Path, socket: PathBuf) -> ClusterPaths {
        ClusterPaths {
            config: config_dir.join("corosync.conf"),
            authkey: config_dir.join("authkey"),
            secret: config_dir.join(crate::join::SECRET_FILE_NAME),
            state_dir: state_dir.to_owned(),
            socket,
        }
    }

    /// The pid file `pvecm` writes for a daemon it started.
    pub fn pid_file(&self) -> PathBuf {
        self.state_dir.join("totemd.pid")
    }

    /// The log of a daemon `pvecm` started.
    pub fn log_file(&self) -> PathBuf {
        self.state_dir.join("totemd.log")
    }

    /// The first file that shows this host already belongs to a cluster.
    pub fn existing_state(&self) -> Option<&Path> {
        [&self.config, &self.authkey]
            .into_iter()
            .find(|p| p.exists())
            .map(PathBuf::as_path)
    }
}

/// What the first node of a cluster is.
#[derive(Clone, Debug)]
pub struct NewCluster<'a> {
    /// `totem.cluster_name`.
    pub cluster_name: &'a str,
    /// The node's name.
    pub node_name: &'a str,
    /// Its node id.
    pub nodeid: u32,
    /// Its votes.
    pub votes: u32,
    /// Its links (number, address and priority).
    pub links: &'a [(u8, LinkSpec)],
    /// `totem.token_coefficient`.
    pub token_coefficient_ms: u32,
    /// `mcastport` base, see [`LINK_PORT_BASE_ENV`].
    pub link_port_base: Option<u16>,
}

/// corosync.conf for a new cluster as pvecm's `create_conf` writes it (keys sorted, two-space
/// indent), `config_version: 1`.
pub fn create_config_text(c: &NewCluster<'_>) -> String {
    let mut interfaces = String::new();
    for (link, spec) in c.links {
        interfaces.push_str("  interface {\n");
        if let Some(p) = spec.priority {
            interfaces.push_str(&format!("    knet_link_priority: {p}\n"));
        }
        interfaces.push_str(&format!("    linknumber: {link}\n"));
        if let Some(base) = c.link_port_base {
            interfaces.push_str(&format!(
                "    mcastport: {}\n",
                u32::from(base) + u32::from(*link)
            ));
        }
        interfaces.push_str("  }\n");
    }
    let mut addrs = String::new();
    for (link, spec) in c.links {
        addrs.push_str(&format!("    ring{link}_addr: {}\n", spec.address));
    }
    format!(
        "logging {{\n  debug: off\n  to_syslog: yes\n}}\n\nnodelist {{\n  node {{\n    name: {}\n    \
         nodeid: {}\n    quorum_votes: {}\n{addrs}  }}\n}}\n\nquorum {{\n  provider: \
         corosync_votequorum\n}}\n\ntotem {{\n  cluster_name: {}\n  config_version: 1\n\
         {interfaces}  ip_version: ipv4-6\n  link_mode: passive\n  secauth: on\n  \
         token_coefficient: {}\n  version: 2\n}}\n",
        c.node_name, c.nodeid, c.votes, c.cluster_name, c.token_coefficient_ms
    )
}

/// This host's name (`/proc/sys/kernel/hostname`), as pvecm names nodes.
pub fn local_hostname() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/hostname")?
        .trim()
        .to_owned())
}

/// The address `hostname` resolves to, pvecm's default link0 address.
pub fn resolve_host(hostname: &str) -> io::Result<IpAddr> {
    (hostname, 0)
        .to_socket_addrs()?
        .map(|a| a.ip())
        .find(|ip| !ip.is_unspecified())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{hostname} has no address"),
            )
        })
}

/// Writes `contents` to `path` with `mode`, atomically (temporary file, fsync, rename).
pub fn write_file_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".new");
    let tmp = PathBuf::from(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Whether a daemon answers on `socket`.
pub fn daemon_running(socket: &Path) -> bool {
    Client::connect(socket)
        .and_then(|mut c| c.status().map(|_| ()))
        .is_ok()
}

/// The totemd binary: `TOTEMD_BIN`, the `totemd` beside this executable, or `totemd`.
fn daemon_binary() -> PathBuf {
    if let Some(p) = std::env::var_os(DAEMON_BIN_ENV) {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("totemd")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("totemd"))
}

/// Starts totemd for `node_name` in the background (its own session, output to
/// [`ClusterPaths::log_file`], pid in [`ClusterPaths::pid_file`]) and waits until it answers on
/// the socket; or, when a daemon already answers there, asks it to reload.
pub fn start_or_reload_daemon(paths: &ClusterPaths, node_name: &str) -> Result<String, String> {
    if daemon_running(&paths.socket) {
        let mut c = Client::connect(&paths.socket).map_err(|e| e.to_string())?;
        c.reload_config()
            .map_err(|e: ClientError| format!("the running daemon refused the reload: {e}"))?;
        return Ok("reloaded the running totemd".into());
    }
    std::fs::create_dir_all(&paths.state_dir)
        .map_err(|e| format!("{}: {e}", paths.state_dir.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.log_file())
        .map_err(|e| format!("{}: {e}", paths.log_file().display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("{}: {e}", paths.log_file().display()))?;
    let bin = daemon_binary();
    let child = {
        use std::os::unix::process::CommandExt;
        Command::new(&bin)
            .arg("-f")
            .arg("-c")
            .arg(&paths.config)
            .arg("--authkey")
            .arg(&paths.authkey)
            .arg("--socket")
            .arg(&paths.socket)
            .arg("--state-dir")
            .arg(&paths.state_dir)
            .arg("--node")
            .arg(node_name)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?
    };
    let pid = child.id();
    std::fs::write(paths.pid_file(), format!("{pid}\n"))
        .map_err(|e| format!("{}: {e}", paths.pid_file().display()))?;
    let deadline = Instant::now() + DAEMON_START_TIMEOUT;
    while Instant::now() < deadline {
        if daemon_running(&paths.socket) {
            return Ok(format!("started totemd (pid {pid})"));
        }
        std::thread::sleep(DAEMON_POLL_INTERVAL);
    }
    Err(format!(
        "totemd (pid {pid}) did not answer on {} within {} s; see {}",
        paths.socket.display(),
        DAEMON_START_TIMEOUT.as_secs(),
        paths.log_file().display()
    ))
}

/// Waits until the local daemon reports quorum, up to `timeout`.
pub fn wait_for_quorum(socket: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(status) = Client::connect(socket).and_then(|mut c| c.status()) {
            if status.quorate {
                return true;
            }
        }
        std::thread::sleep(DAEMON_POLL_INTERVAL);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_text_has_pvecm_layout() {
        let links = [
            (0, "10.0.0.1".parse::<LinkSpec>().expect("spec")),
            (
                1,
                "address=10.1.0.1,priority=20"
                    .parse::<LinkSpec>()
                    .expect("spec"),
            ),
        ];
        let text = create_config_text(&NewCluster {
            cluster_name: "demo",
            node_name: "n1",
            nodeid: 1,
            votes: 1,
            links: &links,
            token_coefficient_ms: TOKEN_COEFFICIENT_MS_DEFAULT,
            link_port_base: None,
        });
        assert!(text.contains("    ring1_addr: 10.1.0.1\n"));
        assert!(
            text.contains("  interface {\n    knet_link_priority: 20\n    linknumber: 1\n  }\n")
        );
        assert!(text.contains("  token_coefficient: 125\n"));
        assert!(text.contains("  config_version: 1\n"));
        let sections: Vec<&str> = text
            .lines()
            .filter(|l| l.ends_with(" {") && !l.starts_with(' '))
            .collect();
        assert_eq!(sections, ["logging {", "nodelist {", "quorum {", "totem {"]);
    }
}
