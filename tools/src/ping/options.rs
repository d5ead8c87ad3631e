//! totem-ping's command line: omping's options and defaults (REFERENCE.md §6, omping `cli.c`),
//! plus our `--local`, `--json`, `--io`, `--encrypt`/`--key`, `--size`.
//!
//! Multicast is off unless `-m ADDR` or `-M asm` is given (omping always multicasts; corosync 3
//! links are unicast-only, so unicast is what most runs need).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};
use thiserror::Error;
use totem_transport::io::Backend;

use crate::hosts::Family;

/// omping's default port (`DEFAULT_PORT_S` "4321").
pub const DEFAULT_PORT: u16 = 4321;
/// omping's default and minimum unforced interval, ms (`DEFAULT_WAIT_TIME` 1000).
pub const DEFAULT_INTERVAL_MS: u64 = 1000;
/// omping's default and minimum unforced TTL (`DEFAULT_TTL` 64).
pub const DEFAULT_TTL: u32 = 64;
/// omping's wait-for-finish multiplier of the interval (`DEFAULT_WFF_TIME_MUL` 3).
pub const WAIT_FOR_FINISH_MULTIPLIER: u32 = 3;
/// Smallest -R/-S value omping accepts, bytes.
pub const MIN_SOCKET_BUFFER_BYTES: usize = 2048;
/// Query datagram size, bytes (omping's messages were 69 bytes in our capture; ours are padded to
/// the same size so per-reply `size=` reads the same).
pub const DEFAULT_QUERY_BYTES: usize = 69;

/// omping's `-M` transport methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// Any-source multicast (omping's default).
    Asm,
    /// Source-specific multicast (not implemented).
    Ssm,
    /// IP broadcast (not implemented).
    Ipbc,
}

/// The raw command line.
#[derive(Debug, Parser)]
#[command(
    name = "totem-ping",
    disable_version_flag = true,
    about = "Network readiness test for totemd/corosync clusters, omping-compatible output.\n\
             Run the same command on every host, listing all hosts.",
    after_help = "Exit status: 0 ready, 1 usage or runtime error, 2 network not ready.\n\
                  Peers must run totem-ping (they do not talk to omping)."
)]
pub struct PingArgs {
    /// Use IPv4 only.
    #[arg(short = '4')]
    pub ipv4: bool,
    /// Use IPv6 only.
    #[arg(short = '6')]
    pub ipv6: bool,
    /// Continuous statistics on each reply line (running avg and loss).
    #[arg(short = 'C')]
    pub cont_stats: bool,
    /// Do not detect duplicates.
    #[arg(short = 'D')]
    pub no_dup_detection: bool,
    /// Do not exit when all peers stopped (keep answering until -T or a signal).
    #[arg(short = 'E')]
    pub no_auto_exit: bool,
    /// Allow values omping does not recommend (-i < 1 s, -t < 64); twice for -i 0.
    #[arg(short = 'F', action = ArgAction::Count)]
    pub force: u8,
    /// Quiet: no per-reply lines; twice: only the summary.
    #[arg(short = 'q', action = ArgAction::Count)]
    pub quiet: u8,
    /// Print the version and exit.
    #[arg(short = 'V')]
    pub version: bool,
    /// Verbose (repeat for more).
    #[arg(short = 'v', action = ArgAction::Count)]
    pub verbose: u8,
    /// Number of queries to send to each peer (default: until -T or a signal).
    #[arg(short = 'c', value_name = "count")]
    pub count: Option<u32>,
    /// Seconds between queries (float).
    #[arg(short = 'i', value_name = "interval", default_value = "1")]
    pub interval: f64,
    /// Also test multicast, on this group (omping's default group with -M asm alone:
    /// 232.43.211.234 or ff3e::4321:1234).
    #[arg(short = 'm', value_name = "mcast_addr")]
    pub mcast: Option<String>,
    /// Multicast transport method: asm (any-source; turns multicast on). ssm and ipbc are not
    /// implemented.
    #[arg(short = 'M', value_name = "transport_method")]
    pub method: Option<Method>,
    /// UDP port.
    #[arg(short = 'p', value_name = "port", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Receive buffer size, bytes (>= 2048).
    #[arg(short = 'R', value_name = "rcvbuf")]
    pub rcvbuf: Option<usize>,
    /// Send buffer size, bytes (>= 2048).
    #[arg(short = 'S', value_name = "sndbuf")]
    pub sndbuf: Option<usize>,
    /// Stop after this many seconds in total.
    #[arg(short = 'T', value_name = "timeout")]
    pub timeout: Option<f64>,
    /// TTL of sent packets, multicast and unicast (< 64 needs -F).
    #[arg(short = 't', value_name = "ttl", default_value_t = DEFAULT_TTL)]
    pub ttl: u32,
    /// Seconds to wait for the last answers after the last query (default 3 x interval, at least
    /// 1 s; ends early once every query is answered); 0: none, -1: forever.
    #[arg(short = 'w', value_name = "wait_time", allow_negative_numbers = true)]
    pub wait: Option<f64>,
    /// The address of this host among the listed ones (default: the first local one that is free).
    #[arg(long, value_name = "ADDR")]
    pub local: Option<String>,
    /// Print one JSON object with the results instead of text.
    #[arg(long)]
    pub json: bool,
    /// I/O path: auto, uring or mmsg.
    #[arg(long, value_name = "BACKEND", default_value = "auto")]
    pub io: Backend,
    /// Seal every datagram with AES-256-GCM (all hosts need the same --key).
    #[arg(long)]
    pub encrypt: bool,
    /// Authkey file for --encrypt.
    #[arg(long, value_name = "FILE", default_value = totem_crypto::authkey::AUTHKEY_DEFAULT_PATH)]
    pub key: PathBuf,
    /// Query datagram size, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_QUERY_BYTES)]
    pub size: usize,
    /// All hosts (this one included), by address or name.
    #[arg(value_name = "remote_addr")]
    pub hosts: Vec<String>,
}

/// A command line that is well-formed but not acceptable (omping's wording where it has one).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OptionError {
    #[error("illegal number, -i argument {0} ms < {DEFAULT_INTERVAL_MS} ms. Use -F to force.")]
    IntervalNeedsForce(u64),
    #[error("illegal number, -i argument 0 ms < 1 ms. Use -FF to force.")]
    ZeroIntervalNeedsForce2,
    #[error("illegal number, -i argument {0} is not a number of seconds >= 0")]
    BadInterval(String),
    #[error("illegal number, -t argument {0} < {DEFAULT_TTL}. Use -F to force.")]
    TtlNeedsForce(u32),
    #[error("illegal number, -t argument {0} is not 1..=255")]
    BadTtl(u32),
    #[error("illegal number, -c argument must be > 0")]
    ZeroCount,
    #[error("illegal number, -T argument {0} must be > 0 seconds")]
    BadTimeout(String),
    #[error("illegal number, -w argument {0} must be >= 0 or -1")]
    BadWait(String),
    #[error("illegal number, -{0} argument {1} < {MIN_SOCKET_BUFFER_BYTES}")]
    SmallBuffer(char, usize),
    #[error("-4 and -6 are mutually exclusive")]
    BothFamilies,
    #[error("-M {0}: not implemented (only asm, any-source multicast, is)")]
    MethodNotImplemented(&'static str),
    #[error("-m {0}: not a multicast address (IPv4 224.0.0.0/4 or IPv6 ff00::/8)")]
    NotMulticast(String),
    #[error("-m {addr} is an IPv{version} address but -{flag} was given")]
    GroupFamily {
        addr: String,
        version: u8,
        flag: char,
    },
    #[error("--size {0} must be between {min} and 65507 bytes", min = crate::wire::HEADER_LEN + 12)]
    BadSize(usize),
    #[error("at least one remote host is required (list every host, this one included)")]
    NoHosts,
}

/// How long to wait for the last answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitForFinish {
    /// Up to this long (ends early when every query was answered).
    Up(Duration),
    /// Until the timeout or a signal.
    Forever,
}

/// Multicast settings (`-m`, `-M asm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McastOptions {
    /// `-m` as given; `None`: omping's default group of the hosts' family.
    pub group: Option<String>,
}

/// Validated options.
#[derive(Debug, Clone)]
pub struct PingOptions {
    pub family: Family,
    pub count: Option<u32>,
    pub interval: Duration,
    pub cont_stats: bool,
    pub dup_detection: bool,
    pub auto_exit: bool,
    pub quiet: u8,
    pub verbose: u8,
    pub port: u16,
    /// `-t`: TTL / hop limit of sent packets.
    pub ttl: u32,
    /// `Some` when multicast is tested too.
    pub multicast: Option<McastOptions>,
    pub socket_buffer_bytes: Option<usize>,
    pub timeout: Option<Duration>,
    pub wait: WaitForFinish,
    pub local: Option<String>,
    pub json: bool,
    pub backend: Backend,
    pub key_path: Option<PathBuf>,
    pub size: usize,
    pub hosts: Vec<String>,
}

fn seconds(value: f64) -> Option<Duration> {
    (value.is_finite() && (0.0..1e9).contains(&value)).then(|| Duration::from_secs_f64(value))
}

impl PingArgs {
    /// Checks the values the way omping does (-F gating) and returns the options to run with.
    pub fn validate(&self) -> Result<PingOptions, OptionError> {
        if self.ipv4 && self.ipv6 {
            return Err(OptionError::BothFamilies);
        }
        let multicast = self.multicast()?;
        let interval = seconds(self.interval)
            .ok_or_else(|| OptionError::BadInterval(self.interval.to_string()))?;
        let interval_ms = interval.as_millis() as u64;
        if self.force < 1 && interval_ms < DEFAULT_INTERVAL_MS {
            return Err(OptionError::IntervalNeedsForce(interval_ms));
        }
        if self.force < 2 && interval.is_zero() {
            return Err(OptionError::ZeroIntervalNeedsForce2);
        }
        if self.ttl == 0 || self.ttl > 255 {
            return Err(OptionError::BadTtl(self.ttl));
        }
        if self.force < 1 && self.ttl < DEFAULT_TTL {
            return Err(OptionError::TtlNeedsForce(self.ttl));
        }
        if self.count == Some(0) {
            return Err(OptionError::ZeroCount);
        }
        let timeout = match self.timeout {
            None => None,
            Some(t) => Some(
                seconds(t)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| OptionError::BadTimeout(t.to_string()))?,
            ),
        };
        let wait = match self.wait {
            Some(-1.0) => WaitForFinish::Forever,
            Some(w) => {
                WaitForFinish::Up(seconds(w).ok_or_else(|| OptionError::BadWait(w.to_string()))?)
            }
            None => WaitForFinish::Up(
                (interval * WAIT_FOR_FINISH_MULTIPLIER)
                    .max(Duration::from_millis(DEFAULT_INTERVAL_MS)),
            ),
        };
        for (flag, value) in [('R', self.rcvbuf), ('S', self.sndbuf)] {
            if let Some(v) = value.filter(|v| *v < MIN_SOCKET_BUFFER_BYTES) {
                return Err(OptionError::SmallBuffer(flag, v));
            }
        }
        if self.size < crate::wire::HEADER_LEN + 12 || self.size > crate::wire::MAX_DATAGRAM_LEN {
            return Err(OptionError::BadSize(self.size));
        }
        if self.hosts.is_empty() {
            return Err(OptionError::NoHosts);
        }
        Ok(PingOptions {
            family: self.family(),
            count: self.count,
            interval,
            cont_stats: self.cont_stats,
            dup_detection: !self.no_dup_detection,
            auto_exit: !self.no_auto_exit,
            quiet: self.quiet,
            verbose: self.verbose,
            port: self.port,
            ttl: self.ttl,
            multicast,
            socket_buffer_bytes: self.rcvbuf.max(self.sndbuf),
            timeout,
            wait,
            local: self.local.clone(),
            json: self.json,
            backend: self.io,
            key_path: self.encrypt.then(|| self.key.clone()),
            size: self.size,
            hosts: self.hosts.clone(),
        })
    }
}

impl PingArgs {
    /// `-4`/`-6`, or the family of a literal `-m` address (omping takes the IP version from the
    /// multicast address when neither is given).
    fn family(&self) -> Family {
        let literal = self.mcast.as_deref().and_then(|m| {
            m.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .ok()
        });
        if self.ipv4 {
            Family::V4
        } else if self.ipv6 {
            Family::V6
        } else {
            match literal {
                Some(IpAddr::V4(_)) => Family::V4,
                Some(IpAddr::V6(_)) => Family::V6,
                None => Family::Any,
            }
        }
    }

    /// Multicast on or off, checking what can be checked without resolving names.
    fn multicast(&self) -> Result<Option<McastOptions>, OptionError> {
        match self.method {
            Some(Method::Ssm) => return Err(OptionError::MethodNotImplemented("ssm")),
            Some(Method::Ipbc) => return Err(OptionError::MethodNotImplemented("ipbc")),
            Some(Method::Asm) | None => {}
        }
        if self.mcast.is_none() && self.method.is_none() {
            return Ok(None);
        }
        if let Some(text) = &self.mcast {
            let literal = text.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = literal.parse::<IpAddr>() {
                if !ip.is_multicast() {
                    return Err(OptionError::NotMulticast(text.clone()));
                }
                let flag = match ip {
                    IpAddr::V4(_) if self.ipv6 => Some('6'),
                    IpAddr::V6(_) if self.ipv4 => Some('4'),
                    _ => None,
                };
                if let Some(flag) = flag {
                    return Err(OptionError::GroupFamily {
                        addr: text.clone(),
                        version: crate::mcast::version(ip),
                        flag,
                    });
                }
            }
        }
        Ok(Some(McastOptions {
            group: self.mcast.clone(),
        }))
    }
}

/// Resolved `--local`, when given.
pub fn parse_local(text: &str, port: u16) -> Result<SocketAddr, crate::hosts::HostError> {
    crate::hosts::resolve(text, port, Family::Any).map(|h| h.addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> PingArgs {
        PingArgs::try_parse_from(std::iter::once("totem-ping").chain(line.split_whitespace()))
            .unwrap()
    }

    #[test]
    fn omping_force_rules() {
        assert_eq!(
            args("-i 0.1 a b").validate().unwrap_err(),
            OptionError::IntervalNeedsForce(100)
        );
        assert!(args("-i 0.1 -F a b").validate().is_ok());
        assert_eq!(
            args("-i 0 -F a b").validate().unwrap_err(),
            OptionError::ZeroIntervalNeedsForce2
        );
        assert!(args("-i 0 -FF a b").validate().is_ok());
        assert_eq!(
            args("-t 10 a").validate().unwrap_err(),
            OptionError::TtlNeedsForce(10)
        );
        assert_eq!(
            args("-R 100 a").validate().unwrap_err(),
            OptionError::SmallBuffer('R', 100)
        );
        assert_eq!(args("").validate().unwrap_err(), OptionError::NoHosts);
    }

    #[test]
    fn multicast_options_are_checked() {
        assert_eq!(args("a b").validate().unwrap().multicast, None);
        let o = args("-m 239.1.1.1 a").validate().unwrap();
        assert_eq!(
            o.multicast,
            Some(McastOptions {
                group: Some("239.1.1.1".into())
            })
        );
        assert_eq!(o.family, Family::V4);
        assert_eq!(o.ttl, DEFAULT_TTL);
        let o = args("-M asm a").validate().unwrap();
        assert_eq!(o.multicast, Some(McastOptions { group: None }));
        assert_eq!(o.family, Family::Any);
        assert_eq!(args("-m ff3e::1 a").validate().unwrap().family, Family::V6);
        assert_eq!(
            args("-m 10.1.1.1 a").validate().unwrap_err(),
            OptionError::NotMulticast("10.1.1.1".into())
        );
        assert_eq!(
            args("-m fe80::1 a").validate().unwrap_err(),
            OptionError::NotMulticast("fe80::1".into())
        );
        assert_eq!(
            args("-6 -m 239.1.1.1 a").validate().unwrap_err(),
            OptionError::GroupFamily {
                addr: "239.1.1.1".into(),
                version: 4,
                flag: '6'
            }
        );
        assert_eq!(
            args("-4 -m ff3e::1 a").validate().unwrap_err(),
            OptionError::GroupFamily {
                addr: "ff3e::1".into(),
                version: 6,
                flag: '4'
            }
        );
        assert_eq!(
            args("-M ssm a").validate().unwrap_err(),
            OptionError::MethodNotImplemented("ssm")
        );
        assert_eq!(
            args("-M ipbc -m 239.1.1.1 a").validate().unwrap_err(),
            OptionError::MethodNotImplemented("ipbc")
        );
        assert!(PingArgs::try_parse_from(["totem-ping", "-M", "bogus", "a"]).is_err());
        assert_eq!(
            args("-m 239.1.1.1 -t 1 a").validate().unwrap_err(),
            OptionError::TtlNeedsForce(1)
        );
        assert_eq!(args("-m 239.1.1.1 -t 1 -F a").validate().unwrap().ttl, 1);
        assert_eq!(
            args("-m 239.1.1.1 -t 256 -F a").validate().unwrap_err(),
            OptionError::BadTtl(256)
        );
        // A name is resolved (and checked) when the run starts.
        assert!(args("-m some.group.name a").validate().is_ok());
    }

    #[test]
    fn defaults_are_omping_defaults() {
        let o = args("-c 10000 -i 0.001 -F -q -qq a b").validate().unwrap();
        assert_eq!(o.port, 4321);
        assert_eq!(o.quiet, 3);
        assert_eq!(o.interval, Duration::from_millis(1));
        assert_eq!(o.wait, WaitForFinish::Up(Duration::from_secs(1)));
        let o = args("-i 2 -w -1 a").validate().unwrap();
        assert_eq!(o.wait, WaitForFinish::Forever);
        let o = args("-i 2 a").validate().unwrap();
        assert_eq!(o.wait, WaitForFinish::Up(Duration::from_secs(6)));
    }
}
