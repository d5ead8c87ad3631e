//! totem-qnetd: the quorum arbiter. It speaks the corosync-qdevice / corosync-qnetd protocol
//! (TLS off) to any number of clusters at once, deciding votes with totem-core's sans-IO
//! [`totem_core::qdevice::QnetdServer`]; optionally every connection runs over an AES-256-GCM
//! channel keyed from the cluster authkey ([`channel`]). [`runtime`] owns sockets and threads;
//! [`driver`] is a TCP client driver for the core's qdevice client (tests, tools).
#![forbid(unsafe_code)]

pub mod channel;
pub mod driver;
pub mod runtime;
