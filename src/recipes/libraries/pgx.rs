//! pgx's pgxpool through its connection string.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{set, Shape};
use super::super::{Timings, Variant};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "pgx v4.15 (Debian; pgconn 1.11, puddle 1.2)",
    clock: Clock::Idle,
    minimum_exempt: false,
    shrink: "every connection idle past pool_max_conn_idle_time goes at the next health-check tick (pool_health_check_period, 1 min by default), so idle time + period is what counts",
    check: "none: v4 pings nothing on Acquire, and the health check only compares timestamps",
    socket_bound: "a context deadline per query (pgconn 1.11 parses no keepalive or tcp_user_timeout key; its dialer keeps alive every 5 min)",
    keepalive_recipe: false,
    can_evict: true,
    source: "pgx 4.15 pgxpool/pool.go (ParseConfig, backgroundHealthCheck, checkIdleConnsHealth); pgconn 1.11 config.go, pgconn.go; puddle 1.2 pool.go",
};

pub(crate) fn shape(_variant: Variant, t: &Timings) -> Shape {
    let idle = go_duration(t.lifetime / 2);
    let settings = vec![
        set("pool_max_conn_idle_time", json!(idle)),
        set("pool_health_check_period", json!(idle)),
        set("query_timeout", json!(go_duration(t.read_timeout))),
    ];
    Shape {
        text: format!(
            "?pool_max_conn_idle_time={idle}&pool_health_check_period={idle}\n\
             and in code, each query under context.WithTimeout (query_timeout={})",
            go_duration(t.read_timeout)
        ),
        settings,
        why: format!(
            "pgxpool v4 never checks a connection before handing it out and closes idle ones only \
             on its health-check tick, so closing them after {idle} and checking every {idle} keeps \
             every connection's idle under {}; the context deadline turns anything else into an error",
            human(t.lifetime)
        ),
        first_request_bound: std::time::Duration::from_secs(1),
    }
}

/// A Go duration string as pgx parses it: whole seconds from 10 s up, else milliseconds.
pub(crate) fn go_duration(d: std::time::Duration) -> String {
    if d >= std::time::Duration::from_secs(10) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
