//! Prisma 7 with the node-postgres driver adapter: the generated client (TypeScript, a wasm
//! query compiler) runs every query through @prisma/adapter-pg on a pg.Pool.

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::Shape;
use super::super::{Timings, Variant};
use super::js::{
    self, js_fields, pg_keepalive_and_read, pg_keepalive_why, pg_pool_lifetime_and_read,
    pg_pool_lifetime_why,
};

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "Prisma 7.10 with @prisma/adapter-pg 7.10 over pg 8.16 to 8.23 (pg-pool 3.10 to 3.14)",
    clock: Clock::Age,
    minimum_exempt: true,
    shrink: "as pg.Pool: the adapter gives its config to new pg.Pool as it is; idleTimeoutMillis (10 s) closes idle clients only above min; maxLifetimeSeconds retires every client by age, min included",
    check: "none: the adapter runs each query with pg.Pool's query (no engine and no SELECT 1 before use, unlike Prisma's Rust engine)",
    socket_bound: "pg.Pool config: query_timeout (ms), keepAlive, keepAliveInitialDelayMillis, as node-postgres",
    keepalive_recipe: true,
    can_evict: true,
    source: "@prisma/adapter-pg 7.10.0 dist/index.js (PrismaPgAdapterFactory: constructor, connect; PgQueryable.performIO); pg-pool 3.14 index.js and pg 8.23 lib/client.js as for node-postgres; client from prisma 7.10.0's `prisma-client` generator",
};

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    let (settings, why) = match variant {
        Variant::Eviction => (
            pg_pool_lifetime_and_read(t),
            pg_pool_lifetime_why(
                t,
                "the adapter's pg.Pool",
                ", and pool.query drops that client",
            ),
        ),
        Variant::Keepalive => (
            pg_keepalive_and_read(t),
            pg_keepalive_why(t, "neither Prisma nor pg.Pool checks a client on checkout"),
        ),
    };
    let text = format!("new PrismaPg({{ ...config, {} }})", js_fields(&settings));
    js::shape(settings, text, why)
}
