//! Fuzz the frame header decoder: decode → re-encode → same bytes, body codecs, and a stream of
//! datagrams through dedupe and reassembly (`totem_transport::wire::fuzz_frame_decode`).
//! Run: `cargo +nightly fuzz run frame_decode -- -max_total_time=60` from the repository root.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    totem_transport::wire::fuzz_frame_decode(data);
});
