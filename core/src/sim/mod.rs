//! A deterministic simulator for the Totem core (VOPR / quinn-Pair style): N protocol cores in one
//! process, a virtual clock, a seeded network that loses, duplicates, delays, reorders and
//! partitions, nodes that crash, restart, leave and join, client load on every node, and checkers
//! after every step. Everything is drawn from one seed, so a seed replays exactly.
//!
//! * [`rng`]: seed splitting and the random streams;
//! * [`clock`]: per-node clock offset and drift;
//! * [`net`]: the packet network;
//! * [`workload`]: self-checking numbered payloads and the client load;
//! * [`checker`]: the safety and liveness checkers;
//! * [`cluster`]: the event loop and the verbs (`cut`, `isolate`, `partition`, `heal`, `crash`,
//!   `restart`, `leave`, `join`, `run_for`, `run_until`);
//! * [`swarm`]: one seeded run with swarm-drawn fault options and a liveness phase;
//! * [`figures`]: crash → new configuration measurements.
//!
//! The `totem-sim` binary drives [`swarm::run`] over many seeds.

pub mod checker;
pub mod clock;
pub mod cluster;
pub mod figures;
pub mod net;
pub mod rng;
pub mod swarm;
pub mod workload;
