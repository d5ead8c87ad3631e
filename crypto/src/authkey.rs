//! The cluster authkey file as corosync-keygen writes it: raw random bytes, 128..=4096 of them
//! (256 by default), mode 0400. Loading checks the size and warns about loose permissions;
//! generating and writing serve `pvecm keygen` and cluster creation. Key bytes are zeroized on drop.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Smallest key libknet accepts (`KNET_MIN_KEY_LEN`, libknet.h:777; REFERENCE.md §1.6).
pub const AUTHKEY_MIN_LEN_BYTES: usize = 128;
/// Largest key libknet accepts (`KNET_MAX_KEY_LEN`, libknet.h:778; REFERENCE.md §1.6).
pub const AUTHKEY_MAX_LEN_BYTES: usize = 4096;
/// corosync-keygen's default key size (tools/corosync-keygen.c:55; REFERENCE.md §1.6).
pub const AUTHKEY_DEFAULT_LEN_BYTES: usize = 256;
/// Where corosync looks for the key unless `totem.keyfile` says otherwise.
pub const AUTHKEY_DEFAULT_PATH: &str = "/etc/corosync/authkey";
/// The mode corosync-keygen gives the file: read-only for its owner.
pub const AUTHKEY_FILE_MODE: u32 = 0o400;
/// Permission bits that let anyone but the owner touch the key (group and others).
const NON_OWNER_MODE_BITS: u32 = 0o077;

/// Why a key could not be loaded, generated or written. Each variant names the file when there is one.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read authkey {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("authkey {} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error(
        "authkey {} has {len} bytes, expected {AUTHKEY_MIN_LEN_BYTES}..={AUTHKEY_MAX_LEN_BYTES} \
         (corosync-keygen writes {AUTHKEY_DEFAULT_LEN_BYTES})",
        path.display()
    )]
    FileSize { path: PathBuf, len: u64 },
    #[error("authkey of {len} bytes, expected {AUTHKEY_MIN_LEN_BYTES}..={AUTHKEY_MAX_LEN_BYTES}")]
    Size { len: usize },
    #[error("cannot draw {len} random bytes for a new authkey: {source}")]
    Random { len: usize, source: io::Error },
    #[error("cannot write authkey {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// Something about a loaded key the daemon should log, though the key is usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyWarning {
    #[error(
        "authkey {} has mode {mode:04o}: group or others can access it \
         (corosync-keygen writes {AUTHKEY_FILE_MODE:04o}; run chmod 0400)",
        path.display()
    )]
    LoosePermissions { path: PathBuf, mode: u32 },
}

/// A cluster authkey; its bytes are wiped when it is dropped and never printed.
#[derive(Clone)]
pub struct AuthKey {
    bytes: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthKey")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

fn check_len(len: usize) -> Result<(), KeyError> {
    if (AUTHKEY_MIN_LEN_BYTES..=AUTHKEY_MAX_LEN_BYTES).contains(&len) {
        Ok(())
    } else {
        Err(KeyError::Size { len })
    }
}

impl AuthKey {
    /// A key from bytes already in memory (copied; the caller wipes its own copy).
    pub fn from_bytes(bytes: &[u8]) -> Result<AuthKey, KeyError> {
        check_len(bytes.len())?;
        Ok(AuthKey {
            bytes: Zeroizing::new(bytes.to_vec()),
        })
    }

    /// A new key of `len` bytes filled by `fill_random` (the daemon and CLI pass the OS RNG).
    pub fn generate<F>(len: usize, fill_random: F) -> Result<AuthKey, KeyError>
    where
        F: FnOnce(&mut [u8]) -> io::Result<()>,
    {
        check_len(len)?;
        let mut bytes = Zeroizing::new(vec![0u8; len]);
        fill_random(&mut bytes).map_err(|source| KeyError::Random { len, source })?;
        Ok(AuthKey { bytes })
    }

    /// Loads a key file. The size must be 128..=4096 bytes; group or world access to the file is
    /// returned as a warning for the caller to log (corosync starts with such a key too).
    pub fn load(path: &Path) -> Result<(AuthKey, Option<KeyWarning>), KeyError> {
        let read_error = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(read_error)?;
        let metadata = file.metadata().map_err(read_error)?;
        if !metadata.is_file() {
            return Err(KeyError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let file_size_error = |len| KeyError::FileSize {
            path: path.to_path_buf(),
            len,
        };
        let announced_len = metadata.len();
        if !(AUTHKEY_MIN_LEN_BYTES as u64..=AUTHKEY_MAX_LEN_BYTES as u64).contains(&announced_len) {
            return Err(file_size_error(announced_len));
        }
        // Read at most one byte past the limit, so a file that grew since `metadata` is caught
        // without reading it whole.
        let mut bytes = Zeroizing::new(Vec::with_capacity(AUTHKEY_MAX_LEN_BYTES + 1));
        (&mut file)
            .take(AUTHKEY_MAX_LEN_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if check_len(bytes.len()).is_err() {
            return Err(file_size_error(bytes.len() as u64));
        }
        let mode = metadata.permissions().mode() & 0o7777;
        let warning = (mode & NON_OWNER_MODE_BITS != 0).then(|| KeyWarning::LoosePermissions {
            path: path.to_path_buf(),
            mode,
        });
        Ok((AuthKey { bytes }, warning))
    }

    /// Writes the key to `path` with mode 0400, atomically: a temporary file in the same directory
    /// is written, synced and renamed over `path`, then the directory is synced. A reader sees the
    /// old file or the complete new one, never a partial key.
    pub fn write_atomic(&self, path: &Path) -> Result<(), KeyError> {
        let write_error = |source| KeyError::Write {
            path: path.to_path_buf(),
            source,
        };
        let file_name = path
            .file_name()
            .ok_or_else(|| write_error(io::Error::from(io::ErrorKind::InvalidInput)))?;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(file_name);
        temp_name.push(format!(".tmp{}", std::process::id()));
        let temp_path = dir.join(temp_name);

        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(AUTHKEY_FILE_MODE)
                .open(&temp_path)?;
            // The umask may only remove bits, but set the mode explicitly in case the
            // filesystem ignores the create mode.
            file.set_permissions(fs::Permissions::from_mode(AUTHKEY_FILE_MODE))?;
            file.write_all(&self.bytes)?;
            file.sync_all()?;
            fs::rename(&temp_path, path)?;
            File::open(dir)?.sync_all()
        })();
        if written.is_err() {
            // Best effort: a leftover temporary file is harmless but untidy.
            let _ = fs::remove_file(&temp_path);
        }
        written.map_err(write_error)
    }

    /// The key's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false (a key has at least 128 bytes); present because `len` is.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The key material, for the key derivation.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_file(dir: &Path, name: &str, len: usize, mode: u32) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, vec![0xab; len]).expect("write key file");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn accepts_the_size_limits_and_the_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [
            AUTHKEY_MIN_LEN_BYTES,
            AUTHKEY_DEFAULT_LEN_BYTES,
            AUTHKEY_MAX_LEN_BYTES,
        ] {
            let path = write_file(dir.path(), &format!("k{len}"), len, 0o400);
            let (key, warning) = AuthKey::load(&path).expect("valid size loads");
            assert_eq!(key.len(), len);
            assert_eq!(warning, None);
        }
    }

    #[test]
    fn rejects_one_byte_outside_the_limits_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [0, AUTHKEY_MIN_LEN_BYTES - 1, AUTHKEY_MAX_LEN_BYTES + 1] {
            let path = write_file(dir.path(), &format!("k{len}"), len, 0o400);
            match AuthKey::load(&path) {
                Err(KeyError::FileSize { path: p, len: l }) => {
                    assert_eq!(p, path);
                    assert_eq!(l, len as u64);
                }
                other => panic!("size {len}: expected FileSize, got {other:?}"),
            }
            let message = AuthKey::load(&path).expect_err("bad size").to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
    }

    #[test]
    fn warns_about_group_or_world_access() {
        let dir = tempfile::tempdir().expect("tempdir");
        for mode in [0o440, 0o404, 0o644, 0o600 | 0o020] {
            let path = write_file(dir.path(), &format!("m{mode:o}"), 256, mode);
            let (_, warning) = AuthKey::load(&path).expect("loads");
            assert_eq!(
                warning,
                Some(KeyWarning::LoosePermissions { path, mode }),
                "mode {mode:o}"
            );
        }
        let path = write_file(dir.path(), "owner-only", 256, 0o600);
        assert_eq!(AuthKey::load(&path).expect("loads").1, None);
    }

    #[test]
    fn missing_file_is_a_read_error_with_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent");
        match AuthKey::load(&path) {
            Err(KeyError::Read { path: p, source }) => {
                assert_eq!(p, path);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected Read, got {other:?}"),
        }
    }

    #[test]
    fn path_through_a_file_is_a_read_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = write_file(dir.path(), "plain", 256, 0o400);
        let path = file.join("authkey");
        assert!(matches!(AuthKey::load(&path), Err(KeyError::Read { path: p, .. }) if p == path));
    }

    #[test]
    fn unreadable_file_is_a_read_error_unless_we_are_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_file(dir.path(), "unreadable", 256, 0o000);
        // root reads any file, so the permission check cannot fail there: the test then only
        // proves a 0000 file is reported through the warning.
        if File::open(&path).is_ok() {
            eprintln!("skipping the unreadable-file check: running as root reads mode 0000 files");
            let (_, warning) = AuthKey::load(&path).expect("root reads it");
            assert_eq!(warning, None, "mode 0000 gives others nothing");
            return;
        }
        assert!(matches!(AuthKey::load(&path), Err(KeyError::Read { path: p, .. }) if p == path));
    }

    #[test]
    fn directory_is_not_a_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            AuthKey::load(dir.path()),
            Err(KeyError::NotAFile { .. }) | Err(KeyError::Read { .. })
        ));
    }

    #[test]
    fn generate_checks_size_and_propagates_rng_errors() {
        let key = AuthKey::generate(AUTHKEY_DEFAULT_LEN_BYTES, |buf| {
            buf.fill(7);
            Ok(())
        })
        .expect("generate");
        assert_eq!(key.as_bytes(), &[7u8; AUTHKEY_DEFAULT_LEN_BYTES][..]);
        assert!(matches!(
            AuthKey::generate(AUTHKEY_MAX_LEN_BYTES + 1, |_| Ok(())),
            Err(KeyError::Size { len }) if len == AUTHKEY_MAX_LEN_BYTES + 1
        ));
        assert!(matches!(
            AuthKey::generate(256, |_| Err(io::Error::other("no entropy"))),
            Err(KeyError::Random { len: 256, .. })
        ));
    }

    #[test]
    fn write_atomic_round_trips_with_mode_0400_and_replaces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("authkey");
        let first = AuthKey::generate(256, |b| {
            b.fill(1);
            Ok(())
        })
        .expect("generate");
        first.write_atomic(&path).expect("write");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode, AUTHKEY_FILE_MODE);
        let (loaded, warning) = AuthKey::load(&path).expect("load");
        assert_eq!(loaded.as_bytes(), first.as_bytes());
        assert_eq!(warning, None);

        let second = AuthKey::generate(128, |b| {
            b.fill(2);
            Ok(())
        })
        .expect("generate");
        second.write_atomic(&path).expect("replace");
        assert_eq!(
            AuthKey::load(&path).expect("load").0.as_bytes(),
            second.as_bytes()
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("authkey")]);
    }

    #[test]
    fn write_into_a_missing_directory_fails_with_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("no-such-dir").join("authkey");
        let key = AuthKey::from_bytes(&[3; 128]).expect("key");
        assert!(
            matches!(key.write_atomic(&path), Err(KeyError::Write { path: p, .. }) if p == path)
        );
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let key = AuthKey::from_bytes(&[0x5a; 128]).expect("key");
        let shown = format!("{key:?}");
        assert!(!shown.contains("90"), "{shown}");
        assert!(shown.contains("len: 128"), "{shown}");
    }
}
