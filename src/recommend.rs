//! Turns a measured bracket into pool settings a person can paste.
//!
//! The only safe idle lifetime is one strictly below the lower bound (the longest idle we saw
//! survive): the threshold lies somewhere above it, and may be anywhere up to the upper bound.
//! The margin absorbs timer granularity, clock drift between pool and middlebox, and a
//! threshold that creeps down under load (RFC 5780 notes that loaded NATs shorten lifetimes).

use std::time::Duration;

use crate::discovery::Bracket;

/// What to configure in the application's pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recommendation {
    /// Pool max idle lifetime; `None` until some idle survived.
    pub max_idle_lifetime: Option<Duration>,
    /// Socket / statement timeout, so a connection that dies anyway fails fast instead of
    /// hanging for the kernel's ~15 minutes of retransmissions.
    pub socket_timeout: Duration,
}

/// The recommendation for a bracket: [`lifetime_below`] its lower bound.
pub fn recommend(bracket: &Bracket, margin: f64, socket_timeout: Duration) -> Recommendation {
    Recommendation {
        max_idle_lifetime: bracket
            .lower
            .and_then(|lower| lifetime_below(lower, margin)),
        socket_timeout,
    }
}

/// `lower × (1 − margin)`, rounded down to whole seconds from 10 s up, to milliseconds below;
/// `None` when nothing is left.
pub fn lifetime_below(lower: Duration, margin: f64) -> Option<Duration> {
    let raw = lower.mul_f64((1.0 - margin).clamp(0.0, 1.0));
    let lifetime = if raw >= Duration::from_secs(10) {
        Duration::from_secs(raw.as_secs())
    } else {
        Duration::from_millis(raw.as_millis() as u64)
    };
    (!lifetime.is_zero()).then_some(lifetime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_strictly_below_the_lower_bound() {
        let bracket = Bracket {
            lower: Some(Duration::from_secs_f64(342.7)),
            upper: Some(Duration::from_secs(360)),
        };
        let r = recommend(&bracket, 0.2, Duration::from_secs(10));
        assert_eq!(r.max_idle_lifetime, Some(Duration::from_secs(274)));
        let r = recommend(&bracket, 0.0, Duration::from_secs(10));
        assert!(r.max_idle_lifetime.unwrap() <= bracket.lower.unwrap());
    }

    #[test]
    fn nothing_to_recommend_before_a_survival() {
        let r = recommend(&Bracket::default(), 0.2, Duration::from_secs(10));
        assert_eq!(r.max_idle_lifetime, None);
    }

    #[test]
    fn short_thresholds_keep_millisecond_precision() {
        let bracket = Bracket {
            lower: Some(Duration::from_millis(4_800)),
            upper: Some(Duration::from_secs(5)),
        };
        let r = recommend(&bracket, 0.2, Duration::from_secs(10));
        assert_eq!(r.max_idle_lifetime, Some(Duration::from_millis(3_840)));
    }
}
