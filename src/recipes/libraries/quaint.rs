//! quaint (Prisma's PostgreSQL connector) through its DATABASE_URL parameters.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{set, Shape};
use super::super::{secs_down, secs_up, Timings, Variant};

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "quaint 0.2 (prisma-engines) over mobc 0.8.5 and later",
    clock: Clock::Age,
    minimum_exempt: false,
    shrink: "checked lazily at checkout",
    check: "none before use; socket_timeout bounds every query",
    socket_bound: "socket_timeout (seconds) in the URL",
    keepalive_recipe: false,
    can_evict: true,
    source: "prisma-engines quaint/src/connector/postgres (PostgresUrl::parse_query_params: whole seconds, max_idle_connection_lifetime 300 s by default); mobc >= 0.8.5 (its max_idle_lifetime counts age)",
};

pub(crate) fn shape(_variant: Variant, t: &Timings) -> Shape {
    let lifetime_s = secs_down(t.lifetime);
    let read_s = secs_up(t.read_timeout);
    let settings = vec![
        set("max_idle_connection_lifetime", json!(lifetime_s)),
        set("socket_timeout", json!(read_s)),
    ];
    Shape {
        text: format!("?max_idle_connection_lifetime={lifetime_s}&socket_timeout={read_s}"),
        settings,
        why: format!(
            "quaint's pool retires connections {lifetime_s} s after they were opened, before the path \
             forgets them, and socket_timeout turns a query on a connection that died anyway into an \
             error after {read_s} s instead of a hang"
        ),
        first_request_bound: t.read_timeout + std::time::Duration::from_secs(1),
    }
}
