//! totem-ping: every listed host pings every other one, omping style.
//!
//! Phases per peer, as omping's (REFERENCE.md §6): send init requests until the peer responds
//! ("waiting for response msg"), then timed queries on an absolute schedule (seq N leaves at
//! join + (N−1)·interval, late ones are caught up so `-c 10000 -i 0.001` takes 10 s), then drain
//! the last answers (up to `-w`, ending early once all are in) and tell the peer we are done
//! ("server told us to stop" on its side). A host keeps answering queries until every peer said
//! it is done too (or `-w` passed), so the last in-flight queries of a slower peer are not lost.
//! Our peers talk to each other, not to real omping (the bytes are ours, see wire.rs).
//!
//! With `-m` (or `-M asm`) every query is also answered to the multicast group, as omping does
//! (`msgsend.c` `ms_answer`, MS_ANSWER_BOTH): the group socket ([`crate::mcast`]) is read by a
//! thread ([`mcast_rx`]) that stamps arrivals, the main loop counts them per peer (by source
//! address, for our session only) next to the unicast answers ([`peer`]), and [`report`] prints
//! omping's unicast and multicast lines and applies the verdict to both.

pub mod mcast_rx;
pub mod options;
pub mod peer;
pub mod report;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::hosts::{self, Family, Host, HostError};
use crate::link::{self, Event, Link, LinkConfig, LinkError};
use crate::mcast::{self, McastError};
use crate::omping_fmt::{self, Cast, Reply, Status};
use crate::progress::Progress;
use crate::verdict::Verdict;
use crate::wire::Body;
use mcast_rx::McastReceiver;
use options::{PingOptions, WaitForFinish};
use peer::{Peer, Phase};

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
    #[error(transparent)]
    Mcast(#[from] McastError),
    #[error("every local address among the hosts is in use on port {port} ({tried}); is another totem-ping or omping running?")]
    AllLocalInUse { port: u16, tried: String },
    #[error("--local {0} is not one of the listed hosts")]
    LocalNotListed(SocketAddr),
    #[error("cannot start the multicast receiver thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
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

/// Multicast state of a run with `-m`.
struct Multicast {
    /// The group.
    group: IpAddr,
    /// Where multicast answers are sent (group and port).
    endpoint: SocketAddr,
    /// The thread receiving on the group.
    receiver: McastReceiver,
}

/// Resolves the hosts, restricted to the family of a `-m` group when there is one.
fn resolve_hosts(opts: &PingOptions, group: Option<IpAddr>) -> Result<Vec<Host>, PingError> {
    let family = match group {
        Some(IpAddr::V4(_)) => Family::V4,
        Some(IpAddr::V6(_)) => Family::V6,
        None => opts.family,
    };
    opts.hosts
        .iter()
        .map(|h| match (hosts::resolve(h, opts.port, family), group) {
            (Err(HostError::NoAddressOfFamily { name, .. }), Some(group)) => {
                Err(McastError::HostFamily {
                    group,
                    group_version: mcast::version(group),
                    host: name,
                }
                .into())
            }
            (other, _) => other.map_err(PingError::from),
        })
        .collect()
}

/// Joins `group` on the interface of `local` and starts the receiver thread; prepares `link`
/// (the unicast socket) to send multicast answers.
fn start_multicast(
    group: IpAddr,
    local: SocketAddr,
    link: &Link,
    config: &LinkConfig,
    ttl: u32,
) -> Result<Multicast, PingError> {
    if mcast::version(group) != mcast::version(local.ip()) {
        return Err(McastError::HostFamily {
            group,
            group_version: mcast::version(group),
            host: local.ip().to_string(),
        }
        .into());
    }
    let interface = mcast::interface_of(local.ip())?;
    mcast::configure_sender(link, local.ip(), &interface, ttl)?;
    let endpoint = mcast::group_endpoint(group, local.port(), &interface);
    let rx_link = Link::open(endpoint, config).map_err(|e| -> PingError {
        match e {
            LinkError::AddrInUse { addr } => McastError::BindInUse { addr }.into(),
            LinkError::AddrNotAvailable { addr } => McastError::Bind {
                addr,
                source: std::io::ErrorKind::AddrNotAvailable.into(),
            }
            .into(),
            LinkError::Open { addr, source } => McastError::Bind { addr, source }.into(),
            other => other.into(),
        }
    })?;
    mcast::join(&rx_link, group, local.ip(), &interface)?;
    let receiver = McastReceiver::spawn(rx_link, link.waker()).map_err(PingError::Thread)?;
    Ok(Multicast {
        group,
        endpoint,
        receiver,
    })
}

/// Everything the receive path updates: peers, output, replies to send.
struct Exchange<'o, 'w> {
    opts: &'o PingOptions,
    epoch: Instant,
    session: u64,
    peers: Vec<Peer>,
    by_addr: HashMap<SocketAddr, usize>,
    printer: Printer<'w>,
    /// Replies to send after the receive call.
    replies: Vec<(SocketAddr, Body)>,
    /// Our group and where multicast answers go, with `-m`.
    group: Option<(IpAddr, SocketAddr)>,
    reported_rejection: HashSet<SocketAddr>,
    /// Multicast sends that failed (the first is reported on stderr).
    mcast_send_errors: u64,
    output_error: Option<std::io::Error>,
}

impl Exchange<'_, '_> {
    fn mcast_on(&self) -> bool {
        self.group.is_some()
    }

    fn keep(&mut self, result: std::io::Result<()>) {
        if let Err(e) = result {
            self.output_error.get_or_insert(e);
        }
    }

    /// Handles one datagram (or rejection) received on the unicast socket (`Cast::Uni`) or the
    /// group (`Cast::Multi`, answers only) at `at`.
    fn on_event(&mut self, event: Event, at: Instant, cast: Cast) {
        match event {
            Event::Message {
                from,
                header,
                body,
                len,
            } => {
                let Some(&index) = self.by_addr.get(&from) else {
                    if self.opts.verbose > 1 {
                        eprintln!("totem-ping: ignoring a datagram from {from}, not a listed host");
                    }
                    return;
                };
                if cast == Cast::Multi {
                    if let Body::Answer { to, seq, sent_ns } = body {
                        if to == self.session {
                            self.on_answer(index, Cast::Multi, seq, sent_ns, len, at);
                        }
                    }
                    return;
                }
                self.on_unicast(index, from, header.session, body, len, at);
            }
            Event::Rejected { from, reason } => {
                if let Some(&index) = self.by_addr.get(&from) {
                    self.peers[index].rejection = Some(reason);
                }
                if self.reported_rejection.insert(from) {
                    eprintln!("totem-ping: dropping datagrams from {from}: {reason}");
                }
            }
            Event::PathError(e) if self.group.is_some_and(|(_, to)| to == e.dest) => {
                self.mcast_send_errors += 1;
                if self.mcast_send_errors == 1 {
                    eprintln!(
                        "totem-ping: multicast answer to {} not sent: {} (a firewall, or no multicast on this interface?)",
                        e.dest,
                        e.to_io_error()
                    );
                }
            }
            Event::PathError(e) => {
                if let Some(&index) = self.by_addr.get(&e.dest) {
                    self.peers[index].unreachable += 1;
                }
                if self.opts.verbose > 0 {
                    eprintln!("totem-ping: {}: {}", e.dest, e.to_io_error());
                }
            }
        }
    }

    fn on_unicast(
        &mut self,
        index: usize,
        from: SocketAddr,
        their_session: u64,
        body: Body,
        len: usize,
        at: Instant,
    ) {
        let our_group = self.group.map(|(g, _)| g);
        let peer = &mut self.peers[index];
        match body {
            Body::Init { group } => {
                // omping answers by multicast only a client that asked for our group.
                peer.answer_by_mcast = our_group.is_some() && group == our_group;
                self.replies.push((
                    from,
                    Body::Response {
                        to: their_session,
                        group: our_group,
                    },
                ));
                if peer.phase == Phase::Init {
                    peer.next_init = at;
                }
            }
            Body::Response { to, group } if to == self.session && peer.phase == Phase::Init => {
                peer.phase = Phase::Pinging;
                peer.joined_at = at;
                let status = match our_group {
                    None => Status::Pinging,
                    Some(ours) if group == Some(ours) => Status::Joined {
                        group: ours.to_string(),
                    },
                    Some(ours) => {
                        let problem = match group {
                            None => "it runs without -m, so it sends no multicast answers"
                                .to_string(),
                            Some(theirs) => format!(
                                "it multicasts its answers to {theirs}, not {ours} (give every host the same -m)"
                            ),
                        };
                        eprintln!("totem-ping: {}: {problem}", peer.host.name);
                        peer.mcast_problem = Some(problem);
                        Status::Pinging
                    }
                };
                let name = peer.host.name.clone();
                let r = self.printer.status(&name, &status);
                self.keep(r);
            }
            Body::Query { seq, sent_ns } => {
                let answer = Body::Answer {
                    to: their_session,
                    seq,
                    sent_ns,
                };
                // omping's MS_ANSWER_BOTH: unicast first, then to the group.
                self.replies.push((from, answer));
                if let (true, Some((_, endpoint))) = (peer.answer_by_mcast, self.group) {
                    self.replies.push((endpoint, answer));
                }
            }
            Body::Answer { to, seq, sent_ns } if to == self.session => {
                self.on_answer(index, Cast::Uni, seq, sent_ns, len, at);
            }
            Body::Done => {
                peer.peer_said_done = true;
                if matches!(peer.phase, Phase::Init | Phase::Pinging) {
                    peer.phase = Phase::Draining {
                        since: at,
                        told_to_stop: true,
                    };
                    let name = peer.host.name.clone();
                    let r = self.printer.status(&name, &Status::ServerToldUsToStop);
                    self.keep(r);
                }
            }
            _ => {}
        }
    }

    /// Counts an answer to one of our queries and prints omping's reply line.
    fn on_answer(
        &mut self,
        index: usize,
        cast: Cast,
        seq: u32,
        sent_ns: u64,
        len: usize,
        at: Instant,
    ) {
        let now_ns = at.duration_since(self.epoch).as_nanos() as u64;
        let rtt_ns = now_ns.saturating_sub(sent_ns);
        let peer = &mut self.peers[index];
        let sent = peer.sent;
        let stats = peer.cast_mut(cast);
        let dup = stats.record(seq, rtt_ns, self.opts.dup_detection);
        if self.opts.quiet > 0 || self.opts.json {
            return;
        }
        let cont = self
            .printer
            .cont_stats
            .then(|| (stats.rtt.avg_ms(), stats.running_loss(cast, sent)));
        let line = omping_fmt::reply_line(
            &peer.host.name,
            self.printer.width,
            &Reply {
                cast,
                seq,
                dup,
                size: len,
                rtt_ms: Some(rtt_ns as f64 / crate::stats::NS_PER_MS),
                cont,
            },
        );
        let r = self.printer.line(&line);
        self.keep(r);
    }
}

/// Runs totem-ping; returns the verdict (the caller turns it into the exit status).
pub fn run(
    opts: &PingOptions,
    out: &mut dyn Write,
    stop: &Arc<AtomicBool>,
) -> Result<Verdict, PingError> {
    // A -m group is resolved first: its family decides the hosts' (omping's aii_return_ip_ver).
    let named_group = match opts.multicast.as_ref().and_then(|m| m.group.as_deref()) {
        Some(text) => {
            let want_v6 = match opts.family {
                Family::Any => None,
                Family::V4 => Some(false),
                Family::V6 => Some(true),
            };
            Some(mcast::resolve_group(text, want_v6)?)
        }
        None => None,
    };
    let hosts = resolve_hosts(opts, named_group)?;
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
    mcast::set_unicast_ttl(&link, local_addr.ip(), opts.ttl)?;
    let mut multicast = match &opts.multicast {
        None => None,
        Some(_) => {
            let group = named_group.unwrap_or_else(|| mcast::default_group(local_addr.ip()));
            Some(start_multicast(
                group, local_addr, &link, &config, opts.ttl,
            )?)
        }
    };
    let epoch = Instant::now();
    let peers: Vec<Peer> = hosts
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
    let mut ex = Exchange {
        opts,
        epoch,
        session: link.session(),
        peers,
        by_addr,
        printer: Printer {
            out,
            width,
            quiet: opts.quiet,
            json: opts.json,
            cont_stats: opts.cont_stats,
            progress,
        },
        replies: Vec::new(),
        group: multicast.as_ref().map(|m| (m.group, m.endpoint)),
        reported_rejection: HashSet::new(),
        mcast_send_errors: 0,
        output_error: None,
    };
    if opts.verbose > 0 {
        eprintln!(
            "totem-ping: local {} ({}), io {}, batch {}, {}{}",
            hosts[self_index].name,
            local_addr,
            link.backend(),
            link.batch(),
            if link.encrypted() {
                "AES-256-GCM"
            } else {
                "clear"
            },
            match &multicast {
                Some(m) => format!(", multicast {} (ttl {})", m.endpoint, opts.ttl),
                None => String::new(),
            }
        );
    }
    let mcast_on = ex.mcast_on();
    let our_group = multicast.as_ref().map(|m| m.group);
    let wait = opts.wait;
    let end = opts.timeout.map(|t| epoch + t);
    let mut all_over_at: Option<Instant> = None;

    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) || end.is_some_and(|e| now >= e) {
            break;
        }
        let mut wake = now + MAX_IDLE_WAIT;
        if let Some(e) = end {
            wake = wake.min(e);
        }
        for peer in ex.peers.iter_mut() {
            match peer.phase {
                Phase::Init => {
                    if now >= peer.next_init {
                        link.queue(peer.host.addr, &Body::Init { group: our_group }, opts.size)?;
                        ex.printer
                            .status(&peer.host.name, &Status::WaitingForResponse)?;
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
                let waited = match wait {
                    WaitForFinish::Up(w) => now >= since + w,
                    WaitForFinish::Forever => false,
                };
                if peer.all_answered(mcast_on) || waited {
                    peer.phase = Phase::Over;
                    if !told_to_stop {
                        ex.printer
                            .status(&peer.host.name, &Status::GivenAmountSent)?;
                    }
                    link.queue(peer.host.addr, &Body::Done, opts.size)?;
                } else if let WaitForFinish::Up(w) = wait {
                    wake = wake.min(since + w);
                }
            }
        }
        link.flush()?;

        if ex.peers.iter().all(|p| p.phase == Phase::Over) {
            let over_at = *all_over_at.get_or_insert(now);
            let lingered = match wait {
                WaitForFinish::Up(w) => now >= over_at + w,
                WaitForFinish::Forever => false,
            };
            if opts.auto_exit && (ex.peers.iter().all(|p| p.peer_said_done) || lingered) {
                break;
            }
        }

        if ex.printer.progress.due(now) {
            let sent: u64 = ex.peers.iter().map(|p| p.sent).sum();
            let rcv: u64 = ex.peers.iter().map(|p| p.unicast.rtt.received).sum();
            let total = opts.count.map(|c| u64::from(c) * ex.peers.len() as u64);
            let mut text = match total {
                Some(t) => format!("totem-ping: {sent}/{t} queries sent, {rcv} answered"),
                None => format!("totem-ping: {sent} queries sent, {rcv} answered"),
            };
            if mcast_on {
                let m: u64 = ex.peers.iter().map(|p| p.multicast.rtt.received).sum();
                text.push_str(&format!(", {m} by multicast"));
            }
            ex.printer.progress.draw(now, &text);
        }

        link.recv(Some(wake), |event| {
            ex.on_event(event, Instant::now(), Cast::Uni)
        })?;
        if let Some(m) = multicast.as_mut() {
            m.receiver
                .drain(|arrival| ex.on_event(arrival.event, arrival.at, Cast::Multi))?;
        }
        if let Some(e) = ex.output_error.take() {
            return Err(e.into());
        }
        for (dest, body) in ex.replies.drain(..) {
            link.queue(dest, &body, opts.size)?;
        }
        link.flush()?;
    }
    // Tell everyone still talking to us that we stop (timeout, signal, or normal end).
    for peer in ex.peers.iter().filter(|p| !matches!(p.phase, Phase::Over)) {
        link.queue(peer.host.addr, &Body::Done, opts.size)?;
    }
    link.flush()?;
    ex.printer.progress.clear();
    if let Some(m) = multicast.take() {
        let overflowed = m.receiver.overflowed();
        if overflowed > 0 {
            eprintln!(
                "totem-ping: {overflowed} multicast answers dropped locally (receiver queue full)"
            );
        }
        m.receiver.stop()?;
    }

    let verdict = report::judge(&ex.peers, mcast_on);
    if opts.json {
        let facts = report::RunFacts {
            local: local_addr.to_string(),
            io: link.backend().to_string(),
            encrypt: link.encrypted(),
            interval_ms: opts.interval.as_secs_f64() * 1000.0,
            group: our_group.map(|g| g.to_string()),
        };
        report::write_json(ex.printer.out, facts, &ex.peers, &verdict)?;
    } else {
        report::write_text(ex.printer.out, width, mcast_on, &ex.peers, &verdict)?;
    }
    Ok(verdict)
}
