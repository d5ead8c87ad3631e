//! totem-ping: every listed host pings every other one, omping style.
//!
//! Phases per peer, as omping's (REFERENCE.md §6): send init requests until the peer responds
//! ("waiting for response msg"), then timed queries on an absolute schedule (seq N leaves at
//! join + (N−1)·interval, late ones are caught up so `-c 10000 -i 0.001` takes 10 s), then drain
//! the last answers (up to `-w`, ending early once all are in) and tell the peer we are done
//! ("server told us to stop" on its side). A host keeps answering queries until every peer said
//! it is done too (or `-w` passed), so the last in-flight queries of a slower peer are not lost.
//! Our peers talk to each other, not to real omping (the bytes are ours, see wire.rs).

pub mod options;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;

use crate::hosts::{self, Host, HostError};
use crate::link::{self, Event, Link, LinkConfig, LinkError, Rejection};
use crate::omping_fmt::{self, Cast, Reply, Status};
use crate::progress::Progress;
use crate::stats::{loss_percent, omping_loss_percent, RttStats, RttSummary, SeenSet};
use crate::verdict::{self, PeerFigures, Verdict};
use crate::wire::Body;
use options::{PingOptions, WaitForFinish};

/// Period of init requests while a peer has not responded (omping retries once a second).
pub const INIT_RETRY: Duration = Duration::from_secs(1);
/// Most queries sent to one peer in one loop turn when catching up after a stall.
pub const MAX_CATCH_UP_QUERIES: u32 = 1000;
/// Longest single wait in the loop, so signals and the progress line are seen.
const MAX_IDLE_WAIT: Duration = Duration::from_millis(100);
/// Runs longer than this show the progress line on a terminal.
const PROGRESS_MIN_RUN: Duration = Duration::from_secs(2);

/// Why totem-ping could not run.
#[derive(Debug, Error)]
pub enum PingError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("every local address among the hosts is in use on port {port} ({tried}); is another totem-ping or omping running?")]
    AllLocalInUse { port: u16, tried: String },
    #[error("--local {0} is not one of the listed hosts")]
    LocalNotListed(SocketAddr),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Init requests sent, no response yet.
    Init,
    /// Queries on schedule.
    Pinging,
    /// No more queries; waiting for the last answers since `since`.
    Draining { since: Instant, told_to_stop: bool },
    /// Finished with this peer.
    Over,
}

/// Per-peer state.
struct Peer {
    host: Host,
    phase: Phase,
    next_init: Instant,
    joined_at: Instant,
    next_seq: u32,
    sent: u64,
    unicast: RttStats,
    seen: SeenSet,
    peer_said_done: bool,
    rejection: Option<Rejection>,
    unreachable: u64,
}

impl Peer {
    fn new(host: Host, now: Instant) -> Peer {
        Peer {
            host,
            phase: Phase::Init,
            next_init: now,
            joined_at: now,
            next_seq: 1,
            sent: 0,
            unicast: RttStats::default(),
            seen: SeenSet::default(),
            peer_said_done: false,
            rejection: None,
            unreachable: 0,
        }
    }

    fn problem(&self) -> Option<String> {
        if let Some(r) = &self.rejection {
            return Some(r.to_string());
        }
        if self.unicast.received == 0 && self.unreachable > 0 {
            return Some(
                "unreachable (ICMP error: is totem-ping running there, on this port?)".to_string(),
            );
        }
        None
    }
}

/// Results of one host, for JSON.
#[derive(Debug, Serialize)]
pub struct HostReport {
    pub host: String,
    pub addr: String,
    pub joined: bool,
    pub xmt: u64,
    pub rcv: u64,
    pub dups: u64,
    pub loss_pct: f64,
    pub omping_loss_pct: i64,
    pub rtt: RttSummary,
    pub problem: Option<String>,
}

/// The whole run, for JSON.
#[derive(Debug, Serialize)]
pub struct PingReport {
    pub local: String,
    pub io: String,
    pub encrypt: bool,
    pub interval_ms: f64,
    pub hosts: Vec<HostReport>,
    pub verdict: Verdict,
}

/// Output sink and switches.
struct Printer<'w> {
    out: &'w mut dyn Write,
    width: usize,
    quiet: u8,
    json: bool,
    cont_stats: bool,
    progress: Progress,
}

impl Printer<'_> {
    fn status(&mut self, host: &str, status: &Status) -> std::io::Result<()> {
        if self.json || self.quiet >= 2 {
            return Ok(());
        }
        self.line(&omping_fmt::status_line(host, self.width, status))
    }

    /// Writes one line of stdout, erasing the progress line first.
    fn line(&mut self, text: &str) -> std::io::Result<()> {
        self.progress.clear();
        writeln!(self.out, "{text}")
    }
}

/// Chooses and binds our own address among the hosts.
fn bind_local(
    opts: &PingOptions,
    hosts: &[Host],
    config: &LinkConfig,
) -> Result<(usize, Link), PingError> {
    if let Some(local) = &opts.local {
        let addr = options::parse_local(local, opts.port)?;
        let index = hosts
            .iter()
            .position(|h| h.addr == addr)
            .ok_or(PingError::LocalNotListed(addr))?;
        return Ok((index, Link::open(addr, config)?));
    }
    let locals = hosts::local_addresses();
    let candidates = hosts::local_candidates(hosts, &locals);
    if candidates.is_empty() {
        let all: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        return Err(HostError::NotListed(all.join(", ")).into());
    }
    let mut tried = Vec::new();
    for index in candidates {
        match Link::open(hosts[index].addr, config) {
            Ok(link) => return Ok((index, link)),
            Err(LinkError::AddrInUse { addr }) | Err(LinkError::AddrNotAvailable { addr }) => {
                tried.push(addr.to_string())
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(PingError::AllLocalInUse {
        port: opts.port,
        tried: tried.join(", "),
    })
}

/// Runs totem-ping; returns the verdict (the caller turns it into the exit status).
pub fn run(
    opts: &PingOptions,
    out: &mut dyn Write,
    stop: &Arc<AtomicBool>,
) -> Result<Verdict, PingError> {
    let hosts: Vec<Host> = opts
        .hosts
        .iter()
        .map(|h| hosts::resolve(h, opts.port, opts.family))
        .collect::<Result<_, _>>()?;
    let key = match &opts.key_path {
        Some(path) => Some(link::load_key(path)?),
        None => None,
    };
    let config = LinkConfig {
        backend: opts.backend,
        batch: totem_transport::io::BATCH_MAX_DEFAULT,
        socket_buffer_bytes: opts.socket_buffer_bytes,
        key,
    };
    let (self_index, mut link) = bind_local(opts, &hosts, &config)?;
    let local_addr = hosts[self_index].addr;
    let epoch = Instant::now();
    let mut peers: Vec<Peer> = hosts
        .iter()
        .enumerate()
        .filter(|(i, h)| *i != self_index && h.addr != local_addr)
        .map(|(_, h)| Peer::new(h.clone(), epoch))
        .collect();
    let by_addr: HashMap<SocketAddr, usize> = peers
        .iter()
        .enumerate()
        .map(|(i, p)| (p.host.addr, i))
        .collect();
    let width = peers.iter().map(|p| p.host.name.len()).max().unwrap_or(0);
    let run_length = opts.count.map(|c| opts.interval * c);
    // Only with -q: per-reply lines would scroll the progress line away.
    let progress = Progress::new(
        !opts.json && opts.quiet >= 1 && run_length.map_or(true, |d| d >= PROGRESS_MIN_RUN),
    );
    let mut printer = Printer {
        out,
        width,
        quiet: opts.quiet,
        json: opts.json,
        cont_stats: opts.cont_stats,
        progress,
    };
    if opts.verbose > 0 {
        eprintln!(
            "totem-ping: local {} ({}), io {}, batch {}, {}",
            hosts[self_index].name,
            local_addr,
            link.backend(),
            link.batch(),
            if link.encrypted() {
                "AES-256-GCM"
            } else {
                "clear"
            }
        );
    }
    let wait = opts.wait;
    let end = opts.timeout.map(|t| epoch + t);
    let mut all_over_at: Option<Instant> = None;
    let mut replies: Vec<(SocketAddr, Body)> = Vec::new();
    let mut reported_rejection: HashMap<SocketAddr, bool> = HashMap::new();

    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) || end.is_some_and(|e| now >= e) {
            break;
        }
        let mut wake = now + MAX_IDLE_WAIT;
        if let Some(e) = end {
            wake = wake.min(e);
        }
        for peer in peers.iter_mut() {
            match peer.phase {
                Phase::Init => {
                    if now >= peer.next_init {
                        link.queue(peer.host.addr, &Body::Init, opts.size)?;
                        printer.status(&peer.host.name, &Status::WaitingForResponse)?;
                        peer.next_init = now + INIT_RETRY;
                    }
                    wake = wake.min(peer.next_init);
                }
                Phase::Pinging => {
                    let mut burst = 0;
                    loop {
                        if opts.count.is_some_and(|c| peer.next_seq > c) {
                            peer.phase = Phase::Draining {
                                since: now,
                                told_to_stop: false,
                            };
                            break;
                        }
                        let due = peer.joined_at + opts.interval * (peer.next_seq - 1);
                        if due > now || burst >= MAX_CATCH_UP_QUERIES {
                            wake = wake.min(due);
                            break;
                        }
                        let sent_ns = now.duration_since(epoch).as_nanos() as u64;
                        link.queue(
                            peer.host.addr,
                            &Body::Query {
                                seq: peer.next_seq,
                                sent_ns,
                            },
                            opts.size,
                        )?;
                        peer.sent += 1;
                        peer.next_seq = peer.next_seq.saturating_add(1);
                        burst += 1;
                    }
                }
                Phase::Draining { .. } | Phase::Over => {}
            }
            if let Phase::Draining {
                since,
                told_to_stop,
            } = peer.phase
            {
                let all_in = peer.unicast.received >= peer.sent;
                let waited = match wait {
                    WaitForFinish::Up(w) => now >= since + w,
                    WaitForFinish::Forever => false,
                };
                if all_in || waited {
                    peer.phase = Phase::Over;
                    if !told_to_stop {
                        printer.status(&peer.host.name, &Status::GivenAmountSent)?;
                    }
                    link.queue(peer.host.addr, &Body::Done, opts.size)?;
                } else if let WaitForFinish::Up(w) = wait {
                    wake = wake.min(since + w);
                }
            }
        }
        link.flush()?;

        if peers.iter().all(|p| p.phase == Phase::Over) {
            let over_at = *all_over_at.get_or_insert(now);
            let lingered = match wait {
                WaitForFinish::Up(w) => now >= over_at + w,
                WaitForFinish::Forever => false,
            };
            if opts.auto_exit && (peers.iter().all(|p| p.peer_said_done) || lingered) {
                break;
            }
        }

        if printer.progress.due(now) {
            let sent: u64 = peers.iter().map(|p| p.sent).sum();
            let rcv: u64 = peers.iter().map(|p| p.unicast.received).sum();
            let total = opts.count.map(|c| u64::from(c) * peers.len() as u64);
            let text = match total {
                Some(t) => format!("totem-ping: {sent}/{t} queries sent, {rcv} answered"),
                None => format!("totem-ping: {sent} queries sent, {rcv} answered"),
            };
            printer.progress.draw(now, &text);
        }

        let session = link.session();
        let mut output_error = None;
        link.recv(Some(wake), |event| {
            let now = Instant::now();
            match event {
                Event::Message {
                    from,
                    header,
                    body,
                    len,
                } => {
                    let Some(&index) = by_addr.get(&from) else {
                        if opts.verbose > 1 {
                            eprintln!(
                                "totem-ping: ignoring a datagram from {from}, not a listed host"
                            );
                        }
                        return;
                    };
                    let peer = &mut peers[index];
                    match body {
                        Body::Init => {
                            replies.push((from, Body::Response { to: header.session }));
                            if peer.phase == Phase::Init {
                                peer.next_init = now;
                            }
                        }
                        Body::Response { to } if to == session && peer.phase == Phase::Init => {
                            peer.phase = Phase::Pinging;
                            peer.joined_at = now;
                            if let Err(e) = printer.status(&peer.host.name, &Status::Pinging) {
                                output_error = Some(e);
                            }
                        }
                        Body::Query { seq, sent_ns } => {
                            replies.push((
                                from,
                                Body::Answer {
                                    to: header.session,
                                    seq,
                                    sent_ns,
                                },
                            ));
                        }
                        Body::Answer { to, seq, sent_ns } if to == session => {
                            let now_ns = now.duration_since(epoch).as_nanos() as u64;
                            let rtt_ns = now_ns.saturating_sub(sent_ns);
                            let dup = opts.dup_detection && peer.seen.insert(seq);
                            if dup {
                                peer.unicast.dups += 1;
                            } else {
                                peer.unicast.record(rtt_ns);
                            }
                            if opts.quiet == 0 && !opts.json {
                                let cont = printer.cont_stats.then(|| {
                                    (
                                        peer.unicast.avg_ms(),
                                        omping_loss_percent(peer.sent, peer.unicast.received),
                                    )
                                });
                                let line = omping_fmt::reply_line(
                                    &peer.host.name,
                                    printer.width,
                                    &Reply {
                                        cast: Cast::Uni,
                                        seq,
                                        dup,
                                        size: len,
                                        rtt_ms: Some(rtt_ns as f64 / crate::stats::NS_PER_MS),
                                        cont,
                                    },
                                );
                                if let Err(e) = printer.line(&line) {
                                    output_error = Some(e);
                                }
                            }
                        }
                        Body::Done => {
                            peer.peer_said_done = true;
                            if matches!(peer.phase, Phase::Init | Phase::Pinging) {
                                peer.phase = Phase::Draining {
                                    since: now,
                                    told_to_stop: true,
                                };
                                if let Err(e) =
                                    printer.status(&peer.host.name, &Status::ServerToldUsToStop)
                                {
                                    output_error = Some(e);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                Event::Rejected { from, reason } => {
                    if let Some(&index) = by_addr.get(&from) {
                        peers[index].rejection = Some(reason);
                    }
                    if reported_rejection.insert(from, true).is_none() {
                        eprintln!("totem-ping: dropping datagrams from {from}: {reason}");
                    }
                }
                Event::PathError(e) => {
                    if let Some(&index) = by_addr.get(&e.dest) {
                        peers[index].unreachable += 1;
                    }
                    if opts.verbose > 0 {
                        eprintln!("totem-ping: {}: {}", e.dest, e.to_io_error());
                    }
                }
            }
        })?;
        if let Some(e) = output_error {
            return Err(e.into());
        }
        for (dest, body) in replies.drain(..) {
            link.queue(dest, &body, opts.size)?;
        }
        link.flush()?;
    }
    // Tell everyone still talking to us that we stop (timeout, signal, or normal end).
    for peer in peers.iter().filter(|p| !matches!(p.phase, Phase::Over)) {
        link.queue(peer.host.addr, &Body::Done, opts.size)?;
    }
    link.flush()?;
    printer.progress.clear();

    let figures: Vec<PeerFigures<'_>> = peers
        .iter()
        .map(|p| PeerFigures {
            host: &p.host.name,
            received: p.unicast.received,
            loss_pct: loss_percent(p.sent, p.unicast.received),
            rtt: p.unicast.summary(),
            problem: p.problem(),
        })
        .collect();
    let verdict = verdict::judge(&figures);
    if opts.json {
        let report = PingReport {
            local: local_addr.to_string(),
            io: link.backend().to_string(),
            encrypt: link.encrypted(),
            interval_ms: opts.interval.as_secs_f64() * 1000.0,
            hosts: peers
                .iter()
                .map(|p| HostReport {
                    host: p.host.name.clone(),
                    addr: p.host.addr.to_string(),
                    joined: p.phase != Phase::Init,
                    xmt: p.sent,
                    rcv: p.unicast.received,
                    dups: p.unicast.dups,
                    loss_pct: loss_percent(p.sent, p.unicast.received),
                    omping_loss_pct: omping_loss_percent(p.sent, p.unicast.received),
                    rtt: p.unicast.summary(),
                    problem: p.problem(),
                })
                .collect(),
            verdict: verdict.clone(),
        };
        let text = serde_json::to_string_pretty(&report).map_err(std::io::Error::other)?;
        writeln!(printer.out, "{text}")?;
        return Ok(verdict);
    }
    writeln!(printer.out)?;
    for p in &peers {
        if p.unicast.received == 0 {
            writeln!(
                printer.out,
                "{}",
                omping_fmt::never_received_line(&p.host.name, width)
            )?;
        } else {
            writeln!(
                printer.out,
                "{}",
                omping_fmt::summary_line(&p.host.name, width, Cast::Uni, p.sent, &p.unicast, None)
            )?;
        }
    }
    for p in peers.iter().filter(|p| p.unicast.received > 0) {
        writeln!(
            printer.out,
            "{}",
            omping_fmt::percentile_line(&p.host.name, width, Cast::Uni, &p.unicast)
        )?;
    }
    writeln!(printer.out, "{}", verdict.line())?;
    printer.out.flush()?;
    Ok(verdict)
}
