//! Run ids from the kernel's random source (nonce starts come from totem-crypto).

use std::io::Read;

/// `N` random bytes from /dev/urandom; falls back to clock and pid mixing when it cannot be read
/// (the values only tell runs apart).
fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut out));
    if read.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
        for (i, b) in out.iter_mut().enumerate() {
            *b = (mixed.rotate_left(8 * (i as u32 % 8)) & 0xff) as u8;
        }
    }
    out
}

/// A random 64-bit value.
pub fn u64() -> u64 {
    u64::from_be_bytes(bytes())
}
