//! One seeded run: fault options drawn from the seed (swarm testing), a fault phase with client load
//! and random faults, then a liveness phase on a healed, quiet network in which one ring of all live
//! nodes must form within [`liveness_bound_ms`] and every submitted message must drain.

use std::fmt;
use std::str::FromStr;

use super::checker::{Ring, Violation};
use super::cluster::{Sim, SimError, SimOptions};
use super::net::{DelayDist, NetOptions};
use super::rng::{split_seed, SimRng, Stream};
use super::workload::LoadOptions;
use crate::totem::TotemConfig;
use crate::NodeId;

/// Which faults a run may inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultProfile {
    /// A quiet network and no faults: only client load.
    None,
    /// Loss, duplication, delay and reordering; no partitions or crashes.
    Light,
    /// Every fault kind on, intensities drawn from the seed.
    Heavy,
    /// Each fault kind on or off by the seed (swarm testing), intensities drawn too.
    Swarm,
}

impl FromStr for FaultProfile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(FaultProfile::None),
            "light" => Ok(FaultProfile::Light),
            "heavy" => Ok(FaultProfile::Heavy),
            "swarm" => Ok(FaultProfile::Swarm),
            other => Err(format!(
                "unknown fault profile {other:?} (none, light, heavy, swarm)"
            )),
        }
    }
}

impl fmt::Display for FaultProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultProfile::None => "none",
            FaultProfile::Light => "light",
            FaultProfile::Heavy => "heavy",
            FaultProfile::Swarm => "swarm",
        })
    }
}

/// The fault and load options of one run, drawn from its seed.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultOptions {
    /// `token` in ms (the other timeouts derive from it as in corosync).
    pub token_ms: u64,
    /// `token_coefficient` in ms.
    pub token_coefficient_ms: u64,
    /// Network behaviour during the fault phase.
    pub net: NetOptions,
    /// Whether the network behaviour changes during the fault phase.
    pub net_changes: bool,
    /// Symmetric partitions and isolated nodes.
    pub partitions: bool,
    /// One-way cuts.
    pub one_way: bool,
    /// Crashes.
    pub crashes: bool,
    /// Restarts of crashed nodes.
    pub restarts: bool,
    /// Clean leaves and (re)joins, and nodes that start late.
    pub leaves: bool,
    /// Wrong and right "peer unreachable" hints.
    pub hints: bool,
    /// Mean gap between faults.
    pub fault_gap_mean_ms: u64,
    /// Clock drift bound.
    pub drift_ppm_max: u32,
    /// Client load.
    pub load: LoadOptions,
}

/// (token, token_coefficient) pairs a run may use: corosync's defaults, PVE's coefficient, and
/// shorter tokens so that a run sees many reconfigurations in little simulated time.
const TOKEN_CHOICES_MS: [(u64, u64); 4] = [(3000, 650), (1000, 125), (300, 50), (200, 20)];

impl FaultOptions {
    /// Draws the options of a run.
    pub fn draw(seed: u64, profile: FaultProfile) -> FaultOptions {
        let mut rng = SimRng::new(seed, Stream::Options);
        let (token_ms, token_coefficient_ms) = TOKEN_CHOICES_MS[rng.index(TOKEN_CHOICES_MS.len())];
        let mut on = |heavy: bool| match profile {
            FaultProfile::None | FaultProfile::Light => false,
            FaultProfile::Heavy => heavy,
            FaultProfile::Swarm => rng.chance(0.5),
        };
        let (partitions, one_way, crashes, restarts, leaves, hints, net_changes) = (
            on(true),
            on(true),
            on(true),
            on(true),
            on(true),
            on(true),
            on(true),
        );
        let noisy = profile != FaultProfile::None;
        let net = if noisy {
            draw_net(&mut rng, token_ms)
        } else {
            NetOptions::QUIET
        };
        let load = LoadOptions {
            rate_hz: rng.range_u64(10, 200) as f64,
            safe_fraction: rng.unit() * 0.5,
            small_max_bytes: 256,
            large_fraction: rng.unit() * 0.05,
            huge_fraction: if rng.chance(0.5) { 0.001 } else { 0.0 },
        };
        FaultOptions {
            token_ms,
            token_coefficient_ms,
            net,
            net_changes,
            partitions,
            one_way,
            crashes,
            restarts,
            leaves,
            hints,
            fault_gap_mean_ms: token_ms * rng.range_u64(1, 4),
            drift_ppm_max: if noisy {
                rng.range_u64(0, 200) as u32
            } else {
                0
            },
            load,
        }
    }

    /// The totem configuration of the run for `nodes`.
    pub fn totem(&self, nodes: u32) -> TotemConfig {
        let ids: Vec<NodeId> = (1..=nodes).collect();
        TotemConfig {
            token_ms: self.token_ms,
            token_coefficient_ms: self.token_coefficient_ms,
            ..TotemConfig::for_nodes(&ids)
        }
    }
}

/// A faulty network: up to 20 % loss, 10 % duplication, delay up to a tenth of the token.
fn draw_net(rng: &mut SimRng, token_ms: u64) -> NetOptions {
    let delay_cap_us = token_ms * 100;
    let delay = match rng.index(3) {
        0 => DelayDist::LAN,
        1 => DelayDist::Uniform {
            min_us: 20,
            max_us: rng.range_u64(100, 5_000).min(delay_cap_us),
        },
        _ => DelayDist::ExpTail {
            min_us: 50,
            mean_extra_us: rng.range_u64(50, 2_000),
            max_us: delay_cap_us,
        },
    };
    NetOptions {
        loss: rng.unit() * 0.2,
        duplicate: rng.unit() * 0.1,
        delay,
        reorder: rng.chance(0.5),
    }
}

/// The bound within which one ring of all live nodes must form once the network is healed and
/// quiet: finishing a gather already under way (consensus), the merge timer, a second gather that
/// may time out once (2 × consensus), token loss detection on a ring that lost members (token),
/// twice for commit and recovery rotations, plus 1 s of slack for delays:
/// `2 · token + 3 · consensus + merge + 1000 ms`, token being the effective token.
pub fn liveness_bound_ms(cfg: &TotemConfig) -> u64 {
    2 * cfg.effective_token_ms() + 3 * cfg.effective_consensus_ms() + cfg.merge_ms + 1000
}

/// How long queued messages may take to drain once the ring formed: 2 tokens plus 10 s (1 MiB
/// messages, a full submit queue per node, at window_size messages per rotation).
pub fn drain_bound_ms(cfg: &TotemConfig) -> u64 {
    2 * cfg.effective_token_ms() + 10_000
}

/// The fault phase length when not given: 6 effective tokens, at least 3 s (enough for several
/// reconfigurations, short enough for 300 seeds in a few minutes on 2 cores).
pub fn default_duration_ms(cfg: &TotemConfig) -> u64 {
    (6 * cfg.effective_token_ms()).max(3_000)
}

/// What one run is.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The seed.
    pub seed: u64,
    /// Node count.
    pub nodes: u32,
    /// Fault profile.
    pub profile: FaultProfile,
    /// Fault phase length; `None` for [`default_duration_ms`].
    pub duration_ms: Option<u64>,
    /// Print every event.
    pub trace: bool,
    /// Totem packet size (`max_payload_bytes`); `None` for the core's default (one Ethernet
    /// frame). The daemon runs with corosync's knet default, 64000 bytes.
    pub packet_bytes: Option<usize>,
}

/// What a passing run did.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Node count.
    pub nodes: u32,
    /// Messages submitted.
    pub submitted: u64,
    /// Deliveries (all nodes).
    pub delivered: u64,
    /// Regular configurations installed (all nodes).
    pub regular_confs: u64,
    /// Time from heal to one ring of all live nodes.
    pub reform_ms: u64,
    /// The bound it had to meet.
    pub reform_bound_ms: u64,
    /// Simulated time.
    pub sim_ms: u64,
    /// Inputs handed to cores.
    pub steps: u64,
    /// The options drawn.
    pub faults: FaultOptions,
}

/// A failed run.
#[derive(Debug, thiserror::Error)]
#[error("seed {seed}, {nodes} nodes, at {at_ms} ms: {violation}")]
pub struct RunFailure {
    /// The seed.
    pub seed: u64,
    /// Node count.
    pub nodes: u32,
    /// Simulated time of the violation.
    pub at_ms: u64,
    /// What failed.
    pub violation: Violation,
}

/// Node count for `seed` in `lo..=hi`, from its own stream so that `--nodes N` replays the run.
pub fn nodes_for_seed(seed: u64, lo: u32, hi: u32) -> u32 {
    if hi <= lo {
        return lo;
    }
    let span = u64::from(hi - lo) + 1;
    lo + u32::try_from(split_seed(seed, 0xC0DE) % span).unwrap_or(0)
}

/// Runs one seed.
pub fn run(spec: &RunSpec) -> Result<RunReport, RunFailure> {
    let faults = FaultOptions::draw(spec.seed, spec.profile);
    let mut cfg = faults.totem(spec.nodes);
    if let Some(bytes) = spec.packet_bytes {
        cfg.max_payload_bytes = bytes;
    }
    let mut fault_rng = SimRng::new(spec.seed, Stream::Faults);
    let mut options = SimOptions::new(spec.seed, spec.nodes);
    options.totem = cfg.clone();
    options.net = faults.net;
    options.load = faults.load;
    options.drift_ppm_max = faults.drift_ppm_max;
    options.trace = spec.trace;
    if faults.leaves && spec.nodes > 1 {
        options.start_stopped = (1..=spec.nodes)
            .filter(|_| fault_rng.chance(0.15))
            .collect::<Vec<NodeId>>();
    }
    let fail = |sim: &Sim, violation: Violation| RunFailure {
        seed: spec.seed,
        nodes: spec.nodes,
        at_ms: sim.now_ms(),
        violation,
    };
    let mut sim = Sim::new(options).map_err(|e| RunFailure {
        seed: spec.seed,
        nodes: spec.nodes,
        at_ms: 0,
        violation: Violation::Core {
            node: 0,
            what: e.to_string(),
        },
    })?;
    let duration_ms = spec
        .duration_ms
        .unwrap_or_else(|| default_duration_ms(&cfg));
    fault_phase(&mut sim, &faults, &mut fault_rng, duration_ms).map_err(|v| fail(&sim, v))?;
    let reform_ms = liveness_phase(&mut sim, &mut fault_rng).map_err(|v| fail(&sim, v))?;
    let checker = sim.checker();
    Ok(RunReport {
        seed: spec.seed,
        nodes: spec.nodes,
        submitted: checker.submissions() as u64,
        delivered: checker.deliveries(),
        regular_confs: checker.regular_confs(),
        reform_ms,
        reform_bound_ms: liveness_bound_ms(&cfg),
        sim_ms: sim.now_ms(),
        steps: sim.stats().steps,
        faults,
    })
}

fn fault_phase(
    sim: &mut Sim,
    faults: &FaultOptions,
    rng: &mut SimRng,
    duration_ms: u64,
) -> Result<(), Violation> {
    let end_ms = sim.now_ms() + duration_ms;
    loop {
        let gap_ms = (rng.exp(faults.fault_gap_mean_ms as f64) as u64).max(1);
        let next_ms = (sim.now_ms() + gap_ms).min(end_ms);
        sim.run_for(next_ms - sim.now_ms())?;
        if sim.now_ms() >= end_ms {
            return Ok(());
        }
        inject_fault(sim, faults, rng)?;
    }
}

#[derive(Clone, Copy, Debug)]
enum FaultKind {
    Partition,
    Isolate,
    OneWay,
    Heal,
    Crash,
    Restart,
    Leave,
    Join,
    Hint,
    NetChange,
}

fn inject_fault(sim: &mut Sim, faults: &FaultOptions, rng: &mut SimRng) -> Result<(), Violation> {
    let mut kinds = Vec::new();
    if faults.partitions {
        kinds.extend([FaultKind::Partition, FaultKind::Isolate, FaultKind::Heal]);
    }
    if faults.one_way {
        kinds.extend([FaultKind::OneWay, FaultKind::Heal]);
    }
    if faults.crashes {
        kinds.push(FaultKind::Crash);
    }
    if faults.restarts {
        kinds.push(FaultKind::Restart);
    }
    if faults.leaves {
        kinds.extend([FaultKind::Leave, FaultKind::Join]);
    }
    if faults.hints {
        kinds.push(FaultKind::Hint);
    }
    if faults.net_changes {
        kinds.push(FaultKind::NetChange);
    }
    if kinds.is_empty() {
        return Ok(());
    }
    let all = sim.node_ids();
    let pick = |rng: &mut SimRng, from: &[NodeId]| -> Option<NodeId> {
        (!from.is_empty()).then(|| from[rng.index(from.len())])
    };
    match kinds[rng.index(kinds.len())] {
        FaultKind::Partition if all.len() > 1 => {
            let mut shuffled = all.clone();
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.index(i + 1));
            }
            let split = 1 + rng.index(shuffled.len() - 1);
            let (left, right) = shuffled.split_at(split);
            sim.partition(left, right);
        }
        FaultKind::Isolate => {
            if let Some(n) = pick(rng, &all) {
                sim.isolate(n);
            }
        }
        FaultKind::OneWay if all.len() > 1 => {
            let from = all[rng.index(all.len())];
            let others: Vec<NodeId> = all.iter().copied().filter(|&n| n != from).collect();
            if let Some(to) = pick(rng, &others) {
                sim.cut_one_way(from, to);
            }
        }
        FaultKind::Heal => sim.heal(),
        FaultKind::Crash => {
            if let Some(n) = pick(rng, &sim.live_nodes()) {
                sim.crash(n);
            }
        }
        FaultKind::Restart => {
            if let Some(n) = pick(rng, &sim.crashed_nodes()) {
                start_or_fail(sim.restart(n))?;
            }
        }
        FaultKind::Leave => {
            if let Some(n) = pick(rng, &sim.live_nodes()) {
                sim.leave(n)?;
            }
        }
        FaultKind::Join => {
            if let Some(n) = pick(rng, &sim.stopped_nodes()) {
                start_or_fail(sim.join(n))?;
            }
        }
        FaultKind::Hint if all.len() > 1 => {
            let live = sim.live_nodes();
            if let Some(n) = pick(rng, &live) {
                let others: Vec<NodeId> = all.iter().copied().filter(|&p| p != n).collect();
                if let Some(peer) = pick(rng, &others) {
                    // Both transport hints, each possibly wrong: a failover of the path to
                    // `peer`, or `peer` unreachable.
                    if rng.index(2) == 0 {
                        sim.hint_path_changed(n, peer)?;
                    } else {
                        sim.hint_unreachable(n, peer)?;
                    }
                }
            }
        }
        FaultKind::NetChange => {
            let net = draw_net(rng, faults.token_ms);
            sim.set_net(net);
        }
        _ => {}
    }
    Ok(())
}

fn start_or_fail(result: Result<(), SimError>) -> Result<(), Violation> {
    result.map_err(|e| Violation::Core {
        node: 0,
        what: e.to_string(),
    })
}

/// Heals the network, brings back about half of the stopped nodes, stops the load, and checks
/// that one ring of all live nodes forms in time and every message drains. Returns the re-form time.
fn liveness_phase(sim: &mut Sim, rng: &mut SimRng) -> Result<u64, Violation> {
    sim.heal();
    sim.set_net(NetOptions::QUIET);
    sim.set_load(LoadOptions::OFF);
    for n in sim.crashed_nodes() {
        if rng.chance(0.5) {
            start_or_fail(sim.restart(n))?;
        }
    }
    for n in sim.stopped_nodes() {
        if rng.chance(0.5) {
            start_or_fail(sim.join(n))?;
        }
    }
    if sim.live_nodes().is_empty() {
        // Everyone is down: bring one node back so that there is a ring to check.
        if let Some(&n) = sim.crashed_nodes().first() {
            start_or_fail(sim.restart(n))?;
        } else if let Some(&n) = sim.stopped_nodes().first() {
            start_or_fail(sim.join(n))?;
        }
    }
    let cfg = sim.totem_config().clone();
    let healed_ms = sim.now_ms();
    let bound_ms = liveness_bound_ms(&cfg);
    if !sim.run_until(|s| s.converged_ring().is_some(), bound_ms)? {
        let what = describe_unconverged(sim, bound_ms);
        // Tell a slow ring from one that never forms: keep going up to 10 bounds for the report.
        let late = sim.run_until(|s| s.converged_ring().is_some(), 9 * bound_ms)?;
        let outcome = if late {
            format!(
                "it formed late, {} ms after the heal",
                sim.now_ms() - healed_ms
            )
        } else {
            format!("none formed in {} ms either", 10 * bound_ms)
        };
        return Err(Violation::Liveness {
            what: format!("{what}; {outcome}"),
        });
    }
    let reform_ms = sim.now_ms() - healed_ms;
    let drain_ms = drain_bound_ms(&cfg);
    if !sim.run_until(|s| s.checker().pending_self() == 0, drain_ms)? {
        sim.checker().check_self_delivery()?;
    }
    let Some(ring) = sim.converged_ring() else {
        return Err(Violation::Liveness {
            what: "the ring of all live nodes broke up on a quiet network".into(),
        });
    };
    let ring = Ring {
        rep: ring.rep,
        seq: ring.seq,
    };
    let live = sim.live_nodes();
    if !sim.run_until(
        |s| s.checker().check_converged(ring, &live).is_ok(),
        drain_ms,
    )? {
        sim.checker().check_converged(ring, &live)?;
    }
    Ok(reform_ms)
}

fn describe_unconverged(sim: &Sim, bound_ms: u64) -> String {
    let states: Vec<String> = sim
        .live_nodes()
        .iter()
        .map(|&n| {
            format!(
                "n{n}: {:?} ring {} members {:?}",
                sim.state(n).map(|s| format!("{s:?}")).unwrap_or_default(),
                sim.ring_id(n).map(|r| r.to_string()).unwrap_or_default(),
                sim.members(n).unwrap_or_default()
            )
        })
        .collect();
    format!(
        "no single ring of live nodes {:?} within {bound_ms} ms of the heal; {}",
        sim.live_nodes(),
        states.join("; ")
    )
}
