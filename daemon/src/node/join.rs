//! The join endpoint: a TCP listener on the node's link0 address (port
//! [`totem_client::join::JOIN_PORT_DEFAULT`], or `TOTEMD_JOIN_PORT`) that lets `pvecm add` on a
//! new node join with the one-time secret `pvecm create` printed (protocol and threat model in
//! [`totem_client::join`]).
//!
//! One connection at a time (a failed attempt also costs [`FAILED_ATTEMPT_DELAY`], so guessing is
//! slow). A request that authenticates becomes a [`ConfigChange::AddNode`] sent to the local
//! daemon over its control socket: the core checks it and commits the new nodelist through the
//! ring; once committed here the joiner gets the new corosync.conf and the authkey.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use totem_client::join::{
    refuse, JoinError, JoinReply, JoinRequest, MemberSession, SecretFile, FAILED_ATTEMPTS_MAX,
    FAILED_ATTEMPT_DELAY,
};
use totem_client::proto::{ConfigChange, Response};
use totem_client::Client;

/// A joiner that stalls longer than this between frames is dropped.
const JOIN_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the endpoint finds what it hands out.
#[derive(Clone, Debug)]
pub struct JoinEndpoint {
    /// The active secret (`join-secret` beside corosync.conf).
    pub secret_file: PathBuf,
    /// The authkey given to joiners.
    pub authkey: PathBuf,
    /// The local control socket.
    pub socket: PathBuf,
}

impl JoinEndpoint {
    /// Binds `addr` and serves joins on a thread of its own until the process ends.
    pub fn spawn(self, addr: SocketAddr) -> io::Result<()> {
        let listener = TcpListener::bind(addr)?;
        tracing::info!("[JOIN  ] join endpoint listening on {addr}");
        std::thread::Builder::new()
            .name("totemd-join".into())
            .spawn(move || self.serve(&listener))?;
        Ok(())
    }

    fn serve(&self, listener: &TcpListener) {
        let mut failures: u32 = 0;
        let mut failures_for: Option<SecretFile> = None;
        for stream in listener.incoming() {
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("[JOIN  ] accept: {e}");
                    continue;
                }
            };
            let peer = stream
                .peer_addr()
                .map_or_else(|_| "?".to_owned(), |a| a.to_string());
            let _ = stream.set_read_timeout(Some(JOIN_IO_TIMEOUT));
            let _ = stream.set_write_timeout(Some(JOIN_IO_TIMEOUT));
            let secret = match self.active_secret() {
                Ok(s) => s,
                Err(why) => {
                    tracing::warn!("[JOIN  ] join from {peer} refused: {why}");
                    let _ = refuse(&mut stream, &why);
                    continue;
                }
            };
            if failures_for.as_ref() != Some(&secret) {
                failures = 0;
                failures_for = Some(secret.clone());
            }
            match MemberSession::accept(&mut stream, &secret.secret) {
                Ok((mut session, request)) => {
                    let reply = self.admit(&peer, request);
                    if let Err(e) = session.reply(&mut stream, &reply) {
                        tracing::warn!("[JOIN  ] reply to {peer}: {e}");
                    }
                }
                Err(JoinError::BadSecret) => {
                    failures += 1;
                    std::thread::sleep(FAILED_ATTEMPT_DELAY);
                    let why = if failures >= FAILED_ATTEMPTS_MAX {
                        let _ = std::fs::remove_file(&self.secret_file);
                        format!(
                            "join refused: wrong join secret; the secret is revoked after \
                             {FAILED_ATTEMPTS_MAX} failed attempts (issue a new one)"
                        )
                    } else {
                        "join refused: wrong join secret".to_owned()
                    };
                    tracing::warn!(
                        "[JOIN  ] failed join attempt {failures} of {FAILED_ATTEMPTS_MAX} from {peer}"
                    );
                    let _ = refuse(&mut stream, &why);
                }
                Err(e) => tracing::warn!("[JOIN  ] join from {peer}: {e}"),
            }
        }
    }

    fn active_secret(&self) -> Result<SecretFile, String> {
        let text = std::fs::read_to_string(&self.secret_file).map_err(|_| {
            "join refused: no join secret is active on this node (run `pvecm create`, or issue a \
             new secret)"
                .to_owned()
        })?;
        let file = SecretFile::parse(&text).map_err(|e| format!("join refused: {e}"))?;
        if file.expired(SystemTime::now()) {
            return Err("join refused: the join secret has expired (issue a new one)".into());
        }
        Ok(file)
    }

    /// Commits the new node through the local daemon and builds the reply.
    fn admit(&self, peer: &str, request: JoinRequest) -> JoinReply {
        tracing::info!(
            "[JOIN  ] node {:?} from {peer} asks to join with links {:?}",
            request.name,
            request.links
        );
        match self.commit(request) {
            Ok(reply) => reply,
            Err(why) => {
                tracing::warn!("[JOIN  ] join from {peer} refused: {why}");
                JoinReply::Refused(why)
            }
        }
    }

    fn commit(&self, request: JoinRequest) -> Result<JoinReply, String> {
        let authkey = read_authkey(&self.authkey)?;
        let mut client =
            Client::connect(&self.socket).map_err(|e| format!("local daemon unreachable: {e}"))?;
        let change = ConfigChange::AddNode {
            name: request.name,
            nodeid: request.nodeid,
            votes: request.votes,
            links: request.links,
            force: request.force,
        };
        match client
            .request(totem_client::proto::Request::ChangeConfig(change))
            .map_err(|e| e.to_string())?
        {
            Response::ConfigCommitted(c) => Ok(JoinReply::Accepted {
                nodeid: c.nodeid.ok_or("the daemon assigned no node id")?,
                config: c.text,
                authkey,
            }),
            other => Err(format!("unexpected daemon answer {other:?}")),
        }
    }
}

fn read_authkey(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading the authkey {}: {e}", path.display()))
}
