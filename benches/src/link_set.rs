//! The whole transport: two link sets (nodes 1 and 2) with one link over loopback; an application
//! thread sends one message per `send` (retrying on back-pressure) and another receives.

use std::time::Duration;

use totem_transport::heartbeat::HeartbeatConfig;
use totem_transport::io::Backend;
use totem_transport::linkset::{
    Dest, Event, FrameCrypto, LinkConfig, LinkSet, LinkSetConfig, PeerConfig,
};

use crate::{Run, POLL};

const CLUSTER: &str = "bench";
/// Link-up takes pong_count + 1 pongs: fast pings so the benchmark starts within a second.
const PING_INTERVAL: Duration = Duration::from_millis(100);
const PING_TIMEOUT: Duration = Duration::from_millis(2000);
const LINK_UP_LIMIT: Duration = Duration::from_secs(10);

fn config(node: u32, backend: Backend, encrypted: bool) -> anyhow::Result<LinkSetConfig> {
    let mut cfg = LinkSetConfig::new(node, CLUSTER);
    cfg.backend = backend;
    cfg.heartbeat = HeartbeatConfig {
        ping_interval: PING_INTERVAL,
        ping_timeout: PING_TIMEOUT,
        ..cfg.heartbeat
    };
    cfg.links = vec![LinkConfig {
        link: 0,
        bind: "127.0.0.1:0".parse()?,
        priority: 1,
        heartbeat: None,
        cpu: None,
    }];
    if encrypted {
        // A fixed bench authkey: both nodes must derive the same per-node frame keys.
        let key =
            totem_crypto::AuthKey::from_bytes(&[0x42; 256]).map_err(|e| anyhow::anyhow!("{e}"))?;
        let start = totem_crypto::NonceStart::random()?;
        cfg.crypto = Some(FrameCrypto::aes_gcm(&key, CLUSTER, 0, node, start));
    }
    Ok(cfg)
}

fn wait_up(set: &LinkSet) -> anyhow::Result<()> {
    let end = std::time::Instant::now() + LINK_UP_LIMIT;
    while std::time::Instant::now() < end {
        if set.status().iter().any(|s| s.connected) {
            return Ok(());
        }
        let _ = set.recv(Some(Duration::from_millis(20)));
    }
    anyhow::bail!("link did not come up within {LINK_UP_LIMIT:?}")
}

/// Starts two link sets, waits for the link, then the sender and receiver threads.
pub fn start(
    run: &Run,
    backend: Backend,
    payload: usize,
    encrypted: bool,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let a = LinkSet::start(config(1, backend, encrypted)?)?;
    let b = LinkSet::start(config(2, backend, encrypted)?)?;
    a.set_peers(vec![PeerConfig {
        node_id: 2,
        addrs: b.local_addrs(),
    }])?;
    b.set_peers(vec![PeerConfig {
        node_id: 1,
        addrs: a.local_addrs(),
    }])?;
    wait_up(&a)?;
    wait_up(&b)?;
    let receiver = {
        let run = run.clone();
        std::thread::spawn(move || {
            let mut pending = 0u64;
            while !run.stopped() {
                match b.recv(Some(POLL)) {
                    Some(Event::Message { data, .. }) => {
                        pending += 1;
                        b.recycle(data);
                        if pending == 64 {
                            run.count(pending);
                            pending = 0;
                        }
                    }
                    _ => {
                        run.count(pending);
                        pending = 0;
                    }
                }
            }
            b.shutdown();
        })
    };
    let sender = {
        let run = run.clone();
        std::thread::spawn(move || {
            let data = vec![0x5au8; payload];
            while !run.stopped() {
                if a.send(Dest::Node(2), &data).is_err() {
                    std::thread::yield_now(); // back-pressure: the reactor is behind
                }
                // Link events of the sender are not read; its event queue simply fills.
            }
            a.shutdown();
        })
    };
    Ok(vec![receiver, sender])
}
