//! The guard: one connection that idles exactly the application's `app_max_idle_lifetime`,
//! again and again, in every phase. When it dies, the application's pool is handing out dead
//! connections right now, and that pages.
//!
//! It has its own slot, outside discovery and watch, so it runs from the first minute
//! (discovery at T = 1 h takes about 2 h) and keeps its idle clock across phase changes. What
//! it observes is also evidence about T, which the engine passes on to the active phase: it
//! narrows the discovery's bracket, but the discovery plans its probes from its own results
//! (a lifetime the application chose is no step of its escalation; see `discovery`).
//! Pure logic, no clock: a [`Scheduler`] of one slot, driven like the discovery and the watch.

use std::time::Duration;

use super::{Action, Scheduler, SlotClock};

/// The guard's plan: its slot and the lifetime it idles; a [`Scheduler`] for that one slot.
#[derive(Debug)]
pub struct Guard {
    /// The engine's slot the guard uses.
    slot: usize,
    lifetime: Duration,
    clock: SlotClock,
}

impl Guard {
    pub fn new(slot: usize, lifetime: Duration) -> Self {
        Guard {
            slot,
            lifetime,
            clock: SlotClock::Empty,
        }
    }

    pub fn slot(&self) -> usize {
        self.slot
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A new lifetime applies from the connection's current idle clock on.
    pub fn set_lifetime(&mut self, lifetime: Duration) {
        self.lifetime = lifetime;
    }
}

/// Its one slot's reports; a failed open is opened again at the next poll (the engine's
/// connect backoff paces retries), a death waits for the engine's release.
impl Scheduler for Guard {
    fn poll(&mut self, now: Duration) -> Vec<Action> {
        self.clock
            .due(self.slot, now, self.lifetime)
            .into_iter()
            .collect()
    }

    fn next_deadline(&self) -> Option<Duration> {
        self.clock.deadline(self.lifetime)
    }

    fn on_opened(&mut self, _slot: usize, now: Duration) {
        self.clock.idle_from(now);
    }

    fn on_open_failed(&mut self, _slot: usize, _now: Duration) {
        self.clock.empty();
    }

    fn on_probe(&mut self, _slot: usize, _idle: Duration, survived: bool, now: Duration) {
        self.clock.probed(survived, now);
    }

    fn on_closed_while_idle(&mut self, _slot: usize, _idle: Duration, _now: Duration) {
        self.clock.busy();
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

    #[test]
    fn opens_then_probes_every_lifetime_and_reopens_after_a_death() {
        let mut g = Guard::new(6, secs(60));
        assert_eq!(g.poll(secs(0)), vec![Action::Open { slot: 6 }]);
        assert_eq!(g.poll(secs(0)), vec![], "busy while opening");
        g.on_opened(6, secs(1));
        assert_eq!(g.next_deadline(), Some(secs(61)));
        assert_eq!(g.poll(secs(60)), vec![]);
        assert_eq!(g.poll(secs(61)), vec![Action::Probe { slot: 6 }]);
        g.on_probe(6, secs(60), true, secs(61));
        assert_eq!(g.next_deadline(), Some(secs(121)));
        assert_eq!(g.poll(secs(121)), vec![Action::Probe { slot: 6 }]);
        g.on_probe(6, secs(60), false, secs(121));
        assert_eq!(g.poll(secs(500)), vec![], "dead: waits for the release");
        g.on_released(6, secs(500));
        assert_eq!(g.poll(secs(500)), vec![Action::Open { slot: 6 }]);
        g.on_open_failed(6, secs(501));
        assert_eq!(g.poll(secs(501)), vec![Action::Open { slot: 6 }]);
        g.on_opened(6, secs(502));
        g.on_closed_while_idle(6, secs(10), secs(512));
        assert_eq!(
            g.poll(secs(600)),
            vec![],
            "died idle: waits for the release"
        );
    }

    #[test]
    fn a_new_lifetime_counts_from_the_current_idle_clock() {
        let mut g = Guard::new(0, secs(300));
        g.poll(secs(0));
        g.on_opened(0, secs(0));
        g.set_lifetime(secs(60));
        assert_eq!(g.next_deadline(), Some(secs(60)));
    }
}
