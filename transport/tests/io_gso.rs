//! UDP GSO on send and GRO on receive, each test run against both io_uring and
//! recvmmsg/sendmmsg: runs arrive intact, separate and in order; the send plan's order rule holds
//! on the wire; a receiver without GRO still gets separate datagrams; path errors stay per
//! destination exactly as without GSO.
#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

mod common;

use common::in_private_netns;
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use totem_transport::io::{self, Backend, Incoming, IoOptions, LinkIo, PathError, RecvBatch};

const BACKENDS: [Backend; 2] = [Backend::Uring, Backend::Mmsg];

/// Buffers large enough for GRO (the default 64 KiB datagrams), a small ring to keep memory low.
fn opts(udp_offload: bool) -> IoOptions {
    IoOptions {
        batch_max: 64,
        recv_buffers: 64,
        socket_buffer_bytes: 4 << 20,
        udp_offload,
        ..IoOptions::default()
    }
}

/// Buffers too small to hold a coalesced receive: GRO stays off even when asked for.
fn small_opts(udp_offload: bool) -> IoOptions {
    IoOptions {
        max_datagram_bytes: 2048,
        ..opts(udp_offload)
    }
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A datagram that names itself: its index in the first 4 bytes, then a pattern of the index.
fn payload(index: usize, len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len).map(|k| (index * 7 + k) as u8).collect();
    let tag = (index as u32).to_le_bytes();
    let n = len.min(4);
    p[..n].copy_from_slice(&tag[..n]);
    p
}

/// (index, length) of each datagram, after checking its bytes are those [`payload`] made: short
/// enough to print when an order check fails.
fn ids<'a>(datagrams: impl IntoIterator<Item = &'a Vec<u8>>) -> Vec<(usize, usize)> {
    datagrams
        .into_iter()
        .map(|d| {
            let mut tag = [0u8; 4];
            let n = d.len().min(4);
            tag[..n].copy_from_slice(&d[..n]);
            let index = u32::from_le_bytes(tag) as usize;
            assert!(
                n < 4 || *d == payload(index, d.len()),
                "datagram {index} damaged"
            );
            (index, d.len())
        })
        .collect()
}

/// Receives with `recv_batch` until `want` datagrams arrived or 5 s passed.
fn recv_batch_all(io: &mut LinkIo, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut batch = RecvBatch::new(io.options());
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    while got.len() < want && Instant::now() < end {
        io.recv_batch(&mut batch, Some(end)).unwrap();
        assert_eq!(batch.len(), batch.iter().count());
        assert!(batch.receives() <= batch.len());
        got.extend(batch.iter().map(|(a, d)| (a, d.to_vec())));
    }
    got
}

/// Receives with `recv_each` until `want` datagrams arrived or 5 s passed.
fn recv_each_all(io: &mut LinkIo, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    while got.len() < want && Instant::now() < end {
        let summary = io
            .recv_each(Some(end), |item| {
                if let Incoming::Datagram { from, data } = item {
                    got.push((from, data.to_vec()));
                }
            })
            .unwrap();
        assert!(summary.datagrams <= got.len());
    }
    got
}

/// Collects path errors on `io` until `until` returns true for what was collected, or `wait`.
fn path_errors(
    io: &mut LinkIo,
    wait: Duration,
    until: impl Fn(&[PathError]) -> bool,
) -> Vec<PathError> {
    let mut errors = Vec::new();
    let end = Instant::now() + wait;
    while !until(&errors) && Instant::now() < end {
        io.recv_each(Some(end), |item| {
            if let Incoming::PathError(e) = item {
                errors.push(e);
            }
        })
        .unwrap();
    }
    errors
}

#[test]
fn equal_size_runs_arrive_intact_separate_and_in_order() {
    for backend in BACKENDS {
        for sender_offload in [true, false] {
            for receiver_offload in [true, false] {
                let case = format!("{backend:?} gso {sender_offload} gro {receiver_offload}");
                let mut a = io::open(local(), backend, &opts(sender_offload)).unwrap();
                let mut b = io::open(local(), backend, &opts(receiver_offload)).unwrap();
                assert_eq!(a.offload().gso, sender_offload, "{case}");
                assert_eq!(b.offload().gro, receiver_offload, "{case}");
                let to = b.local_addr().unwrap();
                // 100 × 1200 B: chunks of 64 and 36, the first cut at 65507 bytes (54 + 10).
                let payloads: Vec<Vec<u8>> = (0..100).map(|i| payload(i, 1200)).collect();
                let batch: Vec<(SocketAddr, &[u8])> =
                    payloads.iter().map(|p| (to, p.as_slice())).collect();
                let from = a.local_addr().unwrap();
                let expected = ids(&payloads);

                assert_eq!(a.send_batch(&batch).unwrap(), 100, "{case}");
                let got = recv_batch_all(&mut b, 100);
                assert!(got.iter().all(|(f, _)| *f == from), "{case}");
                assert_eq!(
                    ids(got.iter().map(|(_, d)| d)),
                    expected,
                    "{case} recv_batch"
                );
                assert_eq!(a.send_batch(&batch).unwrap(), 100, "{case}");
                let got = recv_each_all(&mut b, 100);
                assert!(got.iter().all(|(f, _)| *f == from), "{case}");
                assert_eq!(
                    ids(got.iter().map(|(_, d)| d)),
                    expected,
                    "{case} recv_each"
                );

                let tx = a.stats();
                assert_eq!(tx.tx_datagrams, 200, "{case} {tx:?}");
                if sender_offload {
                    assert_eq!((tx.tx_gso_runs, tx.tx_gso_segments), (6, 200), "{case}");
                } else {
                    assert_eq!((tx.tx_gso_runs, tx.tx_gso_segments), (0, 0), "{case}");
                }
                assert_eq!(tx.tx_gso_resends, 0, "{case}");
                let rx = b.stats();
                assert_eq!(rx.rx_datagrams, 200, "{case} {rx:?}");
                if sender_offload && receiver_offload {
                    // Over loopback a GSO send reaches a GRO socket as one coalesced receive.
                    assert!(rx.rx_gro_receives > 0, "{case} {rx:?}");
                } else {
                    assert_eq!(rx.rx_gro_receives, 0, "{case} {rx:?}");
                }
                assert!(rx.rx_gro_segments <= 200, "{case} {rx:?}");
            }
        }
    }
}

#[test]
fn a_receiver_without_gro_gets_separate_datagrams_from_a_gso_sender() {
    for backend in BACKENDS {
        let mut a = io::open(local(), backend, &opts(true)).unwrap();
        // Offload asked for, but 2 KiB buffers cannot hold a coalesced receive: GRO stays off.
        let mut b = io::open(local(), backend, &small_opts(true)).unwrap();
        assert!(a.offload().gso, "{backend:?}");
        assert!(!b.offload().gro, "{backend:?}");
        let to = b.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..64).map(|i| payload(i, 1400)).collect();
        let batch: Vec<(SocketAddr, &[u8])> = payloads.iter().map(|p| (to, p.as_slice())).collect();
        assert_eq!(a.send_batch(&batch).unwrap(), 64);
        let got = recv_each_all(&mut b, 64);
        assert_eq!(
            ids(got.iter().map(|(_, d)| d)),
            ids(&payloads),
            "{backend:?}"
        );
        assert!(a.stats().tx_gso_runs > 0, "{backend:?}");
        assert_eq!(b.stats().rx_gro_receives, 0, "{backend:?}");
        assert_eq!(b.stats().rx_truncated, 0, "{backend:?}");
    }
}

/// The send order the plan promises: with GSO, destinations grouped (each in its own order),
/// groups ordered by the batch position of their last datagram; without, the batch order.
fn expected_order(dests: &[SocketAddr], gso: bool) -> Vec<usize> {
    if !gso {
        return (0..dests.len()).collect();
    }
    let mut groups: BTreeMap<SocketAddr, Vec<usize>> = BTreeMap::new();
    for (i, d) in dests.iter().enumerate() {
        groups.entry(*d).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    groups.sort_by_key(|g| *g.last().unwrap());
    groups.concat()
}

#[test]
fn a_mixed_batch_follows_the_order_rule_on_the_wire() {
    // One receiving socket on 0.0.0.0 reached at three loopback addresses: three destinations
    // for the sender, one arrival order to check. The thread is pinned so that every datagram
    // goes through one CPU's loopback backlog (no reordering by the kernel).
    io::pin_current_thread(0).unwrap();
    for backend in BACKENDS {
        for offload in [true, false] {
            let case = format!("{backend:?} offload {offload}");
            let mut a = io::open(local(), backend, &opts(offload)).unwrap();
            let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
            let mut r = io::open(any, backend, &opts(offload)).unwrap();
            let port = r.local_addr().unwrap().port();
            let peer = |n: u8| SocketAddr::from(([127, 0, 0, n], port));
            let (b, c, d) = (peer(1), peer(2), peer(3));
            // Totem-like: frames to B and C interleaved, B's size changing half-way, small
            // messages to D in between, an empty datagram, and the token to B last.
            let mut dests = Vec::new();
            let mut sizes = Vec::new();
            for i in 0..24 {
                let frame = if i < 12 { 1400 } else { 900 };
                dests.extend([b, c]);
                sizes.extend([frame, 1400]);
                if i % 5 == 0 {
                    dests.push(d);
                    sizes.push(10 + i);
                }
            }
            dests.push(d);
            sizes.push(0);
            dests.push(b);
            sizes.push(80);
            let payloads: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &len)| payload(i, len))
                .collect();
            let batch: Vec<(SocketAddr, &[u8])> = dests
                .iter()
                .zip(&payloads)
                .map(|(d, p)| (*d, p.as_slice()))
                .collect();
            assert!(batch.len() <= 64, "one chunk");
            assert_eq!(a.send_batch(&batch).unwrap(), batch.len(), "{case}");
            let got = recv_batch_all(&mut r, batch.len());
            let order = expected_order(&dests, offload);
            let expected: Vec<(usize, usize)> = order.iter().map(|&i| (i, sizes[i])).collect();
            // The empty datagram carries no index: compare lengths there.
            let got: Vec<(usize, usize)> = ids(got.iter().map(|(_, d)| d))
                .into_iter()
                .zip(&expected)
                .map(|((i, len), &(want, _))| if len == 0 { (want, 0) } else { (i, len) })
                .collect();
            assert_eq!(got, expected, "{case}");
            assert_eq!(*order.last().unwrap(), batch.len() - 1);
            assert_eq!(a.stats().tx_gso_runs > 0, offload, "{case}");
        }
    }
}

#[test]
fn icmp_errors_stay_per_destination_and_a_refused_run_is_resent() {
    for backend in BACKENDS {
        let mut a = io::open(local(), backend, &opts(true)).unwrap();
        let mut b = io::open(local(), backend, &opts(true)).unwrap();
        let live = b.local_addr().unwrap();
        let closed = UdpSocket::bind(local()).unwrap().local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..20).map(|i| payload(i, 1200)).collect();
        let only_errors_for_closed = |errors: &[PathError]| {
            assert!(!errors.is_empty(), "{backend:?}");
            for e in errors {
                assert_eq!(e.dest, closed, "{backend:?} {errors:?}");
                assert!(e.is_unreachable(), "{backend:?} {e:?}");
            }
        };

        // Interleaved: two GSO runs, one to a closed port, one to a live socket.
        let batch: Vec<(SocketAddr, &[u8])> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| (if i % 2 == 0 { closed } else { live }, p.as_slice()))
            .collect();
        assert_eq!(a.send_batch(&batch).unwrap(), 20, "{backend:?}");
        let got = recv_each_all(&mut b, 10);
        let odd: Vec<&Vec<u8>> = payloads.iter().skip(1).step_by(2).collect();
        assert_eq!(ids(got.iter().map(|(_, d)| d)), ids(odd), "{backend:?}");
        let errors = path_errors(&mut a, Duration::from_secs(2), |e| !e.is_empty());
        only_errors_for_closed(&errors);
        path_errors(&mut a, Duration::from_millis(50), |_| false);

        // A run to the closed port leaves its ICMP error pending on the socket: the next send
        // picks it up (with mmsg for certain; io_uring's armed receive may take it first). That
        // run, to the live socket, must still arrive whole.
        let to_closed: Vec<(SocketAddr, &[u8])> = payloads[..10]
            .iter()
            .map(|p| (closed, p.as_slice()))
            .collect();
        a.send_batch(&to_closed).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let to_live: Vec<(SocketAddr, &[u8])> = payloads[10..]
            .iter()
            .map(|p| (live, p.as_slice()))
            .collect();
        assert_eq!(a.send_batch(&to_live).unwrap(), 10, "{backend:?}");
        let got = recv_each_all(&mut b, 10);
        assert_eq!(
            ids(got.iter().map(|(_, d)| d)),
            ids(&payloads[10..]),
            "{backend:?}"
        );
        if backend == Backend::Mmsg {
            assert!(a.stats().tx_gso_resends >= 1, "{:?}", a.stats());
        }
        assert!(a.offload().gso, "an ICMP error does not switch GSO off");
        let errors = path_errors(&mut a, Duration::from_secs(2), |e| !e.is_empty());
        only_errors_for_closed(&errors);
    }
}

/// Path errors a sender reported (destination, errno) and (index, length) of what arrived.
type Outcome = (Vec<(SocketAddr, i32)>, Vec<(usize, usize)>);

/// What a sender reports and a receiver gets for a batch with datagrams above the MTU.
fn oversize_outcome(backend: Backend, offload: bool) -> Outcome {
    let mut a = io::open(local(), backend, &opts(offload)).unwrap();
    let mut b = io::open(local(), backend, &opts(offload)).unwrap();
    let to = b.local_addr().unwrap();
    // Three datagrams above the 1500-byte MTU (a GSO run whose segments do not fit), then three
    // that fit (a GSO run that goes through).
    let payloads: Vec<Vec<u8>> = (0..6)
        .map(|i| payload(i, if i < 3 { 2000 } else { 1000 }))
        .collect();
    let batch: Vec<(SocketAddr, &[u8])> = payloads.iter().map(|p| (to, p.as_slice())).collect();
    assert_eq!(a.send_batch(&batch).unwrap(), 3, "{backend:?} {offload}");
    let got = ids(recv_each_all(&mut b, 3).iter().map(|(_, d)| d));
    let mut errors: Vec<(SocketAddr, i32)> =
        path_errors(&mut a, Duration::from_millis(200), |e| e.len() >= 3)
            .iter()
            .map(|e| (e.dest, e.errno))
            .collect();
    errors.sort();
    if offload {
        assert!(a.stats().tx_gso_resends >= 1, "{:?}", a.stats());
        assert_eq!(a.stats().tx_gso_runs, 1, "{:?}", a.stats());
    }
    // Replace the ephemeral port of `to` so outcomes of two runs compare.
    let errors = errors
        .into_iter()
        .map(|(dest, errno)| {
            let dest = if dest == to {
                SocketAddr::from(([127, 0, 0, 1], 1))
            } else {
                dest
            };
            (dest, errno)
        })
        .collect();
    (errors, got)
}

#[test]
fn emsgsize_is_reported_per_datagram_with_and_without_gso() {
    for backend in BACKENDS {
        let Some((without, with)) = in_private_netns(move || {
            (
                oversize_outcome(backend, false),
                oversize_outcome(backend, true),
            )
        }) else {
            return;
        };
        assert_eq!(without.1.len(), 3, "{backend:?}");
        assert_eq!(
            with.1, without.1,
            "{backend:?}: the datagrams that fit arrive"
        );
        // Every error is EMSGSIZE for the destination: the error queue names it with port 0 for a
        // local EMSGSIZE; a send whose error-queue entry was already read names it itself
        // (127.0.0.1:1 here). With GSO, one per datagram that did not fit.
        let target = [
            SocketAddr::from(([127, 0, 0, 1], 0)),
            SocketAddr::from(([127, 0, 0, 1], 1)),
        ];
        for (dest, errno) in with.0.iter().chain(&without.0) {
            assert!(target.contains(dest), "{backend:?} {with:?} {without:?}");
            assert_eq!(*errno, libc::EMSGSIZE, "{backend:?}");
        }
        assert_eq!(with.0.len(), 3, "{backend:?} {with:?}");
        // Without GSO, mmsg handles each failure in turn (one error each); io_uring's independent
        // entries each drain the error queue, so the first drain takes all three entries and the
        // later failures add one naming the destination: as before GSO existed.
        assert!(without.0.len() >= 3, "{backend:?} {without:?}");
    }
}

#[test]
fn a_refused_gso_send_switches_gso_off_and_is_resent() {
    use std::os::fd::{AsFd, AsRawFd};
    for backend in BACKENDS {
        let mut a = io::open(local(), backend, &opts(true)).unwrap();
        let mut b = io::open(local(), backend, &opts(true)).unwrap();
        assert!(a.offload().gso);
        // UDP checksums off (SO_NO_CHECK): the kernel refuses GSO sends with EINVAL, as it does
        // where a device cannot segment them.
        let one: libc::c_int = 1;
        // SAFETY: passes a live int and its size for the LinkIo's socket.
        let rc = unsafe {
            libc::setsockopt(
                a.as_fd().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        let to = b.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..40).map(|i| payload(i, 1000)).collect();
        let batch: Vec<(SocketAddr, &[u8])> = payloads.iter().map(|p| (to, p.as_slice())).collect();
        assert_eq!(a.send_batch(&batch[..20]).unwrap(), 20, "{backend:?}");
        assert!(!a.offload().gso, "{backend:?}: switched off");
        assert_eq!(a.stats().tx_gso_resends, 1, "{backend:?}");
        assert_eq!(a.send_batch(&batch[20..]).unwrap(), 20, "{backend:?}");
        let got = recv_each_all(&mut b, 40);
        assert_eq!(
            ids(got.iter().map(|(_, d)| d)),
            ids(&payloads),
            "{backend:?}"
        );
        let stats = a.stats();
        assert_eq!(
            (stats.tx_gso_runs, stats.tx_gso_resends),
            (0, 1),
            "{stats:?}"
        );
        assert_eq!(stats.tx_datagrams, 40);
    }
}

#[test]
fn a_run_at_the_payload_limit_goes_out_as_one_gso_send() {
    // IPv4: 6 × 9359 + 9353 = 65507, the limit exactly; one byte more must be cut into a run and
    // a single send. IPv6: 7 × 9361 = 65527; 7 × 9362 must be cut. A limit set too low splits
    // the first batch; one set too high makes the kernel refuse the second (EMSGSIZE, resent).
    let cases: [(&str, Vec<usize>, Vec<usize>); 2] = [
        (
            "127.0.0.1:0",
            [vec![9359; 6], vec![9353]].concat(),
            [vec![9359; 6], vec![9354]].concat(),
        ),
        ("[::1]:0", vec![9361; 7], vec![9362; 7]),
    ];
    for backend in BACKENDS {
        for (bind, at_limit, over_limit) in &cases {
            let bind: SocketAddr = bind.parse().unwrap();
            let Ok(mut a) = io::open(bind, backend, &opts(true)) else {
                eprintln!("skipped {bind}: cannot bind");
                continue;
            };
            let mut b = io::open(bind, backend, &opts(true)).unwrap();
            let to = b.local_addr().unwrap();
            for (sizes, runs) in [(at_limit, 1), (over_limit, 2)] {
                let payloads: Vec<Vec<u8>> = sizes
                    .iter()
                    .enumerate()
                    .map(|(i, &len)| payload(i, len))
                    .collect();
                let batch: Vec<(SocketAddr, &[u8])> =
                    payloads.iter().map(|p| (to, p.as_slice())).collect();
                assert_eq!(
                    a.send_batch(&batch).unwrap(),
                    sizes.len(),
                    "{backend:?} {bind}"
                );
                let stats = a.stats();
                assert_eq!(
                    (stats.tx_gso_runs, stats.tx_gso_resends),
                    (runs, 0),
                    "{backend:?} {bind} {stats:?}"
                );
                let got = recv_each_all(&mut b, sizes.len());
                assert_eq!(
                    ids(got.iter().map(|(_, d)| d)),
                    ids(&payloads),
                    "{backend:?}"
                );
            }
        }
    }
}

#[test]
fn a_call_hands_over_whole_coalesced_receives_and_stops_near_batch_max() {
    for backend in BACKENDS {
        let rx_opts = IoOptions {
            batch_max: 16,
            ..opts(true)
        };
        let mut a = io::open(local(), backend, &opts(true)).unwrap();
        let mut b = io::open(local(), backend, &rx_opts).unwrap();
        let to = b.local_addr().unwrap();
        // Three GSO runs of 60: with GRO, three receives of 60 datagrams each.
        let payloads: Vec<Vec<u8>> = (0..180).map(|i| payload(i, 500)).collect();
        let batch: Vec<(SocketAddr, &[u8])> = payloads.iter().map(|p| (to, p.as_slice())).collect();
        b.recv_each(Some(Instant::now()), |_| {}).unwrap(); // arms the io_uring receive
        for run in batch.chunks(60) {
            assert_eq!(a.send_batch(run).unwrap(), 60);
        }
        std::thread::sleep(Duration::from_millis(20));
        let mut got = Vec::new();
        let mut calls = Vec::new();
        let end = Instant::now() + Duration::from_secs(5);
        while got.len() < 180 && Instant::now() < end {
            let summary = b
                .recv_each(Some(end), |item| {
                    if let Incoming::Datagram { data, .. } = item {
                        got.push(data.to_vec());
                    }
                })
                .unwrap();
            calls.push(summary.datagrams);
        }
        assert_eq!(ids(&got), ids(&payloads), "{backend:?}");
        assert_eq!(b.stats().rx_gro_receives, 3, "{backend:?} {:?}", b.stats());
        if backend == Backend::Uring {
            // A receive is never split; the call stops once batch_max (16) is reached.
            assert_eq!(calls, vec![60, 60, 60], "{backend:?}");
        } else {
            assert!(calls.iter().all(|&n| n <= 16 * 64), "{calls:?}");
        }
    }
}
