//! The link set over loopback (127.0.0.1/127.0.0.2/127.0.0.3), each test against both backends:
//! preferred link, priorities, active mode dedupe, foreign clusters, back-pressure, 1 MiB messages.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::in_private_netns;
use common::*;
use totem_transport::io::BackendKind;
use totem_transport::linkset::{Dest, Event, SendError};
use totem_transport::policy::LinkMode;

fn two_nodes(
    backend: totem_transport::io::Backend,
    mode: LinkMode,
    prio: [u8; 2],
) -> Vec<totem_transport::linkset::LinkSet> {
    let a = NodeSpec {
        node_id: 1,
        ip: "127.0.0.1",
        priorities: prio.to_vec(),
    };
    let b = NodeSpec {
        node_id: 2,
        ip: "127.0.0.2",
        priorities: prio.to_vec(),
    };
    start_all(vec![
        config(&a, backend, mode, "test"),
        config(&b, backend, mode, "test"),
    ])
}

/// [`two_nodes`] with both links up on both sides, and each side's log so far.
fn two_nodes_up(
    backend: totem_transport::io::Backend,
    mode: LinkMode,
    prio: [u8; 2],
) -> (Vec<totem_transport::linkset::LinkSet>, Log, Log) {
    let sets = two_nodes(backend, mode, prio);
    let (mut la, mut lb) = (Log::default(), Log::default());
    wait_links_up(&sets[0], &mut la, &[(2, 0), (2, 1)]);
    wait_links_up(&sets[1], &mut lb, &[(1, 0), (1, 1)]);
    (sets, la, lb)
}

#[test]
fn data_flows_on_the_preferred_link() {
    for backend in BACKENDS {
        for (prio, expected_link) in [([1u8, 1u8], 0u8), ([10, 20], 1)] {
            let sets = two_nodes(backend, LinkMode::Passive, prio);
            let want = if backend == totem_transport::io::Backend::Uring {
                BackendKind::Uring
            } else {
                BackendKind::Mmsg
            };
            assert!(sets[0].backends().iter().all(|(_, k)| *k == want));
            let (mut la, mut lb) = (Log::default(), Log::default());
            wait_links_up(&sets[0], &mut la, &[(2, 0), (2, 1)]);
            wait_links_up(&sets[1], &mut lb, &[(1, 0), (1, 1)]);
            for i in 0..20u32 {
                sets[0].send(Dest::Node(2), &i.to_le_bytes()).unwrap();
            }
            assert!(pump(&sets[1], &mut lb, Duration::from_secs(5), |l| l
                .messages()
                .len()
                >= 20));
            let msgs = lb.messages();
            assert_eq!(msgs.len(), 20, "{backend:?}");
            for (i, (_, from, link, data)) in msgs.iter().enumerate() {
                assert_eq!(
                    (*from, *link),
                    (1, expected_link),
                    "{backend:?} prio {prio:?}"
                );
                assert_eq!(data, &(i as u32).to_le_bytes());
            }
            let status = sets[0].status();
            let active: Vec<_> = status.iter().filter(|s| s.active).map(|s| s.link).collect();
            assert_eq!(active, vec![expected_link], "{status:?}");
            assert!(status.iter().all(|s| s.connected && s.rtt.samples > 0));
            // Loopback's MTU is 65536: discovery finds the largest frame the protocol allows.
            assert!(
                status
                    .iter()
                    .all(|s| s.data_mtu.is_some_and(|m| m > 60_000)),
                "{status:?}"
            );
        }
    }
}

#[test]
fn active_mode_delivers_each_message_once() {
    for backend in BACKENDS {
        let (sets, _, mut lb) = two_nodes_up(backend, LinkMode::Active, [1, 1]);
        for i in 0..50u32 {
            sets[0].send(Dest::AllPeers, &i.to_le_bytes()).unwrap();
        }
        pump(&sets[1], &mut lb, Duration::from_millis(1500), |_| false);
        let got: Vec<Vec<u8>> = lb.messages().into_iter().map(|m| m.3).collect();
        let want: Vec<Vec<u8>> = (0..50u32).map(|i| i.to_le_bytes().to_vec()).collect();
        assert_eq!(got, want, "{backend:?}");
        let counters = sets[1].counters();
        assert!(counters.dedupe.duplicates >= 40, "{backend:?} {counters:?}");
    }
}

#[test]
fn three_nodes_broadcast_and_foreign_cluster_is_ignored_and_counted() {
    for backend in BACKENDS {
        let specs: Vec<NodeSpec> = (1..=3)
            .map(|n| NodeSpec {
                node_id: n,
                ip: ["127.0.0.1", "127.0.0.2", "127.0.0.3"][n as usize - 1],
                priorities: vec![1],
            })
            .collect();
        let mut configs: Vec<_> = specs
            .iter()
            .map(|s| config(s, backend, LinkMode::Passive, "alpha"))
            .collect();
        // Node 3 belongs to another cluster but is configured as a peer of 1 and 2.
        configs[2].cluster_name = "beta".into();
        let sets = start_all(configs);
        let mut logs: Vec<Log> = (0..3).map(|_| Log::default()).collect();
        wait_links_up(&sets[0], &mut logs[0], &[(2, 0)]);
        wait_links_up(&sets[1], &mut logs[1], &[(1, 0)]);
        sets[0].send(Dest::AllPeers, b"to everyone").unwrap();
        assert!(pump(&sets[1], &mut logs[1], Duration::from_secs(3), |l| !l
            .messages()
            .is_empty()));
        pump(&sets[2], &mut logs[2], Duration::from_millis(300), |_| {
            false
        });
        assert_eq!(logs[1].messages()[0].3, b"to everyone");
        assert!(
            logs[2].messages().is_empty() && logs[2].link_events().is_empty(),
            "{backend:?}"
        );
        assert!(
            sets[2].counters().rx_foreign_cluster > 0,
            "{:?}",
            sets[2].counters()
        );
        assert!(
            sets[0].counters().rx_foreign_cluster > 0,
            "{:?}",
            sets[0].counters()
        );
        assert_eq!(
            sets[0]
                .status()
                .iter()
                .filter(|s| s.node_id == 3 && s.connected)
                .count(),
            0
        );
    }
}

#[test]
fn messages_up_to_one_mebibyte_arrive_intact() {
    for backend in BACKENDS {
        let sets = two_nodes(backend, LinkMode::Passive, [1, 1]);
        let (mut la, mut lb) = (Log::default(), Log::default());
        wait_links_up(&sets[0], &mut la, &[(2, 0)]);
        wait_links_up(&sets[1], &mut lb, &[(1, 0)]);
        let sizes = [0usize, 1, 1400, 1500, 65_536, 1 << 20];
        for (i, &size) in sizes.iter().enumerate() {
            let msg: Vec<u8> = (0..size).map(|b| (b * 7 + i) as u8).collect();
            sets[0].send(Dest::Node(2), &msg).unwrap();
            assert!(
                pump(&sets[1], &mut lb, Duration::from_secs(10), |l| l
                    .messages()
                    .len()
                    > i),
                "{backend:?} size {size}"
            );
            assert_eq!(lb.messages()[i].3, msg, "{backend:?} size {size}");
        }
        let too_big = vec![0u8; (1 << 20) + 1];
        assert!(matches!(
            sets[0].send(Dest::Node(2), &too_big),
            Err(SendError::TooLarge { .. })
        ));
    }
}

#[test]
fn a_full_queue_reports_back_pressure() {
    for backend in BACKENDS {
        let a = NodeSpec {
            node_id: 1,
            ip: "127.0.0.1",
            priorities: vec![1],
        };
        let b = NodeSpec {
            node_id: 2,
            ip: "127.0.0.2",
            priorities: vec![1],
        };
        let mut ca = config(&a, backend, LinkMode::Passive, "test");
        ca.tx_queue_capacity = 8;
        let mut cb = config(&b, backend, LinkMode::Passive, "test");
        cb.rx_queue_capacity = 4;
        let sets = start_all(vec![ca, cb]);
        let (mut la, mut lb) = (Log::default(), Log::default());
        wait_links_up(&sets[0], &mut la, &[(2, 0)]);
        wait_links_up(&sets[1], &mut lb, &[(1, 0)]);
        // 20 fragments never fit a queue of 8.
        let big = vec![1u8; 20 * 1400];
        assert_eq!(sets[0].send(Dest::Node(2), &big), Err(SendError::Full));
        assert!(sets[0].counters().tx_queue_full >= 1);
        // The receiver does not read: its receive queue of 4 fills and further frames are counted.
        let mut refused = 0;
        for i in 0..200u32 {
            if sets[0].send(Dest::Node(2), &i.to_le_bytes()) == Err(SendError::Full) {
                refused += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let counters = sets[1].counters();
        assert!(
            counters.rx_queue_full > 0,
            "{backend:?} {counters:?} refused {refused}"
        );
        // Unknown peers are refused, not silently dropped.
        assert_eq!(
            sets[0].send(Dest::Node(99), b"x"),
            Err(SendError::UnknownPeer(99))
        );
        let _ = lb;
    }
}

#[test]
fn unreachable_peer_is_reported_once_without_spinning() {
    for backend in BACKENDS {
        let sets = two_nodes(backend, LinkMode::Passive, [1, 1]);
        let (mut la, mut lb) = (Log::default(), Log::default());
        wait_links_up(&sets[0], &mut la, &[(2, 0), (2, 1)]);
        // Node 2 goes away: its ports now answer with ICMP port unreachable.
        let mut sets = sets;
        let b = sets.pop().unwrap();
        b.shutdown();
        let _ = &mut lb;
        assert!(pump(&sets[0], &mut la, Duration::from_secs(3), |l| l
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::PeerUnreachable { node: 2, .. }))
            .count()
            >= 2));
        pump(&sets[0], &mut la, Duration::from_millis(300), |_| false);
        let downs = la
            .link_events()
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    totem_transport::heartbeat::LinkEvent::LinkDown { host_id: 2, .. }
                )
            })
            .count();
        assert_eq!(downs, 2, "{backend:?} {:?}", la.link_events());
        let unreachable = la
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::PeerUnreachable { .. }))
            .count();
        // Pings every 40 ms keep failing; the notice is given once per link, not per ping.
        assert_eq!(unreachable, 2, "{backend:?}");
        assert!(sets[0].counters().io_errors == 0);
    }
}

fn key(fill: u8) -> totem_crypto::AuthKey {
    totem_crypto::AuthKey::from_bytes(&[fill; 256]).unwrap()
}

/// A random nonce start, as a node without a state directory would use.
fn start() -> totem_crypto::NonceStart {
    totem_crypto::NonceStart::random().unwrap()
}

#[test]
fn encrypted_peers_talk_and_wrong_key_peer_is_ignored_and_counted() {
    use totem_transport::linkset::FrameCrypto;
    for backend in BACKENDS {
        let specs: Vec<NodeSpec> = (1..=3)
            .map(|n| NodeSpec {
                node_id: n,
                ip: ["127.0.0.1", "127.0.0.2", "127.0.0.3"][n as usize - 1],
                priorities: vec![1],
            })
            .collect();
        let mut configs: Vec<_> = specs
            .iter()
            .map(|s| config(s, backend, LinkMode::Passive, "sealed"))
            .collect();
        configs[0].crypto = Some(FrameCrypto::aes_gcm(&key(1), "sealed", 0, 1, start()));
        configs[1].crypto = Some(FrameCrypto::aes_gcm(&key(1), "sealed", 0, 2, start()));
        configs[2].crypto = Some(FrameCrypto::aes_gcm(&key(2), "sealed", 0, 3, start())); // wrong key
        let sets = start_all(configs);
        let mut logs: Vec<Log> = (0..3).map(|_| Log::default()).collect();
        wait_links_up(&sets[0], &mut logs[0], &[(2, 0)]);
        wait_links_up(&sets[1], &mut logs[1], &[(1, 0)]);
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        sets[0].send(Dest::AllPeers, b"secret").unwrap();
        sets[0].send(Dest::Node(2), &big).unwrap();
        assert!(pump(&sets[1], &mut logs[1], Duration::from_secs(5), |l| l
            .messages()
            .len()
            >= 2));
        let msgs = logs[1].messages();
        assert_eq!(msgs[0].3, b"secret");
        assert_eq!(msgs[1].3, big);
        sets[2].send(Dest::AllPeers, b"forged").ok();
        pump(&sets[2], &mut logs[2], Duration::from_millis(300), |_| {
            false
        });
        pump(&sets[0], &mut logs[0], Duration::from_millis(100), |_| {
            false
        });
        assert!(logs[0].messages().is_empty(), "{backend:?}");
        assert!(
            logs[2].messages().is_empty() && logs[2].link_events().is_empty(),
            "{backend:?}"
        );
        assert!(
            sets[0].counters().rx_auth_failed > 0,
            "{:?}",
            sets[0].counters()
        );
        assert!(
            sets[2].counters().rx_auth_failed > 0,
            "{:?}",
            sets[2].counters()
        );
        assert!(!sets[0]
            .status()
            .iter()
            .any(|s| s.node_id == 3 && s.connected));
    }
}

/// Receivers derive a sender's key from the header's node id, so a link set whose frame key is
/// another node's would send frames nobody can open: refused at start.
#[test]
fn a_frame_key_of_another_node_is_refused_at_start() {
    use totem_transport::linkset::{FrameCrypto, LinkSet};
    let a = NodeSpec {
        node_id: 1,
        ip: "127.0.0.1",
        priorities: vec![1],
    };
    let mut ca = config(&a, BACKENDS[1], LinkMode::Passive, "mismatch");
    ca.crypto = Some(FrameCrypto::aes_gcm(&key(1), "mismatch", 0, 2, start()));
    let Err(error) = LinkSet::start(ca) else {
        panic!("a link set sealing under another node's key started");
    };
    assert!(
        error.to_string().contains("node 2's"),
        "unexpected error: {error}"
    );
}

#[test]
fn clear_and_encrypted_nodes_do_not_mix() {
    use totem_transport::linkset::FrameCrypto;
    for backend in BACKENDS {
        let a = NodeSpec {
            node_id: 1,
            ip: "127.0.0.1",
            priorities: vec![1],
        };
        let b = NodeSpec {
            node_id: 2,
            ip: "127.0.0.2",
            priorities: vec![1],
        };
        let mut ca = config(&a, backend, LinkMode::Passive, "mixed");
        ca.crypto = Some(FrameCrypto::aes_gcm(&key(1), "mixed", 0, 1, start()));
        let sets = start_all(vec![ca, config(&b, backend, LinkMode::Passive, "mixed")]);
        let (mut la, mut lb) = (Log::default(), Log::default());
        pump(&sets[0], &mut la, Duration::from_millis(300), |_| false);
        pump(&sets[1], &mut lb, Duration::from_millis(100), |_| false);
        assert!(
            la.link_events().is_empty() && lb.link_events().is_empty(),
            "{backend:?}"
        );
        assert!(sets[0].counters().rx_auth_failed > 0 && sets[1].counters().rx_auth_failed > 0);
    }
}

#[test]
fn links_and_peers_change_at_run_time() {
    use totem_transport::linkset::{LinkConfig, PeerConfig};
    for backend in BACKENDS {
        let a = NodeSpec {
            node_id: 1,
            ip: "127.0.0.1",
            priorities: vec![1],
        };
        let b = NodeSpec {
            node_id: 2,
            ip: "127.0.0.2",
            priorities: vec![1],
        };
        let sets = start_all(vec![
            config(&a, backend, LinkMode::Passive, "reload"),
            config(&b, backend, LinkMode::Passive, "reload"),
        ]);
        let (mut la, mut lb) = (Log::default(), Log::default());
        wait_links_up(&sets[0], &mut la, &[(2, 0)]);
        wait_links_up(&sets[1], &mut lb, &[(1, 0)]);
        // Add link 1 with a higher priority on both nodes: it becomes the preferred link.
        for (set, ip) in sets.iter().zip(["127.0.0.1", "127.0.0.2"]) {
            set.add_link(LinkConfig {
                link: 1,
                bind: format!("{ip}:0").parse().unwrap(),
                priority: 5,
                heartbeat: None,
                cpu: None,
            })
            .unwrap();
        }
        assert!(sets[0]
            .add_link(LinkConfig {
                link: 1,
                bind: "127.0.0.1:0".parse().unwrap(),
                priority: 1,
                heartbeat: None,
                cpu: None
            })
            .is_err());
        connect(&sets);
        wait_links_up(&sets[0], &mut la, &[(2, 1)]);
        wait_links_up(&sets[1], &mut lb, &[(1, 1)]);
        sets[0].send(Dest::Node(2), b"on link 1").unwrap();
        assert!(pump(&sets[1], &mut lb, Duration::from_secs(3), |l| !l
            .messages()
            .is_empty()));
        assert_eq!(lb.messages()[0].2, 1, "{backend:?}");
        // Remove link 1 on the sender: traffic falls back to link 0.
        sets[0].remove_link(1).unwrap();
        assert!(sets[0].remove_link(1).is_err());
        sets[0].send(Dest::Node(2), b"on link 0").unwrap();
        assert!(pump(&sets[1], &mut lb, Duration::from_secs(3), |l| l
            .messages()
            .len()
            >= 2));
        assert_eq!(lb.messages()[1].2, 0, "{backend:?}");
        // Drop the peer: sends to it are refused.
        sets[0].set_peers(Vec::<PeerConfig>::new()).unwrap();
        assert_eq!(
            sets[0].send(Dest::Node(2), b"x"),
            Err(SendError::UnknownPeer(2))
        );
        assert!(
            sets[0].status().is_empty()
                || pump(&sets[0], &mut la, Duration::from_secs(1), |_| sets[0]
                    .status()
                    .is_empty())
        );
    }
}

/// On a 1500-byte MTU path (a private namespace's loopback set to 1500), discovery's first
/// probe (the largest frame) is refused by the kernel with EMSGSIZE; the reactor takes that and
/// the MTU the kernel reports at once instead of waiting the probe's reply timeout, so the data
/// MTU is known right after link up (`wait_links_up` allows 10 s; here a probe's reply timeout
/// is minutes).
#[test]
fn path_mtu_below_the_largest_frame_is_found_from_the_kernels_refusal() {
    let outcome = in_private_netns(|| {
        let mut found = Vec::new();
        for backend in BACKENDS {
            // A probe's reply timeout follows the heartbeat's pong timeout (×10 at start-up):
            // with a 30 s ping timeout no probe can time out within the test, so only the
            // kernel's refusal can tell discovery that the first probe was too large.
            let configs = [(1, "127.0.0.1"), (2, "127.0.0.2")].map(|(node_id, ip)| {
                let spec = NodeSpec {
                    node_id,
                    ip,
                    priorities: vec![1, 1],
                };
                let mut cfg = config(&spec, backend, LinkMode::Passive, "test");
                cfg.heartbeat.ping_timeout = Duration::from_secs(30);
                cfg
            });
            let sets = start_all(configs.into());
            let (mut la, mut lb) = (Log::default(), Log::default());
            wait_links_up(&sets[0], &mut la, &[(2, 0), (2, 1)]);
            wait_links_up(&sets[1], &mut lb, &[(1, 0), (1, 1)]);
            found.extend(sets[0].status().iter().filter_map(|s| s.data_mtu));
            // A message larger than the data MTU still arrives whole (fragments fit the path).
            let big = vec![7u8; 10_000];
            sets[0].send(Dest::Node(2), &big).unwrap();
            assert!(pump(&sets[1], &mut lb, Duration::from_secs(5), |l| l
                .messages()
                .iter()
                .any(|(_, _, _, d)| *d == big)));
        }
        found
    });
    let Some(found) = outcome else {
        return; // not root: no namespace
    };
    assert_eq!(found.len(), 4, "{found:?}");
    for mtu in found {
        // 1500 minus IP (20), UDP (8) and our 48-byte header: at most 1424 bytes of data.
        assert!((1300..=1424).contains(&mtu), "data MTU {mtu}");
    }
}

#[test]
fn an_inline_consumer_takes_small_batches_on_the_reactor_and_can_decline() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    for backend in BACKENDS {
        let (mut sets, _, _) = two_nodes_up(backend, LinkMode::Passive, [1, 1]);
        let b = Arc::new(sets.pop().unwrap());
        let a = sets.pop().unwrap();
        // What the consumer took, with the name of the thread that ran it.
        type Taken = Vec<(String, Vec<u8>)>;
        let taken: Arc<Mutex<Taken>> = Arc::default();
        let decline = Arc::new(AtomicBool::new(false));
        let consumer = {
            let (b, taken, decline) = (Arc::clone(&b), Arc::clone(&taken), Arc::clone(&decline));
            Arc::new(move || {
                if decline.load(Ordering::SeqCst) {
                    return false;
                }
                let thread = std::thread::current().name().unwrap_or("").to_string();
                while let Some(event) = b.recv(None) {
                    if let Event::Message { data, .. } = event {
                        taken.lock().unwrap().push((thread.clone(), data));
                    }
                }
                true
            })
        };
        b.set_inline_consumer(Some(consumer));
        // One frame at a time: each is a batch of one, which the reactor hands over itself.
        for i in 0..20u32 {
            a.send(Dest::Node(2), &i.to_le_bytes()).unwrap();
            let end = std::time::Instant::now() + Duration::from_secs(5);
            while taken.lock().unwrap().len() <= i as usize {
                assert!(
                    std::time::Instant::now() < end,
                    "{backend:?}: message {i} not taken"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let got = taken.lock().unwrap().clone();
        let want: Vec<Vec<u8>> = (0..20u32).map(|i| i.to_le_bytes().to_vec()).collect();
        assert_eq!(got.iter().map(|t| t.1.clone()).collect::<Vec<_>>(), want);
        assert!(
            got.iter()
                .all(|(thread, _)| thread.starts_with("totem-link")),
            "{backend:?}: taken on {:?}",
            got.iter().map(|t| &t.0).collect::<Vec<_>>()
        );
        // Declined: the frames wait for the consumer's own thread, as without an inline one.
        decline.store(true, Ordering::SeqCst);
        for i in 20..25u32 {
            a.send(Dest::Node(2), &i.to_le_bytes()).unwrap();
        }
        let mut log = Log::default();
        assert!(pump(&b, &mut log, Duration::from_secs(5), |l| l
            .messages()
            .len()
            >= 5));
        let late: Vec<Vec<u8>> = log.messages().into_iter().map(|m| m.3).collect();
        let want: Vec<Vec<u8>> = (20..25u32).map(|i| i.to_le_bytes().to_vec()).collect();
        assert_eq!(late, want, "{backend:?}");
        assert_eq!(taken.lock().unwrap().len(), 20, "{backend:?}");
        // Removing it breaks the cycle (the consumer holds the link set).
        b.set_inline_consumer(None);
    }
}

#[test]
fn frames_queued_before_a_peer_is_removed_still_reach_it() {
    // A configuration change that removes a node is applied by its sender as soon as it delivers
    // its own message, before the link reactor sends that message: the removed node must still
    // get it, or it never learns it was removed.
    for backend in BACKENDS {
        let (sets, _, mut lb) = two_nodes_up(backend, LinkMode::Passive, [1, 1]);
        sets[0]
            .send_deferred(Dest::AllPeers, b"you are removed")
            .unwrap();
        sets[0].set_peers(Vec::new()).unwrap();
        sets[0].flush();
        assert!(
            pump(&sets[1], &mut lb, Duration::from_secs(3), |l| !l
                .messages()
                .is_empty()),
            "{backend:?}: the removed node did not get the frame queued before its removal"
        );
        assert_eq!(lb.messages()[0].3, b"you are removed", "{backend:?}");
    }
}
