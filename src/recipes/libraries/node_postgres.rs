//! node-postgres' pg.Pool.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{keepalive_why, seconds_value, set, Shape};
use super::super::{millis, secs_down, Timings, Variant};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "pg 8.23 (pg-pool 3.14)",
    clock: Clock::Age,
    minimum_exempt: true,
    shrink: "idleTimeoutMillis closes idle clients only above min; maxLifetimeSeconds (age) retires every client, min included, each on its own timer",
    check: "none on checkout (an EOF on an idle client removes it)",
    socket_bound: "query_timeout (client side, milliseconds; works behind a proxy, also ends slow queries); no TCP_USER_TIMEOUT in Node",
    keepalive_recipe: true,
    can_evict: true,
    source: "pg-pool 3.14 index.js (_afterConnect, _release, _isAboveMin); pg 8.23 lib/client.js (query_timeout, keepAlive)",
};

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    let read_ms = millis(t.read_timeout);
    let (settings, text, why) = match variant {
        Variant::Eviction => (
            vec![
                set("maxLifetimeSeconds", seconds_value(t.lifetime)),
                set("query_timeout", json!(read_ms)),
            ],
            format!(
                "new Pool({{ maxLifetimeSeconds: {}, query_timeout: {read_ms} }})",
                seconds_value(t.lifetime)
            ),
            format!(
                "pg.Pool never closes idle clients at or below min, but maxLifetimeSeconds retires \
                 every client by age ({}) before the path forgets it; query_timeout turns anything \
                 left into an error",
                human(t.lifetime)
            ),
        ),
        Variant::Keepalive => {
            let delay_ms = secs_down(t.keepalive_idle) * 1000;
            (
                vec![
                    set("keepAlive", json!(true)),
                    set("keepAliveInitialDelayMillis", json!(delay_ms)),
                    set("query_timeout", json!(read_ms)),
                ],
                format!(
                    "new Pool({{ keepAlive: true, keepAliveInitialDelayMillis: {delay_ms}, query_timeout: {read_ms} }})"
                ),
                keepalive_why(t),
            )
        }
    };
    Shape {
        settings,
        text,
        why,
        first_request_bound: std::time::Duration::from_secs(1),
    }
}
