//! Three real daemons on 127.0.0.1, 127.0.0.2 and 127.0.0.3: the ring forms, process-group
//! clients on every node see one total order, SIGKILL and clean stops re-form the ring, a restart
//! rejoins, a reload adds a second link live, a bad reload changes nothing, a client that posts
//! without reading is paced by its own unread deliveries, and a user who is not allowed is
//! refused on the control socket.
//!
//! Each phase waits for a state with a generous deadline (the protocol's own timers are seconds);
//! only the clean-leave phase asserts a bound, and that bound is the protocol's token timeout,
//! which a clean leave must beat by design.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{DaemonFiles, Totemd};
use totem_client::proto::{
    encode_frame, ClientMessage, Event, GroupName, Ordering, QuorumStatus, Request,
};
use totem_client::Client;

const NODES: u32 = 3;
/// corosync's default token: a clean leave must re-form the ring well before it expires.
const TOKEN_MS: u64 = 3000;

struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    procs: BTreeMap<u32, Totemd>,
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        // Other users must reach the socket to be refused by the daemon itself.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod temp dir");
        // Ports unique to this run so parallel test runs and a demo cluster do not collide.
        let port = 21_000 + u16::try_from(std::process::id() % 4000).unwrap_or(0) * 2;
        common::write_authkey(&dir.path().join("authkey"), 7, 3);
        let c = Cluster {
            dir,
            port,
            procs: BTreeMap::new(),
        };
        c.write_config(1, false, false);
        c
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("corosync.conf")
    }

    fn sock(&self, node: u32) -> PathBuf {
        DaemonFiles::shared_dir(self.dir.path(), node).socket
    }

    fn write_config(&self, version: u32, second_link: bool, broken: bool) {
        self.write_config_with(version, second_link, broken, "");
    }

    /// [`Cluster::write_config`] with `extra` (whole sections) appended.
    fn write_config_with(&self, version: u32, second_link: bool, broken: bool, extra: &str) {
        let mut text = format!(
            "totem {{\n  version: 2\n  cluster_name: itest\n  config_version: {version}\n  ip_version: ipv4\n  secauth: on\n  interface {{\n    linknumber: 0\n    mcastport: {}\n  }}\n",
            self.port
        );
        if second_link {
            text.push_str(&format!(
                "  interface {{\n    linknumber: 1\n    mcastport: {}\n  }}\n",
                self.port + 1
            ));
        }
        text.push_str("}\n\nnodelist {\n");
        for n in 1..=NODES {
            text.push_str(&format!(
                "  node {{\n    name: n{n}\n    nodeid: {n}\n    quorum_votes: 1\n    ring0_addr: 127.0.0.{n}\n"
            ));
            if second_link {
                text.push_str(&format!("    ring1_addr: 127.0.1.{n}\n"));
            }
            text.push_str("  }\n");
        }
        text.push_str("}\n\nquorum {\n  provider: corosync_votequorum\n}\n");
        text.push_str(extra);
        if broken {
            text.push_str("logging {\n  to_stderr yes\n");
        }
        let tmp = self.dir.path().join("corosync.conf.tmp");
        let mut f = std::fs::File::create(&tmp).expect("config");
        f.write_all(text.as_bytes()).expect("config write");
        std::fs::rename(tmp, self.conf()).expect("config rename");
    }

    fn start(&mut self, node: u32) {
        let files = DaemonFiles::shared_dir(self.dir.path(), node);
        self.procs.insert(node, Totemd::spawn(&files, None));
    }

    fn stop(&mut self, node: u32, sig: &str) {
        if let Some(daemon) = self.procs.remove(&node) {
            daemon.stop(sig);
        }
    }

    fn client(&self, node: u32) -> Client {
        common::connect(&self.sock(node), || self.log(node))
    }

    fn status(&self, node: u32) -> QuorumStatus {
        self.client(node).status().expect("status")
    }

    fn members(&self, node: u32) -> BTreeSet<u32> {
        common::member_ids(&self.status(node))
    }

    /// Waits until `node` sees exactly `want` as members; returns how long it took.
    fn wait_members(&self, node: u32, want: &[u32], within: Duration) -> Duration {
        let want: BTreeSet<u32> = want.iter().copied().collect();
        let what = format!("node {node} sees members {want:?}");
        let ((), took) = common::wait_for(&what, within, || {
            let has = self.members(node);
            if has == want {
                Ok(())
            } else {
                Err(format!("{has:?}\n{}", self.log(node)))
            }
        });
        took
    }

    fn log_path(&self, node: u32) -> PathBuf {
        DaemonFiles::shared_dir(self.dir.path(), node).log
    }

    fn log(&self, node: u32) -> String {
        std::fs::read_to_string(self.log_path(node)).unwrap_or_default()
    }
}

/// Collects `count` deliveries on `client`, as (sender node, payload).
fn deliveries(client: &mut Client, count: usize) -> Vec<(u32, Vec<u8>)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} deliveries",
            got.len()
        );
        if let Some(Event::Delivery(d)) = client
            .next_event(Some(Duration::from_millis(200)))
            .expect("event")
        {
            got.push((d.sender.node, d.payload));
        }
    }
    got
}

/// Messages each client posts in the streaming phase: several times Totem's submit queue
/// (1024 messages), so the daemon must stop reading and the clients must wait.
const STREAM_PER_NODE: u32 = 5000;
/// Bytes of each streamed message (a sequence number, then padding).
const STREAM_BYTES: usize = 1024;

/// Every client posts [`STREAM_PER_NODE`] messages from its own thread and collects every
/// delivery of the stream; returns each node's (sender node, sequence) in delivery order.
fn stream_from_every_client(clients: &mut [Client], group: &GroupName) -> Vec<Vec<(u32, u32)>> {
    let total = STREAM_PER_NODE as usize * clients.len();
    std::thread::scope(|scope| {
        let workers: Vec<_> = clients
            .iter_mut()
            .map(|client| {
                scope.spawn(move || {
                    let mut got = Vec::with_capacity(total);
                    let mut sent = 0u32;
                    let mut payload = vec![0xa5u8; STREAM_BYTES];
                    let deadline = Instant::now() + Duration::from_secs(120);
                    while got.len() < total {
                        assert!(
                            Instant::now() < deadline,
                            "stream: {} of {total}",
                            got.len()
                        );
                        if sent < STREAM_PER_NODE {
                            payload[..4].copy_from_slice(&sent.to_be_bytes());
                            match client.try_multicast(group, Ordering::Agreed, &payload) {
                                Ok(_) => sent += 1,
                                Err(e) if e.is_try_again() => {}
                                Err(e) => panic!("multicast: {e}"),
                            }
                        }
                        let wait = if sent < STREAM_PER_NODE {
                            Duration::ZERO
                        } else {
                            Duration::from_millis(100)
                        };
                        while let Some(event) = client.next_event(Some(wait)).expect("event") {
                            match event {
                                Event::Delivery(d) => {
                                    let seq = u32::from_be_bytes(
                                        d.payload[..4].try_into().expect("4 bytes"),
                                    );
                                    got.push((d.sender.node, seq));
                                }
                                Event::MulticastRefused(r) => panic!("refused: {r:?}"),
                                _ => {}
                            }
                            if got.len() == total {
                                break;
                            }
                        }
                    }
                    got
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("stream worker"))
            .collect()
    })
}

/// A client that posts without reading its deliveries: the daemon stops reading it once its
/// unread output passes `OUTBOX_PAUSE_BYTES` (so `try_multicast` says TryAgain) instead of
/// buffering up to `OUTBOX_BYTES_MAX` and closing it. Once it reads, everything it posted is
/// there, in order, and it may post again.
fn a_sender_that_does_not_read_is_paced_not_dropped(clients: &mut [Client], group: &GroupName) {
    let (sender, others) = clients.split_first_mut().expect("three clients");
    let mut payload = vec![0x5au8; STREAM_BYTES];
    let mut accepted = 0u32;
    let mut refused_since = None::<Instant>;
    let deadline = Instant::now() + Duration::from_secs(60);
    // More than Totem's submit queue holds (1024 messages, 1 MiB) went in, then TryAgain for half
    // a second in a row: the daemon has stopped reading this client.
    let paused_floor = totemd::control::OUTBOX_PAUSE_BYTES / 2;
    while accepted as usize * STREAM_BYTES <= paused_floor
        || !matches!(refused_since, Some(t) if t.elapsed() >= Duration::from_millis(500))
    {
        assert!(
            Instant::now() < deadline,
            "never paced: {accepted} accepted"
        );
        payload[..4].copy_from_slice(&accepted.to_be_bytes());
        match sender.try_multicast(group, Ordering::Agreed, &payload) {
            Ok(_) => {
                accepted += 1;
                refused_since = None;
            }
            Err(e) if e.is_try_again() => {
                refused_since.get_or_insert_with(Instant::now);
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("multicast after {accepted}: {e}"),
        }
    }
    let accepted_bytes = accepted as usize * STREAM_BYTES;
    assert!(
        accepted_bytes < totemd::control::OUTBOX_BYTES_MAX / 2,
        "{accepted} messages accepted from a client that reads nothing"
    );
    // Reading resumes it: one more message goes after all the others.
    let read_all = |client: &mut Client, count: u32| -> Vec<u32> {
        let mut seqs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while seqs.len() < count as usize {
            assert!(Instant::now() < deadline, "{} of {count} read", seqs.len());
            if let Some(Event::Delivery(d)) = client
                .next_event(Some(Duration::from_millis(200)))
                .expect("event")
            {
                seqs.push(u32::from_be_bytes(
                    d.payload[..4].try_into().expect("4 bytes"),
                ));
            }
        }
        seqs
    };
    let mut seqs = read_all(sender, accepted);
    payload[..4].copy_from_slice(&accepted.to_be_bytes());
    sender
        .multicast(group, Ordering::Agreed, &payload)
        .expect("posts again once it has read");
    seqs.extend(read_all(sender, 1));
    let expected: Vec<u32> = (0..=accepted).collect();
    assert_eq!(seqs, expected, "the paced sender's messages");
    for other in others.iter_mut() {
        assert_eq!(read_all(other, accepted + 1), expected);
    }
}

#[test]
fn three_daemons_on_loopback() {
    let mut cluster = Cluster::new();
    for n in 1..=NODES {
        cluster.start(n);
    }
    for n in 1..=NODES {
        cluster.wait_members(n, &[1, 2, 3], Duration::from_secs(30));
    }
    // The membership status shows is that of votequorum's completed sync, so the votes of all
    // members are in as soon as it lists them (as with corosync).
    assert!(cluster.status(1).quorate, "{:?}", cluster.status(1));
    // By default the daemon stays in the normal scheduling class (see docs/ARCHITECTURE.md).
    assert_every_thread_runs(cluster.procs[&1].pid(), SCHED_OTHER);

    // Every node multicasts; every node delivers the same total order.
    let group = GroupName::new("itest").expect("group name");
    let mut clients: Vec<Client> = (1..=NODES).map(|n| cluster.client(n)).collect();
    for c in clients.iter_mut() {
        c.join(&group).expect("join");
    }
    const PER_NODE: usize = 50;
    for round in 0..PER_NODE {
        for (i, c) in clients.iter_mut().enumerate() {
            let msg = format!("n{}-{round}", i + 1);
            let order = if round % 5 == 0 {
                Ordering::Safe
            } else {
                Ordering::Agreed
            };
            loop {
                match c.multicast(&group, order, msg.as_bytes()) {
                    Ok(_) => break,
                    Err(e) if e.is_try_again() => std::thread::sleep(Duration::from_millis(5)),
                    Err(e) => panic!("multicast: {e}"),
                }
            }
        }
    }
    let total = PER_NODE * clients.len();
    let orders: Vec<Vec<(u32, Vec<u8>)>> =
        clients.iter_mut().map(|c| deliveries(c, total)).collect();
    assert_eq!(
        orders[0], orders[1],
        "nodes 1 and 2 delivered different orders"
    );
    assert_eq!(
        orders[0], orders[2],
        "nodes 1 and 3 delivered different orders"
    );
    for (node, _) in &orders[0] {
        assert!((1..=NODES).contains(node));
    }

    // Streaming: every client posts far more than Totem's submit queue holds, as fast as the
    // daemon takes them (back-pressure through the socket, never a refusal), reading its
    // deliveries meanwhile; every node delivers everything once, in one order, each sender's
    // messages in the order sent.
    let streamed = stream_from_every_client(&mut clients, &group);
    assert_eq!(
        streamed[0], streamed[1],
        "nodes 1 and 2: different stream orders"
    );
    assert_eq!(
        streamed[0], streamed[2],
        "nodes 1 and 3: different stream orders"
    );
    for sender in 1..=NODES {
        let seqs: Vec<u32> = streamed[0]
            .iter()
            .filter(|(node, _)| *node == sender)
            .map(|(_, seq)| *seq)
            .collect();
        let expected: Vec<u32> = (0..STREAM_PER_NODE).collect();
        assert_eq!(
            seqs, expected,
            "node {sender}'s stream lost or reordered messages"
        );
    }
    a_sender_that_does_not_read_is_paced_not_dropped(&mut clients, &group);
    drop(clients);

    // SIGKILL: a new ring without node 3, still quorate (2 of 3), and clients hear of it.
    let mut watcher = cluster.client(1);
    watcher.join(&group).expect("join");
    cluster.stop(3, "KILL");
    cluster.wait_members(1, &[1, 2], Duration::from_secs(15));
    cluster.wait_members(2, &[1, 2], Duration::from_secs(15));
    assert!(cluster.status(1).quorate, "2 of 3 votes keep quorum");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no quorum event after SIGKILL");
        if let Some(Event::Quorum(q)) = watcher
            .next_event(Some(Duration::from_millis(200)))
            .expect("event")
        {
            if q.members == vec![1, 2] {
                assert!(q.quorate);
                break;
            }
        }
    }
    drop(watcher);

    // The killed node restarts and rejoins, sealing under a new boot number (nonce salt) that
    // its peers take as a restart of its replay window.
    let boot_file = cluster.dir.path().join("state3").join("bootcount_3");
    let boot_before = read_boot(&boot_file);
    cluster.start(3);
    for n in 1..=NODES {
        cluster.wait_members(n, &[1, 2, 3], Duration::from_secs(30));
    }
    assert_eq!(
        read_boot(&boot_file),
        boot_before.wrapping_add(1),
        "each start advances the boot counter"
    );

    // A clean stop: the others re-form without waiting for a token timeout.
    cluster.stop(2, "TERM");
    let took = cluster.wait_members(1, &[1, 3], Duration::from_secs(15));
    assert!(
        took < Duration::from_millis(TOKEN_MS),
        "clean leave took {took:?}, not faster than the {TOKEN_MS} ms token"
    );
    cluster.start(2);
    for n in 1..=NODES {
        cluster.wait_members(n, &[1, 2, 3], Duration::from_secs(30));
    }

    // A reload with a higher config_version adds link 1 live. Nodes reload one after the other,
    // so node 1's first pings on link 1 meet closed ports (ICMP port unreachable) while link 0
    // carries the ring: that is no reason to reconfigure, and the ring stays as it is.
    let ring_before = cluster.status(1).ring_id;
    cluster.write_config(2, true, false);
    for n in 1..=NODES {
        cluster.client(n).reload_config().expect("reload");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let links = cluster.client(1).links().expect("links");
        let up_on_link1 = links
            .nodes
            .iter()
            .filter(|n| !n.local)
            .all(|n| n.links.iter().any(|l| l.link == 1 && l.connected));
        if up_on_link1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "link 1 did not come up: {links:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(cluster.status(1).cluster.config_version, Some(2));
    assert_eq!(
        cluster.status(1).ring_id,
        ring_before,
        "adding a link reconfigured the ring"
    );

    // A broken file is refused and nothing changes.
    cluster.write_config(3, true, true);
    let err = cluster
        .client(1)
        .reload_config()
        .expect_err("a broken config must be refused");
    assert!(err.to_string().contains("corosync.conf"), "{err}");
    assert_eq!(cluster.status(1).cluster.config_version, Some(2));
    // An older config_version is refused too.
    cluster.write_config(1, true, false);
    assert!(cluster.client(1).reload_config().is_err());
    assert_eq!(cluster.members(1), [1, 2, 3].into_iter().collect());

    unauthorised_user_is_refused(&cluster.sock(1));

    // `system { sched_rr: yes }` (corosync's default, ours on request): node 1 restarted with it
    // runs every thread SCHED_RR and rejoins; the others stay as they were.
    cluster.stop(1, "TERM");
    cluster.write_config_with(4, true, false, "system {\n  sched_rr: yes\n}\n");
    cluster.start(1);
    for n in 1..=NODES {
        cluster.wait_members(n, &[1, 2, 3], Duration::from_secs(30));
    }
    if nix::unistd::geteuid().is_root() {
        assert_every_thread_runs(cluster.procs[&1].pid(), SCHED_RR);
    } else {
        // Refused without CAP_SYS_NICE: the daemon warns and runs on.
        eprintln!("skipping the SCHED_RR check: not root");
    }
    assert_every_thread_runs(cluster.procs[&2].pid(), SCHED_OTHER);
}

/// `policy` values of proc_pid_stat(5).
const SCHED_OTHER: u32 = 0;
const SCHED_RR: u32 = 2;

/// Every thread of process `pid` runs scheduling policy `want`.
fn assert_every_thread_runs(pid: u32, want: u32) {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("task list");
    let mut seen = 0;
    for task in tasks {
        let path = task.expect("task entry").path();
        let stat = std::fs::read_to_string(path.join("stat")).expect("task stat");
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        // Fields after the parenthesised name; `policy` is field 41 of proc_pid_stat(5).
        let rest = &stat[stat.rfind(')').expect("stat has a name") + 2..];
        let policy: u32 = rest
            .split(' ')
            .nth(41 - 3)
            .and_then(|f| f.parse().ok())
            .expect("policy field");
        assert_eq!(policy, want, "thread {} runs policy {policy}", comm.trim());
        seen += 1;
    }
    assert!(seen >= 3, "only {seen} threads");
}

/// The boot number in a node's `bootcount_<id>` file.
fn read_boot(path: &Path) -> u32 {
    let text = std::fs::read_to_string(path).expect("boot counter file");
    text.trim().parse().expect("boot counter is a number")
}

/// A process running as `nobody` asks for status and gets a clear refusal. Needs root (to
/// switch user with setpriv) and python3 (a raw client that needs no build of ours).
fn unauthorised_user_is_refused(sock: &Path) {
    let root = common::is_root();
    // The system interpreter: one under root's home (pyenv) is not reachable by nobody.
    let python = Path::new("/usr/bin/python3");
    let setpriv = Command::new("which")
        .arg("setpriv")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !root || !setpriv || !python.exists() {
        eprintln!(
            "skipping the unauthorised-client check: needs root, setpriv and /usr/bin/python3"
        );
        return;
    }
    // A Status request in the current protocol version, handed to the script in hex.
    let frame = encode_frame(&ClientMessage {
        request_id: 1,
        request: Request::Status,
    })
    .expect("encode a status request");
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.sendall(bytes.fromhex(sys.argv[2]))\ns.settimeout(5)\nsys.stdout.buffer.write(s.recv(4096))\n";
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(python)
        .args(["-c", script])
        .arg(sock)
        .arg(hex)
        .output()
        .expect("run python3 as nobody");
    let reply = String::from_utf8_lossy(&out.stdout);
    assert!(
        reply.contains("may not use the totemd control socket"),
        "unexpected reply to nobody: {reply:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
