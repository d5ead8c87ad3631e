//! Cluster-wide configuration changes: the edit of corosync.conf that `pvecm addnode`, `add`
//! (through the join endpoint), `delnode` and `qdevice setup|remove` ask for, with pvecm's checks
//! and wording (REFERENCE.md §4.1, §4.3, §3.4), and the message that commits the new file through
//! the Totem ring ([`crate::service::Service::Configuration`]).
//!
//! Commit message body (after the service byte):
//! ```text
//! commit_id u64 LE (chosen by the proposing node, echoed so it can answer its client)
//! | corosync.conf text, UTF-8, the rest of the message
//! ```

use std::collections::BTreeSet;
use std::net::IpAddr;

use totem_client::proto::ConfigChange;

use crate::config::tree::{Body, Entry, Tree};
use crate::config::{self, bump_config_version, write_canonical, Loaded, Resolver};

/// Highest link number (`link0` .. `link7`, REFERENCE.md §4.1).
const LINK_NUMBER_MAX: u8 = 7;
/// Bytes of the commit id ahead of the text.
const COMMIT_ID_BYTES: usize = 8;

/// The new file a change produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edited {
    /// The corosync.conf to commit (pvecm's layout).
    pub text: String,
    /// Its `totem.config_version`.
    pub config_version: u64,
    /// The node id given to an added node.
    pub nodeid: Option<u32>,
}

/// A commit message that cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommitDecodeError {
    /// Shorter than the commit id.
    #[error("configuration commit of {0} bytes is shorter than its 8-byte header")]
    Truncated(usize),
    /// The text is not UTF-8.
    #[error("configuration commit text is not UTF-8 (byte {0})")]
    NotUtf8(usize),
}

/// Encodes a commit message body.
pub fn encode_commit(commit_id: u64, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(COMMIT_ID_BYTES + text.len());
    out.extend_from_slice(&commit_id.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

/// Decodes a commit message body into its id and text.
pub fn decode_commit(body: &[u8]) -> Result<(u64, &str), CommitDecodeError> {
    let (id, text) = body
        .split_first_chunk::<COMMIT_ID_BYTES>()
        .ok_or(CommitDecodeError::Truncated(body.len()))?;
    let text =
        std::str::from_utf8(text).map_err(|e| CommitDecodeError::NotUtf8(e.valid_up_to()))?;
    Ok((u64::from_le_bytes(*id), text))
}

/// Applies `change` to the running configuration of node `me`: checks it, raises
/// `config_version` and returns the new text once it loads cleanly.
pub fn edit(
    running: &Loaded,
    change: &ConfigChange,
    me: u32,
    resolver: &dyn Resolver,
) -> Result<Edited, String> {
    let mut tree = running.tree.clone();
    let mut nodeid = None;
    match change {
        ConfigChange::AddNode {
            name,
            nodeid: wanted,
            votes,
            links,
            force,
        } => {
            nodeid = Some(add_node(
                running, &mut tree, name, *wanted, *votes, links, *force, resolver,
            )?);
        }
        ConfigChange::DelNode { node } => del_node(running, &mut tree, node, me)?,
        ConfigChange::QdeviceSetup { host, force } => {
            qdevice_setup(running, &mut tree, host, *force)?;
        }
        ConfigChange::QdeviceRemove => qdevice_remove(running, &mut tree)?,
        ConfigChange::Replace { text } => {
            tree = config::parse(text).map_err(|e| format!("new configuration: {e}"))?;
        }
    }
    if !matches!(change, ConfigChange::Replace { .. }) {
        bump_config_version(&mut tree).map_err(|e| e.to_string())?;
    }
    let text = write_canonical(&tree).map_err(|e| e.to_string())?;
    let loaded = config::load_str(&text, resolver).map_err(|e| {
        e.problems()
            .into_iter()
            .map(|(pos, msg)| format!("new configuration {pos}: {msg}"))
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let (old, new) = (
        running.config.totem.config_version,
        loaded.config.totem.config_version,
    );
    if new <= old {
        return Err(format!(
            "config_version {new} is not higher than the running {old}"
        ));
    }
    if loaded.config.totem.cluster_name != running.config.totem.cluster_name {
        return Err("cluster_name cannot change while running".into());
    }
    if !loaded.nodes.iter().any(|n| n.nodeid == me) {
        return Err(format!(
            "the new configuration does not contain this node ({me})"
        ));
    }
    Ok(Edited {
        text,
        config_version: new,
        nodeid,
    })
}

/// The link numbers every node of the cluster has (pvecm: the new node's set must match).
fn cluster_links(running: &Loaded) -> BTreeSet<u8> {
    running
        .config
        .nodes
        .first()
        .map(|n| n.addrs.iter().map(|a| a.link).collect())
        .unwrap_or_default()
}

fn set_text(set: &BTreeSet<u8>) -> String {
    set.iter()
        .map(|l| format!("link{l}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[allow(clippy::too_many_arguments)]
fn add_node(
    running: &Loaded,
    tree: &mut Tree,
    name: &str,
    wanted: Option<u32>,
    votes: Option<u32>,
    links: &[(u8, String)],
    force: bool,
    resolver: &dyn Resolver,
) -> Result<u32, String> {
    let valid_name = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if !valid_name {
        return Err(format!("invalid node name '{name}'"));
    }
    let replaced = running
        .config
        .nodes
        .iter()
        .find(|n| n.name.as_deref() == Some(name));
    if replaced.is_some() && !force {
        return Err(format!(
            "can't add node '{name}': a node with that name already exists (use --force to \
             replace it)"
        ));
    }
    let others: Vec<_> = running
        .nodes
        .iter()
        .zip(&running.config.nodes)
        .filter(|(_, n)| n.name.as_deref() != Some(name))
        .collect();
    let id = match wanted {
        Some(id) => {
            if let Some((r, _)) = others.iter().find(|(r, _)| r.nodeid == id) {
                return Err(format!("Node ID {id} already used by node '{}'", r.label()));
            }
            id
        }
        None => (1..=u32::MAX)
            .find(|id| !others.iter().any(|(r, _)| r.nodeid == *id))
            .ok_or("no free node id")?,
    };
    if links.is_empty() {
        return Err("the new node gives no link address".into());
    }
    let mut given = BTreeSet::new();
    for (link, _) in links {
        if *link > LINK_NUMBER_MAX || !given.insert(*link) {
            return Err(format!("link{link} given twice or out of range 0..=7"));
        }
    }
    let cluster = cluster_links(running);
    if !cluster.is_empty() && given != cluster {
        return Err(format!(
            "the new node's links ({}) do not match the cluster's links ({})",
            set_text(&given),
            set_text(&cluster)
        ));
    }
    for (link, text) in links {
        let ip = resolve_one(text, resolver)?;
        for (resolved, conf) in &others {
            let clash = resolved.links.iter().any(|l| l.addr.ip() == ip)
                || conf.addrs.iter().any(|a| a.text == *text);
            if clash {
                return Err(format!(
                    "address {text} (link{link}) is already used by node '{}'",
                    resolved.label()
                ));
            }
        }
    }
    let nodelist = match tree.root.section_mut("nodelist") {
        Some(body) => body,
        None => tree.root.push_section("nodelist"),
    };
    nodelist.entries.retain(|e| {
        !matches!(e, Entry::Section(s) if s.name == "node"
            && s.body.item("name").map(|i| i.value.as_str()) == Some(name))
    });
    let node = nodelist.push_section("node");
    node.push_item("name", name);
    node.push_item("nodeid", id.to_string());
    node.push_item("quorum_votes", votes.unwrap_or(1).to_string());
    for (link, text) in links {
        node.push_item(format!("ring{link}_addr"), text.clone());
    }
    Ok(id)
}

fn resolve_one(text: &str, resolver: &dyn Resolver) -> Result<IpAddr, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(ip);
    }
    resolver
        .lookup(text)
        .map_err(|e| format!("cannot resolve {text}: {e}"))?
        .first()
        .copied()
        .ok_or_else(|| format!("{text} resolves to no address"))
}

fn del_node(running: &Loaded, tree: &mut Tree, node: &str, me: u32) -> Result<(), String> {
    let target = running
        .nodes
        .iter()
        .zip(&running.config.nodes)
        .find(|(r, n)| {
            n.name.as_deref() == Some(node)
                || r.nodeid.to_string() == node
                || n.addrs.iter().any(|a| a.text == node)
                || r.links.iter().any(|l| l.addr.ip().to_string() == node)
        })
        .map(|(r, _)| r)
        .ok_or_else(|| format!("Node/IP: {node} is not a known host of the cluster."))?;
    if target.nodeid == me {
        return Err("Cannot delete myself from cluster!".into());
    }
    let id = target.nodeid.to_string();
    let nodelist = tree
        .root
        .section_mut("nodelist")
        .ok_or("the configuration has no nodelist")?;
    nodelist.entries.retain(|e| {
        !matches!(e, Entry::Section(s) if s.name == "node"
            && s.body.item("nodeid").map(|i| i.value.as_str()) == Some(id.as_str()))
    });
    Ok(())
}

fn quorum_body(tree: &mut Tree) -> &mut Body {
    if tree.root.section_mut("quorum").is_none() {
        let q = tree.root.push_section("quorum");
        q.push_item("provider", "corosync_votequorum");
    }
    match tree.root.section_mut("quorum") {
        Some(body) => body,
        None => unreachable!("the quorum section exists: added just above"),
    }
}

fn qdevice_setup(running: &Loaded, tree: &mut Tree, host: &str, force: bool) -> Result<(), String> {
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(format!("invalid qdevice address '{host}'"));
    }
    if running.config.quorum.device.is_some() && !force {
        return Err("QDevice already configured! (use --force to replace it)".into());
    }
    let node_count = running.nodes.len();
    let odd = node_count % 2 == 1;
    if odd && !force {
        return Err("Clusters with an odd node count are not officially supported!".into());
    }
    let quorum = quorum_body(tree);
    quorum.entries.retain(|e| e.name() != "device");
    // qdevice and two_node exclude each other (REFERENCE.md §3.2).
    quorum.remove_items("two_node");
    let device = quorum.push_section("device");
    device.push_item("model", "net");
    // ffsplit needs exactly one qdevice vote; lms takes the default N-1 (REFERENCE.md §3.4).
    if !odd {
        device.push_item("votes", "1");
    }
    let net = device.push_section("net");
    net.push_item("algorithm", if odd { "lms" } else { "ffsplit" });
    net.push_item("host", host);
    net.push_item("tls", "on");
    Ok(())
}

fn qdevice_remove(running: &Loaded, tree: &mut Tree) -> Result<(), String> {
    if running.config.quorum.device.is_none() {
        return Err("No QDevice configured!".into());
    }
    quorum_body(tree).entries.retain(|e| e.name() != "device");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SystemResolver;
    use proptest::prelude::*;

    const BASE: &str = "totem {\n  cluster_name: c\n  config_version: 3\n  version: 2\n  \
        interface {\n    linknumber: 0\n  }\n}\n\nnodelist {\n  node {\n    name: a\n    \
        nodeid: 1\n    quorum_votes: 1\n    ring0_addr: 127.0.0.1\n  }\n  node {\n    name: b\n    \
        nodeid: 3\n    quorum_votes: 1\n    ring0_addr: 127.0.0.3\n  }\n}\n\nquorum {\n  \
        provider: corosync_votequorum\n}\n";

    fn base() -> Loaded {
        config::load_str(BASE, &SystemResolver).expect("base config")
    }

    fn add(name: &str, id: Option<u32>, addr: &str) -> ConfigChange {
        ConfigChange::AddNode {
            name: name.into(),
            nodeid: id,
            votes: None,
            links: vec![(0, addr.into())],
            force: false,
        }
    }

    #[test]
    fn add_takes_smallest_free_id_and_bumps_version() {
        let e = edit(&base(), &add("c", None, "127.0.0.2"), 1, &SystemResolver).expect("add");
        assert_eq!(e.nodeid, Some(2));
        assert_eq!(e.config_version, 4);
        assert!(e.text.contains("name: c"));
        let l = config::load_str(&e.text, &SystemResolver).expect("reload");
        assert_eq!(l.nodes.len(), 3);
    }

    #[test]
    fn add_refuses_duplicates_and_link_mismatch() {
        let b = base();
        let r = |c| edit(&b, &c, 1, &SystemResolver).expect_err("refused");
        assert!(r(add("a", None, "127.0.0.9")).contains("already exists"));
        assert!(r(add("c", Some(3), "127.0.0.9")).contains("Node ID 3 already used by node 'b'"));
        assert!(r(add("c", None, "127.0.0.3")).contains("already used by node 'b'"));
        let two_links = ConfigChange::AddNode {
            name: "c".into(),
            nodeid: None,
            votes: None,
            links: vec![(0, "127.0.0.9".into()), (1, "127.0.1.9".into())],
            force: false,
        };
        assert!(r(two_links).contains("do not match the cluster's links (link0)"));
    }

    #[test]
    fn add_force_replaces_same_name() {
        let change = ConfigChange::AddNode {
            name: "b".into(),
            nodeid: Some(3),
            votes: Some(2),
            links: vec![(0, "127.0.0.4".into())],
            force: true,
        };
        let e = edit(&base(), &change, 1, &SystemResolver).expect("forced");
        let l = config::load_str(&e.text, &SystemResolver).expect("reload");
        assert_eq!(l.nodes.len(), 2);
        assert!(e.text.contains("127.0.0.4") && !e.text.contains("127.0.0.3"));
    }

    #[test]
    fn delnode_by_name_id_or_address_not_myself() {
        let b = base();
        for key in ["b", "3", "127.0.0.3"] {
            let e = edit(
                &b,
                &ConfigChange::DelNode { node: key.into() },
                1,
                &SystemResolver,
            )
            .expect("delete");
            assert!(!e.text.contains("127.0.0.3"), "{key}");
        }
        let mine = edit(
            &b,
            &ConfigChange::DelNode { node: "a".into() },
            1,
            &SystemResolver,
        );
        assert_eq!(
            mine.expect_err("refused"),
            "Cannot delete myself from cluster!"
        );
        let unknown = edit(
            &b,
            &ConfigChange::DelNode { node: "zz".into() },
            1,
            &SystemResolver,
        );
        assert!(unknown
            .expect_err("refused")
            .contains("is not a known host"));
    }

    #[test]
    fn qdevice_even_ffsplit_odd_needs_force_lms() {
        let b = base();
        let setup = |force| ConfigChange::QdeviceSetup {
            host: "10.0.0.9".into(),
            force,
        };
        let e = edit(&b, &setup(false), 1, &SystemResolver).expect("even");
        assert!(e.text.contains("algorithm: ffsplit") && e.text.contains("votes: 1"));
        let l = config::load_str(&e.text, &SystemResolver).expect("load");
        let again = edit(&l, &setup(false), 1, &SystemResolver).expect_err("refused");
        assert!(again.contains("already configured"));
        let removed = edit(&l, &ConfigChange::QdeviceRemove, 1, &SystemResolver).expect("rm");
        assert!(!removed.text.contains("device"));
        let three = edit(&b, &add("c", None, "127.0.0.2"), 1, &SystemResolver).expect("add");
        let l3 = config::load_str(&three.text, &SystemResolver).expect("load");
        let odd = edit(&l3, &setup(false), 1, &SystemResolver).expect_err("refused");
        assert!(odd.contains("odd node count"));
        let forced = edit(&l3, &setup(true), 1, &SystemResolver).expect("forced");
        assert!(
            forced.text.contains("algorithm: lms") && !forced.text.contains("votes: 1\n      net")
        );
        assert!(edit(&b, &ConfigChange::QdeviceRemove, 1, &SystemResolver).is_err());
    }

    #[test]
    fn replace_needs_higher_version() {
        let b = base();
        let same = ConfigChange::Replace { text: BASE.into() };
        assert!(edit(&b, &same, 1, &SystemResolver)
            .expect_err("refused")
            .contains("not higher"));
        let newer = ConfigChange::Replace {
            text: BASE.replace("config_version: 3", "config_version: 9"),
        };
        assert_eq!(
            edit(&b, &newer, 1, &SystemResolver)
                .expect("newer")
                .config_version,
            9
        );
    }

    proptest! {
        #[test]
        fn commit_round_trip(id in any::<u64>(), text in ".{0,200}") {
            let bytes = encode_commit(id, &text);
            prop_assert_eq!(decode_commit(&bytes), Ok((id, text.as_str())));
        }

        #[test]
        fn commit_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_commit(&bytes);
        }
    }
}
