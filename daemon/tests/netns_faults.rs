//! Fault scenarios across real network namespaces (tests/netns/netns.sh): 3 and 5 totemd nodes on
//! two bridged links, a load client on every node, nftables faults, and the delivery-log checker
//! (`netns::check`) over every client's log after each scenario.
//!
//! Needs root, `ip` and `nft`; skips with a printed reason otherwise. Scenarios run one at a time
//! (a process-wide lock): each builds its own uniquely named namespaces and removes them on drop.
//!
//! Timers: scenarios whose point is a membership change use `token: 1000` to stay short; the link
//! cut and the random-loss scenarios keep corosync's default token (3000 ms + 650 ms per node
//! above two), because their point is that the ring does NOT change. `NETNS_LOSS_SECS` sets the
//! duration of the loss scenario (default 15 s; the full figure is 60).

mod netns;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use netns::check;
use netns::load::{Entry, Load};
use netns::topo::{unavailable, Timers, Topology};

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
    Load::start(&topo.node_ids(), |n| topo.sock(n))
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

/// Drains the load and checks order, agreement and completeness of the survivors.
fn drain_and_check_complete(load: Load) {
    for w in &load.workers {
        w.pause();
    }
    // Counts after the pause: the drain waits for exactly these.
    std::thread::sleep(Duration::from_millis(50));
    let sent = sent_counts(&load);
    let alive = survivors(&load);
    let logs = load.drain(DRAIN_WITHIN);
    assert_checked(&logs);
    if let Err(e) = check::complete(&logs, &alive, &sent) {
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
        drain_and_check_complete(load);
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
    drain_and_check_complete(load);
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
    drain_and_check_complete(load);
}

/// Splits `nodes` into `majority` | `minority`, checks quorum on each side and what the
/// minority's clients get, heals, and checks the logs.
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
    }
    // What a minority client gets while it is not quorate: record, and report, its deliveries of
    // its own messages inside the minority ring.
    let m = minority[0];
    let before = load.worker(m).self_delivered();
    let sent_before = load.worker(m).sent();
    std::thread::sleep(Duration::from_secs(2));
    let delivered = load.worker(m).self_delivered() - before;
    let accepted = load.worker(m).sent() - sent_before;
    eprintln!(
        "non-quorate node {m}: in 2 s the daemon accepted {accepted} multicasts and delivered \
         {delivered} of the client's own messages inside the minority ring"
    );
    topo.heal_all();
    topo.wait_formed(FORM_WITHIN);
    assert!(topo.status(m).quorate, "healed: quorate again");
    std::thread::sleep(Duration::from_secs(1));
    for w in &load.workers {
        w.pause();
    }
    let logs = load.drain(DRAIN_WITHIN);
    assert_checked(&logs);
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
    drain_and_check_complete(load);
}
