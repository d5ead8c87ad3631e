//! Text-scenario tests for votequorum (raft-rs datadriven style): every file in
//! `tests/quorum_scenarios/` is a list of commands, each followed by `----` and the output the
//! command must produce (empty when it prints nothing). A small in-memory ring delivers every
//! multicast to the sender's partition in one agreed order, the sender included, as Totem does.
//!
//! Commands:
//! - `cluster nodes=N [votes=1,1,2,..] [expected=E] [two_node] [wfa=0|1] [lms] [lms_window=MS]
//!   [atb=lowest|highest|"1 3"] [qdevice] [qdevice_votes=V]` — start N nodes 1..=N, all alone.
//! - `partition 1,2|3` — form one membership per group (nodes not listed keep their ring).
//! - `kill 3` — node 3 stops (its peers only notice at the next `partition`).
//! - `start 3` — node 3 starts again from its configuration, alone.
//! - `leave 3` — node 3 announces a clean shutdown (its peers may lower quorum at once).
//! - `advance MS` — move the clock and fire due timers.
//! - `expected N on=ID` / `votes V node=ID on=ID` — run-time changes (prints the error if refused).
//! - `register on=ID` / `poll on=ID vote=0|1` — quorum device on a node.
//! - `status ID` — one line with the `corosync-quorumtool -s` values of that node.
//! - `members ID` — the `-l` table rows (`nodeid votes qdevice name`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use totem_core::quorum::{
    Action, AutoTieBreaker, NodeConfig, QdeviceConfig, QuorumConfig, QuorumMsg, RingId, Votequorum,
};
use totem_core::time::MonoTime;
use totem_core::NodeId;

struct Ring {
    config_of: BTreeMap<NodeId, QuorumConfig>,
    nodes: BTreeMap<NodeId, Votequorum>,
    group_of: BTreeMap<NodeId, Vec<NodeId>>,
    ring_of: BTreeMap<NodeId, RingId>,
    seq: u64,
    now: MonoTime,
}

impl Ring {
    fn new(args: &Args) -> Ring {
        let count: u32 = args.num("nodes").unwrap_or(3);
        let votes: Vec<u32> = args
            .get("votes")
            .map(|v| v.split(',').map(|x| x.parse().expect("votes")).collect())
            .unwrap_or_else(|| vec![1; count as usize]);
        let mut nodes = BTreeMap::new();
        let mut config_of = BTreeMap::new();
        for local in 1..=count {
            let mut cfg = QuorumConfig::simple(local, count);
            cfg.nodes = (1..=count)
                .map(|id| NodeConfig {
                    node_id: id,
                    votes: votes[(id - 1) as usize],
                    name: format!("n{id}"),
                })
                .collect();
            cfg.expected_votes = args.num("expected");
            cfg.two_node = args.flag("two_node");
            cfg.wait_for_all = args.num::<u32>("wfa").map(|v| v == 1);
            cfg.last_man_standing = args.flag("lms");
            if let Some(ms) = args.num("lms_window") {
                cfg.last_man_standing_window_ms = ms;
            }
            cfg.auto_tie_breaker = args
                .get("atb")
                .map(|a| AutoTieBreaker::parse(a).expect("atb"));
            if args.flag("qdevice") {
                cfg.qdevice = Some(QdeviceConfig {
                    votes: args.num("qdevice_votes"),
                    ..QdeviceConfig::default()
                });
            }
            let vq = Votequorum::new(&cfg).expect("valid config");
            nodes.insert(local, vq);
            config_of.insert(local, cfg);
        }
        let mut ring = Ring {
            config_of,
            group_of: nodes.keys().map(|id| (*id, vec![*id])).collect(),
            ring_of: nodes
                .keys()
                .map(|id| (*id, RingId { rep: *id, seq: 0 }))
                .collect(),
            nodes,
            seq: 0,
            now: MonoTime::ZERO,
        };
        ring.pump();
        ring
    }

    fn partition(&mut self, spec: &str) {
        for group in spec.split('|') {
            let members: Vec<NodeId> = group
                .split(',')
                .map(|x| x.trim().parse().expect("node id"))
                .collect();
            self.seq += 4;
            let ring_id = RingId {
                rep: *members.iter().min().expect("group"),
                seq: self.seq,
            };
            for id in &members {
                self.group_of.insert(*id, members.clone());
                self.ring_of.insert(*id, ring_id);
            }
            for id in &members {
                if let Some(node) = self.nodes.get_mut(id) {
                    node.handle_membership(self.now, ring_id, &members);
                }
            }
        }
        self.pump();
    }

    /// Deliver every queued multicast to the sender's partition, in one order, until quiet.
    fn pump(&mut self) {
        for _round in 0..1000 {
            let mut sent: Vec<(NodeId, QuorumMsg)> = Vec::new();
            for (id, node) in self.nodes.iter_mut() {
                while let Some(action) = node.poll_action() {
                    if let Action::Multicast(msg) = action {
                        sent.push((*id, msg));
                    }
                }
            }
            if sent.is_empty() {
                return;
            }
            for (sender, msg) in sent {
                let bytes = msg.to_bytes();
                let group = self.group_of.get(&sender).cloned().unwrap_or_default();
                for member in group {
                    if let Some(node) = self.nodes.get_mut(&member) {
                        node.handle_bytes(sender, &bytes).expect("decodes");
                    }
                }
            }
        }
        panic!("messages never settled");
    }

    fn advance(&mut self, ms: u64) {
        let end = self.now.plus_ms(ms);
        loop {
            let next = self.nodes.values().filter_map(|n| n.poll_timeout()).min();
            match next {
                Some(at) if at <= end => {
                    self.now = at;
                    for node in self.nodes.values_mut() {
                        node.handle_timeout(at);
                    }
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn node(&mut self, id: NodeId) -> &mut Votequorum {
        self.nodes.get_mut(&id).expect("node exists")
    }
}

struct Args(BTreeMap<String, String>, Vec<String>);

impl Args {
    fn parse(words: &[String]) -> Args {
        let mut kv = BTreeMap::new();
        let mut positional = Vec::new();
        for w in words {
            match w.split_once('=') {
                Some((k, v)) => {
                    kv.insert(k.to_string(), v.trim_matches('"').to_string());
                }
                None => positional.push(w.clone()),
            }
        }
        Args(kv, positional)
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn num<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.get(key).map(|v| v.parse().ok().expect("number"))
    }
    fn flag(&self, key: &str) -> bool {
        self.1.iter().any(|p| p == key)
    }
    fn first(&self) -> &str {
        self.1.first().map(String::as_str).unwrap_or("")
    }
}

/// Split a command line into words, keeping `key="a b"` together.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ' ' if !quoted => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn run_command(ring: &mut Option<Ring>, line: &str) -> String {
    let all = words(line);
    let (cmd, rest) = all.split_first().expect("command");
    let args = Args::parse(rest);
    if cmd == "cluster" {
        *ring = Some(Ring::new(&args));
        return String::new();
    }
    let ring = ring.as_mut().expect("cluster first");
    match cmd.as_str() {
        "partition" => {
            ring.partition(args.first());
            String::new()
        }
        "kill" => {
            let id: NodeId = args.first().parse().expect("id");
            ring.nodes.remove(&id);
            for group in ring.group_of.values_mut() {
                group.retain(|m| *m != id);
            }
            String::new()
        }
        "leave" => {
            let id: NodeId = args.first().parse().expect("id");
            ring.node(id).leave();
            ring.pump();
            String::new()
        }
        "start" => {
            let id: NodeId = args.first().parse().expect("id");
            let vq = Votequorum::new(&ring.config_of[&id]).expect("config");
            ring.nodes.insert(id, vq);
            ring.group_of.insert(id, vec![id]);
            ring.pump();
            String::new()
        }
        "advance" => {
            ring.advance(args.first().parse().expect("ms"));
            String::new()
        }
        "expected" => {
            let on: NodeId = args.num("on").expect("on=");
            let value: u32 = args.first().parse().expect("value");
            let result = ring.node(on).set_expected(value);
            ring.pump();
            result.err().map(|e| format!("{e}\n")).unwrap_or_default()
        }
        "votes" => {
            let on: NodeId = args.num("on").expect("on=");
            let node: NodeId = args.num("node").expect("node=");
            let value: u32 = args.first().parse().expect("value");
            let result = ring.node(on).set_votes(node, value);
            ring.pump();
            result.err().map(|e| format!("{e}\n")).unwrap_or_default()
        }
        "register" => {
            let on: NodeId = args.num("on").expect("on=");
            ring.node(on).qdevice_register("Qdevice").expect("register");
            ring.pump();
            String::new()
        }
        "poll" => {
            let on: NodeId = args.num("on").expect("on=");
            let vote = args.num::<u32>("vote") == Some(1);
            let now = ring.now;
            let ring_id = ring.ring_of[&on];
            ring.node(on)
                .qdevice_poll(now, ring_id, vote)
                .expect("poll");
            ring.pump();
            String::new()
        }
        "status" => {
            let id: NodeId = args.first().parse().expect("id");
            let s = ring.node(id).status();
            format!(
                "nodes={} ring={} quorate={} expected={} highest={} total={} quorum=\"{}\" flags=\"{}\"\n",
                s.member_count,
                s.ring_id,
                if s.quorate { "Yes" } else { "No" },
                s.expected_votes,
                s.highest_expected,
                s.total_votes,
                s.quorum_line(),
                s.flags_line()
            )
        }
        "members" => {
            let id: NodeId = args.first().parse().expect("id");
            let s = ring.node(id).status();
            let mut out = String::new();
            for row in &s.nodes {
                let local = if row.local { " (local)" } else { "" };
                out.push_str(&format!(
                    "{:>10} {:>10} {:>10} {}{}\n",
                    row.node_id,
                    row.votes,
                    row.qdevice_column(),
                    row.name,
                    local
                ));
            }
            if let Some(q) = &s.qdevice {
                let votes = if q.casting { q.votes } else { 0 };
                out.push_str(&format!("{:>10} {:>10} {:>10} {}\n", 0, votes, "", q.name));
            }
            out
        }
        other => panic!("unknown command {other}"),
    }
}

fn run_file(path: &Path) {
    let text = fs::read_to_string(path).expect("read scenario");
    let mut ring = None;
    let mut lines = text.lines().enumerate().peekable();
    let mut failures = Vec::new();
    while let Some((number, line)) = lines.next() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let separator = lines.next().map(|(_, l)| l.trim_end()).unwrap_or("");
        assert_eq!(
            separator,
            "----",
            "{}:{}: expected ---- after command",
            path.display(),
            number + 1
        );
        let mut expected = String::new();
        while let Some((_, l)) = lines.peek() {
            if l.trim().is_empty() {
                lines.next();
                break;
            }
            expected.push_str(l.trim_end());
            expected.push('\n');
            lines.next();
        }
        let got = run_command(&mut ring, line);
        let got_trimmed: String = got.lines().map(|l| format!("{}\n", l.trim_end())).collect();
        if got_trimmed != expected {
            failures.push(format!(
                "{}:{}: {line}\n--- expected\n{expected}--- got\n{got_trimmed}",
                path.display(),
                number + 1
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/quorum_scenarios");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .expect("scenario dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 6,
        "scenario files missing in {}",
        dir.display()
    );
    for file in files {
        run_file(&file);
    }
}
