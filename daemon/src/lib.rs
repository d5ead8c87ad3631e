//! totemd library: configuration (corosync.conf), threads and queues, control socket server.
#![forbid(unsafe_code)]

pub mod config;
pub mod cpg;
