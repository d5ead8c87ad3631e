//! The `Client` library end to end over a real Unix socket against the fake daemon: status
//! requests, process groups, ordered multicast, membership events, back-pressure and errors.

#[allow(dead_code)]
mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::thread;
use std::time::Duration;

use common::fake_server::FakeServer;
use common::snapshots::{self, State};
use totem_client::proto::{
    encode_frame, ErrorReply, Event, GroupName, JoinOptions, LeaveReason, Ordering, QuorumChange,
    Request, RingId, MAX_MULTICAST_PAYLOAD_BYTES,
};
use totem_client::{Client, ClientError};

/// How long a test waits for an event that must come.
const EVENT_WAIT: Duration = Duration::from_secs(10);

fn group(name: &str) -> GroupName {
    GroupName::new(name).expect("valid group name")
}

/// The next event, which must arrive.
fn expect_event(client: &mut Client) -> Event {
    client
        .next_event(Some(EVENT_WAIT))
        .expect("event read")
        .expect("an event within the wait")
}

#[test]
fn status_nodes_and_links_come_back_as_sent() {
    let server = FakeServer::start(State::ThirdKilled);
    let mut client = Client::connect(&server.path).expect("connects");
    assert_eq!(
        client.status().expect("status"),
        snapshots::quorum_status(State::ThirdKilled)
    );
    assert_eq!(
        client.nodes().expect("nodes"),
        snapshots::membership(State::ThirdKilled)
    );
    assert_eq!(
        client.links().expect("links"),
        snapshots::links_status(State::ThirdKilled)
    );
}

#[test]
fn expected_votes_follow_the_daemon_verdict() {
    let server = FakeServer::start(State::AllUp);
    let mut client = Client::connect(&server.path).expect("connects");
    let refused = client.set_expected_votes(1).expect_err("below total votes");
    assert!(
        matches!(
            refused,
            ClientError::Daemon(ErrorReply::InvalidParam { .. })
        ),
        "{refused}"
    );
    client.set_expected_votes(5).expect("accepted");
    assert_eq!(server.expected_votes(), 5);
    client.set_votes(Some(2), 2).expect("votes set");
    client.reload_config().expect("reloaded");
    assert_eq!(
        server.requests_seen(),
        vec![
            Request::SetExpectedVotes { expected: 1 },
            Request::SetExpectedVotes { expected: 5 },
            Request::SetVotes {
                node: Some(2),
                votes: 2
            },
            Request::ReloadConfig,
        ]
    );
}

#[test]
fn two_clients_see_joins_deliveries_in_one_order_and_leaves() {
    let server = FakeServer::start(State::AllUp);
    let name = group("vm-locks");
    let mut first = Client::connect(&server.path).expect("connects");
    let mut second = Client::connect(&server.path).expect("connects");

    first.join(&name).expect("first joins");
    let Event::GroupMembership(change) = expect_event(&mut first) else {
        panic!("expected a membership change");
    };
    assert_eq!(change.group, name);
    assert_eq!(change.members.len(), 1);
    assert_eq!(change.joined, change.members);

    second.join(&name).expect("second joins");
    for client in [&mut first, &mut second] {
        let Event::GroupMembership(change) = expect_event(client) else {
            panic!("expected a membership change");
        };
        assert_eq!(change.members.len(), 2);
        assert_eq!(change.joined.len(), 1);
    }

    first
        .multicast(&name, Ordering::Agreed, b"one")
        .expect("sent");
    second
        .multicast(&name, Ordering::Safe, b"two")
        .expect("sent");
    first
        .multicast(&name, Ordering::Agreed, b"three")
        .expect("sent");
    let mut orders = Vec::new();
    for client in [&mut first, &mut second] {
        let mut order = Vec::new();
        for _ in 0..3 {
            let Event::Delivery(delivery) = expect_event(client) else {
                panic!("expected a delivery");
            };
            assert_eq!(delivery.ring_id, RingId { rep: 1, seq: 0xd });
            assert_eq!(delivery.sender.node, 1);
            order.push((delivery.payload, delivery.ordering));
        }
        orders.push(order);
    }
    assert_eq!(orders[0], orders[1], "both members deliver in one order");
    // Multicasts are posted, so two senders' messages interleave in any order, but each
    // sender's own stay in the order it sent them.
    let mut sorted = orders[0].clone();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        sorted,
        vec![
            (b"one".to_vec(), Ordering::Agreed),
            (b"three".to_vec(), Ordering::Agreed),
            (b"two".to_vec(), Ordering::Safe),
        ]
    );
    let position = |payload: &[u8]| orders[0].iter().position(|(p, _)| p == payload);
    assert!(position(b"one") < position(b"three"), "{:?}", orders[0]);

    second.leave(&name).expect("leaves");
    let Event::GroupMembership(change) = expect_event(&mut first) else {
        panic!("expected a membership change");
    };
    assert_eq!(change.members.len(), 1);
    assert_eq!(change.left.len(), 1);
    assert_eq!(change.left[0].reason, LeaveReason::Left);

    second.join(&name).expect("joins again");
    let _ = expect_event(&mut first);
    drop(second);
    let Event::GroupMembership(change) = expect_event(&mut first) else {
        panic!("expected a membership change");
    };
    assert_eq!(change.left[0].reason, LeaveReason::ProcessDown);
}

#[test]
fn back_pressure_fills_the_socket_then_everything_is_delivered_in_order() {
    let server = FakeServer::start(State::AllUp);
    let name = group("busy");
    let mut client = Client::connect(&server.path).expect("connects");
    client.join(&name).expect("joins");
    let _ = expect_event(&mut client);

    // The daemon stops reading: posted multicasts fill the socket until try_multicast says
    // TryAgain, and nothing is delivered meanwhile.
    server.set_busy(true);
    let payload = [7u8; 1000];
    let mut accepted = 0u32;
    let error = loop {
        match client.try_multicast(&name, Ordering::Agreed, &payload) {
            Ok(_) => accepted += 1,
            Err(error) => break error,
        }
        assert!(accepted < 100_000, "the socket never filled");
    };
    assert!(error.is_try_again(), "{error}");
    assert!(accepted > 0);
    assert!(client.wants_write() || accepted > 1);
    assert!(client
        .next_event(Some(Duration::from_millis(50)))
        .expect("read")
        .is_none());

    // The daemon takes messages again: every accepted one is delivered, in order.
    server.set_busy(false);
    client.flush().expect("flushed");
    assert!(!client.wants_write());
    for _ in 0..accepted {
        let Event::Delivery(delivery) = expect_event(&mut client) else {
            panic!("expected a delivery");
        };
        assert_eq!(delivery.payload, payload);
    }
    // A blocking multicast goes through at once now.
    client
        .multicast(&name, Ordering::Agreed, b"later")
        .expect("accepted");
    let Event::Delivery(delivery) = expect_event(&mut client) else {
        panic!("expected a delivery");
    };
    assert_eq!(delivery.payload, b"later");
}

#[test]
fn a_refused_multicast_comes_back_as_an_event_with_its_id() {
    let server = FakeServer::start(State::AllUp);
    let name = group("refusing");
    let mut client = Client::connect(&server.path).expect("connects");
    client.join(&name).expect("joins");
    let _ = expect_event(&mut client);
    server.set_refuse(Some(ErrorReply::Failed {
        detail: "no quorum".into(),
    }));
    let first = client
        .multicast(&name, Ordering::Agreed, b"a")
        .expect("posted");
    let second = client
        .multicast(&name, Ordering::Agreed, b"b")
        .expect("posted");
    assert_ne!(first, second, "every multicast has its own id");
    for id in [first, second] {
        let Event::MulticastRefused(refused) = expect_event(&mut client) else {
            panic!("expected a refusal");
        };
        assert_eq!(refused.request_id, id);
        assert_eq!(refused.group, name);
    }
    server.set_refuse(None);
    client
        .multicast(&name, Ordering::Agreed, b"c")
        .expect("posted");
    let Event::Delivery(delivery) = expect_event(&mut client) else {
        panic!("expected a delivery");
    };
    assert_eq!(delivery.payload, b"c");
}

#[test]
fn join_sends_cpg_semantics_and_join_with_asks_for_quorum() {
    let server = FakeServer::start(State::AllUp);
    let mut client = Client::connect(&server.path).expect("connects");
    client.join(&group("cpg")).expect("joins");
    let gated = JoinOptions {
        require_quorum: true,
    };
    client.join_with(&group("gated"), gated).expect("joins");
    let joins: Vec<(GroupName, JoinOptions)> = server
        .requests_seen()
        .into_iter()
        .filter_map(|request| match request {
            Request::JoinGroup { group, options } => Some((group, options)),
            _ => None,
        })
        .collect();
    assert_eq!(
        joins,
        [
            (group("cpg"), JoinOptions::default()),
            (group("gated"), gated)
        ]
    );
    assert!(!JoinOptions::default().require_quorum);
    // The refusal is told apart from back-pressure.
    let no_quorum = ClientError::Daemon(ErrorReply::NoQuorum);
    assert!(no_quorum.is_no_quorum() && !no_quorum.is_try_again());
    assert!(no_quorum.to_string().contains("no quorum"), "{no_quorum}");
    assert!(!ClientError::Daemon(ErrorReply::TryAgain).is_no_quorum());
}

#[test]
fn a_gated_group_refuses_locally_once_a_quorum_loss_was_read() {
    let server = FakeServer::start(State::AllUp);
    let name = group("gated");
    let mut client = Client::connect(&server.path).expect("connects");
    client
        .join_with(
            &name,
            JoinOptions {
                require_quorum: true,
            },
        )
        .expect("joins");
    let _ = expect_event(&mut client);
    let change = |quorate| QuorumChange {
        quorate,
        ring_id: RingId { rep: 1, seq: 0x15 },
        members: vec![1],
    };
    server.announce_quorum(change(false));
    assert_eq!(expect_event(&mut client), Event::Quorum(change(false)));
    let error = client
        .multicast(&name, Ordering::Agreed, b"x")
        .expect_err("not quorate");
    assert!(error.is_no_quorum(), "{error}");
    server.announce_quorum(change(true));
    assert_eq!(expect_event(&mut client), Event::Quorum(change(true)));
    client
        .multicast(&name, Ordering::Agreed, b"y")
        .expect("quorate again");
    let Event::Delivery(delivery) = expect_event(&mut client) else {
        panic!("expected a delivery");
    };
    assert_eq!(delivery.payload, b"y");
}

#[test]
fn quorum_changes_reach_group_members_between_replies() {
    let server = FakeServer::start(State::AllUp);
    let name = group("watchers");
    let mut client = Client::connect(&server.path).expect("connects");
    client.join(&name).expect("joins");
    let _ = expect_event(&mut client);
    let change = QuorumChange {
        quorate: false,
        ring_id: RingId { rep: 1, seq: 0x15 },
        members: vec![1],
    };
    server.announce_quorum(change.clone());
    // A request made after the event was pushed still gets its reply; the event waits in the
    // queue.
    let status = client.status().expect("status");
    assert!(status.quorate);
    assert_eq!(expect_event(&mut client), Event::Quorum(change));
}

#[test]
fn refusals_and_local_limits_are_errors() {
    let server = FakeServer::start(State::AllUp);
    let mut client = Client::connect(&server.path).expect("connects");
    let name = group("never-joined");
    let error = client
        .multicast(&name, Ordering::Safe, b"x")
        .expect_err("not a member");
    assert!(matches!(error, ClientError::NotJoined(_)), "{error}");
    let error = client
        .multicast(
            &name,
            Ordering::Safe,
            &vec![0; MAX_MULTICAST_PAYLOAD_BYTES + 1],
        )
        .expect_err("too large");
    assert!(matches!(error, ClientError::PayloadTooLarge(_)), "{error}");
    assert!(client
        .next_event(Some(Duration::from_millis(20)))
        .expect("read")
        .is_none());
}

#[test]
fn a_missing_daemon_is_reported_clearly() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("absent.sock");
    let error = Client::connect(&path).expect_err("nothing listens");
    let message = error.to_string();
    assert!(matches!(error, ClientError::NotRunning { .. }));
    assert!(message.contains("is totemd running?"), "{message}");
    assert!(message.contains("absent.sock"), "{message}");
}

#[test]
fn garbage_and_early_close_from_the_daemon_are_errors() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("bad.sock");
    let listener = UnixListener::bind(&path).expect("binds");
    let server = thread::spawn(move || {
        // First connection: an oversized length prefix.
        let (mut stream, _) = listener.accept().expect("accepts");
        let mut request = [0u8; 64];
        let _ = stream.read(&mut request);
        stream.write_all(&u32::MAX.to_be_bytes()).expect("writes");
        // Second connection: closes before answering.
        let (mut stream, _) = listener.accept().expect("accepts");
        let _ = stream.read(&mut request);
        drop(stream);
        // Third: a valid frame of the wrong kind (a reply with another id).
        let (mut stream, _) = listener.accept().expect("accepts");
        let _ = stream.read(&mut request);
        let frame = encode_frame(&totem_client::proto::DaemonMessage::Reply {
            request_id: 999,
            result: Ok(totem_client::proto::Response::Done),
        })
        .expect("encodes");
        stream.write_all(&frame).expect("writes");
    });
    let mut client = Client::connect(&path).expect("connects");
    let error = client.status().expect_err("oversized");
    assert!(matches!(error, ClientError::Protocol(_)), "{error}");
    let mut client = Client::connect(&path).expect("connects");
    let error = client.status().expect_err("closed");
    assert!(matches!(error, ClientError::Closed), "{error}");
    let mut client = Client::connect(&path).expect("connects");
    let error = client.status().expect_err("mismatched id");
    assert!(
        matches!(error, ClientError::UnexpectedResponse(_)),
        "{error}"
    );
    server.join().expect("server thread");
}

#[test]
fn the_largest_multicast_arrives_whole_between_small_ones() {
    // The client's read buffer grows for a frame longer than one read and keeps the bytes of
    // the frames around it.
    let server = FakeServer::start(State::AllUp);
    let name = group("big");
    let mut client = Client::connect(&server.path).expect("connects");
    client.join(&name).expect("joins");
    let _ = expect_event(&mut client);
    let big: Vec<u8> = (0..MAX_MULTICAST_PAYLOAD_BYTES).map(|i| i as u8).collect();
    for payload in [&b"before"[..], &big, &b"after"[..]] {
        client
            .multicast(&name, Ordering::Agreed, payload)
            .expect("posted");
    }
    for want in [&b"before"[..], &big, &b"after"[..]] {
        let Event::Delivery(delivery) = expect_event(&mut client) else {
            panic!("expected a delivery");
        };
        assert_eq!(delivery.payload, want);
    }
}
