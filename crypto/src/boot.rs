//! The persisted boot counter of a sender: its boot number leads the nonce salt of the boot
//! ([`crate::nonce::NonceStart::for_boot`]), so boots of a node never share a salt while its state
//! directory survives (any 2^20 consecutive boots).
//!
//! One small text file per node id in the daemon's state directory (`bootcount_<nodeid>`, beside
//! the ring sequence file `ringid_<nodeid>`), holding the last boot number in decimal.
//! [`BootCounter::next_boot`] reads it, adds one (wrapping after 2^32 boots), and stores the new
//! value durably (temporary file, fsync, rename, fsync of the directory) before returning it, so
//! the number is on disk before any frame uses it.
//!
//! * No file (first start, or the state directory was wiped): the boot number is drawn at random,
//!   not 0, so a reinstalled node does not walk through the salts of its earlier life; its salt
//!   is then random as a whole and lands on one of the node's earlier salts with probability
//!   (earlier boots) / 2^32. Even then nonces repeat only if the boots' random counter ranges
//!   overlap too (see [`crate::nonce`]).
//! * A damaged file is an error, never a silent reset: any value we made up could be one an
//!   earlier boot used. The message names the file and says how to recover (delete it: the next
//!   start draws a random boot number).
//! * A state directory restored from a backup or snapshot repeats boot numbers; the salt's 12
//!   random bits and the random first counter of each boot keep salts (probably) and nonces
//!   (all but certainly) apart then (see [`crate::nonce`]).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::random::{self, RandomError};

/// File name prefix of the boot counter in the state directory; the node id follows.
pub const BOOT_COUNTER_FILE_PREFIX: &str = "bootcount_";
/// Longest boot counter file accepted: `u32::MAX` in decimal, a newline, some slack for spaces.
const BOOT_COUNTER_FILE_MAX_BYTES: u64 = 64;

/// Why the boot counter could not be read or advanced. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum BootCounterError {
    #[error("cannot create the state directory {}: {source}", path.display())]
    StateDir { path: PathBuf, source: io::Error },
    #[error("cannot read the boot counter {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "the boot counter {} is damaged ({problem}); totemd does not guess a value, because a \
         guess could repeat the AES-GCM nonces of an earlier boot. Check the disk, then delete \
         the file: the next start draws a random boot number",
        path.display()
    )]
    Corrupt { path: PathBuf, problem: String },
    #[error("cannot store the boot counter {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot draw a random first boot number: {0}")]
    Random(#[from] RandomError),
}

/// The boot counter file of one node id.
#[derive(Debug, Clone)]
pub struct BootCounter {
    path: PathBuf,
}

impl BootCounter {
    /// The counter of `node_id` under `state_dir` (the directory is created if missing).
    pub fn new(state_dir: &Path, node_id: u32) -> Result<BootCounter, BootCounterError> {
        fs::create_dir_all(state_dir).map_err(|source| BootCounterError::StateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        Ok(BootCounter {
            path: state_dir.join(format!("{BOOT_COUNTER_FILE_PREFIX}{node_id}")),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last stored boot number; `None` when there is no file yet.
    pub fn last_boot(&self) -> Result<Option<u32>, BootCounterError> {
        let bytes = match read_limited(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(BootCounterError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        parse_boot_counter(&bytes)
            .map(Some)
            .map_err(|problem| BootCounterError::Corrupt {
                path: self.path.clone(),
                problem,
            })
    }

    /// Advances the counter for a new boot and returns the new boot number, stored durably
    /// before it is returned: the last number plus one (wrapping), or a random number when there
    /// is no file.
    pub fn next_boot(&self) -> Result<u32, BootCounterError> {
        let boot = match self.last_boot()? {
            Some(last) => last.wrapping_add(1),
            None => {
                let mut bytes = [0u8; 4];
                random::fill(&mut bytes)?;
                u32::from_be_bytes(bytes)
            }
        };
        self.store(boot).map_err(|source| BootCounterError::Write {
            path: self.path.clone(),
            source,
        })?;
        Ok(boot)
    }

    /// Writes `boot` durably: a temporary file, fsync, rename over the old one, fsync of the
    /// directory (so the rename itself survives a crash).
    fn store(&self, boot: u32) -> io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        {
            let mut file = File::create(&tmp)?;
            writeln!(file, "{boot}")?;
            file.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Reads at most [`BOOT_COUNTER_FILE_MAX_BYTES`] + 1 bytes, so a huge file is refused cheaply.
fn read_limited(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    File::open(path)?
        .take(BOOT_COUNTER_FILE_MAX_BYTES + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Parses the file's content: a decimal `u32`, surrounding ASCII whitespace allowed.
pub fn parse_boot_counter(bytes: &[u8]) -> Result<u32, String> {
    if bytes.len() as u64 > BOOT_COUNTER_FILE_MAX_BYTES {
        return Err(format!("longer than {BOOT_COUNTER_FILE_MAX_BYTES} bytes"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
    let digits = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if digits.is_empty() {
        return Err("empty".to_string());
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{digits:?} is not a decimal number"));
    }
    digits
        .parse::<u32>()
        .map_err(|_| format!("{digits} is above {}", u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_boot_is_random_and_later_boots_count_up_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = {
            let counter = BootCounter::new(dir.path(), 3).expect("state dir");
            assert_eq!(counter.last_boot().expect("no file yet"), None);
            counter.next_boot().expect("first boot")
        };
        // Each "restart" opens the file anew, as the daemon does.
        for restart in 1..=5u32 {
            let counter = BootCounter::new(dir.path(), 3).expect("state dir");
            assert_eq!(
                counter.next_boot().expect("boot"),
                first.wrapping_add(restart)
            );
        }
        let text = fs::read_to_string(dir.path().join("bootcount_3")).expect("file");
        assert_eq!(text, format!("{}\n", first.wrapping_add(5)));
    }

    #[test]
    fn first_boots_of_fresh_state_directories_differ() {
        let boots: Vec<u32> = (0..8)
            .map(|_| {
                let dir = tempfile::tempdir().expect("tempdir");
                BootCounter::new(dir.path(), 1)
                    .expect("state dir")
                    .next_boot()
                    .expect("boot")
            })
            .collect();
        // Eight draws of 32 random bits: all equal only if the generator is broken.
        assert!(boots.iter().any(|&b| b != boots[0]), "{boots:?}");
    }

    #[test]
    fn node_ids_have_their_own_counters() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("bootcount_1"), "10\n").expect("write");
        fs::write(dir.path().join("bootcount_2"), "500\n").expect("write");
        let one = BootCounter::new(dir.path(), 1).expect("state dir");
        let two = BootCounter::new(dir.path(), 2).expect("state dir");
        assert_eq!(one.next_boot().expect("boot"), 11);
        assert_eq!(two.next_boot().expect("boot"), 501);
    }

    #[test]
    fn wraps_after_u32_max() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("bootcount_1"), format!("{}\n", u32::MAX)).expect("write");
        let counter = BootCounter::new(dir.path(), 1).expect("state dir");
        assert_eq!(counter.next_boot().expect("boot"), 0);
        assert_eq!(counter.next_boot().expect("boot"), 1);
    }

    #[test]
    fn damaged_file_is_an_error_naming_it_and_stays_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bootcount_7");
        for damaged in [
            &b""[..],
            b"\n",
            b"garbage\n",
            b"-1\n",
            b"4294967296\n",
            b"12 13\n",
            b"0x10\n",
            b"\xff\xfe\n",
            &[b'1'; 100],
        ] {
            fs::write(&path, damaged).expect("write");
            let counter = BootCounter::new(dir.path(), 7).expect("state dir");
            let error = counter
                .next_boot()
                .expect_err("damaged file must not be used");
            assert!(
                matches!(error, BootCounterError::Corrupt { .. }),
                "{damaged:?}: {error:?}"
            );
            let message = error.to_string();
            assert!(message.contains("bootcount_7"), "{message}");
            assert!(message.contains("delete the file"), "{message}");
            assert_eq!(fs::read(&path).expect("read"), damaged, "file rewritten");
        }
    }

    #[test]
    fn whitespace_around_the_number_is_accepted() {
        assert_eq!(parse_boot_counter(b"  42 \r\n"), Ok(42));
        assert_eq!(parse_boot_counter(b"0"), Ok(0));
        assert_eq!(parse_boot_counter(b"4294967295\n"), Ok(u32::MAX));
    }

    #[test]
    fn unreadable_path_is_a_read_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("bootcount_4")).expect("mkdir");
        let counter = BootCounter::new(dir.path(), 4).expect("state dir");
        assert!(matches!(
            counter.next_boot(),
            Err(BootCounterError::Read { .. })
        ));
    }

    #[test]
    fn a_leftover_temporary_file_does_not_matter() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("bootcount_5"), "99\n").expect("write");
        fs::write(dir.path().join("bootcount_5.tmp"), "half-writ").expect("write");
        let counter = BootCounter::new(dir.path(), 5).expect("state dir");
        assert_eq!(counter.next_boot().expect("boot"), 100);
        assert!(!dir.path().join("bootcount_5.tmp").exists());
    }

    proptest! {
        /// Any file content either parses to the number it spells or is refused; never a panic.
        #[test]
        fn parse_accepts_exactly_decimal_u32(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let result = parse_boot_counter(&bytes);
            let canonical = std::str::from_utf8(&bytes)
                .ok()
                .filter(|_| bytes.len() as u64 <= BOOT_COUNTER_FILE_MAX_BYTES)
                .map(|t| t.trim_matches(|c: char| c.is_ascii_whitespace()))
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<u32>().ok());
            prop_assert_eq!(result.ok(), canonical);
        }

        #[test]
        fn stored_numbers_read_back(boot: u32) {
            prop_assert_eq!(parse_boot_counter(format!("{boot}\n").as_bytes()), Ok(boot));
        }
    }
}
