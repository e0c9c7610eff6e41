//! node-postgres' pg.Pool.

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::Shape;
use super::super::{Timings, Variant};
use super::js::{
    self, js_fields, pg_keepalive_and_read, pg_keepalive_why, pg_pool_lifetime_and_read,
    pg_pool_lifetime_why,
};

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "pg 8.16 to 8.23 (pg-pool 3.10 to 3.14; `min` exists from pg-pool 3.10.0, maxLifetimeSeconds from 3.5.1)",
    clock: Clock::Age,
    minimum_exempt: true,
    shrink: "idleTimeoutMillis (10 s by default) closes idle clients only above min; maxLifetimeSeconds (age since connect) retires every client, min included, each on its own timer, when it is idle or at its release; nothing reopens clients up to min, the next request connects",
    check: "none on checkout: an idle client whose socket ends or errors (a FIN, an RST, a keepalive timeout) emits an error and the pool drops it; a silently dropped one is handed out",
    socket_bound: "query_timeout (pg.Client, milliseconds, client side: also ends slow queries; pool.query then drops the client); keepAlive and keepAliveInitialDelayMillis (whole seconds in Node); no TCP_USER_TIMEOUT in Node",
    keepalive_recipe: true,
    can_evict: true,
    source: "pg-pool 3.14 index.js (constructor defaults, _isAboveMin, newClient, _afterConnect, _release, makeIdleListener, query); pg 8.23 lib/client.js (query: query_timeout), lib/connection.js (connect: setKeepAlive), lib/connection-parameters.js; `min` and maxLifetimeSeconds checked in the pg-pool 3.4.1, 3.5.1, 3.9.0 and 3.10.0 npm tarballs",
};

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    match variant {
        Variant::Eviction => {
            let settings = pg_pool_lifetime_and_read(t);
            let text = format!("new Pool({{ ...config, {} }})", js_fields(&settings));
            js::shape(
                settings,
                text,
                pg_pool_lifetime_why(t, "pg.Pool", ", and pool.query drops that client"),
            )
        }
        Variant::Keepalive => {
            let settings = pg_keepalive_and_read(t);
            let text = format!("new Pool({{ ...config, {} }})", js_fields(&settings));
            js::shape(
                settings,
                text,
                pg_keepalive_why(t, "pg.Pool has no check on checkout"),
            )
        }
    }
}
