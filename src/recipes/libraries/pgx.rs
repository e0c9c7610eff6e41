//! pgx's pgxpool through its connection string: one line for v4.15 (Debian's, which the matrix
//! runs) and for v4.17+ and v5 (read in their pgxpool/pool.go). They differ in what the line
//! must avoid: from v4.17 `pool_max_conn_idle_time` spares MinConns, but every version retires
//! a connection older than `pool_max_conn_lifetime` at its health-check tick, MinConns included.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{set, Shape};
use super::super::{Timings, Variant};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "pgx v4.15 (Debian; pgconn 1.11, puddle 1.2), v4.17 and later, and v5 (v5 read in its source: no registry we use serves it, so it is not run)",
    clock: Clock::Age,
    minimum_exempt: false,
    shrink: "at each health-check tick (pool_health_check_period, 1 min by default) a connection older than pool_max_conn_lifetime is closed in every version, MinConns included, and the pool refills to MinConns; pool_max_conn_idle_time closes idle ones only above MinConns from v4.17 (v4.15 closes those too)",
    check: "v4: none on Acquire; v5 pings a connection idle over 1 s on Acquire, bounded only by the caller's context (and pool_ping_timeout where it exists)",
    socket_bound: "a context deadline per query (pgconn 1.11 parses no keepalive or tcp_user_timeout key; its dialer keeps alive every 5 min)",
    keepalive_recipe: false,
    can_evict: true,
    source: "pgx 4.15 pgxpool/pool.go (ParseConfig, backgroundHealthCheck, checkIdleConnsHealth, checkMinConns); pgx v5 pgxpool/pool.go (checkConnsHealth: isExpired && totalConns >= minConns, IdleDuration > maxConnIdleTime && totalConns > minConns; v5 Acquire: shouldPing, Ping(ctx)); pgconn 1.11 config.go, pgconn.go; puddle 1.2 pool.go",
};

pub(crate) fn shape(_variant: Variant, t: &Timings) -> Shape {
    let half = go_duration(t.lifetime / 2);
    let settings = vec![
        set("pool_max_conn_lifetime", json!(half)),
        set("pool_health_check_period", json!(half)),
        set("query_timeout", json!(go_duration(t.read_timeout))),
    ];
    Shape {
        text: format!(
            "?pool_max_conn_lifetime={half}&pool_health_check_period={half}\n\
             and in code, each query under context.WithTimeout (query_timeout={})",
            go_duration(t.read_timeout)
        ),
        settings,
        why: format!(
            "every pgxpool version closes a connection older than pool_max_conn_lifetime at its \
             health-check tick, those kept at MinConns too (an idle time would spare them from \
             v4.17), so a lifetime and a tick of {half} each keep every connection younger than {}, \
             before the path forgets it; the context deadline bounds anything else, v5's ping on \
             Acquire included",
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
