//! Process-group messages as the daemon decodes them from Totem deliveries: arbitrary bytes never
//! panic, whatever decodes re-encodes to the same bytes, and applying it to a group table keeps the
//! table consistent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use totemd::cpg::{CpgMsg, ProcessGroups};
use totemd::service;

fuzz_target!(|data: &[u8]| {
    let Ok((_, body)) = service::unwrap(data) else {
        return;
    };
    let Ok(msg) = CpgMsg::decode(body) else {
        return;
    };
    let mut again = Vec::new();
    msg.encode(&mut again).expect("a decoded message encodes");
    assert_eq!(again, body, "decode/encode is not canonical");
    let mut groups = ProcessGroups::new();
    let sender = u32::from(data.first().copied().unwrap_or(1)).max(1);
    for change in groups.apply(sender, &msg) {
        assert_eq!(change.members, groups.members(&change.group));
    }
    groups.apply_configuration(&[sender]);
});
