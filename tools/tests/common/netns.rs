//! Network namespaces for the tools' multicast tests, built with the project's
//! `tests/netns/netns.sh`: nodes PREFIX-nK with `l0` = 10.250.0.K/24 on one bridge (plus `l1`,
//! unused here) and an nftables table `inet ntfault` (chains `in`, `out`) in each node. The
//! prefix carries the test process id, so parallel tests and runs do not collide; the namespaces
//! are deleted on drop, also when the test fails.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::{nix_is_root, text, Running};

/// Stem of every namespace prefix (stale ones of dead test processes are removed at create).
const STEM: &str = "ttmc";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/netns/netns.sh")
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A topology of `n` namespaces, destroyed on drop.
pub struct Netns {
    pub prefix: String,
    pub nodes: usize,
}

impl Netns {
    /// Builds `n` nodes, or says why it cannot (not root, `ip` or `nft` missing).
    pub fn create(tag: &str, n: usize) -> Result<Netns, String> {
        if !nix_is_root() {
            return Err("not root".into());
        }
        for program in ["ip", "nft"] {
            if !have(program) {
                return Err(format!("`{program}` is not installed"));
            }
        }
        let _ = Command::new("bash")
            .arg(script())
            .args(["clean-stale", STEM])
            .output();
        let prefix = format!("{STEM}{}{tag}", std::process::id());
        let net = Netns { prefix, nodes: n };
        let out = Command::new("bash")
            .arg(script())
            .args(["create", &net.prefix, &n.to_string()])
            .output()
            .map_err(|e| format!("netns.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!("netns.sh create: {}", text(&out.stderr)));
        }
        Ok(net)
    }

    /// Namespace name of node `k` (from 1).
    pub fn ns(&self, k: usize) -> String {
        format!("{}-n{k}", self.prefix)
    }

    /// IPv4 address of node `k` on link 0 (netns.sh's plan).
    pub fn v4(k: usize) -> String {
        format!("10.250.0.{k}")
    }

    /// IPv6 address of node `k` on link 0, once [`Netns::add_v6`] ran.
    pub fn v6(k: usize) -> String {
        format!("fd00:250::{k}")
    }

    /// Runs a command inside node `k`; panics when it fails.
    pub fn exec(&self, k: usize, args: &[&str]) -> Output {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(k)])
            .args(args)
            .output()
            .expect("ip netns exec");
        assert!(
            out.status.success(),
            "{args:?} in {}: {}",
            self.ns(k),
            text(&out.stderr)
        );
        out
    }

    /// Gives every node an IPv6 address on `l0` (no duplicate address detection, so it is
    /// usable at once).
    pub fn add_v6(&self) {
        for k in 1..=self.nodes {
            let cidr = format!("{}/64", Netns::v6(k));
            self.exec(k, &["ip", "addr", "add", &cidr, "dev", "l0", "nodad"]);
        }
    }

    /// Adds an nftables rule to chain `chain` (`in` or `out`) of node `k`.
    pub fn nft_rule(&self, k: usize, chain: &str, rule: &str) {
        let mut args = vec!["nft", "add", "rule", "inet", "ntfault", chain];
        args.extend(rule.split_whitespace());
        self.exec(k, &args);
    }

    /// Starts `bin args` inside node `k`.
    pub fn spawn(&self, k: usize, bin: &str, args: &[&str]) -> Running {
        let ns = self.ns(k);
        let mut all = vec!["netns", "exec", ns.as_str(), bin];
        all.extend_from_slice(args);
        Running::spawn("ip", &all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["destroy", &self.prefix])
            .output();
    }
}
