//! Builds a library's recipe for a measured path, and the spelling its files share: connection-
//! string keys, keyword arguments, config-file lines. Each library's own spelling, and the model
//! of its pool it rests on, is its file in `libraries/`.

use serde_json::json;

use super::{millis, secs_down, secs_up, Setting, Timings};

/// What a library file builds: the settings, the text to paste, and why it works.
pub(crate) struct Shape {
    pub settings: Vec<Setting>,
    pub text: String,
    pub why: String,
    pub first_request_bound: std::time::Duration,
}

/// Seconds as a number a Python library takes: whole when whole, else to the millisecond.
pub(crate) fn seconds_value(d: std::time::Duration) -> serde_json::Value {
    if d.subsec_millis() == 0 {
        json!(d.as_secs())
    } else {
        json!(d.as_millis() as f64 / 1000.0)
    }
}

pub(crate) fn set(key: &'static str, value: serde_json::Value) -> Setting {
    Setting { key, value }
}

/// PostgreSQL's own keepalive settings (`postgresql.conf`, or per session through a driver).
/// No probe count: with `tcp_user_timeout` set, Linux ignores it ([`keepalive_keys`]).
pub(crate) fn server_keepalives(t: &Timings) -> Vec<Setting> {
    vec![
        set("tcp_keepalives_idle", json!(secs_down(t.keepalive_idle))),
        set(
            "tcp_keepalives_interval",
            json!(secs_down(t.keepalive_interval)),
        ),
        set("tcp_user_timeout", json!(millis(t.dead_bound))),
    ]
}

/// Which connection-string dialect keepalive keys are written in.
#[derive(Clone, Copy)]
pub(crate) enum ConnString {
    /// libpq (and psycopg): `keepalives_count`, `tcp_user_timeout` in milliseconds.
    Libpq,
    /// tokio-postgres: `keepalives_retries`, `tcp_user_timeout` in whole seconds.
    TokioPostgres,
}

/// TCP keepalives scaled to the threshold, and TCP_USER_TIMEOUT, as a connection string takes them.
///
/// No probe count (`keepalives_count`, `keepalives_retries`): once TCP_USER_TIMEOUT is set, Linux
/// gives up on an unanswered keepalive by that timeout alone and never reads the count
/// (net/ipv4/tcp_timer.c, tcp_keepalive_timer), so a count beside it would be a setting that
/// cannot matter.
pub(crate) fn keepalive_keys(t: &Timings, dialect: ConnString) -> Vec<Setting> {
    let user_timeout = match dialect {
        ConnString::Libpq => millis(t.dead_bound),
        ConnString::TokioPostgres => secs_up(t.dead_bound),
    };
    vec![
        set("keepalives", json!(1)),
        set("keepalives_idle", json!(secs_down(t.keepalive_idle))),
        set(
            "keepalives_interval",
            json!(secs_down(t.keepalive_interval)),
        ),
        set("tcp_user_timeout", json!(user_timeout)),
    ]
}

/// The keys that set a keepalive probe count, in every spelling we print; none may stand beside
/// `tcp_user_timeout` ([`keepalive_keys`]).
#[cfg(test)]
pub(crate) const PROBE_COUNT_KEYS: [&str; 4] = [
    "keepalives_count",
    "keepalives_retries",
    "tcp_keepalives_count",
    "tcp_keepcnt",
];

pub(crate) fn conninfo(settings: &[Setting]) -> String {
    settings
        .iter()
        .map(|s| format!("{}={}", s.key, plain(&s.value)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `key = value` lines, as postgresql.conf and pgbouncer.ini take them.
pub(crate) fn config_file_lines(settings: &[Setting]) -> String {
    settings
        .iter()
        .map(|s| format!("{} = {}", s.key, plain(&s.value)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Why keepalive keys ([`keepalive_keys`]) work. Says what gives up on a forgotten flow: on
/// Linux tcp_user_timeout, not a probe count (the kernel reads none once it is set).
pub(crate) fn keepalive_why(t: &Timings) -> String {
    format!(
        "a keepalive every {} s resets the box's idle timer, so the flow never looks idle and the \
         connections stay warm; on Linux tcp_user_timeout, not a probe count, ends a connection the \
         box forgot anyway about {} s after its last answer",
        secs_down(t.keepalive_idle),
        secs_up(t.dead_bound)
    )
}

/// PostgreSQL settings as asyncpg's `server_settings` takes them: strings.
pub(crate) fn python_dict_of_strings(settings: &[Setting]) -> String {
    let items: Vec<String> = settings
        .iter()
        .map(|s| format!("\"{}\": \"{}\"", s.key, plain(&s.value)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

pub(crate) fn kwargs_object(settings: &[Setting]) -> serde_json::Value {
    serde_json::Value::Object(
        settings
            .iter()
            .map(|s| (s.key.to_string(), s.value.clone()))
            .collect(),
    )
}

pub(crate) fn python_dict(settings: &[Setting]) -> String {
    let items: Vec<String> = settings
        .iter()
        .map(|s| format!("\"{}\": {}", s.key, s.value))
        .collect();
    format!("{{{}}}", items.join(", "))
}
