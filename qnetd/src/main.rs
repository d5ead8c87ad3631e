//! totem-qnetd command line: corosync-qnetd's flags where they make sense (`-f -l -p -s -d -4 -6`),
//! plus `--authkey` for the secure channel of our own.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use totem_core::qdevice::timing::QNETD_PORT_DEFAULT;
use totem_core::qdevice::ServerConfig;
use totem_qnetd::channel::ChannelKey;
use totem_qnetd::runtime::{self, Options};

/// The quorum arbiter for totemd and corosync clusters (qdevice-net protocol, TLS off).
#[derive(Parser, Debug)]
#[command(name = "totem-qnetd", version)]
struct Args {
    /// Run in the foreground (always the case; accepted for corosync-qnetd compatibility).
    #[arg(short = 'f')]
    foreground: bool,
    /// Debug logging.
    #[arg(short = 'd')]
    debug: bool,
    /// Address to listen on (default: all addresses).
    #[arg(short = 'l', value_name = "ADDR")]
    listen: Option<IpAddr>,
    /// TCP port.
    #[arg(short = 'p', default_value_t = QNETD_PORT_DEFAULT)]
    port: u16,
    /// TLS: only `off` is supported (corosync-qnetd's NSS TLS is not implemented).
    #[arg(short = 's', default_value = "off")]
    tls: String,
    /// Prefer IPv4 when listening on all addresses.
    #[arg(short = '4')]
    ipv4: bool,
    /// Prefer IPv6 when listening on all addresses (the default).
    #[arg(short = '6')]
    ipv6: bool,
    /// Require the AES-256-GCM channel keyed from this authkey (corosync-keygen format) from
    /// every client; corosync-qdevice cannot connect then.
    #[arg(short = 'k', long = "authkey", value_name = "FILE")]
    authkey: Option<PathBuf>,
    /// Keep the partition that held the vote on an exact ffsplit tie (server default: off).
    #[arg(long)]
    keep_active_partition_tie_breaker: bool,
    /// Disable dead-peer detection (drop of clients silent for 1.5 heartbeats).
    #[arg(long)]
    no_dpd: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let level = if args.debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    if args.tls != "off" {
        bail!(
            "-s {}: TLS is not supported by totem-qnetd; use -s off (optionally with --authkey)",
            args.tls
        );
    }
    let authkey = match &args.authkey {
        None => None,
        Some(path) => {
            Some(ChannelKey::load(path).with_context(|| format!("loading {}", path.display()))?)
        }
    };
    let server = ServerConfig {
        dpd_enabled: !args.no_dpd,
        keep_active_partition_tie_breaker: args.keep_active_partition_tie_breaker,
    };
    let addrs: Vec<IpAddr> = match args.listen {
        Some(ip) => vec![ip],
        None if args.ipv4 => vec![IpAddr::from([0, 0, 0, 0])],
        None => vec![
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::from([0, 0, 0, 0]),
        ],
    };
    let mut last_error = None;
    for ip in addrs {
        let options = Options {
            listen: SocketAddr::new(ip, args.port),
            authkey: authkey.clone(),
            server,
        };
        match runtime::spawn(options) {
            Ok(running) => {
                running.wait();
                return Ok(());
            }
            Err(e) => {
                last_error = Some(
                    anyhow::Error::new(e).context(format!("listening on {ip} port {}", args.port)),
                )
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no address to listen on")))
}
