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
mod diesel;
mod django;
mod django_pool;
mod hikaricp;
mod hikaricp_spring;
mod js;
mod knex;
mod libpq;
mod node_postgres;
mod pgbouncer;
mod pgjdbc;
mod pgx;
mod postgres_js;
mod postgres_js3;
mod postgres_server;
mod prisma_adapter_pg;
mod psycopg_pool;
mod quaint;
mod rails;
mod rust_code;
mod sequelize;
mod sqlalchemy;
mod sqlalchemy_asyncpg;
mod sqlx;
mod typeorm;

use super::pools::{Library, PoolModel};
use super::proof;
use super::spelling::Shape;
use super::{Measurement, Recipe, Timings, Variant};

impl Library {
    /// The facts of this library's pool: its file here.
    pub fn model(self) -> PoolModel {
        model(self)
    }
}

/// Builds one library's recipe.
pub(super) fn recipe(library: Library, variant: Variant, m: &Measurement, t: &Timings) -> Recipe {
    let Shape {
        settings,
        text,
        why,
        first_request_bound,
    } = shape(library, variant, t);
    let model = library.model();
    Recipe {
        library,
        title: library.title(),
        variant,
        settings,
        text,
        why,
        first_request_bound,
        proof: proof::proof_of(library, variant, m, library.unprovable()),
        versions: model.versions,
        source: model.source,
    }
}

fn model(library: Library) -> PoolModel {
    match library {
        Library::QuaintPrisma => quaint::PRISMA_MODEL,
        Library::QuaintBare => quaint::BARE_MODEL,
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
        Library::PostgresJs => postgres_js::MODEL,
        Library::PostgresJs3 => postgres_js3::MODEL,
        Library::Knex => knex::MODEL,
        Library::Sequelize => sequelize::MODEL,
        Library::Typeorm => typeorm::MODEL,
        Library::PrismaAdapterPg => prisma_adapter_pg::MODEL,
        Library::Pgbouncer => pgbouncer::MODEL,
        Library::PostgresServer => postgres_server::MODEL,
        Library::Diesel => diesel::MODEL,
        Library::Rails => rails::MODEL,
        Library::Asyncpg031 => asyncpg_031::MODEL,
        Library::SqlalchemyAsyncpg => sqlalchemy_asyncpg::MODEL,
        Library::Django => django::MODEL,
        Library::DatabaseSql => database_sql::MODEL,
        Library::HikaricpSpring => hikaricp_spring::MODEL,
        Library::Pgjdbc => pgjdbc::MODEL,
        Library::DjangoPool => django_pool::MODEL,
    }
}

fn shape(library: Library, variant: Variant, t: &Timings) -> Shape {
    match library {
        Library::QuaintPrisma => quaint::shape(quaint::Pool::PrismaEngine, variant, t),
        Library::QuaintBare => quaint::shape(quaint::Pool::Bare, variant, t),
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
        Library::PostgresJs => postgres_js::shape(variant, t),
        Library::PostgresJs3 => postgres_js3::shape(variant, t),
        Library::Knex => knex::shape(variant, t),
        Library::Sequelize => sequelize::shape(variant, t),
        Library::Typeorm => typeorm::shape(variant, t),
        Library::PrismaAdapterPg => prisma_adapter_pg::shape(variant, t),
        Library::Pgbouncer => pgbouncer::shape(variant, t),
        Library::PostgresServer => postgres_server::shape(variant, t),
        Library::Diesel => diesel::shape(variant, t),
        Library::Rails => rails::shape(variant, t),
        Library::Asyncpg031 => asyncpg_031::shape(variant, t),
        Library::SqlalchemyAsyncpg => sqlalchemy_asyncpg::shape(variant, t),
        Library::Django => django::shape(variant, t),
        Library::DatabaseSql => database_sql::shape(variant, t),
        Library::HikaricpSpring => hikaricp_spring::shape(variant, t),
        Library::Pgjdbc => pgjdbc::shape(variant, t),
        Library::DjangoPool => django_pool::shape(variant, t),
    }
}
