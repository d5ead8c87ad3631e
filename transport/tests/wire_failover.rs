//! Heartbeat and policy together, on simulated time: two links in passive mode, link 0 preferred;
//! cutting link 0 makes it suspect within milliseconds under traffic (frames also go on link 1),
//! the heartbeat takes it down after the knet timeout, traffic stays on link 1, and restoring
//! link 0 brings traffic back after pong_count + 1 pongs — without any flap in between.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use totem_transport::heartbeat::{HeartbeatConfig, KnetTimerOverrides, LinkEvent, LinkHeartbeat};
use totem_transport::policy::{LinkMask, LinkMode, LinkStatus, PeerPolicy};
use totem_transport::wire::{MonoTime, PingBody, MAX_LINKS};

const MS: Duration = Duration::from_millis(1);

struct Net {
    now: MonoTime,
    links: Vec<LinkHeartbeat>,
    cut: [bool; 2],
    pongs: Vec<(MonoTime, usize, PingBody)>,
    policy: PeerPolicy,
    log: Vec<(MonoTime, String)>,
}

impl Net {
    fn new() -> Self {
        let config =
            HeartbeatConfig::from_token(3000 * MS, &KnetTimerOverrides::default()).unwrap();
        let now = MonoTime(0);
        Net {
            now,
            links: (0..2)
                .map(|l| LinkHeartbeat::new(config, 2, l as u8, now))
                .collect(),
            cut: [false; 2],
            pongs: Vec::new(),
            policy: PeerPolicy::new(2, LinkMode::Passive),
            log: Vec::new(),
        }
    }

    fn statuses(&self) -> [LinkStatus; MAX_LINKS] {
        let mut all = [LinkStatus::default(); MAX_LINKS];
        // pve-docs style priorities: link 0 preferred.
        for (l, hb) in self.links.iter().enumerate() {
            all[l] = LinkStatus {
                usable: hb.is_up(),
                suspect: hb.is_suspect(),
                priority: 20 - l as u8,
            };
        }
        all
    }

    fn drain(&mut self) {
        let mut changed = false;
        for l in 0..2 {
            while let Some(ping) = self.links[l].poll_ping() {
                if !self.cut[l] {
                    self.pongs.push((self.now.saturating_add(MS / 2), l, ping));
                }
            }
            while let Some(event) = self.links[l].poll_event() {
                self.log.push((self.now, event.to_string()));
                match event {
                    LinkEvent::Suspect { .. } => self.policy.set_suspect(l as u8, true),
                    LinkEvent::Recovered { .. } => self.policy.set_suspect(l as u8, false),
                    LinkEvent::LinkUp { .. } | LinkEvent::LinkDown { .. } => changed = true,
                }
            }
        }
        if changed {
            if let Some(change) = self.policy.update(self.statuses()) {
                self.log.push((self.now, change.to_string()));
            }
        }
    }

    /// Runs for `span`, with a data frame from the peer every 5 ms on the link(s) our own
    /// policy uses (symmetric configuration). Returns the masks chosen for each frame.
    fn run(&mut self, span: Duration) -> Vec<(MonoTime, LinkMask)> {
        let end = self.now.saturating_add(span);
        let mut next_data = self.now;
        let mut sent = Vec::new();
        loop {
            self.drain();
            let mut next = next_data;
            for hb in &self.links {
                next = next.min(hb.poll_timeout().unwrap());
            }
            if let Some(p) = self.pongs.iter().map(|p| p.0).min() {
                next = next.min(p);
            }
            if next > end {
                self.now = end;
                return sent;
            }
            self.now = self.now.max(next);
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) = self.pongs.drain(..).partition(|p| p.0 <= now);
            self.pongs = later;
            for (_, l, body) in due {
                if !self.cut[l] {
                    self.links[l].handle_pong(now, body);
                }
            }
            if next_data <= now {
                let mask = self.policy.select();
                sent.push((now, mask));
                for l in mask.iter() {
                    if !self.cut[usize::from(l)] {
                        self.links[usize::from(l)].handle_data(now);
                    }
                }
                next_data = now.saturating_add(5 * MS);
            }
            for hb in &mut self.links {
                hb.handle_timeout(now);
            }
        }
    }
}

fn only(link: u8) -> LinkMask {
    LinkMask::single(link)
}

#[test]
fn passive_failover_with_suspect_then_back() {
    let mut net = Net::new();
    net.run(20_000 * MS);
    assert!(
        net.log
            .iter()
            .any(|(_, l)| l == "host: 2 (passive) best link: 0 (pri: 20)"),
        "{:?}",
        net.log
    );
    assert_eq!(net.policy.select(), only(0));

    // Cut link 0.
    net.cut[0] = true;
    let cut_at = net.now;
    let sent = net.run(3000 * MS);
    // Within 60 ms frames also go on link 1.
    let first_dual = sent.iter().find(|(_, m)| m.contains(1)).unwrap().0;
    assert!(
        first_dual.saturating_since(cut_at) <= 60 * MS,
        "{:?}",
        first_dual.saturating_since(cut_at)
    );
    // Link 0 goes down by the knet rule (pong timeout ~1.5 s), and only once.
    let downs: Vec<_> = net
        .log
        .iter()
        .filter(|(_, l)| l == "link: host: 2 link: 0 is down")
        .collect();
    assert_eq!(downs.len(), 1);
    assert!(net
        .log
        .iter()
        .any(|(_, l)| l == "host: 2 (passive) best link: 1 (pri: 19)"));
    assert_eq!(net.policy.select(), only(1));
    // Never a frame without link 1 after the suspect point.
    assert!(sent
        .iter()
        .filter(|(t, _)| *t >= first_dual)
        .all(|(_, m)| m.contains(1)));

    // Restore link 0: it comes back after pong_count + 1 pongs and takes the traffic again.
    net.cut[0] = false;
    let restored_at = net.now;
    let sent = net.run(5000 * MS);
    let back = sent.iter().find(|(_, m)| *m == only(0)).unwrap().0;
    let took = back.saturating_since(restored_at);
    assert!(took <= 2300 * MS, "back after {took:?}");
    assert_eq!(net.policy.select(), only(0));
    let ups = net
        .log
        .iter()
        .filter(|(_, l)| l == "link: host: 2 link: 0 is up")
        .count();
    assert_eq!(ups, 2, "{:?}", net.log);
    // Link 1 never flapped.
    assert!(!net.log.iter().any(|(_, l)| l.contains("link: 1 is down")));
    for (t, line) in &net.log {
        println!("{:>8} ms  {line}", t.as_nanos() / 1_000_000);
    }
}
