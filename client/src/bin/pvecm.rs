//! `pvecm`: the Proxmox VE cluster manager's command set against totemd (REFERENCE.md §4.1).
//! Status commands ask the local daemon over its control socket; `apiver` and `keygen` need no
//! daemon.
#![forbid(unsafe_code)]

use std::io::{BufRead, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};
use totem_client::cluster_setup::{
    self, ClusterPaths, NewCluster, CONFIG_DIR_DEFAULT, CONFIG_DIR_ENV, STATE_DIR_DEFAULT,
    STATE_DIR_ENV,
};
use totem_client::format;
use totem_client::join::{self, JoinReply, JoinRequest, JoinSecret, SecretFile};
use totem_client::keygen::write_authkey;
use totem_client::link_spec::LinkSpec;
use totem_client::proto::{ConfigChange, ConfigCommitted, ErrorReply, Request, Response};
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

    /// Directory of corosync.conf, authkey and the join secret.
    #[arg(long, global = true, env = CONFIG_DIR_ENV, default_value = CONFIG_DIR_DEFAULT, value_name = "DIR")]
    config_dir: PathBuf,

    /// State directory of the local totemd (ring sequence; log and pid of a daemon pvecm starts).
    #[arg(long, global = true, env = STATE_DIR_ENV, default_value = STATE_DIR_DEFAULT, value_name = "DIR")]
    state_dir: PathBuf,

    /// This node's name in the nodelist (default: the host name).
    #[arg(long, global = true, env = "TOTEMD_NODE_NAME", value_name = "NAME")]
    node_name: Option<String>,

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

/// Lifetime of the join secret `pvecm create` issues.
const SECRET_LIFETIME_SECS: u64 = join::SECRET_LIFETIME_SECS_DEFAULT;
/// How long `pvecm add` waits for its new daemon to reach quorum.
const ADD_QUORUM_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `pvecm add` waits for the TCP connection to the member.
const JOIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Environment variable giving `pvecm add` the join secret without a prompt.
const JOIN_SECRET_ENV: &str = "TOTEMD_JOIN_SECRET";

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
        #[arg(long, default_value_t = cluster_setup::TOKEN_COEFFICIENT_MS_DEFAULT)]
        token_coefficient: u32,
        /// Write the files but do not start totemd.
        #[arg(long)]
        no_start: bool,
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
        /// Cluster fingerprint `pvecm create` printed: the join is refused if the cluster's
        /// differs (checked before anything is written).
        #[arg(long)]
        fingerprint: Option<String>,
        /// Write the files but do not start totemd.
        #[arg(long)]
        no_start: bool,
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
        Command::Create {
            clustername,
            links,
            nodeid,
            votes,
            token_coefficient,
            no_start,
        } => create(
            cli,
            clustername,
            links,
            *nodeid,
            *votes,
            *token_coefficient,
            *no_start,
        ),
        Command::Add {
            hostname,
            links,
            nodeid,
            votes,
            force,
            fingerprint,
            no_start,
        } => add(
            cli,
            hostname,
            links,
            *nodeid,
            *votes,
            *force,
            fingerprint.as_deref(),
            *no_start,
        ),
        Command::Addnode {
            node,
            links,
            nodeid,
            votes,
            force,
        } => {
            let links = link_list(links);
            if links.is_empty() {
                return Err(fail(
                    "pvecm addnode: give the new node's address with --link0".into(),
                ));
            }
            let change = ConfigChange::AddNode {
                name: node.clone(),
                nodeid: *nodeid,
                votes: *votes,
                links: links
                    .iter()
                    .map(|(l, s)| (*l, s.address.to_string()))
                    .collect(),
                force: *force,
            };
            let done = change_config(cli, change)?;
            report_commit(
                json,
                &format!(
                    "added node '{node}' with node id {} (config_version {})",
                    done.nodeid.unwrap_or(0),
                    done.config_version
                ),
                &done,
            )
        }
        Command::Delnode { node } => {
            let done = change_config(cli, ConfigChange::DelNode { node: node.clone() })?;
            report_commit(
                json,
                &format!(
                    "removed node '{node}' from the cluster (config_version {})",
                    done.config_version
                ),
                &done,
            )
        }
        Command::Qdevice(QdeviceCommand::Setup {
            address,
            network: _,
            force,
        }) => {
            let change = ConfigChange::QdeviceSetup {
                host: address.clone(),
                force: *force,
            };
            let done = change_config(cli, change)?;
            report_commit(
                json,
                &format!(
                    "quorum.device (model net, host {address}) written cluster-wide \
                     (config_version {}); restart totemd on every node to start its qdevice \
                     client (a live reload does not start it)",
                    done.config_version
                ),
                &done,
            )
        }
        Command::Qdevice(QdeviceCommand::Remove) => {
            let done = change_config(cli, ConfigChange::QdeviceRemove)?;
            report_commit(
                json,
                &format!(
                    "quorum.device removed (config_version {})",
                    done.config_version
                ),
                &done,
            )
        }
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

/// `--linkN` options in link order.
fn link_list(links: &Links) -> Vec<(u8, LinkSpec)> {
    [
        &links.link0,
        &links.link1,
        &links.link2,
        &links.link3,
        &links.link4,
        &links.link5,
        &links.link6,
        &links.link7,
    ]
    .into_iter()
    .zip(0u8..)
    .filter_map(|(spec, n)| spec.as_ref().map(|s| (n, *s)))
    .collect()
}

fn paths(cli: &Cli) -> ClusterPaths {
    ClusterPaths::new(
        &cli.config_dir,
        &cli.state_dir,
        socket_path(cli.socket.as_deref()),
    )
}

fn node_name(cli: &Cli) -> Result<String, Failure> {
    match &cli.node_name {
        Some(n) => Ok(n.clone()),
        None => cluster_setup::local_hostname()
            .map_err(|e| fail(format!("cannot read the host name: {e}"))),
    }
}

/// The links given, or pvecm's default: link0 = the address the host name resolves to.
fn links_or_default(links: &Links, name: &str) -> Result<Vec<(u8, LinkSpec)>, Failure> {
    let given = link_list(links);
    if !given.is_empty() {
        return Ok(given);
    }
    let address = cluster_setup::resolve_host(name).map_err(|e| {
        fail(format!(
            "cannot find this node's address ({e}); give it with --link0"
        ))
    })?;
    Ok(vec![(
        0,
        LinkSpec {
            address,
            priority: None,
        },
    )])
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[allow(clippy::too_many_arguments)]
fn create(
    cli: &Cli,
    cluster_name: &str,
    links: &Links,
    nodeid: Option<u32>,
    votes: Option<u32>,
    token_coefficient_ms: u32,
    no_start: bool,
) -> Result<u8, Failure> {
    let paths = paths(cli);
    if paths.config.exists() {
        return Err(fail(format!(
            "cluster config '{}' already exists",
            paths.config.display()
        )));
    }
    if paths.authkey.exists() {
        return Err(fail(format!(
            "authentication key '{}' already exists",
            paths.authkey.display()
        )));
    }
    let name = node_name(cli)?;
    let links = links_or_default(links, &name)?;
    let link_port_base = match std::env::var(cluster_setup::LINK_PORT_BASE_ENV) {
        Ok(v) => Some(v.parse::<u16>().map_err(|_| {
            fail(format!(
                "{}={v:?} is not a port",
                cluster_setup::LINK_PORT_BASE_ENV
            ))
        })?),
        Err(_) => None,
    };
    let text = cluster_setup::create_config_text(&NewCluster {
        cluster_name,
        node_name: &name,
        nodeid: nodeid.unwrap_or(1),
        votes: votes.unwrap_or(1),
        links: &links,
        token_coefficient_ms,
        link_port_base,
    });
    std::fs::create_dir_all(&cli.config_dir)
        .map_err(|e| fail(format!("{}: {e}", cli.config_dir.display())))?;
    write_authkey(&paths.authkey).map_err(|e| fail(e.to_string()))?;
    cluster_setup::write_file_atomic(&paths.config, text.as_bytes(), 0o644)
        .map_err(|e| fail(format!("writing {}: {e}", paths.config.display())))?;
    let secret = SecretFile {
        secret: JoinSecret::generate().map_err(|e| fail(e.to_string()))?,
        expires_unix: unix_now() + SECRET_LIFETIME_SECS,
    };
    secret
        .write(&paths.secret)
        .map_err(|e| fail(format!("writing {}: {e}", paths.secret.display())))?;
    let authkey = std::fs::read(&paths.authkey)
        .map_err(|e| fail(format!("reading {}: {e}", paths.authkey.display())))?;
    let fingerprint = join::fingerprint(&authkey);
    let daemon = if no_start {
        "totemd not started (--no-start)".to_owned()
    } else {
        cluster_setup::start_or_reload_daemon(&paths, &name).map_err(fail)?
    };
    let address = links
        .first()
        .map(|(_, s)| s.address.to_string())
        .unwrap_or_default();
    if cli.output_format == OutputFormat::Json {
        let doc = serde_json::json!({
            "cluster_name": cluster_name,
            "config": paths.config,
            "authkey": paths.authkey,
            "join_secret": secret.secret.to_text(),
            "join_secret_expires_unix": secret.expires_unix,
            "fingerprint": fingerprint,
            "join_address": address,
            "join_port": join::join_port(),
            "daemon": daemon,
        });
        print_out(&doc.to_string())?;
    } else {
        print_out(&format!(
            "Writing corosync config to {}\nWriting corosync key to {}\n{daemon}\n\n\
             To add a node, run on it:\n  pvecm add {address} --fingerprint {fingerprint}\n\
             and enter the join secret when asked (or set {JOIN_SECRET_ENV}).\n\
             Join secret:  {}\n  valid for {} minutes, revoked after {} failed attempts\n\
             Fingerprint:  {fingerprint}",
            paths.config.display(),
            paths.authkey.display(),
            secret.secret.to_text(),
            SECRET_LIFETIME_SECS / 60,
            join::FAILED_ATTEMPTS_MAX,
        ))?;
    }
    Ok(0)
}

fn read_secret(host: &str) -> Result<JoinSecret, Failure> {
    let text = match std::env::var(JOIN_SECRET_ENV) {
        Ok(t) => t,
        Err(_) => {
            eprint!("Please enter the join secret of '{host}': ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| fail(format!("reading the join secret: {e}")))?;
            line
        }
    };
    JoinSecret::parse(&text).map_err(|e| fail(e.to_string()))
}

fn normalize_fingerprint(fp: &str) -> String {
    fp.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn add(
    cli: &Cli,
    hostname: &str,
    links: &Links,
    nodeid: Option<u32>,
    votes: Option<u32>,
    force: bool,
    fingerprint: Option<&str>,
    no_start: bool,
) -> Result<u8, Failure> {
    let paths = paths(cli);
    if let Some(existing) = paths.existing_state() {
        if !force {
            return Err(fail(format!(
                "this host already holds cluster state ({} exists); use --force to overwrite it",
                existing.display()
            )));
        }
    }
    if cluster_setup::daemon_running(&paths.socket) && !force {
        return Err(fail(
            "a totemd is already running on this host; use --force to join anyway".into(),
        ));
    }
    let name = node_name(cli)?;
    let links = links_or_default(links, &name)?;
    let secret = read_secret(hostname)?;
    let port = join::join_port();
    let addr = (hostname, port)
        .to_socket_addrs()
        .map_err(|e| fail(format!("cannot resolve {hostname}: {e}")))?
        .next()
        .ok_or_else(|| fail(format!("{hostname} has no address")))?;
    let mut stream = TcpStream::connect_timeout(&addr, JOIN_CONNECT_TIMEOUT)
        .map_err(|e| fail(format!("cannot reach the join endpoint {addr}: {e}")))?;
    let request = JoinRequest {
        name: name.clone(),
        nodeid,
        votes,
        links: links
            .iter()
            .map(|(l, s)| (*l, s.address.to_string()))
            .collect(),
        force,
    };
    let reply = join::join(&mut stream, &secret, &request)
        .map_err(|e| fail(format!("unable to join the cluster via {addr}: {e}")))?;
    let (nodeid, config, authkey) = match reply {
        JoinReply::Accepted {
            nodeid,
            config,
            authkey,
        } => (nodeid, config, authkey),
        JoinReply::Refused(why) => return Err(fail(format!("unable to add node: {why}"))),
    };
    if let Some(expected) = fingerprint {
        let actual = join::fingerprint(&authkey);
        if normalize_fingerprint(expected) != normalize_fingerprint(&actual) {
            return Err(fail(format!(
                "fingerprint mismatch: the cluster at {hostname} has {actual}, not {expected}; \
                 nothing was written (note: {hostname} has already added '{name}' to its \
                 nodelist; remove it there with `pvecm delnode {name}`)"
            )));
        }
    }
    std::fs::create_dir_all(&cli.config_dir)
        .map_err(|e| fail(format!("{}: {e}", cli.config_dir.display())))?;
    cluster_setup::write_file_atomic(&paths.authkey, &authkey, 0o400)
        .map_err(|e| fail(format!("writing {}: {e}", paths.authkey.display())))?;
    cluster_setup::write_file_atomic(&paths.config, config.as_bytes(), 0o644)
        .map_err(|e| fail(format!("writing {}: {e}", paths.config.display())))?;
    let mut lines = vec![format!(
        "node '{name}' accepted with node id {nodeid}; wrote {} and {}",
        paths.config.display(),
        paths.authkey.display()
    )];
    if !no_start {
        lines.push(cluster_setup::start_or_reload_daemon(&paths, &name).map_err(fail)?);
        if !cluster_setup::wait_for_quorum(&paths.socket, ADD_QUORUM_TIMEOUT) {
            return Err(fail(format!(
                "waiting for quorum... timed out after {} s",
                ADD_QUORUM_TIMEOUT.as_secs()
            )));
        }
        lines.push("waiting for quorum...OK".into());
    }
    lines.push(format!("successfully added node '{name}' to cluster."));
    if cli.output_format == OutputFormat::Json {
        let doc = serde_json::json!({ "node": name, "nodeid": nodeid, "config": paths.config });
        print_out(&doc.to_string())?;
    } else {
        print_out(&lines.join("\n"))?;
    }
    Ok(0)
}

/// Sends a configuration change to the local daemon and waits for its commit.
fn change_config(cli: &Cli, change: ConfigChange) -> Result<ConfigCommitted, Failure> {
    if !paths(cli).config.exists()
        && !cluster_setup::daemon_running(&socket_path(cli.socket.as_deref()))
    {
        return Err(fail(format!(
            "Error: Corosync config '{}' does not exist - is this node part of a cluster?",
            paths(cli).config.display()
        )));
    }
    match connect(cli)?.request(Request::ChangeConfig(change)) {
        Ok(Response::ConfigCommitted(done)) => Ok(done),
        Ok(other) => Err(fail(format!("unexpected answer from totemd: {other:?}"))),
        Err(ClientError::Daemon(ErrorReply::InvalidParam { detail }))
        | Err(ClientError::Daemon(ErrorReply::Failed { detail })) => Err(fail(detail)),
        Err(e) => Err(e.into()),
    }
}

fn report_commit(json: bool, text: &str, done: &ConfigCommitted) -> Result<u8, Failure> {
    if json {
        let doc = serde_json::json!({
            "config_version": done.config_version,
            "nodeid": done.nodeid,
            "message": text,
        });
        print_out(&doc.to_string())?;
    } else {
        print_out(text)?;
    }
    Ok(0)
}
