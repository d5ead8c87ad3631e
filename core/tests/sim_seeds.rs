//! A modest sweep of seeds per node count with every fault on (the CI's `totem-sim --seeds 300`
//! covers many more). Any violation fails with the seed and the command that replays it.

use totem_core::sim::swarm::{run, FaultProfile, RunSpec};

/// Seeds per node count: few enough for `cargo test` in well under a minute.
const SEEDS_PER_COUNT: u64 = 2;

fn sweep(nodes: u32, profile: FaultProfile, first_seed: u64) {
    let mut failures = Vec::new();
    for seed in first_seed..first_seed + SEEDS_PER_COUNT {
        let spec = RunSpec {
            seed,
            nodes,
            profile,
            duration_ms: None,
            trace: false,
        };
        if let Err(f) = run(&spec) {
            failures.push(format!(
                "{f}\n  replay: totem-sim --seed {seed} --nodes {nodes} --faults {profile} --trace"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn heavy_1_node() {
    sweep(1, FaultProfile::Heavy, 100);
}

#[test]
fn heavy_2_nodes() {
    sweep(2, FaultProfile::Heavy, 200);
}

#[test]
fn heavy_3_nodes() {
    sweep(3, FaultProfile::Heavy, 300);
}

#[test]
fn heavy_5_nodes() {
    sweep(5, FaultProfile::Heavy, 500);
}

#[test]
fn heavy_8_nodes() {
    sweep(8, FaultProfile::Heavy, 800);
}

#[test]
fn swarm_4_nodes() {
    sweep(4, FaultProfile::Swarm, 400);
}

#[test]
fn heavy_16_nodes() {
    sweep(16, FaultProfile::Heavy, 1600);
}

#[test]
fn light_32_nodes() {
    sweep(32, FaultProfile::Light, 3200);
}
