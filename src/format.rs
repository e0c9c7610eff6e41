//! How durations read, in one place: the page, the reports and the recipes show
//! [`human`] (`5m 42s`, `10.7s`); log lines show [`duration`] (`19s 489ms`), precise to the
//! millisecond. Below every module that prints a duration, so none of them names another for it.

use std::time::Duration;

/// Durations as people read them: `5m 42s`, `10.7s`, `4.8s`.
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(100) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

/// A duration as log lines show it: humantime, rounded to the millisecond (`19s 490ms`, not
/// `19.489809812s`).
pub fn duration(d: Duration) -> String {
    let millis = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    humantime::format_duration(Duration::from_millis(millis)).to_string()
}

/// A bracket bound as log lines show it: a duration, or `none` while unknown.
pub fn bound(bound: Option<Duration>) -> String {
    bound.map_or_else(|| "none".to_string(), duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(duration(Duration::from_nanos(19_489_809_812)), "19s 489ms");
        assert_eq!(duration(Duration::from_secs(350)), "5m 50s");
        assert_eq!(bound(None), "none");
        assert_eq!(bound(Some(Duration::from_millis(2500))), "2s 500ms");
    }
}
