//! Fuzz the two quorum decoders that read bytes from the network: the corosync-qdevice <-> qnetd
//! message format (first input byte even) and the votequorum node-state messages carried by
//! Totem (first byte odd). Each decodes, re-encodes and checks the round trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use totem_core::qdevice::wire;
use totem_core::quorum::QuorumMsg;

fuzz_target!(|data: &[u8]| {
    let Some((selector, rest)) = data.split_first() else {
        return;
    };
    if selector % 2 == 0 {
        wire::fuzz_round_trip(rest);
    } else if let Ok(msg) = QuorumMsg::decode(rest) {
        assert_eq!(
            msg.to_bytes(),
            rest,
            "votequorum message re-encoding differs"
        );
    }
});
