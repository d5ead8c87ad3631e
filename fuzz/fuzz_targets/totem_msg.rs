//! Fuzz the totem message codec and the SRP state machine: decode → encode → decode agree, and a
//! stream of frames fed into an `Srp` never panics (`totem_core::totem::fuzz::fuzz_totem_msg`,
//! also run by a proptest on stable).
//! Run: `cargo +nightly fuzz run totem_msg -- -max_total_time=60` from the repository root.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    totem_core::totem::fuzz::fuzz_totem_msg(data);
});
