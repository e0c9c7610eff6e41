//! Sequelize 6 over node-postgres: sequelize-pool pools pg.Client connections.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{set, Shape};
use super::super::{millis, Timings, Variant};
use super::js::{self, js_fields, object, reaper_millis};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "Sequelize 6.37 (sequelize-pool 7.1) over pg 8.23",
    clock: Clock::Idle,
    minimum_exempt: true,
    shrink: "sequelize-pool checks every `evict` ms (1 s) and destroys available connections idle `idle` ms (10 s) or longer, but never below min (0 by default, max 5); it reopens up to min only when it destroys one",
    check: "flags only, no query: validate refuses a client that emitted 'error' (it is also destroyed at once) or is ending",
    socket_bound: "dialectOptions passes a fixed list to pg.Client: query_timeout (ms) and keepAlive, but not keepAliveInitialDelayMillis, so keepalives would start after Linux's default 2 h of silence: no keepalive recipe",
    keepalive_recipe: false,
    can_evict: true,
    source: "sequelize 6.37.8 lib/dialects/abstract/connection-manager.js (pool defaults, initPools), lib/dialects/postgres/connection-manager.js (connect: the dialectOptions list, the 'error' listener; validate); sequelize-pool 7.1.0 lib/Pool.js (_removeIdle, _scheduleRemoveIdle, _dispense, destroy, _ensureMinimum)",
};

pub(crate) fn shape(_variant: Variant, t: &Timings) -> Shape {
    let (idle, period) = reaper_millis(t.lifetime);
    let pool = vec![
        set("min", json!(0)),
        set("idle", json!(idle)),
        set("evict", json!(period)),
    ];
    let dialect = vec![set("query_timeout", json!(millis(t.read_timeout)))];
    let text = format!(
        "new Sequelize(url, {{ ...options,\n  pool: {{ ...options.pool, {} }},\n  dialectOptions: {{ ...options.dialectOptions, {} }} }})",
        js_fields(&pool),
        js_fields(&dialect)
    );
    let why = format!(
        "sequelize-pool never evicts the connections it keeps at min, so min: 0 lets it close every \
         connection idle {idle} ms at its next check (every {period} ms), within {} and before the \
         path forgets it; query_timeout fails a query on a connection lost anyway after {} s",
        human(t.lifetime),
        t.read_timeout.as_secs()
    );
    let settings = vec![
        set("pool", object(&pool)),
        set("dialectOptions", object(&dialect)),
    ];
    js::shape(settings, text, why)
}
