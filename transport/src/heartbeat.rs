//! Per (peer, link) heartbeat: pings, pongs, RTT statistics and the link's up/down/suspect state,
//! with knet's semantics (REFERENCE §1.3–1.4) plus totemd's suspect state.
//!
//! # knet rules reproduced
//! * Timers: `ping_timeout = token / pong_count`, `ping_interval = token / (2 · pong_count)`,
//!   `pong_count` 2, each overridable (`knet_ping_interval`, `knet_ping_timeout`,
//!   `knet_pong_count`), computed from the runtime token in whole milliseconds as corosync does
//!   ([`HeartbeatConfig::from_token`]).
//! * A ping goes out every `ping_interval`. Its body carries our monotonic send time, echoed in
//!   the pong; RTT = receive time − echoed time.
//! * `pong_timeout_adj = ping_timeout · backoff + 2 · average RTT`; `backoff` is 10 when the
//!   link is created or goes down and decreases by one per second down to 1 (start-up backoff).
//! * Down: some pong was received since the last down and none for `pong_timeout_adj`. Going down
//!   resets the pong count and the backoff; a link that was up logs
//!   `link: host: 2 link: 0 is down`.
//! * Pongs whose RTT exceeds `ping_timeout` refresh the pong time but are otherwise discarded.
//!   Others update the average; while the link is down and the average is below
//!   `pong_timeout_adj`, the first `pong_count` pongs are counted and the next one brings the link
//!   up (`pong_count + 1` pongs). Data received on a down link that has counted at least one pong
//!   brings it up at once ("fast data up").
//! * The average RTT is knet's running mean over at most `latency_precision` (2048) samples.
//!
//! # Suspect (beyond knet)
//! A link is **Suspect** when it is up and has been silent — no pong and no other frame from
//! the peer — for `suspect_after` since a ping went out, or a ping has gone unanswered for
//! `SUSPECT_ONE_WAY_MULTIPLE × suspect_after` even though other frames arrive (a one-way
//! failure). Under load a pong can queue behind data; frames that keep arriving show the peer
//! alive, so an overloaded host does not flap its links to suspect:
//!
//! `suspect_after = min(max(4 × SRTT, SRTT + 4 × RTTVAR, suspect_floor), ping_timeout / 2)`
//!
//! SRTT and RTTVAR are RFC 6298's smoothed RTT and RTT variation (TCP's retransmission timer:
//! the standard estimate of "an answer is overdue"); knet's slow running mean (2048 samples)
//! would take minutes to follow a lasting latency change, while these follow within a few pongs.
//! Four RTTs leave room for ordinary jitter (a pong normally arrives after one RTT); the floor
//! (25 ms default) keeps scheduling hiccups on a loaded host from triggering it on loopback or
//! LAN links whose RTT is tens of microseconds; the cap keeps it well ahead of `ping_timeout`.
//! Pings alone come only every `ping_interval` (750 ms with corosync defaults), so the heartbeat
//! also sends an early ping when frames from the peer are *expected* but stop: either frames
//! were flowing on this link (their inter-arrival average is below half the ping interval) and
//! none came for `max(4 × that average, suspect_after)`, or the caller said it expects a frame
//! ([`LinkHeartbeat::expect_frame`]) and none came for `suspect_after`. An idle peer answers the
//! early ping within an RTT and nothing else happens; a cut link leaves it unanswered and the
//! link turns Suspect a few tens of milliseconds after the cut instead of after `ping_timeout`.
//! While Suspect the link pings every `suspect_after`, the policy also sends on the next usable
//! link, and the first pong makes it **Recovered** (Up again). Suspect never changes the up/down
//! decision: the link goes down only by the knet rules above, so jitter cannot flap it.
//!
//! # Driving
//! After creating a [`LinkHeartbeat`] and after every `handle_*` call: send what
//! [`LinkHeartbeat::poll_ping`] returns, log/act on [`LinkHeartbeat::poll_event`] until `None`,
//! and call [`LinkHeartbeat::handle_timeout`] at [`LinkHeartbeat::poll_timeout`]. Times must not
//! go backwards; early or repeated `handle_timeout` calls are harmless.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::wire::{MonoTime, PingBody};

/// corosync's pong count (`exec/totemconfig.c` `KNET_PONG_COUNT 2`; REFERENCE §1.3).
pub const PONG_COUNT_DEFAULT: u8 = 2;
/// RTT samples in the running mean (knet/corosync `precision` 2048; REFERENCE §1.3).
pub const LATENCY_PRECISION_DEFAULT: u32 = 2048;
/// Start-up and after-down multiplier of the pong timeout (knet `KNET_LINK_PONG_TIMEOUT_BACKOFF`).
pub const PONG_TIMEOUT_BACKOFF_START: u32 = 10;
/// The backoff decreases by one per this period (knet `_adjust_pong_timeouts`, once a second).
pub const PONG_TIMEOUT_BACKOFF_PERIOD: Duration = Duration::from_secs(1);
/// Weight of the average RTT in the pong timeout (knet `KNET_LINK_PONG_TIMEOUT_LAT_MUL`).
pub const PONG_TIMEOUT_RTT_MULTIPLE: u32 = 2;
/// A ping unanswered for this many smoothed RTTs makes an up link suspect (see module doc).
pub const SUSPECT_RTT_MULTIPLE: u32 = 4;
/// An unanswered ping makes the link suspect after this many `suspect_after` even while other
/// frames from the peer keep arriving (our frames may not reach it: a one-way failure).
pub const SUSPECT_ONE_WAY_MULTIPLE: u32 = 4;
/// Weight of the RTT variation in the suspect threshold (RFC 6298's K = 4).
pub const RTTVAR_MULTIPLE: u32 = 4;
/// Lower bound of the suspect threshold (see module doc).
pub const SUSPECT_FLOOR_DEFAULT: Duration = Duration::from_millis(25);
/// Silence of this many average inter-arrival gaps on a busy link triggers an early ping.
pub const SILENCE_GAP_MULTIPLE: u32 = 4;
/// Send times of this many recent pings are kept to match pongs (older pongs are long overdue).
const PING_HISTORY_LEN: usize = 8;
/// Events a link can queue between two drains (one call produces at most two).
const EVENT_QUEUE_LEN: usize = 8;
/// RTT histogram range and precision: 1 µs to 60 s, 2 significant digits (about 20 KiB per link).
const HISTOGRAM_MAX_US: u64 = 60_000_000;
const HISTOGRAM_SIGNIFICANT_DIGITS: u8 = 2;

/// Why a heartbeat configuration is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeartbeatConfigError {
    /// `knet_pong_count` must be at least 1 (knet rejects 0).
    #[error("knet_pong_count must be at least 1")]
    ZeroPongCount,
    /// The ping interval came out (or was configured) as zero.
    #[error("knet_ping_interval must be above 0 ms")]
    ZeroPingInterval,
    /// The ping timeout came out (or was configured) as zero.
    #[error("knet_ping_timeout must be above 0 ms")]
    ZeroPingTimeout,
    /// `latency_precision` must be at least 1.
    #[error("knet latency precision must be at least 1")]
    ZeroPrecision,
}

/// Explicit `knet_ping_interval`, `knet_ping_timeout` and `knet_pong_count` from corosync.conf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KnetTimerOverrides {
    /// `knet_ping_interval`.
    pub ping_interval: Option<Duration>,
    /// `knet_ping_timeout`.
    pub ping_timeout: Option<Duration>,
    /// `knet_pong_count`.
    pub pong_count: Option<u8>,
}

/// Heartbeat timers of one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// Time between pings.
    pub ping_interval: Duration,
    /// knet's pong timeout before backoff and RTT slack.
    pub ping_timeout: Duration,
    /// Pongs counted before the next one brings a link up.
    pub pong_count: u8,
    /// Samples in the running RTT mean.
    pub latency_precision: u32,
    /// Lower bound of the suspect threshold.
    pub suspect_floor: Duration,
}

impl HeartbeatConfig {
    /// corosync's derivation (`totem_calc_knet_ping_timers`, REFERENCE §1.3) from the runtime
    /// token (including the token coefficient), in whole milliseconds: e.g. token 3000 ms →
    /// timeout 1500 ms, interval 750 ms; token 3650 ms → 1825 ms and 912 ms.
    pub fn from_token(
        runtime_token: Duration,
        overrides: &KnetTimerOverrides,
    ) -> Result<Self, HeartbeatConfigError> {
        let pong_count = overrides.pong_count.unwrap_or(PONG_COUNT_DEFAULT);
        if pong_count == 0 {
            return Err(HeartbeatConfigError::ZeroPongCount);
        }
        let token_ms = u64::try_from(runtime_token.as_millis()).unwrap_or(u64::MAX);
        let derived_timeout = Duration::from_millis(token_ms / u64::from(pong_count));
        let derived_interval = Duration::from_millis(token_ms / (u64::from(pong_count) * 2));
        let config = HeartbeatConfig {
            ping_interval: overrides.ping_interval.unwrap_or(derived_interval),
            ping_timeout: overrides.ping_timeout.unwrap_or(derived_timeout),
            pong_count,
            latency_precision: LATENCY_PRECISION_DEFAULT,
            suspect_floor: SUSPECT_FLOOR_DEFAULT,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the values are usable.
    pub fn validate(&self) -> Result<(), HeartbeatConfigError> {
        if self.pong_count == 0 {
            return Err(HeartbeatConfigError::ZeroPongCount);
        }
        if self.ping_interval.is_zero() {
            return Err(HeartbeatConfigError::ZeroPingInterval);
        }
        if self.ping_timeout.is_zero() {
            return Err(HeartbeatConfigError::ZeroPingTimeout);
        }
        if self.latency_precision == 0 {
            return Err(HeartbeatConfigError::ZeroPrecision);
        }
        Ok(())
    }
}

/// A link's state as the heartbeat sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// Not (yet, or no longer) up.
    Down,
    /// Up, pongs arriving.
    Up,
    /// Up by knet's rules, but pongs are overdue: also send on another link.
    Suspect,
}

/// A state change to log and act on. `Display` gives the log line (knet's wording for up and
/// down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// The link came up.
    LinkUp {
        /// Peer node id.
        host_id: u32,
        /// Link number.
        link: u8,
    },
    /// The link went down.
    LinkDown {
        /// Peer node id.
        host_id: u32,
        /// Link number.
        link: u8,
    },
    /// Pongs are overdue on an up link.
    Suspect {
        /// Peer node id.
        host_id: u32,
        /// Link number.
        link: u8,
        /// How long the oldest unanswered ping has waited.
        silent_for: Duration,
    },
    /// A suspect link answered again.
    Recovered {
        /// Peer node id.
        host_id: u32,
        /// Link number.
        link: u8,
    },
}

impl fmt::Display for LinkEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LinkEvent::LinkUp { host_id, link } => {
                write!(f, "link: host: {host_id} link: {link} is up")
            }
            LinkEvent::LinkDown { host_id, link } => {
                write!(f, "link: host: {host_id} link: {link} is down")
            }
            LinkEvent::Suspect {
                host_id,
                link,
                silent_for,
            } => write!(
                f,
                "link: host: {host_id} link: {link} is suspect: no pong for {} ms, also sending on the next link",
                silent_for.as_millis()
            ),
            LinkEvent::Recovered { host_id, link } => {
                write!(f, "link: host: {host_id} link: {link} recovered: pongs resumed")
            }
        }
    }
}

/// RTT figures of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RttStats {
    /// Smallest accepted sample.
    pub min: Duration,
    /// knet's running mean.
    pub avg: Duration,
    /// Largest accepted sample.
    pub max: Duration,
    /// Accepted samples (pongs within `ping_timeout`).
    pub samples: u64,
}

/// Counters of a link's heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeartbeatCounters {
    /// Pings handed out by [`LinkHeartbeat::poll_ping`].
    pub pings_sent: u64,
    /// Of those, early pings (expected traffic stopped, or suspect re-pings).
    pub early_pings: u64,
    /// Pongs matching a recent ping.
    pub pongs: u64,
    /// Pongs with an RTT above `ping_timeout` (knet discards them for the RTT and link up).
    pub late_pongs: u64,
    /// Pongs that match none of our recent pings.
    pub unmatched_pongs: u64,
    /// Events dropped because nobody drained them (a driver bug).
    pub events_dropped: u64,
}

/// Heartbeat state of one link to one peer. See the module doc for the rules and the driving
/// order.
#[derive(Debug)]
pub struct LinkHeartbeat {
    config: HeartbeatConfig,
    host_id: u32,
    link: u8,
    connected: bool,
    suspect: bool,
    /// Pongs counted towards link up since the last down.
    received_pongs: u32,
    pong_last: Option<MonoTime>,
    ping_last: Option<MonoTime>,
    next_ping_seq: u64,
    /// (seq, send time) of recent pings, by `seq % PING_HISTORY_LEN`.
    ping_history: [Option<(u64, MonoTime)>; PING_HISTORY_LEN],
    /// Highest ping sequence number answered by a pong.
    answered_seq: Option<u64>,
    backoff: u32,
    backoff_adjusted_at: MonoTime,
    last_rx: Option<MonoTime>,
    /// Latest data frame from this peer on any OTHER link (set by the caller, see
    /// [`LinkHeartbeat::note_data_elsewhere`]).
    data_elsewhere: Option<MonoTime>,
    /// Last time `handle_timeout` ran the cross-link check.
    cross_checked_at: Option<MonoTime>,
    /// Latest data frame (not ping or pong) from the peer on this link.
    last_data: Option<MonoTime>,
    /// Running average gap between received frames while traffic flows, nanoseconds.
    rx_gap_avg_ns: Option<u64>,
    expect_since: Option<MonoTime>,
    /// An early ping was sent for the current silence; cleared by any received frame.
    early_ping_sent: bool,
    rtt_avg_ns: u64,
    /// RFC 6298 smoothed RTT and RTT variation, for the suspect threshold.
    srtt_ns: Option<u64>,
    rttvar_ns: u64,
    created_at: MonoTime,
    rtt_samples: u64,
    rtt_min_ns: u64,
    rtt_max_ns: u64,
    histogram: Histogram<u64>,
    pending_ping: Option<PingBody>,
    events: VecDeque<LinkEvent>,
    counters: HeartbeatCounters,
}

impl LinkHeartbeat {
    /// A new link to `host_id` on link `link`, down, with the start-up backoff; the first ping
    /// is due at once.
    pub fn new(config: HeartbeatConfig, host_id: u32, link: u8, now: MonoTime) -> Self {
        let histogram =
            Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, HISTOGRAM_SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid");
        let mut heartbeat = LinkHeartbeat {
            config,
            host_id,
            link,
            connected: false,
            suspect: false,
            received_pongs: 0,
            pong_last: None,
            ping_last: None,
            next_ping_seq: 0,
            ping_history: [None; PING_HISTORY_LEN],
            answered_seq: None,
            backoff: PONG_TIMEOUT_BACKOFF_START,
            backoff_adjusted_at: now,
            last_rx: None,
            data_elsewhere: None,
            cross_checked_at: None,
            last_data: None,
            rx_gap_avg_ns: None,
            expect_since: None,
            early_ping_sent: false,
            rtt_avg_ns: 0,
            srtt_ns: None,
            rttvar_ns: 0,
            created_at: now,
            rtt_samples: 0,
            rtt_min_ns: u64::MAX,
            rtt_max_ns: 0,
            histogram,
            pending_ping: None,
            events: VecDeque::with_capacity(EVENT_QUEUE_LEN),
            counters: HeartbeatCounters::default(),
        };
        heartbeat.handle_timeout(now);
        heartbeat
    }

    /// The link's state.
    pub fn state(&self) -> LinkState {
        match (self.connected, self.suspect) {
            (false, _) => LinkState::Down,
            (true, false) => LinkState::Up,
            (true, true) => LinkState::Suspect,
        }
    }

    /// Whether the link is up by knet's rules (Up or Suspect).
    pub fn is_up(&self) -> bool {
        self.connected
    }

    /// Whether the link is suspect.
    pub fn is_suspect(&self) -> bool {
        self.connected && self.suspect
    }

    /// The timers in force.
    pub fn config(&self) -> &HeartbeatConfig {
        &self.config
    }

    /// Counters since creation.
    pub fn counters(&self) -> HeartbeatCounters {
        self.counters
    }

    /// knet's `pong_timeout_adj`: the silence after which an up link goes down.
    pub fn pong_timeout_adjusted(&self) -> Duration {
        self.config.ping_timeout * self.backoff
            + Duration::from_nanos(self.rtt_avg_ns) * PONG_TIMEOUT_RTT_MULTIPLE
    }

    /// How long a ping may go unanswered before an up link is suspect (see module doc).
    pub fn suspect_after(&self) -> Duration {
        let srtt = Duration::from_nanos(self.srtt_ns.unwrap_or(0));
        let rttvar = Duration::from_nanos(self.rttvar_ns);
        let rtt_based = (srtt * SUSPECT_RTT_MULTIPLE).max(srtt + rttvar * RTTVAR_MULTIPLE);
        rtt_based
            .max(self.config.suspect_floor)
            .min(self.config.ping_timeout / 2)
    }

    /// RTT min/avg/max.
    pub fn rtt(&self) -> RttStats {
        if self.rtt_samples == 0 {
            return RttStats::default();
        }
        RttStats {
            min: Duration::from_nanos(self.rtt_min_ns),
            avg: Duration::from_nanos(self.rtt_avg_ns),
            max: Duration::from_nanos(self.rtt_max_ns),
            samples: self.rtt_samples,
        }
    }

    /// The RTT at `quantile` (0.0..=1.0, e.g. 0.5 or 0.99) from the link's histogram, at
    /// microsecond resolution and 2 significant digits; `None` before the first sample.
    pub fn rtt_quantile(&self, quantile: f64) -> Option<Duration> {
        if self.histogram.is_empty() {
            return None;
        }
        let micros = self.histogram.value_at_quantile(quantile.clamp(0.0, 1.0));
        Some(Duration::from_micros(micros))
    }

    /// The RTT histogram (microseconds), for export.
    pub fn rtt_histogram(&self) -> &Histogram<u64> {
        &self.histogram
    }

    /// A ping to send now on this link (body of a [`crate::wire::FrameType::Ping`] frame).
    pub fn poll_ping(&mut self) -> Option<PingBody> {
        self.pending_ping.take()
    }

    /// The next state change, if any.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// When [`LinkHeartbeat::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<MonoTime> {
        let mut next: Option<MonoTime> = None;
        let mut consider = |at: Option<MonoTime>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        };
        consider(
            self.ping_last
                .map(|sent| sent.saturating_add(self.current_ping_interval())),
        );
        consider(
            self.pong_last
                .map(|pong| pong.saturating_add(self.pong_timeout_adjusted())),
        );
        if self.backoff > 1 {
            consider(Some(
                self.backoff_adjusted_at
                    .saturating_add(PONG_TIMEOUT_BACKOFF_PERIOD),
            ));
        }
        if self.connected && !self.suspect {
            if let Some(sent) = self.first_unanswered() {
                let heard_since = self.last_rx.map_or(sent, |rx| rx.max(sent));
                consider(Some(heard_since.saturating_add(self.suspect_after())));
                consider(Some(
                    sent.saturating_add(self.suspect_after() * SUSPECT_ONE_WAY_MULTIPLE),
                ));
            }
        }
        consider(self.early_ping_deadline());
        consider(self.cross_link_check_at());
        next
    }

    /// Advances timers to `now`: backoff decay, down and suspect decisions, pings due.
    pub fn handle_timeout(&mut self, now: MonoTime) {
        self.decay_backoff(now);
        if self.cross_link_check_at().is_some_and(|at| now >= at) {
            self.cross_checked_at = Some(now);
        }
        if let Some(pong_last) = self.pong_last {
            if now.saturating_since(pong_last) >= self.pong_timeout_adjusted() {
                self.link_down(now);
            }
        }
        self.check_suspect(now);
        let regular_due = self.ping_last.map_or(true, |sent| {
            now.saturating_since(sent) >= self.current_ping_interval()
        });
        let early_due = self.early_ping_deadline().is_some_and(|at| now >= at);
        if regular_due || early_due {
            let early = !regular_due || self.suspect;
            self.queue_ping(now, early);
        }
    }

    /// A pong arrived on this link with `body` echoed from our ping.
    pub fn handle_pong(&mut self, now: MonoTime, body: PingBody) {
        if !self.is_plausible_pong(now, body) {
            self.counters.unmatched_pongs += 1;
            return;
        }
        self.counters.pongs += 1;
        self.note_rx(now);
        self.pong_last = Some(now);
        self.answered_seq = Some(
            self.answered_seq
                .map_or(body.ping_seq, |a| a.max(body.ping_seq)),
        );
        let rtt = now.saturating_since(MonoTime(body.sent_at_ns));
        if rtt > self.config.ping_timeout {
            self.counters.late_pongs += 1;
            return;
        }
        self.record_rtt(rtt);
        if !self.connected && Duration::from_nanos(self.rtt_avg_ns) < self.pong_timeout_adjusted() {
            if self.received_pongs >= u32::from(self.config.pong_count) {
                self.link_up();
            } else {
                self.received_pongs += 1;
            }
        }
        if self.connected && self.suspect {
            self.suspect = false;
            self.push_event(LinkEvent::Recovered {
                host_id: self.host_id,
                link: self.link,
            });
        }
    }

    /// A data frame from the peer arrived on this link (after authentication).
    pub fn handle_data(&mut self, now: MonoTime) {
        self.note_rx(now);
        self.last_data = Some(now);
        if !self.connected && self.received_pongs > 0 {
            // knet's "fast data up" (threads_rx.c, REFERENCE §1.4).
            self.link_up();
        }
    }

    /// A ping from the peer arrived on this link (it is alive; answering is the caller's job).
    pub fn handle_ping(&mut self, now: MonoTime) {
        self.note_rx(now);
    }

    /// The latest data frame from this peer arrived on a less preferred link at `at`. Data
    /// there while this link, which carried data, is silent means the peer failed this link
    /// over (it suspects it): this link turns suspect after `suspect_floor` of silence, without
    /// waiting for a ping round trip or an RTT-inflated threshold. Pings and pongs on the other
    /// link do not count (in passive mode they flow there all the time), and neither does data
    /// moving to a more preferred link (a failback): the caller passes only the former.
    pub fn note_data_elsewhere(&mut self, at: MonoTime) {
        if self.data_elsewhere.map_or(true, |seen| at > seen) {
            self.data_elsewhere = Some(at);
        }
    }

    /// The caller expects a frame from this peer on this link soon (e.g. the protocol above is
    /// waiting for it); silence from now on for `suspect_after` triggers an early ping.
    pub fn expect_frame(&mut self, now: MonoTime) {
        if self.expect_since.is_none() {
            self.expect_since = Some(now);
        }
    }

    /// The socket of this link failed (e.g. ENETUNREACH): down at once, like knet's
    /// `transport_connected == 0`.
    pub fn handle_transport_error(&mut self, now: MonoTime) {
        self.link_down(now);
    }

    /// A pong echoes one of our pings: a recent one exactly as recorded, or an older one (its
    /// record overwritten by later pings, e.g. under a latency spike while re-pinging) with a
    /// sequence number we issued and a send time between our creation and now.
    fn is_plausible_pong(&self, now: MonoTime, body: PingBody) -> bool {
        if body.ping_seq >= self.next_ping_seq {
            return false;
        }
        let slot = (body.ping_seq % PING_HISTORY_LEN as u64) as usize;
        match self.ping_history[slot] {
            Some((seq, sent)) if seq == body.ping_seq => sent.as_nanos() == body.sent_at_ns,
            _ => (self.created_at.as_nanos()..=now.as_nanos()).contains(&body.sent_at_ns),
        }
    }

    fn current_ping_interval(&self) -> Duration {
        if self.connected && self.suspect {
            self.config.ping_interval.min(self.suspect_after())
        } else {
            self.config.ping_interval
        }
    }

    /// When an early ping is due because expected frames stopped, if one is.
    fn early_ping_deadline(&self) -> Option<MonoTime> {
        if !self.connected || self.suspect || self.early_ping_sent {
            return None;
        }
        if self.first_unanswered().is_some() {
            return None; // a ping is already out; the suspect rule covers it
        }
        let mut deadline: Option<MonoTime> = None;
        if let (Some(last_rx), Some(gap_ns)) = (self.last_rx, self.rx_gap_avg_ns) {
            let gap = Duration::from_nanos(gap_ns);
            if gap < self.config.ping_interval / 2 {
                let silence = (gap * SILENCE_GAP_MULTIPLE).max(self.suspect_after());
                deadline = Some(last_rx.saturating_add(silence));
            }
        }
        if let Some(since) = self.expect_since {
            let at = since.saturating_add(self.suspect_after());
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        deadline
    }

    /// Send time of the oldest ping without a pong among the recent ones.
    fn first_unanswered(&self) -> Option<MonoTime> {
        self.ping_history
            .iter()
            .flatten()
            .filter(|(seq, _)| self.answered_seq.map_or(true, |answered| *seq > answered))
            .map(|&(_, sent)| sent)
            .min()
    }

    /// How long this link has been silent, when it carried data, has been silent for at
    /// least `suspect_floor`, and the peer sent data on another link since.
    fn silent_while_data_elsewhere(&self, now: MonoTime) -> Option<Duration> {
        let (last_rx, last_data, elsewhere) =
            (self.last_rx?, self.last_data?, self.data_elsewhere?);
        // This link carried the peer's data until shortly before the data showed up elsewhere
        // (a link that only carries pings, as the backup link in passive mode, never qualifies),
        // and nothing at all, not even a pong, came on it since.
        let moved = elsewhere > last_data
            && elsewhere > last_rx
            && elsewhere.saturating_since(last_data) <= self.config.ping_interval;
        let silent_for = now.saturating_since(last_rx);
        (moved && silent_for >= self.config.suspect_floor).then_some(silent_for)
    }

    /// When the cross-link rule should look again: at `suspect_floor` of silence after data,
    /// then every `suspect_floor` until the early ping takes over or the data is a ping
    /// interval old (a handful of wake-ups per silence).
    fn cross_link_check_at(&self) -> Option<MonoTime> {
        if !self.connected || self.suspect || self.early_ping_sent {
            return None;
        }
        let last_rx = self.last_rx?;
        let last_data = self.last_data?;
        if last_data.saturating_add(self.config.ping_interval) < last_rx {
            return None; // no recent data on this link: nothing to move away from it
        }
        let floor = self.config.suspect_floor;
        let first = last_rx.saturating_add(floor);
        Some(match self.cross_checked_at {
            Some(checked) if checked >= first => checked.saturating_add(floor),
            _ => first,
        })
    }

    fn check_suspect(&mut self, now: MonoTime) {
        if !self.connected || self.suspect {
            return;
        }
        if let Some(silent_for) = self.silent_while_data_elsewhere(now) {
            self.suspect = true;
            self.push_event(LinkEvent::Suspect {
                host_id: self.host_id,
                link: self.link,
                silent_for,
            });
            return;
        }
        let Some(sent) = self.first_unanswered() else {
            return;
        };
        let waited = now.saturating_since(sent);
        // Silence since the ping went out: frames from the peer on this link prove it alive and
        // this direction working, so an overloaded peer (or host) whose pong queues behind data
        // is not suspected; a cut link is silent. A one-way failure (the peer's frames arrive,
        // ours do not) is caught by the longer bound.
        let heard_since = self.last_rx.map_or(sent, |rx| rx.max(sent));
        let silent_for = now.saturating_since(heard_since);
        if silent_for >= self.suspect_after()
            || waited >= self.suspect_after() * SUSPECT_ONE_WAY_MULTIPLE
        {
            self.suspect = true;
            self.push_event(LinkEvent::Suspect {
                host_id: self.host_id,
                link: self.link,
                silent_for: waited,
            });
        }
    }

    fn queue_ping(&mut self, now: MonoTime, early: bool) {
        let seq = self.next_ping_seq;
        self.next_ping_seq += 1;
        self.ping_history[(seq % PING_HISTORY_LEN as u64) as usize] = Some((seq, now));
        self.ping_last = Some(now);
        self.pending_ping = Some(PingBody {
            sent_at_ns: now.as_nanos(),
            ping_seq: seq,
        });
        self.counters.pings_sent += 1;
        if early {
            self.counters.early_pings += 1;
            self.early_ping_sent = true;
        }
        self.expect_since = None;
    }

    fn decay_backoff(&mut self, now: MonoTime) {
        while self.backoff > 1
            && now.saturating_since(self.backoff_adjusted_at) >= PONG_TIMEOUT_BACKOFF_PERIOD
        {
            self.backoff -= 1;
            self.backoff_adjusted_at = self
                .backoff_adjusted_at
                .saturating_add(PONG_TIMEOUT_BACKOFF_PERIOD);
        }
        if self.backoff == 1 {
            self.backoff_adjusted_at = now;
        }
    }

    fn note_rx(&mut self, now: MonoTime) {
        if let Some(last) = self.last_rx {
            let gap = now.saturating_since(last);
            if gap <= self.config.ping_interval {
                let gap_ns = u64::try_from(gap.as_nanos()).unwrap_or(u64::MAX);
                // Exponential average with weight 1/8, like TCP's SRTT.
                self.rx_gap_avg_ns = Some(match self.rx_gap_avg_ns {
                    None => gap_ns,
                    Some(avg) => avg - avg / 8 + gap_ns / 8,
                });
            } else {
                self.rx_gap_avg_ns = None; // traffic had stopped; start over
            }
        }
        self.last_rx = Some(now);
        self.expect_since = None;
        self.early_ping_sent = false;
    }

    fn record_rtt(&mut self, rtt: Duration) {
        let rtt_ns = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX);
        // knet's running mean: n is capped at the precision, so old samples fade out.
        let n = (self.rtt_samples + 1).min(u64::from(self.config.latency_precision));
        let total = u128::from(self.rtt_avg_ns) * u128::from(n - 1) + u128::from(rtt_ns);
        self.rtt_avg_ns = u64::try_from(total / u128::from(n)).unwrap_or(u64::MAX);
        // RFC 6298 §2: RTTVAR ← ¾·RTTVAR + ¼·|SRTT − R|, SRTT ← ⅞·SRTT + ⅛·R.
        match self.srtt_ns {
            None => {
                self.srtt_ns = Some(rtt_ns);
                self.rttvar_ns = rtt_ns / 2;
            }
            Some(srtt) => {
                self.rttvar_ns = self.rttvar_ns - self.rttvar_ns / 4 + srtt.abs_diff(rtt_ns) / 4;
                self.srtt_ns = Some(srtt - srtt / 8 + rtt_ns / 8);
            }
        }
        self.rtt_samples += 1;
        self.rtt_min_ns = self.rtt_min_ns.min(rtt_ns);
        self.rtt_max_ns = self.rtt_max_ns.max(rtt_ns);
        let micros = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        self.histogram.saturating_record(micros);
    }

    fn link_up(&mut self) {
        if self.connected {
            return;
        }
        self.connected = true;
        self.suspect = false;
        self.push_event(LinkEvent::LinkUp {
            host_id: self.host_id,
            link: self.link,
        });
    }

    fn link_down(&mut self, now: MonoTime) {
        self.received_pongs = 0;
        self.pong_last = None;
        self.backoff = PONG_TIMEOUT_BACKOFF_START;
        self.backoff_adjusted_at = now;
        self.expect_since = None;
        if self.connected {
            self.connected = false;
            self.suspect = false;
            self.push_event(LinkEvent::LinkDown {
                host_id: self.host_id,
                link: self.link,
            });
        }
    }

    fn push_event(&mut self, event: LinkEvent) {
        if self.events.len() >= EVENT_QUEUE_LEN {
            self.events.pop_front();
            self.counters.events_dropped += 1;
        }
        self.events.push_back(event);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn corosync_2_nodes() -> HeartbeatConfig {
        HeartbeatConfig::from_token(3000 * MS, &KnetTimerOverrides::default()).unwrap()
    }

    /// One link and a simulated peer that echoes pings after `rtt`, unless the link is cut.
    struct Sim {
        hb: LinkHeartbeat,
        now: MonoTime,
        rtt: Duration,
        /// Extra delay added to every `jitter_every`-th pong.
        jitter: Duration,
        cut: bool,
        in_flight: Vec<(MonoTime, PingBody)>,
        events: Vec<(MonoTime, LinkEvent)>,
        data_every: Option<Duration>,
        next_data: MonoTime,
        pings: u64,
    }

    impl Sim {
        fn new(config: HeartbeatConfig, rtt: Duration) -> Self {
            let now = MonoTime(1_000_000_000);
            Sim {
                hb: LinkHeartbeat::new(config, 2, 0, now),
                now,
                rtt,
                jitter: Duration::ZERO,
                cut: false,
                in_flight: Vec::new(),
                events: Vec::new(),
                data_every: None,
                next_data: now,
                pings: 0,
            }
        }

        fn drain(&mut self) {
            while let Some(ping) = self.hb.poll_ping() {
                self.pings += 1;
                if !self.cut {
                    let extra = if self.pings % 3 == 0 {
                        self.jitter
                    } else {
                        Duration::ZERO
                    };
                    let arrival = self.now.saturating_add(self.rtt + extra);
                    self.in_flight.push((arrival, ping));
                }
            }
            while let Some(event) = self.hb.poll_event() {
                self.events.push((self.now, event));
            }
        }

        fn run_for(&mut self, span: Duration) {
            let end = self.now.saturating_add(span);
            for _ in 0..1_000_000 {
                self.drain();
                let mut next = self.hb.poll_timeout().unwrap();
                if let Some(&(arrival, _)) = self.in_flight.iter().min_by_key(|(a, _)| *a) {
                    next = next.min(arrival);
                }
                if self.data_every.is_some() {
                    next = next.min(self.next_data);
                }
                if next > end {
                    self.now = end;
                    return;
                }
                self.now = self.now.max(next);
                let now = self.now;
                let (arrived, waiting): (Vec<_>, Vec<_>) =
                    self.in_flight.drain(..).partition(|(a, _)| *a <= now);
                self.in_flight = waiting;
                for (_, body) in arrived {
                    if !self.cut {
                        self.hb.handle_pong(now, body);
                    }
                }
                if let Some(every) = self.data_every {
                    if self.next_data <= now {
                        if !self.cut {
                            self.hb.handle_data(now);
                        }
                        self.next_data = now.saturating_add(every);
                    }
                }
                self.hb.handle_timeout(now);
            }
            panic!("simulation did not reach its end");
        }

        fn event_times(&self, pred: impl Fn(&LinkEvent) -> bool) -> Vec<MonoTime> {
            self.events
                .iter()
                .filter(|(_, e)| pred(e))
                .map(|(t, _)| *t)
                .collect()
        }

        fn count(&self, pred: impl Fn(&LinkEvent) -> bool) -> usize {
            self.event_times(pred).len()
        }
    }

    fn is_up(e: &LinkEvent) -> bool {
        matches!(e, LinkEvent::LinkUp { .. })
    }
    fn is_down(e: &LinkEvent) -> bool {
        matches!(e, LinkEvent::LinkDown { .. })
    }
    fn is_suspect(e: &LinkEvent) -> bool {
        matches!(e, LinkEvent::Suspect { .. })
    }
    fn is_recovered(e: &LinkEvent) -> bool {
        matches!(e, LinkEvent::Recovered { .. })
    }

    #[test]
    fn timers_derive_from_the_runtime_token() {
        let none = KnetTimerOverrides::default();
        let c = HeartbeatConfig::from_token(3000 * MS, &none).unwrap();
        assert_eq!(
            (c.ping_timeout, c.ping_interval, c.pong_count),
            (1500 * MS, 750 * MS, 2)
        );
        let c = HeartbeatConfig::from_token(3650 * MS, &none).unwrap();
        assert_eq!((c.ping_timeout, c.ping_interval), (1825 * MS, 912 * MS));
        let c = HeartbeatConfig::from_token(3125 * MS, &none).unwrap();
        assert_eq!((c.ping_timeout, c.ping_interval), (1562 * MS, 781 * MS));
        let overrides = KnetTimerOverrides {
            ping_interval: Some(200 * MS),
            ping_timeout: None,
            pong_count: Some(5),
        };
        let c = HeartbeatConfig::from_token(3000 * MS, &overrides).unwrap();
        assert_eq!(
            (c.ping_timeout, c.ping_interval, c.pong_count),
            (600 * MS, 200 * MS, 5)
        );
        let zero = KnetTimerOverrides {
            pong_count: Some(0),
            ..none
        };
        assert_eq!(
            HeartbeatConfig::from_token(3000 * MS, &zero),
            Err(HeartbeatConfigError::ZeroPongCount)
        );
        assert_eq!(
            HeartbeatConfig::from_token(MS, &none),
            Err(HeartbeatConfigError::ZeroPingInterval)
        );
    }

    #[test]
    fn link_up_after_pong_count_plus_one_pongs() {
        let mut sim = Sim::new(corosync_2_nodes(), MS);
        // Pings at 0, 750, 1500 ms: the third pong (pong_count + 1 = 3) brings the link up.
        sim.run_for(1400 * MS);
        assert_eq!(sim.hb.state(), LinkState::Down);
        assert_eq!(sim.count(is_up), 0);
        sim.run_for(200 * MS);
        assert_eq!(sim.hb.state(), LinkState::Up);
        let ups = sim.event_times(is_up);
        assert_eq!(ups, [MonoTime(1_000_000_000).saturating_add(1501 * MS)]);
        assert_eq!(sim.events[0].1.to_string(), "link: host: 2 link: 0 is up");
    }

    #[test]
    fn pong_count_override_is_respected() {
        let config = HeartbeatConfig {
            pong_count: 5,
            ..corosync_2_nodes()
        };
        let mut sim = Sim::new(config, MS);
        sim.run_for(4 * 750 * MS + 100 * MS); // five pongs
        assert_eq!(sim.hb.state(), LinkState::Down);
        sim.run_for(750 * MS); // the sixth
        assert_eq!(sim.hb.state(), LinkState::Up);
    }

    #[test]
    fn data_after_one_pong_forces_the_link_up() {
        let mut sim = Sim::new(corosync_2_nodes(), MS);
        let now = sim.now;
        sim.hb.handle_data(now);
        assert_eq!(
            sim.hb.state(),
            LinkState::Down,
            "no pong yet: no fast data up"
        );
        sim.run_for(10 * MS); // first pong
        assert_eq!(sim.hb.state(), LinkState::Down);
        let now = sim.now;
        sim.hb.handle_data(now);
        assert_eq!(sim.hb.state(), LinkState::Up);
        assert_eq!(
            sim.hb.poll_event().map(|e| e.to_string()).as_deref(),
            Some("link: host: 2 link: 0 is up")
        );
    }

    #[test]
    fn down_after_adjusted_pong_timeout_once_backoff_decayed() {
        let mut sim = Sim::new(corosync_2_nodes(), MS);
        sim.run_for(20_000 * MS); // up, backoff decayed to 1
        assert_eq!(sim.hb.state(), LinkState::Up);
        assert_eq!(sim.hb.pong_timeout_adjusted(), 1500 * MS + 2 * MS);
        let last_pong = sim.hb.pong_last.unwrap();
        sim.cut = true;
        sim.run_for(3000 * MS);
        let downs = sim.event_times(is_down);
        assert_eq!(downs, [last_pong.saturating_add(1502 * MS)]);
        assert_eq!(sim.hb.state(), LinkState::Down);
        let down = sim.events.iter().find(|(_, e)| is_down(e)).unwrap().1;
        assert_eq!(down.to_string(), "link: host: 2 link: 0 is down");
        // Going down resets the backoff (it has decayed once since) and the pong count.
        assert_eq!(sim.hb.backoff, PONG_TIMEOUT_BACKOFF_START - 1);
        assert_eq!(sim.hb.received_pongs, 0);
    }

    #[test]
    fn startup_backoff_tolerates_a_longer_silence() {
        let mut sim = Sim::new(corosync_2_nodes(), MS);
        sim.run_for(1600 * MS); // just up; backoff has decayed once (10 → 9)
        assert_eq!(sim.hb.state(), LinkState::Up);
        let last_pong = sim.hb.pong_last.unwrap();
        sim.cut = true;
        sim.run_for(30_000 * MS);
        let down = sim.event_times(is_down)[0];
        let waited = down.saturating_since(last_pong);
        // The timeout is pong_timeout × backoff while backoff decays 1/s from 10 at creation:
        // at 7 s, 5.5 s of silence reaches 1.5 s × 3. Without the backoff it would be 1.502 s.
        assert_eq!(waited, 5499 * MS);
        assert_eq!(sim.count(is_down), 1);
    }

    #[test]
    fn link_comes_back_after_pong_count_plus_one_pongs() {
        let mut sim = Sim::new(corosync_2_nodes(), MS);
        sim.run_for(20_000 * MS);
        sim.cut = true;
        sim.run_for(3000 * MS);
        assert_eq!(sim.hb.state(), LinkState::Down);
        sim.cut = false;
        let restored = sim.now;
        sim.run_for(5000 * MS);
        assert_eq!(sim.hb.state(), LinkState::Up);
        let back = *sim.event_times(is_up).last().unwrap();
        let took = back.saturating_since(restored);
        assert!(took >= 1500 * MS && took <= 2300 * MS, "took {took:?}");
    }

    #[test]
    fn late_pongs_do_not_count() {
        let config = corosync_2_nodes();
        let mut sim = Sim::new(config, 1600 * MS); // RTT above ping_timeout (1500 ms)
        sim.run_for(20_000 * MS);
        assert_eq!(sim.hb.state(), LinkState::Down);
        assert!(sim.hb.counters().late_pongs > 5);
        assert_eq!(sim.hb.rtt().samples, 0);
    }

    #[test]
    fn unmatched_pongs_are_ignored() {
        let mut hb = LinkHeartbeat::new(corosync_2_nodes(), 2, 1, MonoTime(5));
        let ping = hb.poll_ping().unwrap();
        hb.handle_pong(
            MonoTime(10),
            PingBody {
                sent_at_ns: ping.sent_at_ns + 1,
                ..ping
            },
        );
        hb.handle_pong(
            MonoTime(10),
            PingBody {
                ping_seq: 99,
                ..ping
            },
        );
        assert_eq!(hb.counters().unmatched_pongs, 2);
        assert_eq!(hb.rtt().samples, 0);
        hb.handle_pong(MonoTime(10), ping);
        assert_eq!(hb.rtt().samples, 1);
    }

    #[test]
    fn cut_while_idle_is_suspect_within_a_ping_interval_then_down() {
        let mut sim = Sim::new(corosync_2_nodes(), MS);
        sim.run_for(20_000 * MS);
        sim.cut = true;
        let cut_at = sim.now;
        sim.run_for(5000 * MS);
        let suspects = sim.event_times(is_suspect);
        assert_eq!(suspects.len(), 1);
        let took = suspects[0].saturating_since(cut_at);
        assert!(took <= 750 * MS + 25 * MS, "suspect after {took:?}");
        // Still declared down by the heartbeat rules, once, with no recovery in between.
        assert_eq!(sim.count(is_down), 1);
        assert_eq!(sim.count(is_recovered), 0);
        assert!(sim.event_times(is_down)[0] > suspects[0]);
    }

    #[test]
    fn cut_under_traffic_is_suspect_within_milliseconds() {
        let mut sim = Sim::new(corosync_2_nodes(), MS);
        sim.data_every = Some(5 * MS);
        sim.run_for(20_000 * MS);
        assert_eq!(sim.count(is_suspect), 0, "{:?}", sim.events);
        sim.cut = true;
        let cut_at = sim.now;
        sim.run_for(200 * MS);
        let suspects = sim.event_times(is_suspect);
        assert_eq!(suspects.len(), 1, "{:?}", sim.events);
        let took = suspects[0].saturating_since(cut_at);
        // Silence threshold max(4 × 5 ms, 25 ms) plus the early ping's suspect_after (25 ms).
        assert!(took <= 55 * MS, "suspect after {took:?}");
        assert_eq!(sim.hb.state(), LinkState::Suspect);
        assert!(sim.hb.is_up());
    }

    #[test]
    fn suspect_recovers_without_flapping_the_link() {
        let mut sim = Sim::new(corosync_2_nodes(), MS);
        sim.data_every = Some(5 * MS);
        sim.run_for(20_000 * MS);
        sim.cut = true;
        sim.run_for(300 * MS);
        assert_eq!(sim.hb.state(), LinkState::Suspect);
        sim.cut = false;
        let healed_at = sim.now;
        sim.run_for(5000 * MS);
        assert_eq!(sim.hb.state(), LinkState::Up);
        let recovered = sim.event_times(is_recovered);
        assert_eq!(recovered.len(), 1);
        // While suspect the link pings every suspect_after, so recovery is quick.
        assert!(recovered[0].saturating_since(healed_at) <= 30 * MS);
        assert_eq!(sim.count(is_down), 0);
        assert_eq!(sim.count(is_up), 1);
        let text = sim
            .events
            .iter()
            .find(|(_, e)| is_suspect(e))
            .unwrap()
            .1
            .to_string();
        assert!(
            text.starts_with("link: host: 2 link: 0 is suspect"),
            "{text}"
        );
    }

    #[test]
    fn pongs_late_behind_traffic_do_not_make_a_link_suspect() {
        // An overloaded peer (or host): every third pong comes 60 ms late, past the 25 ms
        // floor, but its data keeps arriving every 2 ms, so the link is not silent.
        let mut sim = Sim::new(corosync_2_nodes(), 200 * Duration::from_micros(1));
        sim.jitter = 60 * MS;
        sim.data_every = Some(2 * MS);
        sim.run_for(20_000 * MS);
        assert_eq!(sim.count(is_suspect), 0, "{:?}", sim.events);
        assert_eq!(sim.count(is_down), 0);
    }

    #[test]
    fn a_one_way_failure_is_suspect_after_the_longer_bound() {
        // Our pings (and everything else we send) are lost, but the peer's data still arrives:
        // suspect after SUSPECT_ONE_WAY_MULTIPLE × suspect_after, well before knet's down.
        let mut sim = Sim::new(corosync_2_nodes(), MS);
        sim.data_every = Some(5 * MS);
        sim.run_for(20_000 * MS);
        let floor = sim.hb.suspect_after();
        let stop_pongs_at = sim.now;
        sim.rtt = 1_000_000 * MS; // pongs never come back in time
        sim.run_for(3000 * MS);
        let suspects = sim.event_times(is_suspect);
        assert_eq!(suspects.len(), 1, "{:?}", sim.events);
        let took = suspects[0].saturating_since(stop_pongs_at);
        // The next regular ping goes out within a ping interval; then the longer bound.
        let bound = corosync_2_nodes().ping_interval + floor * SUSPECT_ONE_WAY_MULTIPLE;
        assert!(took <= bound, "suspect after {took:?}, bound {bound:?}");
        assert!(took >= floor * SUSPECT_ONE_WAY_MULTIPLE, "{took:?}");
    }

    #[test]
    fn data_moving_to_another_link_makes_a_silent_link_suspect_at_the_floor() {
        // A slow path (60 ms RTT): the RTT-based threshold is 240 ms.
        let mut sim = Sim::new(corosync_2_nodes(), 60 * MS);
        sim.data_every = Some(5 * MS);
        sim.run_for(20_000 * MS);
        assert!(sim.hb.suspect_after() >= 200 * MS);
        sim.cut = true;
        let cut_at = sim.now;
        sim.run_for(30 * MS);
        // The peer already failed over: its data now comes on another link.
        let now = sim.now;
        sim.hb.note_data_elsewhere(now);
        sim.run_for(200 * MS);
        let suspects = sim.event_times(is_suspect);
        assert_eq!(suspects.len(), 1, "{:?}", sim.events);
        let took = suspects[0].saturating_since(cut_at);
        assert!(took <= 60 * MS, "suspect after {took:?}");
    }

    #[test]
    fn a_backup_link_carrying_only_pings_is_not_suspected_for_the_data_elsewhere() {
        // Passive mode: this link only carries pings; the data flows on the other link.
        let mut sim = Sim::new(corosync_2_nodes(), MS);
        for _ in 0..200 {
            sim.run_for(50 * MS);
            let now = sim.now;
            sim.hb.note_data_elsewhere(now);
        }
        assert_eq!(sim.count(is_suspect), 0, "{:?}", sim.events);
        assert!(sim.hb.is_up());
    }

    #[test]
    fn data_elsewhere_before_the_silence_changes_nothing() {
        let mut sim = Sim::new(corosync_2_nodes(), MS);
        sim.data_every = Some(5 * MS);
        sim.run_for(1_000 * MS);
        let now = sim.now;
        sim.hb.note_data_elsewhere(now); // e.g. rr or active mode: data on both links
        sim.run_for(5_000 * MS);
        sim.data_every = None; // an idle ring: silent everywhere
        sim.run_for(5_000 * MS);
        assert_eq!(sim.count(is_suspect), 0, "{:?}", sim.events);
    }

    #[test]
    fn an_idle_link_pings_at_the_regular_interval() {
        let mut sim = Sim::new(corosync_2_nodes(), MS);
        sim.data_every = Some(5 * MS);
        sim.run_for(20_000 * MS);
        sim.data_every = None;
        sim.run_for(2_000 * MS); // traffic stops: an early ping or two
        let before = sim.hb.counters().pings_sent;
        sim.run_for(10_000 * MS);
        let pings = sim.hb.counters().pings_sent - before;
        let interval = corosync_2_nodes().ping_interval;
        let regular = (10_000 * MS).as_millis() / interval.as_millis();
        assert!(
            u128::from(pings) <= regular + 1,
            "{pings} pings in 10 s of silence, {regular} expected at the {interval:?} interval"
        );
        assert_eq!(sim.count(is_suspect), 0, "{:?}", sim.events);
    }

    #[test]
    fn jitter_and_idle_gaps_never_make_a_link_suspect() {
        let mut sim = Sim::new(corosync_2_nodes(), 200 * Duration::from_micros(1));
        sim.jitter = 10 * MS; // every third pong 10 ms late: below the 25 ms floor
        sim.data_every = Some(2 * MS);
        sim.run_for(10_000 * MS);
        // Traffic stops (an idle cluster): the early ping is answered, nothing else happens.
        sim.data_every = None;
        sim.run_for(10_000 * MS);
        assert_eq!(sim.count(is_suspect), 0, "{:?}", sim.events);
        assert_eq!(sim.count(is_down), 0);
        assert!(sim.hb.counters().early_pings >= 1);
    }

    #[test]
    fn a_lasting_latency_jump_does_not_take_the_link_down_or_flap() {
        let mut sim = Sim::new(corosync_2_nodes(), MS);
        sim.data_every = Some(5 * MS);
        sim.run_for(20_000 * MS);
        // The path's RTT jumps from 1 ms to 400 ms (below ping_timeout) and stays there.
        sim.rtt = 400 * MS;
        sim.run_for(30_000 * MS);
        assert_eq!(sim.count(is_down), 0, "{:?}", sim.events);
        assert!(sim.count(is_suspect) <= 2, "{:?}", sim.events);
        assert_eq!(sim.hb.state(), LinkState::Up);
        assert!(sim.hb.suspect_after() >= 400 * MS);
        assert_eq!(sim.hb.counters().unmatched_pongs, 0);
    }

    #[test]
    fn implausible_pongs_are_ignored() {
        let mut hb = LinkHeartbeat::new(corosync_2_nodes(), 2, 1, MonoTime(1000));
        let ping = hb.poll_ping().unwrap();
        // Never issued, or sent before the link existed, or in the future.
        hb.handle_pong(
            MonoTime(2000),
            PingBody {
                ping_seq: 1,
                ..ping
            },
        );
        hb.handle_pong(
            MonoTime(2000),
            PingBody {
                sent_at_ns: 3000,
                ..ping
            },
        );
        assert_eq!(hb.counters().unmatched_pongs, 2);
        assert_eq!(hb.counters().pongs, 0);
    }

    #[test]
    fn expected_frame_that_never_comes_triggers_an_early_ping() {
        let mut sim = Sim::new(corosync_2_nodes(), MS);
        sim.run_for(20_000 * MS);
        let before = sim.hb.counters().early_pings;
        sim.cut = true;
        let now = sim.now;
        sim.hb.expect_frame(now);
        sim.run_for(100 * MS);
        assert!(sim.hb.counters().early_pings > before);
        let suspects = sim.event_times(is_suspect);
        assert_eq!(suspects.len(), 1);
        // The early ping left at now + 25 ms and was overdue 25 ms later.
        assert_eq!(suspects[0], now.saturating_add(50 * MS));
    }

    #[test]
    fn rtt_statistics() {
        let mut sim = Sim::new(corosync_2_nodes(), 3 * MS);
        sim.jitter = 6 * MS;
        sim.run_for(30_000 * MS);
        let rtt = sim.hb.rtt();
        assert_eq!(rtt.min, 3 * MS);
        assert_eq!(rtt.max, 9 * MS);
        assert!(rtt.avg > 3 * MS && rtt.avg < 9 * MS);
        let p50 = sim.hb.rtt_quantile(0.5).unwrap();
        let p99 = sim.hb.rtt_quantile(0.99).unwrap();
        assert!(
            p50 >= 2900 * Duration::from_micros(1) && p50 <= 3100 * Duration::from_micros(1),
            "{p50:?}"
        );
        assert!(
            p99 >= 8900 * Duration::from_micros(1) && p99 <= 9100 * Duration::from_micros(1),
            "{p99:?}"
        );
        assert_eq!(sim.hb.rtt_histogram().len(), rtt.samples);
    }

    #[test]
    fn transport_error_takes_the_link_down() {
        let mut sim = Sim::new(corosync_2_nodes(), MS);
        sim.run_for(5000 * MS);
        let now = sim.now;
        sim.hb.handle_transport_error(now);
        assert_eq!(sim.hb.state(), LinkState::Down);
        assert_eq!(sim.hb.poll_event().map(|e| is_down(&e)), Some(true));
    }
}
