//! `discover`'s keepalive verdict, run beside the discovery: one connection with TCP
//! keepalives, opened in the first second in a slot of its own (as the guard has one), idling
//! while the discovery narrows the bracket, and probed once the bracket is known and it has
//! idled [`KEEPALIVE_CHECK_FACTOR`] × the upper bound. Alive: the box counts packets
//! (keepalives are a fix); dead: it counts requests (a proxy). A box that counts requests and
//! closes the flow (FIN or RST) ends the connection while it idles, before the bracket is
//! known; that death is the verdict only if it came no younger than connections without
//! keepalives were seen to live ([`Bracket::died_younger_than_survivors`]), so it is judged
//! once the bracket is known. A younger one (a fault on the path) starts the check again.
//!
//! Run after the bracket instead (the watch's [`Watch::keepalive_check`]), the same verdict
//! cost about 1.25 × the upper bound more (issue 18). Its slot is worth that only while the
//! discovery keeps enough of its own: [`runs_alongside`] decides.
//!
//! Pure logic, no clock: a [`Scheduler`] of one slot, driven like the guard.
//!
//! [`Watch::keepalive_check`]: super::watch::Watch::keepalive_check

use std::time::Duration;

use super::watch::KEEPALIVE_CHECK_FACTOR;
use crate::discovery::{Action, Bracket, Scheduler, SlotClock};

/// The fewest slots the discovery keeps when the check takes one beside it. The simulator
/// (`src/discovery/sim.rs`, adaptive policy, ±5%, T log-uniform in 1 s–1 h, median with a
/// death shown at once / after 10 s) takes 5.98 / 6.87×T with 1 slot, 3.75 / 4.22×T with 2,
/// 2.55 / 3.06×T with 3 and 2.00 / 2.53×T with 4. The check after the bracket costs about
/// 1.3×T (1.25 × the upper bound). Beside a discovery of 2 slots instead of 3 it costs 1.2×T
/// (3.75 against 2.55 + 1.3 = 3.85: even, slightly ahead), beside 3 instead of 4 0.55×T (2.55
/// against 3.3); beside 1 instead of 2 it would cost 2.2×T (5.98 against 5.05): the check then
/// waits for the bracket.
pub const MIN_DISCOVERY_SLOTS: usize = 2;

/// Whether the check gets a slot of its own beside a discovery that has `scheduler_slots`
/// (the probe slots, the guard's aside); otherwise it runs after the bracket.
pub fn runs_alongside(scheduler_slots: usize) -> bool {
    scheduler_slots > MIN_DISCOVERY_SLOTS
}

/// When `discover`'s keepalive verdict is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckTiming {
    /// In a slot of its own from the start, read once the bracket is known.
    AlongsideDiscovery,
    /// After the bracket (the budget had no slot to spare): about 1.25 × the upper bound more.
    AfterBracket,
}

impl CheckTiming {
    /// The label `discover`'s report gives it.
    pub fn label(self) -> &'static str {
        match self {
            CheckTiming::AlongsideDiscovery => "alongside_discovery",
            CheckTiming::AfterBracket => "after_bracket",
        }
    }
}

/// The check's plan: its slot, and how long its connection idles before the probe (unknown
/// until the bracket is).
#[derive(Debug)]
pub struct KeepaliveCheck {
    /// The engine's slot the check uses.
    slot: usize,
    precision: f64,
    /// The bracket, once known: a death is judged against its lower bound.
    bracket: Option<Bracket>,
    idle: Option<Duration>,
    clock: SlotClock,
    /// `Some(true)`: keepalives kept it alive; with how long it had idled.
    verdict: Option<(bool, Duration)>,
    /// The verdict was handed over, or no longer wanted: the slot is not needed any more.
    over: bool,
    /// Deaths too young to be the box's verdict, with how long each had idled (taken once).
    too_young: Vec<Duration>,
}

impl KeepaliveCheck {
    /// The check in `slot`, for a discovery of `precision`.
    pub fn new(slot: usize, precision: f64) -> Self {
        KeepaliveCheck {
            slot,
            precision,
            bracket: None,
            idle: None,
            clock: SlotClock::Empty,
            verdict: None,
            over: false,
            too_young: Vec::new(),
        }
    }

    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The bracket is known: the probe goes out once the connection has idled
    /// [`KEEPALIVE_CHECK_FACTOR`] × its upper bound (at once if it already has).
    pub fn bracket_known(&mut self, bracket: Bracket) {
        if let Some(upper) = bracket.upper {
            self.idle = Some(upper.mul_f64(KEEPALIVE_CHECK_FACTOR));
        }
        self.bracket = Some(bracket);
        self.judge_a_death();
    }

    /// A death is the verdict only if the box can have caused it; otherwise it is set aside
    /// and a new connection idles from its release on.
    fn judge_a_death(&mut self) {
        let (Some((false, idle)), Some(bracket)) = (self.verdict, self.bracket) else {
            return;
        };
        if bracket.died_younger_than_survivors(idle, self.precision) {
            self.verdict = None;
            self.too_young.push(idle);
        }
    }

    /// Deaths set aside as too young to be the box's verdict since the last call, with how long
    /// each connection had idled (for the log).
    pub fn take_too_young(&mut self) -> Vec<Duration> {
        std::mem::take(&mut self.too_young)
    }

    /// No verdict is wanted (the discovery ended without a bracket): nothing more to do.
    pub fn abandon(&mut self) {
        self.over = true;
    }

    /// Whether the check still needs its slot.
    pub fn running(&self) -> bool {
        !self.over
    }

    /// The verdict, once the bracket is known (`true`: keepalives rescued the idle
    /// connection), with how long the connection had idled; the check is over from then on.
    pub fn take_verdict(&mut self) -> Option<(bool, Duration)> {
        self.bracket?;
        let verdict = self.verdict.filter(|_| !self.over)?;
        self.over = true;
        Some(verdict)
    }

    /// Its connection died for a reason idling cannot cause (an outage): no verdict, and a
    /// new connection idles from the start once the slot is released.
    pub fn interrupted(&mut self) {
        self.clock.busy();
    }
}

/// Its one slot's reports. A failed open is opened again at the next poll (the engine's
/// connect backoff paces retries).
impl Scheduler for KeepaliveCheck {
    fn poll(&mut self, now: Duration) -> Vec<Action> {
        if self.over || self.verdict.is_some() {
            return Vec::new();
        }
        match self.idle {
            Some(idle) => self.clock.due(self.slot, now, idle).into_iter().collect(),
            // Before the bracket: open, then idle.
            None if self.clock == SlotClock::Empty => {
                self.clock.busy();
                vec![Action::Open { slot: self.slot }]
            }
            None => Vec::new(),
        }
    }

    fn next_deadline(&self) -> Option<Duration> {
        if self.over || self.verdict.is_some() {
            return None;
        }
        match self.idle {
            Some(idle) => self.clock.deadline(idle),
            None => (self.clock == SlotClock::Empty).then_some(Duration::ZERO),
        }
    }

    fn on_opened(&mut self, _slot: usize, now: Duration) {
        self.clock.idle_from(now);
    }

    fn on_open_failed(&mut self, _slot: usize, _now: Duration) {
        self.clock.empty();
    }

    fn on_probe(&mut self, _slot: usize, idle: Duration, survived: bool, now: Duration) {
        self.clock.probed(survived, now);
        self.verdict.get_or_insert((survived, idle));
    }

    fn on_closed_while_idle(&mut self, _slot: usize, idle: Duration, _now: Duration) {
        // The keepalives did not keep it alive: the box closed the flow it counted idle, if it
        // was old enough for that (judged now, or once the bracket is known).
        self.clock.busy();
        self.verdict.get_or_insert((false, idle));
        self.judge_a_death();
    }

    fn on_released(&mut self, _slot: usize, _now: Duration) {
        self.clock.empty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn bracket(lower: u64, upper: u64) -> Bracket {
        Bracket {
            lower: Some(secs(lower)),
            upper: Some(secs(upper)),
        }
    }

    #[test]
    fn opens_at_once_and_idles_until_the_bracket_is_known() {
        let mut k = KeepaliveCheck::new(6, 0.05);
        assert_eq!(k.next_deadline(), Some(Duration::ZERO));
        assert_eq!(k.poll(secs(0)), vec![Action::Open { slot: 6 }]);
        assert_eq!(k.poll(secs(0)), vec![], "busy while opening");
        k.on_opened(6, secs(1));
        assert_eq!(k.next_deadline(), None, "no probe before the bracket");
        assert_eq!(k.poll(secs(3600)), vec![]);
    }

    #[test]
    fn probes_at_once_when_it_already_idled_long_enough() {
        let mut k = KeepaliveCheck::new(0, 0.05);
        k.poll(secs(0));
        k.on_opened(0, secs(0));
        k.bracket_known(bracket(20, 21));
        assert_eq!(k.poll(secs(30)), vec![Action::Probe { slot: 0 }]);
        k.on_probe(0, secs(30), true, secs(30));
        assert_eq!(k.take_verdict(), Some((true, secs(30))));
        assert_eq!(k.take_verdict(), None, "once");
        assert!(!k.running());
        assert_eq!(k.poll(secs(100)), vec![]);
    }

    #[test]
    fn waits_for_the_rest_of_its_idle_time_when_it_has_not() {
        let mut k = KeepaliveCheck::new(0, 0.05);
        k.poll(secs(0));
        k.on_opened(0, secs(10));
        k.bracket_known(bracket(20, 21));
        // 1.25 × 21 s = 26.25 s from 10 s.
        assert_eq!(k.next_deadline(), Some(Duration::from_secs_f64(36.25)));
        assert_eq!(k.poll(secs(30)), vec![]);
        assert_eq!(k.poll(secs(37)), vec![Action::Probe { slot: 0 }]);
        k.on_probe(0, secs(27), false, secs(37));
        assert_eq!(k.take_verdict(), Some((false, secs(27))));
    }

    /// A box that counts requests and closes the flow ends the check's connection at T, before
    /// the bracket is known; the bracket then shows it died no younger than connections
    /// without keepalives lived, so it is the verdict.
    #[test]
    fn a_death_while_idle_is_the_verdict_once_the_bracket_allows_it() {
        let mut k = KeepaliveCheck::new(0, 0.05);
        k.poll(secs(0));
        k.on_opened(0, secs(0));
        k.on_closed_while_idle(0, secs(20), secs(20));
        assert_eq!(k.take_verdict(), None, "judged once the bracket is known");
        k.on_released(0, secs(21));
        assert_eq!(k.poll(secs(21)), vec![], "no new connection meanwhile");
        k.bracket_known(bracket(20, 21));
        assert_eq!(k.take_verdict(), Some((false, secs(20))));
        assert!(k.take_too_young().is_empty());
        assert!(!k.running());
    }

    /// A fault on the path kills the check's connection at 5 s, where connections without
    /// keepalives lived 20 s: not the box's doing. The check starts again, and the new
    /// connection's survival is the verdict.
    #[test]
    fn a_death_younger_than_plain_connections_lived_starts_the_check_again() {
        let mut k = KeepaliveCheck::new(0, 0.05);
        k.poll(secs(0));
        k.on_opened(0, secs(0));
        k.on_closed_while_idle(0, secs(5), secs(5));
        k.on_released(0, secs(6));
        k.bracket_known(bracket(20, 21));
        assert_eq!(k.take_verdict(), None);
        assert_eq!(k.take_too_young(), vec![secs(5)]);
        assert_eq!(k.poll(secs(30)), vec![Action::Open { slot: 0 }]);
        k.on_opened(0, secs(30));
        assert_eq!(k.poll(secs(50)), vec![], "idles 26.25 s again");
        assert_eq!(k.poll(secs(57)), vec![Action::Probe { slot: 0 }]);
        k.on_probe(0, secs(27), true, secs(57));
        assert_eq!(k.take_verdict(), Some((true, secs(27))));
    }

    /// The same after the bracket is known: the young death is set aside at once.
    #[test]
    fn a_young_death_after_the_bracket_is_set_aside_at_once() {
        let mut k = KeepaliveCheck::new(0, 0.05);
        k.poll(secs(0));
        k.on_opened(0, secs(0));
        k.bracket_known(bracket(20, 21));
        k.on_closed_while_idle(0, secs(18), secs(18));
        assert_eq!(k.take_verdict(), None);
        assert_eq!(k.take_too_young(), vec![secs(18)]);
        k.on_released(0, secs(19));
        assert_eq!(k.poll(secs(19)), vec![Action::Open { slot: 0 }]);
        k.on_opened(0, secs(19));
        k.on_closed_while_idle(0, secs(19), secs(38));
        assert_eq!(
            k.take_verdict(),
            Some((false, secs(19))),
            "19 s ≥ 95% of 20 s"
        );
    }

    #[test]
    fn an_outage_starts_its_idle_time_again() {
        let mut k = KeepaliveCheck::new(0, 0.05);
        k.poll(secs(0));
        k.on_opened(0, secs(0));
        k.interrupted();
        assert_eq!(k.take_verdict(), None);
        k.on_released(0, secs(40));
        k.bracket_known(bracket(20, 21));
        assert_eq!(k.poll(secs(41)), vec![Action::Open { slot: 0 }]);
        k.on_opened(0, secs(41));
        assert_eq!(k.poll(secs(50)), vec![]);
    }

    #[test]
    fn an_abandoned_check_needs_no_slot() {
        let mut k = KeepaliveCheck::new(0, 0.05);
        k.abandon();
        assert!(!k.running());
        assert_eq!(k.poll(secs(0)), vec![]);
        assert_eq!(k.next_deadline(), None);
    }

    #[test]
    fn the_discovery_keeps_at_least_two_slots() {
        assert!(!runs_alongside(1));
        assert!(!runs_alongside(2));
        assert!(runs_alongside(3));
        assert!(runs_alongside(7));
    }
}
