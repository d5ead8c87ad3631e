//! Sans-IO protocol cores: Totem single-ring ordering and membership, votequorum, qdevice algorithms.
//!
//! Nothing here reads a clock, opens a socket, spawns a thread or draws from the OS random source:
//! time comes in as [`time::MonoTime`], randomness as a seed, and every core takes events and hands
//! back actions. That is what lets [`sim`] run many nodes deterministically in one process.
#![forbid(unsafe_code)]

pub mod qdevice;
pub mod quorum;
pub mod sim;
pub mod time;
pub mod totem;

/// A cluster node id as in corosync's nodelist (`nodeid`), 1..=u32::MAX; 0 is never a valid id.
pub type NodeId = u32;
