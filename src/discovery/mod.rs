//! Discovery: narrowing down after how long idle connections are dropped, as pure logic.
//!
//! The engine (`probe::engine`) owns real connections; this module only decides, from the
//! bracket found so far and the idle age of each connection slot, which slot to open, which
//! connection to use now, and which to discard. No I/O and no clock: time is a `Duration`
//! since the engine started, so the same code runs under the simulator ([`sim`]) that measures
//! how fast each [`PolicyKind`] converges.
//!
//! Terms: a connection idle for `d` survives its next use iff `d < T`; a use resets its idle
//! clock. The **bracket** is (longest idle that survived, shortest idle that killed].
//!
//! Evidence from outside the discovery's slots (the guard's, through [`Estimator::observe`])
//! narrows the bracket, and so the answer and the verdict, but not the schedule: the policies
//! plan from the discovery's own results (its *search* bracket). The guard idles a lifetime
//! the application chose, and escalating from its survival put the next step wherever that
//! choice fell against T (with the guard at 0.75×T, the next step, 0.975×T, survived too, and
//! the first death needed one step more: issue 18). With the schedule its own, a discovery
//! beside a guard probes exactly as one without it, and a narrower bracket can only meet the
//! precision sooner: where T holds still, the guard's results never make the answer later
//! (`tests.rs` checks it on the simulator). One that contradicts the bracket (the threshold
//! moved) restarts both from it, as any newest evidence does.

mod clock;
mod guard;
mod policy;
pub mod sim;

pub use clock::SlotClock;
pub use guard::Guard;

use std::time::Duration;

/// Where to look for the threshold and when to stop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchSpace {
    pub min: Duration,
    pub max: Duration,
    /// Stop when `(upper - lower) <= precision * (upper + lower)`: ±precision around the midpoint.
    pub precision: f64,
}

impl SearchSpace {
    /// The largest `upper / lower` ratio that meets the precision.
    pub fn target_ratio(&self) -> f64 {
        (1.0 + self.precision) / (1.0 - self.precision)
    }
}

/// What has been observed: `lower` is the longest idle a connection survived, `upper` the
/// shortest idle that killed one. `None`: not observed yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Bracket {
    pub lower: Option<Duration>,
    pub upper: Option<Duration>,
}

/// Where a discovery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Searching,
    /// The bracket meets the precision.
    Converged,
    /// A connection survived the range's max: nothing drops within the range.
    NoDropUpToMax,
    /// A connection died at or below the range's min.
    BelowRange,
}

impl Bracket {
    pub fn record_survival(&mut self, idle: Duration) {
        self.lower = Some(self.lower.map_or(idle, |l| l.max(idle)));
    }

    pub fn record_death(&mut self, idle: Duration) {
        self.upper = Some(self.upper.map_or(idle, |u| u.min(idle)));
    }

    /// False when a survival is at or above a death: the threshold moved (or noise).
    pub fn is_consistent(&self) -> bool {
        match (self.lower, self.upper) {
            (Some(l), Some(u)) => l < u,
            _ => true,
        }
    }

    /// Whether a connection that died after `idle` died younger than connections were seen to
    /// live: below the lower bound by more than the precision, which idle times' scheduling
    /// jitter stays within. Such a death is not the box's idle timeout (a fault, a kill at the
    /// server, or the threshold went down).
    pub fn died_younger_than_survivors(&self, idle: Duration, precision: f64) -> bool {
        self.lower
            .is_some_and(|lower| idle < lower.mul_f64(1.0 - precision))
    }

    /// `upper / lower`, when both are known.
    pub fn ratio(&self) -> Option<f64> {
        match (self.lower, self.upper) {
            (Some(l), Some(u)) if !l.is_zero() => Some(u.as_secs_f64() / l.as_secs_f64()),
            _ => None,
        }
    }

    /// The geometric midpoint, when both bounds are known.
    pub fn midpoint(&self) -> Option<Duration> {
        match (self.lower, self.upper) {
            (Some(l), Some(u)) => Some(Duration::from_secs_f64(
                (l.as_secs_f64() * u.as_secs_f64()).sqrt(),
            )),
            _ => None,
        }
    }

    pub fn verdict(&self, space: &SearchSpace) -> Verdict {
        if self.lower.is_some_and(|l| l >= space.max) {
            return Verdict::NoDropUpToMax;
        }
        if self.upper.is_some_and(|u| u <= space.min) {
            return Verdict::BelowRange;
        }
        match (self.lower, self.upper) {
            (Some(l), Some(u)) if l < u => {
                let (l, u) = (l.as_secs_f64(), u.as_secs_f64());
                if u - l <= space.precision * (u + l) + 1e-12 {
                    Verdict::Converged
                } else {
                    Verdict::Searching
                }
            }
            _ => Verdict::Searching,
        }
    }
}

/// Which policy picks the idle times to test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// Escalate geometrically with the oldest connection, then split the bracket with the
    /// connections whose ages already lie inside it (see `policy.rs`).
    Adaptive,
    /// Baseline: fixed idle values (the 30s, 1m, 2m, 5m, 10m, 20m, 30m, 1h ladder, scaled to the
    /// range max), one connection each, repeated. Cannot narrow below its rung spacing.
    FixedLadder,
    /// Baseline: one connection, sequential bisection at the bracket's geometric midpoint.
    Bisection,
}

/// What the engine should do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a new connection into this empty slot.
    Open { slot: usize },
    /// Use this idle connection now.
    Probe { slot: usize },
    /// Close it: known dead (idle past the upper bound) or no longer needed.
    Discard { slot: usize },
}

/// What the probe engine asks of whoever decides for a set of its slots: the [`Discovery`],
/// the watch (`probe::watch`) and the guard ([`Guard`], here because the simulator runs it too) answer the same calls. `now` is
/// the time since the engine started; each action marks its slot busy until the matching
/// `on_*` call. `slot` is the engine's index; each keeps a [`SlotClock`] per slot it owns.
pub trait Scheduler {
    /// Actions due at `now`.
    fn poll(&mut self, now: Duration) -> Vec<Action>;
    /// When `poll` next has something to do.
    fn next_deadline(&self) -> Option<Duration>;
    fn on_opened(&mut self, slot: usize, now: Duration);
    fn on_open_failed(&mut self, slot: usize, now: Duration);
    fn on_probe(&mut self, slot: usize, idle: Duration, survived: bool, now: Duration);
    fn on_closed_while_idle(&mut self, slot: usize, idle: Duration, now: Duration);
    fn on_released(&mut self, slot: usize, now: Duration);
}

/// A scheduler whose results bound the threshold: the scheduler of a phase (the discovery,
/// the watch). The guard's results reach it as evidence too.
pub trait Estimator: Scheduler {
    /// An idle time observed outside the scheduler's own slots (the guard's): evidence for
    /// the bracket (the discovery does not plan its probes from it: see the module doc).
    fn observe(&mut self, idle: Duration, survived: bool);
    fn bracket(&self) -> Bracket;
}

/// One discovery run over a fixed number of connection slots.
#[derive(Debug)]
pub struct Discovery {
    space: SearchSpace,
    policy: PolicyKind,
    slots: Vec<SlotClock>,
    /// Everything observed, the guard's results included: the answer and the verdict.
    bracket: Bracket,
    /// What the discovery's own probes (and its seed) observed: what the policies plan from.
    /// Never narrower than `bracket`, and restarted with it when an observation contradicts
    /// it (the threshold moved: the newest evidence wins, whoever observed it).
    search: Bracket,
    /// Idle values currently being tested (probe sent, no answer yet), per slot.
    testing: Vec<Option<Duration>>,
    /// The time of the last `poll`: the policies' notion of "now" for `next_deadline`.
    now: Duration,
}

impl Discovery {
    /// `seed`: what is already known (after a detected change, the contradicting observation).
    pub fn new(
        space: SearchSpace,
        slots: usize,
        policy: PolicyKind,
        seed: Bracket,
        _now: Duration,
    ) -> Self {
        let seed = if seed.is_consistent() {
            seed
        } else {
            Bracket::default()
        };
        Discovery {
            space,
            policy,
            slots: vec![SlotClock::Empty; slots.max(1)],
            bracket: seed,
            search: seed,
            testing: vec![None; slots.max(1)],
            now: Duration::ZERO,
        }
    }

    /// New range, precision or policy (a reload): what was observed stays.
    pub fn retune(&mut self, space: SearchSpace, policy: PolicyKind) {
        self.space = space;
        self.policy = policy;
    }

    pub fn verdict(&self) -> Verdict {
        self.bracket.verdict(&self.space)
    }

    pub fn policy(&self) -> PolicyKind {
        self.policy
    }

    /// The bracket the policies plan from: the discovery's own results (see the module doc).
    pub(crate) fn search(&self) -> Bracket {
        self.search
    }

    /// One observation: `own` when a probe of the discovery's own slots made it. Every one
    /// narrows the bracket; only its own narrow the search, unless it contradicts the bracket,
    /// which then restarts, and the search with it.
    fn record(&mut self, idle: Duration, survived: bool, own: bool) {
        let restarted = if survived {
            self.observe_survival(idle)
        } else {
            self.observe_death(idle)
        };
        if restarted {
            self.search = self.bracket;
        } else if own && survived {
            self.search.record_survival(idle);
        } else if own {
            self.search.record_death(idle);
        }
    }

    /// A survival at or above a known death means the threshold moved up (or a fluke): start
    /// again from this observation alone, the newest evidence. True when it did.
    fn observe_survival(&mut self, idle: Duration) -> bool {
        if self.bracket.upper.is_some_and(|u| idle >= u) {
            self.bracket = Bracket {
                lower: Some(idle),
                upper: None,
            };
            true
        } else {
            self.bracket.record_survival(idle);
            false
        }
    }

    fn observe_death(&mut self, idle: Duration) -> bool {
        if self.bracket.lower.is_some_and(|l| idle <= l) {
            self.bracket = Bracket {
                lower: None,
                upper: Some(idle),
            };
            true
        } else {
            self.bracket.record_death(idle);
            false
        }
    }

    pub(crate) fn idle_slots(&self) -> impl Iterator<Item = (usize, Duration)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, s.idle_since()?)))
    }
}

impl Scheduler for Discovery {
    fn poll(&mut self, now: Duration) -> Vec<Action> {
        self.now = now;
        let actions = if self.verdict() == Verdict::Searching {
            policy::decide(self, now)
        } else {
            self.idle_slots()
                .map(|(slot, _)| Action::Discard { slot })
                .collect()
        };
        for action in &actions {
            let slot = match *action {
                Action::Open { slot } | Action::Discard { slot } => slot,
                Action::Probe { slot } => {
                    if let Some(since) = self.slots[slot].idle_since() {
                        self.testing[slot] = Some(now.saturating_sub(since));
                    }
                    slot
                }
            };
            self.slots[slot].busy();
        }
        actions
    }

    fn next_deadline(&self) -> Option<Duration> {
        if self.verdict() != Verdict::Searching {
            return self.idle_slots().next().map(|_| Duration::ZERO);
        }
        policy::deadline(self)
    }

    fn on_opened(&mut self, slot: usize, now: Duration) {
        self.slots[slot].idle_from(now);
    }

    fn on_open_failed(&mut self, slot: usize, _now: Duration) {
        self.slots[slot].empty();
    }

    fn on_probe(&mut self, slot: usize, idle: Duration, survived: bool, now: Duration) {
        self.testing[slot] = None;
        self.slots[slot].probed(survived, now);
        self.record(idle, survived, true);
    }

    fn on_closed_while_idle(&mut self, slot: usize, idle: Duration, _now: Duration) {
        self.testing[slot] = None;
        self.slots[slot].busy();
        self.record(idle, false, true);
    }

    fn on_released(&mut self, slot: usize, _now: Duration) {
        self.slots[slot].empty();
    }
}

impl Estimator for Discovery {
    /// The guard's result: it narrows the bracket, not the search (see the module doc).
    fn observe(&mut self, idle: Duration, survived: bool) {
        self.record(idle, survived, false);
    }

    fn bracket(&self) -> Bracket {
        self.bracket
    }
}

#[cfg(test)]
mod tests;
