//! `totemd -t -c FILE` as a binary: exit status and `file:line:col: message` output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn totemd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_totemd"))
        .args(args)
        .output()
        .expect("run totemd")
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// A scratch file under the target temp dir, unique per test.
fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("totemd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn valid_config_exits_zero() {
    let path = data("pve-redundant-links.conf");
    let output = totemd(&["-t", "-c", path.to_str().expect("utf8 path")]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("configuration is valid (3 nodes, links [0, 1])"),
        "{stdout}"
    );
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn warnings_are_printed_with_positions() {
    let text = "totem {\n  version: 2\n  cluster_name: c\n  frobnicate: yes\n}\nnodelist {\n  node {\n    nodeid: 1\n    ring0_addr: 127.0.0.1\n  }\n}\nquorum {\n  provider: corosync_votequorum\n}\n";
    let path = scratch("warn.conf", text);
    let file = path.to_str().expect("utf8 path");
    let output = totemd(&["-t", "-c", file]);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{file}:4:3: warning: unknown key 'totem.frobnicate' (kept)"
        )),
        "{stderr}"
    );
}

#[test]
fn parse_error_exits_nonzero_with_line_and_column() {
    let path = scratch("broken.conf", "totem {\n  version: 2\n  token 3000\n}\n");
    let file = path.to_str().expect("utf8 path");
    let output = totemd(&["-t", "-c", file]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr,
        format!("{file}:3:3: line is not opening or closing section or key value\n")
    );
}

#[test]
fn validation_errors_all_listed() {
    let text = "totem {\n  version: 3\n  cluster_name: c\n}\nnodelist {\n  node {\n    nodeid: 0\n    ring0_addr: 127.0.0.1\n  }\n}\n";
    let path = scratch("invalid.conf", text);
    let file = path.to_str().expect("utf8 path");
    let output = totemd(&["-t", "-c", file]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with(&format!(
        "{file}:2:12: This totem parser can only parse version 2"
    )));
    assert!(lines[1].starts_with(&format!("{file}:7:13: Knet requires an explicit nodeid")));
}

#[test]
fn missing_file_and_unknown_node() {
    let output = totemd(&["-t", "-c", "/nonexistent/corosync.conf"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("/nonexistent/corosync.conf: cannot read:"),
        "{stderr}"
    );

    let path = data("pve-3node.conf");
    let file = path.to_str().expect("utf8 path");
    let output = totemd(&["-t", "-c", file, "--node", "quattro"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--node quattro"));
    let output = totemd(&["-t", "-c", file, "--node", "uno"]);
    assert!(output.status.success());
}

#[test]
fn bad_command_line_is_a_usage_error() {
    let output = totemd(&["-t", "--no-such-flag"]);
    assert_eq!(output.status.code(), Some(2));
}
