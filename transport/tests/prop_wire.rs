//! Property tests for the frame header codec: round trips, and arbitrary bytes never panic.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use proptest::prelude::*;
use totem_transport::wire::{
    ClusterId, Fragment, FrameType, Header, MtuProbeBody, PingBody, WireError, HEADER_LEN,
    MAX_LINKS, MAX_PAYLOAD_LEN, NONCE_LEN,
};

fn frame_type() -> impl Strategy<Value = FrameType> {
    prop_oneof![
        Just(FrameType::Data),
        Just(FrameType::Ping),
        Just(FrameType::Pong),
        Just(FrameType::MtuProbe),
        Just(FrameType::MtuReply),
    ]
}

prop_compose! {
    fn valid_header()(
        frame_type in frame_type(),
        encrypted in any::<bool>(),
        key_id in any::<u8>(),
        link_number in 0..MAX_LINKS as u8,
        cluster in any::<u32>(),
        source_node_id in any::<u32>(),
        seq in any::<u64>(),
        message_id in any::<u32>(),
        count in 1..=u16::MAX,
        index_seed in any::<u16>(),
        payload_len in 0..=2000u16,
        nonce in any::<[u8; NONCE_LEN]>(),
    ) -> Header {
        let fragment = if frame_type == FrameType::Data {
            Fragment { message_id, index: index_seed % count, count }
        } else {
            Fragment::WHOLE
        };
        Header {
            frame_type,
            encrypted,
            key_id: if encrypted { key_id } else { 0 },
            link_number,
            cluster_id: ClusterId(cluster),
            source_node_id,
            seq,
            fragment,
            payload_len,
            nonce: if encrypted { nonce } else { [0; NONCE_LEN] },
        }
    }
}

proptest! {
    #[test]
    fn header_round_trips(header in valid_header(), fill in any::<u8>()) {
        let mut frame = vec![fill; header.frame_len()];
        prop_assert_eq!(header.encode_into(&mut frame), Ok(HEADER_LEN));
        let (decoded, payload) = Header::decode_for_cluster(&frame, header.cluster_id).unwrap();
        prop_assert_eq!(decoded, header);
        prop_assert_eq!(payload.len(), usize::from(header.payload_len));
        prop_assert!(payload.iter().all(|&b| b == fill));
        // Re-encoding the decoded header gives the same bytes.
        let mut again = [0u8; HEADER_LEN];
        decoded.encode_into(&mut again).unwrap();
        prop_assert_eq!(&again[..], &frame[..HEADER_LEN]);
    }

    #[test]
    fn foreign_cluster_is_rejected(header in valid_header(), other in any::<u32>()) {
        prop_assume!(other != header.cluster_id.0);
        let mut frame = vec![0u8; header.frame_len()];
        header.encode_into(&mut frame).unwrap();
        let is_foreign = matches!(
            Header::decode_for_cluster(&frame, ClusterId(other)),
            Err(WireError::ForeignCluster { .. })
        );
        prop_assert!(is_foreign);
    }

    #[test]
    fn every_truncation_is_rejected(header in valid_header()) {
        let mut frame = vec![0u8; header.frame_len()];
        header.encode_into(&mut frame).unwrap();
        for cut in 0..frame.len() {
            prop_assert!(Header::decode(&frame[..cut]).is_err());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok((header, payload)) = Header::decode(&bytes) {
            // Whatever decodes re-encodes to the same bytes.
            let mut again = vec![0u8; bytes.len()];
            header.encode_into(&mut again).unwrap();
            again[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
            prop_assert_eq!(&again[..HEADER_LEN + payload.len()], &bytes[..HEADER_LEN + payload.len()]);
        }
        let _ = PingBody::decode(&bytes);
        let _ = MtuProbeBody::decode_reply(&bytes);
        let _ = MtuProbeBody::decode_probe(&bytes, bytes.len());
    }

    #[test]
    fn mutated_headers_never_panic(header in valid_header(), at in 0..HEADER_LEN, value in any::<u8>()) {
        let mut frame = vec![0u8; header.frame_len()];
        header.encode_into(&mut frame).unwrap();
        frame[at] = value;
        if let Ok((decoded, _)) = Header::decode(&frame) {
            let mut again = [0u8; HEADER_LEN];
            decoded.encode_into(&mut again).unwrap();
            prop_assert_eq!(&again[..], &frame[..HEADER_LEN]);
        }
    }

    #[test]
    fn ping_body_round_trips(sent_at_ns in any::<u64>(), ping_seq in any::<u64>()) {
        let body = PingBody { sent_at_ns, ping_seq };
        let mut buf = [0u8; PingBody::LEN];
        body.encode_into(&mut buf).unwrap();
        prop_assert_eq!(PingBody::decode(&buf), Ok(body));
    }

    #[test]
    fn probe_body_round_trips(probe_id in any::<u32>(), frame_len in 0usize..=9000, encrypted in any::<bool>()) {
        match MtuProbeBody::probe_payload_len(frame_len, encrypted) {
            None => prop_assert!(frame_len < HEADER_LEN + MtuProbeBody::LEN + 16),
            Some(payload_len) => {
                prop_assert!(usize::from(payload_len) <= MAX_PAYLOAD_LEN);
                let body = MtuProbeBody { probe_id, frame_len: frame_len as u16 };
                let mut payload = vec![0u8; usize::from(payload_len)];
                body.encode_into(&mut payload).unwrap();
                prop_assert_eq!(MtuProbeBody::decode_probe(&payload, frame_len), Ok(body));
                prop_assert_eq!(MtuProbeBody::decode_reply(&payload[..MtuProbeBody::LEN]), Ok(body));
            }
        }
    }
}

proptest! {
    /// The fuzz target's body on random inputs and on streams of valid frames (so CI runs it
    /// without a fuzzer).
    #[test]
    fn fuzz_body_holds_on_random_input(bytes in proptest::collection::vec(any::<u8>(), 0..4000)) {
        totem_transport::wire::fuzz_frame_decode(&bytes);
    }

    #[test]
    fn fuzz_body_holds_on_valid_frame_streams(
        headers in proptest::collection::vec(valid_header(), 1..20),
        fill in any::<u8>(),
    ) {
        let mut stream = Vec::new();
        for header in headers {
            let header = Header { encrypted: false, key_id: 0, nonce: [0; NONCE_LEN], ..header };
            let mut frame = vec![fill; header.frame_len()];
            header.encode_into(&mut frame).unwrap();
            totem_transport::wire::fuzz_frame_decode(&frame);
            stream.extend_from_slice(&(frame.len() as u16).to_be_bytes());
            stream.extend_from_slice(&frame);
        }
        totem_transport::wire::fuzz_frame_decode(&stream);
    }
}
