//! totemd library: configuration (corosync.conf), threads and queues, control socket server.
#![forbid(unsafe_code)]

pub mod config;
pub mod control;
pub mod cpg;
pub mod node;
pub mod notify;
pub mod sched;
pub mod service;
