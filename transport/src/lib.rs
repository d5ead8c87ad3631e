//! Links: wire format, one io_uring reactor per link, heartbeats, link state and failover.
//!
//! Pure (sans-IO) pieces: [`wire`] (frame header codec and byte diagram), [`frag`] (fragmentation and
//! reassembly), [`pmtud`] (path MTU discovery), [`heartbeat`] (per peer and link ping/pong state),
//! [`policy`] (which links carry a frame), [`dedupe`] (per-peer sequence window).
//! I/O pieces: [`io`] (batched datagram backends: io_uring and recvmmsg/sendmmsg), [`queue`]
//! (bounded lock-free hand-off), [`reactor`] (the per-link thread), [`linkset`] (the public API).

pub mod dedupe;
pub mod frag;
pub mod heartbeat;
pub mod io;
pub mod linkset;
pub mod pmtud;
pub mod policy;
pub mod queue;
pub mod reactor;
pub mod wire;
