//! Helpers for the tools' loopback tests: spawning the built binaries, killing them on drop,
//! parsing omping-format lines, temporary keys and an nftables table that is always deleted.
#![allow(dead_code, unreachable_pub)]

pub mod netns;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PING: &str = env!("CARGO_BIN_EXE_totem-ping");
pub const PPS: &str = env!("CARGO_BIN_EXE_totem-pps");
pub const LATENCY: &str = env!("CARGO_BIN_EXE_totem-latency");

/// A child process killed (and reaped) when dropped.
pub struct Running {
    pub child: Option<Child>,
}

impl Running {
    pub fn spawn(bin: &str, args: &[&str]) -> Running {
        let child = Command::new(bin)
            .args(args)
            .env_remove("TOTEM_IO")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        Running { child: Some(child) }
    }

    /// Waits at most `limit` for exit; kills it past that. Returns output and whether it exited.
    pub fn finish(mut self, limit: Duration) -> (Output, bool) {
        let mut child = self.child.take().expect("child");
        let deadline = Instant::now() + limit;
        let mut exited = false;
        while Instant::now() < deadline {
            if child.try_wait().expect("try_wait").is_some() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !exited {
            let _ = child.kill();
        }
        (child.wait_with_output().expect("output"), exited)
    }

    /// Kills it and returns what it printed.
    pub fn stop(mut self) -> (String, String) {
        let mut child = self.child.take().expect("child");
        let _ = child.kill();
        let _ = child.wait();
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        (out, err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs to completion with a hard limit (a hang fails the test instead of blocking it).
pub fn run(bin: &str, args: &[&str], limit: Duration) -> Output {
    let (out, exited) = Running::spawn(bin, args).finish(limit);
    assert!(exited, "{bin} {args:?} did not exit within {limit:?}");
    out
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A parsed omping summary line.
#[derive(Debug, PartialEq)]
pub struct Summary {
    pub host: String,
    pub cast: String,
    pub xmt: u64,
    pub rcv: u64,
    pub loss: u64,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    pub sdev: f64,
}

/// Parses `HOST : %5scast, xmt/rcv/%loss = a/b[+d]/c%, min/avg/max/std-dev = w/x/y/z` the way a
/// script that parses omping would (a hand-written matcher, same shape as omping's regexes).
pub fn parse_summary(line: &str) -> Option<Summary> {
    let (host, rest) = line.split_once(" : ")?;
    let rest = rest.trim_start();
    let (cast, rest) = rest.split_once("cast, xmt/rcv/%loss = ")?;
    let (counts, times) = rest.split_once(", min/avg/max/std-dev = ")?;
    let mut c = counts.split('/');
    let xmt = c.next()?.parse().ok()?;
    let rcv = c.next()?.split('+').next()?.parse().ok()?;
    let loss = c.next()?.split('%').next()?.parse().ok()?;
    let t: Vec<f64> = times
        .split('/')
        .map(|v| v.parse::<f64>())
        .collect::<Result<_, _>>()
        .ok()?;
    if t.len() != 4
        || times
            .split('/')
            .any(|v| v.split_once('.').map(|(_, d)| d.len()) != Some(3))
    {
        return None;
    }
    Some(Summary {
        host: host.trim_end().to_string(),
        cast: cast.to_string(),
        xmt,
        rcv,
        loss,
        min: t[0],
        avg: t[1],
        max: t[2],
        sdev: t[3],
    })
}

/// Parses a unicast per-reply line: (host, seq, size, time_ms).
pub fn parse_reply(line: &str) -> Option<(String, u32, usize, f64)> {
    let r = parse_any_reply(line)?;
    (r.cast == "uni").then_some((r.host, r.seq, r.size, r.time_ms))
}

/// A parsed omping per-reply line.
#[derive(Debug, PartialEq)]
pub struct ReplyLine {
    pub host: String,
    /// "uni" or "multi".
    pub cast: String,
    pub seq: u32,
    pub dup: bool,
    pub size: usize,
    pub time_ms: f64,
}

/// Parses `HOST : %5scast, seq=N[ (dup)], size=N bytes, time=X.XXXms`.
pub fn parse_any_reply(line: &str) -> Option<ReplyLine> {
    let (host, rest) = line.split_once(" : ")?;
    let (cast, rest) = if let Some(r) = rest.strip_prefix("  unicast, seq=") {
        ("uni", r)
    } else {
        ("multi", rest.strip_prefix("multicast, seq=")?)
    };
    let (seq, rest) = rest.split_once(", size=")?;
    let (seq, dup) = match seq.strip_suffix(" (dup)") {
        Some(s) => (s, true),
        None => (seq, false),
    };
    let (size, rest) = rest.split_once(" bytes, time=")?;
    let time = rest.strip_suffix("ms")?;
    if time.split_once('.').map(|(_, d)| d.len()) != Some(3) {
        return None;
    }
    Some(ReplyLine {
        host: host.trim_end().to_string(),
        cast: cast.to_string(),
        seq: seq.parse().ok()?,
        dup,
        size: size.parse().ok()?,
        time_ms: time.parse().ok()?,
    })
}

/// Writes a 256-byte authkey filled from `seed` into `dir`.
pub fn write_key(dir: &Path, name: &str, seed: u8) -> PathBuf {
    let path = dir.join(name);
    let bytes: Vec<u8> = (0..256u32)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    std::fs::write(&path, bytes).expect("write key");
    path
}

/// An nftables table of our own, deleted on drop.
pub struct NftTable {
    pub name: String,
}

impl NftTable {
    /// Creates `inet totemtools_<pid>_<tag>` with an output chain, or says why it cannot.
    pub fn create(tag: &str) -> Result<NftTable, String> {
        if !nix_is_root() {
            return Err("not root".into());
        }
        let name = format!("totemtools_{}_{tag}", std::process::id());
        nft(&["add", "table", "inet", &name])?;
        let table = NftTable { name };
        nft(&[
            "add",
            "chain",
            "inet",
            &table.name,
            "out",
            "{ type filter hook output priority 0; policy accept; }",
        ])?;
        Ok(table)
    }

    pub fn rule(&self, rule: &str) -> Result<(), String> {
        let mut args = vec!["add", "rule", "inet", &self.name, "out"];
        args.extend(rule.split_whitespace());
        nft(&args)
    }
}

impl Drop for NftTable {
    fn drop(&mut self) {
        let _ = nft(&["delete", "table", "inet", &self.name]);
    }
}

fn nft(args: &[&str]) -> Result<(), String> {
    let out = Command::new("nft")
        .args(args)
        .output()
        .map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("nft {args:?}: {}", text(&out.stderr)))
    }
}

pub fn nix_is_root() -> bool {
    // The uid without unsafe code: /proc/self/status "Uid:" real uid.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
