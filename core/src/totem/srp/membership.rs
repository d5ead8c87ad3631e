//! Membership formation: GATHER (join exchange until consensus), COMMIT (the commit token collects
//! every member's old-ring state), RECOVERY (old-ring messages re-multicast on the new ring) and
//! installation with extended virtual synchrony: old-ring messages deliverable with their
//! guarantee, the transitional configuration, the remaining old-ring messages, the regular
//! configuration (Totem paper §4-5; corosync `totemsrp.c` memb_* functions, REFERENCE.md §2.3).

use super::{successor_in, Forming, Recovery, Srp, Timer, TokenState};
use crate::time::MonoTime;
use crate::totem::ring::Ring;
use crate::totem::wire::{Body, CommitEntry, CommitToken, Encapsulated, Join, Mcast};
use crate::totem::{Action, ConfChange, ConfKind, Dest, Order, RingId, State};
use crate::NodeId;
use std::collections::{BTreeSet, VecDeque};

/// A new ring's seq is this much above the highest seq its members knew (REFERENCE.md §2.2).
pub(crate) const RING_SEQ_STEP: u64 = 4;

impl Srp {
    /// Enters (or restarts) GATHER, adding `add_proc` to the proposed membership and `add_failed`
    /// to the failed set, and sends a join.
    pub(super) fn start_gather(
        &mut self,
        now: MonoTime,
        add_proc: &[NodeId],
        add_failed: &[NodeId],
        why: &str,
    ) {
        let was = self.state;
        if let Some(forming) = self.forming.take() {
            if let Some(rec) = forming.recovery {
                // Abort RECOVERY: the old ring stays the installed one; its messages received
                // through recovery carriers are kept.
                self.ring = rec.old;
            }
        }
        if was == State::Operational {
            self.proc_set = self.ring.members.iter().copied().collect();
            self.failed_set.clear();
        }
        self.proc_set.insert(self.me);
        let pending_proc = std::mem::take(&mut self.pending_proc);
        let pending_failed = std::mem::take(&mut self.pending_failed);
        self.proc_set.extend(pending_proc);
        self.failed_set
            .extend(pending_failed.into_iter().filter(|&n| n != self.me));
        self.settled = false;
        self.proc_set
            .extend(add_proc.iter().copied().filter(|&n| n != 0));
        self.failed_set
            .extend(add_failed.iter().copied().filter(|&n| n != self.me));
        self.proc_set.extend(self.failed_set.iter().copied());
        self.state = State::Gather;
        self.consensus.clear();
        self.consensus.insert(self.me);
        self.tk = TokenState::default();
        self.timers.cancel(Timer::TokenLoss);
        self.timers.cancel(Timer::TokenRetransmit);
        self.timers.cancel(Timer::Hold);
        if was != State::Gather || !self.timers.is_set(Timer::Consensus) {
            self.heard.clear();
            self.strikes.clear();
            self.timers.set(
                Timer::Consensus,
                now.plus_ms(self.cfg.effective_consensus_ms()),
            );
        }
        tracing::debug!(
            "totem: node {} enters GATHER ({why}): proc {:?} failed {:?}",
            self.me,
            self.proc_set,
            self.failed_set
        );
        // Consensus is checked when joins arrive and when the join timer fires, so a starting node
        // hears its peers for one join period before it settles for a ring of its own.
        self.schedule_join(now);
        self.timers.set(Timer::Join, now.plus_ms(self.cfg.join_ms));
    }

    fn schedule_join(&mut self, now: MonoTime) {
        if self.cfg.send_join_ms == 0 {
            self.send_join_now();
        } else {
            let delay = self.next_random() % (self.cfg.send_join_ms + 1);
            self.timers.set(Timer::SendJoin, now.plus_ms(delay));
        }
    }

    pub(super) fn send_join_now(&mut self) {
        if self.state != State::Gather {
            return;
        }
        let join = Join {
            ring_seq: self.highest_ring_seq,
            proc_list: self.proc_set.iter().copied().collect(),
            failed_list: self.failed_set.iter().copied().collect(),
        };
        self.send(Dest::All, Body::Join(join));
    }

    pub(super) fn on_join_timer(&mut self, now: MonoTime) {
        if self.state != State::Gather {
            return;
        }
        self.schedule_join(now);
        self.timers.set(Timer::Join, now.plus_ms(self.cfg.join_ms));
        self.check_consensus(now);
    }

    /// Consensus period over. Nodes never heard from in it are failed. Nodes heard from but not
    /// (yet) agreeing get a second period: they often just adopted our sets and their next join
    /// agrees; failing them at once splits live survivors into separate rings. A node that still
    /// disagrees at the next expiry is failed, which bounds the wait.
    pub(super) fn on_consensus_timeout(&mut self, now: MonoTime) {
        if self.state != State::Gather {
            return;
        }
        let silent: BTreeSet<NodeId> = self
            .live_set()
            .into_iter()
            .filter(|n| !self.consensus.contains(n))
            .collect();
        let disagreeing: BTreeSet<NodeId> = silent.intersection(&self.heard).copied().collect();
        let to_fail: Vec<NodeId> = silent
            .iter()
            .copied()
            .filter(|n| !disagreeing.contains(n) || self.strikes.contains(n))
            .collect();
        self.strikes = disagreeing
            .into_iter()
            .filter(|n| !to_fail.contains(n))
            .collect();
        self.heard.clear();
        self.timers.set(
            Timer::Consensus,
            now.plus_ms(self.cfg.effective_consensus_ms()),
        );
        if to_fail.is_empty() {
            // Agreed but no commit token came (the representative may have failed), or peers
            // are still converging: start a new round.
            self.consensus.clear();
            self.consensus.insert(self.me);
            self.schedule_join(now);
        } else {
            tracing::info!("totem: no consensus from {to_fail:?}; marking them failed");
            self.start_gather(now, &[], &to_fail, "consensus timeout");
        }
    }

    fn live_set(&self) -> BTreeSet<NodeId> {
        self.proc_set
            .difference(&self.failed_set)
            .copied()
            .collect()
    }

    /// The representative creates the commit token once every live member sent the same sets.
    fn check_consensus(&mut self, now: MonoTime) {
        if self.state != State::Gather {
            return;
        }
        let live = self.live_set();
        if !live.iter().all(|n| self.consensus.contains(n)) || live.first() != Some(&self.me) {
            return;
        }
        let members: Vec<NodeId> = live.into_iter().collect();
        let ring_id = RingId {
            rep: self.me,
            seq: self.highest_ring_seq.max(self.persisted_seq) + RING_SEQ_STEP,
        };
        let placeholder_entry = |node| CommitEntry {
            node,
            old_ring_id: RingId { rep: node, seq: 0 },
            aru: 0,
            high_seq: 0,
            safe_upto: 0,
            filled: false,
        };
        let entries = members.iter().map(|&n| placeholder_entry(n)).collect();
        let mut ct = CommitToken {
            ring_id,
            token_seq: 0,
            entries,
        };
        self.fill_commit_entry(&mut ct);
        self.enter_commit(now, ring_id, members, ct.token_seq);
        self.forward_commit(now, ct);
    }

    fn fill_commit_entry(&self, ct: &mut CommitToken) {
        if let Some(e) = ct.entries.iter_mut().find(|e| e.node == self.me) {
            *e = CommitEntry {
                node: self.me,
                old_ring_id: self.ring.id,
                aru: self.ring.aru,
                high_seq: self.ring.high_seq,
                safe_upto: self.ring.safe_upto,
                filled: true,
            };
        }
    }

    fn enter_commit(&mut self, now: MonoTime, ring_id: RingId, members: Vec<NodeId>, ct_seq: u64) {
        self.state = State::Commit;
        self.highest_ring_seq = self.highest_ring_seq.max(ring_id.seq);
        self.persisted_seq = ring_id.seq;
        self.actions.push_back(Action::PersistRingSeq(ring_id.seq));
        self.forming = Some(Forming {
            ring_id,
            members,
            last_ct_seq: ct_seq,
            recovery: None,
        });
        for t in [Timer::Join, Timer::SendJoin, Timer::Consensus, Timer::Hold] {
            self.timers.cancel(t);
        }
        self.timers
            .set(Timer::TokenLoss, now.plus_ms(self.cfg.token_loss_ms()));
    }

    fn forward_commit(&mut self, now: MonoTime, mut ct: CommitToken) {
        let Some(forming) = self.forming.as_ref() else {
            return;
        };
        let next = successor_in(&forming.members, self.me);
        ct.token_seq = ct.token_seq.wrapping_add(1);
        self.store_commit_retransmit(now, next, &ct);
        self.send(Dest::Node(next), Body::CommitToken(ct));
    }

    pub(super) fn on_commit_token(&mut self, now: MonoTime, mut ct: CommitToken) {
        match self.state {
            State::Gather => {
                let members: Vec<NodeId> = ct.entries.iter().map(|e| e.node).collect();
                let member_set: BTreeSet<NodeId> = members.iter().copied().collect();
                let sorted = members.windows(2).all(|w| w[0] < w[1]);
                let mine = ct.entries.iter().find(|e| e.node == self.me);
                if !sorted
                    || member_set != self.live_set()
                    || ct.ring_id.seq <= self.persisted_seq
                    || ct.ring_id.rep != members[0]
                    || mine.map_or(true, |e| e.filled)
                {
                    return;
                }
                self.fill_commit_entry(&mut ct);
                self.enter_commit(now, ct.ring_id, members, ct.token_seq);
                self.forward_commit(now, ct);
            }
            State::Commit => {
                let Some(f) = self.forming.as_ref() else {
                    return;
                };
                if ct.ring_id != f.ring_id || ct.token_seq <= f.last_ct_seq {
                    return;
                }
                if ct.entries.len() != f.members.len() || !ct.entries.iter().all(|e| e.filled) {
                    return;
                }
                self.timers
                    .set(Timer::TokenLoss, now.plus_ms(self.cfg.token_loss_ms()));
                self.enter_recovery(&ct);
                self.forward_commit(now, ct);
            }
            State::Recovery => {
                let is_rep = self.me == self.ring.id.rep;
                let Some(f) = self.forming.as_mut() else {
                    return;
                };
                if ct.ring_id != f.ring_id || ct.token_seq <= f.last_ct_seq || !is_rep {
                    return;
                }
                f.last_ct_seq = ct.token_seq;
                let Some(rec) = f.recovery.as_mut() else {
                    return;
                };
                if rec.first_token_sent {
                    return;
                }
                rec.first_token_sent = true;
                self.tk.sent = None;
                self.timers.cancel(Timer::TokenRetransmit);
                // The first token of the new ring, handled here as if received.
                let tok = crate::totem::wire::Token {
                    ring_id: ct.ring_id,
                    token_seq: 0,
                    seq: 0,
                    aru: 0,
                    aru_addr: 0,
                    fcc: 0,
                    backlog: 0,
                    retrans_flg: false,
                    install: false,
                    rtr: Vec::new(),
                };
                self.on_token(now, tok);
            }
            State::Operational => {}
        }
    }

    /// COMMIT → RECOVERY: the commit token made a full round; every member's old-ring state is
    /// known. Old-ring messages some survivor of our old ring may lack are queued for
    /// re-multicast on the new ring.
    fn enter_recovery(&mut self, ct: &CommitToken) {
        let Some(forming) = self.forming.as_mut() else {
            return;
        };
        let new_ring = Ring::new(ct.ring_id, forming.members.clone());
        let old = std::mem::replace(&mut self.ring, new_ring);
        let same: Vec<&CommitEntry> = ct
            .entries
            .iter()
            .filter(|e| e.old_ring_id == old.id)
            .collect();
        let low_aru = same.iter().map(|e| e.aru).min().unwrap_or(old.aru);
        let old_safe = same
            .iter()
            .map(|e| e.safe_upto)
            .max()
            .unwrap_or(old.safe_upto);
        let trans_members: Vec<NodeId> = same.iter().map(|e| e.node).collect();
        let retrans: VecDeque<Mcast> = if old.placeholder {
            VecDeque::new()
        } else {
            old.buf
                .range(low_aru + 1..)
                .map(|(_, m)| m.clone())
                .collect()
        };
        tracing::debug!(
            "totem: node {} enters RECOVERY for ring {}: {} old-ring messages to re-multicast",
            self.me,
            ct.ring_id,
            retrans.len()
        );
        forming.recovery = Some(Recovery {
            old,
            retrans,
            trans_members,
            old_safe,
            first_token_sent: false,
        });
        forming.last_ct_seq = ct.token_seq;
        self.state = State::Recovery;
        self.tk = TokenState::default();
    }

    /// RECOVERY: the next old-ring message to carry on the new ring, as sequence number `seq`.
    pub(super) fn next_recovery_message(&mut self, seq: u64) -> Option<Mcast> {
        let ring_id = self.ring.id;
        let rec = self.forming.as_mut()?.recovery.as_mut()?;
        let old = rec.retrans.pop_front()?;
        let nested = old.encapsulated.is_some();
        let encapsulated = Encapsulated {
            ring_id: rec.old.id,
            seq: old.seq,
            origin: old.origin,
            order: old.order,
            nested,
        };
        let payload = if nested { Vec::new() } else { old.payload };
        Some(Mcast {
            ring_id,
            seq,
            origin: self.me,
            order: Order::Agreed,
            encapsulated: Some(encapsulated),
            payload,
        })
    }

    /// RECOVERY: an old-ring message carried on the new ring.
    pub(super) fn store_recovered(&mut self, e: Encapsulated, payload: Vec<u8>) {
        let Some(rec) = self.forming.as_mut().and_then(|f| f.recovery.as_mut()) else {
            return;
        };
        if rec.old.placeholder || rec.old.id != e.ring_id {
            return;
        }
        let inner = Mcast {
            ring_id: e.ring_id,
            seq: e.seq,
            origin: e.origin,
            order: e.order,
            encapsulated: if e.nested { Some(e) } else { None },
            payload,
        };
        rec.old.insert(e.seq, inner);
    }

    /// RECOVERY → OPERATIONAL: deliver what is left of the old ring with EVS, then the new ring.
    pub(super) fn install(&mut self, now: MonoTime) {
        let Some(forming) = self.forming.take() else {
            return;
        };
        let Some(rec) = forming.recovery else { return };
        let mut old = rec.old;
        let new_id = self.ring.id;
        let new_members = self.ring.members.clone();

        // Old-ring messages still deliverable in the old regular configuration: contiguous, and
        // safe ones only if some survivor knew every old member had them.
        if !old.placeholder {
            loop {
                let s = old.delivered + 1;
                let Some(m) = old.buf.get(&s) else { break };
                if m.encapsulated.is_none() && m.order == Order::Safe && s > rec.old_safe {
                    break;
                }
                let deliverable = m.encapsulated.is_none();
                let (origin, order, payload) = (m.origin, m.order, m.payload.clone());
                old.delivered = s;
                if deliverable {
                    self.deliver_packet(origin, old.id, order, &payload);
                }
            }
        }
        let trans: Vec<NodeId> = rec.trans_members.clone();
        let left: Vec<NodeId> = old
            .members
            .iter()
            .copied()
            .filter(|n| !new_members.contains(n))
            .collect();
        self.actions.push_back(Action::Conf(ConfChange {
            kind: ConfKind::Transitional,
            ring_id: new_id,
            members: trans.clone(),
            left: left.clone(),
            joined: Vec::new(),
        }));
        // The rest of the old ring, gaps skipped, in the transitional configuration.
        if !old.placeholder {
            let rest: Vec<Mcast> = old
                .buf
                .range(old.delivered + 1..)
                .map(|(_, m)| m.clone())
                .collect();
            for m in rest {
                if m.encapsulated.is_none() {
                    self.deliver_packet(m.origin, old.id, m.order, &m.payload);
                }
            }
        }
        self.reassembler.clear();
        let joined: Vec<NodeId> = new_members
            .iter()
            .copied()
            .filter(|n| !trans.contains(n))
            .collect();
        // The driver logs corosync's line from the Conf action; this is the core's own trace.
        tracing::debug!("installed ring {new_id}: joined {joined:?} left {left:?}");
        self.actions.push_back(Action::Conf(ConfChange {
            kind: ConfKind::Regular,
            ring_id: new_id,
            members: new_members.clone(),
            left,
            joined,
        }));
        self.state = State::Operational;
        self.proc_set = new_members.into_iter().collect();
        self.failed_set.clear();
        self.consensus.clear();
        self.packer.restart_partial();
        // The first merge detect waits one merge period, giving every member time to install.
        self.last_merge_detect = Some(now);
        self.settled = false;
        self.deliver_ring();
    }

    pub(super) fn on_join(&mut self, now: MonoTime, from: NodeId, j: Join) {
        self.highest_ring_seq = self.highest_ring_seq.max(j.ring_seq);
        let jproc: BTreeSet<NodeId> = j.proc_list.iter().copied().collect();
        let jfailed: BTreeSet<NodeId> = j.failed_list.iter().copied().collect();
        if jfailed.contains(&from) {
            // A leave: the sender shuts down cleanly.
            let affected = match self.state {
                State::Operational => self.ring.members.contains(&from),
                State::Gather => self.proc_set.contains(&from) && !self.failed_set.contains(&from),
                State::Commit | State::Recovery => self
                    .forming
                    .as_ref()
                    .is_some_and(|f| f.members.contains(&from)),
            };
            if affected {
                tracing::info!("totem: node {from} left the cluster");
                self.start_gather(now, &[], &[from], "leave");
            }
            return;
        }
        let they_failed_me = jfailed.contains(&self.me);
        match self.state {
            State::Operational => {
                if self.ring.members.contains(&from) && j.ring_seq < self.ring.id.seq {
                    return; // a join from the gather that formed this ring
                }
                if they_failed_me {
                    if !self.ring.members.contains(&from) {
                        // An outsider that excluded us forms its own ring; merge detection
                        // reunites the rings later with fresh failed sets. Reacting here would
                        // make both sides exclude each other forever.
                        return;
                    }
                    self.start_gather(now, &[from], &[from], "join marks us failed");
                } else {
                    self.request_merge(now, from, &j.proc_list, &j.failed_list, "join");
                }
            }
            State::Gather => {
                if self.failed_set.contains(&from) {
                    return;
                }
                if they_failed_me {
                    self.start_gather(now, &[from], &[from], "join marks us failed");
                    return;
                }
                self.heard.insert(from);
                if jproc == self.proc_set && jfailed == self.failed_set {
                    self.consensus.insert(from);
                    self.check_consensus(now);
                } else if jproc.is_subset(&self.proc_set) && jfailed.is_subset(&self.failed_set) {
                    // They lag behind; our next join brings them up to date.
                } else {
                    self.start_gather(now, &j.proc_list, &j.failed_list, "join");
                    // Having adopted the sender's sets, its join now agrees with ours.
                    if jproc == self.proc_set && jfailed == self.failed_set {
                        self.consensus.insert(from);
                        self.check_consensus(now);
                    }
                }
            }
            State::Commit | State::Recovery => {
                if self.failed_set.contains(&from) {
                    return;
                }
                let Some(f) = self.forming.as_ref() else {
                    return;
                };
                if !f.members.contains(&from) || j.ring_seq < f.ring_id.seq {
                    // Outsiders wait until the ring is installed (their joins repeat); members'
                    // joins from the gather that agreed on this ring are stale.
                    return;
                }
                if they_failed_me {
                    self.start_gather(now, &[from], &[from], "join marks us failed");
                } else {
                    self.start_gather(now, &j.proc_list, &j.failed_list, "join during commit");
                }
            }
        }
    }
}
