//! The landing page: every target with its bracket, state and recommendation, readable without
//! JavaScript and with no external assets. Everything shown comes from the status board, which
//! never holds a secret (DSNs there are redacted); all text is HTML-escaped.

use std::fmt::Write;
use std::time::Duration;

use crate::target::status::{StatusBoard, TargetStatus};

pub fn render(board: &StatusBoard) -> String {
    let board = board.read().unwrap_or_else(|e| e.into_inner());
    let mut page = String::from(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>idle_drop_exporter</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}",
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}",
        ".bad{color:#b00}.ok{color:#070}code{background:#f4f4f4;padding:0 .2em}</style>",
        "</head><body>\n<h1>idle_drop_exporter</h1>\n",
        "<p>Measures after how long the network path to each PostgreSQL target drops idle ",
        "connections. <a href=\"/metrics\">Metrics</a> · <a href=\"/-/healthy\">Health</a> · ",
        "<a href=\"/-/ready\">Ready</a></p>\n"
    ));
    page.push_str("<table><thead><tr><th>target</th><th>server</th><th>state</th><th>survived up to (lower)</th><th>killed from (upper)</th><th>recommended pool max idle lifetime</th><th>socket timeout</th><th>app lifetime</th><th>ghosts</th></tr></thead><tbody>\n");
    for status in board.values() {
        row(&mut page, status);
    }
    page.push_str("</tbody></table>\n");
    for status in board.values() {
        events(&mut page, status);
    }
    page.push_str("</body></html>\n");
    page
}

fn row(page: &mut String, s: &TargetStatus) {
    let state_class = if s.up { "ok" } else { "bad" };
    let state = if s.up { s.state } else { "unreachable" };
    let recommended = s
        .recommendation
        .and_then(|r| r.max_idle_lifetime)
        .map_or("–".to_string(), human);
    let socket = s
        .recommendation
        .map_or("–".to_string(), |r| human(r.socket_timeout));
    let app = match (s.app_max_idle_lifetime, s.bracket.lower) {
        (Some(app), Some(lower)) if app >= lower => {
            format!("<span class=\"bad\">{} (unsafe)</span>", human(app))
        }
        (Some(app), _) => human(app),
        (None, _) => "–".to_string(),
    };
    let _ = writeln!(
        page,
        "<tr><td>{}</td><td><code>{}</code></td><td class=\"{state_class}\">{}</td><td>{}</td><td>{}</td><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td></tr>",
        escape(&s.name),
        escape(&s.display_dsn),
        escape(state),
        s.bracket.lower.map_or("–".into(), human),
        s.bracket.upper.map_or("∞".into(), human),
        recommended,
        socket,
        app,
        s.ghosts_alive,
    );
}

fn events(page: &mut String, s: &TargetStatus) {
    let _ = writeln!(page, "<h2>{}</h2>", escape(&s.name));
    if let Some(error) = &s.last_error {
        let _ = writeln!(page, "<p class=\"bad\">last error: {}</p>", escape(error));
    }
    if s.recent_events.is_empty() {
        page.push_str("<p>No closed connections yet.</p>\n");
        return;
    }
    page.push_str("<table><thead><tr><th>when (UTC)</th><th>role</th><th>kind</th><th>idle</th><th>detected</th><th>should have survived</th></tr></thead><tbody>\n");
    for e in &s.recent_events {
        let when = chrono::DateTime::<chrono::Utc>::from(e.at).format("%Y-%m-%d %H:%M:%S");
        let _ = writeln!(
            page,
            "<tr><td>{when}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.role,
            escape(&e.kind),
            human(e.idle),
            e.detected,
            if e.unexpected {
                "<span class=\"bad\">yes</span>"
            } else {
                "no"
            },
        );
    }
    page.push_str("</tbody></table>\n");
}

/// Durations as people read them: `5m 42s`, `10.7s`, `4.8s`.
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(100) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_millis(4800)), "4.8s");
        assert_eq!(human(Duration::from_secs(342)), "5m 42s");
        assert_eq!(human(Duration::from_millis(10_650)), "10.7s");
    }
}
