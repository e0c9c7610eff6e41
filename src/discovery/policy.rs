//! The policies: given the bracket and each slot's idle clock, when to open, use or discard.
//!
//! Every policy produces a *schedule* of `(time, action)` pairs from the current state alone:
//! the slots' idle clocks and the discovery's own results (its search bracket; the guard's
//! results narrow the answer, not the schedule, see `mod.rs`).
//! Because all idle clocks advance at the same rate, a schedule stays valid until the next
//! event, so `poll` fires what is due and `next_deadline` is the earliest entry.
//!
//! ## Adaptive
//! 1. **Escalate** while nothing has died: use the *oldest* connection when its idle age reaches
//!    `lower × GROWTH` (the range min first; doubling when there is only one connection). A survival re-arms that connection, so the next
//!    oldest carries on the escalation with little lag, and the re-armed connections end up with
//!    ages spread geometrically just below the current escalation value.
//! 2. **Split** once something died: bisect `(lower, upper]` at its geometric midpoint, one probe
//!    at a time, with the connection whose age is closest to it: the youngest one already past
//!    the midpoint (used at once, if it is not too close to the upper bound), else the oldest
//!    one below it (used when it reaches the midpoint). Because of step 1, several connections
//!    already sit inside the bracket when the first death is seen, so each bisection step costs
//!    a round trip instead of another wait of T.
//! 3. A connection idle past the upper bound is dead: discard it; empty slots are refilled at
//!    once so young connections keep maturing behind the old ones.

use std::time::Duration;

use super::{Action, Discovery, PolicyKind, SlotClock};

/// Escalation step of the adaptive policy. Smaller steps overshoot T less but leave the oldest
/// connection lagging the escalation more: on the simulator (2,000 T in 1 s–1 h, 8 slots) 1.2
/// gave a median of 1.43×T, 1.3 gave 1.32×T, 1.4 gave 1.30×T but 1.58×T at p90, 2.0 gave 2.5×T.
const GROWTH: f64 = 1.3;
/// With a single probe connection there is no older connection to carry the escalation: each
/// step waits the whole value again, so small steps add up (1.3 costs about 4.3×T before the
/// first death). Doubling costs about 2×T, as in libre's `natbd` lifetime test.
const GROWTH_ONE_SLOT: f64 = 2.0;
/// With only a death known, the first split is at `upper / 2`: the midpoint of `upper / 4`
/// and `upper`.
const DESCENT_SPLIT: f64 = 4.0;
/// The baseline ladder (30s, 1m, 2m, 5m, 10m, 20m, 30m, 1h) as fractions of the range max.
const LADDER_FRACTIONS: [f64; 8] = [
    30.0 / 3600.0,
    60.0 / 3600.0,
    120.0 / 3600.0,
    300.0 / 3600.0,
    600.0 / 3600.0,
    1200.0 / 3600.0,
    1800.0 / 3600.0,
    1.0,
];

pub(super) fn decide(d: &Discovery, now: Duration) -> Vec<Action> {
    schedule(d)
        .into_iter()
        .filter(|(at, _)| *at <= now)
        .map(|(_, action)| action)
        .collect()
}

pub(super) fn deadline(d: &Discovery) -> Option<Duration> {
    schedule(d).into_iter().map(|(at, _)| at).min()
}

fn schedule(d: &Discovery) -> Vec<(Duration, Action)> {
    match d.policy {
        PolicyKind::Adaptive => adaptive(d),
        PolicyKind::FixedLadder => fixed_ladder(d),
        PolicyKind::Bisection => bisection(d),
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn dur(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn open_empty_slots(d: &Discovery, out: &mut Vec<(Duration, Action)>) {
    for (slot, state) in d.slots.iter().enumerate() {
        if *state == SlotClock::Empty {
            out.push((Duration::ZERO, Action::Open { slot }));
        }
    }
}

/// Idle slots, oldest first (earliest `since`).
fn idle_oldest_first(d: &Discovery) -> Vec<(usize, Duration)> {
    let mut idle: Vec<(usize, Duration)> = d.idle_slots().collect();
    idle.sort_by_key(|(slot, since)| (*since, *slot));
    idle
}

fn adaptive(d: &Discovery) -> Vec<(Duration, Action)> {
    let mut out = Vec::new();
    open_empty_slots(d, &mut out);
    let idle = idle_oldest_first(d);
    match d.search().upper {
        None => escalate(d, &idle, &mut out),
        Some(upper) => split(d, &idle, secs(upper), &mut out),
    }
    keep_first_per_slot(out)
}

/// Escalation: one value at a time, above everything survived or being tested.
fn escalate(d: &Discovery, idle: &[(usize, Duration)], out: &mut Vec<(Duration, Action)>) {
    let (min, max) = (secs(d.space.min), secs(d.space.max));
    let highest = d
        .testing
        .iter()
        .flatten()
        .map(|t| secs(*t))
        .chain(d.search().lower.map(secs))
        .fold(None, |acc: Option<f64>, v| {
            Some(acc.map_or(v, |a| a.max(v)))
        });
    let next = match highest {
        None => min,
        Some(h) => {
            let growth = if d.slots.len() == 1 {
                GROWTH_ONE_SLOT
            } else {
                GROWTH
            };
            (h * growth).min(max)
        }
    };
    if let Some((slot, since)) = idle.first() {
        out.push((*since + dur(next), Action::Probe { slot: *slot }));
    }
}

/// A death is known: discard what idled past it, and split the bracket.
fn split(d: &Discovery, idle: &[(usize, Duration)], upper: f64, out: &mut Vec<(Duration, Action)>) {
    let min = secs(d.space.min);
    // Nothing survived yet: a rediscovery after the threshold went down, seeded with the
    // sentinel's death. The new T is most likely near the old one, so descend by halving from
    // there instead of bisecting all the way from the range min.
    let lower = d
        .search()
        .lower
        .map_or((upper / DESCENT_SPLIT).max(min).min(upper), secs);
    for (slot, since) in idle {
        out.push((*since + dur(upper), Action::Discard { slot: *slot }));
    }
    // Split: one probe at a time at the bracket's geometric midpoint, with the connection
    // whose age is closest to it. Survivals answer in a round trip, so this is as fast as
    // parallel probing, and it wastes no aged connection on a split that an earlier answer
    // would have made pointless.
    if d.testing
        .iter()
        .flatten()
        .any(|t| secs(*t) > lower && secs(*t) < upper)
    {
        return;
    }
    let mid = (lower * upper).sqrt();
    let now = d.now;
    let age = |since: Duration| secs(now.saturating_sub(since));
    // The youngest connection already past the midpoint splits well if it is not too close
    // to the upper bound; otherwise wait for the oldest one below the midpoint.
    let past = idle
        .iter()
        .filter(|(_, since)| age(*since) >= mid && age(*since) < upper)
        .max_by_key(|(_, since)| *since);
    let below = idle
        .iter()
        .filter(|(_, since)| age(*since) < mid)
        .min_by_key(|(_, since)| *since);
    let good_split = |a: f64| (a / lower).ln() <= 0.75 * (upper / lower).ln();
    match (past, below) {
        (Some((slot, since)), _) if good_split(age(*since)) => {
            out.push((now, Action::Probe { slot: *slot }))
        }
        (_, Some((slot, since))) => out.push((*since + dur(mid), Action::Probe { slot: *slot })),
        (Some((slot, _)), None) => out.push((now, Action::Probe { slot: *slot })),
        (None, None) => {}
    }
}

fn fixed_ladder(d: &Discovery) -> Vec<(Duration, Action)> {
    let mut out = Vec::new();
    let max = secs(d.space.max);
    for (slot, state) in d.slots.iter().enumerate().take(LADDER_FRACTIONS.len()) {
        match state {
            SlotClock::Empty => out.push((Duration::ZERO, Action::Open { slot })),
            SlotClock::Idle { since } => {
                let rung = (LADDER_FRACTIONS[slot] * max).max(secs(d.space.min));
                out.push((*since + dur(rung), Action::Probe { slot }));
            }
            SlotClock::Busy => {}
        }
    }
    out
}

fn bisection(d: &Discovery) -> Vec<(Duration, Action)> {
    let mut out = Vec::new();
    let min = secs(d.space.min);
    let max = secs(d.space.max);
    match d.slots[0] {
        SlotClock::Empty => out.push((Duration::ZERO, Action::Open { slot: 0 })),
        SlotClock::Idle { since } => {
            let search = d.search();
            let target = match (search.lower, search.upper) {
                (None, None) => min,
                (Some(l), None) => (secs(l) * 2.0).min(max),
                (l, Some(u)) => {
                    let l = l.map_or(min.min(secs(u)), secs);
                    (l * secs(u)).sqrt()
                }
            };
            out.push((since + dur(target), Action::Probe { slot: 0 }));
        }
        SlotClock::Busy => {}
    }
    out
}

/// A slot gets one action: the earliest scheduled (a discard due before a probe wins).
fn keep_first_per_slot(mut out: Vec<(Duration, Action)>) -> Vec<(Duration, Action)> {
    out.sort_by_key(|(at, _)| *at);
    let mut seen = Vec::new();
    out.retain(|(_, action)| {
        let slot = match action {
            Action::Open { slot } | Action::Probe { slot } | Action::Discard { slot } => *slot,
        };
        if seen.contains(&slot) {
            false
        } else {
            seen.push(slot);
            true
        }
    });
    out
}
