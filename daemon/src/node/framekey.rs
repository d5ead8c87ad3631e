//! Frame encryption of a starting node: loads the authkey, advances the persisted boot counter
//! (whose value leads this boot's nonce salt, see `totem_crypto::boot`) and builds the link set's
//! AES-256-GCM sealer (this node's own key) and opener (peers' keys, derived on first frame).

use std::path::Path;

use totem_crypto::{AuthKey, BootCounter, NonceStart};
use totem_transport::linkset::FrameCrypto;

/// Key id the daemon seals under (no live rotation in the daemon yet).
pub const FRAME_KEY_ID: u8 = 1;

/// Why frame encryption could not be set up; each variant says which file or step.
#[derive(Debug, thiserror::Error)]
pub enum FrameKeyError {
    #[error("authkey: {0}")]
    AuthKey(#[from] totem_crypto::KeyError),
    #[error("{0}")]
    BootCounter(#[from] totem_crypto::BootCounterError),
    #[error("nonce start: {0}")]
    Random(#[from] totem_crypto::RandomError),
}

/// The link set's frame encryption for node `node_id` of `cluster_name`, with the boot counter
/// under `state_dir` advanced (durably) for this boot. Logs the authkey warning, if any, and the
/// boot number.
pub fn frame_crypto(
    authkey_path: &Path,
    state_dir: &Path,
    cluster_name: &str,
    node_id: u32,
) -> Result<FrameCrypto, FrameKeyError> {
    let (key, warning) = AuthKey::load(authkey_path)?;
    if let Some(w) = warning {
        tracing::warn!("[MAIN  ] {w}");
    }
    let counter = BootCounter::new(state_dir, node_id)?;
    let boot = counter.next_boot()?;
    tracing::info!(
        "[MAIN  ] frame encryption: AES-256-GCM, per-node key id {FRAME_KEY_ID}, boot {boot} ({})",
        counter.path().display()
    );
    let start = NonceStart::for_boot(boot)?;
    Ok(FrameCrypto::aes_gcm(
        &key,
        cluster_name,
        FRAME_KEY_ID,
        node_id,
        start,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_authkey(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("authkey");
        std::fs::write(&path, [0x42u8; 256]).expect("write authkey");
        path
    }

    #[test]
    fn each_start_advances_the_boot_counter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let authkey = write_authkey(dir.path());
        let state = dir.path().join("state");
        frame_crypto(&authkey, &state, "c", 3).expect("first start");
        let first = BootCounter::new(&state, 3)
            .expect("state dir")
            .last_boot()
            .expect("readable")
            .expect("stored");
        frame_crypto(&authkey, &state, "c", 3).expect("second start");
        let second = BootCounter::new(&state, 3)
            .expect("state dir")
            .last_boot()
            .expect("readable")
            .expect("stored");
        assert_eq!(second, first.wrapping_add(1));
    }

    #[test]
    fn damaged_boot_counter_stops_the_start_with_the_file_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let authkey = write_authkey(dir.path());
        std::fs::write(dir.path().join("bootcount_3"), "not a number\n").expect("write");
        let error = frame_crypto(&authkey, dir.path(), "c", 3).expect_err("refused");
        assert!(matches!(error, FrameKeyError::BootCounter(_)), "{error:?}");
        assert!(error.to_string().contains("bootcount_3"), "{error}");
    }
}
