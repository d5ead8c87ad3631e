//! Random bytes from the operating system, through the AEAD backend's generator (aws-lc-rs reads
//! the kernel's getrandom), for nonce salts and counter starts.

/// The system random number generator failed (no usable kernel entropy source).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

/// Fills `out` with random bytes.
pub(crate) fn fill(out: &mut [u8]) -> Result<(), RandomError> {
    aws_lc_rs::rand::fill(out).map_err(|_| RandomError)
}

/// A random `u64`.
pub(crate) fn u64() -> Result<u64, RandomError> {
    let mut bytes = [0u8; 8];
    fill(&mut bytes)?;
    Ok(u64::from_be_bytes(bytes))
}
