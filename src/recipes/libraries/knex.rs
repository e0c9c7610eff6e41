//! Knex over node-postgres: tarn pools pg.Client connections.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{set, Shape};
use super::super::{millis, Timings, Variant};
use super::js::{self, js_fields, object, pg_keepalive_and_read, pg_keepalive_why, reaper_millis};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "Knex 3.3 (tarn 3.1) over pg 8.23",
    clock: Clock::Idle,
    minimum_exempt: true,
    shrink: "tarn checks every reapIntervalMillis (1 s) and destroys free connections idle idleTimeoutMillis (30 s) or longer, but keeps min of them (Knex's default pool: min 2, max 10); it never opens connections to reach min",
    check: "flags only, no query: on acquire Knex's validate refuses a client that already emitted 'error' or 'end' (__knex__disposed), or one older than pool.maxConnectionLifetimeMillis when that is set",
    socket_bound: "`connection` goes to new pg.Client as it is: query_timeout (ms; the client stays in the pool), keepAlive, keepAliveInitialDelayMillis; acquireConnectionTimeout (60 s) bounds only the wait for a connection",
    keepalive_recipe: true,
    can_evict: true,
    source: "knex 3.3.0 lib/client.js (poolDefaults, getPoolSettings: create, validate, maxConnectionLifetimeMillis), lib/dialects/postgres/index.js (_acquireOnlyConnection, destroyRawConnection), lib/pool.js (KnexPool); tarn 3.1.2 dist/Pool.js (constructor defaults, check, _doAcquire, _startReaping)",
};

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    let read_ms = millis(t.read_timeout);
    match variant {
        Variant::Eviction => {
            let (idle, period) = reaper_millis(t.lifetime);
            let pool = vec![
                set("min", json!(0)),
                set("idleTimeoutMillis", json!(idle)),
                set("reapIntervalMillis", json!(period)),
            ];
            let connection = vec![set("query_timeout", json!(read_ms))];
            let text = format!(
                "knex({{ ...config,\n  pool: {{ ...config.pool, {} }},\n  connection: {{ ...config.connection, {} }} }})",
                js_fields(&pool),
                js_fields(&connection)
            );
            let why = format!(
                "tarn never reaps the connections it keeps at min (Knex's default is 2), so min: 0 \
                 lets it close every connection idle {idle} ms at its next check (every {period} \
                 ms), within {} and before the path forgets it; query_timeout fails a query on a \
                 connection lost anyway after {} s",
                human(t.lifetime),
                t.read_timeout.as_secs()
            );
            let settings = vec![
                set("pool", object(&pool)),
                set("connection", object(&connection)),
            ];
            js::shape(settings, text, why)
        }
        Variant::Keepalive => {
            let connection = pg_keepalive_and_read(t);
            let text = format!(
                "knex({{ ...config, connection: {{ ...config.connection, {} }} }})",
                js_fields(&connection)
            );
            let why = pg_keepalive_why(
                t,
                "Knex checks a connection on acquire only for errors it already saw",
            );
            js::shape(vec![set("connection", object(&connection))], text, why)
        }
    }
}
