//! corosync.conf parser: arbitrary bytes never panic, and whatever parses survives
//! write → parse unchanged (or is refused by the writer only for a line that indentation would
//! push past corosync's line limit).
#![no_main]
use libfuzzer_sys::fuzz_target;
use totemd::config::write::WriteError;
use totemd::config::{parse, parse_bytes, write, write_canonical, Config};

fuzz_target!(|data: &[u8]| {
    let Ok(tree) = parse_bytes(data) else { return };
    // Typing and validation must not panic either.
    if let Ok((config, _warnings)) = Config::from_tree(&tree) {
        let _ = totemd::config::validate::validate(&config);
    }
    match write(&tree) {
        Ok(text) => {
            let reparsed = parse(&text).expect("written text must parse");
            assert_eq!(reparsed, tree, "parse(write(tree)) != tree");
            let canonical = write_canonical(&tree).expect("canonical order writes too");
            let again =
                write_canonical(&parse(&canonical).expect("canonical parses")).expect("and writes");
            assert_eq!(again, canonical, "canonical write not idempotent");
        }
        Err(WriteError::LineTooLong { .. }) => {}
        Err(other) => panic!("parsed tree not writable: {other}"),
    }
});
