//! The simulated network: per-packet loss, duplication and delay drawn from a seeded stream,
//! optional reordering, and a matrix of cut directions for symmetric and one-way partitions.
//! Packets in flight on a direction that is cut when they arrive are lost.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::rc::Rc;

use super::rng::SimRng;
use crate::NodeId;

/// Nanoseconds per microsecond.
const NS_PER_US: u64 = 1_000;

/// How long a packet takes from sender to receiver.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DelayDist {
    /// Always the same.
    Fixed {
        /// Delay.
        us: u64,
    },
    /// Uniform between the bounds.
    Uniform {
        /// Lower bound.
        min_us: u64,
        /// Upper bound.
        max_us: u64,
    },
    /// A floor plus an exponential tail, capped.
    ExpTail {
        /// The floor.
        min_us: u64,
        /// Mean of the exponential part.
        mean_extra_us: u64,
        /// The cap.
        max_us: u64,
    },
}

impl DelayDist {
    /// A quiet LAN: 50..200 µs.
    pub const LAN: DelayDist = DelayDist::Uniform {
        min_us: 50,
        max_us: 200,
    };

    fn sample_ns(&self, rng: &mut SimRng) -> u64 {
        let us = match *self {
            DelayDist::Fixed { us } => us,
            DelayDist::Uniform { min_us, max_us } => rng.range_u64(min_us, max_us),
            DelayDist::ExpTail {
                min_us,
                mean_extra_us,
                max_us,
            } => {
                let extra = rng.exp(mean_extra_us as f64) as u64;
                min_us.saturating_add(extra).min(max_us.max(min_us))
            }
        };
        us.saturating_mul(NS_PER_US)
    }
}

/// Per-packet behaviour of the network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetOptions {
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet is delivered twice (the copy has its own delay).
    pub duplicate: f64,
    /// Delay distribution.
    pub delay: DelayDist,
    /// Whether packets on one direction may overtake each other; if not, each direction is FIFO.
    pub reorder: bool,
}

impl NetOptions {
    /// No loss, no duplication, LAN delay, FIFO.
    pub const QUIET: NetOptions = NetOptions {
        loss: 0.0,
        duplicate: 0.0,
        delay: DelayDist::LAN,
        reorder: false,
    };
    /// Every packet arrives at once (1 ns), in order: for throughput measurements.
    pub const INSTANT: NetOptions = NetOptions {
        loss: 0.0,
        duplicate: 0.0,
        delay: DelayDist::Fixed { us: 0 },
        reorder: false,
    };
}

/// A packet in flight.
#[derive(Clone, Debug)]
pub struct Packet {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// The frame as the sender's core produced it.
    pub frame: Rc<[u8]>,
}

/// Counters for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Packets handed to the network.
    pub sent: u64,
    /// Lost to random loss.
    pub lost: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Dropped because the direction was cut on arrival.
    pub cut: u64,
    /// Delivered to a node.
    pub delivered: u64,
}

/// Packets in flight and the state of every direction.
#[derive(Debug)]
pub struct Network {
    options: NetOptions,
    rng: SimRng,
    /// Directions (from, to) that drop everything.
    cut: HashSet<(NodeId, NodeId)>,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    in_flight: HashMap<u64, Packet>,
    next_seq: u64,
    /// Latest arrival scheduled per direction, for FIFO mode.
    last_arrival: HashMap<(NodeId, NodeId), u64>,
    /// Counters.
    pub stats: NetStats,
}

impl Network {
    /// A network with the given behaviour and random stream.
    pub fn new(options: NetOptions, rng: SimRng) -> Network {
        Network {
            options,
            rng,
            cut: HashSet::new(),
            queue: BinaryHeap::new(),
            in_flight: HashMap::new(),
            next_seq: 0,
            last_arrival: HashMap::new(),
            stats: NetStats::default(),
        }
    }

    /// Current behaviour.
    pub fn options(&self) -> NetOptions {
        self.options
    }

    /// Changes the behaviour for packets sent from now on.
    pub fn set_options(&mut self, options: NetOptions) {
        self.options = options;
    }

    /// Cuts the direction `from` → `to`.
    pub fn cut_one_way(&mut self, from: NodeId, to: NodeId) {
        if from != to {
            self.cut.insert((from, to));
        }
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut(&mut self, a: NodeId, b: NodeId) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Restores every direction.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Whether `from` → `to` is cut.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains(&(from, to))
    }

    /// Whether any direction is cut.
    pub fn is_partitioned(&self) -> bool {
        !self.cut.is_empty()
    }

    /// Hands a frame to the network at global time `now_ns`.
    pub fn send(&mut self, now_ns: u64, from: NodeId, to: NodeId, frame: Rc<[u8]>) {
        self.stats.sent += 1;
        if self.rng.chance(self.options.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.options.duplicate) {
            2
        } else {
            1
        };
        self.stats.duplicated += copies - 1;
        for _ in 0..copies {
            let mut at = now_ns + 1 + self.options.delay.sample_ns(&mut self.rng);
            if !self.options.reorder {
                let last = self.last_arrival.entry((from, to)).or_insert(0);
                at = at.max(*last + 1);
                *last = at;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.queue.push(Reverse((at, seq)));
            self.in_flight.insert(
                seq,
                Packet {
                    from,
                    to,
                    frame: Rc::clone(&frame),
                },
            );
        }
    }

    /// Arrival time of the next packet.
    pub fn next_arrival(&self) -> Option<u64> {
        self.queue.peek().map(|Reverse((at, _))| *at)
    }

    /// Packets in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Takes the next packet that arrives at or before `now_ns` on a direction that is not cut.
    pub fn pop_arrived(&mut self, now_ns: u64) -> Option<Packet> {
        while let Some(&Reverse((at, seq))) = self.queue.peek() {
            if at > now_ns {
                return None;
            }
            self.queue.pop();
            let Some(packet) = self.in_flight.remove(&seq) else {
                continue;
            };
            if self.is_cut(packet.from, packet.to) {
                self.stats.cut += 1;
                continue;
            }
            self.stats.delivered += 1;
            return Some(packet);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::rng::Stream;

    fn frame(b: u8) -> Rc<[u8]> {
        Rc::from(vec![b])
    }

    #[test]
    fn fifo_without_reorder_and_cut_drops() {
        let mut net = Network::new(
            NetOptions {
                delay: DelayDist::Uniform {
                    min_us: 1,
                    max_us: 500,
                },
                ..NetOptions::QUIET
            },
            SimRng::new(3, Stream::Network),
        );
        for b in 0..50 {
            net.send(0, 1, 2, frame(b));
        }
        net.cut_one_way(1, 3);
        net.send(0, 1, 3, frame(99));
        let mut got = Vec::new();
        while let Some(p) = net.pop_arrived(u64::MAX) {
            got.push(p.frame[0]);
        }
        assert_eq!(got, (0..50).collect::<Vec<u8>>());
        assert_eq!(net.stats.cut, 1);
        assert!(net.is_cut(1, 3) && !net.is_cut(3, 1));
        net.heal();
        assert!(!net.is_partitioned());
    }

    #[test]
    fn loss_and_duplication_happen_at_their_rates() {
        let options = NetOptions {
            loss: 0.2,
            duplicate: 0.1,
            ..NetOptions::QUIET
        };
        let mut net = Network::new(options, SimRng::new(9, Stream::Network));
        for _ in 0..10_000 {
            net.send(0, 1, 2, frame(0));
        }
        assert!((1_700..2_300).contains(&net.stats.lost), "{:?}", net.stats);
        assert!(
            (600..1_000).contains(&net.stats.duplicated),
            "{:?}",
            net.stats
        );
        let mut n = 0;
        while net.pop_arrived(u64::MAX).is_some() {
            n += 1;
        }
        assert_eq!(n, 10_000 - net.stats.lost + net.stats.duplicated);
    }
}
