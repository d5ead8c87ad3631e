//! Which links carry a frame to one peer: knet's link modes plus totemd's suspect rule.
//!
//! * `passive` (REFERENCE §1.1): the usable link with the highest `knet_link_priority` value;
//!   priority 0 counts as 1; on a tie the lowest link number wins. knet logs the choice as
//!   `host: 2 (passive) best link: 1 (pri: 1)` ([`DestinationsChanged`]'s `Display`).
//! * `active` (REFERENCE §1.2): every usable link; the receiver dedupes ([`crate::dedupe`]).
//! * `rr` (REFERENCE §1.2): each frame on the next usable link in turn.
//! * Suspect (beyond knet, see [`crate::heartbeat`]): when the link a frame would use is
//!   suspect, the frame also goes out on the next usable link that is not suspect, in the mode's
//!   preference order (passive: next-best priority; rr: the next link in turn). If every usable
//!   link is suspect the frame goes out on all of them. Active mode already uses every link.
//!
//! A link is usable when it is enabled, up by the heartbeat rules and has a valid MTU (knet
//! `host.c` `_host_dstcache_update_sync`; REFERENCE §1.4): the caller folds that into
//! [`LinkStatus::usable`]. As in knet's destination cache, [`PeerPolicy::update`] runs when a
//! link's state changes and [`PeerPolicy::select`] runs per frame.
#![forbid(unsafe_code)]

use std::fmt;

use crate::wire::MAX_LINKS;

/// corosync `link_mode` (REFERENCE §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LinkMode {
    /// One link: the highest priority usable link (corosync's default).
    #[default]
    Passive,
    /// Every usable link at once.
    Active,
    /// Usable links in turn.
    RoundRobin,
}

/// A set of link numbers, bit `n` for link `n` (at most [`MAX_LINKS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LinkMask(pub u8);

const _: () = assert!(MAX_LINKS <= 8, "LinkMask holds one bit per link");

impl LinkMask {
    /// No link.
    pub const EMPTY: LinkMask = LinkMask(0);

    /// The set holding only `link`.
    pub fn single(link: u8) -> Self {
        debug_assert!(usize::from(link) < MAX_LINKS);
        LinkMask(1 << link)
    }

    /// Whether `link` is in the set.
    pub fn contains(self, link: u8) -> bool {
        usize::from(link) < MAX_LINKS && self.0 & (1 << link) != 0
    }

    /// Adds `link`.
    pub fn insert(&mut self, link: u8) {
        debug_assert!(usize::from(link) < MAX_LINKS);
        self.0 |= 1 << link;
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of links in the set.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Link numbers in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = u8> {
        (0..MAX_LINKS as u8).filter(move |&link| self.contains(link))
    }
}

/// What the policy needs to know about one link to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStatus {
    /// Configured, enabled, up by the heartbeat rules and with a valid MTU.
    pub usable: bool,
    /// The heartbeat's suspect flag: silent for a few RTTs while frames were expected.
    pub suspect: bool,
    /// `knet_link_priority`, 0..=255; 0 is treated as 1 (corosync.conf(5), REFERENCE §1.1).
    pub priority: u8,
}

impl LinkStatus {
    fn effective_priority(self) -> u8 {
        self.priority.max(1)
    }
}

/// The set of links a peer is reached on changed; `Display` gives knet's log line
/// (`host.c` `_host_dstcache_update_sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestinationsChanged {
    /// The peer's node id.
    pub host_id: u32,
    /// The link mode.
    pub mode: LinkMode,
    /// Passive mode: the preferred link and its effective priority; `None` in other modes or
    /// when no link is usable.
    pub best: Option<(u8, u8)>,
    /// Number of usable links.
    pub usable_links: usize,
}

impl fmt::Display for DestinationsChanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.usable_links == 0 {
            return write!(f, "host: {} has no active links", self.host_id);
        }
        match self.best {
            Some((link, priority)) => write!(
                f,
                "host: {} (passive) best link: {} (pri: {})",
                self.host_id, link, priority
            ),
            None => write!(
                f,
                "host: {} has {} active links",
                self.host_id, self.usable_links
            ),
        }
    }
}

/// Link selection for one peer.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    host_id: u32,
    mode: LinkMode,
    links: [LinkStatus; MAX_LINKS],
    /// Usable links in preference order (passive: priority desc, link asc; others: link asc).
    order: [u8; MAX_LINKS],
    order_len: usize,
    /// Round robin position in `order`.
    next_rr: usize,
    best: Option<u8>,
}

impl PeerPolicy {
    /// A policy for peer `host_id` with no usable link yet.
    pub fn new(host_id: u32, mode: LinkMode) -> Self {
        PeerPolicy {
            host_id,
            mode,
            links: [LinkStatus::default(); MAX_LINKS],
            order: [0; MAX_LINKS],
            order_len: 0,
            next_rr: 0,
            best: None,
        }
    }

    /// The link mode.
    pub fn mode(&self) -> LinkMode {
        self.mode
    }

    /// The passive-mode best link (in other modes, the first usable link), if any.
    pub fn best_link(&self) -> Option<u8> {
        self.best
    }

    /// Takes the current state of every link (index = link number) and recomputes the
    /// preference order. Returns what changed (passive: the best link; other modes: the set of
    /// usable links), for knet's log line; `None` when nothing did.
    pub fn update(&mut self, links: [LinkStatus; MAX_LINKS]) -> Option<DestinationsChanged> {
        let previous = (self.order, self.order_len);
        self.links = links;
        self.order_len = 0;
        for link in 0..MAX_LINKS as u8 {
            if self.links[usize::from(link)].usable {
                self.order[self.order_len] = link;
                self.order_len += 1;
            }
        }
        if self.mode == LinkMode::Passive {
            let statuses = self.links;
            // Stable sort: equal priorities keep ascending link numbers (the tie rule).
            self.order[..self.order_len].sort_by_key(|&link| {
                std::cmp::Reverse(statuses[usize::from(link)].effective_priority())
            });
        }
        if self.next_rr >= self.order_len {
            self.next_rr = 0;
        }
        let best = self.order[..self.order_len].first().copied();
        let best_changed = best != self.best;
        self.best = best;
        let set_changed = previous.0[..previous.1] != self.order[..self.order_len];
        let changed = match self.mode {
            LinkMode::Passive => best_changed,
            LinkMode::Active | LinkMode::RoundRobin => set_changed,
        };
        if !changed {
            return None;
        }
        Some(DestinationsChanged {
            host_id: self.host_id,
            mode: self.mode,
            best: best
                .filter(|_| self.mode == LinkMode::Passive)
                .map(|link| (link, self.links[usize::from(link)].effective_priority())),
            usable_links: self.order_len,
        })
    }

    /// Sets only the suspect flag of `link` (the heartbeat reported Suspect or Recovered).
    pub fn set_suspect(&mut self, link: u8, suspect: bool) {
        if let Some(status) = self.links.get_mut(usize::from(link)) {
            status.suspect = suspect;
        }
    }

    /// The links the next frame to this peer goes out on (empty when no link is usable).
    pub fn select(&mut self) -> LinkMask {
        let usable = &self.order[..self.order_len];
        let Some(&first) = usable.first() else {
            return LinkMask::EMPTY;
        };
        match self.mode {
            LinkMode::Active => {
                let mut mask = LinkMask::EMPTY;
                for &link in usable {
                    mask.insert(link);
                }
                mask
            }
            LinkMode::Passive => self.with_fallback(0, first),
            LinkMode::RoundRobin => {
                let position = self.next_rr % usable.len();
                self.next_rr = (position + 1) % usable.len();
                self.with_fallback(position, usable[position])
            }
        }
    }

    /// `chosen` (at `position` in the order), plus the next non-suspect usable link after it if
    /// `chosen` is suspect, or every usable link if all are suspect.
    fn with_fallback(&self, position: usize, chosen: u8) -> LinkMask {
        let mut mask = LinkMask::single(chosen);
        if !self.links[usize::from(chosen)].suspect {
            return mask;
        }
        let usable = &self.order[..self.order_len];
        let after = usable
            .iter()
            .cycle()
            .skip(position + 1)
            .take(usable.len() - 1);
        match after
            .copied()
            .find(|&link| !self.links[usize::from(link)].suspect)
        {
            Some(fallback) => mask.insert(fallback),
            None => usable.iter().for_each(|&link| mask.insert(link)),
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
    use super::*;

    fn links(spec: &[(u8, bool, u8)]) -> [LinkStatus; MAX_LINKS] {
        let mut all = [LinkStatus::default(); MAX_LINKS];
        for &(link, usable, priority) in spec {
            all[usize::from(link)] = LinkStatus {
                usable,
                suspect: false,
                priority,
            };
        }
        all
    }

    fn mask(list: &[u8]) -> LinkMask {
        let mut m = LinkMask::EMPTY;
        list.iter().for_each(|&l| m.insert(l));
        m
    }

    #[test]
    fn passive_higher_priority_wins() {
        // pve-docs example (REFERENCE §1.1): link0 priority 15, link1 priority 20 → link1.
        let mut p = PeerPolicy::new(2, LinkMode::Passive);
        let change = p.update(links(&[(0, true, 15), (1, true, 20)])).unwrap();
        assert_eq!(
            change.to_string(),
            "host: 2 (passive) best link: 1 (pri: 20)"
        );
        assert_eq!(p.select(), mask(&[1]));
        // corosync issue #527: pri 20 on link 0 beats pri 10 on link 1, then falls back.
        let mut p = PeerPolicy::new(3, LinkMode::Passive);
        p.update(links(&[(0, true, 20), (1, true, 10)]));
        assert_eq!(p.select(), mask(&[0]));
        let change = p.update(links(&[(0, false, 20), (1, true, 10)])).unwrap();
        assert_eq!(change.best, Some((1, 10)));
        assert_eq!(p.select(), mask(&[1]));
    }

    #[test]
    fn passive_ties_go_to_the_lowest_link_and_zero_counts_as_one() {
        let mut p = PeerPolicy::new(2, LinkMode::Passive);
        p.update(links(&[(3, true, 5), (1, true, 5), (2, true, 4)]));
        assert_eq!(p.select(), mask(&[1]));
        // 0 is treated as 1, so it ties with 1 and the lower link number wins.
        let mut p = PeerPolicy::new(2, LinkMode::Passive);
        let change = p.update(links(&[(0, true, 1), (1, true, 0)])).unwrap();
        assert_eq!(p.select(), mask(&[0]));
        assert_eq!(
            change.to_string(),
            "host: 2 (passive) best link: 0 (pri: 1)"
        );
        let mut p = PeerPolicy::new(2, LinkMode::Passive);
        p.update(links(&[(0, true, 0), (1, true, 1)]));
        assert_eq!(p.select(), mask(&[0]));
        // Defaults everywhere (corosync priority 1): link 0.
        let mut p = PeerPolicy::new(2, LinkMode::Passive);
        let change = p.update(links(&[(0, true, 1), (1, true, 1)])).unwrap();
        assert_eq!(
            change.to_string(),
            "host: 2 (passive) best link: 0 (pri: 1)"
        );
    }

    #[test]
    fn unchanged_best_link_is_not_reported_and_no_link_is() {
        let mut p = PeerPolicy::new(4, LinkMode::Passive);
        assert!(p.update(links(&[(0, true, 1)])).is_some());
        assert!(p.update(links(&[(0, true, 1), (1, true, 1)])).is_none());
        let change = p.update(links(&[])).unwrap();
        assert_eq!(change.to_string(), "host: 4 has no active links");
        assert_eq!(p.select(), LinkMask::EMPTY);
    }

    #[test]
    fn active_uses_every_usable_link() {
        let mut p = PeerPolicy::new(2, LinkMode::Active);
        let change = p.update(links(&[(0, true, 9), (1, false, 1), (2, true, 1)]));
        assert_eq!(change.unwrap().to_string(), "host: 2 has 2 active links");
        assert!(p
            .update(links(&[(0, true, 9), (1, false, 1), (2, true, 1)]))
            .is_none());
        assert_eq!(p.select(), mask(&[0, 2]));
        p.set_suspect(0, true);
        assert_eq!(p.select(), mask(&[0, 2]));
    }

    #[test]
    fn round_robin_rotates_over_usable_links() {
        let mut p = PeerPolicy::new(2, LinkMode::RoundRobin);
        p.update(links(&[(0, true, 1), (2, true, 1), (5, true, 1)]));
        let picks: Vec<_> = (0..6).map(|_| p.select()).collect();
        assert_eq!(
            picks,
            [
                mask(&[0]),
                mask(&[2]),
                mask(&[5]),
                mask(&[0]),
                mask(&[2]),
                mask(&[5])
            ]
        );
        p.update(links(&[(2, true, 1)]));
        assert_eq!(p.select(), mask(&[2]));
    }

    #[test]
    fn suspect_best_link_adds_the_next_best() {
        let mut p = PeerPolicy::new(2, LinkMode::Passive);
        p.update(links(&[(0, true, 30), (1, true, 10), (2, true, 20)]));
        assert_eq!(p.select(), mask(&[0]));
        p.set_suspect(0, true);
        // Next by priority is link 2 (pri 20), not link 1.
        assert_eq!(p.select(), mask(&[0, 2]));
        p.set_suspect(2, true);
        assert_eq!(p.select(), mask(&[0, 1]));
        p.set_suspect(1, true);
        assert_eq!(p.select(), mask(&[0, 1, 2]));
        p.set_suspect(0, false);
        p.set_suspect(1, false);
        p.set_suspect(2, false);
        assert_eq!(p.select(), mask(&[0]));
        // A single suspect link has nothing to fall back to.
        let mut p = PeerPolicy::new(2, LinkMode::Passive);
        p.update(links(&[(0, true, 1)]));
        p.set_suspect(0, true);
        assert_eq!(p.select(), mask(&[0]));
    }

    #[test]
    fn suspect_in_round_robin_adds_the_next_in_turn() {
        let mut p = PeerPolicy::new(2, LinkMode::RoundRobin);
        p.update(links(&[(0, true, 1), (1, true, 1), (2, true, 1)]));
        p.set_suspect(1, true);
        assert_eq!(p.select(), mask(&[0]));
        assert_eq!(p.select(), mask(&[1, 2]));
        assert_eq!(p.select(), mask(&[2]));
    }
}
