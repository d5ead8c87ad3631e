//! The formatters against corosync 3.1.7's real outputs: each reference capture's snapshot must
//! print byte for byte what corosync-quorumtool / corosync-cfgtool printed. The expected text is
//! kept under tests/fixtures/ and, when `shared/` is beside the checkout, also read from the
//! original captures.

#[allow(dead_code)]
mod common;

use std::path::PathBuf;

use chrono::NaiveDate;
use common::snapshots::{self, State};
use totem_client::format::{self, NameFormat, NodeIdFormat};
use totem_client::proto::{MemberNode, Membership, QdeviceDevice, QuorumFlags};

/// The fixture copy of a reference output.
fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The original capture: its output (between the `# ` header lines and `# exit code:`) and exit
/// code, or `None` when shared/ is not beside the checkout.
fn capture(name: &str) -> Option<(String, u8)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/corosync-3.1.7")
        .join(name);
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!(
            "note: {} not found, checking the fixture only",
            path.display()
        );
        return None;
    };
    let lines: Vec<&str> = text.split('\n').collect();
    let start = lines
        .iter()
        .position(|line| !line.starts_with("# "))
        .expect("output after the header");
    let end = lines
        .iter()
        .rposition(|line| line.starts_with("# exit code: "))
        .expect("exit code line");
    let code = lines[end]
        .trim_start_matches("# exit code: ")
        .parse()
        .expect("numeric exit code");
    let mut output = lines[start..end].join("\n");
    if end > start {
        output.push('\n');
    }
    Some((output, code))
}

/// Asserts `actual` equals the fixture and the capture (when present), and the exit code.
fn assert_matches(name: &str, actual: &str, exit_code: Option<u8>) {
    let expected = fixture(name);
    assert_eq!(actual, expected, "{name}: output differs from the fixture");
    if let Some((captured, code)) = capture(name) {
        assert_eq!(
            expected, captured,
            "{name}: fixture differs from the capture"
        );
        if let Some(exit_code) = exit_code {
            assert_eq!(exit_code, code, "{name}: exit code");
        }
    }
}

fn capture_date(state: State) -> String {
    let time = NaiveDate::from_ymd_opt(2026, 11, 26)
        .and_then(|day| day.and_hms_opt(16, 0, state.capture_second()))
        .expect("valid date");
    format::ctime(time)
}

#[test]
fn quorumtool_s_matches_every_capture() {
    for (state, prefix) in State::ALL {
        let status = snapshots::quorum_status(state);
        let text = format::quorum_status(
            &status,
            &capture_date(state),
            NodeIdFormat::Decimal,
            NameFormat::Name,
        );
        let exit = format::status_exit_code(&status);
        assert_eq!(exit, state.status_exit_code());
        assert_matches(&format!("{prefix}.quorumtool-s.txt"), &text, Some(exit));
    }
}

#[test]
fn quorumtool_sih_matches_every_capture() {
    for (state, prefix) in State::ALL {
        let status = snapshots::quorum_status(state);
        let text = format::quorum_status(
            &status,
            &capture_date(state),
            NodeIdFormat::Hex,
            NameFormat::Address,
        );
        let exit = format::status_exit_code(&status);
        assert_matches(&format!("{prefix}.quorumtool-siH.txt"), &text, Some(exit));
    }
}

#[test]
fn quorumtool_l_and_pvecm_nodes_match_every_capture() {
    for (state, prefix) in State::ALL {
        let membership = snapshots::membership(state);
        let name = format!("{prefix}.quorumtool-l.txt");
        let list = format::membership_list(&membership, NodeIdFormat::Decimal, NameFormat::Name);
        assert_matches(&name, &list, Some(0));
        assert_matches(&name, &format::pvecm_nodes(&membership), Some(0));
    }
}

#[test]
fn cfgtool_s_and_n_match_every_capture() {
    for (state, prefix) in State::ALL {
        let links = snapshots::links_status(state);
        assert_matches(
            &format!("{prefix}.cfgtool-s.txt"),
            &format::cfgtool_status(&links),
            Some(0),
        );
        assert_matches(
            &format!("{prefix}.cfgtool-n.txt"),
            &format::cfgtool_nodes(&links),
            Some(0),
        );
    }
}

#[test]
fn pvecm_status_is_the_cluster_header_then_quorumtool_sih() {
    for (state, prefix) in State::ALL {
        let status = snapshots::quorum_status(state);
        let text = format::pvecm_status(&status, &capture_date(state));
        let header = "Cluster information\n-------------------\nName:             demo\nConfig Version:   3\nTransport:        knet\nSecure auth:      on\n\n";
        let expected = format!(
            "{header}{}",
            fixture(&format!("{prefix}.quorumtool-siH.txt"))
        );
        assert_eq!(text, expected, "{prefix}");
    }
    let status = snapshots::quorum_status(State::AllUp);
    assert_eq!(
        format::pvecm_status(&status, &capture_date(State::AllUp)),
        fixture("pvecm-status.3nodes-up.txt")
    );
}

#[test]
fn pvecm_status_header_uses_pvecm_defaults_for_missing_keys() {
    let mut status = snapshots::quorum_status(State::AllUp);
    status.cluster = Default::default();
    let text = format::pvecm_status(&status, "Thu Nov 26 16:00:01 2026");
    assert!(text.starts_with(
        "Cluster information\n-------------------\nName:             UNKOWN?\nConfig Version:   -1\nTransport:        knet\nSecure auth:      off\n\nQuorum information\n"
    ));
}

#[test]
fn ctime_pads_single_digit_days_with_a_space() {
    let time = NaiveDate::from_ymd_opt(2026, 3, 5)
        .and_then(|day| day.and_hms_opt(7, 8, 9))
        .expect("valid date");
    assert_eq!(format::ctime(time), "Thu Mar  5 07:08:09 2026");
}

/// A two-node membership with a quorum device (as `corosync-quorumtool.c` l.560-660 prints it).
fn qdevice_membership(local_casts: bool) -> Membership {
    let registered = QuorumFlags::QDEVICE_REGISTERED.with(QuorumFlags::QDEVICE_ALIVE);
    let node = |id: u32, flags: QuorumFlags| MemberNode {
        id,
        name: format!("n{id}"),
        addresses: vec![snapshots::address(0, id)],
        votes: 1,
        qdevice_flags: flags,
        local: id == 1,
    };
    let local_flags = if local_casts {
        registered.with(QuorumFlags::QDEVICE_CAST_VOTE)
    } else {
        registered
    };
    Membership {
        nodes: vec![
            node(1, local_flags),
            node(2, registered.with(QuorumFlags::QDEVICE_MASTER_WINS)),
            node(3, QuorumFlags::default()),
        ],
        qdevice: Some(QdeviceDevice {
            name: "Qdevice".to_owned(),
            votes: 2,
        }),
    }
}

#[test]
fn qdevice_column_and_row_follow_corosync() {
    let text = format::membership_list(
        &qdevice_membership(true),
        NodeIdFormat::Decimal,
        NameFormat::Name,
    );
    assert_eq!(
        text,
        "\nMembership information\n----------------------\n    Nodeid      Votes    Qdevice Name\n         1          1    A,V,NMW n1 (local)\n         2          1    A,NV,MW n2\n         3          1         NR n3\n         0          2            Qdevice\n"
    );
    let text = format::membership_list(
        &qdevice_membership(false),
        NodeIdFormat::Hex,
        NameFormat::Address,
    );
    assert_eq!(
        text,
        "\nMembership information\n----------------------\n    Nodeid      Votes    Qdevice Name\n0x00000001          1   A,NV,NMW 10.77.0.1 (local)\n0x00000002          1    A,NV,MW 10.77.0.2\n0x00000003          1         NR 10.77.0.3\n0x00000000          0            Qdevice (votes 2)\n"
    );
}

#[test]
fn flags_line_names_flags_in_corosync_order() {
    let mut status = snapshots::quorum_status(State::ThirdKilled);
    status.flags = QuorumFlags::QDEVICE_REGISTERED
        .with(QuorumFlags::WAIT_FOR_ALL)
        .with(QuorumFlags::QUORATE)
        .with(QuorumFlags::TWO_NODE)
        .with(QuorumFlags::QDEVICE_CAST_VOTE);
    let text = format::quorum_status(&status, "-", NodeIdFormat::Decimal, NameFormat::Name);
    assert!(
        text.contains(
            "\nQuorum:           2  \nFlags:            2Node Quorate WaitForAll Qdevice \n"
        ),
        "{text}"
    );
}

#[test]
fn pvecm_links_shows_priority_active_link_and_rtt() {
    let links = snapshots::links_status(State::ThirdKilled);
    assert_eq!(
        format::pvecm_links(&links),
        fixture("pvecm-links.2of3-n3-killed.txt")
    );
}

#[test]
fn json_documents_use_pvecm_key_names() {
    let status = snapshots::quorum_status(State::Alone);
    let json = format::status_json(&status);
    assert_eq!(json["cluster"]["name"], "demo");
    assert_eq!(json["cluster"]["version"], 3);
    assert_eq!(json["cluster"]["quorate"], false);
    assert_eq!(json["quorum"]["ring_id"], "1.15");
    assert_eq!(json["quorum"]["quorum"], 2);
    assert_eq!(json["quorum"]["flags"], serde_json::json!([]));
    assert_eq!(json["nodes"][0]["nodeid"], 1);
    assert_eq!(json["nodes"][0]["ip"], "10.77.0.1");
    assert_eq!(json["nodes"][0]["local"], true);

    let nodes = format::nodes_json(&snapshots::membership(State::AllUp));
    assert_eq!(nodes.as_array().map(Vec::len), Some(3));
    assert_eq!(nodes[2]["name"], "n3");

    let links = format::links_json(&snapshots::links_status(State::AllUp));
    assert_eq!(links["nodes"][1]["links"][0]["priority"], 20);
    assert_eq!(links["nodes"][1]["links"][0]["active"], true);
    assert_eq!(links["nodes"][1]["links"][1]["rtt"]["p99_us"], 250);
}
