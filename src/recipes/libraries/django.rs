//! Django's persistent connections (`CONN_MAX_AGE`, `CONN_HEALTH_CHECKS`) on the PostgreSQL
//! backend. Not a pool: each worker thread keeps its own connection between requests, and
//! `close_old_connections` (on `request_started` and `request_finished`) decides whether it
//! survives. "A pool that keeps 4 warm" is 4 worker threads with `CONN_MAX_AGE = None`.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{kwargs_object, set, Shape};
use super::super::{millis, secs_down, secs_up, Timings, Variant};

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "Django 5.2 with psycopg 3 (read in 5.2.19)",
    clock: Clock::Age,
    minimum_exempt: false,
    shrink: "no pool: each thread keeps one connection; close_old_connections, run on request_started and request_finished, closes it once it is CONN_MAX_AGE seconds old (counted from connect; 0, the default, closes it after every request; None never)",
    check: "CONN_HEALTH_CHECKS runs SELECT 1 before the first query of a request on a reused connection, with no timeout of its own (a dead flow behind a proxy hangs it)",
    socket_bound: "OPTIONS: libpq keywords (keepalives, tcp_user_timeout) passed to psycopg.connect",
    keepalive_recipe: false,
    can_evict: true,
    source: "Django 5.2 db/__init__.py (close_old_connections), db/backends/base/base.py (connect, close_if_unusable_or_obsolete, close_if_health_check_failed), db/backends/postgresql/base.py (get_connection_params, is_usable)",
};

pub(crate) fn shape(_variant: Variant, t: &Timings) -> Shape {
    let age_s = secs_down(t.lifetime);
    let options = vec![set("tcp_user_timeout", json!(millis(t.dead_bound)))];
    let settings = vec![
        set("CONN_MAX_AGE", json!(age_s)),
        set("OPTIONS", kwargs_object(&options)),
    ];
    Shape {
        text: format!(
            "DATABASES[\"default\"][\"CONN_MAX_AGE\"] = {age_s}\n\
             DATABASES[\"default\"].setdefault(\"OPTIONS\", {{}})[\"tcp_user_timeout\"] = {}",
            millis(t.dead_bound)
        ),
        settings,
        why: format!(
            "Django closes a thread's connection once it is {age_s} s old when a request starts or \
             ends, so no request runs on a connection idle long enough for the path to forget it; \
             behind a box that drops packets, tcp_user_timeout ends a read on one that dies \
             mid-request within {} s",
            secs_up(t.dead_bound)
        ),
        first_request_bound: std::time::Duration::from_secs(1),
    }
}
