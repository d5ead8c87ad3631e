//! The end of a totem-ping run: the verdict over all peers, then either omping's summary lines
//! (per peer a unicast line and, with `-m`, a multicast line; then our percentile lines and the
//! verdict line) or one JSON object.

use std::io::Write;

use serde::Serialize;

use super::peer::{CastStats, Peer, Phase};
use crate::omping_fmt::{self, Cast};
use crate::stats::{loss_percent, omping_loss_percent, RttSummary};
use crate::verdict::{self, McastFigures, PeerFigures, Verdict};

/// One cast type's results, for JSON.
#[derive(Debug, Serialize)]
pub struct CastReport {
    pub rcv: u64,
    pub dups: u64,
    pub loss_pct: f64,
    pub omping_loss_pct: i64,
    /// First sequence number answered (omping's `seq>=N`).
    pub first_seq: Option<u32>,
    /// Loss from `first_seq` on, percent (what the multicast verdict uses).
    pub loss_from_first_seq_pct: f64,
    pub rtt: RttSummary,
    /// Why no multicast answers came (peer without -m, another group).
    pub problem: Option<String>,
}

/// Results of one host, for JSON. The unicast figures are at the top level (as before `-m`
/// existed); `multicast` is null without `-m`.
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
    pub multicast: Option<CastReport>,
}

/// The whole run, for JSON.
#[derive(Debug, Serialize)]
pub struct PingReport {
    pub local: String,
    pub io: String,
    pub encrypt: bool,
    pub interval_ms: f64,
    /// The multicast group (`-m`), null when multicast is off.
    pub multicast_group: Option<String>,
    pub hosts: Vec<HostReport>,
    pub verdict: Verdict,
}

/// Run facts the report prints besides the peers.
pub struct RunFacts {
    pub local: String,
    pub io: String,
    pub encrypt: bool,
    pub interval_ms: f64,
    pub group: Option<String>,
}

/// Applies the readiness rule to every peer.
pub fn judge(peers: &[Peer], mcast_on: bool) -> Verdict {
    let figures: Vec<PeerFigures<'_>> = peers
        .iter()
        .map(|p| PeerFigures {
            host: &p.host.name,
            received: p.unicast.rtt.received,
            loss_pct: loss_percent(p.sent, p.unicast.rtt.received),
            rtt: p.unicast.rtt.summary(),
            problem: p.problem(),
            multicast: mcast_on.then(|| McastFigures {
                received: p.multicast.rtt.received,
                loss_pct: p.multicast.loss_since_first_pct(p.sent),
                rtt: p.multicast.rtt.summary(),
                problem: p.mcast_problem.clone(),
            }),
        })
        .collect();
    verdict::judge(&figures)
}

fn cast_report(c: &CastStats, sent: u64, problem: Option<String>) -> CastReport {
    CastReport {
        rcv: c.rtt.received,
        dups: c.rtt.dups,
        loss_pct: loss_percent(sent, c.rtt.received),
        omping_loss_pct: omping_loss_percent(sent, c.rtt.received),
        first_seq: c.first_seq,
        loss_from_first_seq_pct: c.loss_since_first_pct(sent),
        rtt: c.rtt.summary(),
        problem,
    }
}

/// Writes the JSON object.
pub fn write_json(
    out: &mut dyn Write,
    facts: RunFacts,
    peers: &[Peer],
    verdict: &Verdict,
) -> std::io::Result<()> {
    let mcast_on = facts.group.is_some();
    let report = PingReport {
        local: facts.local,
        io: facts.io,
        encrypt: facts.encrypt,
        interval_ms: facts.interval_ms,
        multicast_group: facts.group,
        hosts: peers
            .iter()
            .map(|p| HostReport {
                host: p.host.name.clone(),
                addr: p.host.addr.to_string(),
                joined: p.phase != Phase::Init,
                xmt: p.sent,
                rcv: p.unicast.rtt.received,
                dups: p.unicast.rtt.dups,
                loss_pct: loss_percent(p.sent, p.unicast.rtt.received),
                omping_loss_pct: omping_loss_percent(p.sent, p.unicast.rtt.received),
                rtt: p.unicast.rtt.summary(),
                problem: p.problem(),
                multicast: mcast_on
                    .then(|| cast_report(&p.multicast, p.sent, p.mcast_problem.clone())),
            })
            .collect(),
        verdict: verdict.clone(),
    };
    let text = serde_json::to_string_pretty(&report).map_err(std::io::Error::other)?;
    writeln!(out, "{text}")
}

/// Writes omping's summary (a blank line, then per peer its unicast and multicast lines, or
/// "response message never received"), our percentile lines and the verdict line.
pub fn write_text(
    out: &mut dyn Write,
    width: usize,
    mcast_on: bool,
    peers: &[Peer],
    verdict: &Verdict,
) -> std::io::Result<()> {
    let casts: &[Cast] = if mcast_on {
        &[Cast::Uni, Cast::Multi]
    } else {
        &[Cast::Uni]
    };
    writeln!(out)?;
    for p in peers {
        if p.unicast.rtt.received == 0 {
            // omping prints no multicast line then either.
            writeln!(
                out,
                "{}",
                omping_fmt::never_received_line(&p.host.name, width)
            )?;
            continue;
        }
        for &cast in casts {
            let c = p.cast(cast);
            writeln!(
                out,
                "{}",
                omping_fmt::summary_line(&p.host.name, width, cast, p.sent, &c.rtt, c.first_seq)
            )?;
        }
    }
    for p in peers.iter().filter(|p| p.unicast.rtt.received > 0) {
        for &cast in casts {
            let c = p.cast(cast);
            if c.rtt.received > 0 {
                writeln!(
                    out,
                    "{}",
                    omping_fmt::percentile_line(&p.host.name, width, cast, &c.rtt)
                )?;
            }
        }
    }
    writeln!(out, "{}", verdict.line())?;
    out.flush()
}
