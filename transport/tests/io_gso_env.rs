//! `TOTEM_GSO` turns UDP GSO/GRO off for the process. A test binary of its own: the variable is
//! process-wide and would change the other tests' sockets.
#![allow(clippy::unwrap_used)] // tests may panic on unexpected errors

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use totem_transport::io::{self, Backend, Incoming, IoOptions, OFFLOAD_ENV_VAR};

#[test]
fn totem_gso_off_turns_offload_off_and_unknown_values_are_refused() {
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let opts = IoOptions {
        recv_buffers: 64,
        ..IoOptions::default()
    };
    for backend in [Backend::Uring, Backend::Mmsg] {
        std::env::set_var(OFFLOAD_ENV_VAR, "on");
        let on = io::open(local, backend, &opts).unwrap();
        assert!(on.offload().gso && on.offload().gro, "{backend:?}");
        assert!(on.options().udp_offload);

        std::env::set_var(OFFLOAD_ENV_VAR, "off");
        let mut a = io::open(local, backend, &opts).unwrap();
        let mut b = io::open(local, backend, &opts).unwrap();
        assert!(!a.offload().gso && !a.offload().gro, "{backend:?}");
        assert!(!a.options().udp_offload, "the options say what runs");
        let to = b.local_addr().unwrap();
        let data = [7u8; 1000];
        let batch: Vec<(SocketAddr, &[u8])> = (0..32).map(|_| (to, &data[..])).collect();
        assert_eq!(a.send_batch(&batch).unwrap(), 32);
        let mut got = 0;
        let end = Instant::now() + Duration::from_secs(5);
        while got < 32 && Instant::now() < end {
            b.recv_each(Some(end), |item| {
                if let Incoming::Datagram { data, .. } = item {
                    assert_eq!(data.len(), 1000);
                    got += 1;
                }
            })
            .unwrap();
        }
        assert_eq!(got, 32, "{backend:?}");
        assert_eq!(a.stats().tx_gso_runs, 0, "{backend:?}");
        assert_eq!(b.stats().rx_gro_receives, 0, "{backend:?}");

        std::env::set_var(OFFLOAD_ENV_VAR, "sometimes");
        let err = io::open(local, backend, &opts).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    }
    std::env::remove_var(OFFLOAD_ENV_VAR);
}
