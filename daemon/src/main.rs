//! totemd: the cluster communication daemon.
//!
//! Modes:
//! * `totemd -t [-c FILE] [--node NAME]` checks a corosync.conf and exits, as `corosync -t` does:
//!   warnings and errors on stderr as `FILE:LINE:COL: message`, exit 0 when the file is usable,
//!   1 when it is not (2 for a bad command line).
//! * `totemd -f -c FILE [--authkey FILE] [--socket PATH] [--node NAME]` runs the daemon in the
//!   foreground until SIGTERM (systemd runs it this way, `Type=notify`). Without `-f` it runs in
//!   the foreground too: daemonizing is systemd's job.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use totemd::config::{self, Located, SystemResolver};
use totemd::node;

/// Where the config is read from by default (the issue: defaults under /etc/totemd).
const CONFIG_PATH_DEFAULT: &str = "/etc/totemd/corosync.conf";
/// The authkey by default (corosync: /etc/corosync/authkey).
const AUTHKEY_PATH_DEFAULT: &str = "/etc/totemd/authkey";
/// Where the persisted ring sequence lives (corosync: /var/lib/corosync).
const STATE_DIR_DEFAULT: &str = "/var/lib/totemd";

#[derive(Debug, Parser)]
#[command(
    name = "totemd",
    version,
    about = "Cluster communication daemon (corosync 3 compatible)"
)]
struct Cli {
    /// corosync.conf to read.
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = CONFIG_PATH_DEFAULT)]
    config: PathBuf,
    /// Check the configuration and exit (like `corosync -t`).
    #[arg(short = 't', long = "test-config")]
    test_config: bool,
    /// Stay in the foreground.
    #[arg(short = 'f', long = "foreground")]
    foreground: bool,
    /// This host's node name in the nodelist, when several nodes have local addresses.
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// The shared key (corosync-keygen format).
    #[arg(long, value_name = "FILE")]
    authkey: Option<PathBuf>,
    /// The control socket clients connect to (also `TOTEMD_SOCKET`).
    #[arg(long, value_name = "PATH", env = "TOTEMD_SOCKET")]
    socket: Option<PathBuf>,
    /// Directory for state that must survive restarts (the ring sequence, the crypto boot counter).
    #[arg(long, value_name = "DIR", default_value = STATE_DIR_DEFAULT)]
    state_dir: PathBuf,
    /// Members of this group may read status through the control socket (root may do all).
    #[arg(long, value_name = "GROUP")]
    read_group: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.test_config {
        return check_config(&cli.config, cli.node.as_deref());
    }
    init_logging();
    let opts = node::Options {
        config: cli.config,
        authkey: cli
            .authkey
            .unwrap_or_else(|| PathBuf::from(AUTHKEY_PATH_DEFAULT)),
        socket: totem_client::socket_path(cli.socket.as_deref()),
        state_dir: cli.state_dir,
        node: cli.node,
        read_group: cli.read_group,
    };
    let _ = cli.foreground;
    match node::run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("[MAIN  ] {e}");
            eprintln!("totemd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr. Under systemd (`JOURNAL_STREAM` set) the journal adds timestamps itself, so
/// lines carry none; elsewhere they start with a timestamp. `RUST_LOG` picks levels (default info).
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().with_ansi(false).init();
    } else {
        builder.with_ansi(false).init();
    }
}

/// `-t`: load the file, print warnings and errors, exit 0 only when it can be used.
fn check_config(path: &Path, node: Option<&str>) -> ExitCode {
    let file = path.display().to_string();
    let loaded = match config::load_file(path, &SystemResolver) {
        Ok(loaded) => loaded,
        Err(error) => {
            for (pos, message) in error.problems() {
                eprintln!(
                    "{}",
                    Located {
                        file: &file,
                        pos,
                        message
                    }
                );
            }
            return ExitCode::FAILURE;
        }
    };
    for warning in &loaded.warnings {
        let message = format!("warning: {}", warning.message);
        eprintln!(
            "{}",
            Located {
                file: &file,
                pos: warning.pos,
                message
            }
        );
    }
    if let Some(name) = node {
        if !loaded.nodes.iter().any(|n| n.name.as_deref() == Some(name)) {
            eprintln!("{file}: --node {name}: no node of that name in the nodelist");
            return ExitCode::FAILURE;
        }
    }
    println!(
        "{file}: configuration is valid ({} nodes, links {:?})",
        loaded.nodes.len(),
        loaded.config.link_numbers()
    );
    ExitCode::SUCCESS
}
