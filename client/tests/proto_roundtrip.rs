//! Property tests of the control protocol: every message survives encode → decode, a stream cut
//! anywhere reassembles to the same frames, and arbitrary or damaged bytes give an error, never a
//! panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use totem_client::proto::{
    decode_frame, encode_frame, ClientMessage, ClusterInfo, DaemonMessage, Delivery, DeliveryRef,
    ErrorReply, Event, FrameError, FrameReader, GroupMember, GroupMembershipChange, GroupName,
    JoinOptions, LeaveReason, LeftMember, LinkMode, LinksStatus, LocalLink, MemberNode, Membership,
    MulticastRef, MulticastRefused, NodeLinks, Ordering, PeerLink, QdeviceDevice, QuorumChange,
    QuorumFlags, QuorumStatus, Request, Response, RingId, RttStats, LENGTH_PREFIX_BYTES,
    MAX_FRAME_BYTES, MAX_GROUP_NAME_BYTES, PROTOCOL_VERSION,
};

fn group_name() -> impl Strategy<Value = GroupName> {
    "[a-zA-Z0-9_.:-]{1,40}".prop_map(|name| GroupName::new(name).expect("valid by construction"))
}

fn ordering() -> impl Strategy<Value = Ordering> {
    prop_oneof![Just(Ordering::Agreed), Just(Ordering::Safe)]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|octets| IpAddr::V4(Ipv4Addr::from(octets))),
        any::<[u8; 16]>().prop_map(|octets| IpAddr::V6(Ipv6Addr::from(octets))),
    ]
}

fn ring_id() -> impl Strategy<Value = RingId> {
    (any::<u32>(), any::<u64>()).prop_map(|(rep, seq)| RingId { rep, seq })
}

fn member() -> impl Strategy<Value = GroupMember> {
    (any::<u32>(), any::<u32>()).prop_map(|(node, pid)| GroupMember { node, pid })
}

fn membership() -> impl Strategy<Value = Membership> {
    let node = (
        any::<u32>(),
        "[a-z0-9-]{0,12}",
        vec(ip(), 0..3),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(|(id, name, addresses, votes, flags, local)| MemberNode {
            id,
            name,
            addresses,
            votes,
            qdevice_flags: QuorumFlags(flags),
            local,
        });
    let device =
        ("[A-Za-z]{1,10}", any::<u32>()).prop_map(|(name, votes)| QdeviceDevice { name, votes });
    (vec(node, 0..6), option::of(device)).prop_map(|(nodes, qdevice)| Membership { nodes, qdevice })
}

fn quorum_status() -> impl Strategy<Value = QuorumStatus> {
    let cluster = (
        option::of("[a-z]{1,15}"),
        option::of(any::<u64>()),
        option::of("knet|udpu"),
        option::of("on|off"),
    )
        .prop_map(|(name, config_version, transport, secauth)| ClusterInfo {
            name,
            config_version,
            transport,
            secauth,
        });
    (
        cluster,
        option::of("corosync_votequorum"),
        any::<u32>(),
        ring_id(),
        any::<bool>(),
        any::<[u32; 5]>(),
        membership(),
    )
        .prop_map(
            |(cluster, provider, local_node, ring_id, quorate, numbers, membership)| QuorumStatus {
                cluster,
                provider,
                local_node,
                ring_id,
                quorate,
                expected_votes: numbers[0],
                highest_expected: numbers[1],
                total_votes: numbers[2],
                quorum: numbers[3],
                flags: QuorumFlags(numbers[4]),
                membership,
            },
        )
}

fn links_status() -> impl Strategy<Value = LinksStatus> {
    let rtt = any::<[u32; 4]>().prop_map(|[min_us, avg_us, max_us, p99_us]| RttStats {
        min_us,
        avg_us,
        max_us,
        p99_us,
    });
    let peer_link = (
        0..8u8,
        ip(),
        ip(),
        any::<[bool; 3]>(),
        any::<u8>(),
        any::<u32>(),
        option::of(rtt),
    )
        .prop_map(
            |(link, source, destination, [enabled, connected, active], priority, mtu, rtt)| {
                PeerLink {
                    link,
                    transport: "udp".to_owned(),
                    source,
                    destination,
                    enabled,
                    connected,
                    active,
                    priority,
                    mtu,
                    rtt,
                }
            },
        );
    let node = (
        any::<u32>(),
        "[a-z0-9]{0,8}",
        any::<[bool; 2]>(),
        vec(peer_link, 0..3),
    )
        .prop_map(|(id, name, [local, reachable], links)| NodeLinks {
            id,
            name,
            local,
            reachable,
            links,
        });
    let local_link = (0..8u8, ip()).prop_map(|(link, address)| LocalLink {
        link,
        transport: "udp".to_owned(),
        address,
    });
    let mode = prop_oneof![
        Just(LinkMode::Passive),
        Just(LinkMode::Active),
        Just(LinkMode::RoundRobin)
    ];
    (any::<u32>(), mode, vec(local_link, 0..3), vec(node, 0..5)).prop_map(
        |(local_node, link_mode, local_links, nodes)| LinksStatus {
            local_node,
            transport: "knet".to_owned(),
            link_mode,
            local_links,
            nodes,
        },
    )
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Status),
        Just(Request::Nodes),
        Just(Request::Links),
        any::<u32>().prop_map(|expected| Request::SetExpectedVotes { expected }),
        (option::of(any::<u32>()), any::<u32>())
            .prop_map(|(node, votes)| Request::SetVotes { node, votes }),
        Just(Request::ReloadConfig),
        (group_name(), any::<bool>()).prop_map(|(group, require_quorum)| Request::JoinGroup {
            group,
            options: JoinOptions { require_quorum }
        }),
        group_name().prop_map(|group| Request::LeaveGroup { group }),
        (group_name(), ordering(), vec(any::<u8>(), 0..512)).prop_map(
            |(group, ordering, payload)| Request::Multicast {
                group,
                ordering,
                payload
            }
        ),
    ]
}

fn error_reply() -> impl Strategy<Value = ErrorReply> {
    prop_oneof![
        Just(ErrorReply::TryAgain),
        ".{0,20}".prop_map(|detail| ErrorReply::PermissionDenied { detail }),
        ".{0,20}".prop_map(|detail| ErrorReply::BadRequest { detail }),
        ".{0,20}".prop_map(|detail| ErrorReply::InvalidParam { detail }),
        (any::<u8>(), any::<u8>())
            .prop_map(|(daemon, client)| ErrorReply::VersionMismatch { daemon, client }),
        ".{0,20}".prop_map(|detail| ErrorReply::Failed { detail }),
        Just(ErrorReply::NoQuorum),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    let reason = prop_oneof![
        Just(LeaveReason::Left),
        Just(LeaveReason::ProcessDown),
        Just(LeaveReason::NodeDown)
    ];
    let left = (member(), reason).prop_map(|(member, reason)| LeftMember { member, reason });
    prop_oneof![
        (
            group_name(),
            member(),
            ring_id(),
            ordering(),
            vec(any::<u8>(), 0..512)
        )
            .prop_map(|(group, sender, ring_id, ordering, payload)| {
                Event::Delivery(Delivery {
                    group,
                    sender,
                    ring_id,
                    ordering,
                    payload,
                })
            }),
        (
            group_name(),
            ring_id(),
            vec(member(), 0..5),
            vec(member(), 0..3),
            vec(left, 0..3)
        )
            .prop_map(|(group, ring_id, members, joined, left)| {
                Event::GroupMembership(GroupMembershipChange {
                    group,
                    ring_id,
                    members,
                    joined,
                    left,
                })
            }),
        (any::<bool>(), ring_id(), vec(any::<u32>(), 0..5)).prop_map(
            |(quorate, ring_id, members)| Event::Quorum(QuorumChange {
                quorate,
                ring_id,
                members
            })
        ),
        (any::<u32>(), group_name(), error_reply()).prop_map(|(request_id, group, error)| {
            Event::MulticastRefused(MulticastRefused {
                request_id,
                group,
                error,
            })
        }),
    ]
}

fn daemon_message() -> impl Strategy<Value = DaemonMessage> {
    let response = prop_oneof![
        quorum_status().prop_map(Response::Status),
        membership().prop_map(Response::Nodes),
        links_status().prop_map(Response::Links),
        Just(Response::Done),
    ];
    let result = prop_oneof![response.prop_map(Ok), error_reply().prop_map(Err)];
    prop_oneof![
        (any::<u32>(), result)
            .prop_map(|(request_id, result)| DaemonMessage::Reply { request_id, result }),
        event().prop_map(DaemonMessage::Event),
    ]
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    (any::<u32>(), request()).prop_map(|(request_id, request)| ClientMessage {
        request_id,
        request,
    })
}

/// Feeds `bytes` to a reader in pieces of the given sizes; returns the decoded messages.
fn reassemble<T: serde::de::DeserializeOwned>(bytes: &[u8], cuts: &[usize]) -> Vec<T> {
    let mut reader = FrameReader::new();
    let mut messages = Vec::new();
    let mut rest = bytes;
    let mut cut = cuts.iter().cycle();
    while !rest.is_empty() {
        let size = (*cut.next().unwrap_or(&1)).clamp(1, rest.len());
        let mut piece = &rest[..size];
        rest = &rest[size..];
        while !piece.is_empty() {
            let (taken, frame) = reader.feed(piece).expect("valid stream");
            piece = &piece[taken..];
            if let Some(frame) = frame {
                messages.push(frame.decode().expect("valid message"));
            }
        }
    }
    assert!(!reader.is_mid_frame());
    messages
}

proptest! {
    #[test]
    fn a_borrowed_delivery_encodes_as_the_owned_one(
        group in group_name(),
        sender in member(),
        ring_id in ring_id(),
        ordering in ordering(),
        payload in vec(any::<u8>(), 0..2048),
    ) {
        let borrowed = encode_frame(&DeliveryRef {
            group: &group,
            sender,
            ring_id,
            ordering,
            payload: &payload,
        })
        .expect("encodes");
        let owned = encode_frame(&DaemonMessage::Event(Event::Delivery(Delivery {
            group,
            sender,
            ring_id,
            ordering,
            payload,
        })))
        .expect("encodes");
        prop_assert_eq!(borrowed, owned);
    }

    #[test]
    fn a_borrowed_multicast_encodes_as_the_owned_one(
        request_id in any::<u32>(),
        group in group_name(),
        ordering in ordering(),
        payload in vec(any::<u8>(), 0..2048),
    ) {
        let borrowed = encode_frame(&MulticastRef {
            request_id,
            group: &group,
            ordering,
            payload: &payload,
        })
        .expect("encodes");
        let owned = encode_frame(&ClientMessage {
            request_id,
            request: Request::Multicast {
                group,
                ordering,
                payload,
            },
        })
        .expect("encodes");
        prop_assert_eq!(borrowed, owned);
    }

    #[test]
    fn client_messages_round_trip(message in client_message()) {
        let frame = encode_frame(&message).expect("encodes");
        let (decoded, used): (ClientMessage, usize) = decode_frame(&frame).expect("decodes");
        prop_assert_eq!(used, frame.len());
        prop_assert_eq!(decoded, message);
    }

    #[test]
    fn daemon_messages_round_trip(message in daemon_message()) {
        let frame = encode_frame(&message).expect("encodes");
        let (decoded, used): (DaemonMessage, usize) = decode_frame(&frame).expect("decodes");
        prop_assert_eq!(used, frame.len());
        prop_assert_eq!(decoded, message);
    }

    #[test]
    fn a_stream_cut_anywhere_reassembles(
        messages in vec(daemon_message(), 1..6),
        cuts in vec(1usize..64, 1..8),
    ) {
        let mut stream = Vec::new();
        for message in &messages {
            stream.extend(encode_frame(message).expect("encodes"));
        }
        let decoded: Vec<DaemonMessage> = reassemble(&stream, &cuts);
        prop_assert_eq!(decoded, messages);
    }

    #[test]
    fn blocking_reads_reassemble_the_same_stream(messages in vec(client_message(), 1..6)) {
        let mut stream = Vec::new();
        for message in &messages {
            stream.extend(encode_frame(message).expect("encodes"));
        }
        let mut source = stream.as_slice();
        let mut reader = FrameReader::new();
        let mut decoded = Vec::new();
        while let Some(frame) = reader.read_from(&mut source).expect("valid stream") {
            decoded.push(frame.decode::<ClientMessage>().expect("valid message"));
        }
        prop_assert_eq!(decoded, messages);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        let _ = decode_frame::<ClientMessage>(&bytes);
        let _ = decode_frame::<DaemonMessage>(&bytes);
        let mut reader = FrameReader::new();
        let mut rest = bytes.as_slice();
        while let Ok((taken, frame)) = reader.feed(rest) {
            if let Some(frame) = frame {
                let _ = frame.decode::<ClientMessage>();
            }
            rest = &rest[taken..];
            if rest.is_empty() {
                break;
            }
        }
    }

    #[test]
    fn damaged_frames_give_errors_not_panics(
        message in client_message(),
        position in any::<prop::sample::Index>(),
        flip in 1..=255u8,
    ) {
        let mut frame = encode_frame(&message).expect("encodes");
        let at = position.index(frame.len());
        frame[at] ^= flip;
        if let Ok((decoded, _)) = decode_frame::<ClientMessage>(&frame) {
            // A flipped payload byte can still be a valid, different message; it must not
            // decode to the original one.
            prop_assert_ne!(decoded, message);
        }
    }

    #[test]
    fn truncated_frames_are_reported(message in client_message(), keep in any::<prop::sample::Index>()) {
        let frame = encode_frame(&message).expect("encodes");
        let kept = keep.index(frame.len());
        let truncated = decode_frame::<ClientMessage>(&frame[..kept]);
        prop_assert!(matches!(truncated, Err(FrameError::Truncated { .. })), "{:?}", truncated);
    }
}

#[test]
fn oversized_length_is_refused_before_any_allocation() {
    let length = u32::try_from(MAX_FRAME_BYTES + 1).expect("fits");
    let header = length.to_be_bytes();
    let mut reader = FrameReader::new();
    let error = reader.feed(&header).expect_err("refused");
    assert!(
        matches!(error, FrameError::Oversized { length, .. } if length == MAX_FRAME_BYTES + 1),
        "{error}"
    );
    let error = decode_frame::<ClientMessage>(&u32::MAX.to_be_bytes()).expect_err("refused");
    assert!(matches!(error, FrameError::Oversized { .. }), "{error}");
}

#[test]
fn smaller_reader_limits_apply() {
    let frame = encode_frame(&ClientMessage {
        request_id: 7,
        request: Request::Multicast {
            group: GroupName::new("g").expect("valid"),
            ordering: Ordering::Safe,
            payload: vec![0; 100],
        },
    })
    .expect("encodes");
    let mut reader = FrameReader::with_limit(50);
    assert!(matches!(
        reader.feed(&frame),
        Err(FrameError::Oversized { limit: 50, .. })
    ));
}

#[test]
fn empty_frames_wrong_versions_and_trailing_bytes_are_refused() {
    let empty = 0u32.to_be_bytes();
    assert!(matches!(
        decode_frame::<ClientMessage>(&empty),
        Err(FrameError::Empty)
    ));

    let mut frame = encode_frame(&ClientMessage {
        request_id: 1,
        request: Request::Status,
    })
    .expect("encodes");
    frame[LENGTH_PREFIX_BYTES] = PROTOCOL_VERSION + 1;
    assert!(matches!(
        decode_frame::<ClientMessage>(&frame),
        Err(FrameError::UnsupportedVersion { received }) if received == PROTOCOL_VERSION + 1
    ));

    let mut frame = encode_frame(&ClientMessage {
        request_id: 1,
        request: Request::Status,
    })
    .expect("encodes");
    frame.push(0);
    let length = u32::try_from(frame.len() - LENGTH_PREFIX_BYTES).expect("small");
    frame[..LENGTH_PREFIX_BYTES].copy_from_slice(&length.to_be_bytes());
    assert!(matches!(
        decode_frame::<ClientMessage>(&frame),
        Err(FrameError::TrailingBytes(1))
    ));
}

#[test]
fn unknown_request_variants_are_refused() {
    // Variant index 200 does not exist: version byte, request id 1, then the variant varint.
    let payload = [PROTOCOL_VERSION, 1, 0xc8, 0x01];
    let mut frame = u32::try_from(payload.len())
        .expect("small")
        .to_be_bytes()
        .to_vec();
    frame.extend(payload);
    assert!(matches!(
        decode_frame::<ClientMessage>(&frame),
        Err(FrameError::Malformed(_))
    ));
}

#[test]
fn invalid_group_names_are_refused_on_decode() {
    let frame = encode_frame(&(3u32, 6u32, String::new())).expect("encodes");
    assert!(matches!(
        decode_frame::<ClientMessage>(&frame),
        Err(FrameError::Malformed(_))
    ));
    let long = "x".repeat(MAX_GROUP_NAME_BYTES + 1);
    let frame = encode_frame(&(3u32, 6u32, long)).expect("encodes");
    assert!(decode_frame::<ClientMessage>(&frame).is_err());
    assert!(GroupName::new("a\0b").is_err());
    assert!(GroupName::new("x".repeat(MAX_GROUP_NAME_BYTES)).is_ok());
}

#[test]
fn eof_inside_a_frame_is_reported() {
    let frame = encode_frame(&ClientMessage {
        request_id: 1,
        request: Request::Links,
    })
    .expect("encodes");
    for cut in 1..frame.len() {
        let mut source = &frame[..cut];
        let mut reader = FrameReader::new();
        let result = reader.read_from(&mut source);
        assert!(
            matches!(
                result,
                Err(totem_client::proto::FillError::UnexpectedEof { .. })
            ),
            "cut at {cut}: {result:?}"
        );
    }
}

#[test]
fn join_options_follow_the_group_name_on_the_wire() {
    let join = |require_quorum| ClientMessage {
        request_id: 1,
        request: Request::JoinGroup {
            group: GroupName::new("g").expect("valid"),
            options: JoinOptions { require_quorum },
        },
    };
    // Length 6: version, request id 1, variant 6 (JoinGroup), name length 1, "g", the option.
    let on = encode_frame(&join(true)).expect("encodes");
    assert_eq!(on, [0, 0, 0, 6, PROTOCOL_VERSION, 1, 6, 1, b'g', 1]);
    let off = encode_frame(&join(false)).expect("encodes");
    assert_eq!(off, [0, 0, 0, 6, PROTOCOL_VERSION, 1, 6, 1, b'g', 0]);
    // A version-1 client's join has no option byte: refused by its version byte, and without the
    // option byte even under the current version.
    let old = [0, 0, 0, 5, 1, 1, 6, 1, b'g'];
    assert!(matches!(
        decode_frame::<ClientMessage>(&old),
        Err(FrameError::UnsupportedVersion { received: 1 })
    ));
    let short = [0, 0, 0, 5, PROTOCOL_VERSION, 1, 6, 1, b'g'];
    assert!(matches!(
        decode_frame::<ClientMessage>(&short),
        Err(FrameError::Malformed(_))
    ));
}
