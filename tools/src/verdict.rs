//! The readiness verdict: is this network fit for a corosync/totemd cluster?
//!
//! Rule (all peers, unicast):
//! * loss < 1 % — Proxmox VE's guidance for `omping -c 10000 -i 0.001 -F -q` ("final %loss number
//!   should be < 1%", pve-docs pvecm.adoc before corosync 3; REFERENCE.md §6);
//! * latency: p99 round trip < 5 ms — pvecm.adoc "latency < 5 ms" for the cluster LAN (we apply it
//!   to the round trip, which is stricter than one-way);
//! * jitter: p99.9 − p50 < 5 ms — our rule, same budget: spikes are what make knet links flap and
//!   tokens time out (REFERENCE.md §7, pains 1, 3 and 11);
//! * every peer answered at all.
//!
//! With `-m` the multicast answers of every peer must meet the same rules, loss counted from the
//! first multicast answer on (omping's `(seq>=N x%)` figure): omping's man page calls losing the
//! first few multicast packets normal while the multicast tree is built, and a path that loses
//! multicast later (IGMP snooping without a querier, a filter) still fails. No multicast answer
//! at all fails too.

use serde::Serialize;

use crate::stats::RttSummary;

/// Loss limit, percent (pvecm.adoc, REFERENCE.md §6).
pub const MAX_LOSS_PCT: f64 = 1.0;
/// p99 round-trip limit, ms (pvecm.adoc l.595-601, REFERENCE.md §6).
pub const MAX_P99_MS: f64 = 5.0;
/// Jitter (p99.9 − p50) limit, ms (our rule, see the module doc).
pub const MAX_JITTER_MS: f64 = 5.0;

/// One peer's figures the verdict looks at.
#[derive(Debug, Clone)]
pub struct PeerFigures<'a> {
    /// Host as given on the command line.
    pub host: &'a str,
    /// Unicast replies received.
    pub received: u64,
    /// Exact loss, percent.
    pub loss_pct: f64,
    /// Round-trip summary.
    pub rtt: RttSummary,
    /// A problem already known (authentication, version, unreachable...).
    pub problem: Option<String>,
    /// Multicast figures, when `-m` is on.
    pub multicast: Option<McastFigures>,
}

/// One peer's multicast figures the verdict looks at.
#[derive(Debug, Clone)]
pub struct McastFigures {
    /// Multicast answers received.
    pub received: u64,
    /// Exact loss from the first multicast answer on, percent.
    pub loss_pct: f64,
    /// Round-trip summary.
    pub rtt: RttSummary,
    /// A multicast problem already known (group mismatch, peer without -m...).
    pub problem: Option<String>,
}

/// The verdict over all peers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// True when every rule holds for every peer.
    pub ready: bool,
    /// Each broken rule, `HOST: what`.
    pub reasons: Vec<String>,
    /// The rule, as printed.
    pub rule: String,
}

/// The rule in one line.
pub fn rule_text() -> String {
    format!(
        "loss < {MAX_LOSS_PCT}%, p99 rtt < {MAX_P99_MS} ms, jitter (p99.9-p50) < {MAX_JITTER_MS} ms"
    )
}

/// Applies the rule to every peer.
pub fn judge(peers: &[PeerFigures<'_>]) -> Verdict {
    let mut reasons = Vec::new();
    for p in peers {
        if let Some(problem) = &p.problem {
            reasons.push(format!("{}: {problem}", p.host));
        }
        if p.received == 0 {
            if p.problem.is_none() {
                reasons.push(format!("{}: no reply received", p.host));
            }
            continue;
        }
        judge_cast(&mut reasons, p.host, "", p.loss_pct, &p.rtt);
        if let Some(m) = &p.multicast {
            if let Some(problem) = &m.problem {
                reasons.push(format!("{}: multicast: {problem}", p.host));
            } else if m.received == 0 {
                reasons.push(format!("{}: no multicast reply received", p.host));
            } else {
                judge_cast(&mut reasons, p.host, "multicast ", m.loss_pct, &m.rtt);
            }
        }
    }
    Verdict {
        ready: reasons.is_empty() && !peers.is_empty(),
        reasons,
        rule: rule_text(),
    }
}

/// Loss, p99 and jitter rules for one cast type; `what` prefixes the reason ("multicast ").
fn judge_cast(reasons: &mut Vec<String>, host: &str, what: &str, loss_pct: f64, rtt: &RttSummary) {
    if loss_pct >= MAX_LOSS_PCT {
        reasons.push(format!(
            "{host}: {what}loss {loss_pct:.2}% >= {MAX_LOSS_PCT}%"
        ));
    }
    if rtt.p99_ms >= MAX_P99_MS {
        reasons.push(format!(
            "{host}: {what}p99 rtt {:.3} ms >= {MAX_P99_MS} ms",
            rtt.p99_ms
        ));
    }
    let jitter = rtt.p999_ms - rtt.p50_ms;
    if jitter >= MAX_JITTER_MS {
        reasons.push(format!(
            "{host}: {what}jitter {jitter:.3} ms >= {MAX_JITTER_MS} ms"
        ));
    }
}

impl Verdict {
    /// `verdict: READY (rule)` or `verdict: NOT READY: reason; reason (rule)`.
    pub fn line(&self) -> String {
        if self.ready {
            format!("verdict: READY ({})", self.rule)
        } else {
            format!(
                "verdict: NOT READY: {} (rule: {})",
                self.reasons.join("; "),
                self.rule
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(loss: f64, p50: f64, p99: f64, p999: f64) -> PeerFigures<'static> {
        PeerFigures {
            host: "h",
            received: 100,
            loss_pct: loss,
            rtt: RttSummary {
                p50_ms: p50,
                p99_ms: p99,
                p999_ms: p999,
                ..RttSummary::default()
            },
            problem: None,
            multicast: None,
        }
    }

    fn mcast(received: u64, loss: f64, p99: f64) -> McastFigures {
        McastFigures {
            received,
            loss_pct: loss,
            rtt: RttSummary {
                p50_ms: 0.1,
                p99_ms: p99,
                p999_ms: p99,
                ..RttSummary::default()
            },
            problem: None,
        }
    }

    #[test]
    fn multicast_counts_when_on() {
        let mut p = peer(0.0, 0.1, 0.2, 0.3);
        p.multicast = Some(mcast(100, 0.0, 0.2));
        assert!(judge(&[p.clone()]).ready);
        p.multicast = Some(mcast(100, 2.0, 0.2));
        let v = judge(&[p.clone()]);
        assert!(!v.ready);
        assert!(
            v.line().contains("h: multicast loss 2.00% >= 1%"),
            "{}",
            v.line()
        );
        p.multicast = Some(mcast(100, 0.0, 6.0));
        assert!(judge(&[p.clone()])
            .line()
            .contains("h: multicast p99 rtt 6.000 ms"));
        p.multicast = Some(mcast(0, 100.0, 0.0));
        assert!(judge(&[p.clone()])
            .line()
            .contains("h: no multicast reply received"));
        let mut m = mcast(0, 100.0, 0.0);
        m.problem = Some("peer runs without -m".into());
        p.multicast = Some(m);
        let line = judge(&[p]).line();
        assert!(
            line.contains("h: multicast: peer runs without -m"),
            "{line}"
        );
        assert!(!line.contains("no multicast reply"), "{line}");
    }

    #[test]
    fn each_rule_can_fail_alone() {
        assert!(judge(&[peer(0.0, 0.1, 0.2, 0.3)]).ready);
        assert!(!judge(&[peer(1.0, 0.1, 0.2, 0.3)]).ready);
        assert!(!judge(&[peer(0.5, 0.1, 5.0, 5.0)]).ready);
        assert!(!judge(&[peer(0.0, 0.1, 0.2, 5.2)]).ready);
        let mut silent = peer(0.0, 0.0, 0.0, 0.0);
        silent.received = 0;
        let v = judge(&[silent]);
        assert!(!v.ready);
        assert!(v.line().contains("h: no reply received"), "{}", v.line());
        assert!(!judge(&[]).ready);
    }
}
