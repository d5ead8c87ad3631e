//! Fuzz target for the control protocol decoders: arbitrary bytes through the one-shot decoder
//! and the incremental frame reader (cut at a fuzzer-chosen size), as requests and as daemon
//! messages. Decoding must return errors, never panic, and whatever decodes must re-encode to a
//! frame that decodes to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use totem_client::proto::{decode_frame, encode_frame, ClientMessage, DaemonMessage, FrameReader};

/// Re-encodes a decoded message of type `$type` and checks it decodes to itself.
macro_rules! check_round_trip {
    ($message:expr, $type:ty) => {
        if let Ok(frame) = encode_frame($message) {
            let (again, used) = decode_frame::<$type>(&frame).expect("re-encoded frame decodes");
            assert_eq!(used, frame.len());
            assert_eq!(&again, $message);
        }
    };
}

fuzz_target!(|data: &[u8]| {
    if let Ok((message, _)) = decode_frame::<ClientMessage>(data) {
        check_round_trip!(&message, ClientMessage);
    }
    if let Ok((message, _)) = decode_frame::<DaemonMessage>(data) {
        check_round_trip!(&message, DaemonMessage);
    }

    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(cut).max(1);
    let mut reader = FrameReader::new();
    for chunk in stream.chunks(piece) {
        let mut rest = chunk;
        while !rest.is_empty() {
            match reader.feed(rest) {
                Ok((taken, frame)) => {
                    rest = &rest[taken..];
                    if let Some(frame) = frame {
                        if let Ok(message) = frame.decode::<ClientMessage>() {
                            check_round_trip!(&message, ClientMessage);
                        }
                    }
                }
                Err(_) => return,
            }
        }
    }
});
