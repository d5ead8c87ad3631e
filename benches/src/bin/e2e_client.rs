//! `e2e_client`: the totemd side of the end-to-end benchmark (benches/e2e/run), a process-group
//! client on `totem_client::Client`. It mirrors benches/e2e/cpg_e2e.c (the libcpg client for
//! corosync): same modes, same arguments, same one-line `key=value` output.
//!
//! * `tput NODES SIZE SECS`: every node sends SIZE-byte agreed messages as fast as the daemon
//!   accepts them (posted multicasts until `try_multicast` says TryAgain, which is
//!   back-pressure, as the libcpg client loops on CS_ERR_TRY_AGAIN); prints the agreed
//!   deliveries this node received per second and MB/s.
//! * `lat NODES RATE SECS`: sends timestamped messages at RATE/s; prints the self-delivery
//!   latency p50/p99/p99.9 (µs), the longest gap between two deliveries (ms) and the wall-clock
//!   time of the first membership change that removed a member (unix ns, 0 if none).
//!
//! Both wait until NODES processes are in the group first, so every node measures one window.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use totem_client::proto::{Event, GroupName, Ordering};
use totem_client::Client;

/// The group both benchmark clients use.
const GROUP: &str = "e2e";
/// How long to wait for every node's client to join before giving up.
const JOIN_WITHIN: Duration = Duration::from_secs(60);
/// Longest wait for the socket when the daemon said TryAgain and nothing is there to read.
const TRY_AGAIN_WAIT: Duration = Duration::from_millis(10);
/// Bytes of the send timestamp at the start of every payload.
const STAMP_BYTES: usize = 8;

#[derive(Parser, Debug)]
#[command(about = "End-to-end benchmark client for totemd (issue 8)")]
struct Args {
    /// totemd's control socket.
    #[arg(long)]
    socket: PathBuf,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Throughput with every node sending.
    Tput {
        nodes: usize,
        size: usize,
        secs: f64,
    },
    /// Self-delivery latency at a fixed rate.
    Lat { nodes: usize, rate: u64, secs: f64 },
}

#[derive(Default)]
struct Stats {
    delivered: u64,
    delivered_bytes: u64,
    last_delivery: Option<Instant>,
    max_gap: Duration,
    first_leave_unix_ns: u128,
    try_again: u64,
    accepted: u64,
    refused: u64,
    /// Own messages delivered back.
    own: u64,
    samples_ns: Vec<u64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut client = Client::connect(&args.socket)
        .with_context(|| format!("connect {}", args.socket.display()))?;
    let me = client.status().context("status")?.local_node;
    let pid = std::process::id();
    let group = GroupName::new(GROUP).context("group name")?;
    client.join(&group).context("join")?;
    let (nodes, secs) = match args.mode {
        Mode::Tput { nodes, secs, .. } | Mode::Lat { nodes, secs, .. } => (nodes, secs),
    };
    wait_members(&mut client, nodes)?;
    let (size, interval) = match args.mode {
        Mode::Tput { size, .. } => (size.max(STAMP_BYTES), None),
        Mode::Lat { rate, .. } => (64, Some(Duration::from_nanos(1_000_000_000 / rate.max(1)))),
    };
    let base = Instant::now();
    let mut payload = vec![0u8; size];
    let mut stats = Stats::default();
    let end = base + Duration::from_secs_f64(secs);
    let mut next = base;
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next {
            let stamp = u64::try_from(now.duration_since(base).as_nanos()).unwrap_or(u64::MAX);
            // A zero stamp would read as "no stamp" on delivery.
            payload[..STAMP_BYTES].copy_from_slice(&stamp.max(1).to_le_bytes());
            match client.try_multicast(&group, Ordering::Agreed, &payload) {
                Ok(_) => {
                    stats.accepted += 1;
                    next = match interval {
                        Some(i) => (next + i).max(now),
                        // Throughput: send again at once; read what is there first.
                        None => now,
                    };
                    while let Some(event) = client.try_next_event()? {
                        record(&mut stats, event, base, me, pid);
                    }
                    continue;
                }
                Err(e) if e.is_try_again() => stats.try_again += 1,
                Err(e) => return Err(e).context("multicast"),
            }
        }
        // Wait for a delivery, for the daemon to take more (TryAgain), or for the next send.
        let wait = if now >= next {
            TRY_AGAIN_WAIT
        } else {
            next - now
        };
        if let Some(event) =
            client.next_event(Some(wait.min(end.saturating_duration_since(now))))?
        {
            record(&mut stats, event, base, me, pid);
            while let Some(event) = client.try_next_event()? {
                record(&mut stats, event, base, me, pid);
            }
        }
    }
    let elapsed = base.elapsed().as_secs_f64();
    stats.samples_ns.sort_unstable();
    let pct = |p: f64| -> f64 {
        let s = &stats.samples_ns;
        if s.is_empty() {
            return 0.0;
        }
        let i = (p * (s.len() - 1) as f64) as usize;
        s[i] as f64 / 1000.0
    };
    println!(
        "msgs_per_s={:.1} mb_per_s={:.3} p50_us={:.1} p99_us={:.1} p999_us={:.1} max_gap_ms={:.1} confchg_unix_ns={} samples={} accepted={} try_again={} refused={}",
        stats.delivered as f64 / elapsed,
        stats.delivered_bytes as f64 / elapsed / 1e6,
        pct(0.50),
        pct(0.99),
        pct(0.999),
        stats.max_gap.as_secs_f64() * 1e3,
        stats.first_leave_unix_ns,
        stats.samples_ns.len(),
        stats.accepted,
        stats.try_again,
        stats.refused
    );
    Ok(())
}

fn wait_members(client: &mut Client, nodes: usize) -> Result<()> {
    let deadline = Instant::now() + JOIN_WITHIN;
    loop {
        if Instant::now() > deadline {
            bail!("fewer than {nodes} members joined within {JOIN_WITHIN:?}");
        }
        if let Some(Event::GroupMembership(change)) =
            client.next_event(Some(Duration::from_millis(100)))?
        {
            if change.members.len() >= nodes {
                return Ok(());
            }
        }
    }
}

fn record(stats: &mut Stats, event: Event, base: Instant, me: u32, pid: u32) {
    let now = Instant::now();
    match event {
        Event::Delivery(d) => {
            stats.delivered += 1;
            stats.delivered_bytes += d.payload.len() as u64;
            if let Some(last) = stats.last_delivery {
                stats.max_gap = stats.max_gap.max(now - last);
            }
            stats.last_delivery = Some(now);
            if d.sender.node == me && d.sender.pid == pid && d.payload.len() >= STAMP_BYTES {
                stats.own += 1;
                let mut stamp = [0u8; STAMP_BYTES];
                stamp.copy_from_slice(&d.payload[..STAMP_BYTES]);
                let sent = u64::from_le_bytes(stamp);
                let at = u64::try_from(now.duration_since(base).as_nanos()).unwrap_or(u64::MAX);
                if sent != 0 {
                    stats.samples_ns.push(at.saturating_sub(sent));
                }
            }
        }
        Event::MulticastRefused(_) => stats.refused += 1,
        Event::GroupMembership(change)
            if !change.left.is_empty() && stats.first_leave_unix_ns == 0 =>
        {
            stats.first_leave_unix_ns = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
        }
        _ => {}
    }
}
