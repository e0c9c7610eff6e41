//! Exponential backoff with jitter, so a down database is not met by a connection storm when it
//! comes back.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    /// The delay before the next attempt: doubles each time up to `max`, ±20% jitter so many
    /// targets (or exporters) do not retry in lockstep.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        base.mul_f64(0.8 + 0.4 * rand::random::<f64>())
    }

    /// The current, un-jittered delay (what the next failure would wait).
    pub fn current(&self) -> Duration {
        self.current
    }

    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_bounded_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        let bases = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0];
        for (d, base) in delays.iter().zip(bases) {
            let s = d.as_secs_f64();
            assert!(
                s >= base * 0.8 - 1e-9 && s <= base * 1.2 + 1e-9,
                "{s} vs {base}"
            );
        }
        b.reset();
        assert_eq!(b.current(), Duration::from_secs(1));
    }
}
