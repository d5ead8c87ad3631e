//! Property tests for the heartbeat state machine on simulated time: whatever the cuts and the
//! jitter, events form a well-formed sequence that matches `state()`, short cuts never take a
//! link down (suspect absorbs them), and long cuts always do.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use proptest::prelude::*;
use totem_transport::heartbeat::{
    HeartbeatConfig, KnetTimerOverrides, LinkEvent, LinkHeartbeat, LinkState,
};
use totem_transport::wire::{MonoTime, PingBody};

const MS: Duration = Duration::from_millis(1);

/// Runs one link through `phases` of (duration, cut?) with pong delays drawn from `delays_us`
/// and a data frame every `data_every` (if any). Returns every event with its time.
fn simulate(
    phases: &[(Duration, bool)],
    delays_us: &[u64],
    data_every: Option<Duration>,
) -> (Vec<(MonoTime, LinkEvent)>, LinkHeartbeat) {
    let config = HeartbeatConfig::from_token(3000 * MS, &KnetTimerOverrides::default()).unwrap();
    let mut now = MonoTime(0);
    let mut hb = LinkHeartbeat::new(config, 2, 0, now);
    let mut in_flight: Vec<(MonoTime, PingBody)> = Vec::new();
    let mut events = Vec::new();
    let mut pings = 0usize;
    let mut next_data = now;
    let mut phase_end = now;
    for &(span, cut) in phases {
        phase_end = phase_end.saturating_add(span);
        loop {
            while let Some(ping) = hb.poll_ping() {
                pings += 1;
                if !cut {
                    let delay = Duration::from_micros(delays_us[pings % delays_us.len()]);
                    in_flight.push((now.saturating_add(delay), ping));
                }
            }
            while let Some(event) = hb.poll_event() {
                events.push((now, event));
            }
            let mut next = hb.poll_timeout().unwrap();
            if let Some(at) = in_flight.iter().map(|p| p.0).min() {
                next = next.min(at);
            }
            if data_every.is_some() {
                next = next.min(next_data);
            }
            if next > phase_end {
                now = phase_end;
                break;
            }
            now = now.max(next);
            let (due, later): (Vec<_>, Vec<_>) = in_flight.drain(..).partition(|p| p.0 <= now);
            in_flight = later;
            for (_, body) in due {
                if !cut {
                    hb.handle_pong(now, body);
                }
            }
            if let Some(every) = data_every {
                if next_data <= now {
                    if !cut {
                        hb.handle_data(now);
                    }
                    next_data = now.saturating_add(every);
                }
            }
            hb.handle_timeout(now);
        }
    }
    while let Some(event) = hb.poll_event() {
        events.push((now, event));
    }
    (events, hb)
}

/// Checks the event grammar and returns the final state it implies.
fn replay(events: &[(MonoTime, LinkEvent)]) -> Result<LinkState, String> {
    let mut state = LinkState::Down;
    for (at, event) in events {
        state = match (state, event) {
            (LinkState::Down, LinkEvent::LinkUp { .. }) => LinkState::Up,
            (LinkState::Up | LinkState::Suspect, LinkEvent::LinkDown { .. }) => LinkState::Down,
            (LinkState::Up, LinkEvent::Suspect { .. }) => LinkState::Suspect,
            (LinkState::Suspect, LinkEvent::Recovered { .. }) => LinkState::Up,
            (s, e) => return Err(format!("{e:?} in state {s:?} at {at:?}")),
        };
    }
    Ok(state)
}

/// Alternating healthy and cut phases; every cut is followed by at least 800 ms of healthy link
/// (more than a ping interval, so a pong gets through between two cuts).
fn phases(max_cut_ms: u64) -> impl Strategy<Value = Vec<(Duration, bool)>> {
    proptest::collection::vec((1u64..=max_cut_ms, 800u64..5000), 1..8).prop_map(|pairs| {
        pairs
            .into_iter()
            .flat_map(|(cut, healthy)| {
                [
                    (Duration::from_millis(cut), true),
                    (Duration::from_millis(healthy), false),
                ]
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn events_are_well_formed_and_match_state(
        phases in phases(6000),
        delays_us in proptest::collection::vec(20u64..40_000, 1..16),
        traffic in proptest::option::of(1u64..50),
    ) {
        // Start with 20 s of healthy link so the start-up backoff has decayed.
        let mut all = vec![(20_000 * MS, false)];
        all.extend(phases);
        let (events, hb) = simulate(&all, &delays_us, traffic.map(Duration::from_millis));
        let state = replay(&events).map_err(TestCaseError::fail)?;
        prop_assert_eq!(state, hb.state());
    }

    #[test]
    fn short_cuts_never_take_an_established_link_down(
        phases in phases(700),
        delays_us in proptest::collection::vec(20u64..5_000, 1..16),
        traffic in proptest::option::of(1u64..50),
    ) {
        let mut all = vec![(20_000 * MS, false)];
        all.extend(phases);
        let (events, _) = simulate(&all, &delays_us, traffic.map(Duration::from_millis));
        let ups = events.iter().filter(|(_, e)| matches!(e, LinkEvent::LinkUp { .. })).count();
        let downs = events.iter().filter(|(_, e)| matches!(e, LinkEvent::LinkDown { .. })).count();
        prop_assert_eq!(ups, 1);
        prop_assert_eq!(downs, 0, "{:?}", events);
    }

    #[test]
    fn long_cuts_always_take_the_link_down_within_the_knet_timeout(
        cut_ms in 1600u64..10_000,
        delay_us in 20u64..5_000,
    ) {
        let all = [(20_000 * MS, false), (Duration::from_millis(cut_ms), true)];
        let (events, hb) = simulate(&all, &[delay_us], None);
        let down_at = events.iter().find(|(_, e)| matches!(e, LinkEvent::LinkDown { .. })).map(|(t, _)| *t);
        let down_at = down_at.unwrap();
        // Last pong before the cut was at most one ping interval (750 ms) before it; the
        // adjusted timeout is 1500 ms + 2 × average RTT.
        let cut_at = MonoTime(0).saturating_add(20_000 * MS);
        let latest = cut_at.saturating_add(1500 * MS + 2 * Duration::from_micros(delay_us) + MS);
        prop_assert!(down_at <= latest, "down at {down_at:?}, cut at {cut_at:?}");
        prop_assert!(down_at >= cut_at.saturating_add(1500 * MS - 750 * MS));
        prop_assert_eq!(hb.state(), LinkState::Down);
    }
}
