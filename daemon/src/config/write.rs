//! Writing a [`Tree`] back to text, pvecm's ordering, `config_version` bumps and atomic file writes.
//!
//! [`write()`] is a faithful serializer: entries in tree order, two spaces of indent per level,
//! `key: value`, a blank line after each top-level section, comments dropped (as pvecm does).
//! [`canonicalize`] puts a tree in the order pvecm's `write_conf` produces (pve-cluster
//! `src/PVE/Corosync.pm`, REFERENCE.md §4.3): keys and sections sorted by name at every level,
//! `nodelist.node` blocks by node name (or `ring0_addr`), `totem.interface` blocks by link number.
//! So `write(&canonical(tree))` is pvecm's layout, and `parse(write(t)) == t` for every writable
//! tree.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

use super::parse::{is_blank, LINE_BYTES_MAX, PATH_BYTES_MAX};
use super::tree::{Body, Entry, Tree};

/// Indent per nesting level, as pvecm writes it.
const INDENT: &str = "  ";

/// Why a tree cannot be written as corosync.conf text that reads back the same.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: key name {key:?} cannot be written ({why})")]
    BadKey {
        path: String,
        key: String,
        why: &'static str,
    },
    #[error("{path}: value {value:?} cannot be written ({why})")]
    BadValue {
        path: String,
        value: String,
        why: &'static str,
    },
    #[error("{path}: section name {name:?} cannot be written ({why})")]
    BadSectionName {
        path: String,
        name: String,
        why: &'static str,
    },
    #[error("{path}: line would be longer than {LINE_BYTES_MAX} bytes")]
    LineTooLong { path: String },
    #[error("{path}: dotted path is too long for corosync (limit {PATH_BYTES_MAX} bytes)")]
    PathTooLong { path: String },
}

/// Why `config_version` could not be increased.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BumpError {
    #[error("invalid corosync config: unable to read config version (no totem.config_version)")]
    Missing,
    #[error("totem.config_version {0:?} is not an unsigned 64-bit number")]
    NotNumber(String),
    #[error("totem.config_version cannot be increased past {}", u64::MAX)]
    Overflow,
}

/// Serializes `tree` in its own order.
pub fn write(tree: &Tree) -> Result<String, WriteError> {
    let mut out = String::new();
    write_body(&tree.root, "", 0, &mut out)?;
    Ok(out)
}

/// Serializes `tree` in pvecm's order (a sorted copy; `tree` is not changed).
pub fn write_canonical(tree: &Tree) -> Result<String, WriteError> {
    let mut sorted = tree.clone();
    canonicalize(&mut sorted);
    write(&sorted)
}

fn write_body(body: &Body, path: &str, depth: usize, out: &mut String) -> Result<(), WriteError> {
    let indent = INDENT.repeat(depth);
    for entry in &body.entries {
        let child_path = join_path(path, entry.name());
        if path.len() + entry.name().len() + 1 >= PATH_BYTES_MAX {
            return Err(WriteError::PathTooLong { path: child_path });
        }
        let line_start = out.len();
        match entry {
            Entry::Item(item) => {
                check_key(path, &item.key)?;
                check_value(&child_path, &item.value)?;
                out.push_str(&indent);
                out.push_str(&item.key);
                out.push(':');
                if !item.value.is_empty() {
                    out.push(' ');
                    out.push_str(&item.value);
                }
                // A value ending in CR: a trailing blank keeps corosync from eating the CR.
                if item.value.ends_with('\r') {
                    out.push(' ');
                }
                check_line_length(&out[line_start..], &child_path)?;
                out.push('\n');
            }
            Entry::Section(section) => {
                check_section_name(path, &section.name)?;
                out.push_str(&indent);
                out.push_str(&section.name);
                out.push_str(" {");
                check_line_length(&out[line_start..], &child_path)?;
                out.push('\n');
                write_body(&section.body, &child_path, depth + 1, out)?;
                out.push_str(&indent);
                out.push_str("}\n");
                if depth == 0 {
                    out.push('\n');
                }
            }
        }
    }
    Ok(())
}

fn join_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

fn check_line_length(line: &str, path: &str) -> Result<(), WriteError> {
    if line.len() > LINE_BYTES_MAX {
        return Err(WriteError::LineTooLong { path: path.into() });
    }
    Ok(())
}

/// Why `text` cannot be a name (key or section), if it cannot.
fn name_problem(text: &str) -> Option<&'static str> {
    if text.is_empty() {
        return Some("empty");
    }
    if text.starts_with(is_blank) || text.ends_with(is_blank) {
        return Some("leading or trailing blank");
    }
    if text.starts_with('#') {
        return Some("would read as a comment");
    }
    if text.contains(['\n', '\0', '{']) {
        return Some("contains a newline, NUL or '{'");
    }
    None
}

fn check_key(path: &str, key: &str) -> Result<(), WriteError> {
    let why = name_problem(key).or_else(|| key.contains(':').then_some("contains ':'"));
    match why {
        Some(why) => Err(WriteError::BadKey {
            path: path.into(),
            key: key.into(),
            why,
        }),
        None => Ok(()),
    }
}

fn check_section_name(path: &str, name: &str) -> Result<(), WriteError> {
    let why = name_problem(name).or_else(|| name.ends_with(':').then_some("ends with ':'"));
    match why {
        Some(why) => Err(WriteError::BadSectionName {
            path: path.into(),
            name: name.into(),
            why,
        }),
        None => Ok(()),
    }
}

fn check_value(path: &str, value: &str) -> Result<(), WriteError> {
    let why = if value.starts_with(is_blank) || value.ends_with(is_blank) {
        Some("leading or trailing blank")
    } else if value.contains(['\n', '\0', '{']) {
        Some("contains a newline, NUL or '{'")
    } else {
        None
    };
    match why {
        Some(why) => Err(WriteError::BadValue {
            path: path.into(),
            value: value.into(),
            why,
        }),
        None => Ok(()),
    }
}

/// Sorts `tree` into pvecm's order, recursively (stable: equal names keep their order).
pub fn canonicalize(tree: &mut Tree) {
    sort_body(&mut tree.root, "");
}

fn sort_body(body: &mut Body, path: &str) {
    for entry in &mut body.entries {
        if let Entry::Section(section) = entry {
            let child_path = join_path(path, &section.name);
            sort_body(&mut section.body, &child_path);
        }
    }
    body.entries
        .sort_by(|a, b| sort_key(path, a).cmp(&sort_key(path, b)));
}

/// pvecm's sort key: the name, then for nodes the node name (or ring0_addr) and for interfaces
/// the link number (or ringnumber), compared as strings as Perl's `sort` does.
fn sort_key<'a>(path: &str, entry: &'a Entry) -> (&'a str, &'a str) {
    let secondary = match (path, entry) {
        ("nodelist", Entry::Section(section)) if section.name == "node" => section
            .body
            .item("name")
            .or_else(|| section.body.item("ring0_addr")),
        ("totem", Entry::Section(section)) if section.name == "interface" => section
            .body
            .item("linknumber")
            .or_else(|| section.body.item("ringnumber")),
        _ => None,
    };
    (
        entry.name(),
        secondary.map_or("", |item| item.value.as_str()),
    )
}

/// Increases `totem.config_version` by one, as pvecm does before every write; returns the new
/// version.
pub fn bump_config_version(tree: &mut Tree) -> Result<u64, BumpError> {
    let totem = tree.root.section_mut("totem").ok_or(BumpError::Missing)?;
    let current = totem.item("config_version").ok_or(BumpError::Missing)?;
    let version: u64 = current
        .value
        .parse()
        .map_err(|_| BumpError::NotNumber(current.value.clone()))?;
    let next = version.checked_add(1).ok_or(BumpError::Overflow)?;
    totem.set("config_version", next.to_string());
    Ok(next)
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory, fsync, rename
/// over `path`, fsync of the directory. Readers see the old file or the new one, never a mix, and
/// the new one survives a crash once this returns. An existing file's permissions are kept.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".tmp.{}", std::process::id()));
    let temp_path = dir.join(temp_name);

    let result = write_then_rename(&temp_path, path, dir, contents);
    if result.is_err() {
        // Best effort: the error that matters is the one returned.
        let _ = fs::remove_file(&temp_path);
    }
    result
}

fn write_then_rename(temp_path: &Path, path: &Path, dir: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp_path)?;
    if let Ok(existing) = fs::metadata(path) {
        file.set_permissions(existing.permissions())?;
    }
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(temp_path, path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse::parse;

    #[test]
    fn canonical_layout_matches_pvecm() {
        let text = "totem {\n version: 2\n interface {\n  linknumber: 1\n }\n interface {\n  linknumber: 0\n }\n cluster_name: c\n}\nnodelist {\n node {\n  name: b\n }\n node {\n  name: a\n }\n}\n";
        let tree = parse(text).expect("parse");
        let out = write_canonical(&tree).expect("write");
        let expected = "nodelist {\n  node {\n    name: a\n  }\n  node {\n    name: b\n  }\n}\n\ntotem {\n  cluster_name: c\n  interface {\n    linknumber: 0\n  }\n  interface {\n    linknumber: 1\n  }\n  version: 2\n}\n\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn empty_value_and_carriage_return_round_trip() {
        let tree = parse("a:\nb: x\r \n").expect("parse");
        assert_eq!(tree.root.item("b").map(|i| i.value.as_str()), Some("x\r"));
        let out = write(&tree).expect("write");
        assert_eq!(out, "a:\nb: x\r \n");
        assert_eq!(parse(&out).expect("reparse"), tree);
    }

    #[test]
    fn unwritable_names_are_refused() {
        let mut tree = Tree::default();
        tree.root.push_item("a:b", "v");
        assert!(matches!(write(&tree), Err(WriteError::BadKey { .. })));
        let mut tree = Tree::default();
        tree.root.push_item("k", "{");
        assert!(matches!(write(&tree), Err(WriteError::BadValue { .. })));
        let mut tree = Tree::default();
        tree.root.push_section("s:");
        assert!(matches!(
            write(&tree),
            Err(WriteError::BadSectionName { .. })
        ));
    }

    #[test]
    fn bump_increments_and_reports_missing() {
        let mut tree = parse("totem {\n config_version: 41\n}\n").expect("parse");
        assert_eq!(bump_config_version(&mut tree), Ok(42));
        assert_eq!(
            tree.root
                .sections()
                .next()
                .and_then(|t| t.body.item("config_version"))
                .map(|i| i.value.as_str()),
            Some("42")
        );
        let mut no_version = parse("totem {\n}\n").expect("parse");
        assert_eq!(
            bump_config_version(&mut no_version),
            Err(BumpError::Missing)
        );
    }

    #[test]
    fn atomic_write_replaces_file() {
        let dir = std::env::temp_dir().join(format!("totemd-write-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let target = dir.join("corosync.conf");
        fs::write(&target, "old").expect("seed");
        write_atomic(&target, b"new").expect("write");
        assert_eq!(fs::read_to_string(&target).expect("read"), "new");
        let leftovers = fs::read_dir(&dir).expect("list").count();
        assert_eq!(leftovers, 1, "temporary file left behind");
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
