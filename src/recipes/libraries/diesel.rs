//! Diesel's PgConnection (libpq) in an r2d2 pool. r2d2 0.8 retires idle connections only in a
//! reaper that runs every 30 s, a rate it does not let you set, so on a short path the eviction
//! recipe is a manager that refuses, at checkout, a connection that sent nothing for the safe
//! lifetime. The text is Rust that compiles as printed (items: a manager and `build_pool`).

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{keepalive_keys, seconds_value, set, ConnString, Shape};
use super::super::{millis, secs_down, secs_up, Timings, Variant};
use super::rust_code::duration_f64;
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "diesel 2.4.0 with r2d2 0.8.10 (libpq underneath): read there, and the code compiled against them",
    clock: Clock::Idle,
    minimum_exempt: false,
    shrink: "idle_timeout (since check-in, 10 min by default) and max_lifetime (age, 30 min) apply only in the reaper, every 30 s, a rate r2d2 0.8 does not let you set (Builder::reaper_rate is crate-private); min_idle is not spared, the pool opens new ones up to min_idle (max_size by default) after",
    check: "test_on_check_out (on by default) runs SELECT 1 with no bound of its own: connection_timeout bounds only the wait for a free connection; libpq's tcp_user_timeout bounds it behind conntrack, nothing behind a proxy; idle connections are handed out newest first",
    socket_bound: "libpq keys in the database URL (keepalives, keepalives_idle, keepalives_interval, keepalives_count, tcp_user_timeout in milliseconds); no read timeout",
    keepalive_recipe: true,
    can_evict: true,
    source: "r2d2 0.8.10 lib.rs (Pool::get_timeout, try_get_inner, put_back, reap_connections, establish_idle_connections), config.rs (Builder defaults, reaper_rate); diesel 2.4 r2d2.rs (ConnectionManager: is_valid runs CheckConnectionQuery, has_broken), pg/connection/mod.rs (R2D2Connection for PgConnection), connection/instrumentation.rs (Instrumentation, FinishQuery)",
};

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    match variant {
        Variant::Eviction => eviction(t),
        Variant::Keepalive => keepalive(t),
    }
}

const MANAGER: &str = r#"// Cargo.toml: diesel = { version = "2.4", features = ["postgres", "r2d2"] }
use std::time::{Duration, Instant};
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, ManageConnection, Pool, PoolError};

/// When its connection last finished a query (the r2d2 checkout test is one).
pub struct LastQuery(Instant);

impl Instrumentation for LastQuery {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::FinishQuery { .. } = event {
            *self = LastQuery(Instant::now());
        }
    }
}

/// diesel's manager, but a connection idle past `max_idle` fails r2d2's checkout test,
/// with no query sent: r2d2 drops it and hands out another, or opens one.
#[derive(Debug)]
pub struct IdleLimited {
    inner: ConnectionManager<PgConnection>,
    max_idle: Duration,
}

impl ManageConnection for IdleLimited {
    type Connection = PgConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<PgConnection, Self::Error> {
        let mut conn = self.inner.connect()?;
        conn.set_instrumentation(LastQuery(Instant::now()));
        Ok(conn)
    }

    fn is_valid(&self, conn: &mut PgConnection) -> Result<(), Self::Error> {
        if let Some(LastQuery(at)) = conn.instrumentation().downcast_ref::<LastQuery>() {
            if at.elapsed() >= self.max_idle {
                let why = "idle longer than the path keeps a flow".to_string();
                return Err(diesel::r2d2::Error::ConnectionError(ConnectionError::BadConnection(why)));
            }
        }
        self.inner.is_valid(conn)
    }

    fn has_broken(&self, conn: &mut PgConnection) -> bool {
        self.inner.has_broken(conn)
    }
}
"#;

fn eviction(t: &Timings) -> Shape {
    let dead_ms = millis(t.dead_bound);
    let settings = vec![
        set("max_idle", seconds_value(t.lifetime)),
        set("idle_timeout", seconds_value(t.lifetime / 2)),
        set("test_on_check_out", json!(true)),
        set("tcp_user_timeout", json!(dead_ms)),
    ];
    let text = format!(
        "{MANAGER}\npub fn build_pool(database_url: &str, max_size: u32) -> Result<Pool<IdleLimited>, PoolError> {{\n    \
         let tcp_user_timeout_ms: u64 = {dead_ms};\n    \
         let sep = if database_url.contains('?') {{ '&' }} else {{ '?' }};\n    \
         let url = format!(\"{{database_url}}{{sep}}tcp_user_timeout={{tcp_user_timeout_ms}}\");\n    \
         let manager = IdleLimited {{ inner: ConnectionManager::new(url), max_idle: {} }};\n    \
         Pool::builder()\n        .max_size(max_size)\n        .test_on_check_out(true)\n        \
         .idle_timeout(Some({}))\n        .build(manager)\n}}",
        duration_f64(t.lifetime),
        duration_f64(t.lifetime / 2)
    );
    Shape {
        text,
        settings,
        why: format!(
            "r2d2 0.8 applies idle_timeout only in a reaper that runs every 30 s, and its SELECT 1 on \
             checkout has no bound of its own (none at all behind a proxy), so IdleLimited fails that \
             test, with no round trip, for a connection idle {} or more, before the path forgets it; \
             the reaper still closes those idle over {}, and tcp_user_timeout ends a check on a flow \
             that died anyway behind conntrack within {} s",
            human(t.lifetime),
            human(t.lifetime / 2),
            secs_up(t.dead_bound)
        ),
        first_request_bound: std::time::Duration::from_secs(1),
    }
}

fn keepalive(t: &Timings) -> Shape {
    let settings = keepalive_keys(t, ConnString::Libpq);
    let query: Vec<String> = settings
        .iter()
        .map(|s| format!("{}={}", s.key, s.value))
        .collect();
    Shape {
        text: format!("?{}", query.join("&")),
        settings,
        why: format!(
            "a keepalive every {} s resets the box's idle timer, so the flow never looks idle and the \
             connections stay warm; r2d2's test_on_check_out (on by default: SELECT 1 before each get) \
             fails on a flow the box forgot anyway within tcp_user_timeout ({} s), and r2d2 hands out \
             or opens another (append with & if the URL has parameters already)",
            secs_down(t.keepalive_idle),
            secs_up(t.dead_bound)
        ),
        first_request_bound: std::time::Duration::from_secs(1),
    }
}
