//! The model of each pool: what its settings really do, read from its source. The recipe built
//! from it for a measured path, in each library's own spelling, is in `spelling.rs`.
//!
//! Names mislead. An "idle timeout" often spares the connections a pool keeps at its minimum
//! size; a "lifetime" may count age, not idle time; a health check may have no timeout and hang
//! on the very connection it should catch. [`PoolModel`] records those facts per library, with
//! the file they come from, and each recipe is built from them.

use serde::{Deserialize, Serialize};

/// quaint's (Prisma's) `max_idle_connection_lifetime` when a URL does not set it. Source:
/// prisma-engines quaint/src/connector/postgres (PostgresUrl::parse_query_params), as in
/// [`Library::Quaint`]'s [`PoolModel::source`].
pub const QUAINT_DEFAULT_MAX_IDLE_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(300);

/// A library we write a recipe for; the ids are the pool matrix's harness names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Library {
    Quaint,
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
    Pgbouncer,
    PostgresServer,
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
    pub const ALL: [Library; 13] = [
        Library::Quaint,
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
        Library::Pgbouncer,
        Library::PostgresServer,
    ];

    /// The harness name in the pool matrix, and the key in `proven.json`.
    pub fn id(self) -> &'static str {
        match self {
            Library::Quaint => "quaint",
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
            Library::Pgbouncer => "pgbouncer",
            Library::PostgresServer => "postgres_server",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Library::Quaint => "quaint / Prisma (DATABASE_URL)",
            Library::Libpq => "libpq (connection string: psql, psycopg, anything on libpq)",
            Library::Deadpool => "tokio-postgres + deadpool-postgres",
            Library::Sqlx => "sqlx (PgPoolOptions)",
            Library::Bb8 => "bb8 + bb8-postgres",
            Library::Hikaricp => "HikariCP + pgJDBC (properties)",
            Library::Pgx => "pgx pgxpool (connection string)",
            Library::Sqlalchemy => "SQLAlchemy 2 + psycopg 3",
            Library::PsycopgPool => "psycopg_pool",
            Library::Asyncpg => "asyncpg (create_pool)",
            Library::NodePostgres => "node-postgres (pg.Pool)",
            Library::Pgbouncer => "PgBouncer (pgbouncer.ini)",
            Library::PostgresServer => "PostgreSQL server (postgresql.conf)",
        }
    }

    /// Why the matrix cannot run this library at all, if it cannot.
    pub(super) fn unprovable(self) -> Option<&'static str> {
        match self {
            Library::Quaint => Some(
                "Prisma's engines are downloaded at install time and crates.io's quaint is a 2020 alpha \
                 without these parameters; derived from prisma-engines quaint/src/connector/postgres (PostgresUrl::parse_query_params), \
                 with `simulate --mode fin` and tokio-postgres as the stand-in (docs/recipes.md)",
            ),
            Library::PostgresServer => Some(
                "a server setting, not a pool: it lets the server find dead sessions (ghosts) sooner; \
                 it does not stop a client pool from handing out a dead connection",
            ),
            _ => None,
        }
    }

    pub fn model(self) -> PoolModel {
        match self {
            Library::Quaint => PoolModel {
                clock: Clock::Age,
                minimum_exempt: false,
                shrink: "checked lazily at checkout",
                check: "none before use; socket_timeout bounds every query",
                socket_bound: "socket_timeout (seconds) in the URL",
                keepalive_recipe: false,
                can_evict: true,
                source: "prisma-engines quaint/src/connector/postgres (PostgresUrl::parse_query_params: whole seconds, max_idle_connection_lifetime 300 s by default); mobc >= 0.8.5 (its max_idle_lifetime counts age)",
            },
            Library::Libpq => PoolModel {
                clock: Clock::None,
                minimum_exempt: true,
                shrink: "no pool",
                check: "none",
                socket_bound: "tcp_user_timeout (milliseconds); no read timeout exists",
                keepalive_recipe: true,
                can_evict: false,
                source: "PostgreSQL docs, libpq 'Parameter Key Words'",
            },
            Library::Deadpool => PoolModel {
                clock: Clock::None,
                minimum_exempt: false,
                shrink: "never on its own: Pool::retain closes what you filter out, a pre_recycle hook refuses at checkout",
                check: "RecyclingMethod::Verified runs simple_query(\"\"), bounded only by Timeouts::recycle; a failed or timed-out check drops the object and takes another, unseen by the caller",
                socket_bound: "tcp_user_timeout (whole seconds in a tokio-postgres connection string)",
                keepalive_recipe: true,
                can_evict: true,
                source: "deadpool-postgres 0.14 lib.rs (Manager::recycle); deadpool 0.13 managed/pool.rs (try_recycle, retain), managed/metrics.rs; tokio-postgres 0.7 config.rs (Config::param)",
            },
            Library::Sqlx => PoolModel {
                clock: Clock::Idle,
                minimum_exempt: false,
                shrink: "only in the maintenance task, every min(idle_timeout, max_lifetime); connections below min_connections are reopened after",
                check: "test_before_acquire pings, bounded only by acquire_timeout for the whole acquire (then PoolTimedOut)",
                socket_bound: "none: sqlx 0.9 sets no keepalive and no TCP_USER_TIMEOUT",
                keepalive_recipe: false,
                can_evict: true,
                source: "sqlx-core 0.9 pool/options.rs, pool/inner.rs (spawn_maintenance_tasks, min_connections_maintenance), pool/idle.rs",
            },
            Library::Bb8 => PoolModel {
                clock: Clock::Idle,
                minimum_exempt: false,
                shrink: "idle_timeout and max_lifetime apply only when the reaper runs (reaper_rate, 30 s by default), min_idle included; new connections are opened up to min_idle after",
                check: "test_on_check_out runs simple_query(\"\"), bounded only by connection_timeout for the whole get()",
                socket_bound: "tcp_user_timeout (whole seconds in a tokio-postgres connection string)",
                keepalive_recipe: true,
                can_evict: true,
                source: "bb8 0.9 api.rs (Builder), inner.rs (PoolInner::get, put_back), internals.rs (PoolInternals::reap); bb8-postgres 0.9",
            },
            Library::Hikaricp => PoolModel {
                clock: Clock::Age,
                minimum_exempt: true,
                shrink: "maxLifetime (age, 30 s at least) retires each connection; idleTimeout (10 s at least) only above minimumIdle, at the housekeeper's run every 30 s",
                check: "isValid on borrow after 500 ms idle, bounded by validationTimeout (250 ms at least); a failed check tries the next connection, oldest first",
                socket_bound: "pgJDBC socketTimeout (seconds; also ends slow queries)",
                keepalive_recipe: false,
                can_evict: true,
                source: "HikariCP 2.7.9 (Debian libhikaricp-java, decompiled): HikariPool.getConnection, HouseKeeper.run, PoolBase.isConnectionAlive, HikariConfig.validateNumerics; pgJDBC 42.5 PGProperty",
            },
            Library::Pgx => PoolModel {
                clock: Clock::Idle,
                minimum_exempt: false,
                shrink: "every connection idle past pool_max_conn_idle_time goes at the next health-check tick (pool_health_check_period, 1 min by default), so idle time + period is what counts",
                check: "none: v4 pings nothing on Acquire, and the health check only compares timestamps",
                socket_bound: "a context deadline per query (pgconn 1.11 parses no keepalive or tcp_user_timeout key; its dialer keeps alive every 5 min)",
                keepalive_recipe: false,
                can_evict: true,
                source: "pgx 4.15 pgxpool/pool.go (ParseConfig, backgroundHealthCheck, checkIdleConnsHealth); pgconn 1.11 config.go, pgconn.go; puddle 1.2 pool.go",
            },
            Library::Sqlalchemy => PoolModel {
                clock: Clock::Age,
                minimum_exempt: false,
                shrink: "QueuePool never shrinks on idle; pool_recycle replaces a connection at checkout once it is older than the setting",
                check: "pool_pre_ping runs SELECT 1 with no timeout of its own (tcp_user_timeout bounds it behind conntrack, nothing behind a proxy); a failed ping invalidates every older pooled connection",
                socket_bound: "connect_args: libpq keepalives and tcp_user_timeout",
                keepalive_recipe: true,
                can_evict: true,
                source: "SQLAlchemy 2.0 pool/base.py (_ConnectionRecord.get_connection, _ConnectionFairy._checkout), pool/impl.py (QueuePool), engine/default.py (do_ping)",
            },
            Library::PsycopgPool => PoolModel {
                clock: Clock::Age,
                minimum_exempt: true,
                shrink: "max_idle closes at most one connection above min_size per max_idle period; max_lifetime (age) is checked only when a connection is returned, never at getconn",
                check: "check=ConnectionPool.check_connection runs execute(\"\") with no timeout, and each failed check makes getconn back off 1, 2, 4 s",
                socket_bound: "kwargs: libpq keepalives and tcp_user_timeout",
                keepalive_recipe: true,
                can_evict: true,
                source: "psycopg_pool 3.3 pool.py (_shrink_pool, _return_connection, check_connection, _getconn_with_check_loop), base.py (_set_connection_expiry_date)",
            },
            Library::Asyncpg => PoolModel {
                clock: Clock::Idle,
                minimum_exempt: true,
                shrink: "each connection above min_size is closed exactly max_inactive_connection_lifetime after its last use; those at min_size never",
                check: "none on acquire beyond is_closed() (an EOF is noticed by the event loop and reconnected)",
                socket_bound: "command_timeout (seconds, also ends slow queries); no client keepalive option, so server_settings asks the server for keepalives",
                keepalive_recipe: true,
                can_evict: true,
                source: "asyncpg 0.32 pool.py (PoolConnectionHolder._setup_inactive_callback, _deactivate_inactive_connection, Pool._maintain_min_size), connection.py (_cleanup)",
            },
            Library::NodePostgres => PoolModel {
                clock: Clock::Age,
                minimum_exempt: true,
                shrink: "idleTimeoutMillis closes idle clients only above min; maxLifetimeSeconds (age) retires every client, min included, each on its own timer",
                check: "none on checkout (an EOF on an idle client removes it)",
                socket_bound: "query_timeout (client side, milliseconds; works behind a proxy, also ends slow queries); no TCP_USER_TIMEOUT in Node",
                keepalive_recipe: true,
                can_evict: true,
                source: "pg-pool 3.14 index.js (_afterConnect, _release, _isAboveMin); pg 8.23 lib/client.js (query_timeout, keepAlive)",
            },
            Library::Pgbouncer => PoolModel {
                clock: Clock::Age,
                minimum_exempt: true,
                shrink: "server_idle_timeout is skipped at or below min_pool_size; server_lifetime (age) applies to all, but closes at most one connection per server_lifetime / pool_size",
                check: "server_check_query only after server_check_delay (30 s) idle, with no timeout of its own",
                socket_bound: "tcp_user_timeout (milliseconds) and tcp_keep* toward the server; query_timeout (seconds) on the client side works behind a proxy",
                keepalive_recipe: true,
                can_evict: true,
                source: "PgBouncer 1.18 src/janitor.c (check_unused_servers, check_pool_size), src/objects.c (life_over), doc/config.md",
            },
            Library::PostgresServer => PoolModel {
                clock: Clock::None,
                minimum_exempt: false,
                shrink: "not a pool",
                check: "server keepalives find dead clients",
                socket_bound: "tcp_keepalives_*, tcp_user_timeout (milliseconds)",
                keepalive_recipe: true,
                can_evict: false,
                source: "PostgreSQL docs, 'Connections and Authentication'",
            },
        }
    }
}
