//! PgBouncer holding the idle server connections (pgbouncer.ini).

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{config_file_lines, keepalive_why, seconds_value, set, Shape};
use super::super::{millis, secs_down, secs_up, Timings, Variant};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "PgBouncer 1.18",
    clock: Clock::Age,
    minimum_exempt: true,
    shrink: "server_idle_timeout is skipped at or below min_pool_size; server_lifetime (age) applies to all, but closes at most one connection per server_lifetime / pool_size",
    check: "server_check_query only after server_check_delay (30 s) idle, with no timeout of its own",
    socket_bound: "tcp_user_timeout (milliseconds) and tcp_keep* toward the server; query_timeout (seconds) on the client side works behind a proxy",
    keepalive_recipe: true,
    can_evict: true,
    source: "PgBouncer 1.18 src/janitor.c (check_unused_servers, check_pool_size), src/objects.c (life_over), doc/config.md",
};

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    let read_s = secs_up(t.read_timeout);
    let settings = match variant {
        Variant::Eviction => vec![
            set("server_lifetime", seconds_value(t.lifetime / 2)),
            set("query_timeout", json!(read_s)),
        ],
        Variant::Keepalive => vec![
            set("tcp_keepalive", json!(1)),
            set("tcp_keepidle", json!(secs_down(t.keepalive_idle))),
            set("tcp_keepintvl", json!(secs_down(t.keepalive_interval))),
            set("tcp_user_timeout", json!(millis(t.dead_bound))),
            set("query_timeout", json!(read_s)),
        ],
    };
    let why = match variant {
        Variant::Eviction => format!(
            "server_idle_timeout spares min_pool_size; server_lifetime does not, but closes at most \
             one server connection per server_lifetime / pool_size, so half the safe lifetime ({}) \
             retires the whole pool before the path forgets it; query_timeout bounds anything left",
            human(t.lifetime / 2)
        ),
        Variant::Keepalive => keepalive_why(t),
    };
    Shape {
        text: config_file_lines(&settings),
        settings,
        why,
        first_request_bound: std::time::Duration::from_secs(1),
    }
}
