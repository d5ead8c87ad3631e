//! A running node: reads the configuration, starts the link set (one reactor thread per link)
//! and a signal thread, and runs the core thread (Totem + votequorum + process groups + the
//! control socket) on the calling thread until SIGTERM.
//!
//! ```text
//! link reactors ──rx queues──▶ LinkSet::recv ─┐                 ┌─▶ LinkSet::send ─▶ reactors
//!                                             ▼                 │
//! control socket ◀──────────▶  core thread: Srp, Votequorum, ProcessGroups, client sessions
//! signal thread ──flags + waker──▶ core thread
//! ```

pub mod build;
pub mod confchange;
pub mod core;
pub mod framekey;
pub mod join;
pub mod qdevice;
pub mod ringseq;
pub mod status;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use mio::{Poll, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use totem_client::proto::{ClusterInfo, LinkMode};
use totem_core::quorum::Votequorum;
use totem_core::time::MonoTime;
use totem_core::totem::Srp;
use totem_transport::linkset::LinkSet;

use self::core::{Core, CoreParts, Flags, Reloaded, CONTROL_FIRST_TOKEN, WAKE};
use self::ringseq::RingSeqFile;
use self::status::StaticInfo;
use crate::config::model::{CryptoCipher, LinkMode as ConfLinkMode};
use crate::config::{self, find_local_node, Loaded, ResolvedNode, SystemResolver};
use crate::control::{AccessPolicy, ControlServer};

/// Where things are, from the command line.
#[derive(Clone, Debug)]
pub struct Options {
    /// corosync.conf.
    pub config: PathBuf,
    /// The authkey (corosync-keygen format).
    pub authkey: PathBuf,
    /// The control socket.
    pub socket: PathBuf,
    /// Directory for the persisted ring sequence and the crypto boot counter.
    pub state_dir: PathBuf,
    /// Which nodelist entry is this node, when several have local addresses.
    pub node: Option<String>,
    /// Group whose members may read status through the socket.
    pub read_group: Option<String>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration could not be loaded.
    #[error("{path}: {detail}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong, with line and column.
        detail: String,
    },
    /// Anything else, with what was being done.
    #[error("{0}")]
    Other(String),
}

fn other(what: &str, e: impl std::fmt::Display) -> StartError {
    StartError::Other(format!("{what}: {e}"))
}

/// Loads and checks the configuration file, logging its warnings.
pub fn load_config(path: &Path) -> Result<Loaded, StartError> {
    let loaded = config::load_file(path, &SystemResolver).map_err(|e| StartError::Config {
        path: path.display().to_string(),
        detail: e
            .problems()
            .into_iter()
            .map(|(pos, msg)| format!("{pos}: {msg}"))
            .collect::<Vec<_>>()
            .join("; "),
    })?;
    for w in &loaded.warnings {
        tracing::warn!("[CFG   ] {}: {w}", path.display());
    }
    Ok(loaded)
}

/// Addresses of the nodelist that this host can bind: on loopback all of 127.0.0.0/8 is local,
/// which `getifaddrs` would not list address by address.
pub fn bindable_addresses(nodes: &[ResolvedNode]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for node in nodes {
        for link in &node.links {
            let ip = link.addr.ip();
            if !out.contains(&ip) && UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok() {
                out.push(ip);
            }
        }
    }
    out
}

/// Runs the node until SIGTERM/SIGINT. Returns after leaving the ring cleanly.
pub fn run(opts: &Options) -> Result<(), StartError> {
    let loaded = load_config(&opts.config)?;
    // Before any thread starts, so that all inherit it.
    crate::sched::apply(&loaded.config.system).log();
    let local_addrs = bindable_addresses(&loaded.nodes);
    let local = find_local_node(&loaded.nodes, &local_addrs, opts.node.as_deref())
        .map_err(|e| other("choosing the local node", e))?
        .clone();
    let me = local.nodeid;
    let cluster_name = loaded.config.totem.cluster_name.clone().unwrap_or_default();
    tracing::info!(
        "[MAIN  ] totemd {} starting: node {} ({}), cluster {:?}",
        env!("CARGO_PKG_VERSION"),
        me,
        local.label(),
        cluster_name
    );

    let mut link_cfg = build::link_set_config(&loaded.config, &loaded.nodes, &local, &cluster_name)
        .map_err(|e| other("configuring links", e))?;
    if loaded.config.totem.effective_crypto().0 != CryptoCipher::None {
        let crypto = framekey::frame_crypto(&opts.authkey, &opts.state_dir, &cluster_name, me)
            .map_err(|e| other("crypto", e))?;
        link_cfg.crypto = Some(crypto);
    } else {
        tracing::warn!(
            "[MAIN  ] secauth is off: cluster traffic is neither encrypted nor authenticated"
        );
    }
    let links = Arc::new(LinkSet::start(link_cfg).map_err(|e| other("starting links", e))?);
    for (link, kind) in links.backends() {
        tracing::info!("[KNET  ] link {link} uses the {kind:?} I/O backend");
    }

    let origin = Instant::now();
    let ringseq = RingSeqFile::new(&opts.state_dir, me).map_err(|e| other("state directory", e))?;
    let last_seq = ringseq.load().map_err(|e| other("ring sequence", e))?;
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| other("random seed", e))?;
    let srp = Srp::new(
        build::totem_config(&loaded.config, &loaded.nodes),
        me,
        u64::from_le_bytes(seed),
        last_seq,
        MonoTime::ZERO,
    )
    .map_err(|e| other("totem configuration", e))?;
    let quorum = Votequorum::new(&build::quorum_config(&loaded.config, &loaded.nodes, me))
        .map_err(|e| other("quorum configuration", e))?;

    let poll = Poll::new().map_err(|e| other("poll", e))?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE).map_err(|e| other("waker", e))?);
    let policy = match &opts.read_group {
        Some(g) => AccessPolicy::with_read_group(g).map_err(|e| other("read group", e))?,
        None => AccessPolicy::root_only(),
    };
    let control = ControlServer::bind(&opts.socket, policy, poll.registry(), CONTROL_FIRST_TOKEN)
        .map_err(|e| other(&format!("control socket {}", opts.socket.display()), e))?;

    let flags = Arc::new(Flags::default());
    spawn_signal_thread(Arc::clone(&flags), Arc::clone(&waker))?;

    if let Some(link) = local.links.iter().min_by_key(|l| l.link) {
        let endpoint = join::JoinEndpoint {
            secret_file: opts
                .config
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join(totem_client::join::SECRET_FILE_NAME),
            authkey: opts.authkey.clone(),
            socket: opts.socket.clone(),
        };
        let addr = SocketAddr::new(link.addr.ip(), totem_client::join::join_port());
        if let Err(e) = endpoint.spawn(addr) {
            // The cluster runs without it; only `pvecm add` against this node is impossible.
            tracing::warn!("[JOIN  ] join endpoint on {addr} not started: {e}");
        }
    }

    let qdevice = match qdevice::QdeviceSettings::from_config(&loaded, me)
        .map_err(|e| other("quorum device", e))?
    {
        Some(settings) => Some(
            qdevice::QdeviceLink::start(settings, Arc::clone(&waker))
                .map_err(|e| other("quorum device", e))?,
        ),
        None => None,
    };
    let info = static_info(&loaded, me);
    let reloader = make_reloader(opts.config.clone(), loaded, me);
    let (core, poll) = Core::new(CoreParts {
        me,
        origin,
        srp,
        quorum,
        links: Arc::clone(&links),
        poll,
        waker: Arc::clone(&waker),
        control,
        flags,
        ringseq,
        info,
        reloader,
        config_path: opts.config.clone(),
        qdevice,
    })
    .map_err(|e| other("core", e))?;
    let result = core.run(poll).map_err(|e| other("core thread", e));
    if let Ok(links) = Arc::try_unwrap(links) {
        links.shutdown();
    }
    result
}

fn spawn_signal_thread(flags: Arc<Flags>, waker: Arc<Waker>) -> Result<(), StartError> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| other("signals", e))?;
    std::thread::Builder::new()
        .name("totemd-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    tracing::info!("[MAIN  ] SIGHUP: reloading the configuration");
                    flags.reload.store(true, Ordering::SeqCst);
                } else {
                    tracing::info!("[MAIN  ] signal {sig}: leaving the cluster");
                    flags.stop.store(true, Ordering::SeqCst);
                }
                let _ = waker.wake();
            }
        })
        .map_err(|e| other("signal thread", e))?;
    Ok(())
}

/// The parts of status answers that come from the configuration.
pub fn static_info(loaded: &Loaded, me: u32) -> StaticInfo {
    let t = &loaded.config.totem;
    let cluster = ClusterInfo {
        name: t.cluster_name.clone(),
        config_version: Some(t.config_version),
        transport: Some("knet".into()),
        secauth: Some(
            if t.effective_crypto().0 == CryptoCipher::None {
                "off"
            } else {
                "on"
            }
            .into(),
        ),
    };
    let nodes: BTreeMap<u32, (String, Vec<IpAddr>)> = loaded
        .nodes
        .iter()
        .map(|n| {
            let mut links = n.links.clone();
            links.sort_by_key(|l| l.link);
            (
                n.nodeid,
                (n.label(), links.iter().map(|l| l.addr.ip()).collect()),
            )
        })
        .collect();
    let local_links = loaded
        .nodes
        .iter()
        .find(|n| n.nodeid == me)
        .map(|n| n.links.iter().map(|l| (l.link, l.addr.ip())).collect())
        .unwrap_or_default();
    let priorities = loaded
        .config
        .link_numbers()
        .into_iter()
        .map(|l| (l, loaded.config.interface(l).knet_link_priority))
        .collect();
    StaticInfo {
        local: me,
        cluster,
        nodes,
        link_mode: match t.link_mode {
            ConfLinkMode::Passive => LinkMode::Passive,
            ConfLinkMode::Active => LinkMode::Active,
            ConfLinkMode::RoundRobin => LinkMode::RoundRobin,
        },
        local_links,
        priorities,
    }
}

/// The reload hook: re-reads the file, refuses an invalid one or one whose `config_version` is
/// not higher, and applies link and address changes to the link set.
fn make_reloader(path: PathBuf, running: Loaded, me: u32) -> core::Reloader {
    let mut running = running;
    Box::new(move |links: &LinkSet| {
        let new = config::load_file(&path, &SystemResolver).map_err(|e| {
            let detail: Vec<String> = e
                .problems()
                .into_iter()
                .map(|(pos, msg)| format!("{}:{pos}: {msg}", path.display()))
                .collect();
            detail.join("; ")
        })?;
        let (old_v, new_v) = (
            running.config.totem.config_version,
            new.config.totem.config_version,
        );
        if new_v <= old_v {
            return Err(format!(
                "config_version {new_v} is not higher than the running {old_v}"
            ));
        }
        if new.config.totem.cluster_name != running.config.totem.cluster_name {
            return Err("cluster_name cannot change while running".into());
        }
        let local = new
            .nodes
            .iter()
            .find(|n| n.nodeid == me)
            .ok_or_else(|| format!("node {me} is no longer in the nodelist"))?
            .clone();
        let name = new.config.totem.cluster_name.clone().unwrap_or_default();
        let wanted = build::link_set_config(&new.config, &new.nodes, &local, &name)
            .map_err(|e| e.to_string())?;
        let old_links: Vec<(u8, SocketAddr)> = links.local_addrs();
        let mut changes = Vec::new();
        for (link, addr) in &old_links {
            let keep = wanted
                .links
                .iter()
                .any(|l| l.link == *link && l.bind == *addr);
            if !keep {
                links.remove_link(*link).map_err(|e| e.to_string())?;
                changes.push(format!("link {link} removed"));
            }
        }
        for l in &wanted.links {
            let present = old_links.iter().any(|(n, a)| *n == l.link && *a == l.bind);
            if !present {
                links.add_link(l.clone()).map_err(|e| e.to_string())?;
                changes.push(format!("link {} added on {}", l.link, l.bind));
            }
        }
        links
            .set_peers(wanted.peers.clone())
            .map_err(|e| e.to_string())?;
        let votes_of = |l: &Loaded| {
            l.nodes
                .iter()
                .find(|n| n.nodeid == me)
                .map(|n| n.quorum_votes)
        };
        let local_votes = (votes_of(&new) != votes_of(&running))
            .then(|| votes_of(&new))
            .flatten();
        // An explicit quorum.expected_votes wins; otherwise it follows the nodelist's votes,
        // which `pvecm add`/`delnode` change (votequorum.5: computed from the nodelist).
        let expected_of = |l: &Loaded| {
            l.config
                .quorum
                .expected_votes
                .unwrap_or_else(|| l.nodes.iter().map(|n| n.quorum_votes).sum())
        };
        let expected_votes =
            (expected_of(&new) != expected_of(&running)).then(|| expected_of(&new));
        let info = static_info(&new, me);
        if changes.is_empty() {
            changes.push("no link changes".into());
        }
        let summary = format!("config_version {old_v} -> {new_v}: {}", changes.join(", "));
        running = new;
        Ok(Reloaded {
            info,
            expected_votes,
            local_votes,
            summary,
        })
    })
}
