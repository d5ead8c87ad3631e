//! `pvecm`: the Proxmox VE cluster manager's command set against totemd (REFERENCE.md §4.1).
//! Status commands ask the local daemon over its control socket; `apiver` and `keygen` need no
//! daemon.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use totem_client::format;
use totem_client::keygen::write_authkey;
use totem_client::link_spec::LinkSpec;
use totem_client::proto::ErrorReply;
use totem_client::{socket_path, Client, ClientError};

/// The join API version pvecm reports (`JOIN_API_VERSION`, pve-cluster `Cluster/Setup.pm:24`).
const JOIN_API_VERSION: u32 = 1;

/// Exit status of a failed command (corosync-quorumtool's `EXIT_FAILURE`).
const EXIT_FAILURE: u8 = 1;

/// Longest cluster name pvecm accepts (`pvecm create`, maxLength 15, REFERENCE.md §4.1).
const MAX_CLUSTER_NAME_CHARS: usize = 15;

const PRIORITY_HELP: &str = "Link address and options: [address=]<IP>[,priority=<0-255>]. \
In passive link mode (the default) the link with the HIGHER priority value carries the traffic; \
links with equal priority are used in link-number order, the lower number first.";

#[derive(Parser, Debug)]
#[command(
    name = "pvecm",
    version,
    about = "Proxmox VE cluster manager for totemd",
    long_about = "Proxmox VE cluster manager for totemd: the pvecm command set and outputs, \
                  talking to the local totemd over its control socket."
)]
struct Cli {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    output_format: OutputFormat,

    /// Control socket of the local totemd.
    #[arg(long, global = true, env = "TOTEMD_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    /// corosync / pvecm text layouts.
    Text,
    /// JSON documents.
    Json,
}

/// `--link0` .. `--link7`.
#[derive(Args, Debug)]
struct Links {
    #[arg(long, help = PRIORITY_HELP, value_name = "LINK")]
    link0: Option<LinkSpec>,
    #[arg(long, help = PRIORITY_HELP, value_name = "LINK")]
    link1: Option<LinkSpec>,
    #[arg(long, help = PRIORITY_HELP, value_name = "LINK")]
    link2: Option<LinkSpec>,
    #[arg(long, help = PRIORITY_HELP, value_name = "LINK")]
    link3: Option<LinkSpec>,
    #[arg(long, help = PRIORITY_HELP, value_name = "LINK")]
    link4: Option<LinkSpec>,
    #[arg(long, help = PRIORITY_HELP, value_name = "LINK")]
    link5: Option<LinkSpec>,
    #[arg(long, help = PRIORITY_HELP, value_name = "LINK")]
    link6: Option<LinkSpec>,
    #[arg(long, help = PRIORITY_HELP, value_name = "LINK")]
    link7: Option<LinkSpec>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the join API version.
    Apiver,
    /// Generate a new cluster authentication key (256 random bytes, mode 0400).
    Keygen {
        /// Where to write the key; must not exist.
        filename: PathBuf,
    },
    /// Create a new cluster configuration.
    Create {
        /// Cluster name (up to 15 characters).
        #[arg(value_parser = parse_cluster_name)]
        clustername: String,
        #[command(flatten)]
        links: Links,
        /// Node id of this node (≥ 1).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        nodeid: Option<u32>,
        /// Votes of this node (≥ 1).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        votes: Option<u32>,
        /// Token coefficient in ms.
        #[arg(long, default_value_t = 125)]
        token_coefficient: u32,
    },
    /// Add the current node to an existing cluster.
    Add {
        /// Hostname or IP of an existing cluster member.
        hostname: String,
        #[command(flatten)]
        links: Links,
        /// Node id for this node.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        nodeid: Option<u32>,
        /// Votes for this node.
        #[arg(long)]
        votes: Option<u32>,
        /// Do not refuse a node that already holds cluster state.
        #[arg(long)]
        force: bool,
        /// Certificate SHA-256 fingerprint of the existing member.
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Add a node to the cluster configuration (internal use).
    Addnode {
        /// Name of the new node.
        node: String,
        #[command(flatten)]
        links: Links,
        /// Node id for the new node.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        nodeid: Option<u32>,
        /// Votes for the new node.
        #[arg(long)]
        votes: Option<u32>,
        /// Do not refuse an already known node.
        #[arg(long)]
        force: bool,
    },
    /// Remove a node from the cluster configuration.
    Delnode {
        /// Node name or address.
        node: String,
    },
    /// Display the local view of the cluster status (exit status 2 when not quorate).
    Status,
    /// Display the local view of the cluster nodes.
    Nodes,
    /// Display every link to every node: state, priority, active link, RTT.
    Links,
    /// Tell the cluster a new value of expected votes.
    Expected {
        /// Expected votes (≥ 1).
        #[arg(value_parser = clap::value_parser!(u32).range(1..))]
        expected: u32,
    },
    /// Manage the external quorum device.
    #[command(subcommand)]
    Qdevice(QdeviceCommand),
    /// Proxmox VE only: update node certificates.
    Updatecerts {
        #[arg(long)]
        force: bool,
        #[arg(long)]
        silent: bool,
        #[arg(long)]
        unmerge_known_hosts: bool,
    },
    /// Proxmox VE only: migration tunnel.
    Mtunnel {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        extra_args: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum QdeviceCommand {
    /// Set up the use of a quorum device.
    Setup {
        /// Address of the quorum device host.
        address: String,
        /// Network to use for the connection (CIDR).
        #[arg(long)]
        network: Option<String>,
        /// Overwrite an existing setup.
        #[arg(long)]
        force: bool,
    },
    /// Remove a configured quorum device.
    Remove,
}

/// A failure to report: message for stderr and exit status.
struct Failure {
    message: String,
    code: u8,
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        Failure {
            message: error.to_string(),
            code: EXIT_FAILURE,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("{}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Runs the command; returns the exit status.
fn run(cli: &Cli) -> Result<u8, Failure> {
    let json = cli.output_format == OutputFormat::Json;
    match &cli.command {
        Command::Apiver => {
            print_out(&JOIN_API_VERSION.to_string())?;
            Ok(0)
        }
        Command::Keygen { filename } => {
            write_authkey(filename).map_err(|error| fail(error.to_string()))?;
            Ok(0)
        }
        Command::Status => {
            let status = connect(cli)?.status()?;
            let text = if json {
                format::status_json(&status).to_string()
            } else {
                format::pvecm_status(&status, &format::ctime(chrono::Local::now().naive_local()))
            };
            print_out(&text)?;
            Ok(format::status_exit_code(&status))
        }
        Command::Nodes => {
            let membership = connect(cli)?.nodes()?;
            let text = if json {
                format::nodes_json(&membership).to_string()
            } else {
                format::pvecm_nodes(&membership)
            };
            print_out(&text)?;
            Ok(0)
        }
        Command::Links => {
            let links = connect(cli)?.links()?;
            let text = if json {
                format::links_json(&links).to_string()
            } else {
                format::pvecm_links(&links)
            };
            print_out(&text)?;
            Ok(0)
        }
        Command::Expected { expected } => {
            match connect(cli)?.set_expected_votes(*expected) {
                Ok(()) => Ok(0),
                // corosync-quorumtool's wording for the refusal (REFERENCE.md §3.3).
                Err(ClientError::Daemon(ErrorReply::InvalidParam { .. })) => Err(fail(
                    "Unable to set expected votes: CS_ERR_INVALID_PARAM".to_owned(),
                )),
                Err(error) => Err(fail(format!("Unable to set expected votes: {error}"))),
            }
        }
        Command::Create { .. }
        | Command::Add { .. }
        | Command::Addnode { .. }
        | Command::Delnode { .. }
        | Command::Qdevice(_) => Err(fail(format!(
            "pvecm {}: not available yet in this totemd build (cluster configuration changes \
             through the daemon are still to come)",
            command_name(&cli.command)
        ))),
        Command::Updatecerts { .. } | Command::Mtunnel { .. } => Err(fail(format!(
            "pvecm {}: needs Proxmox VE (pmxcfs, node certificates, guest migration); totemd \
             provides cluster communication only",
            command_name(&cli.command)
        ))),
    }
}

fn connect(cli: &Cli) -> Result<Client, Failure> {
    Ok(Client::connect(socket_path(cli.socket.as_deref()))?)
}

fn fail(message: String) -> Failure {
    Failure {
        message,
        code: EXIT_FAILURE,
    }
}

/// Writes `text` to stdout, adding a final newline if it lacks one.
fn print_out(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    let result = stdout.write_all(text.as_bytes()).and_then(|()| {
        if text.ends_with('\n') {
            Ok(())
        } else {
            stdout.write_all(b"\n")
        }
    });
    result
        .and_then(|()| stdout.flush())
        .map_err(|error| fail(format!("writing output: {error}")))
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Apiver => "apiver",
        Command::Keygen { .. } => "keygen",
        Command::Create { .. } => "create",
        Command::Add { .. } => "add",
        Command::Addnode { .. } => "addnode",
        Command::Delnode { .. } => "delnode",
        Command::Status => "status",
        Command::Nodes => "nodes",
        Command::Links => "links",
        Command::Expected { .. } => "expected",
        Command::Qdevice(QdeviceCommand::Setup { .. }) => "qdevice setup",
        Command::Qdevice(QdeviceCommand::Remove) => "qdevice remove",
        Command::Updatecerts { .. } => "updatecerts",
        Command::Mtunnel { .. } => "mtunnel",
    }
}

/// pvecm's cluster name rule: 1 to 15 characters, a pve-node name (letters, digits, `-`, not
/// starting or ending with `-`).
fn parse_cluster_name(name: &str) -> Result<String, String> {
    let valid_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if name.is_empty()
        || name.chars().count() > MAX_CLUSTER_NAME_CHARS
        || !valid_chars
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(format!(
            "invalid cluster name '{name}': 1 to {MAX_CLUSTER_NAME_CHARS} letters, digits or \
             '-', not starting or ending with '-'"
        ));
    }
    Ok(name.to_owned())
}
