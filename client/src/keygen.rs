//! `pvecm keygen FILE`: a new cluster authkey, like `corosync-keygen -k FILE`: random bytes from
//! the kernel, mode 0400, written atomically and never over an existing file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Authkey length in bytes (corosync-keygen's default key length, `tools/corosync-keygen.c`
/// `DEFAULT_KEYLEN`).
pub const AUTHKEY_BYTES: usize = 256;

/// File mode of the authkey: read-only for its owner, as corosync-keygen creates it.
const AUTHKEY_MODE: u32 = 0o400;

/// Why no authkey was written.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    /// The target exists; pvecm refuses to overwrite a key.
    #[error("authentication key '{}' already exists", .0.display())]
    Exists(PathBuf),
    /// The kernel's random source failed.
    #[error("reading random bytes: {0}")]
    Random(getrandom::Error),
    /// Creating, writing or linking the file failed.
    #[error("writing '{}': {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

/// Writes a new random authkey of [`AUTHKEY_BYTES`] to `path` with mode 0400.
///
/// The key is written to a temporary file beside `path`, synced, then hard-linked to `path`
/// (which fails rather than replace an existing file) and the directory synced: a crash leaves
/// either no key or the whole key.
pub fn write_authkey(path: &Path) -> Result<(), KeygenError> {
    if path.exists() {
        return Err(KeygenError::Exists(path.to_owned()));
    }
    let mut key = [0u8; AUTHKEY_BYTES];
    getrandom::fill(&mut key).map_err(KeygenError::Random)?;

    let temporary = temporary_path(path);
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| KeygenError::Io { path, source }
    };
    let result = write_synced(&temporary, &key).and_then(|()| fs::hard_link(&temporary, path));
    // The temporary name is gone whether or not the link succeeded.
    let _ = fs::remove_file(&temporary);
    result.map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            KeygenError::Exists(path.to_owned())
        } else {
            KeygenError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    sync_parent(path).map_err(io_error(path))
}

/// `<dir>/.<name>.tmp.<pid>` beside `path`.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

/// Creates `path` exclusively with [`AUTHKEY_MODE`], writes `bytes`, syncs.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(AUTHKEY_MODE)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Syncs the directory holding `path` so the new name is durable.
fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_file_is_never_replaced() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("authkey");
        fs::write(&path, b"old key").expect("written");
        let error = write_authkey(&path).expect_err("exists");
        assert!(matches!(error, KeygenError::Exists(_)), "{error}");
        assert_eq!(fs::read(&path).expect("readable"), b"old key");
    }

    #[test]
    fn a_missing_directory_is_an_io_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("absent/authkey");
        let error = write_authkey(&path).expect_err("no directory");
        assert!(matches!(error, KeygenError::Io { .. }), "{error}");
        assert!(error.to_string().contains("authkey"), "{error}");
    }
}
