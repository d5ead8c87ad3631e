//! The persisted ring sequence number: a restarted node must never reuse a ring sequence, so
//! Totem's `PersistRingSeq` is written durably before any frame that uses it goes out (corosync
//! keeps the same fact in `/var/lib/corosync/ringid_<nodeid>`).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The file that holds one node's last ring sequence number.
#[derive(Debug)]
pub struct RingSeqFile {
    path: PathBuf,
}

impl RingSeqFile {
    /// The file for `node_id` under `state_dir` (created if missing).
    pub fn new(state_dir: &Path, node_id: u32) -> io::Result<RingSeqFile> {
        fs::create_dir_all(state_dir)?;
        Ok(RingSeqFile {
            path: state_dir.join(format!("ringid_{node_id}")),
        })
    }

    /// The stored sequence, 0 when the file does not exist yet. A corrupt file is an error: the
    /// operator must look, since guessing could reuse a sequence.
    pub fn load(&self) -> io::Result<u64> {
        match fs::read_to_string(&self.path) {
            Ok(text) => text.trim().parse::<u64>().map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a ring sequence number: {e}", self.path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Stores `seq` durably: write a temporary file, fsync it, rename it over the old one.
    pub fn store(&self, seq: u64) -> io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            writeln!(f, "{seq}")?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_then_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = RingSeqFile::new(dir.path(), 3).expect("state dir");
        assert_eq!(f.load().expect("missing file is 0"), 0);
        f.store(0x1a8).expect("store");
        assert_eq!(f.load().expect("load"), 0x1a8);
        fs::write(dir.path().join("ringid_3"), "garbage").expect("write");
        assert!(f.load().is_err());
    }
}
