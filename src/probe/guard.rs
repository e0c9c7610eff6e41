//! The guard: one connection that idles exactly the application's `app_max_idle_lifetime`,
//! again and again, in every phase. When it dies, the application's pool is handing out dead
//! connections right now, and that pages.
//!
//! It has its own slot, outside discovery and watch, so it runs from the first minute
//! (discovery at T = 1 h takes about 2 h) and keeps its idle clock across phase changes. What
//! it observes is also evidence about T, which the engine passes on to the active phase.
//! Pure logic, no clock, driven like the schedulers.

use std::time::Duration;

use crate::discovery::Action;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Empty,
    Busy,
    Idle { since: Duration },
}

#[derive(Debug)]
pub struct Guard {
    /// The engine's slot the guard uses.
    slot: usize,
    lifetime: Duration,
    state: State,
}

impl Guard {
    pub fn new(slot: usize, lifetime: Duration) -> Self {
        Guard {
            slot,
            lifetime,
            state: State::Empty,
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

    pub fn poll(&mut self, now: Duration) -> Option<Action> {
        let action = match self.state {
            State::Empty => Action::Open { slot: self.slot },
            State::Idle { since } if now >= since + self.lifetime => {
                Action::Probe { slot: self.slot }
            }
            _ => return None,
        };
        self.state = State::Busy;
        Some(action)
    }

    pub fn next_deadline(&self) -> Option<Duration> {
        match self.state {
            State::Empty => Some(Duration::ZERO),
            State::Idle { since } => Some(since + self.lifetime),
            State::Busy => None,
        }
    }

    pub fn on_opened(&mut self, now: Duration) {
        self.state = State::Idle { since: now };
    }

    /// A failed open, or the slot was emptied: open again at the next poll (the engine's
    /// connect backoff paces retries).
    pub fn on_empty(&mut self) {
        self.state = State::Empty;
    }

    pub fn on_probe(&mut self, survived: bool, now: Duration) {
        self.state = if survived {
            State::Idle { since: now }
        } else {
            State::Busy
        };
    }

    /// Died while idle: busy until the engine released the connection.
    pub fn on_closed_while_idle(&mut self) {
        self.state = State::Busy;
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
        assert_eq!(g.poll(secs(0)), Some(Action::Open { slot: 6 }));
        assert_eq!(g.poll(secs(0)), None, "busy while opening");
        g.on_opened(secs(1));
        assert_eq!(g.next_deadline(), Some(secs(61)));
        assert_eq!(g.poll(secs(60)), None);
        assert_eq!(g.poll(secs(61)), Some(Action::Probe { slot: 6 }));
        g.on_probe(true, secs(61));
        assert_eq!(g.next_deadline(), Some(secs(121)));
        assert_eq!(g.poll(secs(121)), Some(Action::Probe { slot: 6 }));
        g.on_probe(false, secs(121));
        assert_eq!(g.poll(secs(500)), None, "dead: waits for the release");
        g.on_empty();
        assert_eq!(g.poll(secs(500)), Some(Action::Open { slot: 6 }));
    }

    #[test]
    fn a_new_lifetime_counts_from_the_current_idle_clock() {
        let mut g = Guard::new(0, secs(300));
        g.poll(secs(0));
        g.on_opened(secs(0));
        g.set_lifetime(secs(60));
        assert_eq!(g.next_deadline(), Some(secs(60)));
    }
}
