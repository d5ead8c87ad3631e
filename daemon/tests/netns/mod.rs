//! Helpers for the multi-node tests in network namespaces: topology and daemons ([`topo`]), load
//! clients ([`load`]) and the delivery-log checker ([`check`]).
// The helpers are `pub` for the scenario files that include this module; a test crate exports
// nothing, so `unreachable_pub` does not apply.
#![allow(unreachable_pub)]

pub mod check;
pub mod load;
pub mod topo;
