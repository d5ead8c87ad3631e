//! A modest sweep of seeds per node count with every fault on (the CI's `totem-sim --seeds 300`
//! covers many more). Any violation fails with the seed and the command that replays it.

use totem_core::sim::swarm::{run, FaultProfile, RunSpec};

/// Seeds per node count: few enough for `cargo test` in well under a minute.
const SEEDS_PER_COUNT: u64 = 2;

fn sweep(nodes: u32, profile: FaultProfile, first_seed: u64) {
    sweep_packets(nodes, profile, first_seed, None);
}

/// [`sweep`] with a given Totem packet size.
fn sweep_packets(nodes: u32, profile: FaultProfile, first_seed: u64, packet_bytes: Option<usize>) {
    let mut failures = Vec::new();
    for seed in first_seed..first_seed + SEEDS_PER_COUNT {
        let spec = RunSpec {
            seed,
            nodes,
            profile,
            duration_ms: None,
            trace: false,
            packet_bytes,
        };
        if let Err(f) = run(&spec) {
            failures.push(format!(
                "{f}\n  replay: totem-sim --seed {seed} --nodes {nodes} --faults {profile}{} --trace",
                packet_bytes
                    .map(|b| format!(" --packet-bytes {b}"))
                    .unwrap_or_default()
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

/// The daemon's packet size (corosync's knet default, 64000 bytes): fewer, larger packets, so
/// messages up to 64 KiB travel unfragmented and many small ones share a packet.
const DAEMON_PACKET_BYTES: Option<usize> = Some(64_000);

#[test]
fn heavy_3_nodes_daemon_packets() {
    sweep_packets(3, FaultProfile::Heavy, 3300, DAEMON_PACKET_BYTES);
}

#[test]
fn heavy_7_nodes_daemon_packets() {
    sweep_packets(7, FaultProfile::Heavy, 7700, DAEMON_PACKET_BYTES);
}
