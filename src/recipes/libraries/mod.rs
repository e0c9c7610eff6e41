//! One file per library: the model of its pool (what each setting really does, for which
//! versions, read from which source) and its recipe, spelt the way that library takes it.
//!
//! Adding a library: a file here with its `MODEL` and `shape`, a [`Library`] variant with its
//! id and title (`pools.rs`), the two arms below, and a harness in `lab/pools/` to prove it.

mod asyncpg;
mod asyncpg_031;
mod bb8;
mod database_sql;
mod deadpool;
mod django;
mod django_pool;
mod hikaricp;
mod hikaricp_spring;
mod libpq;
mod node_postgres;
mod pgbouncer;
mod pgjdbc;
mod pgx;
mod postgres_server;
mod psycopg_pool;
mod quaint;
mod sqlalchemy;
mod sqlalchemy_asyncpg;
mod sqlx;

use super::pools::{Library, PoolModel};
use super::spelling::Shape;
use super::{Timings, Variant};

pub(super) fn model(library: Library) -> PoolModel {
    match library {
        Library::Quaint => quaint::MODEL,
        Library::Libpq => libpq::MODEL,
        Library::Deadpool => deadpool::MODEL,
        Library::Sqlx => sqlx::MODEL,
        Library::Bb8 => bb8::MODEL,
        Library::Hikaricp => hikaricp::MODEL,
        Library::Pgx => pgx::MODEL,
        Library::Sqlalchemy => sqlalchemy::MODEL,
        Library::PsycopgPool => psycopg_pool::MODEL,
        Library::Asyncpg => asyncpg::MODEL,
        Library::NodePostgres => node_postgres::MODEL,
        Library::Pgbouncer => pgbouncer::MODEL,
        Library::PostgresServer => postgres_server::MODEL,
        Library::Asyncpg031 => asyncpg_031::MODEL,
        Library::SqlalchemyAsyncpg => sqlalchemy_asyncpg::MODEL,
        Library::Django => django::MODEL,
        Library::DatabaseSql => database_sql::MODEL,
        Library::HikaricpSpring => hikaricp_spring::MODEL,
        Library::Pgjdbc => pgjdbc::MODEL,
        Library::DjangoPool => django_pool::MODEL,
    }
}

pub(super) fn shape(library: Library, variant: Variant, t: &Timings) -> Shape {
    match library {
        Library::Quaint => quaint::shape(variant, t),
        Library::Libpq => libpq::shape(variant, t),
        Library::Deadpool => deadpool::shape(variant, t),
        Library::Sqlx => sqlx::shape(variant, t),
        Library::Bb8 => bb8::shape(variant, t),
        Library::Hikaricp => hikaricp::shape(variant, t),
        Library::Pgx => pgx::shape(variant, t),
        Library::Sqlalchemy => sqlalchemy::shape(variant, t),
        Library::PsycopgPool => psycopg_pool::shape(variant, t),
        Library::Asyncpg => asyncpg::shape(variant, t),
        Library::NodePostgres => node_postgres::shape(variant, t),
        Library::Pgbouncer => pgbouncer::shape(variant, t),
        Library::PostgresServer => postgres_server::shape(variant, t),
        Library::Asyncpg031 => asyncpg_031::shape(variant, t),
        Library::SqlalchemyAsyncpg => sqlalchemy_asyncpg::shape(variant, t),
        Library::Django => django::shape(variant, t),
        Library::DatabaseSql => database_sql::shape(variant, t),
        Library::HikaricpSpring => hikaricp_spring::shape(variant, t),
        Library::Pgjdbc => pgjdbc::shape(variant, t),
        Library::DjangoPool => django_pool::shape(variant, t),
    }
}
