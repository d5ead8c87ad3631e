//! Path MTU discovery for one (peer, link), sans-IO, after knet's model (`threads_pmtud.c`).
//!
//! knet's rules, reproduced:
//! * Discovery runs only while the link is up, and again every `knet_pmtud_interval` (30 s in
//!   corosync, REFERENCE §1.3 and §2.1) after the last successful run.
//! * It starts from the top: the first probe is the largest frame the protocol allows, because
//!   the kernel refuses (`EMSGSIZE`) anything above the interface MTU and then reports that MTU,
//!   which becomes the next probe. The lower bound starts at the size of a ping, which is known
//!   to pass.
//! * Each probe waits for its reply up to the reply timeout (knet uses the link's adjusted pong
//!   timeout); a reply makes the size good, a timeout or a send error makes it bad, and the next
//!   probe is the midpoint. The search ends when good + 1 = bad or the largest size passed. At
//!   most 30 probes per run (knet's failsafe: bisecting 576..128000 needs 18-19).
//! * The result is valid only if it is at least the protocol minimum (576 bytes for IPv4, 1280
//!   for IPv6, REFERENCE §1.5); the link is not used for data until it has a valid MTU.
//!
//! Sizes here are IP packet sizes (`ip_len`, as knet's `onwire_len`) unless named `frame_len`
//! (the UDP payload: our header, payload and tag). The result callers use is
//! [`Pmtud::data_mtu`]: the largest payload of one data frame, i.e. the fragment length for
//! [`crate::frag::fragments`].
//!
//! Departure from knet: the last valid MTU is kept while the link is down (knet drops it only
//! when a run is cut short); a link that comes back re-runs discovery at once but can carry data
//! with the old value in the meantime.
//!
//! Driving: call [`Pmtud::handle_link_state`] on link up/down, [`Pmtud::handle_timeout`] at
//! [`Pmtud::poll_timeout`], [`Pmtud::handle_reply`] for MTU replies and
//! [`Pmtud::handle_send_error`] when sending a probe fails; after each, send what
//! [`Pmtud::poll_probe`] returns and drain [`Pmtud::poll_event`].
#![forbid(unsafe_code)]

use std::fmt;
use std::time::Duration;

use crate::wire::{
    MonoTime, MtuProbeBody, PingBody, HEADER_LEN, IPV4_HEADER_LEN, IPV6_HEADER_LEN, MAX_FRAME_LEN,
    MIN_MTU, TAG_LEN, UDP_HEADER_LEN,
};

/// corosync's `knet_pmtud_interval` default (`totemconfig.c` `KNET_PMTUD_INTERVAL 30`;
/// REFERENCE §1.3).
pub const PMTUD_INTERVAL_DEFAULT: Duration = Duration::from_secs(30);
/// Probes per discovery run before giving up (knet's failsafe of 30).
pub const MAX_PROBES_PER_RUN: u32 = 30;
/// Smallest valid IPv6 path MTU (knet `KNET_PMTUD_MIN_MTU_V6`; REFERENCE §1.5).
pub const MIN_MTU_V6: usize = 1280;

/// The IP version of the link's addresses: it sets the header overhead and the minimum MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// IPv4: 20-byte header, minimum MTU 576.
    V4,
    /// IPv6: 40-byte header, minimum MTU 1280.
    V6,
}

impl IpVersion {
    /// IP plus UDP header bytes.
    pub fn ip_udp_overhead(self) -> usize {
        UDP_HEADER_LEN
            + match self {
                IpVersion::V4 => IPV4_HEADER_LEN,
                IpVersion::V6 => IPV6_HEADER_LEN,
            }
    }

    /// Smallest valid path MTU.
    pub fn min_mtu(self) -> usize {
        match self {
            IpVersion::V4 => MIN_MTU,
            IpVersion::V6 => MIN_MTU_V6,
        }
    }
}

/// Settings of one link's discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmtudConfig {
    /// Time between successful runs.
    pub interval: Duration,
    /// How long to wait for a probe's reply (knet: the link's adjusted pong timeout).
    pub reply_timeout: Duration,
    /// The link's IP version.
    pub ip_version: IpVersion,
    /// Frames carry an AEAD tag (it reduces the data MTU).
    pub encrypted: bool,
}

impl PmtudConfig {
    /// Largest IP packet a frame can make.
    pub fn max_ip_len(&self) -> usize {
        MAX_FRAME_LEN + self.ip_version.ip_udp_overhead()
    }

    /// IP packet size of a ping frame: known to pass once the link is up.
    pub fn ping_ip_len(&self) -> usize {
        HEADER_LEN + PingBody::LEN + self.tag_len() + self.ip_version.ip_udp_overhead()
    }

    /// Largest data payload in a frame filling an IP packet of `ip_len` bytes.
    pub fn data_mtu_for(&self, ip_len: usize) -> usize {
        ip_len.saturating_sub(self.ip_version.ip_udp_overhead() + HEADER_LEN + self.tag_len())
    }

    fn tag_len(&self) -> usize {
        if self.encrypted {
            TAG_LEN
        } else {
            0
        }
    }
}

/// A probe to send: an [`crate::wire::FrameType::MtuProbe`] frame whose payload is `body`
/// followed by zeros up to `payload_len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeRequest {
    /// The probe body (its `frame_len` is the datagram size being tested).
    pub body: MtuProbeBody,
    /// Payload length of the probe frame.
    pub payload_len: u16,
}

/// Discovery results to log. `Display` uses knet's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmtudEvent {
    /// A run finished with a valid MTU (`from` is the previous data MTU, if any).
    Completed {
        /// Peer node id.
        host_id: u32,
        /// Link number.
        link: u8,
        /// Previous data MTU.
        from: Option<usize>,
        /// New data MTU.
        to: usize,
    },
    /// A run finished below the protocol minimum: the link is not usable for data.
    Invalid {
        /// Peer node id.
        host_id: u32,
        /// Link number.
        link: u8,
        /// The IP MTU found.
        ip_mtu: usize,
    },
    /// A run sent [`MAX_PROBES_PER_RUN`] probes without converging.
    Aborted {
        /// Peer node id.
        host_id: u32,
        /// Link number.
        link: u8,
    },
}

impl fmt::Display for PmtudEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PmtudEvent::Completed {
                host_id,
                link,
                from: Some(from),
                to,
            } if from != to => write!(
                f,
                "pmtud: PMTUD link change for host: {host_id} link: {link} from {from} to {to}"
            ),
            PmtudEvent::Completed {
                host_id, link, to, ..
            } => write!(
                f,
                "pmtud: PMTUD completed for host: {host_id} link: {link} current link mtu: {to}"
            ),
            PmtudEvent::Invalid {
                host_id,
                link,
                ip_mtu,
            } => write!(
                f,
                "pmtud: Invalid MTU detected for host: {host_id} link: {link} mtu: {ip_mtu}"
            ),
            PmtudEvent::Aborted { host_id, link } => write!(
                f,
                "pmtud: Aborting PMTUD process for host: {host_id} link: {link}: Too many attempts. MTU might have changed during discovery."
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Search {
    /// Largest IP size known to pass.
    good: usize,
    /// Smallest IP size known to fail, if any.
    bad: Option<usize>,
    /// Size being probed.
    current: usize,
    probe_id: u32,
    sent_at: MonoTime,
    probes_sent: u32,
}

/// Path MTU discovery state of one link to one peer.
#[derive(Debug)]
pub struct Pmtud {
    config: PmtudConfig,
    host_id: u32,
    link: u8,
    link_up: bool,
    search: Option<Search>,
    /// When the next run starts (while the link is up and no search runs).
    next_run_at: Option<MonoTime>,
    data_mtu: Option<usize>,
    next_probe_id: u32,
    pending_probe: Option<ProbeRequest>,
    pending_event: Option<PmtudEvent>,
}

impl Pmtud {
    /// Discovery for `host_id`'s link `link`; nothing happens until the link is up.
    pub fn new(config: PmtudConfig, host_id: u32, link: u8) -> Self {
        Pmtud {
            config,
            host_id,
            link,
            link_up: false,
            search: None,
            next_run_at: None,
            data_mtu: None,
            next_probe_id: 0,
            pending_probe: None,
            pending_event: None,
        }
    }

    /// The largest payload of one data frame on this link, once discovery found a valid MTU.
    pub fn data_mtu(&self) -> Option<usize> {
        self.data_mtu
    }

    /// knet's `has_valid_mtu`: the link may carry data.
    pub fn has_valid_mtu(&self) -> bool {
        self.data_mtu.is_some()
    }

    /// Whether a discovery run is in progress.
    pub fn is_searching(&self) -> bool {
        self.search.is_some()
    }

    /// Replaces the reply timeout (e.g. when the heartbeat's adjusted pong timeout changes).
    pub fn set_reply_timeout(&mut self, reply_timeout: Duration) {
        self.config.reply_timeout = reply_timeout;
    }

    /// The heartbeat says the link went up or down. Up starts a run at once; down stops one.
    pub fn handle_link_state(&mut self, now: MonoTime, up: bool) {
        self.link_up = up;
        if up {
            if self.search.is_none() {
                self.start(now);
            }
        } else {
            self.search = None;
            self.pending_probe = None;
            self.next_run_at = None;
        }
    }

    /// Starts a run now if the link is up and none runs (knet's forced run, e.g. after an
    /// interface MTU change).
    pub fn force_run(&mut self, now: MonoTime) {
        if self.link_up && self.search.is_none() {
            self.start(now);
        }
    }

    /// A probe to send now.
    pub fn poll_probe(&mut self) -> Option<ProbeRequest> {
        self.pending_probe.take()
    }

    /// A result to log.
    pub fn poll_event(&mut self) -> Option<PmtudEvent> {
        self.pending_event.take()
    }

    /// When [`Pmtud::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<MonoTime> {
        match self.search {
            Some(search) => Some(search.sent_at.saturating_add(self.config.reply_timeout)),
            None => self.next_run_at,
        }
    }

    /// Advances to `now`: a probe without reply for the reply timeout counts as too big; a run
    /// is due every interval.
    pub fn handle_timeout(&mut self, now: MonoTime) {
        match self.search {
            Some(search) => {
                if now.saturating_since(search.sent_at) >= self.config.reply_timeout {
                    self.probe_failed(now, search, search.current, None);
                }
            }
            None => {
                if self.link_up && self.next_run_at.is_some_and(|at| now >= at) {
                    self.start(now);
                }
            }
        }
    }

    /// An MTU reply arrived on this link.
    pub fn handle_reply(&mut self, now: MonoTime, reply: MtuProbeBody) {
        let Some(mut search) = self.search else {
            return;
        };
        let expected_frame_len = search.current - self.config.ip_version.ip_udp_overhead();
        if reply.probe_id != search.probe_id || usize::from(reply.frame_len) != expected_frame_len {
            return; // a reply to an older probe, or to a probe from another run
        }
        search.good = search.current;
        let reached_top = search.current >= self.config.max_ip_len();
        if reached_top || search.bad.is_some_and(|bad| bad <= search.good + 1) {
            self.finish(now, search.good);
        } else {
            self.next_probe(now, search, None);
        }
    }

    /// Sending the probe `probe_id` failed. `kernel_mtu` is the path MTU the kernel reported with
    /// `EMSGSIZE` (IP_MTU or the error queue), when known: it becomes the next probe.
    pub fn handle_send_error(&mut self, now: MonoTime, probe_id: u32, kernel_mtu: Option<usize>) {
        let Some(search) = self.search else {
            return;
        };
        if probe_id != search.probe_id {
            return;
        }
        let bad = match kernel_mtu {
            Some(mtu) if mtu < search.current => mtu + 1,
            _ => search.current,
        };
        self.probe_failed(now, search, bad, kernel_mtu);
    }

    fn start(&mut self, now: MonoTime) {
        let search = Search {
            good: self.config.ping_ip_len(),
            bad: None,
            current: self.config.max_ip_len(),
            probe_id: 0,
            sent_at: now,
            probes_sent: 0,
        };
        self.next_run_at = None;
        self.send_probe(now, search);
    }

    fn probe_failed(&mut self, now: MonoTime, mut search: Search, bad: usize, hint: Option<usize>) {
        search.bad = Some(search.bad.map_or(bad, |b| b.min(bad)));
        if search.bad.is_some_and(|b| b <= search.good + 1) {
            self.finish(now, search.good);
        } else {
            self.next_probe(now, search, hint);
        }
    }

    fn next_probe(&mut self, now: MonoTime, mut search: Search, hint: Option<usize>) {
        let bad = search.bad.unwrap_or(self.config.max_ip_len() + 1);
        let midpoint = search.good + (bad - search.good) / 2;
        search.current = match hint {
            Some(kernel_mtu) if kernel_mtu > search.good && kernel_mtu < bad => kernel_mtu,
            _ => midpoint,
        };
        if search.probes_sent >= MAX_PROBES_PER_RUN {
            self.abort(now);
            return;
        }
        self.send_probe(now, search);
    }

    fn send_probe(&mut self, now: MonoTime, mut search: Search) {
        let frame_len = search.current - self.config.ip_version.ip_udp_overhead();
        let Some(payload_len) = MtuProbeBody::probe_payload_len(frame_len, self.config.encrypted)
        else {
            // Cannot happen: sizes stay between a ping and the maximum frame. Treat as failure.
            self.abort(now);
            return;
        };
        let frame_len = u16::try_from(frame_len).unwrap_or(u16::MAX);
        search.probe_id = self.next_probe_id;
        self.next_probe_id = self.next_probe_id.wrapping_add(1);
        search.sent_at = now;
        search.probes_sent += 1;
        self.search = Some(search);
        self.pending_probe = Some(ProbeRequest {
            body: MtuProbeBody {
                probe_id: search.probe_id,
                frame_len,
            },
            payload_len,
        });
    }

    fn finish(&mut self, now: MonoTime, ip_mtu: usize) {
        self.search = None;
        self.pending_probe = None;
        if ip_mtu < self.config.ip_version.min_mtu() {
            self.data_mtu = None;
            self.pending_event = Some(PmtudEvent::Invalid {
                host_id: self.host_id,
                link: self.link,
                ip_mtu,
            });
            // knet retries at its next loop turn since no run succeeded; we wait one reply
            // timeout instead of spinning.
            self.next_run_at = Some(now.saturating_add(self.config.reply_timeout));
            return;
        }
        let to = self.config.data_mtu_for(ip_mtu);
        self.pending_event = Some(PmtudEvent::Completed {
            host_id: self.host_id,
            link: self.link,
            from: self.data_mtu,
            to,
        });
        self.data_mtu = Some(to);
        self.next_run_at = Some(now.saturating_add(self.config.interval));
    }

    fn abort(&mut self, now: MonoTime) {
        self.search = None;
        self.pending_probe = None;
        self.data_mtu = None;
        self.pending_event = Some(PmtudEvent::Aborted {
            host_id: self.host_id,
            link: self.link,
        });
        self.next_run_at = Some(now.saturating_add(self.config.reply_timeout));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn config(ip_version: IpVersion, encrypted: bool) -> PmtudConfig {
        PmtudConfig {
            interval: PMTUD_INTERVAL_DEFAULT,
            reply_timeout: 1500 * MS,
            ip_version,
            encrypted,
        }
    }

    /// A path that passes IP packets up to `path_mtu`; the kernel knows `kernel_mtu` (the local
    /// interface MTU) and refuses larger sends. Returns (data MTU, probes, time taken).
    fn discover(
        cfg: PmtudConfig,
        kernel_mtu: usize,
        path_mtu: usize,
        report_kernel_mtu: bool,
    ) -> (Option<usize>, u32, Duration, Vec<PmtudEvent>) {
        let start = MonoTime(1_000_000_000);
        let mut now = start;
        let mut pmtud = Pmtud::new(cfg, 2, 0);
        pmtud.handle_link_state(now, true);
        let mut probes = 0;
        let mut events = Vec::new();
        for _ in 0..200 {
            if let Some(event) = pmtud.poll_event() {
                events.push(event);
            }
            if !pmtud.is_searching() {
                break;
            }
            if let Some(probe) = pmtud.poll_probe() {
                probes += 1;
                let ip_len = usize::from(probe.body.frame_len) + cfg.ip_version.ip_udp_overhead();
                let frame_len = HEADER_LEN + usize::from(probe.payload_len) + cfg.tag_len();
                assert_eq!(frame_len, usize::from(probe.body.frame_len));
                if ip_len > kernel_mtu {
                    let hint = report_kernel_mtu.then_some(kernel_mtu);
                    pmtud.handle_send_error(now, probe.body.probe_id, hint);
                } else if ip_len <= path_mtu {
                    now = now.saturating_add(MS);
                    pmtud.handle_reply(now, probe.body);
                } else {
                    now = pmtud.poll_timeout().unwrap();
                    pmtud.handle_timeout(now);
                }
            }
        }
        if let Some(event) = pmtud.poll_event() {
            events.push(event);
        }
        (
            pmtud.data_mtu(),
            probes,
            now.saturating_since(start),
            events,
        )
    }

    #[test]
    fn loopback_passes_the_largest_frame_at_once() {
        let (mtu, probes, _, events) = discover(config(IpVersion::V4, true), 65536, 65536, true);
        assert_eq!(probes, 1);
        assert_eq!(mtu, Some(MAX_FRAME_LEN - HEADER_LEN - TAG_LEN));
        assert!(events[0].to_string().contains("current link mtu"));
    }

    #[test]
    fn kernel_reported_mtu_is_probed_next() {
        let (mtu, probes, took, _) = discover(config(IpVersion::V4, true), 1500, 1500, true);
        assert_eq!(probes, 2);
        assert_eq!(mtu, Some(1500 - 28 - HEADER_LEN - TAG_LEN));
        assert!(took < 10 * MS);
        let (mtu, _, _, _) = discover(config(IpVersion::V6, false), 9000, 9000, true);
        assert_eq!(mtu, Some(9000 - 48 - HEADER_LEN));
    }

    #[test]
    fn bisects_a_smaller_path_mtu_exactly() {
        for path_mtu in [576, 1280, 1400, 1499, 4321] {
            let (mtu, probes, _, _) = discover(config(IpVersion::V4, true), 9000, path_mtu, true);
            assert_eq!(
                mtu,
                Some(path_mtu - 28 - HEADER_LEN - TAG_LEN),
                "path {path_mtu}"
            );
            assert!(probes <= MAX_PROBES_PER_RUN, "{probes} probes");
        }
        // Without a kernel hint the search starts from 65535 and still converges.
        let (mtu, probes, _, _) = discover(config(IpVersion::V4, false), 65536, 1400, false);
        assert_eq!(mtu, Some(1400 - 28 - HEADER_LEN));
        assert!(probes <= 20, "{probes} probes");
    }

    #[test]
    fn path_below_the_minimum_is_invalid() {
        let (mtu, _, _, events) = discover(config(IpVersion::V6, true), 1500, 1200, true);
        assert_eq!(mtu, None);
        assert_eq!(
            events.last().unwrap().to_string(),
            "pmtud: Invalid MTU detected for host: 2 link: 0 mtu: 1200"
        );
    }

    #[test]
    fn reruns_every_interval_and_reports_changes() {
        let cfg = config(IpVersion::V4, true);
        let mut now = MonoTime(0);
        let mut pmtud = Pmtud::new(cfg, 3, 1);
        assert_eq!(pmtud.poll_timeout(), None, "nothing while the link is down");
        pmtud.handle_link_state(now, true);
        let probe = pmtud.poll_probe().unwrap();
        pmtud.handle_reply(now, probe.body);
        assert!(pmtud.has_valid_mtu());
        pmtud.poll_event();
        assert_eq!(
            pmtud.poll_timeout(),
            Some(now.saturating_add(PMTUD_INTERVAL_DEFAULT))
        );
        now = now.saturating_add(PMTUD_INTERVAL_DEFAULT - MS);
        pmtud.handle_timeout(now);
        assert!(pmtud.poll_probe().is_none());
        now = now.saturating_add(MS);
        pmtud.handle_timeout(now);
        let probe = pmtud.poll_probe().unwrap();
        // The path shrank to 1400: the kernel reports it.
        pmtud.handle_send_error(now, probe.body.probe_id, Some(1400));
        let probe = pmtud.poll_probe().unwrap();
        assert_eq!(usize::from(probe.body.frame_len), 1400 - 28);
        // A stale reply (old probe id) is ignored.
        pmtud.handle_reply(
            now,
            MtuProbeBody {
                probe_id: 0,
                ..probe.body
            },
        );
        assert!(pmtud.is_searching());
        pmtud.handle_reply(now, probe.body);
        let event = pmtud.poll_event().unwrap();
        assert_eq!(
            event.to_string(),
            format!(
                "pmtud: PMTUD link change for host: 3 link: 1 from {} to {}",
                MAX_FRAME_LEN - HEADER_LEN - TAG_LEN,
                1400 - 28 - HEADER_LEN - TAG_LEN
            )
        );
        // Link down keeps the MTU and stops probing; up re-runs at once.
        pmtud.handle_link_state(now, false);
        assert!(pmtud.has_valid_mtu());
        assert_eq!(pmtud.poll_timeout(), None);
        pmtud.handle_link_state(now, true);
        assert!(pmtud.poll_probe().is_some());
    }

    #[test]
    fn gives_up_after_too_many_probes() {
        let cfg = config(IpVersion::V4, true);
        let mut pmtud = Pmtud::new(cfg, 2, 0);
        let mut now = MonoTime(0);
        pmtud.handle_link_state(now, true);
        let mut probes = 0;
        // A path whose MTU keeps changing: every success is followed by failures, replies for
        // alternate probes so bisection never converges within the failsafe.
        while let Some(probe) = pmtud.poll_probe() {
            probes += 1;
            now = now.saturating_add(MS);
            if probes % 2 == 0 {
                pmtud.handle_reply(now, probe.body);
            } else {
                pmtud.handle_send_error(now, probe.body.probe_id, None);
            }
            assert!(probes <= MAX_PROBES_PER_RUN);
        }
        // Bisection of 65535 converges in fewer than 30 probes, so the run ends either way;
        // the failsafe is checked directly below.
        assert!(!pmtud.is_searching());
        let mut pmtud = Pmtud::new(cfg, 2, 0);
        pmtud.handle_link_state(now, true);
        let mut search = pmtud.search.unwrap();
        search.probes_sent = MAX_PROBES_PER_RUN;
        pmtud.next_probe(now, search, None);
        assert!(matches!(
            pmtud.poll_event(),
            Some(PmtudEvent::Aborted { .. })
        ));
        assert!(!pmtud.has_valid_mtu());
    }
}
