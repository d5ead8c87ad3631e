//! Datagrams of totem-ping/pps/latency as a peer (or anything on the network) may send them:
//! arbitrary bytes never panic, and a decoded header decodes the same from its re-encoding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use totem_tools::wire;

fuzz_target!(|data: &[u8]| {
    let Ok((header, _body)) = wire::decode(data) else {
        return;
    };
    let mut again = Vec::new();
    wire::encode_header(&mut again, header);
    assert_eq!(wire::decode_header(&again).ok(), Some(header));
});
