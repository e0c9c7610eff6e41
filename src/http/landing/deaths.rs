//! The page's account of how connections die on a target's path: the causes with what each
//! means, the ghost sessions, the server settings that matter, and the recent events.

use std::fmt::Write;

use super::html::{escape, utc};
use crate::format::human;
use crate::model::DeathCause;
use crate::probe::status::TargetStatus;

pub(super) fn deaths(page: &mut String, s: &TargetStatus) {
    page.push_str("<h3>How connections die here</h3>\n");
    if s.deaths.is_empty() {
        page.push_str("<p>No connection has died yet.</p>\n");
    } else {
        page.push_str("<ul>");
        for (cause, count) in &s.deaths {
            let _ = write!(
                page,
                "<li><code>{}</code> × {count}: {}</li>",
                escape(&cause.to_string()),
                explain(cause)
            );
        }
        page.push_str("</ul>\n");
    }
    let _ = writeln!(
        page,
        "<p>Ghost sessions (dead for us, still listed by the server): {} seen, {} terminated, {} alive.</p>",
        s.ghosts_seen, s.ghosts_reaped, s.ghosts_alive
    );
    if !s.server_settings.is_empty() {
        let settings: Vec<String> = s
            .server_settings
            .iter()
            .map(|(k, v)| format!("<code>{}={}</code>", escape(k), escape(v)))
            .collect();
        let _ = writeln!(page, "<p>Server settings: {}</p>", settings.join(" "));
    }
}

fn explain(cause: &DeathCause) -> &'static str {
    match cause {
        DeathCause::Timeout => "silent drop: no answer, the flow was forgotten without a packet",
        DeathCause::Reset => "the path answered a forgotten flow with RST",
        DeathCause::Eof => "something closed the flow with a FIN (quaint/Prisma: kind: Closed)",
        DeathCause::ServerTerminated { .. } => {
            "PostgreSQL ended the session itself (57P05 = idle_session_timeout)"
        }
        DeathCause::Error => "another error; see the logs",
    }
}

pub(super) fn events(page: &mut String, s: &TargetStatus) {
    page.push_str("<h3>Recent closed connections</h3>\n");
    if s.recent_events.is_empty() {
        page.push_str("<p>No closed connections yet.</p>\n");
        return;
    }
    page.push_str("<table><thead><tr><th>when (UTC)</th><th>role</th><th>kind</th><th>idle</th><th>detected</th><th>should have survived</th></tr></thead><tbody>\n");
    for e in &s.recent_events {
        let when = utc(e.at);
        let _ = writeln!(
            page,
            "<tr><td>{when}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.role.label(),
            escape(&e.cause.to_string()),
            human(e.idle),
            e.detected.label(),
            if e.unexpected {
                "<span class=\"bad\">yes</span>"
            } else {
                "no"
            },
        );
    }
    page.push_str("</tbody></table>\n");
}
