//! The landing page: a status page per target with its bracket and state, a survival chart
//! (inline SVG: each probe's idle time, survived or died, the bracket shaded, the app's lifetime
//! and the recommendation marked), how connections die on this path, recent closed-connection
//! events, and the recommended pool settings ready to copy.
//!
//! No external assets, readable without JavaScript: the only script adds "Copy" buttons to the
//! settings, which are plain text either way. Everything shown comes from the status board,
//! which never holds a secret (DSNs there are redacted); all text is HTML-escaped.

mod labels;

use std::fmt::Write;
use std::sync::{Arc, RwLock};

mod advice;
mod chart;
mod deaths;
mod html;

pub use html::escape;

use advice::STORED_CONFIRMING;

use crate::format::human;
use crate::model::TargetState;
use crate::probe::status::{StatusBoard, TargetStatus};

const STYLE: &str = concat!(
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#222}",
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}",
    "th{background:#f4f4f4}.bad{color:#b00;font-weight:bold}.ok{color:#070}.muted{color:#666}",
    "code,pre{background:#f4f4f4;padding:0 .2em}pre{padding:.4em .6em;margin:.2em 0;white-space:pre-wrap}",
    "section{border-top:2px solid #ddd;margin-top:1.5em}svg{max-width:100%;height:auto}",
    ".advice{display:grid;grid-template-columns:16em 1fr;gap:.2em .8em;align-items:start}",
    "button{font:inherit;font-size:.85em;cursor:pointer}"
);

/// Adds a Copy button after each copyable block; without JavaScript the text stays selectable.
const COPY_SCRIPT: &str = concat!(
    "document.querySelectorAll('pre.copy').forEach(function(pre){",
    "var b=document.createElement('button');b.type='button';b.textContent='Copy';",
    "b.className='copy-button';b.onclick=function(){",
    "var done=function(){b.textContent='Copied'};",
    "if(navigator.clipboard){navigator.clipboard.writeText(pre.textContent).then(done)}",
    "else{var r=document.createRange();r.selectNodeContents(pre);var s=getSelection();",
    "s.removeAllRanges();s.addRange(r);document.execCommand('copy');done()}};",
    "pre.parentNode.insertBefore(b,pre.nextSibling)});"
);

/// One target file as the page shows it; the daemon rewrites the list at every refresh.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetFileRow {
    pub file: String,
    /// How many of its targets are in force (its last good ones while refused).
    pub targets: usize,
    /// Why its current content is refused (`FILE:LINE: FIELD: reason`, never a secret).
    pub refusal: Option<String>,
}

/// The target files the globs match, in path order, for the page.
pub type TargetFileBoard = Arc<RwLock<Vec<TargetFileRow>>>;

/// The page; `telemetry_path`: where the metrics link points (`--web.telemetry-path`).
pub fn render(board: &StatusBoard, files: &TargetFileBoard, telemetry_path: &str) -> String {
    let board = board.read().unwrap_or_else(|e| e.into_inner());
    let mut page = format!(
        concat!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
            "<title>idle_drop_exporter</title><style>{}</style></head><body>\n",
            "<h1>idle_drop_exporter</h1>\n",
            "<p>Measures after how long the network path to each PostgreSQL target drops idle ",
            "connections. <a href=\"{}\">Metrics</a> · <a href=\"/-/healthy\">Health</a> · ",
            "<a href=\"/-/ready\">Ready</a></p>\n",
        ),
        STYLE,
        escape(telemetry_path)
    );
    page.push_str("<table><thead><tr><th>target</th><th>server</th><th>state</th><th>survived up to (lower)</th><th>killed from (upper)</th><th>recommended pool max idle lifetime</th><th>socket timeout</th><th>app lifetime</th><th>ghosts</th></tr></thead><tbody>\n");
    for status in board.values() {
        row(&mut page, status);
    }
    page.push_str("</tbody></table>\n");
    target_files(&mut page, &files.read().unwrap_or_else(|e| e.into_inner()));
    page.push_str("<p class=\"muted\">The true threshold lies between the lower and the upper bound. No connection of your pool may sit idle as long as the recommendation; how to get there differs per library (an idle timeout often spares the pool's minimum): take your library's line under <i>Settings for your pool</i>, each marked with whether it was proven.</p>\n");
    for status in board.values() {
        section(&mut page, status);
    }
    let _ = write!(page, "<script>{COPY_SCRIPT}</script>\n</body></html>\n");
    page
}

/// Which target files are in force, and why a refused one is: the first place to look when a
/// generated target does not show up.
fn target_files(page: &mut String, files: &[TargetFileRow]) {
    if files.is_empty() {
        return;
    }
    page.push_str("<h2>Target files</h2>\n<table><thead><tr><th>file</th><th>targets in force</th><th>status</th></tr></thead><tbody>\n");
    for file in files {
        let status = match &file.refusal {
            None => "<span class=\"ok\">loaded</span>".to_string(),
            Some(why) => format!(
                "<span class=\"bad\">refused</span>: {} <small>(its last good targets, if any, keep running)</small>",
                escape(why)
            ),
        };
        let _ = writeln!(
            page,
            "<tr><td><code>{}</code></td><td>{}</td><td>{status}</td></tr>",
            escape(&file.file),
            file.targets
        );
    }
    page.push_str("</tbody></table>\n");
}

fn row(page: &mut String, s: &TargetStatus) {
    let state_class = if s.up { "ok" } else { "bad" };
    let state = if s.up {
        s.state
    } else {
        TargetState::Unreachable
    }
    .as_str();
    let recommended = match s.recommendation.and_then(|r| r.max_idle_lifetime) {
        None => "–".to_string(),
        // A stored measurement is not advice until the sentinels confirm it still holds.
        Some(stored) if s.recommendation_unconfirmed => format!(
            "<span class=\"muted\">{} ({STORED_CONFIRMING})</span>",
            human(stored)
        ),
        Some(lifetime) => format!("<b>{}</b>", human(lifetime)),
    };
    let socket = s
        .recommendation
        .map_or("–".to_string(), |r| human(r.socket_timeout));
    // Where the value came from matters when it is not in the config: the URL's, or a
    // library default the application never wrote down.
    let source = s.app_lifetime_source.map_or(String::new(), |src| {
        format!(" <small>({})</small>", src.describe())
    });
    let app = match (s.app_max_idle_lifetime, s.bracket.lower) {
        (Some(app), Some(lower)) if app >= lower => {
            format!("<span class=\"bad\">{} (unsafe)</span>{source}", human(app))
        }
        (Some(app), _) => format!("{}{source}", human(app)),
        (None, _) => "–".to_string(),
    };
    let _ = writeln!(
        page,
        "<tr><td><a href=\"#target-{id}\">{name}</a></td><td><code>{}</code></td><td class=\"{state_class}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        escape(&s.display_dsn),
        escape(state),
        s.bracket.lower.map_or("–".into(), human),
        s.bracket.upper.map_or("∞".into(), human),
        recommended,
        socket,
        app,
        s.ghosts_alive,
        id = escape(&s.name),
        name = escape(&s.name),
    );
}

fn section(page: &mut String, s: &TargetStatus) {
    let _ = writeln!(
        page,
        "<section id=\"target-{0}\"><h2>{0}</h2>",
        escape(&s.name)
    );
    labels::render(page, &s.labels);
    if let Some(error) = &s.last_error {
        let _ = writeln!(page, "<p class=\"bad\">last error: {}</p>", escape(error));
    }
    if let Some(measured) = s.resumed_from {
        let confirmed = if s.state == TargetState::Confirming {
            "the sentinels are confirming it"
        } else {
            "the sentinels confirmed it or measured again"
        };
        let _ = writeln!(
            page,
            "<p>Resumed from the measurement stored at {}; {confirmed}.</p>",
            humantime::format_rfc3339_seconds(measured)
        );
    }
    page.push_str("<h3>Survival by idle time</h3>\n");
    chart::survival_chart(page, s);
    deaths::deaths(page, s);
    deaths::events(page, s);
    advice::settings(page, s);
    page.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::chart::nice_ceiling;
    use super::html::utc;
    use super::*;
    use crate::discovery::Bracket;
    use crate::model::DeathCause;
    use crate::probe::status::ProbeRecord;
    use crate::recommend::Recommendation;
    use std::collections::BTreeMap;
    use std::sync::{Arc, RwLock};
    use std::time::{Duration, UNIX_EPOCH};

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

    #[test]
    fn event_times_are_utc_to_the_second() {
        let at = UNIX_EPOCH + Duration::from_millis(1_714_564_800_900);
        assert_eq!(utc(at), "2024-05-01 12:00:00");
        assert_eq!(utc(UNIX_EPOCH - Duration::from_secs(1)), "-");
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(
            nice_ceiling(Duration::from_secs(7)),
            Duration::from_secs(10)
        );
        assert_eq!(
            nice_ceiling(Duration::from_secs(23)),
            Duration::from_secs(50)
        );
        assert_eq!(
            nice_ceiling(Duration::from_secs(120)),
            Duration::from_secs(200)
        );
    }

    fn sample() -> TargetStatus {
        let yaml = "targets:\n  - name: orders\n    dsn: postgres://probe@10.0.0.5/app\n    app_max_idle_lifetime: 30s\n";
        let config = crate::config::parse(std::path::Path::new("t.yaml"), yaml).unwrap();
        let mut s = TargetStatus::new(&config.targets[0]);
        s.up = true;
        s.state = TargetState::Watching;
        s.bracket = Bracket {
            lower: Some(Duration::from_secs(19)),
            upper: Some(Duration::from_secs(20)),
        };
        s.recommendation = Some(Recommendation {
            max_idle_lifetime: Some(Duration::from_secs(15)),
            socket_timeout: Duration::from_secs(10),
        });
        s.recent_probes.push_front(ProbeRecord {
            idle: Duration::from_secs(12),
            survived: true,
        });
        s.recent_probes.push_front(ProbeRecord {
            idle: Duration::from_secs(25),
            survived: false,
        });
        s.deaths = BTreeMap::from([(DeathCause::Timeout, 3)]);
        s.last_error = Some("server said <b>no</b>".to_string());
        s
    }

    #[test]
    fn the_app_lifetime_says_where_it_came_from() {
        let board: StatusBoard = Arc::new(RwLock::new(BTreeMap::new()));
        let status = sample();
        board.write().unwrap().insert(status.name.clone(), status);
        assert!(render(&board, &Default::default(), "/metrics")
            .contains("(unsafe)</span> <small>(from the config)</small>"));

        let yaml = "targets:\n  - name: prisma\n    dsn: postgres://probe@10.0.0.5/app?connection_limit=5\n";
        let config = crate::config::parse(std::path::Path::new("t.yaml"), yaml).unwrap();
        let status = TargetStatus::new(&config.targets[0]);
        board.write().unwrap().insert(status.name.clone(), status);
        assert!(
            render(&board, &Default::default(), "/metrics")
                .contains("<td>5m <small>(quaint default, URL has none)</small></td>"),
            "{}",
            render(&board, &Default::default(), "/metrics")
        );
    }

    #[test]
    fn the_page_renders_with_the_longest_durations_accepted() {
        let board: StatusBoard = Arc::new(RwLock::new(BTreeMap::new()));
        let mut status = sample();
        let max = crate::format::MAX_DURATION;
        status.app_max_idle_lifetime = Some(max);
        status.bracket = Bracket {
            lower: Some(max),
            upper: None,
        };
        board.write().unwrap().insert(status.name.clone(), status);
        assert!(render(&board, &Default::default(), "/metrics").contains("<svg class=\"survival\""));
    }

    #[test]
    fn a_resumed_measurement_says_so_and_gives_recipes_only_once_confirmed() {
        let board: StatusBoard = Arc::new(RwLock::new(BTreeMap::new()));
        let mut status = sample();
        status.state = TargetState::Confirming;
        status.recommendation_unconfirmed = true;
        status.deaths.clear();
        status.stored_drop = Some(DeathCause::Timeout);
        status.resumed_from = Some(std::time::UNIX_EPOCH + Duration::from_secs(1_795_000_000));
        board
            .write()
            .unwrap()
            .insert(status.name.clone(), status.clone());
        let page = render(&board, &Default::default(), "/metrics");
        assert!(
            page.contains("Resumed from the measurement stored at 2026-11-18T11:06:40Z")
                && page.contains("the sentinels are confirming it"),
            "{page}"
        );
        assert!(
            page.contains("15.0s (stored, confirming)")
                && page.contains("None yet (stored, confirming)")
                && !page.contains("<b>15.0s</b>")
                && !page.contains("max_idle_connection_lifetime=15"),
            "a stored lifetime is not advice before it is confirmed: {page}"
        );
        status.state = TargetState::Watching;
        status.recommendation_unconfirmed = false;
        board.write().unwrap().insert(status.name.clone(), status);
        let page = render(&board, &Default::default(), "/metrics");
        assert!(
            page.contains("<b>15.0s</b>")
                && page.contains("max_idle_connection_lifetime=15&amp;socket_timeout=10"),
            "recipes from the stored drop kind once confirmed: {page}"
        );
    }

    #[test]
    fn the_page_shows_chart_deaths_and_copyable_settings_escaped() {
        let board: StatusBoard = Arc::new(RwLock::new(BTreeMap::new()));
        let status = sample();
        board.write().unwrap().insert(status.name.clone(), status);
        let page = render(&board, &Default::default(), "/metrics");
        assert!(page.contains("<svg class=\"survival\""));
        assert_eq!(page.matches("<circle class=\"survived\"").count(), 1);
        assert_eq!(page.matches("<path class=\"died\"").count(), 1);
        assert!(page.contains("<rect class=\"bracket\""));
        assert!(
            page.contains("your pool 30.0s"),
            "the app's lifetime is marked"
        );
        assert!(page.contains("<span class=\"bad\">30.0s (unsafe)</span>"));
        assert!(page.contains("max_idle_connection_lifetime=15&amp;socket_timeout=10"));
        assert!(page.contains("<code>timeout</code> × 3"));
        assert!(page.contains("server said &lt;b&gt;no&lt;/b&gt;") && !page.contains("<b>no</b>"));
        assert!(
            !page.contains("src=\"http") && !page.contains("href=\"http"),
            "no external assets"
        );
    }

    #[test]
    fn target_files_show_which_is_refused_and_why_escaped() {
        let files: TargetFileBoard = Default::default();
        let board: StatusBoard = Default::default();
        assert!(!render(&board, &files, "/metrics").contains("Target files"));
        *files.write().unwrap() = vec![
            TargetFileRow {
                file: "targets/a.yaml".into(),
                targets: 2,
                refusal: None,
            },
            TargetFileRow {
                file: "targets/<b>.json".into(),
                targets: 1,
                refusal: Some("targets/<b>.json:3: [0].name: `<x>` is taken".into()),
            },
        ];
        let page = render(&board, &files, "/metrics");
        assert!(page.contains(
            "<tr><td><code>targets/a.yaml</code></td><td>2</td><td><span class=\"ok\">loaded</span></td></tr>"
        ));
        assert!(page.contains("<code>targets/&lt;b&gt;.json</code></td><td>1</td><td><span class=\"bad\">refused</span>: targets/&lt;b&gt;.json:3: [0].name: `&lt;x&gt;` is taken"));
        assert!(!page.contains("<b>"));
    }
}
