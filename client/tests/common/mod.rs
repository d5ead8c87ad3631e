//! Helpers shared by the integration tests: reference snapshots and a fake totemd.
// Test helpers are `pub` for the test files that include them, not for an outside user.
#![allow(unreachable_pub)]

pub mod fake_server;
pub mod snapshots;
