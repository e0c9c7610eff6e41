//! The idle clock of one probe slot, as every scheduler (the discovery, the watch, the guard)
//! sees it: the engine owns the connection, the scheduler only knows whether the slot is empty,
//! waiting for the engine, or idle since when. One type, so the three agree on what each
//! report does to a slot.

use std::time::Duration;

use super::Action;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SlotClock {
    /// Nothing open: the scheduler may ask for a connection.
    #[default]
    Empty,
    /// Opening, probing or releasing: waiting for the engine.
    Busy,
    /// An open connection, idle since then.
    Idle { since: Duration },
}

impl SlotClock {
    /// When its connection went idle, if it is idle.
    pub fn idle_since(self) -> Option<Duration> {
        match self {
            SlotClock::Idle { since } => Some(since),
            _ => None,
        }
    }

    /// For a slot whose connection idles `idle` between uses: open it when empty, probe it
    /// once it idled that long; the slot is busy until the engine reports back.
    pub fn due(&mut self, slot: usize, now: Duration, idle: Duration) -> Option<Action> {
        let action = match *self {
            SlotClock::Empty => Action::Open { slot },
            SlotClock::Idle { since } if now >= since + idle => Action::Probe { slot },
            _ => return None,
        };
        *self = SlotClock::Busy;
        Some(action)
    }

    /// When [`SlotClock::due`] next has something to do for a connection idling `idle`.
    pub fn deadline(self, idle: Duration) -> Option<Duration> {
        match self {
            SlotClock::Empty => Some(Duration::ZERO),
            SlotClock::Idle { since } => Some(since + idle),
            SlotClock::Busy => None,
        }
    }

    /// An action was handed to the engine for this slot.
    pub fn busy(&mut self) {
        *self = SlotClock::Busy;
    }

    /// A connection opened (or answered a probe) at `now`: idle from then on.
    pub fn idle_from(&mut self, now: Duration) {
        *self = SlotClock::Idle { since: now };
    }

    /// A failed open, or the engine released the slot: free again.
    pub fn empty(&mut self) {
        *self = SlotClock::Empty;
    }

    /// A probe's answer: a survivor idles again from `now`; a dead one waits for its release.
    pub fn probed(&mut self, survived: bool, now: Duration) {
        if survived {
            self.idle_from(now);
        } else {
            self.busy();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn opens_an_empty_slot_then_probes_it_once_it_idled_long_enough() {
        let mut c = SlotClock::default();
        assert_eq!(c.deadline(secs(60)), Some(Duration::ZERO));
        assert_eq!(c.due(3, secs(0), secs(60)), Some(Action::Open { slot: 3 }));
        assert_eq!(c.due(3, secs(0), secs(60)), None, "busy while opening");
        assert_eq!(c.deadline(secs(60)), None);
        c.idle_from(secs(1));
        assert_eq!(c.idle_since(), Some(secs(1)));
        assert_eq!(c.deadline(secs(60)), Some(secs(61)));
        assert_eq!(c.due(3, secs(60), secs(60)), None);
        assert_eq!(
            c.due(3, secs(61), secs(60)),
            Some(Action::Probe { slot: 3 })
        );
        c.probed(false, secs(61));
        assert_eq!(
            c,
            SlotClock::Busy,
            "a dead connection waits for its release"
        );
        c.empty();
        assert_eq!(c, SlotClock::Empty);
        c.idle_from(secs(70));
        c.probed(true, secs(90));
        assert_eq!(c.idle_since(), Some(secs(90)));
    }
}
