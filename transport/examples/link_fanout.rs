//! `link_fanout`: a Totem-like fan-out over veth and a bridge, with UDP GSO/GRO on and off.
//!
//! Builds three network namespaces with `tests/netns/netns.sh` (one bridge per link, the
//! end-to-end benchmark's topology) and runs, in one process, a sender in node 1 and a receiver
//! in each of nodes 2 and 3, each thread inside its node's namespace with its own [`LinkIo`]. The
//! sender repeats one batch as a Totem node sends per token visit with corosync's defaults
//! (window_size 50, max_messages 17): `--per-peer` frames of `--size` bytes to node 2 and node 3
//! interleaved, then a 100-byte token to node 2. It never waits (open loop, like the raw
//! baseline of `link-pps`), so what the receivers cannot take is dropped by the kernel; the
//! figure is datagrams delivered to the two receivers per second, with the CPU time each side
//! spent per delivered datagram. GSO on and off alternate within each round; medians are shown.
//!
//! Root only (namespaces). Usage:
//!
//! `cargo run --release -p totem-transport --example link_fanout -- [--size 1450] [--per-peer 17]
//! [--duration 3] [--runs 3] [--io uring|mmsg]`
#![allow(clippy::unwrap_used)] // a benchmark binary: a failed set-up ends it

use std::error::Error;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use totem_transport::io::{self, Backend, Incoming, IoOptions, LinkIo};

/// Warm-up before the window opens: sockets open, buffers fill, the kernel settles.
const WARM_UP: Duration = Duration::from_millis(300);
/// Longest receive wait, so a receiver notices the end of a run.
const POLL: Duration = Duration::from_millis(20);
/// Bytes of the token frame that ends each batch.
const TOKEN_BYTES: usize = 100;

struct Args {
    size: usize,
    per_peer: usize,
    duration: Duration,
    runs: usize,
    backend: Backend,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut args = Args {
        size: 1450,
        per_peer: 17,
        duration: Duration::from_secs(3),
        runs: 3,
        backend: Backend::Uring,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--size" => args.size = value.parse()?,
            "--per-peer" => args.per_peer = value.parse()?,
            "--duration" => args.duration = Duration::from_secs_f64(value.parse()?),
            "--runs" => args.runs = value.parse()?,
            "--io" => args.backend = value.parse()?,
            _ => return Err(format!("unknown argument {flag}").into()),
        }
    }
    if 2 * args.per_peer + 1 > io::BATCH_MAX_DEFAULT {
        return Err(format!("--per-peer at most {}", (io::BATCH_MAX_DEFAULT - 1) / 2).into());
    }
    Ok(args)
}

/// The namespaces; destroyed on drop.
struct Topology {
    script: PathBuf,
    prefix: String,
}

impl Topology {
    fn create() -> Result<Topology, Box<dyn Error>> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/netns/netns.sh");
        let prefix = format!("gsofan{}", std::process::id());
        let status = Command::new(&script)
            .args(["create", &prefix, "3"])
            .status()?;
        if !status.success() {
            return Err(format!("{} create failed (root needed)", script.display()).into());
        }
        Ok(Topology { script, prefix })
    }

    /// Moves the calling thread into node `k`'s namespace.
    fn enter(&self, k: u8) -> std::io::Result<()> {
        let path = format!("/var/run/netns/{}-n{k}", self.prefix);
        let file = std::fs::File::open(path)?;
        // SAFETY: setns on a namespace file we hold open; it affects the calling thread only.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .args(["destroy", &self.prefix])
            .status();
    }
}

fn addr(k: u8) -> SocketAddr {
    SocketAddr::from(([10, 250, 0, k], 5405))
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: timespec is plain old data; all-zero bytes are a valid value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Phases of one run, read by every thread.
const WARMING: u8 = 0;
const MEASURING: u8 = 1;
const DONE: u8 = 2;

/// What one thread did during the window: datagrams (sent or received) and CPU time.
#[derive(Clone, Copy, Default)]
struct Work {
    datagrams: u64,
    cpu: Duration,
}

/// Runs `step` (which returns datagrams moved) until the phase is DONE, and reports the window.
fn drive(phase: &AtomicU8, mut step: impl FnMut() -> u64) -> Work {
    let mut count = 0u64;
    let mut start: Option<(u64, Duration)> = None;
    loop {
        match phase.load(Ordering::Relaxed) {
            MEASURING if start.is_none() => start = Some((count, thread_cpu())),
            DONE => break,
            _ => {}
        }
        count += step();
    }
    let (c0, t0) = start.unwrap_or((count, thread_cpu()));
    Work {
        datagrams: count - c0,
        cpu: thread_cpu().saturating_sub(t0),
    }
}

struct Sample {
    delivered_pps: f64,
    sent_pps: f64,
    sender_us: f64,
    receivers_us: f64,
    gso_runs: u64,
    gro_receives: u64,
}

fn run_once(topo: &Arc<Topology>, args: &Args, offload: bool) -> Result<Sample, Box<dyn Error>> {
    let opts = IoOptions {
        udp_offload: offload,
        ..IoOptions::default()
    };
    let phase = Arc::new(AtomicU8::new(WARMING));
    let ready = Arc::new(Barrier::new(4));
    let failed = Arc::new(AtomicBool::new(false));
    let mut receivers = Vec::new();
    for k in [2u8, 3] {
        let (topo, phase, ready, failed) =
            (topo.clone(), phase.clone(), ready.clone(), failed.clone());
        let (backend, opts) = (args.backend, opts.clone());
        receivers.push(std::thread::spawn(move || {
            let opened = topo
                .enter(k)
                .and_then(|()| io::open(addr(k), backend, &opts));
            ready.wait();
            let mut rx: LinkIo = match opened {
                Ok(io) => io,
                Err(e) => {
                    eprintln!("receiver {k}: {e}");
                    failed.store(true, Ordering::SeqCst);
                    return (Work::default(), 0);
                }
            };
            let work = drive(&phase, || {
                let mut n = 0;
                let _ = rx.recv_each(Some(Instant::now() + POLL), |item| {
                    if let Incoming::Datagram { .. } = item {
                        n += 1;
                    }
                });
                n
            });
            (work, rx.stats().rx_gro_receives)
        }));
    }
    let sender = {
        let (topo, phase, ready, failed) =
            (topo.clone(), phase.clone(), ready.clone(), failed.clone());
        let (backend, opts, size, per_peer) =
            (args.backend, opts.clone(), args.size, args.per_peer);
        std::thread::spawn(move || {
            let opened = topo
                .enter(1)
                .and_then(|()| io::open(addr(1), backend, &opts));
            ready.wait();
            let mut tx = match opened {
                Ok(io) => io,
                Err(e) => {
                    eprintln!("sender: {e}");
                    failed.store(true, Ordering::SeqCst);
                    return (Work::default(), 0);
                }
            };
            let frame = vec![0x5au8; size];
            let token = vec![0x70u8; TOKEN_BYTES];
            let mut batch: Vec<(SocketAddr, &[u8])> = Vec::new();
            for _ in 0..per_peer {
                batch.push((addr(2), &frame));
                batch.push((addr(3), &frame));
            }
            batch.push((addr(2), &token));
            let work = drive(&phase, || tx.send_batch(&batch).map_or(0, |n| n as u64));
            (work, tx.stats().tx_gso_runs)
        })
    };
    ready.wait();
    std::thread::sleep(WARM_UP);
    phase.store(MEASURING, Ordering::SeqCst);
    let start = Instant::now();
    std::thread::sleep(args.duration);
    phase.store(DONE, Ordering::SeqCst);
    let window = start.elapsed().as_secs_f64();
    let (sent, gso_runs) = sender.join().map_err(|_| "sender panicked")?;
    let mut delivered = 0;
    let mut receivers_cpu = Duration::ZERO;
    let mut gro_receives = 0;
    for r in receivers {
        let (work, gro) = r.join().map_err(|_| "receiver panicked")?;
        delivered += work.datagrams;
        receivers_cpu += work.cpu;
        gro_receives += gro;
    }
    if failed.load(Ordering::SeqCst) {
        return Err("a socket could not be opened".into());
    }
    let per = |cpu: Duration| cpu.as_secs_f64() * 1e6 / delivered.max(1) as f64;
    Ok(Sample {
        delivered_pps: delivered as f64 / window,
        sent_pps: sent.datagrams as f64 / window,
        sender_us: per(sent.cpu),
        receivers_us: per(receivers_cpu),
        gso_runs,
        gro_receives,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let topo = Arc::new(Topology::create()?);
    println!(
        "link_fanout: {:?}, {} × {} B to each of 2 peers + {} B token per batch, {:.1} s × {} runs, medians",
        args.backend,
        args.per_peer,
        args.size,
        TOKEN_BYTES,
        args.duration.as_secs_f64(),
        args.runs
    );
    let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..args.runs.max(1) {
        for (slot, offload) in [(0, true), (1, false)] {
            samples[slot].push(run_once(&topo, &args, offload)?);
        }
    }
    println!(
        "{:<8} {:>14} {:>12} {:>16} {:>18} {:>14} {:>10} {:>12}",
        "gso/gro",
        "delivered pps",
        "sent pps",
        "sender µs/dgram",
        "receivers µs/dgram",
        "total µs/dgram",
        "gso runs*",
        "gro recvs*"
    );
    for (slot, label) in [(0, "on"), (1, "off")] {
        let s = &samples[slot];
        let m = |f: fn(&Sample) -> f64| median(s.iter().map(f).collect());
        println!(
            "{:<8} {:>14.0} {:>12.0} {:>16.2} {:>18.2} {:>14.2} {:>10.0} {:>12.0}",
            label,
            m(|x| x.delivered_pps),
            m(|x| x.sent_pps),
            m(|x| x.sender_us),
            m(|x| x.receivers_us),
            m(|x| x.sender_us + x.receivers_us),
            m(|x| x.gso_runs as f64),
            m(|x| x.gro_receives as f64),
        );
    }
    println!("* counts over each socket's life (warm-up included): GSO/GRO at work, not a rate");
    Ok(())
}
