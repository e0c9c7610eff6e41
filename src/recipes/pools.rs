//! The libraries we write recipes for, and the shape of a pool's model: what its settings really
//! do, for which versions, read from its source. Each library's model and spelling is its file
//! in `libraries/`.
//!
//! Names mislead. An "idle timeout" often spares the connections a pool keeps at its minimum
//! size; a "lifetime" may count age, not idle time; a health check may have no timeout and hang
//! on the very connection it should catch. [`PoolModel`] records those facts per library, with
//! the file they come from, and each recipe is built from them.

use serde::{Deserialize, Serialize};

/// quaint's (Prisma's) `max_idle_connection_lifetime` when a URL does not set it. Source:
/// prisma-engines quaint/src/connector/postgres (PostgresUrl::parse_query_params), as in
/// [`Library::QuaintPrisma`]'s [`PoolModel::source`].
pub const QUAINT_DEFAULT_MAX_IDLE_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(300);

/// A library we write a recipe for; the ids are the pool matrix's harness names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Library {
    QuaintPrisma,
    QuaintBare,
    Libpq,
    Deadpool,
    Sqlx,
    Bb8,
    Hikaricp,
    Pgx,
    Sqlalchemy,
    PsycopgPool,
    Asyncpg,
    #[serde(rename = "node-postgres")]
    NodePostgres,
    #[serde(rename = "postgres-js")]
    PostgresJs,
    #[serde(rename = "postgres-js-3")]
    PostgresJs3,
    Knex,
    Sequelize,
    Typeorm,
    #[serde(rename = "prisma-adapter-pg")]
    PrismaAdapterPg,
    Pgbouncer,
    PostgresServer,
    Diesel,
    Rails,
    #[serde(rename = "asyncpg_031")]
    Asyncpg031,
    SqlalchemyAsyncpg,
    Django,
    #[serde(rename = "database_sql")]
    DatabaseSql,
    HikaricpSpring,
    Pgjdbc,
    DjangoPool,
}

/// What a pool's lifetime setting measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// Time since the connection was last returned: a busy pool never retires anything.
    Idle,
    /// Time since the connection was opened: safe below the threshold whatever the traffic.
    Age,
    /// No lifetime setting.
    None,
}

/// The facts a recipe rests on, each from the library's own source.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PoolModel {
    /// The releases these facts were read from and hold for; a recipe built from them says so.
    pub versions: &'static str,
    /// What the setting the recipe uses to retire connections measures.
    pub clock: Clock,
    /// Connections kept at the pool's minimum size are never retired for idling.
    pub minimum_exempt: bool,
    /// How fast the pool shrinks when it does.
    pub shrink: &'static str,
    /// The health check on checkout, and what bounds it.
    pub check: &'static str,
    /// Where a socket-level or read timeout goes.
    pub socket_bound: &'static str,
    /// Whether a keepalive variant exists (TCP keepalives settable through the library).
    pub keepalive_recipe: bool,
    /// Whether it can retire connections at all (a pool); without, keepalives are all it has.
    pub can_evict: bool,
    /// Files the facts were read from.
    pub source: &'static str,
}

impl Library {
    pub const ALL: &[Library] = &[
        Library::QuaintPrisma,
        Library::QuaintBare,
        Library::Libpq,
        Library::Deadpool,
        Library::Sqlx,
        Library::Bb8,
        Library::Hikaricp,
        Library::Pgx,
        Library::Sqlalchemy,
        Library::PsycopgPool,
        Library::Asyncpg,
        Library::NodePostgres,
        Library::PostgresJs,
        Library::PostgresJs3,
        Library::Knex,
        Library::Sequelize,
        Library::Typeorm,
        Library::PrismaAdapterPg,
        Library::Pgbouncer,
        Library::PostgresServer,
        Library::Diesel,
        Library::Rails,
        Library::Asyncpg031,
        Library::SqlalchemyAsyncpg,
        Library::Django,
        Library::DatabaseSql,
        Library::HikaricpSpring,
        Library::Pgjdbc,
        Library::DjangoPool,
    ];

    /// The harness name in the pool matrix, and the key in `proven.json`.
    pub fn id(self) -> &'static str {
        match self {
            Library::QuaintPrisma => "quaint_prisma",
            Library::QuaintBare => "quaint_bare",
            Library::Libpq => "libpq",
            Library::Deadpool => "deadpool",
            Library::Sqlx => "sqlx",
            Library::Bb8 => "bb8",
            Library::Hikaricp => "hikaricp",
            Library::Pgx => "pgx",
            Library::Sqlalchemy => "sqlalchemy",
            Library::PsycopgPool => "psycopg_pool",
            Library::Asyncpg => "asyncpg",
            Library::NodePostgres => "node-postgres",
            Library::PostgresJs => "postgres-js",
            Library::PostgresJs3 => "postgres-js-3",
            Library::Knex => "knex",
            Library::Sequelize => "sequelize",
            Library::Typeorm => "typeorm",
            Library::PrismaAdapterPg => "prisma-adapter-pg",
            Library::Pgbouncer => "pgbouncer",
            Library::PostgresServer => "postgres_server",
            Library::Diesel => "diesel",
            Library::Rails => "rails",
            Library::Asyncpg031 => "asyncpg_031",
            Library::SqlalchemyAsyncpg => "sqlalchemy_asyncpg",
            Library::Django => "django",
            Library::DatabaseSql => "database_sql",
            Library::HikaricpSpring => "hikaricp_spring",
            Library::Pgjdbc => "pgjdbc",
            Library::DjangoPool => "django_pool",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Library::QuaintPrisma => "Prisma engine / quaint + mobc 0.8.5 (DATABASE_URL)",
            Library::QuaintBare => "quaint without checkout check + mobc 0.8.3 (DATABASE_URL)",
            Library::Libpq => "libpq (connection string: psql, psycopg, anything on libpq)",
            Library::Deadpool => "tokio-postgres + deadpool-postgres",
            Library::Sqlx => "sqlx (PgPoolOptions)",
            Library::Bb8 => "bb8 + bb8-postgres",
            Library::Hikaricp => "HikariCP + pgJDBC (properties)",
            Library::Pgx => "pgx pgxpool (connection string)",
            Library::Sqlalchemy => "SQLAlchemy 2 + psycopg 3",
            Library::PsycopgPool => "psycopg_pool",
            Library::Asyncpg => "asyncpg 0.32+ (create_pool)",
            Library::NodePostgres => "node-postgres (pg.Pool)",
            Library::PostgresJs => "postgres.js 4 (postgres(url, options))",
            Library::PostgresJs3 => "postgres.js 3 (postgres(url, options))",
            Library::Knex => "Knex over pg (tarn pool)",
            Library::Sequelize => "Sequelize over pg",
            Library::Typeorm => "TypeORM over pg (DataSource)",
            Library::PrismaAdapterPg => "Prisma 7 with @prisma/adapter-pg (PrismaPg)",
            Library::Pgbouncer => "PgBouncer (pgbouncer.ini)",
            Library::PostgresServer => "PostgreSQL server (postgresql.conf)",
            Library::Diesel => "Diesel + r2d2 (PgConnection)",
            Library::Rails => "Rails ActiveRecord (database.yml)",
            Library::Asyncpg031 => "asyncpg up to 0.31 (create_pool)",
            Library::SqlalchemyAsyncpg => "SQLAlchemy 2 + asyncpg (create_async_engine)",
            Library::Django => "Django (persistent connections, settings.py)",
            Library::DatabaseSql => "Go database/sql + lib/pq",
            Library::HikaricpSpring => "HikariCP + pgJDBC (Spring Boot application.properties)",
            Library::Pgjdbc => "pgJDBC without a pool (JDBC URL and your code)",
            Library::DjangoPool => "Django 5.1+ with the psycopg pool option (OPTIONS \"pool\")",
        }
    }

    /// Why the matrix cannot run this library at all, if it cannot.
    pub(super) fn unprovable(self) -> Option<&'static str> {
        match self {
            Library::PostgresServer => Some(
                "a server setting, not a pool: it lets the server find dead sessions (ghosts) sooner; \
                 it does not stop a client pool from handing out a dead connection",
            ),
            _ => None,
        }
    }
}
