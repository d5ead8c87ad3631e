//! `totem-sim`: runs the deterministic Totem simulator over many seeds, replays one seed with a
//! trace, or prints the crash-to-new-configuration figures.
//!
//! ```text
//! totem-sim --seeds 1000 --nodes 2..16 --faults heavy     # many seeds, summary, exit 1 on violation
//! totem-sim --seed 42 --nodes 5 --faults heavy --trace    # replay one seed, every event on stderr
//! totem-sim --figures                                     # crash → new ring, 3/5/16 nodes
//! ```
#![forbid(unsafe_code)]

use std::ops::RangeInclusive;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use clap::Parser;
use totem_core::sim::figures::crash_to_regular;
use totem_core::sim::swarm::{nodes_for_seed, run, FaultProfile, RunReport, RunSpec};

/// Threads at most: the CI machine has two cores.
const JOBS_MAX: usize = 2;

#[derive(Parser, Debug)]
#[command(
    name = "totem-sim",
    about = "Deterministic simulator for the Totem core"
)]
struct Args {
    /// Number of seeds to run, starting at --first-seed.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed of a --seeds run.
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Run exactly this seed (replay).
    #[arg(long)]
    seed: Option<u64>,
    /// Node count or range, e.g. 5 or 2..16 (the count of each seed is drawn from the seed).
    #[arg(long, default_value = "2..16", value_parser = parse_nodes)]
    nodes: RangeInclusive<u32>,
    /// Fault profile: none, light, heavy (every fault on), swarm (fault kinds drawn per seed).
    #[arg(long, default_value = "heavy")]
    faults: FaultProfile,
    /// Length of the fault phase in simulated ms (default: 6 effective tokens, at least 3 s).
    #[arg(long)]
    duration_ms: Option<u64>,
    /// Worker threads (at most 2).
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Totem packet size in bytes (`max_payload_bytes`, 256..=64000); default: the core's
    /// one-Ethernet-frame size. The daemon runs with 64000 (corosync's knet default).
    #[arg(long)]
    packet_bytes: Option<usize>,
    /// Print every event of the run to stderr (use with --seed).
    #[arg(long)]
    trace: bool,
    /// Print the crash → new regular configuration figures for 3, 5 and 16 nodes and exit.
    #[arg(long)]
    figures: bool,
    /// Print one line per seed.
    #[arg(long, short)]
    verbose: bool,
}

fn parse_nodes(s: &str) -> Result<RangeInclusive<u32>, String> {
    let parse = |x: &str| {
        x.trim()
            .parse::<u32>()
            .map_err(|e| format!("bad node count {x:?}: {e}"))
    };
    let (lo, hi) = match s.split_once("..") {
        Some((lo, hi)) => (parse(lo)?, parse(hi.trim_start_matches('='))?),
        None => {
            let n = parse(s)?;
            (n, n)
        }
    };
    if lo == 0 || hi > 32 || lo > hi {
        return Err(format!("node range {lo}..{hi} must lie within 1..32"));
    }
    Ok(lo..=hi)
}

#[derive(Default)]
struct Totals {
    seeds: u64,
    submitted: u64,
    delivered: u64,
    regular_confs: u64,
    sim_ms: u64,
    worst_reform: Option<(u64, u64, u32, u64)>,
    failures: Vec<String>,
}

impl Totals {
    fn add(&mut self, r: &RunReport) {
        self.seeds += 1;
        self.submitted += r.submitted;
        self.delivered += r.delivered;
        self.regular_confs += r.regular_confs;
        self.sim_ms += r.sim_ms;
        if !matches!(self.worst_reform, Some((ms, ..)) if ms >= r.reform_ms) {
            self.worst_reform = Some((r.reform_ms, r.seed, r.nodes, r.reform_bound_ms));
        }
    }
}

fn replay_command(args: &Args, seed: u64, nodes: u32) -> String {
    let duration = args
        .duration_ms
        .map(|d| format!(" --duration-ms {d}"))
        .unwrap_or_default();
    let packet = args
        .packet_bytes
        .map(|b| format!(" --packet-bytes {b}"))
        .unwrap_or_default();
    format!(
        "totem-sim --seed {seed} --nodes {nodes} --faults {}{duration}{packet} --trace",
        args.faults
    )
}

fn run_one(args: &Args, seed: u64, totals: &Mutex<Totals>) {
    let nodes = nodes_for_seed(seed, *args.nodes.start(), *args.nodes.end());
    let spec = RunSpec {
        seed,
        nodes,
        profile: args.faults,
        duration_ms: args.duration_ms,
        trace: args.trace,
        packet_bytes: args.packet_bytes,
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| run(&spec)));
    let mut t = totals.lock().unwrap_or_else(|p| p.into_inner());
    match outcome {
        Ok(Ok(report)) => {
            if args.verbose {
                println!(
                    "seed {seed} nodes {nodes}: {} submitted, {} delivered, {} regular confs, re-form {} ms (bound {}), {} sim ms, {} steps, token {} ms",
                    report.submitted, report.delivered, report.regular_confs, report.reform_ms,
                    report.reform_bound_ms, report.sim_ms, report.steps, report.faults.token_ms
                );
            }
            t.add(&report);
        }
        Ok(Err(failure)) => {
            t.seeds += 1;
            t.failures.push(format!(
                "VIOLATION {failure}\n  replay: {}",
                replay_command(args, seed, nodes)
            ));
        }
        Err(panic) => {
            t.seeds += 1;
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            t.failures.push(format!(
                "VIOLATION seed {seed}, {nodes} nodes: panic: {what}\n  replay: {}",
                replay_command(args, seed, nodes)
            ));
        }
    }
}

fn figures() -> ExitCode {
    println!("crash -> new regular configuration at every survivor (default timeouts, quiet LAN)");
    println!(
        "{:>5} {:>8} {:>12} {:>10} {:>12} {:>22}",
        "nodes", "victim", "measured ms", "token ms", "consensus ms", "token+consensus ms"
    );
    for nodes in [3u32, 5, 16] {
        for victim in [nodes, 1] {
            match crash_to_regular(1, nodes, victim) {
                Ok(f) => println!(
                    "{:>5} {:>8} {:>12} {:>10} {:>12} {:>22}",
                    f.nodes,
                    if victim == 1 {
                        "1 (rep)".to_string()
                    } else {
                        victim.to_string()
                    },
                    f.measured_ms,
                    f.token_ms,
                    f.consensus_ms,
                    f.formula_ms()
                ),
                Err(v) => {
                    println!("{nodes} nodes, victim {victim}: {v}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.figures {
        return figures();
    }
    let started = Instant::now();
    let totals = Mutex::new(Totals::default());
    let (first, count) = match args.seed {
        Some(s) => (s, 1),
        None => (args.first_seed, args.seeds),
    };
    let next = AtomicU64::new(0);
    let jobs = args.jobs.clamp(1, JOBS_MAX);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                run_one(&args, first.wrapping_add(i), &totals);
            });
        }
    });
    let t = totals.into_inner().unwrap_or_else(|p| p.into_inner());
    let wall = started.elapsed();
    println!(
        "seeds run: {} (nodes {}..{}, faults {}, {} jobs)",
        t.seeds,
        args.nodes.start(),
        args.nodes.end(),
        args.faults,
        jobs
    );
    println!(
        "messages submitted: {}, delivered (all nodes): {}",
        t.submitted, t.delivered
    );
    println!(
        "configurations formed (regular, per node): {}",
        t.regular_confs
    );
    if let Some((ms, seed, nodes, bound)) = t.worst_reform {
        println!("worst time to re-form after heal: {ms} ms (seed {seed}, {nodes} nodes; bound {bound} ms)");
    }
    println!(
        "simulated: {:.1} s; wall: {:.1} s",
        t.sim_ms as f64 / 1000.0,
        wall.as_secs_f64()
    );
    println!("violations: {}", t.failures.len());
    for f in &t.failures {
        println!("{f}");
    }
    if t.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
