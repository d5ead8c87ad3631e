//! The `pvecm` binary end to end: its outputs and exit codes against the fake daemon over a
//! real Unix socket, and the commands that need no daemon.

#[allow(dead_code)]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::fake_server::FakeServer;
use common::snapshots::State;
use totem_client::keygen::AUTHKEY_BYTES;

fn pvecm(socket: Option<&Path>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pvecm"));
    command.args(args).env_remove("TOTEMD_SOCKET");
    if let Some(socket) = socket {
        command.env("TOTEMD_SOCKET", socket);
    }
    command.output().expect("pvecm runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 output")
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(path).expect("fixture")
}

/// `text` with the value of its `Date:` line replaced, which is the time of the run.
fn without_date(text: &str) -> String {
    text.lines()
        .map(|line| {
            if line.starts_with("Date:             ") {
                "Date:             <now>"
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn status_prints_pvecm_layout_and_exits_2_when_not_quorate() {
    for (state, prefix) in State::ALL {
        let server = FakeServer::start(state);
        let output = pvecm(Some(&server.path), &["status"]);
        let header = "Cluster information\n-------------------\nName:             demo\nConfig Version:   3\nTransport:        knet\nSecure auth:      on\n\n";
        let expected = format!(
            "{header}{}",
            fixture(&format!("{prefix}.quorumtool-siH.txt"))
        );
        assert_eq!(
            without_date(&stdout(&output)),
            without_date(&expected),
            "{prefix}"
        );
        assert_eq!(
            output.status.code(),
            Some(i32::from(state.status_exit_code())),
            "{prefix}"
        );
    }
}

#[test]
fn nodes_prints_quorumtool_l() {
    let server = FakeServer::start(State::ThirdKilled);
    let output = pvecm(Some(&server.path), &["nodes"]);
    assert_eq!(stdout(&output), fixture("2of3-n3-killed.quorumtool-l.txt"));
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn links_prints_the_links_view() {
    let server = FakeServer::start(State::ThirdKilled);
    let socket = server.path.to_str().expect("UTF-8 path");
    let output = pvecm(None, &["links", "--socket", socket]);
    assert_eq!(stdout(&output), fixture("pvecm-links.2of3-n3-killed.txt"));
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn json_output_for_status_nodes_and_links() {
    let server = FakeServer::start(State::Alone);
    let output = pvecm(Some(&server.path), &["status", "--output-format", "json"]);
    assert_eq!(output.status.code(), Some(2));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(status["cluster"]["quorate"], false);
    assert_eq!(status["quorum"]["ring_id"], "1.15");

    let output = pvecm(Some(&server.path), &["--output-format", "json", "nodes"]);
    let nodes: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(nodes[0]["name"], "n1");

    let output = pvecm(Some(&server.path), &["links", "--output-format=json"]);
    let links: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(links["link_mode"], "passive");
}

#[test]
fn expected_reports_corosync_refusal() {
    let server = FakeServer::start(State::AllUp);
    let output = pvecm(Some(&server.path), &["expected", "1"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "Unable to set expected votes: CS_ERR_INVALID_PARAM\n"
    );
    let output = pvecm(Some(&server.path), &["expected", "3"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(server.expected_votes(), 3);
    let output = pvecm(Some(&server.path), &["expected", "0"]);
    assert_eq!(output.status.code(), Some(2), "clap refuses 0");
}

#[test]
fn a_stopped_daemon_gives_a_clear_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let socket = dir.path().join("totemd.sock");
    let output = pvecm(Some(&socket), &["status"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("is totemd running?"), "{message}");
    assert!(message.contains("totemd.sock"), "{message}");
}

#[test]
fn apiver_prints_the_join_api_version() {
    let output = pvecm(None, &["apiver"]);
    assert_eq!(stdout(&output), "1\n");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn keygen_writes_a_private_random_key_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let key = dir.path().join("authkey");
    let key_arg = key.to_str().expect("UTF-8 path");
    let output = pvecm(None, &["keygen", key_arg]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let metadata = std::fs::metadata(&key).expect("key written");
    assert_eq!(metadata.permissions().mode() & 0o777, 0o400);
    let first = std::fs::read(&key).expect("readable by its owner");
    assert_eq!(first.len(), AUTHKEY_BYTES);

    let output = pvecm(None, &["keygen", key_arg]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("already exists"));
    assert_eq!(std::fs::read(&key).expect("unchanged"), first);

    let other = dir.path().join("authkey2");
    let output = pvecm(None, &["keygen", other.to_str().expect("UTF-8 path")]);
    assert_eq!(output.status.code(), Some(0));
    assert_ne!(
        std::fs::read(&other).expect("written"),
        first,
        "keys are random"
    );
    let leftovers = std::fs::read_dir(dir.path()).expect("listable").count();
    assert_eq!(leftovers, 2, "no temporary files left behind");
}

#[test]
fn help_states_the_real_priority_rule() {
    let output = pvecm(None, &["create", "--help"]);
    let help = stdout(&output);
    assert!(help.contains("HIGHER priority value"), "{help}");
    assert!(!help
        .to_lowercase()
        .contains("lower value means higher priority"));
}

#[test]
fn link_options_and_cluster_names_are_validated() {
    let output = pvecm(
        None,
        &["create", "demo", "--link0", "10.0.0.1,priority=256"],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("invalid link priority"));
    let output = pvecm(None, &["create", "a-name-that-is-too-long"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("invalid cluster name"));
}

#[test]
fn proxmox_only_commands_say_so() {
    for command in ["updatecerts", "mtunnel"] {
        let output = pvecm(None, &[command]);
        assert_eq!(output.status.code(), Some(1));
        assert!(stderr(&output).contains("needs Proxmox VE"), "{command}");
    }
}
