//! Agreed messages delivered per second by the pure Totem core: 3, 5 and 16 nodes in one process,
//! 64-byte and 1 KiB messages, the network simulated as instant (1 ns, no loss), checkers off.
//! One criterion element is one message delivered at every node (ordered once, delivered N times).
//!
//! `cargo bench -p totem-core --bench totem_throughput`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use totem_core::sim::cluster::{Sim, SimOptions};
use totem_core::sim::net::NetOptions;
use totem_core::sim::swarm::liveness_bound_ms;
use totem_core::totem::Order;

/// Messages per measured batch, spread over the nodes (below the 1024-message submit queue).
const BATCH_MESSAGES: u64 = 2_000;
/// Simulated time a batch may take before the benchmark gives up.
const BATCH_BOUND_MS: u64 = 600_000;

fn formed_cluster(nodes: u32) -> Sim {
    let mut options = SimOptions::new(1, nodes);
    options.net = NetOptions::INSTANT;
    options.checks = false;
    let mut sim = Sim::new(options).expect("valid options");
    let bound = liveness_bound_ms(sim.totem_config());
    let formed = sim
        .run_until(|s| s.converged_ring().is_some(), bound)
        .expect("no violation");
    assert!(formed, "{nodes} nodes did not form a ring");
    sim
}

/// Submits a batch round-robin over the nodes and runs until every node delivered all of it.
fn deliver_batch(sim: &mut Sim, nodes: u32, size: usize) {
    let target = sim.stats().delivered + BATCH_MESSAGES * u64::from(nodes);
    let mut submitted = 0;
    while submitted < BATCH_MESSAGES {
        let node = 1 + u32::try_from(submitted % u64::from(nodes)).expect("small");
        match sim.submit(node, size, Order::Agreed).expect("no violation") {
            Some(_) => submitted += 1,
            // Queue full: let the ring drain a little.
            None => sim.run_for(1).expect("no violation"),
        }
    }
    let done = sim
        .run_until(|s| s.stats().delivered >= target, BATCH_BOUND_MS)
        .expect("no violation");
    assert!(done, "batch not delivered");
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("totem_agreed_delivery");
    group.throughput(Throughput::Elements(BATCH_MESSAGES));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for nodes in [3u32, 5, 16] {
        for size in [64usize, 1024] {
            let mut sim = formed_cluster(nodes);
            group.bench_with_input(
                BenchmarkId::new(format!("{nodes}_nodes"), format!("{size}B")),
                &size,
                |b, &size| {
                    b.iter_custom(|iters| {
                        let started = Instant::now();
                        for _ in 0..iters {
                            deliver_batch(&mut sim, nodes, size);
                        }
                        started.elapsed()
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
