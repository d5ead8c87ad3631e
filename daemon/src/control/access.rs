//! Who may use the control socket: the peer's credentials (SO_PEERCRED) decide.
//!
//! root may do everything; members of the configured read group (primary or supplementary) may
//! ask for status, nodes and links; everybody else is refused with a clear reply.

use std::io;

use mio::net::UnixStream;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{Gid, Group, Uid, User};

/// The kernel's word on who is at the other end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Process id.
    pub pid: u32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// What a connection may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Everything (root).
    Full,
    /// Status, nodes and links only.
    ReadOnly,
    /// Nothing.
    None,
}

/// The socket's access rule.
#[derive(Clone, Debug, Default)]
pub struct AccessPolicy {
    read_group: Option<(String, u32)>,
}

impl AccessPolicy {
    /// root only.
    pub fn root_only() -> AccessPolicy {
        AccessPolicy { read_group: None }
    }

    /// root, plus read-only access for members of `group` (looked up now).
    pub fn with_read_group(group: &str) -> io::Result<AccessPolicy> {
        let found = Group::from_name(group)
            .map_err(io::Error::from)?
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no such group: {group}"))
            })?;
        Ok(AccessPolicy {
            read_group: Some((group.to_string(), found.gid.as_raw())),
        })
    }

    /// What `creds` may do.
    pub fn access(&self, creds: &Credentials) -> Access {
        if creds.uid == 0 {
            return Access::Full;
        }
        match &self.read_group {
            Some((_, gid)) if in_group(creds, *gid) => Access::ReadOnly,
            _ => Access::None,
        }
    }

    /// `", or read-only for group G"` for refusal messages.
    pub fn describe_read_group(&self) -> String {
        match &self.read_group {
            Some((name, _)) => format!(", or read-only for members of group {name}"),
            None => String::new(),
        }
    }
}

fn in_group(creds: &Credentials, gid: u32) -> bool {
    if creds.gid == gid {
        return true;
    }
    // Supplementary groups of the peer's user, from the group database.
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(creds.uid)) else {
        return false;
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, Gid::from_raw(creds.gid))
        .map(|groups| groups.iter().any(|g| g.as_raw() == gid))
        .unwrap_or(false)
}

/// Reads SO_PEERCRED of a connected stream.
pub fn peer_credentials(stream: &UnixStream) -> io::Result<Credentials> {
    let cred = getsockopt(stream, PeerCredentials).map_err(io::Error::from)?;
    Ok(Credentials {
        pid: u32::try_from(cred.pid()).unwrap_or(0),
        uid: cred.uid(),
        gid: cred.gid(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_full_others_none_without_group() {
        let p = AccessPolicy::root_only();
        let root = Credentials {
            pid: 1,
            uid: 0,
            gid: 0,
        };
        let user = Credentials {
            pid: 1,
            uid: 1000,
            gid: 1000,
        };
        assert_eq!(p.access(&root), Access::Full);
        assert_eq!(p.access(&user), Access::None);
    }

    #[test]
    fn read_group_by_primary_gid() {
        let p = AccessPolicy {
            read_group: Some(("ops".into(), 4242)),
        };
        let member = Credentials {
            pid: 1,
            uid: 1000,
            gid: 4242,
        };
        assert_eq!(p.access(&member), Access::ReadOnly);
        assert!(p.describe_read_group().contains("ops"));
    }
}
