//! totemd: the cluster communication daemon.
//!
//! Modes:
//! * `totemd -t [-c FILE] [--node NAME]` checks a corosync.conf and exits, as `corosync -t` does:
//!   warnings and errors on stderr as `FILE:LINE:COL: message`, exit 0 when the file is usable,
//!   1 when it is not (2 for a bad command line).
//! * `totemd -f ...` runs the daemon; not built yet (issue 5, later parts).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use totemd::config::{self, Located, SystemResolver};

/// Where the config is read from by default (the issue: defaults under /etc/totemd).
const CONFIG_PATH_DEFAULT: &str = "/etc/totemd/corosync.conf";

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
    /// The control socket clients connect to.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.test_config {
        return check_config(&cli.config, cli.node.as_deref());
    }
    eprintln!("totemd: running the daemon is not built yet; use -t to check a configuration");
    ExitCode::FAILURE
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
