//! Hand-written scenarios through the simulator's verbs (raft-harness style): ring formation,
//! crash, clean leave, partition and merge, one-way cut, isolation, restart, a 1 MiB message, a
//! wrong unreachable hint, and replay determinism. The checkers run after every step in all of them.

use totem_core::sim::cluster::{Sim, SimOptions};
use totem_core::sim::net::NetOptions;
use totem_core::sim::swarm::{liveness_bound_ms, run, FaultProfile, RunSpec};
use totem_core::sim::workload::LoadOptions;
use totem_core::totem::{Order, TotemConfig};
use totem_core::NodeId;

/// A steady load without 1 MiB messages (those get their own test).
const LOAD: LoadOptions = LoadOptions {
    huge_fraction: 0.0,
    ..LoadOptions::MIXED
};

fn sim(nodes: u32, token_ms: u64) -> Sim {
    let mut options = SimOptions::new(7, nodes);
    options.totem = TotemConfig {
        token_ms,
        ..TotemConfig::default()
    };
    options.net = NetOptions::QUIET;
    Sim::new(options).expect("valid options")
}

fn bound(sim: &Sim) -> u64 {
    liveness_bound_ms(sim.totem_config())
}

/// Runs until one ring of all live nodes is installed everywhere; panics on a violation or timeout.
fn converge(sim: &mut Sim) {
    let bound = bound(sim);
    let ok = sim
        .run_until(|s| s.converged_ring().is_some(), bound)
        .expect("no violation");
    assert!(
        ok,
        "no ring of all live nodes {:?} within {bound} ms",
        sim.live_nodes()
    );
}

/// Whether every node of `group` is operational in a ring of exactly `group`.
fn group_formed(sim: &Sim, group: &[NodeId]) -> bool {
    group.iter().all(|&n| {
        sim.last_regular(n)
            .is_some_and(|c| c.members == group && sim.ring_id(n) == Some(c.ring_id))
    })
}

/// Stops the load and lets every message reach its sender and the final ring converge.
fn drain(sim: &mut Sim) {
    sim.set_load(LoadOptions::OFF);
    let ok = sim
        .run_until(|s| s.checker().pending_self() == 0, 30_000)
        .expect("no violation");
    assert!(
        ok,
        "{} messages never reached their senders",
        sim.checker().pending_self()
    );
    sim.checker().check_self_delivery().expect("self delivery");
}

#[test]
fn three_nodes_form_one_ring_and_deliver_in_one_order() {
    let mut sim = sim(3, 1000);
    converge(&mut sim);
    sim.set_load(LOAD);
    sim.run_for(3_000).expect("no violation");
    drain(&mut sim);
    let ring = sim.converged_ring().expect("still one ring");
    assert_eq!(sim.members(1), Some(vec![1, 2, 3]));
    assert_eq!(ring.rep, 1);
    assert!(
        sim.checker().deliveries() >= 3 * 100,
        "{} deliveries",
        sim.checker().deliveries()
    );
}

#[test]
fn crash_reforms_after_token_and_consensus() {
    let mut sim = sim(5, 3000);
    converge(&mut sim);
    sim.set_load(LOAD);
    sim.run_for(1_000).expect("no violation");
    let crashed_at = sim.now_ms();
    sim.crash(5);
    converge(&mut sim);
    let took = sim.now_ms() - crashed_at;
    let token = sim.totem_config().effective_token_ms();
    assert!(
        took >= token,
        "re-formed in {took} ms, before the {token} ms token timeout"
    );
    assert!(took <= bound(&sim), "re-formed in {took} ms");
    assert_eq!(sim.members(1), Some(vec![1, 2, 3, 4]));
    drain(&mut sim);
}

#[test]
fn clean_leave_reforms_well_under_the_token_timeout() {
    let mut sim = sim(5, 3000);
    converge(&mut sim);
    sim.set_load(LOAD);
    sim.run_for(500).expect("no violation");
    let left_at = sim.now_ms();
    sim.leave(3).expect("no violation");
    converge(&mut sim);
    let took = sim.now_ms() - left_at;
    let token = sim.totem_config().effective_token_ms();
    assert!(
        took < token / 2,
        "leave took {took} ms, token is {token} ms"
    );
    assert_eq!(sim.members(1), Some(vec![1, 2, 4, 5]));
    drain(&mut sim);
}

#[test]
fn partition_forms_two_rings_then_merges() {
    let mut sim = sim(5, 1000);
    converge(&mut sim);
    sim.set_load(LOAD);
    sim.partition(&[1, 2], &[3, 4, 5]);
    let bound = bound(&sim);
    let both = sim.run_until(
        |s| group_formed(s, &[1, 2]) && group_formed(s, &[3, 4, 5]),
        bound,
    );
    assert!(
        both.expect("no violation"),
        "the two sides did not form their own rings"
    );
    sim.run_for(2_000).expect("no violation");
    sim.heal();
    converge(&mut sim);
    assert_eq!(sim.members(3), Some(vec![1, 2, 3, 4, 5]));
    drain(&mut sim);
}

#[test]
fn one_way_cut_then_heal() {
    let mut sim = sim(4, 1000);
    converge(&mut sim);
    sim.set_load(LOAD);
    sim.cut_one_way(2, 3);
    sim.run_for(10_000)
        .expect("no violation under a one-way cut");
    sim.heal();
    converge(&mut sim);
    drain(&mut sim);
}

#[test]
fn isolated_node_forms_a_singleton_and_returns() {
    let mut sim = sim(4, 1000);
    converge(&mut sim);
    sim.set_load(LOAD);
    sim.isolate(4);
    let bound = bound(&sim);
    let split = sim.run_until(
        |s| group_formed(s, &[4]) && group_formed(s, &[1, 2, 3]),
        bound,
    );
    assert!(
        split.expect("no violation"),
        "isolation did not split the ring"
    );
    sim.heal();
    converge(&mut sim);
    drain(&mut sim);
}

#[test]
fn restarted_node_rejoins_with_a_larger_ring_seq() {
    let mut sim = sim(3, 1000);
    converge(&mut sim);
    let before = sim.ring_id(2).expect("up");
    sim.crash(2);
    converge(&mut sim);
    sim.restart(2).expect("restart");
    converge(&mut sim);
    let after = sim.ring_id(2).expect("up");
    assert!(
        after.seq > before.seq,
        "ring seq {after} after restart, {before} before"
    );
    assert_eq!(sim.members(2), Some(vec![1, 2, 3]));
}

#[test]
fn one_mebibyte_message_is_delivered_intact_everywhere() {
    let mut sim = sim(3, 1000);
    converge(&mut sim);
    let id = sim
        .submit(2, 1 << 20, Order::Agreed)
        .expect("no violation")
        .expect("accepted");
    sim.submit(1, 100, Order::Safe)
        .expect("no violation")
        .expect("accepted");
    drain(&mut sim);
    let ring = sim.converged_ring().expect("one ring");
    sim.run_until(
        |s| {
            s.checker()
                .check_converged(
                    totem_core::sim::checker::Ring {
                        rep: ring.rep,
                        seq: ring.seq,
                    },
                    &[1, 2, 3],
                )
                .is_ok()
        },
        10_000,
    )
    .expect("no violation");
    assert_eq!(
        sim.checker().deliveries(),
        6,
        "{id} and the safe message at all three nodes"
    );
}

#[test]
fn wrong_unreachable_hint_keeps_safety_and_recovers() {
    let mut sim = sim(4, 1000);
    converge(&mut sim);
    sim.set_load(LOAD);
    sim.hint_unreachable(1, 2).expect("no violation");
    sim.hint_unreachable(3, 4).expect("no violation");
    sim.run_for(5_000).expect("no violation");
    converge(&mut sim);
    drain(&mut sim);
}

#[test]
fn a_seed_replays_exactly() {
    let spec = RunSpec {
        seed: 11,
        nodes: 5,
        profile: FaultProfile::Light,
        duration_ms: Some(3_000),
        trace: false,
        packet_bytes: None,
    };
    let (a, b) = (run(&spec), run(&spec));
    let (a, b) = (a.expect("light faults pass"), b.expect("light faults pass"));
    assert_eq!(
        (a.submitted, a.delivered, a.regular_confs, a.steps, a.sim_ms),
        (b.submitted, b.delivered, b.regular_confs, b.steps, b.sim_ms)
    );
    let other = run(&RunSpec { seed: 12, ..spec }).expect("light faults pass");
    assert_ne!(
        (a.submitted, a.steps),
        (other.submitted, other.steps),
        "another seed, another run"
    );
}
