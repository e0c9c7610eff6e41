//! TypeORM's DataSource for PostgreSQL: a pg.Pool built from the DataSource's options.

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{set, Shape};
use super::super::{Timings, Variant};
use super::js::{
    self, js_fields, object, pg_keepalive_and_read, pg_keepalive_why, pg_pool_lifetime_and_read,
    pg_pool_lifetime_why,
};

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "TypeORM 1.1 over pg 8.16 to 8.23 (pg-pool 3.10 to 3.14)",
    clock: Clock::Age,
    minimum_exempt: true,
    shrink: "as pg.Pool: idleTimeoutMillis (10 s) closes idle clients only above min; maxLifetimeSeconds retires every client by age, min included; TypeORM gives poolSize as max and `extra` to new pg.Pool as it is, after its own keys",
    check: "none on checkout (pg.Pool's); after a failed query TypeORM releases the client without the error, so pg.Pool keeps it unless the client itself emitted an error",
    socket_bound: "extra: query_timeout (ms), keepAlive, keepAliveInitialDelayMillis, as node-postgres; connectTimeoutMS is pg.Pool's connectionTimeoutMillis",
    keepalive_recipe: true,
    can_evict: true,
    source: "typeorm 1.1.3 driver/postgres/PostgresDriver.js (createPool), driver/postgres/PostgresQueryRunner.js (connect, releasePostgresConnection); pg-pool 3.14 index.js and pg 8.23 lib/client.js as for node-postgres",
};

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    let (extra, why) = match variant {
        Variant::Eviction => (
            pg_pool_lifetime_and_read(t),
            pg_pool_lifetime_why(
                t,
                "TypeORM's pg.Pool",
                " (TypeORM puts that client back in the pool)",
            ),
        ),
        Variant::Keepalive => (
            pg_keepalive_and_read(t),
            pg_keepalive_why(t, "pg.Pool has no check on checkout"),
        ),
    };
    let text = format!(
        "new DataSource({{ ...options, extra: {{ ...options.extra, {} }} }})",
        js_fields(&extra)
    );
    js::shape(vec![set("extra", object(&extra))], text, why)
}
