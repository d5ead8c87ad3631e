//! totem-latency client: request/response at a fixed rate for a duration, into an HDR histogram.
//!
//! Requests leave on an absolute schedule (request N at start + N/rate, late ones caught up, so a
//! stall shows as latency, not as fewer samples); after `--duration` the client waits for the
//! last answers up to [`DRAIN_TIMEOUT`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::{self, ClientError};
use crate::link::Link;
use crate::stats::{self, loss_percent, NS_PER_MS};
use crate::wire::{self, Body};

/// Longest wait for answers after the last request.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Most requests sent in one loop turn when catching up after a stall.
const MAX_CATCH_UP: u64 = 1000;
/// Highest --rate accepted, requests/s.
pub const MAX_RATE: u64 = 1_000_000;
/// Percentiles of the printed table.
pub const TABLE_PERCENTILES: [f64; 7] = [50.0, 90.0, 99.0, 99.9, 99.99, 99.999, 100.0];

/// A latency run's parameters.
#[derive(Debug, Clone)]
pub struct LatencyOptions {
    /// Requests per second.
    pub rate: u64,
    /// Length of the run.
    pub duration: Duration,
    /// Request size on the wire, bytes.
    pub size: usize,
}

/// Checks the parameters; the message says what is wrong.
pub fn validate(
    rate: u64,
    duration_secs: f64,
    size: usize,
    encrypted: bool,
) -> Result<LatencyOptions, String> {
    if rate == 0 || rate > MAX_RATE {
        return Err(format!(
            "impossible rate --rate {rate}: must be 1..={MAX_RATE} requests/s"
        ));
    }
    if !(duration_secs.is_finite()
        && duration_secs > 0.0
        && duration_secs <= crate::pps::MAX_DURATION_SECS)
    {
        return Err(format!(
            "--duration {duration_secs} must be > 0 and <= {} seconds",
            crate::pps::MAX_DURATION_SECS
        ));
    }
    let min = wire::HEADER_LEN
        + 12
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
    Ok(LatencyOptions {
        rate,
        duration: Duration::from_secs_f64(duration_secs),
        size,
    })
}

/// One percentile of the table.
#[derive(Debug, Clone, Serialize)]
pub struct PercentileRow {
    pub percentile: f64,
    pub latency_ms: f64,
}

/// A finished run.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyResult {
    pub server: String,
    pub rate: u64,
    pub duration_s: f64,
    pub size: usize,
    pub sent: u64,
    pub received: u64,
    pub loss_pct: f64,
    pub mean_ms: f64,
    pub std_dev_ms: f64,
    pub percentiles: Vec<PercentileRow>,
    pub io: String,
    pub encrypt: bool,
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

/// Runs against `server` on `link`.
pub fn run(
    link: &mut Link,
    server: SocketAddr,
    opts: &LatencyOptions,
) -> Result<LatencyResult, ClientError> {
    let session = link.session();
    client::exchange(link, server, &Body::Init { group: None }, 0, |b| {
        matches!(b, Body::Response { to, .. } if *to == session).then_some(())
    })?;
    let mut hist = stats::new_histogram();
    let mut seen = stats::SeenSet::default();
    let epoch = Instant::now();
    let end = epoch + opts.duration;
    let total = (opts.duration.as_secs_f64() * opts.rate as f64)
        .round()
        .max(1.0) as u64;
    let total = total.min(u64::from(u32::MAX));
    let period = Duration::from_secs_f64(1.0 / opts.rate as f64);
    let mut next: u64 = 0;
    let mut received: u64 = 0;
    let mut drain_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let mut burst = 0;
        while next < total && burst < MAX_CATCH_UP && epoch + period.mul_f64(next as f64) <= now {
            let sent_ns = now.duration_since(epoch).as_nanos() as u64;
            link.queue(
                server,
                &Body::Query {
                    seq: next as u32,
                    sent_ns,
                },
                opts.size,
            )?;
            next += 1;
            burst += 1;
        }
        link.flush()?;
        if next >= total {
            let until = *drain_until.get_or_insert(now.max(end) + DRAIN_TIMEOUT);
            if received >= next || now >= until {
                break;
            }
        }
        let wake = if next < total {
            epoch + period.mul_f64(next as f64)
        } else {
            drain_until.unwrap_or(now)
        };
        link.recv(Some(wake), |event| {
            if let crate::link::Event::Message {
                from,
                body: Body::Answer { to, seq, sent_ns },
                ..
            } = event
            {
                if from == server && to == session && !seen.insert(seq) {
                    let now_ns = Instant::now().duration_since(epoch).as_nanos() as u64;
                    stats::record(&mut hist, now_ns.saturating_sub(sent_ns));
                    received += 1;
                }
            }
        })?;
    }
    let percentiles = TABLE_PERCENTILES
        .iter()
        .map(|p| PercentileRow {
            percentile: *p,
            latency_ms: if hist.is_empty() {
                0.0
            } else {
                hist.value_at_percentile(*p) as f64 / NS_PER_MS
            },
        })
        .collect();
    Ok(LatencyResult {
        server: server.to_string(),
        rate: opts.rate,
        duration_s: opts.duration.as_secs_f64(),
        size: opts.size,
        sent: next,
        received,
        loss_pct: loss_percent(next, received),
        mean_ms: if hist.is_empty() {
            0.0
        } else {
            hist.mean() / NS_PER_MS
        },
        std_dev_ms: if hist.is_empty() {
            0.0
        } else {
            hist.stdev() / NS_PER_MS
        },
        percentiles,
        io: link.backend().to_string(),
        encrypt: link.encrypted(),
        histogram: hist,
    })
}

/// The text report: a summary line and the percentile table.
pub fn render(r: &LatencyResult) -> String {
    let mut s = format!(
        "totem-latency: {} at {}/s for {:.1} s, {} B, io {}, {}\n\
         sent {}, received {}, loss {:.3} %, mean {:.3} ms, std-dev {:.3} ms\n\
         {:>10}  {:>12}\n",
        r.server,
        r.rate,
        r.duration_s,
        r.size,
        r.io,
        if r.encrypt { "AES-256-GCM" } else { "clear" },
        r.sent,
        r.received,
        r.loss_pct,
        r.mean_ms,
        r.std_dev_ms,
        "percentile",
        "latency_ms"
    );
    for row in &r.percentiles {
        s.push_str(&format!(
            "{:>10.3}  {:>12.3}\n",
            row.percentile, row.latency_ms
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_inputs_are_refused() {
        assert!(validate(0, 1.0, 64, false)
            .unwrap_err()
            .contains("impossible rate"));
        assert!(validate(MAX_RATE + 1, 1.0, 64, false).is_err());
        assert!(validate(100, -1.0, 64, false).is_err());
        assert!(validate(100, 1.0, 8, false).is_err());
        assert!(validate(100, 1.0, 64, false).is_ok());
    }
}
