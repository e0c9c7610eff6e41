//! What `discover` tells the person in trouble: the bracket, how the drop looks on this path,
//! whether the server keeps ghost sessions, and settings to paste for each pool. Built from the
//! status snapshot the engine keeps (which never holds a secret), printed as text or JSON.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;

use crate::config::TargetConfig;
use crate::format::human;
use crate::model::DeathCause;
use crate::probe::keepalive_check::CheckTiming;
use crate::probe::status::{dominant_death, TargetStatus};
use crate::recipes::{self, BoxCounts, DropKind, Recipe};

/// How the measurement ended; decides the exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The bracket meets the precision.
    Measured,
    /// A connection survived the range's max: nothing on this path drops idle flows that soon.
    NoDropUpToMax,
    /// A connection died at or below the range's min.
    BelowRange,
    /// The time limit passed before the bracket met the precision.
    TimeLimit,
    /// The target could not be reached (or stayed unreachable).
    Unreachable,
    /// Ctrl-C or SIGTERM.
    Interrupted,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Measured | Outcome::NoDropUpToMax | Outcome::BelowRange => {
                super::EXIT_MEASURED
            }
            Outcome::TimeLimit | Outcome::Unreachable => super::EXIT_PROBE_FAILURE,
            Outcome::Interrupted => super::EXIT_INTERRUPTED,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Outcome::Measured => "measured",
            Outcome::NoDropUpToMax => "no drop up to the range's max",
            Outcome::BelowRange => "connections die below the range's min",
            Outcome::TimeLimit => "time limit reached before the precision (bracket so far)",
            Outcome::Unreachable => "the target could not be reached",
            Outcome::Interrupted => "interrupted (bracket so far)",
        }
    }
}

/// The machine-readable report (`--json`); the text form renders the same fields.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The DSN with any password removed.
    pub target: String,
    pub outcome: Outcome,
    pub elapsed_seconds: f64,
    /// How long the discovery took to the bracket (or to its verdict outside the range).
    pub discovery_seconds: Option<f64>,
    pub budget: usize,
    /// The most sessions that existed on the server at once (at most the budget).
    pub sessions_peak: usize,
    /// Longest idle that survived; `None` if none did.
    pub lower_bound_seconds: Option<f64>,
    /// Shortest idle that killed a connection; `None` if none died (+Inf).
    pub upper_bound_seconds: Option<f64>,
    pub precision_target: f64,
    /// `(upper - lower) / (upper + lower)`, when both are known.
    pub precision_reached: Option<f64>,
    pub drop: DropLook,
    pub ghosts: Ghosts,
    pub server_settings: BTreeMap<String, String>,
    pub app_max_idle_lifetime_seconds: Option<f64>,
    /// Whether the application's lifetime is below the lower bound; `None` if unknown.
    pub app_lifetime_safe: Option<bool>,
    /// The application's own quaint/Prisma URL (`--dsn-env`, `--dsn-file`, or a `--dsn` with
    /// quaint's keys) judged against the measurement; `None` for any other DSN.
    pub url_pool: Option<UrlPool>,
    pub recommendation: Option<Recommended>,
    /// Whether TCP keepalives keep an idle flow alive on this path (the keepalive check).
    pub box_counts: BoxCounts,
    /// When the keepalive check ran: `alongside_discovery` (in a slot of its own from the
    /// start) or `after_bracket` (the budget had no slot to spare); absent without the check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_check: Option<&'static str>,
    /// Copy-paste settings per library for this path, each with whether it was proven.
    pub recipes: Vec<Recipe>,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DropLook {
    /// `silent`, `reset`, `fin` or `server_terminated`; `None` if nothing died.
    pub kind: Option<DropKind>,
    /// The SQLSTATE the server sent when it ended the sessions itself.
    pub sqlstate: Option<String>,
    pub summary: String,
    /// Every connection death by cause.
    pub deaths: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Ghosts {
    /// Dead probe sessions the server still listed.
    pub seen: u64,
    /// Of those, terminated by the probe.
    pub reaped: u64,
    /// Dead probe sessions whose check reached an answer.
    pub checked: u64,
    /// `None` when no connection died in a way that could leave one, or when no dead session
    /// could be checked (the server was unreachable, or the run ended first).
    pub server_keeps_ghosts: Option<bool>,
    /// Client-side deaths whose sessions might have stayed on the server.
    pub could_leave_ghosts: u64,
}

/// The verdict on the idle lifetime an application's quaint URL runs its pool with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UrlPool {
    /// `max_idle_connection_lifetime` as the URL writes it (whole seconds; 0 turns retirement
    /// off); `None` when the URL does not set it.
    pub max_idle_connection_lifetime_seconds: Option<u64>,
    /// `url`, or `library_default` when the URL has none and quaint's default applies.
    pub source: &'static str,
    /// The lifetime the pool runs with; `None` when it never retires idle connections.
    pub effective_seconds: Option<u64>,
    /// Below the measured lower bound; `None` when the measurement cannot tell.
    pub safe: Option<bool>,
    /// The recommended lifetime in whole seconds, when the current one is unsafe.
    pub set_at_most_seconds: Option<u64>,
    /// The verdict as the text report prints it.
    pub verdict: String,
}

/// Judges a quaint URL's `max_idle_connection_lifetime` (`written`) against the bracket; safe
/// means below the lower bound, the guard's own rule.
pub fn url_pool_verdict(
    written: Option<u64>,
    lower: Option<Duration>,
    upper: Option<Duration>,
    recommended: Option<Duration>,
) -> UrlPool {
    let default = crate::recipes::pools::QUAINT_DEFAULT_MAX_IDLE_LIFETIME.as_secs();
    let effective = match written {
        Some(0) => None,
        Some(secs) => Some(secs),
        None => Some(default),
    };
    let what = match written {
        Some(0) => "your URL's max_idle_connection_lifetime=0 never retires idle connections,".to_string(),
        Some(secs) => format!("your URL's max_idle_connection_lifetime {secs} s"),
        None => format!(
            "your URL's max_idle_connection_lifetime is absent: quaint's default {default} s applies, and"
        ),
    };
    let at_most = recommended.map(|r| r.as_secs()).filter(|s| *s > 0);
    let fix = match at_most {
        Some(s) => format!("set it to at most {s} s"),
        None => "no whole number of seconds is known to be safe".to_string(),
    };
    let (safe, verdict) = judge_url_lifetime(&what, &fix, written, effective, lower, upper);
    UrlPool {
        max_idle_connection_lifetime_seconds: written,
        source: if written.is_some() {
            "url"
        } else {
            "library_default"
        },
        effective_seconds: effective,
        safe,
        set_at_most_seconds: if safe == Some(false) { at_most } else { None },
        verdict,
    }
}

/// Whether the URL's effective lifetime (`effective`, `None`: never retired) is safe on a path
/// whose bracket is `lower`..`upper`, and the sentence that says so.
fn judge_url_lifetime(
    what: &str,
    fix: &str,
    written: Option<u64>,
    effective: Option<u64>,
    lower: Option<Duration>,
    upper: Option<Duration>,
) -> (Option<bool>, String) {
    match (effective, lower) {
        (_, None) => (
            None,
            format!("{what} cannot be judged: no idle connection survived a probe"),
        ),
        (None, Some(lower)) => match upper {
            Some(upper) => (
                Some(false),
                format!(
                    "{what} and this path drops idle connections between {} and {}: unsafe ({fix})",
                    seconds(lower),
                    seconds(upper)
                ),
            ),
            None => (
                None,
                format!(
                    "{what} and nothing dropped up to {}: not known beyond that",
                    seconds(lower)
                ),
            ),
        },
        (Some(app), Some(lower)) => {
            let app_d = Duration::from_secs(app);
            let verb = if written.is_none() { "it is" } else { "is" };
            if app_d < lower {
                (
                    Some(true),
                    format!(
                        "{what} {verb} below the measured threshold's lower bound {}: safe",
                        seconds(lower)
                    ),
                )
            } else {
                let above = if app_d == lower { "at" } else { "above" };
                (
                    Some(false),
                    format!(
                        "{what} {verb} {above} the measured threshold's lower bound {}: unsafe ({fix})",
                        seconds(lower)
                    ),
                )
            }
        }
    }
}

/// `240 s`, or `240.5 s`: whole seconds as quaint writes them, a fraction only when there is one.
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Recommended {
    pub max_idle_lifetime_seconds: f64,
    pub socket_timeout_seconds: f64,
}

impl Ghosts {
    /// What the run learnt about dead probe sessions the server kept.
    fn of(status: &TargetStatus) -> Ghosts {
        let client_side_deaths = status
            .deaths
            .iter()
            .filter(|(cause, _)| {
                matches!(
                    DropKind::of_death(cause),
                    Some(DropKind::Silent | DropKind::Reset | DropKind::Fin)
                )
            })
            .map(|(_, n)| n)
            .sum::<u64>();
        // "No" only from a check that ran: a run cut short by an outage asked nobody.
        let server_keeps_ghosts = if status.ghosts_seen > 0 {
            Some(true)
        } else if client_side_deaths > 0 && status.ghosts_checked > 0 {
            Some(false)
        } else {
            None
        };
        Ghosts {
            seen: status.ghosts_seen,
            reaped: status.ghosts_reaped,
            checked: status.ghosts_checked,
            server_keeps_ghosts,
            could_leave_ghosts: client_side_deaths,
        }
    }
}

impl Report {
    pub fn new(
        target: &TargetConfig,
        status: &TargetStatus,
        outcome: Outcome,
        elapsed: Duration,
    ) -> Report {
        let secs = |d: Duration| d.as_secs_f64();
        let bracket = status.bracket;
        let precision_reached = match (bracket.lower, bracket.upper) {
            (Some(l), Some(u)) if l < u => Some((secs(u) - secs(l)) / (secs(u) + secs(l))),
            _ => None,
        };
        let drop = drop_look(&status.deaths);
        let ghosts = Ghosts::of(status);
        let recommendation = status.recommendation.and_then(|r| {
            r.max_idle_lifetime.map(|lifetime| Recommended {
                max_idle_lifetime_seconds: secs(lifetime),
                socket_timeout_seconds: secs(r.socket_timeout),
            })
        });
        let recipes = status
            .measurement()
            .zip(status.knobs())
            .map(|(m, knobs)| recipes::for_path(&m, &knobs))
            .unwrap_or_default();
        Report {
            target: status.display_dsn.clone(),
            outcome,
            elapsed_seconds: secs(elapsed),
            discovery_seconds: status.discovery_took.map(secs),
            budget: target.max_connections,
            sessions_peak: status.sessions_peak,
            lower_bound_seconds: bracket.lower.map(secs),
            upper_bound_seconds: bracket.upper.map(secs),
            precision_target: target.precision,
            precision_reached,
            drop,
            ghosts,
            server_settings: status.server_settings.iter().cloned().collect(),
            app_max_idle_lifetime_seconds: target.app_max_idle_lifetime.map(secs),
            app_lifetime_safe: target
                .app_max_idle_lifetime
                .zip(bracket.lower)
                .map(|(app, lower)| app < lower),
            url_pool: target.app_params.is_quaint().then(|| {
                url_pool_verdict(
                    target.app_params.max_idle_connection_lifetime,
                    bracket.lower,
                    bracket.upper,
                    status.recommendation.and_then(|r| r.max_idle_lifetime),
                )
            }),
            recommendation,
            box_counts: BoxCounts::from_keepalive_rescue(status.keepalive_rescue),
            keepalive_check: crate::probe::keepalive_check_timing(target).map(CheckTiming::label),
            recipes,
            last_error: status.last_error.clone(),
        }
    }

    /// The report as people read it.
    pub fn render_text(&self) -> String {
        let d = |s: f64| human(Duration::from_secs_f64(s));
        let mut out = String::new();
        let _ = writeln!(out, "idle_drop_exporter discover: {}", self.target);
        let _ = writeln!(
            out,
            "{} after {} with {} connections at most (budget {})\n",
            self.outcome.describe(),
            d(self.elapsed_seconds),
            self.sessions_peak,
            self.budget
        );
        let bracket = match (self.lower_bound_seconds, self.upper_bound_seconds) {
            (Some(l), Some(u)) => format!("between {} (survived) and {} (died)", d(l), d(u)),
            (Some(l), None) => format!("above {} (nothing died)", d(l)),
            (None, Some(u)) => format!("below {} (nothing survived)", d(u)),
            (None, None) => "unknown (no probe finished)".to_string(),
        };
        let precision = self.precision_reached.map_or(String::new(), |p| {
            format!(
                "  (±{:.1}%, target ±{:.1}%)",
                p * 100.0,
                self.precision_target * 100.0
            )
        });
        let _ = writeln!(out, "  idle-drop threshold  {bracket}{precision}");
        let _ = writeln!(out, "  how the drop looks   {}", self.drop.summary);
        if !self.drop.deaths.is_empty() {
            let deaths: Vec<String> = self
                .drop
                .deaths
                .iter()
                .map(|(cause, n)| format!("{cause} x{n}"))
                .collect();
            let _ = writeln!(out, "                       ({})", deaths.join(", "));
        }
        let ghosts = self.ghosts_text();
        let _ = writeln!(out, "  ghost sessions       {ghosts}");
        let _ = writeln!(out, "  keepalives           {}", self.box_counts.describe());
        if self.keepalive_check == Some(CheckTiming::AfterBracket.label()) {
            let _ = writeln!(
                out,
                "                       (checked after the bracket, about 1.25 x the upper bound more: \
                 a budget of {} has no slot to spare beside the discovery)",
                self.budget
            );
        }
        if !self.server_settings.is_empty() {
            let settings: Vec<String> = self
                .server_settings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(out, "  server settings      {}", settings.join(" "));
        }
        if let (Some(app), Some(safe)) =
            (self.app_max_idle_lifetime_seconds, self.app_lifetime_safe)
        {
            let verdict = if safe {
                "safe"
            } else {
                "UNSAFE: connections die before the pool retires them"
            };
            let _ = writeln!(out, "  your pool's lifetime {}: {verdict}", d(app));
        }
        if let Some(url) = &self.url_pool {
            let _ = writeln!(out, "  your URL's pool      {}", url.verdict);
        }
        if let Some(error) = &self.last_error {
            let _ = writeln!(out, "  last error           {error}");
        }
        self.render_recommendation(&mut out);
        out
    }

    /// Whether the server keeps dead sessions, as the text report says it.
    fn ghosts_text(&self) -> String {
        match self.ghosts.server_keeps_ghosts {
            Some(true) => format!(
                "yes: the server still listed {} dead probe session(s) ({} terminated by the probe); \
                 your application's dead sessions stay too and count against max_connections",
                self.ghosts.seen, self.ghosts.reaped
            ),
            Some(false) => "no: the server let go of every dead probe session".to_string(),
            None if self.ghosts.could_leave_ghosts > 0 => format!(
                "could not check: the server was not asked about the {} dead probe session(s) \
                 (unreachable, or the run ended first)",
                self.ghosts.could_leave_ghosts
            ),
            None => "not known (no connection died on the client side)".to_string(),
        }
    }

    /// The recommendation and its recipes, or why there is none.
    fn render_recommendation(&self, out: &mut String) {
        let d = |s: f64| human(Duration::from_secs_f64(s));
        match &self.recommendation {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "\nRecommended: max idle lifetime {}, socket timeout {}.",
                    d(r.max_idle_lifetime_seconds),
                    d(r.socket_timeout_seconds)
                );
                out.push_str(&recipes::render_text(&self.recipes));
            }
            None => {
                let _ = writeln!(
                    out,
                    "\nNo recommendation: no idle connection survived, so no lifetime is known to be safe."
                );
            }
        }
    }
}

fn drop_look(deaths: &BTreeMap<DeathCause, u64>) -> DropLook {
    let dominant = dominant_death(deaths);
    let (kind, sqlstate, summary) = match dominant.and_then(|c| DropKind::of_death(c).zip(Some(c)))
    {
        None => (None, None, "nothing died".to_string()),
        Some((DropKind::Silent, _)) => (
            Some(DropKind::Silent),
            None,
            "silent: the flow was dropped without a packet; a query on such a connection hangs \
             until a socket timeout (tokio-postgres: `kind: Closed`, connection ended with \
             Io(TimedOut))"
                .to_string(),
        ),
        Some((DropKind::Reset, _)) => (
            Some(DropKind::Reset),
            None,
            "reset: the path answers a forgotten flow with RST; the next query fails at once \
             (`kind: Closed`, connection ended with Io(ConnectionReset))"
                .to_string(),
        ),
        Some((DropKind::Fin, _)) => (
            Some(DropKind::Fin),
            None,
            "closed: something in the path closed idle flows with a FIN; quaint/Prisma log \
             `Error { kind: Closed, cause: None }`"
                .to_string(),
        ),
        Some((DropKind::ServerTerminated, cause)) => {
            let sqlstate = match cause {
                DeathCause::ServerTerminated { sqlstate } => Some(sqlstate.clone()),
                _ => None,
            };
            let why = match sqlstate.as_deref() {
                Some("57P05") => " (idle_session_timeout)",
                Some("25P03") => " (idle_in_transaction_session_timeout)",
                Some("57P01") => " (terminated by an administrator or shutdown)",
                _ => "",
            };
            let summary = format!(
                "server-terminated: PostgreSQL ended idle sessions itself with SQLSTATE {}{why}",
                sqlstate.as_deref().unwrap_or("?")
            );
            (Some(DropKind::ServerTerminated), sqlstate, summary)
        }
    };
    DropLook {
        kind,
        sqlstate,
        summary,
        deaths: deaths
            .iter()
            .map(|(cause, n)| (cause.to_string(), *n))
            .collect(),
    }
}

#[cfg(test)]
mod tests;
