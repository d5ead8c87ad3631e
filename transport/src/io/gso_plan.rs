//! Plans a send batch as UDP GSO runs: which datagrams go out together in one `sendmsg` with a
//! `UDP_SEGMENT` control message, and in which order. Pure: no socket, no allocation after
//! [`SendPlan::with_capacity`].
//!
//! # The order rule
//!
//! A batch usually interleaves destinations (frame 1 to B, frame 1 to C, frame 2 to B, ... and
//! often the Totem token to one peer last). With GSO on, the plan
//!
//! 1. groups the datagrams by destination, keeping each destination's own order;
//! 2. orders the groups by the position of their **last** datagram in the batch.
//!
//! So the batch's last datagram is still sent last (the token never overtakes the multicasts to
//! the same peer, and goes after everything else in the batch), and no destination sees its
//! datagrams reordered. Only datagrams to *different* destinations change their relative order.
//!
//! Within a group, consecutive datagrams form one run while they all have the same length, except
//! that a shorter one may end a run (the kernel cuts a GSO payload into segments of the segment
//! size; only the last segment may be shorter). A run holds at most `max_segments` datagrams and
//! at most [`run_bytes_max`] bytes of payload. An empty datagram is always a run of its own (a
//! zero segment size is not a GSO send, and an empty last segment would vanish).
//!
//! With GSO off (`max_segments <= 1`) the plan is the batch itself: one run per datagram, in
//! batch order, exactly what was sent before GSO existed.

use std::net::SocketAddr;

/// Most datagrams in one GSO send: `UDP_MAX_SEGMENTS` (`1 << 6`) in linux/udp.h of the kernels
/// that introduced UDP GSO (4.18); later kernels raised it, 64 works on all of them.
pub(crate) const GSO_SEGMENTS_MAX: usize = 64;

/// Largest UDP payload in one IPv4 send, GSO or not: 65535 (IPv4 total length) − 20 (IPv4
/// header) − 8 (UDP header).
pub(crate) const RUN_BYTES_MAX_V4: usize = 65_507;

/// Largest UDP payload in one IPv6 send: 65535 (IPv6 payload length, which excludes the fixed
/// 40-byte header) − 8 (UDP header).
pub(crate) const RUN_BYTES_MAX_V6: usize = 65_527;

/// The payload limit of one run to `dest` (an IPv4-mapped IPv6 address travels as IPv4).
pub(crate) fn run_bytes_max(dest: &SocketAddr) -> usize {
    match dest {
        SocketAddr::V4(_) => RUN_BYTES_MAX_V4,
        SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_some() => RUN_BYTES_MAX_V4,
        SocketAddr::V6(_) => RUN_BYTES_MAX_V6,
    }
}

/// Datagrams sent with one `sendmsg`: `count` datagrams to `dest`, found at
/// `order()[first..first + count]`. When `count > 1` every datagram is `segment_bytes` long except
/// possibly the last, which is shorter but not empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    /// Where every datagram of the run goes.
    pub dest: SocketAddr,
    /// Position of the run's first datagram in [`SendPlan::order`].
    pub first: usize,
    /// Datagrams in the run (1 = an ordinary send, no `UDP_SEGMENT`).
    pub count: usize,
    /// Length of the run's first datagram: the `UDP_SEGMENT` value when `count > 1`.
    pub segment_bytes: usize,
}

/// Reusable storage for planning batches of up to `capacity` datagrams.
#[derive(Debug)]
pub(crate) struct SendPlan {
    /// Indices into the batch, in send order.
    order: Vec<usize>,
    /// Second buffer for reordering `order` group by group.
    scratch: Vec<usize>,
    /// (position of the group's last datagram in the batch, start, end in `order`).
    groups: Vec<(usize, usize, usize)>,
    runs: Vec<Run>,
}

impl SendPlan {
    /// Storage for batches of up to `capacity` datagrams; [`SendPlan::plan`] never allocates for
    /// batches that size or smaller.
    pub(crate) fn with_capacity(capacity: usize) -> SendPlan {
        SendPlan {
            order: Vec::with_capacity(capacity),
            scratch: Vec::with_capacity(capacity),
            groups: Vec::with_capacity(capacity),
            runs: Vec::with_capacity(capacity),
        }
    }

    /// Plans `batch` (see the module doc for the rule). `max_segments <= 1` means GSO is off.
    pub(crate) fn plan(&mut self, batch: &[(SocketAddr, &[u8])], max_segments: usize) {
        self.order.clear();
        self.runs.clear();
        self.order.extend(0..batch.len());
        if max_segments > 1 {
            self.group_by_destination(batch);
        }
        self.cut_runs(batch, max_segments.max(1));
    }

    /// The runs of the last plan, in send order.
    pub(crate) fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Batch indices of the last plan, in send order.
    pub(crate) fn order(&self) -> &[usize] {
        &self.order
    }

    /// Batch indices of `run`'s datagrams, in send order.
    pub(crate) fn indices(&self, run: &Run) -> &[usize] {
        &self.order[run.first..run.first + run.count]
    }

    /// Reorders `order` into destination groups, groups sorted by their last batch position.
    fn group_by_destination(&mut self, batch: &[(SocketAddr, &[u8])]) {
        // Sorting by (destination, index) makes each group contiguous and keeps its own order.
        self.order
            .sort_unstable_by(|&a, &b| batch[a].0.cmp(&batch[b].0).then(a.cmp(&b)));
        self.groups.clear();
        let mut start = 0;
        while start < self.order.len() {
            let dest = batch[self.order[start]].0;
            let mut end = start + 1;
            while end < self.order.len() && batch[self.order[end]].0 == dest {
                end += 1;
            }
            self.groups.push((self.order[end - 1], start, end));
            start = end;
        }
        if self.groups.len() <= 1 {
            return;
        }
        self.groups.sort_unstable_by_key(|&(last, _, _)| last);
        self.scratch.clear();
        for &(_, start, end) in &self.groups {
            self.scratch.extend_from_slice(&self.order[start..end]);
        }
        std::mem::swap(&mut self.order, &mut self.scratch);
    }

    /// Cuts `order` into runs (see the module doc).
    fn cut_runs(&mut self, batch: &[(SocketAddr, &[u8])], max_segments: usize) {
        let n = self.order.len();
        let mut position = 0;
        while position < n {
            let (dest, first_data) = batch[self.order[position]];
            let segment_bytes = first_data.len();
            let limit = run_bytes_max(&dest);
            let first = position;
            let mut bytes = segment_bytes;
            position += 1;
            if segment_bytes > 0 {
                while position < n && position - first < max_segments {
                    let (next_dest, next_data) = batch[self.order[position]];
                    let len = next_data.len();
                    if next_dest != dest || len == 0 || len > segment_bytes || bytes + len > limit {
                        break;
                    }
                    bytes += len;
                    position += 1;
                    if len < segment_bytes {
                        break; // only the last segment may be shorter
                    }
                }
            }
            self.runs.push(Run {
                dest,
                first,
                count: position - first,
                segment_bytes,
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(i: usize) -> SocketAddr {
        match i {
            0 => "10.0.0.2:5405".parse().unwrap(),
            1 => "10.0.0.3:5405".parse().unwrap(),
            2 => "[fd00::4]:5405".parse().unwrap(),
            3 => "[::ffff:10.0.0.5]:5405".parse().unwrap(),
            _ => "10.0.0.2:5406".parse().unwrap(),
        }
    }

    /// Builds a batch from (destination index, length) pairs; payload byte = batch index.
    fn batch_of(spec: &[(usize, usize)]) -> (Vec<SocketAddr>, Vec<Vec<u8>>) {
        let dests = spec.iter().map(|&(d, _)| addr(d)).collect();
        let data = spec
            .iter()
            .enumerate()
            .map(|(i, &(_, len))| vec![i as u8; len])
            .collect();
        (dests, data)
    }

    fn planned(spec: &[(usize, usize)], max_segments: usize) -> (Vec<Run>, Vec<usize>) {
        let (dests, data) = batch_of(spec);
        let batch: Vec<(SocketAddr, &[u8])> = dests
            .iter()
            .zip(&data)
            .map(|(d, p)| (*d, p.as_slice()))
            .collect();
        let mut plan = SendPlan::with_capacity(batch.len());
        plan.plan(&batch, max_segments);
        (plan.runs().to_vec(), plan.order().to_vec())
    }

    #[test]
    fn interleaved_frames_group_by_peer_and_the_token_stays_last() {
        // B1 C1 B2 C2 B3 C3 token-to-B: C's group ends first, so C goes first, then all of B.
        let spec = [
            (0, 1400),
            (1, 1400),
            (0, 1400),
            (1, 1400),
            (0, 1400),
            (1, 1400),
            (0, 90),
        ];
        let (runs, order) = planned(&spec, GSO_SEGMENTS_MAX);
        assert_eq!(order, vec![1, 3, 5, 0, 2, 4, 6]);
        assert_eq!(runs.len(), 2);
        assert_eq!((runs[0].dest, runs[0].count), (addr(1), 3));
        assert_eq!((runs[1].dest, runs[1].count), (addr(0), 4));
        assert_eq!(runs[1].segment_bytes, 1400);
    }

    #[test]
    fn gso_off_keeps_the_batch_as_it_is() {
        let spec = [(0, 100), (1, 100), (0, 100), (0, 100)];
        let (runs, order) = planned(&spec, 1);
        assert_eq!(order, vec![0, 1, 2, 3]);
        assert!(runs.iter().all(|r| r.count == 1));
    }

    #[test]
    fn a_longer_datagram_starts_a_new_run_and_a_shorter_one_ends_it() {
        let spec = [(0, 100), (0, 100), (0, 200), (0, 200), (0, 50), (0, 200)];
        let (runs, _) = planned(&spec, GSO_SEGMENTS_MAX);
        let shape: Vec<(usize, usize)> = runs.iter().map(|r| (r.count, r.segment_bytes)).collect();
        assert_eq!(shape, vec![(2, 100), (3, 200), (1, 200)]);
    }

    #[test]
    fn limits_cut_runs() {
        // 64 segments at most.
        let spec: Vec<(usize, usize)> = (0..130).map(|_| (0, 10)).collect();
        let (runs, _) = planned(&spec, GSO_SEGMENTS_MAX);
        let counts: Vec<usize> = runs.iter().map(|r| r.count).collect();
        assert_eq!(counts, vec![64, 64, 2]);
        // 65507 bytes at most over IPv4: 8 × 8000 = 64000 fits, a ninth does not.
        let spec: Vec<(usize, usize)> = (0..9).map(|_| (0, 8000)).collect();
        let (runs, _) = planned(&spec, GSO_SEGMENTS_MAX);
        assert_eq!(runs.iter().map(|r| r.count).collect::<Vec<_>>(), vec![8, 1]);
        // IPv6 allows 65527: 65527 = 7 × 9361 exactly.
        let spec: Vec<(usize, usize)> = (0..7).map(|_| (2, 9361)).collect();
        let (runs, _) = planned(&spec, GSO_SEGMENTS_MAX);
        assert_eq!(runs.len(), 1);
        let spec: Vec<(usize, usize)> = (0..7).map(|_| (3, 9361)).collect();
        let (runs, _) = planned(&spec, GSO_SEGMENTS_MAX);
        assert_eq!(runs.len(), 2, "an IPv4-mapped address has the IPv4 limit");
    }

    #[test]
    fn empty_datagrams_are_never_segmented() {
        let spec = [(0, 0), (0, 0), (0, 10), (0, 0)];
        let (runs, _) = planned(&spec, GSO_SEGMENTS_MAX);
        assert!(runs.iter().all(|r| r.count == 1), "{runs:?}");
    }

    fn spec_strategy() -> impl Strategy<Value = Vec<(usize, usize)>> {
        let len = prop_oneof![
            4 => prop::sample::select(vec![0usize, 1, 64, 1200, 1400, 1450]),
            1 => 0usize..2000,
            1 => 9000usize..=65_527,
        ];
        prop::collection::vec((0usize..5, len), 0..200)
    }

    proptest! {
        #[test]
        fn plan_properties(spec in spec_strategy(), max_segments in prop::sample::select(vec![0usize, 1, 2, 3, 64])) {
            let (runs, order) = planned(&spec, max_segments);
            let n = spec.len();
            // Every datagram exactly once.
            let mut seen = order.clone();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..n).collect::<Vec<_>>());
            // The batch's last datagram goes last.
            if n > 0 {
                prop_assert_eq!(*order.last().unwrap(), n - 1);
            }
            // GSO off: the batch as it is.
            if max_segments <= 1 {
                prop_assert_eq!(&order, &(0..n).collect::<Vec<_>>());
            }
            // Each destination's own order is kept.
            for d in 0..5 {
                let mine: Vec<usize> = order.iter().copied().filter(|&i| spec[i].0 == d).collect();
                prop_assert!(mine.windows(2).all(|w| w[0] < w[1]));
            }
            // Runs cover `order` in sequence and respect the limits.
            let mut next = 0;
            for run in &runs {
                prop_assert_eq!(run.first, next);
                prop_assert!(run.count >= 1);
                prop_assert!(run.count <= max_segments.max(1));
                next += run.count;
                let members = &order[run.first..run.first + run.count];
                prop_assert!(members.iter().all(|&i| addr(spec[i].0) == run.dest));
                prop_assert_eq!(spec[members[0]].1, run.segment_bytes);
                if run.count > 1 {
                    let lens: Vec<usize> = members.iter().map(|&i| spec[i].1).collect();
                    let total: usize = lens.iter().sum();
                    prop_assert!(total <= run_bytes_max(&run.dest));
                    prop_assert!(run.segment_bytes > 0);
                    prop_assert!(run.segment_bytes <= usize::from(u16::MAX));
                    let (last, rest) = lens.split_last().unwrap();
                    prop_assert!(rest.iter().all(|&l| l == run.segment_bytes));
                    prop_assert!(*last > 0 && *last <= run.segment_bytes);
                }
            }
            prop_assert_eq!(next, n);
            // With GSO on, a destination's datagrams are contiguous and the groups are ordered by
            // their last batch position.
            if max_segments > 1 {
                let mut lasts = Vec::new();
                let mut i = 0;
                while i < n {
                    let d = spec[order[i]].0;
                    let mut j = i;
                    while j < n && addr(spec[order[j]].0) == addr(d) {
                        j += 1;
                    }
                    prop_assert!(order[j..].iter().all(|&k| addr(spec[k].0) != addr(d)));
                    lasts.push(order[j - 1]);
                    i = j;
                }
                prop_assert!(lasts.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}
