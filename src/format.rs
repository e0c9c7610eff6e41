//! Durations, in one place: how they are written ([`parse_duration`], the one parser for the
//! config, every flag and the state file, bounded by [`MAX_DURATION`]) and how they read: the
//! page, the reports and the recipes show [`human`] (`5m 42s`, `10.7s`); log lines show
//! [`duration`] (`19s 489ms`), precise to the millisecond. Below every module that reads or
//! prints a duration, so none of them names another for it.

use std::time::Duration;

/// The longest duration accepted anywhere (config, `discover` and `simulate` flags): 30 days.
/// Longer than any idle timeout a box keeps (Linux conntrack's default for an established flow
/// is 5 days), and short enough that adding it, or a few multiples of it, to any clock reading
/// and converting it to milliseconds or seconds can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Parses a humantime duration (`500ms`, `90s`, `1h30m`) above zero and at most
/// [`MAX_DURATION`]. The message says what was wrong, not where (callers add that).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration like 90s, 5m or 1h30m ({e})"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".to_string());
    }
    if duration > MAX_DURATION {
        return Err(format!(
            "`{text}` is longer than {}, the longest duration accepted",
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(duration)
}

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
