//! Helpers shared by the link set integration tests: endpoints on 127.0.0.x, fast timers, event
//! collection, an nftables guard that always removes its table, and a private network namespace
//! with a 1500-byte loopback MTU.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use totem_transport::heartbeat::{HeartbeatConfig, LinkEvent};
use totem_transport::io::Backend;
use totem_transport::linkset::{Event, LinkConfig, LinkSet, LinkSetConfig, PeerConfig};
use totem_transport::policy::LinkMode;

pub const BACKENDS: [Backend; 2] = [Backend::Uring, Backend::Mmsg];

/// Test timers: ping every 40 ms, timeout 200 ms, suspect after at least 60 ms of silence (above
/// the default 25 ms so a scheduling stall on a loaded test machine does not look like a cut).
pub fn fast_heartbeat() -> HeartbeatConfig {
    HeartbeatConfig {
        ping_interval: Duration::from_millis(40),
        ping_timeout: Duration::from_millis(200),
        pong_count: 2,
        latency_precision: 2048,
        suspect_floor: Duration::from_millis(60),
    }
}

pub struct NodeSpec {
    pub node_id: u32,
    pub ip: &'static str,
    pub priorities: Vec<u8>,
}

pub fn config(spec: &NodeSpec, backend: Backend, mode: LinkMode, cluster: &str) -> LinkSetConfig {
    let mut cfg = LinkSetConfig::new(spec.node_id, cluster);
    cfg.backend = backend;
    cfg.mode = mode;
    cfg.heartbeat = fast_heartbeat();
    cfg.recv_buffers = 64;
    cfg.links = spec
        .priorities
        .iter()
        .enumerate()
        .map(|(link, &priority)| LinkConfig {
            link: link as u8,
            bind: format!("{}:0", spec.ip).parse().unwrap(),
            priority,
            heartbeat: None,
            cpu: None,
        })
        .collect();
    cfg
}

/// Starts the nodes, then tells each about the others' real (port 0 → assigned) addresses.
pub fn start_all(configs: Vec<LinkSetConfig>) -> Vec<LinkSet> {
    let sets: Vec<LinkSet> = configs
        .into_iter()
        .map(|c| LinkSet::start(c).unwrap())
        .collect();
    connect(&sets);
    sets
}

pub fn connect(sets: &[LinkSet]) {
    let addrs: Vec<(u32, Vec<(u8, SocketAddr)>)> =
        sets.iter().map(|s| (node_of(s), s.local_addrs())).collect();
    for set in sets {
        let me = node_of(set);
        let peers = addrs
            .iter()
            .filter(|(id, _)| *id != me)
            .map(|(id, a)| PeerConfig {
                node_id: *id,
                addrs: a.clone(),
            })
            .collect();
        set.set_peers(peers).unwrap();
    }
}

pub fn node_of(set: &LinkSet) -> u32 {
    // The Debug output carries the node id; keep the helper independent of private fields.
    let text = format!("{set:?}");
    let start = text.find("node_id: ").unwrap() + "node_id: ".len();
    text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Everything one node received while waiting.
#[derive(Default, Debug)]
pub struct Log {
    pub events: Vec<(Instant, Event)>,
}

impl Log {
    pub fn link_events(&self) -> Vec<LinkEvent> {
        self.events
            .iter()
            .filter_map(|(_, e)| {
                if let Event::Link(l) = e {
                    Some(*l)
                } else {
                    None
                }
            })
            .collect()
    }
    pub fn messages(&self) -> Vec<(Instant, u32, u8, Vec<u8>)> {
        self.events
            .iter()
            .filter_map(|(t, e)| match e {
                Event::Message { from, link, data } => Some((*t, *from, *link, data.clone())),
                _ => None,
            })
            .collect()
    }
}

/// Polls `set` until `done(log)` or `limit` passes; returns whether `done` became true.
pub fn pump(
    set: &LinkSet,
    log: &mut Log,
    limit: Duration,
    mut done: impl FnMut(&Log) -> bool,
) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if done(log) {
            return true;
        }
        if let Some(event) = set.recv(Some(Duration::from_millis(10))) {
            log.events.push((Instant::now(), event));
        }
    }
    done(log)
}

/// Waits until `set` has seen `LinkUp` for every (host, link) in `want`.
pub fn wait_links_up(set: &LinkSet, log: &mut Log, want: &[(u32, u8)]) {
    let ok = pump(set, log, Duration::from_secs(10), |log| {
        let ups = log.link_events();
        want.iter().all(|&(h, l)| {
            ups.iter().any(
                |e| matches!(e, LinkEvent::LinkUp { host_id, link } if *host_id == h && *link == l),
            )
        })
    });
    assert!(ok, "links {want:?} not up; events: {:?}", log.link_events());
    // Path MTU discovery starts at link up; on loopback its first probe already succeeds.
    let ok = pump(set, log, Duration::from_secs(10), |_| {
        let status = set.status();
        want.iter().all(|&(h, l)| {
            status
                .iter()
                .any(|s| s.node_id == h && s.link == l && s.data_mtu.is_some())
        })
    });
    assert!(
        ok,
        "path MTU of {want:?} not discovered: {:?}",
        set.status()
    );
}

/// True when tests may run nft: root and the nft binary present. Prints why not otherwise.
pub fn nft_available() -> bool {
    // SAFETY-free check of the effective uid via /proc (no libc call needed).
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        eprintln!("SKIP: nftables test needs root");
        return false;
    }
    match Command::new("nft").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        _ => {
            eprintln!("SKIP: nft not installed");
            false
        }
    }
}

/// An nftables table of our own (`inet totemtest_<pid>_<n>`), deleted on drop even on panic.
pub struct NftGuard {
    table: String,
}

impl NftGuard {
    pub fn new(tag: &str) -> NftGuard {
        let table = format!("totemtest_{}_{tag}", std::process::id());
        let script = format!(
            "add table inet {table}\nadd chain inet {table} out {{ type filter hook output priority 0 ; policy accept ; }}\n"
        );
        nft_script(&script);
        NftGuard { table }
    }

    /// Drops every UDP datagram to `port` (both directions of a link use distinct ports).
    pub fn drop_udp_port(&self, port: u16) {
        nft_script(&format!(
            "add rule inet {} out udp dport {port} drop\n",
            self.table
        ));
    }

    /// Removes every rule (restores the link).
    pub fn flush(&self) {
        nft_script(&format!("flush chain inet {} out\n", self.table));
    }
}

impl Drop for NftGuard {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .status();
    }
}

fn nft_script(script: &str) {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft failed on:\n{script}");
}

/// Runs `f` on a thread of its own inside a fresh network namespace whose loopback is up with a
/// 1500-byte MTU; `None` (the test is skipped) when namespaces cannot be created (not root).
pub fn in_private_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    std::thread::spawn(move || {
        // SAFETY: unshare moves only this thread into a new network namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            eprintln!(
                "skipped: unshare(CLONE_NEWNET): {}",
                std::io::Error::last_os_error()
            );
            return None;
        }
        set_loopback_up(1500).unwrap();
        Some(f())
    })
    .join()
    .unwrap()
}

/// Brings `lo` of the calling thread's network namespace up with `mtu` (SIOCSIFMTU, SIOCSIFFLAGS).
pub fn set_loopback_up(mtu: i32) -> std::io::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0").or_else(|_| {
        // lo is still down: an unbound socket is enough for the ioctls.
        UdpSocket::bind("0.0.0.0:0")
    })?;
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    // SAFETY: ifreq is POD; the ioctls read and write the ifreq passed, named "lo".
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (k, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[k] = *b as libc::c_char;
        }
        req.ifr_ifru.ifru_mtu = mtu;
        if libc::ioctl(fd, libc::SIOCSIFMTU, &req) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
