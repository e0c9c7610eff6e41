//! tokio-postgres with bb8: idle_timeout applies only when the reaper runs.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{seconds_value, set, Shape};
use super::super::{secs_up, Timings, Variant};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "bb8 0.9 (bb8-postgres 0.9)",
    clock: Clock::Idle,
    minimum_exempt: false,
    shrink: "idle_timeout and max_lifetime apply only when the reaper runs (reaper_rate, 30 s by default), min_idle included; new connections are opened up to min_idle after",
    check: "test_on_check_out runs simple_query(\"\"), bounded only by connection_timeout for the whole get()",
    socket_bound: "tcp_user_timeout (whole seconds in a tokio-postgres connection string)",
    keepalive_recipe: true,
    can_evict: true,
    source: "bb8 0.9 api.rs (Builder), inner.rs (PoolInner::get, put_back), internals.rs (PoolInternals::reap); bb8-postgres 0.9",
};

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    if variant == Variant::Keepalive {
        return super::deadpool::keepalive(t);
    }
    let dead_s = secs_up(t.dead_bound);
    let read_s = secs_up(t.read_timeout);
    let half = seconds_value(t.lifetime / 2);
    let settings = vec![
        set("idle_timeout", half.clone()),
        set("reaper_rate", half.clone()),
        set("test_on_check_out", json!(true)),
        set("connection_timeout", json!(read_s)),
        set("tcp_user_timeout", json!(dead_s)),
    ];
    Shape {
        text: format!(
            "connection string: tcp_user_timeout={dead_s}\n\
             Pool::builder()\n    .idle_timeout(Some(Duration::from_secs_f64({half})))\n    .reaper_rate(Duration::from_secs_f64({half}))\n    .test_on_check_out(true)\n    .connection_timeout(Duration::from_secs({read_s}))"
        ),
        settings,
        why: format!(
            "bb8 applies idle_timeout only when its reaper runs (every 30 s unless reaper_rate says \
             otherwise), so both at half the safe lifetime ({}) close every idle connection, min_idle \
             included, before the path forgets it",
            human(t.lifetime / 2)
        ),
        first_request_bound: std::time::Duration::from_secs(1),
    }
}
