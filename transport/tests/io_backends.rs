//! The batched datagram backends, each test run against both io_uring and recvmmsg/sendmmsg.
#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use totem_transport::io::{self, Backend, BackendKind, Incoming, IoOptions, RecvBatch};

const BACKENDS: [Backend; 2] = [Backend::Uring, Backend::Mmsg];

fn small_opts() -> IoOptions {
    IoOptions {
        max_datagram_bytes: 2048,
        batch_max: 16,
        recv_buffers: 64,
        socket_buffer_bytes: 1 << 20,
        udp_offload: true,
    }
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Receives until `want` datagrams arrived or 5 s passed.
fn recv_all(io: &mut io::LinkIo, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut batch = RecvBatch::new(io.options());
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    while got.len() < want && Instant::now() < end {
        io.recv_batch(&mut batch, Some(end)).unwrap();
        got.extend(batch.iter().map(|(a, d)| (a, d.to_vec())));
    }
    got
}

#[test]
fn batches_arrive_intact_and_in_order() {
    for backend in BACKENDS {
        let mut a = io::open(local(), backend, &small_opts()).unwrap();
        let mut b = io::open(local(), backend, &small_opts()).unwrap();
        assert_eq!(
            a.kind(),
            if backend == Backend::Uring {
                BackendKind::Uring
            } else {
                BackendKind::Mmsg
            }
        );
        let to = b.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..100u32)
            .map(|i| vec![i as u8; 1 + (i as usize * 13) % 1500])
            .collect();
        let batch: Vec<(SocketAddr, &[u8])> = payloads.iter().map(|p| (to, p.as_slice())).collect();
        assert_eq!(a.send_batch(&batch).unwrap(), 100, "{backend:?}");
        let got = recv_all(&mut b, 100);
        assert_eq!(got.len(), 100, "{backend:?}");
        for (i, (from, data)) in got.iter().enumerate() {
            assert_eq!(*from, a.local_addr().unwrap());
            assert_eq!(data, &payloads[i], "{backend:?} datagram {i}");
        }
        assert_eq!(b.stats().rx_datagrams, 100);
    }
}

#[test]
fn recv_each_hands_over_without_copy_and_rearms_after_buffer_exhaustion() {
    for backend in BACKENDS {
        // 8 receive buffers, 200 datagrams queued before the first receive: the multishot runs
        // out of buffers (ENOBUFS) and must be re-armed to get the rest.
        let opts = IoOptions {
            recv_buffers: 8,
            batch_max: 8,
            ..small_opts()
        };
        let mut a = io::open(local(), backend, &opts).unwrap();
        let mut b = io::open(local(), backend, &opts).unwrap();
        let to = b.local_addr().unwrap();
        let mut batch = RecvBatch::new(b.options());
        b.recv_batch(&mut batch, Some(Instant::now())).unwrap(); // arms the receive
        let payloads: Vec<[u8; 8]> = (0..200u64).map(|i| i.to_le_bytes()).collect();
        let out: Vec<(SocketAddr, &[u8])> = payloads.iter().map(|p| (to, &p[..])).collect();
        assert_eq!(a.send_batch(&out).unwrap(), 200);
        let mut seen = Vec::new();
        let end = Instant::now() + Duration::from_secs(5);
        while seen.len() < 200 && Instant::now() < end {
            b.recv_each(Some(end), |item| {
                if let Incoming::Datagram { data, .. } = item {
                    seen.push(u64::from_le_bytes(data.try_into().unwrap()));
                }
            })
            .unwrap();
        }
        assert_eq!(seen, (0..200).collect::<Vec<_>>(), "{backend:?}");
        if backend == Backend::Uring {
            assert!(b.stats().recv_rearms >= 2, "{:?}", b.stats());
        }
    }
}

#[test]
fn deadline_returns_timed_out_and_waker_interrupts() {
    for backend in BACKENDS {
        let mut a = io::open(local(), backend, &small_opts()).unwrap();
        let start = Instant::now();
        let s = a
            .recv_each(Some(start + Duration::from_millis(50)), |_| {})
            .unwrap();
        assert!(s.timed_out && s.datagrams == 0, "{backend:?} {s:?}");
        assert!(
            start.elapsed() >= Duration::from_millis(45),
            "{backend:?} returned early"
        );

        let waker = a.waker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            waker.wake();
        });
        let mut woken = false;
        let end = Instant::now() + Duration::from_secs(5);
        while !woken && Instant::now() < end {
            woken = a.recv_each(Some(end), |_| {}).unwrap().woken;
        }
        assert!(woken, "{backend:?}");
        t.join().unwrap();
    }
}

#[test]
fn icmp_port_unreachable_is_a_path_error_for_that_destination() {
    for backend in BACKENDS {
        let mut a = io::open(local(), backend, &small_opts()).unwrap();
        // A port nobody listens on: bind, note the port, close.
        let closed = UdpSocket::bind(local()).unwrap().local_addr().unwrap();
        assert_eq!(a.send_batch(&[(closed, b"hello".as_slice())]).unwrap(), 1);
        let mut errors = Vec::new();
        let end = Instant::now() + Duration::from_secs(2);
        let mut calls = 0;
        while errors.is_empty() && Instant::now() < end {
            calls += 1;
            a.recv_each(Some(end), |item| {
                if let Incoming::PathError(e) = item {
                    errors.push(e);
                }
            })
            .unwrap();
        }
        assert_eq!(errors.len(), 1, "{backend:?}");
        assert_eq!(errors[0].dest, closed);
        assert_eq!(errors[0].errno, libc_econnrefused());
        assert!(errors[0].is_unreachable());
        assert!(calls < 10, "{backend:?} spun {calls} times");
        // Nothing more is pending: the next call times out instead of spinning.
        let s = a
            .recv_each(Some(Instant::now() + Duration::from_millis(30)), |_| {})
            .unwrap();
        assert!(s.timed_out, "{backend:?} {s:?}");
    }
}

fn libc_econnrefused() -> i32 {
    std::io::Error::from(std::io::ErrorKind::ConnectionRefused)
        .raw_os_error()
        .unwrap_or(111)
}

#[test]
fn oversized_datagrams_are_dropped_and_counted() {
    for backend in BACKENDS {
        let opts = IoOptions {
            max_datagram_bytes: 100,
            ..small_opts()
        };
        let mut a = io::open(local(), backend, &small_opts()).unwrap();
        let mut b = io::open(local(), backend, &opts).unwrap();
        let to = b.local_addr().unwrap();
        let big = [7u8; 500];
        let small = [9u8; 50];
        a.send_batch(&[(to, &big[..]), (to, &small[..])]).unwrap();
        let got = recv_all(&mut b, 1);
        assert_eq!(got.len(), 1, "{backend:?}");
        assert_eq!(got[0].1, small.to_vec());
        assert_eq!(b.stats().rx_truncated, 1, "{backend:?}");
    }
}

#[test]
fn backend_names_parse() {
    assert_eq!("uring".parse::<Backend>().unwrap(), Backend::Uring);
    assert_eq!("MMSG".parse::<Backend>().unwrap(), Backend::Mmsg);
    assert_eq!("auto".parse::<Backend>().unwrap(), Backend::Auto);
    assert!("epoll".parse::<Backend>().is_err());
}

#[test]
fn a_link_io_moves_to_another_thread_before_first_use() {
    for backend in BACKENDS {
        let mut a = io::open(local(), backend, &small_opts()).unwrap();
        let b = io::open(local(), backend, &small_opts()).unwrap();
        let to = b.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let mut b = b;
            recv_all(&mut b, 3).len()
        });
        std::thread::sleep(Duration::from_millis(20));
        for _ in 0..3 {
            a.send_batch(&[(to, b"x".as_slice())]).unwrap();
        }
        assert_eq!(handle.join().unwrap(), 3, "{backend:?}");
    }
}
