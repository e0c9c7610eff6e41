//! What the Node.js libraries share: their recipes are JavaScript that runs as printed (the pool
//! matrix's node harness evaluates the text with the library's constructor and the
//! application's own options in scope), and four of them sit on node-postgres' `pg.Client`,
//! whose keepalive and read-timeout options they pass through.

use std::time::Duration;

use serde_json::{json, Value};

use super::super::spelling::{seconds_value, set, Shape};
use super::super::{millis, secs_down, Setting, Timings};
use crate::format::human;

/// A value as JavaScript source: numbers and booleans as they are, strings quoted, objects as
/// `{ key: value }` (every key we print is a plain identifier).
pub(crate) fn js_value(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}: {}", js_value(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// `key: value, key: value`, to follow a spread (`{ ...config, <these> }`).
pub(crate) fn js_fields(settings: &[Setting]) -> String {
    settings
        .iter()
        .map(|s| format!("{}: {}", s.key, js_value(&s.value)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An object of settings, as one recipe setting holds it (`pool: { min: 0, ... }`).
pub(crate) fn object(settings: &[Setting]) -> Value {
    Value::Object(
        settings
            .iter()
            .map(|s| (s.key.to_string(), s.value.clone()))
            .collect(),
    )
}

/// pg.Client's keepalive options (pg 8 lib/connection-parameters.js, lib/connection.js:
/// `stream.setKeepAlive(true, keepAliveInitialDelayMillis)`; Node takes whole seconds), and
/// its client-side read timeout.
pub(crate) fn pg_keepalive_and_read(t: &Timings) -> Vec<Setting> {
    vec![
        set("keepAlive", json!(true)),
        set(
            "keepAliveInitialDelayMillis",
            json!(secs_down(t.keepalive_idle) * 1000),
        ),
        set("query_timeout", json!(millis(t.read_timeout))),
    ]
}

/// pg.Pool's age limit and pg.Client's read timeout (pg-pool index.js `_afterConnect`; pg
/// lib/client.js `query`).
pub(crate) fn pg_pool_lifetime_and_read(t: &Timings) -> Vec<Setting> {
    vec![
        set("maxLifetimeSeconds", seconds_value(t.lifetime)),
        set("query_timeout", json!(millis(t.read_timeout))),
    ]
}

/// Why pg.Pool's age limit holds; `pool` names who owns the pg.Pool, `after_timeout` what
/// becomes of a client whose query timed out (pool.query drops it; a caller that releases it
/// without the error puts it back).
pub(crate) fn pg_pool_lifetime_why(t: &Timings, pool: &str, after_timeout: &str) -> String {
    format!(
        "{pool} never closes idle clients at or below min, but maxLifetimeSeconds retires every \
         client by age ({}) before the path forgets it; query_timeout fails anything left after {} \
         s{after_timeout}",
        human(t.lifetime),
        t.read_timeout.as_secs()
    )
}

/// Why pg.Client keepalives hold: Node sets only the first probe's delay (an answered probe
/// restarts it) and has no TCP_USER_TIMEOUT, so the read timeout is the only bound on a flow
/// the box forgot anyway. `checkout` says what the pool checks when it hands a client out.
pub(crate) fn pg_keepalive_why(t: &Timings, checkout: &str) -> String {
    format!(
        "keepAlive makes the kernel send a TCP keepalive after every {} s of silence, which resets \
         the box's idle timer, so the flow never looks idle and the connections stay warm; \
         {checkout} and Node cannot set TCP_USER_TIMEOUT, so if the box forgets a flow anyway, \
         query_timeout fails the query on it after {} s",
        secs_down(t.keepalive_idle),
        t.read_timeout.as_secs()
    )
}

/// A reaper's period and idle timeout (milliseconds) whose sum is the lifetime: a pool that
/// checks every `period` for connections idle `idle` or longer closes each one within the
/// lifetime, below the threshold. The period is 1 s (the reapers' default) unless a quarter of
/// the lifetime is shorter.
pub(crate) fn reaper_millis(lifetime: Duration) -> (u64, u64) {
    let total = millis(lifetime).max(2);
    let period = (total / 4).clamp(1, 1000);
    (total - period, period)
}

pub(crate) fn shape(settings: Vec<Setting>, text: String, why: String) -> Shape {
    Shape {
        settings,
        text,
        why,
        first_request_bound: Duration::from_secs(1),
    }
}
