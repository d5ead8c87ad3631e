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
        if p.loss_pct >= MAX_LOSS_PCT {
            reasons.push(format!(
                "{}: loss {:.2}% >= {MAX_LOSS_PCT}%",
                p.host, p.loss_pct
            ));
        }
        if p.rtt.p99_ms >= MAX_P99_MS {
            reasons.push(format!(
                "{}: p99 rtt {:.3} ms >= {MAX_P99_MS} ms",
                p.host, p.rtt.p99_ms
            ));
        }
        let jitter = p.rtt.p999_ms - p.rtt.p50_ms;
        if jitter >= MAX_JITTER_MS {
            reasons.push(format!(
                "{}: jitter {jitter:.3} ms >= {MAX_JITTER_MS} ms",
                p.host
            ));
        }
    }
    Verdict {
        ready: reasons.is_empty() && !peers.is_empty(),
        reasons,
        rule: rule_text(),
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
        }
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
