//! Fault scenarios across real network namespaces (tests/netns/netns.sh): 3 to 5 totemd nodes on
//! two bridged links, a load client on every node (joined with `require_quorum`, so a node
//! without quorum refuses its sends), nftables faults, `pvecm add` and `pvecm delnode` under
//! load, and the delivery-log checker (`netns::check`) over every client's log after each
//! scenario.
//!
//! Needs root, `ip` and `nft`; skips with a printed reason otherwise. Scenarios run one at a time
//! (a process-wide lock): each builds its own uniquely named namespaces and removes them on drop.
//!
//! Timers: scenarios whose point is a membership change use `token: 1000` to stay short; the link
//! cut and the random-loss scenarios keep corosync's default token (3000 ms + 650 ms per node
//! above two), because their point is that the ring does NOT change. `NETNS_LOSS_SECS` sets the
//! duration of the loss scenario (default 15 s; the full figure is 60).

mod common;
mod netns;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use netns::check;
use netns::load::{Entry, Load};
use netns::topo::{unavailable, Timers, Topology};
use totem_client::proto::{Event, GroupName, Ordering, QuorumStatus};

/// Short token for scenarios that change the membership (ms).
const SHORT_TOKEN: Timers = Timers {
    token_ms: Some(1000),
};
/// corosync's defaults (REFERENCE.md §2.1).
const DEFAULT_TIMERS: Timers = Timers { token_ms: None };
/// Generous bound on a ring forming or re-forming; the protocol's own timers are seconds.
const FORM_WITHIN: Duration = Duration::from_secs(40);
/// Bound on draining the load at the end of a scenario.
const DRAIN_WITHIN: Duration = Duration::from_secs(30);

static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the scenario lock, or `None` (after printing why) when namespaces are not available.
fn setup(name: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    if let Some(why) = unavailable() {
        eprintln!("skipping {name}: {why}");
        return None;
    }
    Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

fn formed(nodes: u32, timers: Timers) -> Topology {
    let mut topo = Topology::new(nodes, timers);
    topo.start_all();
    topo.wait_formed(FORM_WITHIN);
    topo
}

fn start_load(topo: &Topology) -> Load {
    start_load_on(topo, &topo.node_ids())
}

fn start_load_on(topo: &Topology, nodes: &[u32]) -> Load {
    Load::start(nodes, |n| topo.sock(n))
}

fn sent_counts(load: &Load) -> BTreeMap<(u32, u32), u64> {
    load.workers
        .iter()
        .map(|w| ((w.node, w.incarnation), w.sent()))
        .collect()
}

fn survivors(load: &Load) -> Vec<(u32, u32)> {
    load.workers
        .iter()
        .map(|w| (w.node, w.incarnation))
        .collect()
}

fn assert_checked(logs: &[check::Log]) {
    if let Err(e) = check::check(logs) {
        panic!("delivery logs violate the ordering guarantees:\n{e}");
    }
    eprintln!("checked: {}", check::summary(logs));
}

/// Drains the load and checks order, agreement and completeness of the survivors (`late`:
/// clients that started after the others had been sending, see [`check::complete`]).
fn drain_and_check_complete(load: Load, late: &[(u32, u32)]) {
    for w in &load.workers {
        w.pause();
    }
    // Counts after the pause: the drain waits for exactly these.
    std::thread::sleep(Duration::from_millis(50));
    let sent = sent_counts(&load);
    let alive = survivors(&load);
    let logs = load.drain(DRAIN_WITHIN);
    assert_checked(&logs);
    if let Err(e) = check::complete(&logs, &alive, late, &sent) {
        panic!("messages lost:\n{e}");
    }
}

fn ring_of(topo: &Topology, node: u32) -> (u32, u64) {
    let s = topo.status(node);
    (s.ring_id.rep, s.ring_id.seq)
}

#[test]
fn cluster_of_3_and_of_5_forms_and_orders() {
    let Some(_g) = setup("cluster_forms") else {
        return;
    };
    for nodes in [3, 5] {
        let topo = formed(nodes, SHORT_TOKEN);
        assert!(topo.status(1).quorate, "{nodes} nodes: quorate");
        let load = start_load(&topo);
        std::thread::sleep(Duration::from_secs(3));
        drain_and_check_complete(load, &[]);
    }
}

#[test]
fn link0_cut_and_restored_keeps_the_ring() {
    let Some(_g) = setup("link0_cut") else {
        return;
    };
    let topo = formed(3, DEFAULT_TIMERS);
    let ring = ring_of(&topo, 1);
    let load = start_load(&topo);
    std::thread::sleep(Duration::from_secs(1));
    topo.fault(&["cut-link", "2", "0"]);
    // Node 1 sees link 0 to node 2 go down and traffic move to link 1.
    wait_link(&topo, 1, 2, |l| {
        l.iter().any(|x| x.link == 0 && !x.connected) && l.iter().any(|x| x.link == 1 && x.active)
    });
    std::thread::sleep(Duration::from_secs(2));
    topo.heal_all();
    wait_link(&topo, 1, 2, |l| {
        l.iter().any(|x| x.link == 0 && x.connected)
    });
    std::thread::sleep(Duration::from_secs(1));
    for n in topo.node_ids() {
        assert_eq!(
            ring_of(&topo, n),
            ring,
            "node {n}: the ring changed on a link cut"
        );
    }
    drain_and_check_complete(load, &[]);
}

fn wait_link(
    topo: &Topology,
    node: u32,
    peer: u32,
    want: impl Fn(&[totem_client::proto::PeerLink]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let links = topo.client(node).links().expect("links");
        let peer_links = links
            .nodes
            .iter()
            .find(|n| n.id == peer)
            .map(|n| n.links.clone())
            .unwrap_or_default();
        if want(&peer_links) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {node}: links to {peer} never reached the wanted state: {peer_links:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigkill_of_a_node_forms_a_quorate_ring_of_the_rest() {
    let Some(_g) = setup("sigkill") else {
        return;
    };
    let mut topo = formed(3, SHORT_TOKEN);
    let mut load = start_load(&topo);
    std::thread::sleep(Duration::from_secs(1));
    topo.stop(3, "KILL");
    load.retire(3);
    let took = topo.wait_members(&[1, 2], &[1, 2], FORM_WITHIN);
    eprintln!("SIGKILL to new membership on both survivors: {took:?}");
    assert!(
        topo.status(1).quorate && topo.status(2).quorate,
        "2 of 3 keep quorum"
    );
    std::thread::sleep(Duration::from_secs(1));
    let config_seen = load.worker(1).log().iter().any(
        |e| matches!(e, Entry::Config { members, quorate: true, .. } if *members == vec![1, 2]),
    );
    assert!(
        config_seen,
        "node 1's client saw no quorate [1, 2] configuration"
    );
    drain_and_check_complete(load, &[]);
}

/// How long a partition is held once both sides have formed their rings.
const PARTITION_HOLD: Duration = Duration::from_secs(2);

/// Refusals each minority client must have seen before the hold starts (it retries every 20 ms).
const BLOCKED_MIN: u64 = 3;

/// Splits `nodes` into `majority` | `minority`: only the majority is quorate, the minority's
/// clients (joined with `require_quorum`) are refused with NoQuorum and nothing they try to send
/// meanwhile is delivered anywhere, while the majority's clients keep delivering; after the heal
/// everyone is quorate and the minority's messages reach everyone again.
fn partition_and_heal(nodes: u32, majority: &[u32], minority: &[u32]) {
    let topo = formed(nodes, SHORT_TOKEN);
    let load = start_load(&topo);
    std::thread::sleep(Duration::from_secs(1));
    let list = |s: &[u32]| s.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
    topo.fault(&["partition", &list(majority), &list(minority)]);
    topo.wait_members(majority, majority, FORM_WITHIN);
    topo.wait_members(minority, minority, FORM_WITHIN);
    for &n in majority {
        assert!(
            topo.status(n).quorate,
            "node {n} of the majority must be quorate"
        );
    }
    for &n in minority {
        assert!(
            !topo.status(n).quorate,
            "node {n} of the minority must not be quorate"
        );
        common::wait_for(
            &format!("node {n}'s client refused with NoQuorum {BLOCKED_MIN} times"),
            FORM_WITHIN,
            || match load.worker(n).blocked() {
                b if b >= BLOCKED_MIN => Ok(()),
                b => Err(format!("{b} refusals")),
            },
        );
    }
    // The partition holds: the minority sends nothing, the majority keeps delivering.
    let counts = |nodes: &[u32]| -> Vec<(u64, u64)> {
        nodes
            .iter()
            .map(|&n| (load.worker(n).sent(), load.worker(n).self_delivered()))
            .collect()
    };
    let (minority_before, majority_before) = (counts(minority), counts(majority));
    std::thread::sleep(PARTITION_HOLD);
    let (minority_after, majority_after) = (counts(minority), counts(majority));
    for (i, &n) in minority.iter().enumerate() {
        assert_eq!(
            minority_after[i].0, minority_before[i].0,
            "node {n} is not quorate, yet the daemon accepted multicasts of its client"
        );
    }
    for (i, &n) in majority.iter().enumerate() {
        assert!(
            majority_after[i].1 > majority_before[i].1,
            "node {n} is quorate, yet its client delivered none of its own messages in \
             {PARTITION_HOLD:?}"
        );
    }
    let blocked =
        |nodes: &[u32]| -> Vec<u64> { nodes.iter().map(|&n| load.worker(n).blocked()).collect() };
    eprintln!(
        "partition {majority:?}|{minority:?}: in {PARTITION_HOLD:?} the majority's clients \
         delivered {:?} of their own messages; refusals (NoQuorum) so far: minority {:?}, \
         majority {:?}",
        majority_after
            .iter()
            .zip(&majority_before)
            .map(|(a, b)| a.1 - b.1)
            .collect::<Vec<_>>(),
        blocked(minority),
        blocked(majority)
    );
    default_join_keeps_cpg_semantics(&topo, minority[0]);
    topo.heal_all();
    topo.wait_formed(FORM_WITHIN);
    for n in topo.node_ids() {
        assert!(topo.status(n).quorate, "healed: node {n} quorate again");
    }
    // The minority's clients send again and their own daemons deliver what they send.
    for (i, &n) in minority.iter().enumerate() {
        let w = load.worker(n);
        common::wait_for(
            &format!("node {n}'s client sends and delivers again after the heal"),
            FORM_WITHIN,
            || match (w.sent(), w.self_delivered()) {
                (sent, own) if sent > minority_after[i].0 + 10 && own > minority_after[i].0 => {
                    Ok(())
                }
                other => Err(format!("(sent, own deliveries) = {other:?}")),
            },
        );
    }
    let logs = load.drain(DRAIN_WITHIN);
    assert_checked(&logs);
    if let Err(e) = check::refused_while_inquorate(&logs, minority) {
        panic!("the minority's clients were not blocked:\n{e}");
    }
    // Every majority client delivered minority messages sent after the heal.
    for (node, inc, entries) in logs.iter().filter(|l| majority.contains(&l.0)) {
        for (i, &m) in minority.iter().enumerate() {
            let after_heal = entries.iter().any(|e| {
                matches!(e, Entry::Deliver { msg, .. }
                    if msg.node == m && msg.seq >= minority_after[i].0)
            });
            assert!(
                after_heal,
                "client n{node}#{inc} delivered nothing node {m} sent after the heal"
            );
        }
    }
}

/// On `node`, which is not quorate: a client that joined with the default options (corosync CPG
/// semantics) is not refused, and its node delivers its messages, in order, inside the partition.
fn default_join_keeps_cpg_semantics(topo: &Topology, node: u32) {
    const COUNT: usize = 10;
    let group = GroupName::new("netns-cpg").expect("group name");
    let mut client = topo.client(node);
    client.join(&group).expect("join");
    for i in 0..COUNT {
        loop {
            match client.multicast(&group, Ordering::Agreed, i.to_string().as_bytes()) {
                Ok(_) => break,
                Err(e) if e.is_try_again() => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("node {node} without quorum refused a CPG-semantics send: {e}"),
            }
        }
    }
    let mut own: Vec<String> = Vec::new();
    common::wait_for(
        &format!("node {node} delivers its default-join client's {COUNT} messages"),
        FORM_WITHIN,
        || {
            while let Some(event) = client
                .next_event(Some(Duration::from_millis(10)))
                .map_err(|e| e.to_string())?
            {
                if let Event::Delivery(d) = event {
                    if d.group == group && d.sender.node == node {
                        own.push(String::from_utf8_lossy(&d.payload).into_owned());
                    }
                }
            }
            if own.len() >= COUNT {
                Ok(())
            } else {
                Err(format!("{own:?}"))
            }
        },
    );
    let want: Vec<String> = (0..COUNT).map(|i| i.to_string()).collect();
    assert_eq!(own, want, "node {node}: own deliveries out of order");
    assert!(
        !topo.status(node).quorate,
        "node {node} stayed without quorum"
    );
}

#[test]
fn partition_2_1_then_heal() {
    let Some(_g) = setup("partition_2_1") else {
        return;
    };
    partition_and_heal(3, &[1, 2], &[3]);
}

#[test]
fn partition_3_2_then_heal() {
    let Some(_g) = setup("partition_3_2") else {
        return;
    };
    partition_and_heal(5, &[1, 2, 3], &[4, 5]);
}

#[test]
fn rolling_restart_under_load() {
    let Some(_g) = setup("rolling_restart") else {
        return;
    };
    let mut topo = formed(3, SHORT_TOKEN);
    let mut load = start_load(&topo);
    std::thread::sleep(Duration::from_secs(1));
    for n in topo.node_ids() {
        load.retire(n);
        topo.stop(n, "TERM");
        let rest: Vec<u32> = topo.node_ids().into_iter().filter(|&x| x != n).collect();
        topo.wait_members(&rest, &rest, FORM_WITHIN);
        topo.start(n);
        topo.wait_formed(FORM_WITHIN);
        load.restart(n, topo.sock(n));
        std::thread::sleep(Duration::from_secs(1));
    }
    let logs = load.drain(DRAIN_WITHIN);
    assert_checked(&logs);
}

#[test]
fn random_loss_of_2_percent_on_all_links() {
    let Some(_g) = setup("random_loss") else {
        return;
    };
    let secs: u64 = std::env::var("NETNS_LOSS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let topo = formed(3, DEFAULT_TIMERS);
    let ring = ring_of(&topo, 1);
    let load = start_load(&topo);
    topo.fault(&["loss", "2", "1", "2", "3"]);
    std::thread::sleep(Duration::from_secs(secs));
    topo.heal_all();
    for n in topo.node_ids() {
        let now = ring_of(&topo, n);
        if now != ring {
            eprintln!("note: node {n} changed ring under 2 % loss ({ring:?} -> {now:?})");
        }
    }
    drain_and_check_complete(load, &[]);
}

/// Address of `node` on `link` (netns.sh's plan: 10.250.LINK.NODE).
fn addr(node: u32, link: u32) -> String {
    format!("10.250.{link}.{node}")
}

/// `pvecm add` on `node`, as a user runs it: the join secret (given in the environment instead of
/// the prompt) and the fingerprint `pvecm create` printed; pvecm starts the node's daemon.
fn pvecm_add(topo: &mut Topology, node: u32, secret: &str, fingerprint: &str) {
    let out = topo.pvecm_ok(
        node,
        &[
            "add",
            &addr(1, 0),
            "--link0",
            &addr(node, 0),
            "--link1",
            &addr(node, 1),
            "--fingerprint",
            fingerprint,
        ],
        Some(secret),
    );
    assert!(
        out.contains(&format!("successfully added node 'n{node}' to cluster.")),
        "{out}"
    );
    topo.adopt(node);
}

/// On each of `nodes`: the same corosync.conf, `config_version` `version` in the running
/// configuration, quorate with `votes` expected and present; returns the file. Each node writes
/// its file before it runs the new version, so the files are compared once every node runs it.
fn assert_cluster_state(topo: &Topology, nodes: &[u32], version: u64, votes: u32) -> String {
    for &n in nodes {
        let want = |s: &QuorumStatus| {
            s.cluster.config_version == Some(version)
                && s.quorate
                && s.expected_votes == votes
                && s.total_votes == votes
                && s.quorum == votes / 2 + 1
        };
        common::wait_for(
            &format!("n{n} runs config_version {version}, {votes} votes expected and present"),
            FORM_WITHIN,
            || match common::try_status(&topo.sock(n)) {
                Some(s) if want(&s) => Ok(()),
                last => Err(format!("{last:?}")),
            },
        );
    }
    let text = topo.config(nodes[0]);
    assert!(
        text.contains(&format!("config_version: {version}\n")),
        "n{}: {text}",
        nodes[0]
    );
    for &n in nodes {
        assert_eq!(topo.config(n), text, "n{n}'s corosync.conf differs");
    }
    text
}

/// The node names `pvecm nodes` lists on `node`.
fn pvecm_node_names(topo: &Topology, node: u32) -> Vec<String> {
    let out = topo.pvecm_ok(node, &["nodes"], None);
    out.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            // Nodeid, Votes, Name[, "(local)"]: rows start with a number.
            match cells.as_slice() {
                [id, _, name, ..] if id.parse::<u32>().is_ok() => Some((*name).to_owned()),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn pvecm_add_and_delnode_under_load() {
    let Some(_g) = setup("pvecm_add_delnode") else {
        return;
    };
    let began = Instant::now();
    // Four namespaces; a cluster of three built as a user builds one: `pvecm create` on n1,
    // `pvecm add` on n2 and n3 with the secret and fingerprint it printed.
    let mut topo = Topology::bare(4);
    let created = topo.pvecm_ok(
        1,
        &[
            "create",
            "netns",
            "--link0",
            &addr(1, 0),
            "--link1",
            &addr(1, 1),
        ],
        None,
    );
    topo.adopt(1);
    let secret = common::field(&created, "Join secret:").to_owned();
    let fingerprint = common::field(&created, "Fingerprint:").to_owned();
    for n in [2, 3] {
        pvecm_add(&mut topo, n, &secret, &fingerprint);
    }
    topo.wait_members(&[1, 2, 3], &[1, 2, 3], FORM_WITHIN);
    assert_cluster_state(&topo, &[1, 2, 3], 3, 3);
    eprintln!("cluster of 3 built with pvecm in {:?}", began.elapsed());

    // Load on every node for the rest of the scenario; n4 joins meanwhile and gets its own.
    let mut load = start_load_on(&topo, &[1, 2, 3]);
    std::thread::sleep(Duration::from_secs(1));
    let joined = Instant::now();
    pvecm_add(&mut topo, 4, &secret, &fingerprint);
    topo.wait_members(&[1, 2, 3, 4], &[1, 2, 3, 4], FORM_WITHIN);
    eprintln!(
        "pvecm add n4 under load: in the ring after {:?}",
        joined.elapsed()
    );
    // A client new to this node: incarnation 0 (`restart` numbers from the node's past clients).
    load.restart(4, topo.sock(4));
    let with_n4 = assert_cluster_state(&topo, &[1, 2, 3, 4], 4, 4);
    common::wait_for(
        "n4's client delivers its own messages",
        FORM_WITHIN,
        || match load.worker(4).self_delivered() {
            0 => Err("none yet".into()),
            _ => Ok(()),
        },
    );
    std::thread::sleep(Duration::from_secs(1));

    // delnode of an original node under load; the deleted node finds itself removed and leaves
    // by itself; then it is stopped as a user would (systemctl stop: SIGTERM).
    let deleted = Instant::now();
    let out = topo.pvecm_ok(1, &["delnode", "n2"], None);
    assert!(out.contains("removed node 'n2'"), "{out}");
    assert!(
        topo.exits_within(2, FORM_WITHIN),
        "n2's daemon did not leave after its deletion:\n{}",
        topo.log(2)
    );
    topo.stop(2, "TERM");
    load.retire(2);
    topo.wait_members(&[1, 3, 4], &[1, 3, 4], FORM_WITHIN);
    eprintln!(
        "pvecm delnode n2 under load: ring of the rest after {:?}",
        deleted.elapsed()
    );
    let after = assert_cluster_state(&topo, &[1, 3, 4], 5, 3);
    assert!(!after.contains("name: n2\n"), "{after}");
    assert_eq!(
        topo.config(2),
        with_n4,
        "the deleted node keeps the file it had"
    );
    for n in [1, 3, 4] {
        assert_eq!(
            pvecm_node_names(&topo, n),
            ["n1", "n3", "n4"],
            "pvecm nodes on n{n}"
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    drain_and_check_complete(load, &[(4, 0)]);
    eprintln!("pvecm add + delnode under load: {:?}", began.elapsed());
}
