//! omping's output lines, byte for byte (omping 0.0.5 `cliprint.c`; samples in
//! /work/shared/reference/omping-0.0.5/output.txt), so scripts that parse omping parse us.

use std::fmt::Write;

use crate::stats::{omping_loss_percent, RttStats};

/// Cast type of a reply (omping's `%5scast`: "  unicast", "multicast").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cast {
    /// Unicast.
    Uni,
    /// Multicast.
    Multi,
}

impl Cast {
    fn prefix(self) -> &'static str {
        match self {
            Cast::Uni => "uni",
            Cast::Multi => "multi",
        }
    }
}

/// omping's status messages (`cliprint.c` `cliprint_client_state`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// An init request was sent and not yet answered.
    WaitingForResponse,
    /// Unicast-only: the peer answered, queries start (omping prints the joined multicast group;
    /// without `-m` we print this instead).
    Pinging,
    /// With `-m`: joined the group.
    Joined {
        /// The group address.
        group: String,
    },
    /// The peer finished and told us to stop.
    ServerToldUsToStop,
    /// `-c` queries were sent (and answered or waited for).
    GivenAmountSent,
}

/// `HOST : message` with the host name left-aligned to `width`.
pub fn status_line(host: &str, width: usize, status: &Status) -> String {
    let text = match status {
        Status::WaitingForResponse => "waiting for response msg".to_string(),
        Status::Pinging => "response received, pinging".to_string(),
        Status::Joined { group } => format!("joined (S,G) = (*, {group}), pinging"),
        Status::ServerToldUsToStop => "server told us to stop".to_string(),
        Status::GivenAmountSent => "given amount of query messages was sent".to_string(),
    };
    format!("{host:<width$} : {text}")
}

/// What one per-reply line shows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reply {
    /// Cast type.
    pub cast: Cast,
    /// Sequence number.
    pub seq: u32,
    /// A duplicate.
    pub dup: bool,
    /// Datagram size, bytes.
    pub size: usize,
    /// Round trip, ms (None: not known).
    pub rtt_ms: Option<f64>,
    /// omping's `-C`: (running avg ms, loss %).
    pub cont: Option<(f64, i64)>,
}

/// One reply: `HOST :   unicast, seq=N[ (dup)], size=N bytes[, time=X.XXXms][ (A avg, L% loss)]`.
/// `dist=` is left out: we do not read the received TTL (omping also omits it when unknown).
pub fn reply_line(host: &str, width: usize, reply: &Reply) -> String {
    let Reply {
        cast,
        seq,
        dup,
        size,
        rtt_ms,
        cont,
    } = *reply;
    let mut s = format!("{host:<width$} : {:>5}cast, seq={seq}", cast.prefix());
    if dup {
        s.push_str(" (dup)");
    }
    let _ = write!(s, ", size={size} bytes");
    if let Some(rtt) = rtt_ms {
        let _ = write!(s, ", time={rtt:.3}ms");
    }
    if let Some((avg, loss)) = cont {
        s.push_str(" (");
        if rtt_ms.is_some() {
            let _ = write!(s, "{avg:.3} avg, ");
        }
        let _ = write!(s, "{loss}% loss)");
    }
    s
}

/// The summary line of one cast type:
/// `HOST :   unicast, xmt/rcv/%loss = S/R[+D]/L%[ (seq>=F L%)], min/avg/max/std-dev = a/b/c/d`.
/// `first_seq` is the first multicast sequence number received (omping's `seq>=` part when > 1).
pub fn summary_line(
    host: &str,
    width: usize,
    cast: Cast,
    sent: u64,
    stats: &RttStats,
    first_seq: Option<u32>,
) -> String {
    let received = stats.received;
    let sum = stats.summary();
    let mut s = format!(
        "{host:<width$} : {:>5}cast, xmt/rcv/%loss = {sent}/{received}",
        cast.prefix()
    );
    if stats.dups > 0 {
        let _ = write!(s, "+{}", stats.dups);
    }
    let _ = write!(s, "/{}%", omping_loss_percent(sent, received));
    if let Some(first) = first_seq.filter(|f| *f > 1 && cast == Cast::Multi) {
        let adjusted = omping_loss_percent(sent.saturating_sub(u64::from(first)) + 1, received);
        let _ = write!(s, " (seq>={first} {adjusted}%)");
    }
    let _ = write!(
        s,
        ", min/avg/max/std-dev = {:.3}/{:.3}/{:.3}/{:.3}",
        sum.min_ms, sum.avg_ms, sum.max_ms, sum.std_dev_ms
    );
    s
}

/// omping's line for a peer that never answered the init request.
pub fn never_received_line(host: &str, width: usize) -> String {
    format!("{host:<width$} : response message never received")
}

/// Our extra line after omping's summary: `HOST :   unicast, p50/p99/p99.9/max = a/b/c/d ms`.
pub fn percentile_line(host: &str, width: usize, cast: Cast, stats: &RttStats) -> String {
    let sum = stats.summary();
    format!(
        "{host:<width$} : {:>5}cast, p50/p99/p99.9/max = {:.3}/{:.3}/{:.3}/{:.3} ms",
        cast.prefix(),
        sum.p50_ms,
        sum.p99_ms,
        sum.p999_ms,
        sum.max_ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_match_omping_layout() {
        assert_eq!(
            reply_line(
                "10.88.0.2",
                9,
                &Reply {
                    cast: Cast::Uni,
                    seq: 1,
                    dup: false,
                    size: 69,
                    rtt_ms: Some(0.009),
                    cont: None
                }
            ),
            "10.88.0.2 :   unicast, seq=1, size=69 bytes, time=0.009ms"
        );
        assert_eq!(
            reply_line(
                "10.88.0.2",
                9,
                &Reply {
                    cast: Cast::Multi,
                    seq: 12,
                    dup: true,
                    size: 69,
                    rtt_ms: Some(0.551),
                    cont: Some((0.129, 0))
                }
            ),
            "10.88.0.2 : multicast, seq=12 (dup), size=69 bytes, time=0.551ms (0.129 avg, 0% loss)"
        );
        assert_eq!(
            reply_line(
                "a",
                3,
                &Reply {
                    cast: Cast::Uni,
                    seq: 2,
                    dup: false,
                    size: 10,
                    rtt_ms: None,
                    cont: Some((0.0, 50))
                }
            ),
            "a   :   unicast, seq=2, size=10 bytes (50% loss)"
        );
    }

    #[test]
    fn summary_lines_match_omping_layout() {
        let mut st = RttStats::default();
        for ns in [9_000u64, 205_000, 72_000] {
            st.record(ns);
        }
        let line = summary_line("10.88.0.2", 9, Cast::Uni, 3, &st, None);
        assert!(
            line.starts_with("10.88.0.2 :   unicast, xmt/rcv/%loss = 3/3/0%, min/avg/max/std-dev = 0.009/0.095/0.205/"),
            "{line}"
        );
        st.dups = 2;
        let line = summary_line("node-03", 7, Cast::Multi, 21, &st, Some(2));
        assert!(
            line.starts_with("node-03 : multicast, xmt/rcv/%loss = 21/3+2/85% (seq>=2 85%), "),
            "{line}"
        );
        assert_eq!(
            never_received_line("h", 3),
            "h   : response message never received"
        );
        assert_eq!(
            status_line("10.88.0.1", 9, &Status::GivenAmountSent),
            "10.88.0.1 : given amount of query messages was sent"
        );
    }
}
