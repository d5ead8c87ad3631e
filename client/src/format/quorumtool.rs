//! `corosync-quorumtool -s` / `-l` (with `-i`, `-H`) and the `pvecm status` / `pvecm nodes`
//! layouts built on them (REFERENCE.md §3.5, §4.2; `tools/corosync-quorumtool.c`
//! `display_quorum_data`, `display_nodes_data`).

use std::fmt::Write as _;

use chrono::NaiveDateTime;

use crate::proto::{ClusterInfo, MemberNode, Membership, QuorumFlags, QuorumStatus};

/// Width of a membership table cell before its trailing space (`print_string_padded`).
const TABLE_CELL_WIDTH: usize = 10;

/// Width of the label column of pvecm's "Cluster information" block (`printf "%-17s %s\n"`).
const PVECM_LABEL_WIDTH: usize = 17;

/// Node id of the quorum device row (`VOTEQUORUM_QDEVICE_NODEID`).
const QDEVICE_NODE_ID: u32 = 0;

/// Exit status of `corosync-quorumtool -s` and `pvecm status` when not quorate
/// (`EXIT_NOT_QUORATE`, `tools/corosync-quorumtool.c` l.88).
pub const EXIT_NOT_QUORATE: u8 = 2;

/// Exit status of `corosync-quorumtool -s` and `pvecm status` for `status`: 0 quorate, else
/// [`EXIT_NOT_QUORATE`].
pub fn status_exit_code(status: &QuorumStatus) -> u8 {
    if status.quorate {
        0
    } else {
        EXIT_NOT_QUORATE
    }
}

/// How node ids are printed: decimal (default) or `-H` hexadecimal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeIdFormat {
    /// `%u`, right-aligned in the table.
    Decimal,
    /// `0x%08x` (`-H`).
    Hex,
}

/// How nodes are named in the table: nodelist name (default) or `-i` first address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameFormat {
    /// The nodelist `name`, or the first address when the node has no name.
    Name,
    /// The first address, numeric (`-i`).
    Address,
}

/// A time as `ctime(3)` prints it, without the newline: `Thu Nov 26 16:00:01 2026`.
pub fn ctime(time: NaiveDateTime) -> String {
    time.format("%a %b %e %H:%M:%S %Y").to_string()
}

/// `corosync-quorumtool -s` (with `-i` / `-H` as chosen): the quorum block, the votequorum block
/// and the membership table. `date` is the `Date:` value, see [`ctime`].
pub fn quorum_status(
    status: &QuorumStatus,
    date: &str,
    ids: NodeIdFormat,
    names: NameFormat,
) -> String {
    let mut out = String::new();
    out.push_str("Quorum information\n------------------\n");
    let _ = writeln!(out, "Date:             {date}");
    let provider = status.provider.as_deref().unwrap_or("Not configured");
    let _ = writeln!(out, "Quorum provider:  {provider}");
    let _ = writeln!(out, "Nodes:            {}", status.membership.nodes.len());
    match ids {
        NodeIdFormat::Decimal => {
            let _ = writeln!(out, "Node ID:          {}", status.local_node);
        }
        NodeIdFormat::Hex => {
            let _ = writeln!(out, "Node ID:          0x{:08x}", status.local_node);
        }
    }
    let _ = writeln!(out, "Ring ID:          {}", status.ring_id);
    let quorate = if status.quorate { "Yes" } else { "No" };
    let _ = writeln!(out, "Quorate:          {quorate}");

    out.push_str("\nVotequorum information\n----------------------\n");
    let _ = writeln!(out, "Expected votes:   {}", status.expected_votes);
    let _ = writeln!(out, "Highest expected: {}", status.highest_expected);
    let _ = writeln!(out, "Total votes:      {}", status.total_votes);
    let blocked = if status.flags.contains(QuorumFlags::QUORATE) {
        " "
    } else {
        "Activity blocked"
    };
    let _ = writeln!(out, "Quorum:           {} {blocked}", status.quorum);
    out.push_str("Flags:            ");
    for name in status.flags.names() {
        out.push_str(name);
        out.push(' ');
    }
    out.push('\n');

    out.push_str(&membership_list(&status.membership, ids, names));
    out
}

/// `corosync-quorumtool -l`: the membership table, starting with a blank line.
pub fn membership_list(membership: &Membership, ids: NodeIdFormat, names: NameFormat) -> String {
    let show_qdevice = membership
        .nodes
        .iter()
        .any(|node| node.qdevice_flags.contains(QuorumFlags::QDEVICE_REGISTERED));
    let mut out = String::from("\nMembership information\n----------------------\n");
    push_cell(&mut out, "Nodeid");
    push_cell(&mut out, "Votes");
    if show_qdevice {
        push_cell(&mut out, "Qdevice");
    }
    out.push_str("Name\n");

    for node in &membership.nodes {
        push_node_id(&mut out, node.id, ids);
        push_cell(&mut out, &node.votes.to_string());
        if show_qdevice {
            push_cell(&mut out, &qdevice_cell(node.qdevice_flags));
        }
        out.push_str(&node_label(node, names));
        if node.local {
            out.push_str(" (local)");
        }
        out.push('\n');
    }

    if let (true, Some(device)) = (show_qdevice, &membership.qdevice) {
        let casting = membership
            .local_node()
            .is_some_and(|node| node.qdevice_flags.contains(QuorumFlags::QDEVICE_CAST_VOTE));
        push_node_id(&mut out, QDEVICE_NODE_ID, ids);
        let shown_votes = if casting { device.votes } else { 0 };
        push_cell(&mut out, &shown_votes.to_string());
        // The Qdevice cell stays blank on the device's own row: 10 spaces and the separator.
        let _ = write!(
            out,
            "{:width$} {}",
            "",
            device.name,
            width = TABLE_CELL_WIDTH
        );
        if !casting {
            let _ = write!(out, " (votes {})", device.votes);
        }
        out.push('\n');
    }
    out
}

/// `pvecm status`: the "Cluster information" block, then `corosync-quorumtool -siH`.
pub fn pvecm_status(status: &QuorumStatus, date: &str) -> String {
    let mut out = cluster_information(&status.cluster);
    out.push_str(&quorum_status(
        status,
        date,
        NodeIdFormat::Hex,
        NameFormat::Address,
    ));
    out
}

/// `pvecm nodes`: `corosync-quorumtool -l`.
pub fn pvecm_nodes(membership: &Membership) -> String {
    membership_list(membership, NodeIdFormat::Decimal, NameFormat::Name)
}

/// pvecm's four-line header and its blank line, with pvecm's defaults for missing keys
/// (`src/PVE/CLI/pvecm.pm` `status`; the "UNKOWN?" spelling is pvecm's).
fn cluster_information(cluster: &ClusterInfo) -> String {
    let mut out = String::from("Cluster information\n-------------------\n");
    let config_version = cluster
        .config_version
        .map_or_else(|| "-1".to_owned(), |version| version.to_string());
    let rows = [
        ("Name", cluster.name.as_deref().unwrap_or("UNKOWN?")),
        ("Config Version", config_version.as_str()),
        ("Transport", cluster.transport.as_deref().unwrap_or("knet")),
        ("Secure auth", cluster.secauth.as_deref().unwrap_or("off")),
    ];
    for (label, value) in rows {
        let label = format!("{label}:");
        let _ = writeln!(out, "{label:<width$} {value}", width = PVECM_LABEL_WIDTH);
    }
    out.push('\n');
    out
}

/// A table cell: right-aligned to [`TABLE_CELL_WIDTH`], then one space.
fn push_cell(out: &mut String, text: &str) {
    let _ = write!(out, "{text:>width$} ", width = TABLE_CELL_WIDTH);
}

/// The node id cell: padded decimal, or `0x%08x ` (11 characters, not padded further).
fn push_node_id(out: &mut String, id: u32, ids: NodeIdFormat) {
    match ids {
        NodeIdFormat::Decimal => push_cell(out, &id.to_string()),
        NodeIdFormat::Hex => {
            let _ = write!(out, "0x{id:08x} ");
        }
    }
}

/// The Qdevice cell: `A|NA,V|NV,MW|NMW`, or `NR` when no device is registered.
fn qdevice_cell(flags: QuorumFlags) -> String {
    if !flags.contains(QuorumFlags::QDEVICE_REGISTERED) {
        return "NR".to_owned();
    }
    let pick = |flag, yes: &'static str, no: &'static str| {
        if flags.contains(flag) {
            yes
        } else {
            no
        }
    };
    format!(
        "{},{},{}",
        pick(QuorumFlags::QDEVICE_ALIVE, "A", "NA"),
        pick(QuorumFlags::QDEVICE_CAST_VOTE, "V", "NV"),
        pick(QuorumFlags::QDEVICE_MASTER_WINS, "MW", "NMW"),
    )
}

/// The Name column: nodelist name or first address.
fn node_label(node: &MemberNode, names: NameFormat) -> String {
    let first_address = || {
        node.addresses
            .first()
            .map(ToString::to_string)
            .unwrap_or_default()
    };
    match names {
        NameFormat::Name if !node.name.is_empty() => node.name.clone(),
        NameFormat::Name | NameFormat::Address => first_address(),
    }
}
