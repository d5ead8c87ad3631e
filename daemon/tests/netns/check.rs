//! The delivery-log checker: every client's log against every other's.
//!
//! What it enforces (extended virtual synchrony as the clients can observe it):
//! * no client delivers a message twice, and each sender's messages arrive in sending order;
//! * within one configuration (ring) all clients deliver the same order: of two logs, one ring's
//!   sequence is a prefix of the other's;
//! * clients that leave a ring for the same next ring delivered exactly the same messages in it
//!   (EVS agreement at the transition), and every node that reports a ring reports the same members;
//! * a sender's messages never skip inside one ring of a receiver, and a sender's own client
//!   delivers every message the daemon accepted from it, without a gap;
//! * [`complete`]: with no partition, every surviving client delivered every surviving sender's
//!   messages (a client that joined later: from its first delivery of each sender on);
//! * [`refused_while_inquorate`]: clients that joined with `require_quorum` got no multicast
//!   accepted while their node was not quorate, and nobody delivered one.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use totem_client::proto::RingId;

use super::load::{Entry, MsgId};

/// One client's log: (node, incarnation, entries).
pub type Log = (u32, u32, Vec<Entry>);

type RingKey = (u32, u64);

/// Per ring: the messages a log delivered in it and the ring it moved to next, if any.
type RingMap = BTreeMap<RingKey, (Vec<MsgId>, Option<RingKey>)>;

fn key(r: &RingId) -> RingKey {
    (r.rep, r.seq)
}

/// Segments of a log: the ring in force and the messages delivered while it was.
fn segments(entries: &[Entry]) -> Vec<(RingKey, Vec<MsgId>)> {
    let mut out: Vec<(RingKey, Vec<MsgId>)> = Vec::new();
    for e in entries {
        let (ring, msg) = match e {
            Entry::Deliver { ring, msg } => (key(ring), Some(*msg)),
            Entry::Config { ring, .. } => (key(ring), None),
        };
        if out.last().map(|s| s.0) != Some(ring) {
            out.push((ring, Vec::new()));
        }
        if let Some(m) = msg {
            out.last_mut().expect("pushed").1.push(m);
        }
    }
    out
}

/// Per log: ring → (messages delivered in it, the ring that followed it, if any).
fn rings(entries: &[Entry]) -> Result<RingMap, String> {
    let segs = segments(entries);
    let mut out = RingMap::new();
    for (i, (ring, msgs)) in segs.iter().enumerate() {
        let slot = out.entry(*ring).or_default();
        if !slot.0.is_empty() && !msgs.is_empty() && slot.1.is_some() {
            return Err(format!(
                "ring {ring:?} delivered again after the log left it"
            ));
        }
        slot.0.extend(msgs.iter().copied());
        slot.1 = segs.get(i + 1).map(|s| s.0);
    }
    Ok(out)
}

/// Runs every check over all logs; `Err` lists each violation found.
pub fn check(logs: &[Log]) -> Result<(), String> {
    let mut errors = Vec::new();
    let mut per_log = Vec::new();
    for (node, inc, entries) in logs {
        let who = format!("client n{node}#{inc}");
        // No duplicates, FIFO per sender, no skip inside a ring.
        let mut seen = HashSet::new();
        let mut last: BTreeMap<(u32, u32), (u64, RingKey)> = BTreeMap::new();
        for e in entries {
            let Entry::Deliver { ring, msg } = e else {
                continue;
            };
            if !seen.insert(*msg) {
                errors.push(format!("{who}: {msg:?} delivered twice"));
            }
            let sender = (msg.node, msg.incarnation);
            if let Some(&(prev, prev_ring)) = last.get(&sender) {
                if msg.seq <= prev {
                    errors.push(format!(
                        "{who}: {msg:?} after seq {prev} of the same sender"
                    ));
                } else if msg.seq != prev + 1 && prev_ring == key(ring) {
                    errors.push(format!(
                        "{who}: sender {sender:?} skipped {}..{} inside ring {prev_ring:?}",
                        prev + 1,
                        msg.seq
                    ));
                }
            } else if sender == (*node, *inc) && msg.seq != 0 {
                errors.push(format!("{who}: own first delivery is seq {}", msg.seq));
            }
            last.insert(sender, (msg.seq, key(ring)));
        }
        // A sender's own messages: contiguous from 0.
        let own: Vec<u64> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Deliver { msg, .. } if msg.node == *node && msg.incarnation == *inc => {
                    Some(msg.seq)
                }
                _ => None,
            })
            .collect();
        if own.iter().enumerate().any(|(i, s)| *s != i as u64) {
            errors.push(format!("{who}: own deliveries not contiguous from 0"));
        }
        // Its own node is in every configuration it reports.
        for e in entries {
            if let Entry::Config { ring, members, .. } = e {
                if !members.contains(node) {
                    errors.push(format!(
                        "{who}: ring {ring:?} without its own node: {members:?}"
                    ));
                }
            }
        }
        match rings(entries) {
            Ok(r) => per_log.push((who, r)),
            Err(e) => errors.push(format!("{who}: {e}")),
        }
    }
    // Same members for the same ring, everywhere.
    let mut members: BTreeMap<RingKey, (String, BTreeSet<u32>)> = BTreeMap::new();
    for (node, inc, entries) in logs {
        for e in entries {
            if let Entry::Config {
                ring, members: m, ..
            } = e
            {
                let m: BTreeSet<u32> = m.iter().copied().collect();
                let who = format!("client n{node}#{inc}");
                match members.get(&key(ring)) {
                    Some((other, theirs)) if *theirs != m => errors.push(format!(
                        "ring {ring:?}: {who} reports {m:?}, {other} reports {theirs:?}"
                    )),
                    Some(_) => {}
                    None => {
                        members.insert(key(ring), (who, m));
                    }
                }
            }
        }
    }
    // Total order per ring; agreement at transitions. A client that joined the group later
    // starts inside the other's sequence: align both on the later starter's first message.
    for (i, (a_who, a)) in per_log.iter().enumerate() {
        for (b_who, b) in per_log.iter().skip(i + 1) {
            for (ring, (a_all, a_next)) in a {
                let Some((b_all, b_next)) = b.get(ring) else {
                    continue;
                };
                let (Some(a_first), Some(b_first)) = (a_all.first(), b_all.first()) else {
                    continue;
                };
                let (a_msgs, b_msgs, skipped, other) =
                    if let Some(k) = a_all.iter().position(|m| m == b_first) {
                        (&a_all[k..], &b_all[..], &a_all[..k], b_all)
                    } else if let Some(k) = b_all.iter().position(|m| m == a_first) {
                        (&a_all[..], &b_all[k..], &b_all[..k], a_all)
                    } else {
                        // No message in common: one client left before the other joined.
                        continue;
                    };
                // What one delivered before the other's first message, the other never delivers.
                if let Some(m) = skipped.iter().find(|m| other.contains(m)) {
                    errors.push(format!(
                        "ring {ring:?}: {a_who} and {b_who} order {m:?} differently around the later \
                         client's first delivery"
                    ));
                    continue;
                }
                let n = a_msgs.len().min(b_msgs.len());
                if a_msgs[..n] != b_msgs[..n] {
                    let at = (0..n).find(|&k| a_msgs[k] != b_msgs[k]).unwrap_or(n);
                    errors.push(format!(
                        "ring {ring:?}: {a_who} and {b_who} differ at delivery {at}: {:?} vs {:?}",
                        a_msgs[at], b_msgs[at]
                    ));
                } else if a_next.is_some() && a_next == b_next && a_msgs.len() != b_msgs.len() {
                    errors.push(format!(
                        "ring {ring:?}: {a_who} delivered {} and {b_who} {} before both moved to {:?}",
                        a_msgs.len(),
                        b_msgs.len(),
                        a_next
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        errors.truncate(30);
        Err(errors.join("\n"))
    }
}

/// With no partition: every log of a client still running at the end (`survivors`: node,
/// incarnation) delivered every message of every surviving sender. A client in `late` joined the
/// group after the others had started sending: for it, each surviving sender's messages are due
/// from the first one it delivered on (and it must have delivered at least one of each).
pub fn complete(
    logs: &[Log],
    survivors: &[(u32, u32)],
    late: &[(u32, u32)],
    sent: &BTreeMap<(u32, u32), u64>,
) -> Result<(), String> {
    let mut errors = Vec::new();
    for (node, inc, entries) in logs {
        if !survivors.contains(&(*node, *inc)) {
            continue;
        }
        let got: HashSet<MsgId> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Deliver { msg, .. } => Some(*msg),
                _ => None,
            })
            .collect();
        for (&(s_node, s_inc), &count) in sent {
            if !survivors.contains(&(s_node, s_inc)) {
                continue;
            }
            let from = if late.contains(&(*node, *inc)) {
                let first = got
                    .iter()
                    .filter(|m| m.node == s_node && m.incarnation == s_inc)
                    .map(|m| m.seq)
                    .min();
                match first {
                    Some(seq) => seq,
                    None if count == 0 => 0,
                    None => {
                        errors.push(format!(
                            "client n{node}#{inc} (joined late) delivered none of the {count} \
                             messages of n{s_node}#{s_inc}"
                        ));
                        continue;
                    }
                }
            } else {
                0
            };
            let missing: Vec<u64> = (from..count)
                .filter(|&seq| {
                    !got.contains(&MsgId {
                        node: s_node,
                        incarnation: s_inc,
                        seq,
                    })
                })
                .collect();
            if !missing.is_empty() {
                errors.push(format!(
                    "client n{node}#{inc} misses {} of {count} messages of n{s_node}#{s_inc}: \
                     seq {:?}",
                    missing.len(),
                    &missing[..missing.len().min(10)]
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// Multicasts a client may have counted as sent after the last quorum event it logged while
/// inquorate: the load client posts a multicast and counts it at once; the quorum event can
/// already wait in its queue, unread, and the daemon's refusal of that one message (which
/// uncounts it) comes later. One at most, because a load client keeps one message in flight.
const REPLY_OVERTAKES_EVENT: u64 = 1;

/// For the clients on `nodes` (that joined with `require_quorum`): each saw its node not quorate
/// at least once; no multicast of theirs was accepted while their log said so (beyond
/// [`REPLY_OVERTAKES_EVENT`]); and no client delivered, in a ring the sender's node reported
/// without quorum throughout, a message of that sender numbered at or after the count it had sent
/// when it learned so: what a minority's clients sent during a partition was never delivered
/// anywhere. Messages accepted before quorum was lost may still be delivered inside the minority.
pub fn refused_while_inquorate(logs: &[Log], nodes: &[u32]) -> Result<(), String> {
    let mut errors = Vec::new();
    // (sender, ring it reported inquorate) → messages it had sent when it logged that.
    let mut sent_at: BTreeMap<((u32, u32), RingKey), u64> = BTreeMap::new();
    for (node, inc, entries) in logs.iter().filter(|l| nodes.contains(&l.0)) {
        let who = format!("client n{node}#{inc}");
        let configs: Vec<(RingKey, bool, u64)> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Config {
                    ring,
                    quorate,
                    sent,
                    ..
                } => Some((key(ring), *quorate, *sent)),
                Entry::Deliver { .. } => None,
            })
            .collect();
        if configs.iter().all(|c| c.1) {
            errors.push(format!("{who} never saw its node without quorum"));
        }
        // Rings the sender reported without quorum from first to last. A ring it reported both
        // ways (the heal: the others' votes are counted a moment after the ring forms) legitimately
        // orders what it sent once quorate; the count check below covers its inquorate moment.
        for &(ring, quorate, sent) in &configs {
            let quorate_later = configs.iter().any(|c| c.0 == ring && c.1);
            if !quorate && !quorate_later {
                sent_at.entry(((*node, *inc), ring)).or_insert(sent);
            }
        }
        for pair in configs.windows(2) {
            let (ring, quorate, before) = pair[0];
            let after = pair[1].2;
            if !quorate && after > before + REPLY_OVERTAKES_EVENT {
                errors.push(format!(
                    "{who}: {} multicasts accepted while not quorate (ring {ring:?})",
                    after - before
                ));
            }
        }
    }
    for (node, inc, entries) in logs {
        for e in entries {
            let Entry::Deliver { ring, msg } = e else {
                continue;
            };
            let Some(&count) = sent_at.get(&((msg.node, msg.incarnation), key(ring))) else {
                continue;
            };
            if msg.seq >= count {
                errors.push(format!(
                    "client n{node}#{inc} delivered {msg:?} in ring {ring:?}, where its sender was \
                     not quorate after sending {count}"
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        errors.truncate(30);
        Err(errors.join("\n"))
    }
}

/// Counts of deliveries per log, for the report.
pub fn summary(logs: &[Log]) -> String {
    logs.iter()
        .map(|(n, i, e)| {
            let d = e
                .iter()
                .filter(|x| matches!(x, Entry::Deliver { .. }))
                .count();
            let c = e
                .iter()
                .filter(|x| matches!(x, Entry::Config { .. }))
                .count();
            format!("n{n}#{i}: {d} deliveries, {c} configurations")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(seq: u64) -> RingId {
        RingId { rep: 1, seq }
    }

    fn d(seq_ring: u64, node: u32, seq: u64) -> Entry {
        Entry::Deliver {
            ring: ring(seq_ring),
            msg: MsgId {
                node,
                incarnation: 0,
                seq,
            },
        }
    }

    #[test]
    fn checker_accepts_agreeing_logs_and_rejects_reorders_duplicates_and_gaps() {
        let good: Vec<Log> = vec![
            (1, 0, vec![d(4, 1, 0), d(4, 2, 0), d(4, 1, 1)]),
            (2, 0, vec![d(4, 1, 0), d(4, 2, 0)]),
        ];
        assert_eq!(check(&good), Ok(()));
        // A client that joined later sees a suffix of the same order.
        let late: Vec<Log> = vec![
            (1, 0, vec![d(4, 1, 0), d(4, 2, 0), d(4, 1, 1)]),
            (3, 0, vec![d(4, 2, 0), d(4, 1, 1)]),
        ];
        assert_eq!(check(&late), Ok(()));
        let reordered: Vec<Log> = vec![
            (1, 0, vec![d(4, 1, 0), d(4, 2, 0)]),
            (2, 0, vec![d(4, 2, 0), d(4, 1, 0)]),
        ];
        assert!(check(&reordered).is_err());
        let duplicate: Vec<Log> = vec![(1, 0, vec![d(4, 1, 0), d(4, 1, 0)])];
        assert!(check(&duplicate).is_err());
        let gap: Vec<Log> = vec![(1, 0, vec![d(4, 2, 0), d(4, 2, 2)])];
        assert!(check(&gap).is_err());
        // Two clients leave ring 4 for ring 8 having delivered different sets: EVS violation.
        let disagree: Vec<Log> = vec![
            (1, 0, vec![d(4, 1, 0), d(4, 1, 1), d(8, 1, 2)]),
            (2, 0, vec![d(4, 1, 0), d(8, 1, 2)]),
        ];
        assert!(check(&disagree).is_err());
        let mut sent = BTreeMap::new();
        sent.insert((1, 0), 2);
        assert!(complete(&good, &[(1, 0), (2, 0)], &[], &sent).is_err());
        assert!(complete(&good, &[(1, 0)], &[], &sent).is_ok());
        // A late joiner owes only what follows its first delivery of each sender, without a gap.
        sent.insert((3, 0), 0);
        assert!(complete(&late, &[(1, 0), (3, 0)], &[(3, 0)], &sent).is_ok());
        assert!(complete(&late, &[(1, 0), (3, 0)], &[], &sent).is_err());
        let late_gap: Vec<Log> = vec![(3, 0, vec![d(4, 1, 0), d(4, 1, 2)])];
        sent.insert((1, 0), 3);
        assert!(complete(&late_gap, &[(1, 0), (3, 0)], &[(3, 0)], &sent).is_err());
    }

    fn conf(seq_ring: u64, quorate: bool, sent: u64) -> Entry {
        Entry::Config {
            ring: ring(seq_ring),
            members: vec![1],
            quorate,
            sent,
        }
    }

    #[test]
    fn sends_while_inquorate_are_violations() {
        // Node 1 had sent 2 when it lost quorum in ring 8; its message 1, accepted before,
        // is delivered in ring 8 (fine); nothing accepted until ring 12 is quorate.
        let blocked: Vec<Log> = vec![(
            1,
            0,
            vec![
                conf(4, true, 0),
                d(4, 1, 0),
                conf(8, false, 2),
                d(8, 1, 1),
                conf(12, true, 2),
                d(12, 1, 2),
            ],
        )];
        assert_eq!(refused_while_inquorate(&blocked, &[1]), Ok(()));
        // The healed ring reported inquorate, then quorate: what follows is sent legitimately.
        let healed: Vec<Log> = vec![(
            1,
            0,
            vec![
                conf(8, false, 2),
                conf(12, false, 2),
                conf(12, true, 2),
                d(12, 1, 2),
                d(12, 1, 3),
                conf(16, true, 4),
            ],
        )];
        assert_eq!(refused_while_inquorate(&healed, &[1]), Ok(()));
        // Accepted and delivered while inquorate.
        let leaked: Vec<Log> = vec![(
            1,
            0,
            vec![
                conf(8, false, 1),
                d(8, 1, 0),
                d(8, 1, 1),
                d(8, 1, 2),
                conf(12, true, 3),
            ],
        )];
        assert!(refused_while_inquorate(&leaked, &[1]).is_err());
        // Never inquorate: the scenario did not test anything.
        let quorate: Vec<Log> = vec![(1, 0, vec![conf(4, true, 0), d(4, 1, 0)])];
        assert!(refused_while_inquorate(&quorate, &[1]).is_err());
    }
}
