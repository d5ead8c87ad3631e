//! The join protocol between `pvecm add` (the joiner) and a member's join endpoint (TCP, port
//! [`JOIN_PORT_DEFAULT`]), authenticated and encrypted with a one-time join secret.
//!
//! ```text
//! frame: length u32 BE (≤ FRAME_BYTES_MAX) | kind u8 | payload
//!   kind 0 hello:   MAGIC | nonce [32]          joiner → member, then member → joiner
//!   kind 1 sealed:  AES-256-GCM(key of the direction, nonce = 0u32 | seq u64 BE, aad = kind)
//!                   of a postcard JoinRequest (joiner → member) or JoinReply (member → joiner)
//!   kind 2 refusal: UTF-8 text, in clear (wrong, expired or revoked secret; nothing secret)
//! keys: HKDF-SHA256(salt = joiner nonce | member nonce, ikm = secret,
//!                   info = "totemd join v1 joiner->member" / "... member->joiner")
//! ```
//!
//! What an attacker learns. The secret is 128 random bits, never sent. An eavesdropper sees two
//! random nonces, message sizes and timing; without the secret the sealed frames are opaque and,
//! the secret being random (not a password), an offline search of it is out of reach. An active
//! attacker without the secret can only guess online: a frame that does not open counts as a
//! failed attempt, each costs [`FAILED_ATTEMPT_DELAY`], and after [`FAILED_ATTEMPTS_MAX`] the
//! member deletes the secret. Secrets expire ([`SECRET_LIFETIME_SECS_DEFAULT`]). Fresh nonces on
//! both sides make every session's keys new, so a recorded session cannot be replayed. There is
//! no forward secrecy: whoever later obtains the secret and a recording of a join can read the
//! authkey it carried, which is one more reason secrets are short-lived and deleted when revoked.
//! The `--fingerprint` check binds the join to the intended cluster: it is a hash of the cluster
//! authkey, checked by the joiner before it writes anything.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::{digest, hkdf};
use serde::{Deserialize, Serialize};

/// Default TCP port of the join endpoint: corosync's knet links use 5405 + link number
/// (REFERENCE.md §1, DESIGN.md) and qnetd 5403 (REFERENCE.md §5); 5404 is free with knet.
pub const JOIN_PORT_DEFAULT: u16 = 5404;
/// Environment variable overriding the join port (daemon and `pvecm`).
pub const JOIN_PORT_ENV: &str = "TOTEMD_JOIN_PORT";
/// File name of the active join secret, beside corosync.conf.
pub const SECRET_FILE_NAME: &str = "join-secret";
/// How long a join secret stays valid unless told otherwise: one hour.
pub const SECRET_LIFETIME_SECS_DEFAULT: u64 = 3600;
/// Failed attempts after which a member deletes its join secret.
pub const FAILED_ATTEMPTS_MAX: u32 = 5;
/// Delay before a failed attempt is answered (connections are served one at a time).
pub const FAILED_ATTEMPT_DELAY: Duration = Duration::from_secs(1);
/// Largest frame either side accepts (a corosync.conf and an authkey fit many times over).
pub const FRAME_BYTES_MAX: usize = 1 << 20;
/// Bytes of a join secret (128 bits).
pub const SECRET_BYTES: usize = 16;
/// Bytes of each side's hello nonce.
const NONCE_BYTES: usize = 32;
/// Protocol magic and version in the hello.
const MAGIC: &[u8; 8] = b"TJOIN\x00\x00\x01";
const KIND_HELLO: u8 = 0;
const KIND_SEALED: u8 = 1;
const KIND_REFUSAL: u8 = 2;
const INFO_JOINER_TO_MEMBER: &[u8] = b"totemd join v1 joiner->member";
const INFO_MEMBER_TO_JOINER: &[u8] = b"totemd join v1 member->joiner";
const FINGERPRINT_LABEL: &[u8] = b"totemd cluster fingerprint v1";

/// What the joiner asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The new node's name.
    pub name: String,
    /// Its node id, `None` for the smallest free one.
    pub nodeid: Option<u32>,
    /// Its votes, `None` for 1.
    pub votes: Option<u32>,
    /// Its address per link.
    pub links: Vec<(u8, String)>,
    /// Replace a node entry of the same name.
    pub force: bool,
}

/// What the member answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinReply {
    /// Committed: the joiner's configuration and key.
    Accepted {
        /// The joiner's node id.
        nodeid: u32,
        /// The committed corosync.conf.
        config: String,
        /// The cluster authkey.
        authkey: Vec<u8>,
    },
    /// Refused, with pvecm's reason (duplicate name, address, node id, link mismatch, ...).
    Refused(String),
}

/// Why a join exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// Socket trouble.
    #[error("join connection: {0}")]
    Io(#[from] io::Error),
    /// The peer sent something that is not this protocol.
    #[error("join protocol: {0}")]
    Protocol(String),
    /// A sealed frame did not open: the other side does not hold the same secret.
    #[error("join secret mismatch: the frame did not authenticate")]
    BadSecret,
    /// The member refused in clear (wrong, expired or revoked secret).
    #[error("{0}")]
    Refused(String),
    /// A join secret text or file is malformed.
    #[error("join secret: {0}")]
    Secret(String),
}

/// A join secret (128 random bits).
#[derive(Clone, PartialEq, Eq)]
pub struct JoinSecret([u8; SECRET_BYTES]);

impl std::fmt::Debug for JoinSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinSecret(..)")
    }
}

impl JoinSecret {
    /// A fresh secret from the kernel CSPRNG.
    pub fn generate() -> Result<JoinSecret, JoinError> {
        let mut bytes = [0u8; SECRET_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| JoinError::Secret(e.to_string()))?;
        Ok(JoinSecret(bytes))
    }

    /// Reads `xxxx-xxxx-...` (hex, dashes and blanks ignored).
    pub fn parse(text: &str) -> Result<JoinSecret, JoinError> {
        let hex: Vec<u8> = text
            .bytes()
            .filter(|b| *b != b'-' && !b.is_ascii_whitespace())
            .collect();
        if hex.len() != SECRET_BYTES * 2 {
            return Err(JoinError::Secret(format!(
                "expected {} hex digits, got {}",
                SECRET_BYTES * 2,
                hex.len()
            )));
        }
        let mut out = [0u8; SECRET_BYTES];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let digits = std::str::from_utf8(pair).map_err(|e| JoinError::Secret(e.to_string()))?;
            out[i] = u8::from_str_radix(digits, 16)
                .map_err(|_| JoinError::Secret(format!("{digits:?} is not hex")))?;
        }
        Ok(JoinSecret(out))
    }

    /// `xxxx-xxxx-xxxx-xxxx-xxxx-xxxx-xxxx-xxxx`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 && i % 2 == 0 {
                out.push('-');
            }
            let _ = write!(out, "{b:02x}");
        }
        out
    }
}

/// The active secret of a member and when it expires (seconds since the Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretFile {
    /// The secret.
    pub secret: JoinSecret,
    /// Expiry, Unix seconds.
    pub expires_unix: u64,
}

impl SecretFile {
    /// `secret: ...` and `expires: ...` lines.
    pub fn to_text(&self) -> String {
        format!(
            "secret: {}\nexpires: {}\n",
            self.secret.to_text(),
            self.expires_unix
        )
    }

    /// Reads the text [`SecretFile::to_text`] writes.
    pub fn parse(text: &str) -> Result<SecretFile, JoinError> {
        let mut secret = None;
        let mut expires = None;
        for line in text.lines() {
            match line.split_once(':') {
                Some(("secret", v)) => secret = Some(JoinSecret::parse(v.trim())?),
                Some(("expires", v)) => {
                    expires =
                        Some(v.trim().parse::<u64>().map_err(|_| {
                            JoinError::Secret(format!("bad expiry {:?}", v.trim()))
                        })?);
                }
                _ if line.trim().is_empty() => {}
                _ => return Err(JoinError::Secret(format!("unexpected line {line:?}"))),
            }
        }
        match (secret, expires) {
            (Some(secret), Some(expires_unix)) => Ok(SecretFile {
                secret,
                expires_unix,
            }),
            _ => Err(JoinError::Secret(
                "needs a secret and an expires line".into(),
            )),
        }
    }

    /// Writes the file with mode 0600 (atomically: temporary file, then rename).
    pub fn write(&self, path: &Path) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(self.to_text().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Whether the secret is past its expiry at `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        now.duration_since(UNIX_EPOCH)
            .map_or(true, |d| d.as_secs() >= self.expires_unix)
    }
}

/// The cluster fingerprint `pvecm create` prints and `pvecm add --fingerprint` checks:
/// SHA-256 over a label and the authkey, as colon-separated upper-case hex pairs.
pub fn fingerprint(authkey: &[u8]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(FINGERPRINT_LABEL);
    ctx.update(authkey);
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One side's keys for a session.
struct SessionKeys {
    send: LessSafeKey,
    recv: LessSafeKey,
    send_seq: u64,
    recv_seq: u64,
}

fn derive(secret: &JoinSecret, salt: &[u8], info: &'static [u8]) -> Result<LessSafeKey, JoinError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&secret.0);
    let info_parts = [info];
    let okm = prk
        .expand(&info_parts, &AES_256_GCM)
        .map_err(|_| JoinError::Protocol("key derivation failed".into()))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

impl SessionKeys {
    fn new(
        secret: &JoinSecret,
        joiner: &[u8],
        member: &[u8],
        am_joiner: bool,
    ) -> Result<Self, JoinError> {
        let salt = [joiner, member].concat();
        let j2m = derive(secret, &salt, INFO_JOINER_TO_MEMBER)?;
        let m2j = derive(secret, &salt, INFO_MEMBER_TO_JOINER)?;
        let (send, recv) = if am_joiner { (j2m, m2j) } else { (m2j, j2m) };
        Ok(SessionKeys {
            send,
            recv,
            send_seq: 0,
            recv_seq: 0,
        })
    }

    fn nonce(seq: u64) -> Nonce {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&seq.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }

    fn seal(&mut self, plain: &[u8]) -> Result<Vec<u8>, JoinError> {
        let mut buf = plain.to_vec();
        let nonce = Self::nonce(self.send_seq);
        self.send_seq += 1;
        self.send
            .seal_in_place_append_tag(nonce, Aad::from([KIND_SEALED]), &mut buf)
            .map_err(|_| JoinError::Protocol("sealing failed".into()))?;
        Ok(buf)
    }

    fn open(&mut self, mut sealed: Vec<u8>) -> Result<Vec<u8>, JoinError> {
        let nonce = Self::nonce(self.recv_seq);
        self.recv_seq += 1;
        let len = self
            .recv
            .open_in_place(nonce, Aad::from([KIND_SEALED]), &mut sealed)
            .map_err(|_| JoinError::BadSecret)?
            .len();
        sealed.truncate(len);
        Ok(sealed)
    }
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> Result<(), JoinError> {
    let len = u32::try_from(payload.len() + 1)
        .ok()
        .filter(|l| (*l as usize) <= FRAME_BYTES_MAX)
        .ok_or_else(|| JoinError::Protocol("frame too large".into()))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(&[kind])?;
    w.write_all(payload)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame: its kind and payload.
pub fn read_frame(r: &mut impl Read) -> Result<(u8, Vec<u8>), JoinError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > FRAME_BYTES_MAX {
        return Err(JoinError::Protocol(format!("bad frame length {len}")));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    let kind = buf.remove(0);
    Ok((kind, buf))
}

fn hello_payload(nonce: &[u8; NONCE_BYTES]) -> Vec<u8> {
    [&MAGIC[..], &nonce[..]].concat()
}

/// Decodes a hello payload into the peer's nonce.
pub fn parse_hello(kind: u8, payload: &[u8]) -> Result<[u8; NONCE_BYTES], JoinError> {
    if kind == KIND_REFUSAL {
        return Err(JoinError::Refused(
            String::from_utf8_lossy(payload).into_owned(),
        ));
    }
    if kind != KIND_HELLO
        || payload.len() != MAGIC.len() + NONCE_BYTES
        || !payload.starts_with(MAGIC)
    {
        return Err(JoinError::Protocol(
            "not a totemd join endpoint (bad hello)".into(),
        ));
    }
    let mut nonce = [0u8; NONCE_BYTES];
    nonce.copy_from_slice(&payload[MAGIC.len()..]);
    Ok(nonce)
}

fn fresh_nonce() -> Result<[u8; NONCE_BYTES], JoinError> {
    let mut n = [0u8; NONCE_BYTES];
    getrandom::fill(&mut n).map_err(|e| JoinError::Protocol(format!("random: {e}")))?;
    Ok(n)
}

/// The joiner's side: hello, sealed request, sealed reply.
pub fn join<S: Read + Write>(
    stream: &mut S,
    secret: &JoinSecret,
    request: &JoinRequest,
) -> Result<JoinReply, JoinError> {
    let mine = fresh_nonce()?;
    write_frame(stream, KIND_HELLO, &hello_payload(&mine))?;
    let (kind, payload) = read_frame(stream)?;
    let theirs = parse_hello(kind, &payload)?;
    let mut keys = SessionKeys::new(secret, &mine, &theirs, true)?;
    let body = postcard::to_stdvec(request).map_err(|e| JoinError::Protocol(e.to_string()))?;
    write_frame(stream, KIND_SEALED, &keys.seal(&body)?)?;
    let (kind, payload) = read_frame(stream)?;
    match kind {
        KIND_SEALED => {
            let plain = keys.open(payload)?;
            postcard::from_bytes(&plain).map_err(|e| JoinError::Protocol(e.to_string()))
        }
        KIND_REFUSAL => Err(JoinError::Refused(
            String::from_utf8_lossy(&payload).into_owned(),
        )),
        other => Err(JoinError::Protocol(format!(
            "unexpected frame kind {other}"
        ))),
    }
}

/// The member's side of one session, up to the decoded request; answer with
/// [`MemberSession::reply`] or [`refuse`].
pub struct MemberSession {
    keys: SessionKeys,
}

impl MemberSession {
    /// Reads the joiner's hello, answers with ours, reads and opens the request.
    /// `Err(JoinError::BadSecret)` is a failed attempt.
    pub fn accept<S: Read + Write>(
        stream: &mut S,
        secret: &JoinSecret,
    ) -> Result<(MemberSession, JoinRequest), JoinError> {
        let (kind, payload) = read_frame(stream)?;
        let theirs = parse_hello(kind, &payload)?;
        let mine = fresh_nonce()?;
        write_frame(stream, KIND_HELLO, &hello_payload(&mine))?;
        let mut keys = SessionKeys::new(secret, &theirs, &mine, false)?;
        let (kind, payload) = read_frame(stream)?;
        if kind != KIND_SEALED {
            return Err(JoinError::Protocol(format!("unexpected frame kind {kind}")));
        }
        let plain = keys.open(payload)?;
        let request =
            postcard::from_bytes(&plain).map_err(|e| JoinError::Protocol(e.to_string()))?;
        Ok((MemberSession { keys }, request))
    }

    /// Sends the sealed reply.
    pub fn reply<S: Write>(&mut self, stream: &mut S, reply: &JoinReply) -> Result<(), JoinError> {
        let body = postcard::to_stdvec(reply).map_err(|e| JoinError::Protocol(e.to_string()))?;
        let sealed = self.keys.seal(&body)?;
        write_frame(stream, KIND_SEALED, &sealed)
    }
}

/// Sends a refusal in clear (for joiners that do not hold the secret).
pub fn refuse<S: Write>(stream: &mut S, why: &str) -> Result<(), JoinError> {
    write_frame(stream, KIND_REFUSAL, why.as_bytes())
}

/// The join port: `TOTEMD_JOIN_PORT` or [`JOIN_PORT_DEFAULT`].
pub fn join_port() -> u16 {
    std::env::var(JOIN_PORT_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(JOIN_PORT_DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{TcpListener, TcpStream};

    fn request() -> JoinRequest {
        JoinRequest {
            name: "n2".into(),
            nodeid: None,
            votes: Some(1),
            links: vec![(0, "127.0.0.2".into())],
            force: false,
        }
    }

    fn serve_once(
        secret: JoinSecret,
    ) -> (u16, std::thread::JoinHandle<Result<JoinRequest, JoinError>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept()?;
            match MemberSession::accept(&mut s, &secret) {
                Ok((mut session, req)) => {
                    session.reply(
                        &mut s,
                        &JoinReply::Accepted {
                            nodeid: 2,
                            config: "c".into(),
                            authkey: vec![1, 2, 3],
                        },
                    )?;
                    Ok(req)
                }
                Err(e) => {
                    let _ = refuse(&mut s, "join refused: wrong join secret");
                    Err(e)
                }
            }
        });
        (port, handle)
    }

    #[test]
    fn same_secret_joins() {
        let secret = JoinSecret::generate().expect("secret");
        let (port, handle) = serve_once(secret.clone());
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let reply = join(&mut s, &secret, &request()).expect("join");
        assert!(matches!(reply, JoinReply::Accepted { nodeid: 2, .. }));
        assert_eq!(handle.join().expect("thread").expect("server"), request());
    }

    #[test]
    fn wrong_secret_is_refused_on_both_sides() {
        let (port, handle) = serve_once(JoinSecret::generate().expect("secret"));
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let other = JoinSecret::generate().expect("secret");
        let err = join(&mut s, &other, &request()).expect_err("refused");
        assert!(
            matches!(err, JoinError::Refused(ref m) if m.contains("wrong join secret")),
            "{err}"
        );
        assert!(matches!(
            handle.join().expect("thread"),
            Err(JoinError::BadSecret)
        ));
    }

    #[test]
    fn secret_text_and_file_round_trip() {
        let s = JoinSecret::generate().expect("secret");
        assert_eq!(JoinSecret::parse(&s.to_text()).expect("parse"), s);
        let f = SecretFile {
            secret: s,
            expires_unix: 42,
        };
        assert_eq!(SecretFile::parse(&f.to_text()).expect("parse"), f);
        assert!(f.expired(SystemTime::now()));
        assert!(JoinSecret::parse("abcd").is_err());
        assert!(SecretFile::parse("secret: zz\n").is_err());
    }

    #[test]
    fn fingerprint_is_sha256_pairs() {
        let fp = fingerprint(&[7u8; 256]);
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert_ne!(fp, fingerprint(&[8u8; 256]));
    }

    proptest! {
        #[test]
        fn frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut r = &bytes[..];
            if let Ok((kind, payload)) = read_frame(&mut r) {
                let _ = parse_hello(kind, &payload);
            }
            let _ = SecretFile::parse(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn frame_round_trip(kind in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = Vec::new();
            write_frame(&mut buf, kind, &payload).expect("write");
            let mut r = &buf[..];
            prop_assert_eq!(read_frame(&mut r).expect("read"), (kind, payload));
        }
    }
}
