//! What totem-ping knows about one peer: its phase, the queries sent, and the answers received
//! by unicast and (with `-m`) by multicast, with duplicates detected per cast type as omping does
//! (`rhfunc.c`: one duplicate buffer per cast type).

use std::time::Instant;

use crate::hosts::Host;
use crate::link::Rejection;
use crate::omping_fmt::Cast;
use crate::stats::{loss_percent, omping_loss_percent, RttStats, SeenSet};

/// Where the exchange with a peer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Init requests sent, no response yet.
    Init,
    /// Queries on schedule.
    Pinging,
    /// No more queries; waiting for the last answers since `since`.
    Draining { since: Instant, told_to_stop: bool },
    /// Finished with this peer.
    Over,
}

/// Answers of one cast type.
#[derive(Debug, Clone, Default)]
pub struct CastStats {
    /// Round trips, received and duplicate counts.
    pub rtt: RttStats,
    /// Sequence numbers seen (duplicate detection).
    seen: SeenSet,
    /// First sequence number received (omping's `first_mcast_seq`).
    pub first_seq: Option<u32>,
}

impl CastStats {
    /// Counts one answer; true when it is a duplicate (only with `dup_detection`).
    pub fn record(&mut self, seq: u32, rtt_ns: u64, dup_detection: bool) -> bool {
        let dup = dup_detection && self.seen.insert(seq);
        if dup {
            self.rtt.dups += 1;
        } else {
            if self.rtt.received == 0 {
                self.first_seq = Some(seq);
            }
            self.rtt.record(rtt_ns);
        }
        dup
    }

    /// Queries that could have been answered from the first received one on: omping's
    /// `sent - first_mcast_seq + 1` (all of `sent` before anything arrived).
    pub fn sent_since_first(&self, sent: u64) -> u64 {
        match self.first_seq {
            Some(first) => (sent + 1).saturating_sub(u64::from(first)),
            None => sent,
        }
    }

    /// Exact loss from the first answer on, percent (the multicast verdict figure).
    pub fn loss_since_first_pct(&self, sent: u64) -> f64 {
        loss_percent(self.sent_since_first(sent), self.rtt.received)
    }

    /// omping's `-C` loss for this cast type: multicast counts from the first answer on.
    pub fn running_loss(&self, cast: Cast, sent: u64) -> i64 {
        let sent = match cast {
            Cast::Uni => sent,
            Cast::Multi => self.sent_since_first(sent),
        };
        omping_loss_percent(sent, self.rtt.received)
    }
}

/// Per-peer state.
pub struct Peer {
    /// The host as listed.
    pub host: Host,
    /// Phase of our queries to it.
    pub phase: Phase,
    /// When the next init request is due.
    pub next_init: Instant,
    /// When it answered our init (queries are scheduled from here).
    pub joined_at: Instant,
    /// Sequence number of the next query.
    pub next_seq: u32,
    /// Queries sent.
    pub sent: u64,
    /// Unicast answers.
    pub unicast: CastStats,
    /// Multicast answers (with `-m`).
    pub multicast: CastStats,
    /// It told us it is done.
    pub peer_said_done: bool,
    /// Why its datagrams were dropped, if they were.
    pub rejection: Option<Rejection>,
    /// ICMP errors seen for it.
    pub unreachable: u64,
    /// Its init carried our group: its queries are answered by multicast too.
    pub answer_by_mcast: bool,
    /// Why no multicast answers will come from it (its response named another group or none).
    pub mcast_problem: Option<String>,
}

impl Peer {
    /// A peer not contacted yet.
    pub fn new(host: Host, now: Instant) -> Peer {
        Peer {
            host,
            phase: Phase::Init,
            next_init: now,
            joined_at: now,
            next_seq: 1,
            sent: 0,
            unicast: CastStats::default(),
            multicast: CastStats::default(),
            peer_said_done: false,
            rejection: None,
            unreachable: 0,
            answer_by_mcast: false,
            mcast_problem: None,
        }
    }

    /// The answers of `cast`.
    pub fn cast(&self, cast: Cast) -> &CastStats {
        match cast {
            Cast::Uni => &self.unicast,
            Cast::Multi => &self.multicast,
        }
    }

    /// The answers of `cast`, to update.
    pub fn cast_mut(&mut self, cast: Cast) -> &mut CastStats {
        match cast {
            Cast::Uni => &mut self.unicast,
            Cast::Multi => &mut self.multicast,
        }
    }

    /// True when every query got its answers: unicast, and multicast when `mcast_on` and the
    /// peer answers by multicast.
    pub fn all_answered(&self, mcast_on: bool) -> bool {
        let mcast_done =
            !mcast_on || self.mcast_problem.is_some() || self.multicast.rtt.received >= self.sent;
        self.unicast.rtt.received >= self.sent && mcast_done
    }

    /// A problem that explains missing answers, for the verdict.
    pub fn problem(&self) -> Option<String> {
        if let Some(r) = &self.rejection {
            return Some(r.to_string());
        }
        if self.unicast.rtt.received == 0 && self.unreachable > 0 {
            return Some(
                "unreachable (ICMP error: is totem-ping running there, on this port?)".to_string(),
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_first_seq_per_cast_type() {
        let mut m = CastStats::default();
        assert!(!m.record(3, 1000, true));
        assert!(m.record(3, 1000, true));
        assert!(!m.record(4, 1000, true));
        assert_eq!((m.rtt.received, m.rtt.dups, m.first_seq), (2, 1, Some(3)));
        // omping: 21 sent, 20 received from seq 2 on → 4 % raw, 0 % from seq 2.
        let mut m = CastStats::default();
        for seq in 2..=21 {
            m.record(seq, 1000, true);
        }
        assert_eq!(omping_loss_percent(21, m.rtt.received), 4);
        assert_eq!(m.sent_since_first(21), 20);
        assert_eq!(m.running_loss(Cast::Multi, 21), 0);
        assert_eq!(m.running_loss(Cast::Uni, 21), 4);
        assert_eq!(m.loss_since_first_pct(21), 0.0);
        // -D: every copy counts.
        let mut u = CastStats::default();
        assert!(!u.record(1, 1000, false));
        assert!(!u.record(1, 1000, false));
        assert_eq!((u.rtt.received, u.rtt.dups), (2, 0));
    }
}
