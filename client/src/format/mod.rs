//! Text and JSON renderings of the status snapshots: pure functions that print exactly what
//! `corosync-quorumtool`, `corosync-cfgtool` and `pvecm` print (REFERENCE.md §3.5, §4.2), plus
//! the `pvecm links` view and the `--output-format json` documents.

mod json;
mod links;
mod quorumtool;

pub use json::{links_json, nodes_json, status_json};
pub use links::{cfgtool_nodes, cfgtool_status, pvecm_links};
pub use quorumtool::{
    ctime, membership_list, pvecm_nodes, pvecm_status, quorum_status, status_exit_code, NameFormat,
    NodeIdFormat, EXIT_NOT_QUORATE,
};
