//! Copy-paste settings for the pools people actually run, computed from a measured bracket.
//!
//! Every setting name and unit below was checked against the library's own documentation or
//! source (cited per entry; see also `../shared/DOMAIN.md`). `lifetime` is the recommended max
//! idle lifetime (strictly below the lower bound), `socket` the recommended socket timeout.

use std::time::Duration;

/// One library's settings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Advice {
    pub library: &'static str,
    pub settings: String,
    /// Where the setting names and units come from.
    pub source: &'static str,
}

/// Settings for every library we know, for a safe idle lifetime and socket timeout.
pub fn for_pools(lifetime: Duration, socket: Duration) -> Vec<Advice> {
    let secs = lifetime.as_secs().max(1);
    let ms = lifetime.as_millis().max(1000);
    let socket_s = socket.as_secs().max(1);
    // Keepalives must start well before the box forgets the flow.
    let keepalive_s = (secs / 2).max(1);
    vec![
        Advice {
            library: "quaint / Prisma (DATABASE_URL)",
            // quaint's postgres URL parser: max_idle_connection_lifetime, socket_timeout,
            // connect_timeout and pool_timeout are whole seconds.
            settings: format!("?max_idle_connection_lifetime={secs}&socket_timeout={socket_s}&connect_timeout=5&pool_timeout=10"),
            source: "prisma/quaint src/connector/postgres (URL parameters, seconds)",
        },
        Advice {
            library: "libpq (connection string)",
            // libpq: keepalives_idle/_interval in seconds, tcp_user_timeout in milliseconds.
            settings: format!("keepalives=1 keepalives_idle={keepalive_s} keepalives_interval=10 keepalives_count=3 tcp_user_timeout={}", socket.as_millis()),
            source: "PostgreSQL docs, libpq 'Parameter Key Words'",
        },
        Advice {
            library: "tokio-postgres / deadpool-postgres",
            // tokio-postgres config.rs: keepalives_idle and tcp_user_timeout are read in seconds
            // in a connection string. deadpool: RecyclingMethod::Verified checks before reuse.
            settings: format!("conn string: keepalives_idle={keepalive_s} tcp_user_timeout={socket_s}; deadpool: RecyclingMethod::Verified and drop connections idle longer than {secs}s"),
            source: "sfackler/rust-postgres tokio-postgres/src/config.rs; deadpool-postgres RecyclingMethod",
        },
        Advice {
            library: "sqlx",
            settings: format!("PgPoolOptions::new().idle_timeout(Duration::from_secs({secs})).test_before_acquire(true)"),
            source: "sqlx PoolOptions::idle_timeout (default 10 min)",
        },
        Advice {
            library: "bb8",
            settings: format!("Pool::builder().idle_timeout(Some(Duration::from_secs({secs}))).test_on_check_out(true)"),
            source: "bb8 api.rs Builder::idle_timeout",
        },
        hikari(lifetime, socket_s),
        Advice {
            library: "pgx (pgxpool)",
            settings: format!("pool_max_conn_idle_time={secs}s (or Config.MaxConnIdleTime = {secs} * time.Second)"),
            source: "jackc/pgx pgxpool/pool.go (MaxConnIdleTime, default 30 min)",
        },
        Advice {
            library: "SQLAlchemy",
            settings: format!("create_engine(url, pool_pre_ping=True, pool_recycle={secs})"),
            source: "SQLAlchemy docs, 'Dealing with Disconnects' (pool_recycle in seconds)",
        },
        Advice {
            library: "psycopg_pool",
            settings: format!("ConnectionPool(conninfo, max_idle={secs}, check=ConnectionPool.check_connection)"),
            source: "psycopg_pool API (max_idle in seconds)",
        },
        Advice {
            library: "node-postgres (pg.Pool)",
            settings: format!("new Pool({{ idleTimeoutMillis: {ms}, keepAlive: true, keepAliveInitialDelayMillis: {} }})", keepalive_s * 1000),
            source: "node-postgres docs, pg.Pool (milliseconds)",
        },
        Advice {
            library: "PgBouncer",
            settings: format!("server_idle_timeout = {secs}\ntcp_keepalive = 1\ntcp_keepidle = {keepalive_s}"),
            source: "pgbouncer doc/config.md (seconds)",
        },
        Advice {
            library: "PostgreSQL server (reaps ghost sessions)",
            settings: format!("tcp_keepalives_idle = {keepalive_s}\ntcp_keepalives_interval = 10\ntcp_keepalives_count = 3"),
            source: "PostgreSQL docs, 'Connections and Authentication' (seconds; 0 = OS default 7200)",
        },
    ]
}

/// HikariCP refuses `keepaliveTime` and `maxLifetime` below 30 s and `idleTimeout` below 10 s
/// (it silently resets them), and `idleTimeout` only retires connections above `minimumIdle`.
/// Its keepalive is a real query, so it also resets a middlebox's idle timer.
fn hikari(lifetime: Duration, socket_s: u64) -> Advice {
    let ms = lifetime.as_millis();
    let settings = if ms >= 30_000 {
        format!("keepaliveTime={ms} (below maxLifetime); JDBC socketTimeout={socket_s} (pgJDBC, seconds)")
    } else {
        format!(
            "keepaliveTime cannot go below 30000 ms, above this path's safe {ms} ms: set minimumIdle=0 and idleTimeout=10000, \
             validate on borrow (JDBC4 isValid, the default), and JDBC socketTimeout={socket_s} (pgJDBC, seconds)"
        )
    };
    Advice {
        library: "HikariCP",
        settings,
        source: "brettwooldridge/HikariCP README, 'Frequently used' (milliseconds; keepaliveTime and maxLifetime >= 30000, idleTimeout >= 10000); pgJDBC socketTimeout (seconds)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_each_library() {
        let advice = for_pools(Duration::from_secs(48), Duration::from_secs(10));
        let find = |lib: &str| {
            advice
                .iter()
                .find(|a| a.library.starts_with(lib))
                .unwrap()
                .settings
                .clone()
        };
        assert!(find("quaint").contains("max_idle_connection_lifetime=48&socket_timeout=10"));
        assert!(
            find("libpq").contains("tcp_user_timeout=10000"),
            "libpq takes milliseconds"
        );
        assert!(find("HikariCP").contains("keepaliveTime=48000"));
        assert!(find("node-postgres").contains("idleTimeoutMillis: 48000"));
        assert!(find("SQLAlchemy").contains("pool_recycle=48"));
        assert!(find("PostgreSQL server").contains("tcp_keepalives_idle = 24"));
    }

    #[test]
    fn hikari_below_its_minimum_says_so_instead_of_a_value_it_would_reset() {
        let advice = for_pools(Duration::from_secs(12), Duration::from_secs(10));
        let hikari = &advice
            .iter()
            .find(|a| a.library == "HikariCP")
            .unwrap()
            .settings;
        assert!(!hikari.contains("keepaliveTime=30000"), "{hikari}");
        assert!(hikari.contains("cannot go below 30000 ms"), "{hikari}");
    }
}
