//! The client library applications link (process groups, ordered multicast) and the control protocol types.
#![forbid(unsafe_code)]
