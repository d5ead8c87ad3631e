//! The server side of totem-pps and totem-latency (either binary's `--server` runs it): answers
//! init requests and queries, counts totem-pps data and reports it back with its CPU time.

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use totem_transport::io::BackendKind;

use crate::cpu::CpuTime;
use crate::link::{Event, Link, LinkError};
use crate::wire::{Body, PpsReport};

/// Longest single wait, so a stop signal is seen.
const POLL_PERIOD: Duration = Duration::from_millis(200);

/// Wire code of the I/O backend in a [`PpsReport`].
pub fn backend_code(kind: BackendKind) -> u8 {
    match kind {
        BackendKind::Uring => 0,
        BackendKind::Mmsg => 1,
    }
}

/// Name of a backend code from a [`PpsReport`].
pub fn backend_name(code: u8) -> &'static str {
    match code {
        0 => "io_uring",
        1 => "mmsg",
        _ => "unknown",
    }
}

/// One totem-pps run being counted.
struct Run {
    client: SocketAddr,
    session: u64,
    received: u64,
    bytes: u64,
    rejected: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    cpu_start: CpuTime,
    result: Option<PpsReport>,
}

/// Serves until `stop` is set. Prints one line per finished totem-pps run to `out`.
pub fn serve(
    link: &mut Link,
    stop: &Arc<AtomicBool>,
    out: &mut dyn Write,
    tool: &str,
) -> Result<(), LinkError> {
    let mut run: Option<Run> = None;
    let mut replies: Vec<(SocketAddr, Body, usize)> = Vec::new();
    let mut warned: HashSet<(SocketAddr, String)> = HashSet::new();
    let io_code = backend_code(link.backend());
    let batch = link.batch() as u32;
    while !stop.load(Ordering::Relaxed) {
        let mut lines: Vec<String> = Vec::new();
        link.recv(Some(Instant::now() + POLL_PERIOD), |event| match event {
            Event::Message { from, header, body, len } => match body {
                Body::Init { .. } => replies.push((
                    from,
                    Body::Response {
                        to: header.session,
                        group: None,
                    },
                    0,
                )),
                Body::Query { seq, sent_ns } => {
                    replies.push((from, Body::Answer { to: header.session, seq, sent_ns }, len))
                }
                Body::PpsStart { size, duration_ms } => {
                    let fresh = run.as_ref().map_or(true, |r| r.session != header.session);
                    if fresh {
                        lines.push(format!(
                            "{tool} server: run from {from}: {size} B datagrams for {:.1} s",
                            f64::from(duration_ms) / 1000.0
                        ));
                        run = Some(Run {
                            client: from,
                            session: header.session,
                            received: 0,
                            bytes: 0,
                            rejected: 0,
                            first: None,
                            last: None,
                            cpu_start: CpuTime::now(),
                            result: None,
                        });
                    }
                    replies.push((from, Body::PpsReady { to: header.session }, 0));
                }
                Body::PpsData { .. } => {
                    if let Some(r) = run.as_mut().filter(|r| r.session == header.session && r.result.is_none()) {
                        let now = Instant::now();
                        r.received += 1;
                        r.bytes += len as u64;
                        r.first.get_or_insert(now);
                        r.last = Some(now);
                    }
                }
                Body::PpsStop { sent } => {
                    if let Some(r) = run.as_mut().filter(|r| r.session == header.session) {
                        let report = *r.result.get_or_insert_with(|| {
                            let cpu = CpuTime::now().since(&r.cpu_start);
                            let elapsed = match (r.first, r.last) {
                                (Some(a), Some(b)) => b.duration_since(a),
                                _ => Duration::ZERO,
                            };
                            let report = PpsReport {
                                received: r.received,
                                bytes: r.bytes,
                                elapsed_us: elapsed.as_micros() as u64,
                                cpu_user_us: cpu.user.as_micros() as u64,
                                cpu_sys_us: cpu.sys.as_micros() as u64,
                                rejected: r.rejected,
                                io: io_code,
                                batch,
                            };
                            lines.push(format!(
                                "{tool} server: run from {}: received {} of {sent} ({:.2} % loss), {:.0} ns CPU per packet",
                                r.client,
                                r.received,
                                crate::stats::loss_percent(sent, r.received),
                                cpu.ns_per_packet(r.received)
                            ));
                            report
                        });
                        replies.push((from, Body::PpsResult { to: header.session, report }, 0));
                    }
                }
                _ => {}
            },
            Event::Rejected { from, reason } => {
                if let Some(r) = run.as_mut().filter(|r| r.client == from) {
                    r.rejected += 1;
                }
                if warned.insert((from, reason.to_string())) {
                    eprintln!("{tool} server: dropping datagrams from {from}: {reason}");
                }
            }
            Event::PathError(_) => {}
        })?;
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        for (dest, body, pad) in replies.drain(..) {
            link.queue(dest, &body, pad)?;
        }
        link.flush()?;
    }
    Ok(())
}
