//! totem-pps client: the packet rate a path sustains for a payload size.
//!
//! One run: `PpsStart` (the server resets its counters and notes its CPU time), data datagrams
//! in batches of `--batch` at `--rate` (or as fast as the link takes them) for `--duration`,
//! then `PpsStop` with the count sent; the server answers `PpsResult` with what it received and
//! the CPU it spent. `--find-max` bisects the rate for the highest one with loss under a limit.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::{self, ClientError};
use crate::cpu::CpuTime;
use crate::link::{Link, LinkConfig};
use crate::server::backend_name;
use crate::stats::loss_percent;
use crate::wire::{self, Body, PpsReport};

/// Smallest datagram totem-pps sends: header plus the sequence number.
pub const MIN_SIZE_BYTES: usize = wire::HEADER_LEN + 8;
/// Highest --rate accepted, packets/s (far above any NIC's small-packet rate).
pub const MAX_RATE_PPS: u64 = 100_000_000;
/// Longest --duration, seconds.
pub const MAX_DURATION_SECS: f64 = 86_400.0;
/// Bisection steps of --find-max after the unpaced probe.
pub const FIND_MAX_STEPS: u32 = 6;
/// How long the client waits for straggling data before asking for the report.
const DRAIN_PAUSE: Duration = Duration::from_millis(100);

/// A client run's parameters.
#[derive(Debug, Clone)]
pub struct PpsOptions {
    /// Datagram size on the wire, bytes.
    pub size: usize,
    /// Length of one run.
    pub duration: Duration,
    /// Target rate; `None`: as fast as the link takes them.
    pub rate: Option<u64>,
}

/// Checks sizes, rates and durations; the message says what is wrong.
pub fn validate(
    size: usize,
    duration_secs: f64,
    rate: Option<u64>,
    encrypted: bool,
) -> Result<PpsOptions, String> {
    let min = MIN_SIZE_BYTES
        + if encrypted {
            crate::link::SEAL_OVERHEAD
        } else {
            0
        };
    if size < min || size > wire::MAX_DATAGRAM_LEN {
        return Err(format!(
            "--size {size} must be between {min} and {} bytes",
            wire::MAX_DATAGRAM_LEN
        ));
    }
    if !(duration_secs.is_finite() && duration_secs > 0.0 && duration_secs <= MAX_DURATION_SECS) {
        return Err(format!(
            "--duration {duration_secs} must be > 0 and <= {MAX_DURATION_SECS} seconds"
        ));
    }
    if let Some(r) = rate {
        if r == 0 || r > MAX_RATE_PPS {
            return Err(format!(
                "impossible rate --rate {r}: must be 1..={MAX_RATE_PPS} packets/s"
            ));
        }
    }
    Ok(PpsOptions {
        size,
        duration: Duration::from_secs_f64(duration_secs),
        rate,
    })
}

/// Both ends' figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct PpsResult {
    pub size: usize,
    pub duration_s: f64,
    pub target_pps: Option<u64>,
    pub sent: u64,
    pub received: u64,
    pub sent_pps: f64,
    pub recv_pps: f64,
    pub sent_mbit_s: f64,
    pub recv_mbit_s: f64,
    pub loss_pct: f64,
    pub client_cpu_ns_per_pkt: f64,
    pub server_cpu_ns_per_pkt: f64,
    pub server_rejected: u64,
    pub io: String,
    pub batch: usize,
    /// The client sent runs of packets with UDP GSO.
    pub gso: bool,
    pub server_io: String,
    pub server_batch: u32,
    pub encrypt: bool,
}

fn mbit_per_s(pps: f64, size: usize) -> f64 {
    pps * size as f64 * 8.0 / 1e6
}

/// One run against `server` on `link`.
pub fn run_once(
    link: &mut Link,
    server: std::net::SocketAddr,
    opts: &PpsOptions,
) -> Result<PpsResult, ClientError> {
    let session = link.session();
    let duration_ms = opts.duration.as_millis().min(u128::from(u32::MAX)) as u32;
    client::exchange(
        link,
        server,
        &Body::PpsStart {
            size: opts.size as u32,
            duration_ms,
        },
        0,
        |b| matches!(b, Body::PpsReady { to } if *to == session).then_some(()),
    )?;
    let batch = link.batch() as u64;
    let cpu_start = CpuTime::now();
    let start = Instant::now();
    let end = start + opts.duration;
    let mut seq: u64 = 0;
    let mut sent: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = match opts.rate {
            Some(rate) => {
                let target = (now.duration_since(start).as_secs_f64() * rate as f64) as u64 + 1;
                target.saturating_sub(seq).min(batch)
            }
            None => batch,
        };
        if due == 0 {
            // Sleep until the next datagram is due (path errors and strays are drained meanwhile).
            let rate = opts.rate.unwrap_or(1) as f64;
            let next = start + Duration::from_secs_f64((seq as f64) / rate);
            link.recv(Some(next.min(end)), |_| {})?;
            continue;
        }
        for _ in 0..due {
            link.queue(server, &Body::PpsData { seq }, opts.size)?;
            seq += 1;
        }
        sent += link.flush()? as u64;
    }
    let elapsed = start.elapsed();
    let client_cpu = CpuTime::now().since(&cpu_start);
    std::thread::sleep(DRAIN_PAUSE);
    let report: PpsReport =
        client::exchange(link, server, &Body::PpsStop { sent }, 0, |b| match b {
            Body::PpsResult { to, report } if *to == session => Some(*report),
            _ => None,
        })?;
    let secs = elapsed.as_secs_f64().max(1e-9);
    let sent_pps = sent as f64 / secs;
    let recv_secs = if report.elapsed_us > 0 {
        // The server's own first-to-last span, but never shorter than the send span.
        (report.elapsed_us as f64 / 1e6).max(secs)
    } else {
        secs
    };
    let recv_pps = report.received as f64 / recv_secs;
    let server_cpu_ns = (report.cpu_user_us + report.cpu_sys_us) as f64 * 1000.0;
    Ok(PpsResult {
        size: opts.size,
        duration_s: secs,
        target_pps: opts.rate,
        sent,
        received: report.received,
        sent_pps,
        recv_pps,
        sent_mbit_s: mbit_per_s(sent_pps, opts.size),
        recv_mbit_s: mbit_per_s(recv_pps, opts.size),
        loss_pct: loss_percent(sent, report.received),
        client_cpu_ns_per_pkt: client_cpu.ns_per_packet(sent),
        server_cpu_ns_per_pkt: if report.received == 0 {
            0.0
        } else {
            server_cpu_ns / report.received as f64
        },
        server_rejected: report.rejected,
        io: link.backend().to_string(),
        batch: link.batch(),
        gso: link.gso(),
        server_io: backend_name(report.io).to_string(),
        server_batch: report.batch,
        encrypt: link.encrypted(),
    })
}

/// Bisects the rate: an unpaced probe, then [`FIND_MAX_STEPS`] runs between 0 and its rate.
/// Returns every trial and the best one (highest rate with loss under `max_loss_pct`).
pub fn find_max(
    link: &mut Link,
    server: std::net::SocketAddr,
    opts: &PpsOptions,
    max_loss_pct: f64,
    mut on_trial: impl FnMut(&PpsResult),
) -> Result<(Vec<PpsResult>, Option<PpsResult>), ClientError> {
    let mut trials = Vec::new();
    let probe = run_once(
        link,
        server,
        &PpsOptions {
            rate: None,
            ..opts.clone()
        },
    )?;
    on_trial(&probe);
    let mut best = None;
    let mut lo = 0u64;
    let mut hi = probe.sent_pps.ceil() as u64;
    if probe.loss_pct < max_loss_pct {
        best = Some(probe.clone());
        lo = hi;
    }
    trials.push(probe);
    for _ in 0..FIND_MAX_STEPS {
        if hi <= lo + 1 {
            break;
        }
        let mid = lo + (hi - lo) / 2;
        let trial = run_once(
            link,
            server,
            &PpsOptions {
                rate: Some(mid.max(1)),
                ..opts.clone()
            },
        )?;
        on_trial(&trial);
        if trial.loss_pct < max_loss_pct {
            lo = mid;
            best = Some(trial.clone());
        } else {
            hi = mid;
        }
        trials.push(trial);
    }
    Ok((trials, best))
}

/// The text report of one run.
pub fn render(r: &PpsResult) -> String {
    let rate = r
        .target_pps
        .map_or("unlimited".to_string(), |p| format!("{p} pps"));
    format!(
        "size {} B, duration {:.2} s, rate {rate}, io {} batch {} GSO {} (server {} batch {}), {}\n\
         sent      {:>12} pkts {:>12.0} pps {:>10.1} Mbit/s   client CPU {:>8.0} ns/pkt\n\
         received  {:>12} pkts {:>12.0} pps {:>10.1} Mbit/s   server CPU {:>8.0} ns/pkt\n\
         loss      {:.3} %{}",
        r.size,
        r.duration_s,
        r.io,
        r.batch,
        if r.gso { "on" } else { "off" },
        r.server_io,
        r.server_batch,
        if r.encrypt { "AES-256-GCM" } else { "clear" },
        r.sent,
        r.sent_pps,
        r.sent_mbit_s,
        r.client_cpu_ns_per_pkt,
        r.received,
        r.recv_pps,
        r.recv_mbit_s,
        r.server_cpu_ns_per_pkt,
        r.loss_pct,
        if r.server_rejected > 0 {
            format!(" ({} datagrams rejected by the server)", r.server_rejected)
        } else {
            String::new()
        },
    )
}

/// Opens the client link for `server`.
pub fn open(server: std::net::SocketAddr, config: &LinkConfig) -> Result<Link, ClientError> {
    client::open_client(server, config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_inputs_are_refused() {
        assert!(validate(64, 1.0, Some(0), false)
            .unwrap_err()
            .contains("impossible rate"));
        assert!(validate(64, 1.0, Some(MAX_RATE_PPS + 1), false).is_err());
        assert!(validate(10, 1.0, None, false)
            .unwrap_err()
            .contains("--size 10"));
        assert!(validate(30, 1.0, None, true).is_err());
        assert!(validate(64, 0.0, None, false).is_err());
        assert!(validate(70_000, 1.0, None, false).is_err());
        assert!(validate(64, 1.0, Some(1000), false).is_ok());
    }
}
