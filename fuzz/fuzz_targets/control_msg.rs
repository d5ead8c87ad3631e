//! Fuzz target placeholder for the client crate; its owner replaces this body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = data;
});
