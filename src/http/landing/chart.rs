//! The survival chart: inline SVG of each recent probe's idle time, survived or died, with the
//! bracket shaded and the app's lifetime and the recommendation marked.

use std::fmt::Write;
use std::time::Duration;

use super::html::escape;
use crate::format::human;
use crate::probe::status::TargetStatus;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 190.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const SURVIVED_Y: f64 = 50.0;
const DIED_Y: f64 = 110.0;
const AXIS_Y: f64 = 140.0;

/// Idle time (x) against survived (upper row) or died (lower row) for the recent probes; the
/// bracket shaded; the app's lifetime and the recommendation as vertical lines.
pub(super) fn survival_chart(page: &mut String, s: &TargetStatus) {
    let probes_max = s.recent_probes.iter().map(|p| p.idle).max();
    let marks = [
        s.bracket.lower,
        s.bracket.upper,
        s.app_max_idle_lifetime,
        probes_max,
    ];
    let Some(span) = marks.iter().flatten().max().copied() else {
        page.push_str("<p>No probe has finished yet.</p>\n");
        return;
    };
    let max = nice_ceiling(span.mul_f64(1.15));
    let x = |d: Duration| x_of(d, max);
    let _ = write!(
        page,
        "<svg class=\"survival\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"survival of probe connections by idle time for {}\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"12\">",
        escape(&s.name)
    );
    if let (Some(lower), upper) = (s.bracket.lower, s.bracket.upper) {
        let end = upper.map_or(WIDTH - RIGHT, x);
        let _ = write!(
            page,
            "<rect class=\"bracket\" x=\"{:.1}\" y=\"25\" width=\"{:.1}\" height=\"105\" fill=\"#f5c542\" fill-opacity=\"0.35\"><title>threshold bracket</title></rect>",
            x(lower),
            (end - x(lower)).max(1.0)
        );
    }
    let _ = write!(
        page,
        "<text x=\"{LEFT}\" y=\"16\" fill=\"#555\">bracket [{}, {}]</text>",
        s.bracket.lower.map_or("–".into(), human),
        s.bracket.upper.map_or("∞".into(), human)
    );
    axes(page, max);
    probes(page, s, max);
    markers(page, s, max);
    page.push_str("</svg>\n");
}

/// Where idle time `d` lies on a chart whose axis ends at `max`.
fn x_of(d: Duration, max: Duration) -> f64 {
    LEFT + (WIDTH - LEFT - RIGHT) * (d.as_secs_f64() / max.as_secs_f64())
}

/// The row labels and the idle-time axis, ticked in fifths of `max`.
fn axes(page: &mut String, max: Duration) {
    let x = |d: Duration| x_of(d, max);
    let _ = write!(
        page,
        "<text x=\"4\" y=\"{}\">survived</text><text x=\"4\" y=\"{}\">died</text>",
        SURVIVED_Y + 4.0,
        DIED_Y + 4.0
    );
    let _ = write!(
        page,
        "<line x1=\"{LEFT}\" y1=\"{AXIS_Y}\" x2=\"{}\" y2=\"{AXIS_Y}\" stroke=\"#444\"/>",
        WIDTH - RIGHT
    );
    for i in 0..=5 {
        let tick = max.mul_f64(f64::from(i) / 5.0);
        let tx = x(tick);
        let _ = write!(
            page,
            "<line x1=\"{tx:.1}\" y1=\"{AXIS_Y}\" x2=\"{tx:.1}\" y2=\"{}\" stroke=\"#444\"/><text x=\"{tx:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            AXIS_Y + 5.0,
            AXIS_Y + 18.0,
            human(tick)
        );
    }
    let _ = write!(
        page,
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">idle time before use</text>",
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        AXIS_Y + 36.0
    );
}

/// One mark per recent probe: a dot in the upper row if it survived, a cross below if it died.
fn probes(page: &mut String, s: &TargetStatus, max: Duration) {
    for probe in &s.recent_probes {
        let px = x_of(probe.idle, max);
        if probe.survived {
            let _ = write!(
                page,
                "<circle class=\"survived\" cx=\"{px:.1}\" cy=\"{SURVIVED_Y}\" r=\"4\" fill=\"#2a8a2a\" fill-opacity=\"0.7\"><title>survived {}</title></circle>",
                human(probe.idle)
            );
        } else {
            let _ = write!(
                page,
                "<path class=\"died\" d=\"M{:.1} {:.1}l8 8m0 -8l-8 8\" stroke=\"#c00\" stroke-width=\"2\"><title>died {}</title></path>",
                px - 4.0,
                DIED_Y - 4.0,
                human(probe.idle)
            );
        }
    }
}

/// The app's lifetime and the recommendation (or the stored one), as dashed vertical lines.
fn markers(page: &mut String, s: &TargetStatus, max: Duration) {
    let mut marker = |d: Duration, color: &str, label: &str, y: f64| {
        let mx = x_of(d, max);
        let _ = write!(
            page,
            "<line x1=\"{mx:.1}\" y1=\"25\" x2=\"{mx:.1}\" y2=\"{AXIS_Y}\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"5 3\"/><text x=\"{:.1}\" y=\"{y}\" fill=\"{color}\">{label} {}</text>",
            mx + 3.0,
            human(d)
        );
    };
    if let Some(app) = s.app_max_idle_lifetime {
        marker(app, "#1f5fbf", "your pool", 36.0);
    }
    if let Some(recommended) = s.recommendation.and_then(|r| r.max_idle_lifetime) {
        if s.recommendation_unconfirmed {
            marker(recommended, "#888888", "stored", 128.0);
        } else {
            marker(recommended, "#2a8a2a", "recommended", 128.0);
        }
    }
}

/// A round axis maximum at or above `d` (1, 2 or 5 times a power of ten seconds).
pub(super) fn nice_ceiling(d: Duration) -> Duration {
    let secs = d.as_secs_f64().max(1.0);
    let magnitude = 10f64.powf(secs.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= secs)
        .unwrap_or(10.0 * magnitude);
    Duration::from_secs_f64(step)
}
