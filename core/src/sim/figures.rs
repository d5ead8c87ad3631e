//! Figures from the simulator with default timeouts: time from a node crash to the new regular
//! configuration at every survivor, beside corosync's formula token + (n−2)·650 + consensus.

use super::checker::Violation;
use super::cluster::{Sim, SimOptions};
use super::net::NetOptions;
use super::swarm::liveness_bound_ms;
use crate::totem::TotemConfig;
use crate::NodeId;

/// Nanoseconds per millisecond.
const NS_PER_MS: u64 = 1_000_000;
/// Quiet time after the first ring forms, before the crash.
const SETTLE_MS: u64 = 2_000;

/// One measurement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashFigure {
    /// Cluster size.
    pub nodes: u32,
    /// The node crashed.
    pub victim: NodeId,
    /// Crash → last survivor's regular configuration, simulated ms.
    pub measured_ms: u64,
    /// token + (n−2)·coefficient.
    pub token_ms: u64,
    /// 1.2 × that.
    pub consensus_ms: u64,
}

impl CrashFigure {
    /// corosync's expectation: effective token + consensus.
    pub fn formula_ms(&self) -> u64 {
        self.token_ms + self.consensus_ms
    }
}

/// Forms a ring of `nodes` with default timeouts on a quiet LAN, crashes `victim`, and measures
/// how long until every survivor delivered the regular configuration without it.
pub fn crash_to_regular(seed: u64, nodes: u32, victim: NodeId) -> Result<CrashFigure, Violation> {
    let mut options = SimOptions::new(seed, nodes);
    options.net = NetOptions::QUIET;
    let mut sim = Sim::new(options).map_err(|e| Violation::Core {
        node: 0,
        what: e.to_string(),
    })?;
    let cfg: TotemConfig = sim.totem_config().clone();
    let bound = liveness_bound_ms(&cfg);
    if !sim.run_until(|s| s.converged_ring().is_some(), bound)? {
        return Err(Violation::Liveness {
            what: format!("{nodes} nodes did not form one ring in {bound} ms"),
        });
    }
    sim.run_for(SETTLE_MS)?;
    let crashed_at = sim.now_ns();
    sim.crash(victim);
    let survivors: Vec<NodeId> = sim.live_nodes();
    let reformed = |s: &Sim| {
        survivors.iter().all(|&n| {
            s.last_regular(n)
                .is_some_and(|c| c.members == survivors && c.at_ns > crashed_at)
        })
    };
    if !sim.run_until(reformed, bound)? {
        return Err(Violation::Liveness {
            what: format!("survivors of {victim}'s crash did not re-form in {bound} ms"),
        });
    }
    let last = survivors
        .iter()
        .filter_map(|&n| sim.last_regular(n))
        .map(|c| c.at_ns)
        .max()
        .unwrap_or(crashed_at);
    Ok(CrashFigure {
        nodes,
        victim,
        measured_ms: (last - crashed_at) / NS_PER_MS,
        token_ms: cfg.effective_token_ms(),
        consensus_ms: cfg.effective_consensus_ms(),
    })
}
