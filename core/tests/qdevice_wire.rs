//! Property tests for the corosync-qdevice <-> qnetd codec: round trips, arbitrary bytes never
//! panic, truncation is an error, the stream reader splits any chunking, and known byte layouts.

use proptest::prelude::*;
use totem_core::qdevice::wire::{
    self, DecisionAlgorithm, DecodeError, ErrorCode, FrameReader, Heuristics, Message, MsgType,
    NodeInfo, NodeListType, NodeState, RingId, TieBreaker, TlsSupported, Vote,
};

fn pick<T: Copy + std::fmt::Debug + 'static>(all: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(all)
}

fn any_node() -> impl Strategy<Value = NodeInfo> {
    (
        any::<u32>(),
        any::<u32>(),
        proptest::option::of(pick(NodeState::ALL)),
    )
        .prop_map(|(node_id, data_center_id, node_state)| NodeInfo {
            node_id,
            data_center_id,
            node_state,
        })
}

fn any_message() -> impl Strategy<Value = Message> {
    let head = (
        pick(MsgType::ALL),
        proptest::option::of(any::<u32>()),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::option::of(pick(TlsSupported::ALL)),
        proptest::option::of(any::<bool>()),
        proptest::option::of(proptest::collection::vec(any::<u16>(), 0..20)),
        proptest::option::of(proptest::collection::vec(any::<u16>(), 0..30)),
        proptest::option::of(pick(ErrorCode::ALL)),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(proptest::collection::vec(any::<u16>(), 0..5)),
    );
    let tail = (
        proptest::option::of(pick(DecisionAlgorithm::ALL)),
        proptest::option::of(any::<u32>()),
        proptest::option::of((any::<u32>(), any::<u64>())),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(pick(NodeState::ALL)),
        proptest::collection::vec(any_node(), 0..10),
        proptest::option::of(pick(NodeListType::ALL)),
        proptest::option::of(pick(Vote::ALL)),
        proptest::option::of(any::<bool>()),
        proptest::option::of(prop_oneof![
            Just(TieBreaker::LOWEST),
            Just(TieBreaker::HIGHEST),
            any::<u32>().prop_map(TieBreaker::node)
        ]),
        (
            proptest::option::of(pick(Heuristics::ALL)),
            proptest::option::of(any::<bool>()),
        ),
    );
    (head, tail).prop_map(|(h, t)| {
        let mut m = Message::new(h.0);
        m.seq_number = h.1;
        m.cluster_name = h.2;
        m.tls_supported = h.3;
        m.tls_client_cert_required = h.4;
        m.supported_messages = h.5;
        m.supported_options = h.6;
        m.reply_error_code = h.7;
        m.server_maximum_request_size = h.8;
        m.server_maximum_reply_size = h.9;
        m.node_id = h.10;
        m.supported_decision_algorithms = h.11;
        m.decision_algorithm = t.0;
        m.heartbeat_interval = t.1;
        m.ring_id = t.2.map(|(node_id, seq)| RingId { node_id, seq });
        m.config_version = t.3;
        m.data_center_id = t.4;
        m.node_state = t.5;
        m.nodes = t.6;
        m.node_list_type = t.7;
        m.vote = t.8;
        m.quorate = t.9;
        m.tie_breaker = t.10;
        m.heuristics = t.11 .0;
        m.keep_active_partition_tie_breaker = t.11 .1;
        m
    })
}

proptest! {
    #[test]
    fn round_trip(msg in any_message()) {
        let bytes = msg.to_bytes();
        prop_assert_eq!(Message::decode(&bytes), Ok(msg));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Message::decode(&bytes);
        wire::fuzz_round_trip(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(msg in any_message(), index in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = msg.to_bytes();
        let at = index % bytes.len();
        bytes[at] = byte;
        let _ = Message::decode(&bytes);
        wire::fuzz_round_trip(&bytes);
    }

    #[test]
    fn truncation_is_an_error(msg in any_message(), cut in any::<usize>()) {
        let bytes = msg.to_bytes();
        let cut = cut % bytes.len();
        prop_assert!(Message::decode(&bytes[..cut]).is_err());
    }

    #[test]
    fn reader_reassembles_any_chunking(
        msgs in proptest::collection::vec(any_message(), 1..5),
        chunk in 1usize..64,
    ) {
        let stream: Vec<u8> = msgs.iter().flat_map(|m| m.to_bytes()).collect();
        let mut reader = FrameReader::new();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            reader.push(piece);
            while let Some(frame) = reader.next_frame().expect("valid stream") {
                got.push(Message::decode(&frame).expect("valid frame"));
            }
        }
        prop_assert_eq!(got, msgs);
        prop_assert_eq!(reader.pending(), 0);
    }
}

#[test]
fn preinit_layout_matches_corosync() {
    // type 0, length, seq TLV (0, len 4, 1), cluster name TLV (1, len 2, "c1").
    let mut msg = Message::new(MsgType::Preinit).with_seq(1);
    msg.cluster_name = Some(b"c1".to_vec());
    let expected: Vec<u8> = vec![
        0, 0, 0, 0, 0, 14, // header: PREINIT, 14 payload bytes
        0, 0, 0, 4, 0, 0, 0, 1, // MSG_SEQ_NUMBER = 1
        0, 1, 0, 2, b'c', b'1', // CLUSTER_NAME = "c1"
    ];
    assert_eq!(msg.to_bytes(), expected);
}

#[test]
fn ring_id_tie_breaker_and_node_info_layouts() {
    let mut msg = Message::new(MsgType::NodeList);
    msg.ring_id = Some(RingId {
        node_id: 1,
        seq: 0x1a8,
    });
    msg.tie_breaker = Some(TieBreaker::node(7));
    msg.nodes = vec![NodeInfo {
        node_id: 2,
        data_center_id: 0,
        node_state: Some(NodeState::Member),
    }];
    let bytes = msg.to_bytes();
    let payload = &bytes[wire::HEADER_SIZE..];
    assert_eq!(
        &payload[..16],
        &[0, 13, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0xa8][..]
    );
    assert_eq!(&payload[16..25], &[0, 21, 0, 5, 3, 0, 0, 0, 7][..]);
    // NODE_INFO: nested NODE_ID (8 bytes) + NODE_STATE (5 bytes).
    assert_eq!(&payload[25..29], &[0, 17, 0, 13][..]);
    assert_eq!(
        &payload[29..],
        &[0, 9, 0, 4, 0, 0, 0, 2, 0, 16, 0, 1, 1][..]
    );
}

#[test]
fn bad_input_gives_clear_errors() {
    assert_eq!(
        Message::decode(&[0, 99, 0, 0, 0, 0]),
        Err(DecodeError::UnknownType(99))
    );
    assert_eq!(
        Message::decode(&[0, 0, 0, 0, 0, 5, 0]),
        Err(DecodeError::Truncated)
    );
    assert!(matches!(
        Message::decode(&[0, 0, 0xff, 0, 0, 0]),
        Err(DecodeError::TooLong(_))
    ));
    // Vote TLV with value 9.
    let bad_vote = [0, 11, 0, 0, 0, 5, 0, 19, 0, 1, 9];
    assert_eq!(
        Message::decode(&bad_vote),
        Err(DecodeError::BadValue {
            option: 19,
            value: 9
        })
    );
    // u32 option with 3 bytes.
    let bad_len = [0, 8, 0, 0, 0, 7, 0, 0, 0, 3, 1, 2, 3];
    assert_eq!(
        Message::decode(&bad_len),
        Err(DecodeError::BadLength { option: 0, len: 3 })
    );
    // TLV running past the end.
    let overrun = [0, 8, 0, 0, 0, 6, 0, 0, 0, 9, 1, 2];
    assert_eq!(
        Message::decode(&overrun),
        Err(DecodeError::OptionOverrun(0))
    );
    // Unknown options are skipped.
    let unknown = [0, 8, 0, 0, 0, 5, 0, 200, 0, 1, 7];
    assert_eq!(
        Message::decode(&unknown),
        Ok(Message::new(MsgType::EchoRequest))
    );
}
