//! corosync.conf: read, type, check, resolve, write.
//!
//! The layers, each its own module:
//! * [`tree`] — the generic ordered tree (sections and `key: value` items) that keeps unknown keys;
//! * [`mod@parse`] — corosync's grammar, errors with line and column;
//! * [`model`] — the typed view (totem, interfaces, nodelist, quorum, logging) with corosync's
//!   defaults; `read` fills it from a tree, with warnings for keys it does not know;
//! * [`validate`] — the checks corosync and pvecm make (node ids, links, timings, ...);
//! * [`resolve`] — host names to IPs once, following `ip_version`, and the local-node choice;
//! * [`mod@write`] — text back out in pvecm's layout, `config_version` bumps, atomic file writes.
//!
//! [`load_file`] and [`load_str`] run them in order: what `totemd -t` and daemon start-up call.

pub mod model;
pub mod parse;
mod read;
pub mod resolve;
pub mod tree;
pub mod validate;
pub mod write;

use std::fmt;
use std::path::Path;

pub use model::{Config, ConfigError, Warning};
pub use parse::{parse, parse_bytes, ParseError};
pub use resolve::{find_local_node, LocalNodeError, ResolvedNode, Resolver, SystemResolver};
pub use tree::{Pos, Tree};
pub use write::{bump_config_version, canonicalize, write, write_atomic, write_canonical};

/// A config file that parsed, typed, validated and resolved.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The file as written (unknown keys included), for rewriting.
    pub tree: Tree,
    pub config: Config,
    /// `config.nodes` with addresses resolved, same order.
    pub nodes: Vec<ResolvedNode>,
    pub warnings: Vec<Warning>,
}

/// Why a config could not be loaded. Every error carries a position (0:0 when none applies).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// Typing, validation or resolution failed; all problems found, in file order.
    #[error("{}", .0.first().map(ToString::to_string).unwrap_or_default())]
    Invalid(Vec<ConfigError>),
}

/// One message line in compiler style, `FILE:LINE:COL: message`, or `FILE: message` when the
/// problem has no position.
pub struct Located<'a, M: fmt::Display> {
    pub file: &'a str,
    pub pos: Pos,
    pub message: M,
}

impl<M: fmt::Display> fmt::Display for Located<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pos == Pos::default() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.pos, self.message)
        }
    }
}

impl LoadError {
    /// Each problem as `(position, message)`, for `file:line:col: message` output.
    pub fn problems(&self) -> Vec<(Pos, String)> {
        match self {
            LoadError::Io(error) => vec![(Pos::default(), format!("cannot read: {error}"))],
            LoadError::Parse(error) => vec![(error.pos, error.kind.to_string())],
            LoadError::Invalid(errors) => errors
                .iter()
                .map(|error| (error.pos, error.message.clone()))
                .collect(),
        }
    }
}

/// Parses, types, validates and resolves `text`.
pub fn load_str(text: &str, resolver: &dyn Resolver) -> Result<Loaded, LoadError> {
    load_tree(parse(text)?, resolver)
}

/// Reads and loads the file at `path`.
pub fn load_file(path: &Path, resolver: &dyn Resolver) -> Result<Loaded, LoadError> {
    let bytes = std::fs::read(path)?;
    load_tree(parse_bytes(&bytes)?, resolver)
}

fn load_tree(tree: Tree, resolver: &dyn Resolver) -> Result<Loaded, LoadError> {
    let (config, mut warnings) =
        Config::from_tree(&tree).map_err(|error| LoadError::Invalid(vec![error]))?;
    let findings = validate::validate(&config);
    warnings.extend(findings.warnings);
    warnings.sort_by_key(|warning| warning.pos);
    if !findings.errors.is_empty() {
        return Err(LoadError::Invalid(findings.errors));
    }
    let nodes = resolve::resolve_nodes(&config, resolver).map_err(LoadError::Invalid)?;
    Ok(Loaded {
        tree,
        config,
        nodes,
        warnings,
    })
}
