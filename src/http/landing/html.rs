//! Text as the page writes it: HTML-escaped, and times in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DD HH:MM:SS` in UTC; `-` for a clock before 1970 or past 9999.
pub(super) fn utc(at: SystemTime) -> String {
    let last = UNIX_EPOCH + Duration::from_secs(253_402_300_799); // 9999-12-31 23:59:59
    if at < UNIX_EPOCH || at > last {
        return "-".to_string();
    }
    // `2024-05-01T12:00:00Z`
    let rfc3339 = humantime::format_rfc3339_seconds(at).to_string();
    rfc3339.trim_end_matches('Z').replacen('T', " ", 1)
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
