//! The client library applications link (process groups, ordered multicast), the control protocol
//! types the daemon and its clients share, and the `pvecm` command line built on them.
#![forbid(unsafe_code)]
