//! The watch phase: once the bracket is narrow, a few connections keep re-testing it.
//!
//! - `sentinel_low` idles just below the lower bound and must survive;
//! - `sentinel_high` idles just above the upper bound and must die;
//! - `keepalive` (optional) idles past the upper bound with TCP keepalives on: surviving means
//!   the box counts packets (NAT, conntrack, NLB) and keepalives rescue; dying means it counts
//!   requests (a proxy).
//!
//! The guard (`guard.rs`) runs beside the watch in its own slot; its results reach the watch
//! through [`Estimator::observe`].
//!
//! A sentinel (or the guard) that contradicts the bracket means the threshold moved: the watch
//! reports a [`Change`] with the observation as the seed of a new discovery. Pure logic, no
//! clock: the engine drives it with the same calls as the discovery.

use std::time::Duration;

use crate::discovery::{Action, Bracket, Estimator, Scheduler, SlotClock};
use crate::model::{Role, ThresholdMove};

/// The bracket no longer holds; rediscover starting from `seed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub direction: ThresholdMove,
    pub seed: Bracket,
}

#[derive(Clone, Copy, Debug)]
struct WatchSlot {
    role: Role,
    idle: Duration,
    clock: SlotClock,
}

/// How far past the upper bound `discover`'s keepalive check idles: clearly dead without
/// keepalives, and no longer than needed (beside the discovery it has mostly idled that long
/// by the time the bracket is known).
pub const KEEPALIVE_CHECK_FACTOR: f64 = 1.25;

/// The keepalive interval for a probe: the configured one, but always well below the lower
/// bound, or the first keepalive would leave after the box forgot the flow and the check
/// would call a packet-counting box a proxy.
pub fn keepalive_interval(configured: Duration, bracket: Bracket) -> Duration {
    match bracket.lower {
        Some(lower) => configured.min((lower / 3).max(Duration::from_secs(1))),
        None => configured,
    }
}

/// The watch scheduler for one target.
#[derive(Debug)]
pub struct Watch {
    bracket: Bracket,
    precision: f64,
    slots: Vec<WatchSlot>,
    change: Option<Change>,
    keepalive_result: Option<bool>,
    /// Confirming a stored bracket: the sentinels whose expected result is still missing.
    awaiting: Vec<Role>,
}

impl Watch {
    /// `slots`: probe connections available (the budget minus the control connection and the
    /// guard). Roles that do not fit are dropped, least important first (keepalive, then
    /// sentinel_high).
    pub fn new(bracket: Bracket, precision: f64, keepalive: bool, slots: usize) -> Self {
        let mut plan = Vec::new();
        if let Some(lower) = bracket.lower {
            plan.push((Role::SentinelLow, lower.mul_f64(1.0 - precision)));
        }
        if let Some(upper) = bracket.upper {
            plan.push((Role::SentinelHigh, upper.mul_f64(1.0 + precision)));
            if keepalive {
                plan.push((Role::Keepalive, upper.mul_f64(1.5)));
            }
        }
        plan.truncate(slots);
        Watch {
            bracket,
            precision,
            slots: plan
                .into_iter()
                .map(|(role, idle)| WatchSlot {
                    role,
                    idle,
                    clock: SlotClock::Empty,
                })
                .collect(),
            change: None,
            keepalive_result: None,
            awaiting: Vec::new(),
        }
    }

    /// A bracket from an earlier run (the state file, or a restart that kept the path) is
    /// trusted again once `sentinel_low` survived just below its lower bound: the lower bound
    /// is what the recommendation stands on, and it is re-proven after about 0.95 × the lower
    /// bound. `sentinel_high` keeps checking the upper bound as in any watch (a survival there
    /// is a change). Waiting for its death too would take 1.05 × the upper bound plus the
    /// query timeout a silent drop needs to show (1.35 × the upper bound at T = 10 s).
    /// Without a lower bound (`below_range`), the high sentinel's death confirms.
    pub fn confirming(mut self) -> Self {
        let roles: Vec<Role> = self.slots.iter().map(|s| s.role).collect();
        self.awaiting = if roles.contains(&Role::SentinelLow) {
            vec![Role::SentinelLow]
        } else {
            roles
                .into_iter()
                .filter(|r| *r == Role::SentinelHigh)
                .collect()
        };
        self
    }

    /// Every sentinel gave its expected result (always true unless [`Watch::confirming`]).
    pub fn confirmed(&self) -> bool {
        self.awaiting.is_empty() && self.change.is_none()
    }

    fn expected(&mut self, role: Role, survived: bool) {
        let expected = match role {
            Role::SentinelLow => survived,
            Role::SentinelHigh => !survived,
            _ => return,
        };
        if expected {
            self.awaiting.retain(|r| *r != role);
        }
    }

    /// Only the keepalive probe, idling `KEEPALIVE_CHECK_FACTOR` × the upper bound: what
    /// `discover` runs after the bracket converged, to tell what kind of box drops flows, when
    /// its budget has no slot to spare for the check beside the discovery
    /// (`probe/keepalive_check.rs`).
    pub fn keepalive_check(bracket: Bracket, precision: f64) -> Self {
        let idle = bracket
            .upper
            .map_or(Duration::ZERO, |u| u.mul_f64(KEEPALIVE_CHECK_FACTOR));
        Watch {
            bracket,
            precision,
            slots: vec![WatchSlot {
                role: Role::Keepalive,
                idle,
                clock: SlotClock::Empty,
            }],
            change: None,
            keepalive_result: None,
            awaiting: Vec::new(),
        }
    }

    /// The role of a slot (slots beyond the plan are unused).
    pub fn role(&self, slot: usize) -> Role {
        self.slots.get(slot).map_or(Role::Discovery, |s| s.role)
    }

    /// Whether the keepalive probe wants TCP keepalives on its connection.
    pub fn wants_keepalive(&self, slot: usize) -> bool {
        self.role(slot) == Role::Keepalive
    }

    /// The contradiction found, if any (taken once).
    pub fn take_change(&mut self) -> Option<Change> {
        self.change.take()
    }

    /// The keepalive probe's latest result: `Some(true)` when keepalives rescued it.
    pub fn take_keepalive_result(&mut self) -> Option<bool> {
        self.keepalive_result.take()
    }
}

impl Scheduler for Watch {
    fn poll(&mut self, now: Duration) -> Vec<Action> {
        if self.change.is_some() {
            return Vec::new();
        }
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, slot)| slot.clock.due(i, now, slot.idle))
            .collect()
    }

    fn next_deadline(&self) -> Option<Duration> {
        if self.change.is_some() {
            return None;
        }
        self.slots
            .iter()
            .filter_map(|s| s.clock.deadline(s.idle))
            .min()
    }

    fn on_opened(&mut self, slot: usize, now: Duration) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.clock.idle_from(now);
        }
    }

    fn on_open_failed(&mut self, slot: usize, _now: Duration) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.clock.empty();
        }
    }

    fn on_probe(&mut self, slot: usize, idle: Duration, survived: bool, now: Duration) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        let role = s.role;
        s.clock.probed(survived, now);
        if role == Role::Keepalive {
            // Keepalives change the test itself: its result says what the box is, not where T is.
            self.keepalive_result = Some(survived);
            return;
        }
        self.observe(idle, survived);
        self.expected(role, survived);
    }

    fn on_closed_while_idle(&mut self, slot: usize, idle: Duration, _now: Duration) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        s.clock.busy();
        if s.role == Role::Keepalive {
            // It died before its probe was due: the keepalives did not keep it alive. Unless
            // it died younger than plain connections lived: a box that counts requests ends a
            // keepalive connection at T like any other, one that counts packets never does, so
            // that is a fault or a kill at the server, no result (it idles again).
            if !self
                .bracket
                .died_younger_than_survivors(idle, self.precision)
            {
                self.keepalive_result = Some(false);
            }
        } else {
            let role = s.role;
            self.observe(idle, false);
            self.expected(role, false);
        }
    }

    fn on_released(&mut self, slot: usize, _now: Duration) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.clock.empty();
        }
    }
}

impl Estimator for Watch {
    /// An idle time that survived or killed (a sentinel's, or the guard's): a contradiction
    /// of the bracket is a [`Change`].
    fn observe(&mut self, idle: Duration, survived: bool) {
        if self.change.is_some() {
            return;
        }
        if survived && self.bracket.upper.is_some_and(|upper| idle >= upper) {
            self.change = Some(Change {
                direction: ThresholdMove::Up,
                seed: Bracket {
                    lower: Some(idle),
                    upper: None,
                },
            });
        } else if !survived && self.bracket.lower.is_some_and(|lower| idle <= lower) {
            self.change = Some(Change {
                direction: ThresholdMove::Down,
                seed: Bracket {
                    lower: None,
                    upper: Some(idle),
                },
            });
        }
    }

    fn bracket(&self) -> Bracket {
        self.bracket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn bracket() -> Bracket {
        Bracket {
            lower: Some(secs(100)),
            upper: Some(secs(105)),
        }
    }

    #[test]
    fn the_keepalive_check_idles_past_the_upper_bound_alone() {
        let mut w = Watch::keepalive_check(bracket(), 0.05);
        assert_eq!(w.poll(secs(0)), vec![Action::Open { slot: 0 }]);
        assert!(w.wants_keepalive(0));
        w.on_opened(0, secs(0));
        assert!(w.next_deadline().unwrap() > secs(105));
        w.on_probe(0, secs(132), true, secs(132));
        assert_eq!(w.take_keepalive_result(), Some(true));
        assert_eq!(w.take_change(), None, "keepalives say nothing about T");
    }

    #[test]
    fn keepalives_leave_well_before_the_lower_bound() {
        let interval = keepalive_interval(secs(30), bracket());
        assert_eq!(interval, secs(30));
        let short = Bracket {
            lower: Some(secs(8)),
            upper: Some(secs(9)),
        };
        assert!(keepalive_interval(secs(30), short) < secs(8) / 2);
        assert_eq!(keepalive_interval(secs(30), Bracket::default()), secs(30));
    }

    #[test]
    fn plans_roles_and_their_idle_times() {
        let w = Watch::new(bracket(), 0.05, true, 7);
        assert_eq!(w.role(0), Role::SentinelLow);
        assert_eq!(w.role(1), Role::SentinelHigh);
        assert_eq!(w.role(2), Role::Keepalive);
        assert_eq!(w.slots[0].idle, secs(95));
        assert!(w.slots[1].idle > secs(105));
        let small = Watch::new(bracket(), 0.05, true, 1);
        assert_eq!(small.slots.len(), 1);
    }

    #[test]
    fn opens_then_probes_when_each_idle_time_is_reached() {
        let mut w = Watch::new(bracket(), 0.05, false, 7);
        let opens = w.poll(secs(0));
        assert_eq!(opens.len(), 2);
        w.on_opened(0, secs(0));
        w.on_opened(1, secs(0));
        assert_eq!(w.next_deadline(), Some(secs(95)));
        assert!(w.poll(secs(94)).is_empty());
        assert_eq!(w.poll(secs(95)), vec![Action::Probe { slot: 0 }]);
    }

    #[test]
    fn expected_results_change_nothing() {
        let mut w = Watch::new(bracket(), 0.05, false, 7);
        w.on_probe(0, secs(95), true, secs(95));
        w.on_probe(1, secs(111), false, secs(111));
        assert_eq!(w.take_change(), None);
    }

    #[test]
    fn a_dying_low_sentinel_means_the_threshold_went_down() {
        let mut w = Watch::new(bracket(), 0.05, false, 7);
        w.on_probe(0, secs(95), false, secs(95));
        assert!(
            w.poll(secs(200)).is_empty(),
            "no new work once the bracket is void"
        );
        let change = w.take_change().unwrap();
        assert_eq!(change.direction, ThresholdMove::Down);
        assert_eq!(change.seed.upper, Some(secs(95)));
    }

    #[test]
    fn a_surviving_high_sentinel_means_the_threshold_went_up() {
        let mut w = Watch::new(bracket(), 0.05, false, 7);
        w.on_probe(1, secs(111), true, secs(111));
        let change = w.take_change().unwrap();
        assert_eq!(change.direction, ThresholdMove::Up);
        assert_eq!(change.seed.lower, Some(secs(111)));
    }

    #[test]
    fn guard_death_above_the_bracket_is_no_change_but_below_it_is() {
        let mut w = Watch::new(bracket(), 0.05, false, 7);
        w.observe(secs(300), false);
        assert_eq!(w.take_change(), None);
        w.observe(secs(60), false);
        assert_eq!(w.take_change().unwrap().direction, ThresholdMove::Down);
    }

    #[test]
    fn keepalive_results_are_reported_not_treated_as_drift() {
        let mut w = Watch::new(bracket(), 0.05, true, 7);
        assert_eq!(w.role(2), Role::Keepalive);
        w.on_probe(2, secs(157), true, secs(157));
        assert_eq!(w.take_keepalive_result(), Some(true));
        assert_eq!(w.take_change(), None);
        w.on_closed_while_idle(2, secs(101), secs(300));
        assert_eq!(w.take_keepalive_result(), Some(false));
        assert_eq!(w.take_change(), None);
    }

    /// A keepalive connection that dies younger than plain connections were seen to live
    /// (lower bound 100 s, less 5%) did not die by the box's idle timeout: no result, and it
    /// idles again from a new connection.
    #[test]
    fn a_keepalive_death_too_young_for_the_box_is_no_result() {
        let mut w = Watch::new(bracket(), 0.05, true, 7);
        w.poll(secs(0));
        w.on_opened(2, secs(0));
        w.on_closed_while_idle(2, secs(94), secs(94));
        assert_eq!(w.take_keepalive_result(), None);
        assert_eq!(w.take_change(), None);
        w.on_released(2, secs(95));
        assert!(w.poll(secs(95)).contains(&Action::Open { slot: 2 }));
        w.on_opened(2, secs(95));
        w.on_closed_while_idle(2, secs(96), secs(191));
        assert_eq!(
            w.take_keepalive_result(),
            Some(false),
            "95 s and older: the box's"
        );
        assert!(!Bracket::default().died_younger_than_survivors(secs(1), 0.05));
    }

    #[test]
    fn a_stored_bracket_is_confirmed_by_its_low_sentinel() {
        let mut w = Watch::new(bracket(), 0.05, true, 7).confirming();
        assert!(!w.confirmed());
        w.on_closed_while_idle(1, secs(110), secs(110));
        assert!(
            !w.confirmed(),
            "the high sentinel's death proves no lower bound"
        );
        w.on_probe(0, secs(95), true, secs(95));
        assert!(w.confirmed());
        assert_eq!(w.take_change(), None);
        assert!(Watch::new(bracket(), 0.05, true, 7).confirmed());
        let below_range = Bracket {
            lower: None,
            upper: Some(secs(2)),
        };
        let mut w = Watch::new(below_range, 0.05, false, 7).confirming();
        assert!(!w.confirmed());
        w.on_probe(0, secs(3), false, secs(3));
        assert!(
            w.confirmed(),
            "without a lower bound the high sentinel confirms"
        );
    }

    #[test]
    fn a_stored_bracket_that_no_longer_holds_is_not_confirmed() {
        let mut w = Watch::new(bracket(), 0.05, false, 7).confirming();
        w.on_probe(1, secs(111), true, secs(111));
        w.on_probe(0, secs(95), true, secs(95));
        assert!(!w.confirmed());
        assert_eq!(w.take_change().unwrap().direction, ThresholdMove::Up);
    }
}
