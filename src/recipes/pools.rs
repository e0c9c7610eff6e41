//! The model of each pool: what its settings really do, read from its source, and the recipe
//! derived from it for a measured path.
//!
//! Names mislead. An "idle timeout" often spares the connections a pool keeps at its minimum
//! size; a "lifetime" may count age, not idle time; a health check may have no timeout and hang
//! on the very connection it should catch. [`PoolModel`] records those facts per library, with
//! the file they come from, and each recipe below is built from them.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::proof;
use super::{millis, secs_down, secs_up, Measurement, Recipe, Setting, Timings, Variant};
use crate::http::human;

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
    fn unprovable(self) -> Option<&'static str> {
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

/// Builds one library's recipe.
pub fn recipe(library: Library, variant: Variant, m: &Measurement, t: &Timings) -> Recipe {
    let Shape {
        settings,
        text,
        why,
        first_request_bound,
    } = shape(library, variant, t);
    Recipe {
        library,
        title: library.title(),
        variant,
        settings,
        text,
        why,
        first_request_bound,
        proof: proof::proof_of(library, variant, m, library.unprovable()),
        source: library.model().source,
    }
}

struct Shape {
    settings: Vec<Setting>,
    text: String,
    why: String,
    first_request_bound: std::time::Duration,
}

/// Seconds as a number a Python library takes: whole when whole, else to the millisecond.
fn seconds_value(d: std::time::Duration) -> serde_json::Value {
    if d.subsec_millis() == 0 {
        json!(d.as_secs())
    } else {
        json!(d.as_millis() as f64 / 1000.0)
    }
}

fn set(key: &'static str, value: serde_json::Value) -> Setting {
    Setting { key, value }
}

/// PostgreSQL's own keepalive settings (`postgresql.conf`, or per session through a driver).
fn server_keepalives(t: &Timings) -> Vec<Setting> {
    vec![
        set("tcp_keepalives_idle", json!(secs_down(t.keepalive_idle))),
        set(
            "tcp_keepalives_interval",
            json!(secs_down(t.keepalive_interval)),
        ),
        set("tcp_keepalives_count", json!(t.keepalive_count)),
        set("tcp_user_timeout", json!(millis(t.dead_bound))),
    ]
}

/// Which connection-string dialect keepalive keys are written in.
#[derive(Clone, Copy)]
enum ConnString {
    /// libpq (and psycopg): `keepalives_count`, `tcp_user_timeout` in milliseconds.
    Libpq,
    /// tokio-postgres: `keepalives_retries`, `tcp_user_timeout` in whole seconds.
    TokioPostgres,
}

/// TCP keepalives scaled to the threshold, and TCP_USER_TIMEOUT, as a connection string takes them.
fn keepalive_keys(t: &Timings, dialect: ConnString) -> Vec<Setting> {
    let (count_key, user_timeout) = match dialect {
        ConnString::Libpq => ("keepalives_count", millis(t.dead_bound)),
        ConnString::TokioPostgres => ("keepalives_retries", secs_up(t.dead_bound)),
    };
    vec![
        set("keepalives", json!(1)),
        set("keepalives_idle", json!(secs_down(t.keepalive_idle))),
        set(
            "keepalives_interval",
            json!(secs_down(t.keepalive_interval)),
        ),
        set(count_key, json!(t.keepalive_count)),
        set("tcp_user_timeout", json!(user_timeout)),
    ]
}

fn conninfo(settings: &[Setting]) -> String {
    settings
        .iter()
        .map(|s| format!("{}={}", s.key, plain(&s.value)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `key = value` lines, as postgresql.conf and pgbouncer.ini take them.
fn config_file_lines(settings: &[Setting]) -> String {
    settings
        .iter()
        .map(|s| format!("{} = {}", s.key, plain(&s.value)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn shape(library: Library, variant: Variant, t: &Timings) -> Shape {
    let lifetime_s = secs_down(t.lifetime);
    let dead_s = secs_up(t.dead_bound);
    let check_s = secs_up(t.check_timeout);
    let one_second = std::time::Duration::from_secs(1);
    match (library, variant) {
        (Library::Quaint, _) => {
            let read_s = secs_up(t.read_timeout);
            let settings = vec![
                set("max_idle_connection_lifetime", json!(lifetime_s)),
                set("socket_timeout", json!(read_s)),
            ];
            Shape {
                text: format!("?max_idle_connection_lifetime={lifetime_s}&socket_timeout={read_s}"),
                settings,
                why: format!(
                    "quaint's pool retires connections {lifetime_s} s after they were opened, before the path \
                     forgets them, and socket_timeout turns a query on a connection that died anyway into an \
                     error after {read_s} s instead of a hang"
                ),
                first_request_bound: t.read_timeout + one_second,
            }
        }
        (Library::Libpq, _) => {
            let settings = keepalive_keys(t, ConnString::Libpq);
            Shape {
                text: conninfo(&settings),
                settings,
                why: format!(
                    "a keepalive every {} s resets the box's idle timer, so the flow never looks idle; \
                     tcp_user_timeout ends a connection the box forgot anyway within {dead_s} s",
                    secs_down(t.keepalive_idle)
                ),
                first_request_bound: t.dead_bound + one_second,
            }
        }
        (Library::PostgresServer, _) => {
            let settings = server_keepalives(t);
            Shape {
                text: config_file_lines(&settings),
                settings,
                why: "the server probes idle clients before the box forgets them, and ends the sessions of clients that are gone (ghosts) instead of keeping them for hours".to_string(),
                first_request_bound: t.dead_bound + one_second,
            }
        }
        (Library::Deadpool, Variant::Eviction) => {
            let half = seconds_value(t.lifetime / 2);
            let settings = vec![
                set("recycling_method", json!("Verified")),
                set("recycle_timeout", seconds_value(t.check_timeout)),
                set("pre_recycle_max_idle", seconds_value(t.lifetime)),
                set("retain_interval", half.clone()),
                set("retain_max_idle", half.clone()),
                set("tcp_user_timeout", json!(dead_s)),
            ];
            Shape {
                text: format!(
                    "connection string: tcp_user_timeout={dead_s}\n\
                     ManagerConfig {{ recycling_method: RecyclingMethod::Verified }}, .recycle_timeout(Some({} s))\n\
                     .pre_recycle(Hook::sync_fn(|_, m| if m.last_used() >= {} s {{ Err(..) }} else {{ Ok(()) }}))\n\
                     every {half} s (retain_interval): pool.retain(|_, m| m.last_used() < {half} s)",
                    seconds_value(t.check_timeout),
                    seconds_value(t.lifetime)
                ),
                settings,
                why: format!(
                    "deadpool has no lifetime of its own: retain closes connections idle {} in the background, \
                     before the path forgets them (else they linger as ghost sessions), the pre_recycle hook \
                     refuses any older one at checkout, and a Verified check bounded to {check_s} s replaces a \
                     dead one without the caller seeing it",
                    human(t.lifetime / 2)
                ),
                first_request_bound: one_second,
            }
        }
        (Library::Deadpool, Variant::Keepalive) | (Library::Bb8, Variant::Keepalive) => {
            let settings = keepalive_keys(t, ConnString::TokioPostgres);
            Shape {
                text: format!("connection string: {}", conninfo(&settings)),
                settings,
                why: keepalive_why(t),
                first_request_bound: one_second,
            }
        }
        (Library::Sqlx, _) => {
            let read_s = secs_up(t.read_timeout);
            let half = seconds_value(t.lifetime / 2);
            let settings = vec![
                set("idle_timeout", half.clone()),
                set("test_before_acquire", json!(true)),
                set("acquire_timeout", json!(read_s)),
            ];
            Shape {
                text: format!(
                    "PgPoolOptions::new()\n    .idle_timeout(Duration::from_secs_f64({half}))\n    .test_before_acquire(true)\n    .acquire_timeout(Duration::from_secs({read_s}))"
                ),
                settings,
                why: format!(
                    "sqlx retires idle connections only in its maintenance task, which runs every idle_timeout, \
                     so idle_timeout at half the safe lifetime ({}) closes each one before the path forgets it; \
                     acquire_timeout bounds a check that gets no answer",
                    human(t.lifetime / 2)
                ),
                first_request_bound: one_second,
            }
        }
        (Library::Bb8, Variant::Eviction) => {
            let read_s = secs_up(t.read_timeout);
            let half = seconds_value(t.lifetime / 2);
            let settings = vec![
                set("idle_timeout", half.clone()),
                set("reaper_rate", half.clone()),
                set("test_on_check_out", json!(true)),
                set("connection_timeout", json!(read_s)),
                set("tcp_user_timeout", json!(dead_s)),
            ];
            Shape {
                text: format!(
                    "connection string: tcp_user_timeout={dead_s}\n\
                     Pool::builder()\n    .idle_timeout(Some(Duration::from_secs_f64({half})))\n    .reaper_rate(Duration::from_secs_f64({half}))\n    .test_on_check_out(true)\n    .connection_timeout(Duration::from_secs({read_s}))"
                ),
                settings,
                why: format!(
                    "bb8 applies idle_timeout only when its reaper runs (every 30 s unless reaper_rate says \
                     otherwise), so both at half the safe lifetime ({}) close every idle connection, min_idle \
                     included, before the path forgets it",
                    human(t.lifetime / 2)
                ),
                first_request_bound: one_second,
            }
        }
        (Library::Hikaricp, _) => hikaricp(t),
        (Library::Pgx, _) => {
            let idle = go_duration(t.lifetime / 2);
            let settings = vec![
                set("pool_max_conn_idle_time", json!(idle)),
                set("pool_health_check_period", json!(idle)),
                set("query_timeout", json!(go_duration(t.read_timeout))),
            ];
            Shape {
                text: format!(
                    "?pool_max_conn_idle_time={idle}&pool_health_check_period={idle}\n\
                     and in code, each query under context.WithTimeout (query_timeout={})",
                    go_duration(t.read_timeout)
                ),
                settings,
                why: format!(
                    "pgxpool v4 never checks a connection before handing it out and closes idle ones only \
                     on its health-check tick, so closing them after {idle} and checking every {idle} keeps \
                     every connection's idle under {}; the context deadline turns anything else into an error",
                    human(t.lifetime)
                ),
                first_request_bound: one_second,
            }
        }
        (Library::Sqlalchemy, Variant::Eviction) => {
            let connect = vec![set("tcp_user_timeout", json!(millis(t.dead_bound)))];
            let settings = vec![
                set("pool_recycle", json!(lifetime_s)),
                set("pool_pre_ping", json!(true)),
                set("connect_args", kwargs_object(&connect)),
            ];
            Shape {
                text: format!(
                    "create_engine(url, pool_recycle={lifetime_s}, pool_pre_ping=True,\n    connect_args={})",
                    python_dict(&connect)
                ),
                settings,
                why: format!(
                    "pool_recycle counts age since connect and is checked at checkout, so SQLAlchemy never \
                     hands out a connection older than {lifetime_s} s, one the path could have forgotten"
                ),
                first_request_bound: one_second,
            }
        }
        (Library::Sqlalchemy, Variant::Keepalive) => {
            let connect = keepalive_keys(t, ConnString::Libpq);
            let settings = vec![
                set("pool_pre_ping", json!(true)),
                set("connect_args", kwargs_object(&connect)),
            ];
            Shape {
                text: format!(
                    "create_engine(url, pool_pre_ping=True,\n    connect_args={})",
                    python_dict(&connect)
                ),
                settings,
                why: keepalive_why(t),
                first_request_bound: one_second,
            }
        }
        (Library::PsycopgPool, Variant::Eviction) => {
            let interval = t.lifetime / 2;
            let kwargs = vec![set("tcp_user_timeout", json!(millis(t.dead_bound)))];
            let settings = vec![
                set("kwargs", kwargs_object(&kwargs)),
                set("check_interval", seconds_value(interval)),
            ];
            Shape {
                text: format!(
                    "pool = ConnectionPool(conninfo, kwargs={})\n\
                     # and in your code: pool.check() every {} s (check_interval), e.g.\n\
                     threading.Thread(target=lambda: [time.sleep({}) or pool.check() for _ in itertools.count()], daemon=True).start()",
                    python_dict(&kwargs),
                    seconds_value(interval),
                    seconds_value(interval)
                ),
                settings,
                why: format!(
                    "psycopg_pool never looks at idle time before lending a connection (max_idle spares \
                     min_size, max_lifetime is checked only on return), so the application pings the idle \
                     ones itself every {}, which also keeps the path from ever seeing them idle",
                    human(interval)
                ),
                first_request_bound: one_second,
            }
        }
        (Library::PsycopgPool, Variant::Keepalive) => {
            let kwargs = keepalive_keys(t, ConnString::Libpq);
            let settings = vec![
                set("check", json!("check_connection")),
                set("kwargs", kwargs_object(&kwargs)),
            ];
            Shape {
                text: format!(
                    "ConnectionPool(conninfo, check=ConnectionPool.check_connection,\n    kwargs={})",
                    python_dict(&kwargs)
                ),
                settings,
                why: keepalive_why(t),
                first_request_bound: one_second,
            }
        }
        (Library::Asyncpg, Variant::Eviction) => {
            let read_s = secs_up(t.read_timeout);
            let settings = vec![
                set("min_size", json!(0)),
                set(
                    "max_inactive_connection_lifetime",
                    seconds_value(t.lifetime),
                ),
                set("command_timeout", json!(read_s)),
            ];
            Shape {
                text: format!(
                    "asyncpg.create_pool(dsn, min_size=0, max_inactive_connection_lifetime={}, command_timeout={read_s})",
                    seconds_value(t.lifetime)
                ),
                settings,
                why: format!(
                    "asyncpg closes inactive connections only above min_size, so with a floor of 0 every \
                     connection idle {} is closed before the path forgets it; command_timeout ends any \
                     other dead read after {read_s} s",
                    human(t.lifetime)
                ),
                first_request_bound: one_second,
            }
        }
        (Library::Asyncpg, Variant::Keepalive) => {
            let server = server_keepalives(t);
            let settings = vec![set("server_settings", kwargs_object(&server))];
            Shape {
                text: format!(
                    "asyncpg.create_pool(dsn, server_settings={})",
                    python_dict_of_strings(&server)
                ),
                settings,
                why: format!(
                    "asyncpg cannot set client keepalives, so the server sends them on each session: a \
                     keepalive every {} s resets the box's idle timer, and the connections stay warm",
                    secs_down(t.keepalive_idle)
                ),
                first_request_bound: one_second,
            }
        }
        (Library::NodePostgres, variant) => {
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
                first_request_bound: one_second,
            }
        }
        (Library::Pgbouncer, variant) => {
            let read_s = secs_up(t.read_timeout);
            let settings = match variant {
                Variant::Eviction => vec![
                    set("server_lifetime", seconds_value(t.lifetime / 2)),
                    set("query_timeout", json!(read_s)),
                ],
                Variant::Keepalive => vec![
                    set("tcp_keepalive", json!(1)),
                    set("tcp_keepidle", json!(secs_down(t.keepalive_idle))),
                    set("tcp_keepintvl", json!(secs_down(t.keepalive_interval))),
                    set("tcp_keepcnt", json!(t.keepalive_count)),
                    set("tcp_user_timeout", json!(millis(t.dead_bound))),
                    set("query_timeout", json!(read_s)),
                ],
            };
            let why = match variant {
                Variant::Eviction => format!(
                    "server_idle_timeout spares min_pool_size; server_lifetime does not, but closes at most \
                     one server connection per server_lifetime / pool_size, so half the safe lifetime ({}) \
                     retires the whole pool before the path forgets it; query_timeout bounds anything left",
                    human(t.lifetime / 2)
                ),
                Variant::Keepalive => keepalive_why(t),
            };
            Shape {
                text: config_file_lines(&settings),
                settings,
                why,
                first_request_bound: one_second,
            }
        }
    }
}

/// HikariCP 2.7.9 validates on borrow (after 0.5 s idle) with `validationTimeout`, and cannot
/// retire connections younger than 30 s (`maxLifetime` below that is reset to 30 min).
fn hikaricp(t: &Timings) -> Shape {
    const HIKARI_MIN_LIFETIME_MS: u64 = 30_000;
    /// HikariCP's default maximumPoolSize: what the validation timeout is sized for.
    const POOL: u64 = 10;
    let lifetime_ms = millis(t.lifetime);
    let read_s = secs_up(t.read_timeout);
    let one_second = std::time::Duration::from_secs(1);
    if lifetime_ms >= HIKARI_MIN_LIFETIME_MS {
        let settings = vec![
            set("maxLifetime", json!(lifetime_ms)),
            set("validationTimeout", json!(1000)),
            set("dataSource.socketTimeout", json!(read_s)),
        ];
        return Shape {
            text: format!(
                "maxLifetime={lifetime_ms}\nvalidationTimeout=1000\ndataSource.socketTimeout={read_s}"
            ),
            settings,
            why: format!(
                "maxLifetime retires every connection by age before the path forgets it ({}), the \
                 check on borrow catches anything else within 1 s, and socketTimeout ends any other dead read",
                human(t.lifetime)
            ),
            first_request_bound: one_second,
        };
    }
    let validation_ms = (lifetime_ms / POOL).clamp(250, 1000);
    let settings = vec![
        set("validationTimeout", json!(validation_ms)),
        set("dataSource.socketTimeout", json!(read_s)),
    ];
    Shape {
        text: format!(
            "validationTimeout={validation_ms}\ndataSource.socketTimeout={read_s}\n\
             # sized for maximumPoolSize <= {POOL}: a larger pool needs validationTimeout <= {lifetime_ms} / maximumPoolSize (250 at least)"
        ),
        settings,
        why: format!(
            "HikariCP 2.7.9 cannot retire connections younger than 30 s, but it checks every connection \
             idle over 0.5 s before lending it: a check that gets no answer in {validation_ms} ms replaces the \
             connection, so a whole pool of dead ones is got through within {}; the first request after a long \
             idle may wait that long",
            human(t.lifetime)
        ),
        first_request_bound: t.lifetime + one_second,
    }
}

/// A Go duration string as pgx parses it: whole seconds from 10 s up, else milliseconds.
fn go_duration(d: std::time::Duration) -> String {
    if d >= std::time::Duration::from_secs(10) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn keepalive_why(t: &Timings) -> String {
    format!(
        "a keepalive every {} s resets the box's idle timer, so the flow never looks idle and the \
         connections stay warm; the pool's check and tcp_user_timeout catch one the box forgot anyway",
        secs_down(t.keepalive_idle)
    )
}

/// PostgreSQL settings as asyncpg's `server_settings` takes them: strings.
fn python_dict_of_strings(settings: &[Setting]) -> String {
    let items: Vec<String> = settings
        .iter()
        .map(|s| format!("\"{}\": \"{}\"", s.key, plain(&s.value)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn kwargs_object(settings: &[Setting]) -> serde_json::Value {
    serde_json::Value::Object(
        settings
            .iter()
            .map(|s| (s.key.to_string(), s.value.clone()))
            .collect(),
    )
}

fn python_dict(settings: &[Setting]) -> String {
    let items: Vec<String> = settings
        .iter()
        .map(|s| format!("\"{}\": {}", s.key, s.value))
        .collect();
    format!("{{{}}}", items.join(", "))
}
