//! sqlx's PgPoolOptions: idle connections are retired only by the maintenance task. The text is
//! Rust that compiles as printed: it leaves `options` to size and connect.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{seconds_value, set, Shape};
use super::super::{secs_up, Timings, Variant};
use super::rust_code::duration_f64;
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "sqlx 0.9.0 (sqlx-postgres 0.9.0): read there, and the code compiled against it",
    clock: Clock::Idle,
    minimum_exempt: false,
    shrink: "only in the maintenance task, every min(idle_timeout, max_lifetime); connections below min_connections are reopened after",
    check: "test_before_acquire pings, bounded only by acquire_timeout for the whole acquire (then PoolTimedOut)",
    socket_bound: "none: sqlx 0.9 sets no keepalive and no TCP_USER_TIMEOUT",
    keepalive_recipe: false,
    can_evict: true,
    source: "sqlx-core 0.9 pool/options.rs, pool/inner.rs (spawn_maintenance_tasks, min_connections_maintenance), pool/idle.rs",
};

pub(crate) fn shape(_variant: Variant, t: &Timings) -> Shape {
    let read_s = secs_up(t.read_timeout);
    let settings = vec![
        set("idle_timeout", seconds_value(t.lifetime / 2)),
        set("test_before_acquire", json!(true)),
        set("acquire_timeout", json!(read_s)),
    ];
    Shape {
        text: format!(
            "use std::time::Duration;\nlet options = sqlx::postgres::PgPoolOptions::new()\n    \
             .idle_timeout({})\n    .test_before_acquire(true)\n    \
             .acquire_timeout(Duration::from_secs({read_s}));\n\
             // then: options.max_connections(..).connect(url).await?",
            duration_f64(t.lifetime / 2)
        ),
        settings,
        why: format!(
            "sqlx retires idle connections only in its maintenance task, which runs every idle_timeout, \
             so idle_timeout at half the safe lifetime ({}) closes each one before the path forgets it; \
             acquire_timeout bounds a check that gets no answer",
            human(t.lifetime / 2)
        ),
        first_request_bound: std::time::Duration::from_secs(1),
    }
}
