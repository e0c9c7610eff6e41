//! quaint (Prisma's SQL connector) through its DATABASE_URL parameters, in the two pools people
//! run: Prisma's query engine (a `SELECT 1` on checkout, mobc 0.8.5: the lifetime is age) and
//! quaint without that check over mobc 0.8.3 (the lifetime is time since the last checkout).
//! Both are run by the pool matrix (`lab/pools/quaint/`, its README has the Prisma releases).
//!
//! What both share, read in quaint 0.2.0-alpha.13 and mobc 0.8.3/0.8.5: the pool enforces the
//! lifetime only at checkout, on the connection its LIFO stack hands out (nothing closes an idle
//! connection before that); `socket_timeout` bounds every read and write but does not retire a
//! connection; `pool_timeout` (default 10 s) bounds the whole checkout, check and reconnect
//! included.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{set, Shape};
use super::super::{secs_down, secs_up, Timings, Variant};

/// quaint's `connect_timeout` when a URL does not set it (PostgresUrl::parse_query_params).
const QUAINT_CONNECT_TIMEOUT_S: u64 = 5;

pub(crate) const PRISMA_MODEL: PoolModel = PoolModel {
    versions: "Prisma ORM's query engine for PostgreSQL (quaint, checkout check every 15 s) over mobc 0.8.5, which prisma-engines took up in late 2024 (PR #5015; the first Prisma release with it is not settled: lab/pools/quaint/README.md)",
    clock: Clock::Age,
    minimum_exempt: false,
    shrink: "only at checkout: the connection on top of the LIFO stack is closed and replaced when older than max_idle_connection_lifetime (mobc 0.8.5 counts from its creation); nothing closes an idle connection before that",
    check: "SELECT 1 at checkout when the connection was last checked 15 s ago or more (prisma-engines sets test_on_check_out and health_check_interval 15 s); a failed check replaces the connection; socket_timeout bounds the check, pool_timeout (default 10 s, then P2024) the whole checkout",
    socket_bound: "socket_timeout (whole seconds) in the URL bounds every read and write; a connection that timed out goes back to the pool",
    keepalive_recipe: false,
    can_evict: true,
    source: "prisma-engines query-engine/connectors/sql-query-connector/src/database/native/postgresql.rs (PostgreSql::from_source: health_check_interval 15 s, test_on_check_out); quaint src/pooled/manager.rs (QuaintManager::check: SELECT 1); mobc 0.8.5 src/lib.rs (validate_conn, get_or_create_conn), src/conn.rs (last_used_at set only at creation); quaint 0.2.0-alpha.13 src/connector/postgres.rs (PostgresUrl::parse_query_params: whole seconds, defaults max_idle_connection_lifetime 300 s, pool_timeout 10 s, connect_timeout 5 s; perform_io: a socket timeout does not mark the connection broken), src/pooled.rs (Quaint::check_out: pool_timeout bounds the whole mobc get)",
};

pub(crate) const BARE_MODEL: PoolModel = PoolModel {
    versions: "quaint 0.2 without a checkout check (quaint used on its own) over mobc 0.8.3; Prisma engines on mobc 0.8.0-0.8.4 count the lifetime the same way but also check on checkout, a combination the matrix does not run",
    clock: Clock::Idle,
    minimum_exempt: false,
    shrink: "only at checkout: the connection on top of the LIFO stack is closed and replaced when its last checkout is max_idle_connection_lifetime ago or more (mobc 0.8.3); nothing closes an idle connection before that",
    check: "none before use (test_on_check_out is off in quaint's own pool)",
    socket_bound: "socket_timeout (whole seconds) in the URL bounds every read and write; a connection that timed out goes back to the pool and is handed out again",
    keepalive_recipe: false,
    can_evict: true,
    source: "quaint 0.2.0-alpha.13 src/pooled.rs (Builder::new: test_on_check_out false); mobc 0.8.3 src/lib.rs (get_connection sets last_used_at at each checkout; validate_conn); quaint 0.2.0-alpha.13 src/connector/postgres.rs (PostgresUrl::parse_query_params, perform_io), src/pooled.rs (Quaint::check_out)",
};

/// Which of the two pools a line is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pool {
    PrismaEngine,
    Bare,
}

/// The numbers both lines print: lifetime below T, the user's socket timeout, and a pool
/// timeout above that timeout plus a reconnect.
pub(crate) fn numbers(t: &Timings) -> (u64, u64, u64) {
    let lifetime_s = secs_down(t.lifetime);
    let socket_s = secs_up(t.read_timeout);
    (
        lifetime_s,
        socket_s,
        socket_s + QUAINT_CONNECT_TIMEOUT_S + 1,
    )
}

pub(crate) fn shape(pool: Pool, _variant: Variant, t: &Timings) -> Shape {
    let (lifetime_s, socket_s, pool_s) = numbers(t);
    let settings = vec![
        set("max_idle_connection_lifetime", json!(lifetime_s)),
        set("socket_timeout", json!(socket_s)),
        set("pool_timeout", json!(pool_s)),
    ];
    let params = format!(
        "max_idle_connection_lifetime={lifetime_s}&socket_timeout={socket_s}&pool_timeout={pool_s}"
    );
    let text = format!(
        "&{params}   (append to a DATABASE_URL that already has a ?)\n?{params}   (append to a DATABASE_URL with no parameters yet)"
    );
    let why = match pool {
        Pool::PrismaEngine => format!(
            "at checkout the engine closes and replaces any connection opened {lifetime_s} s ago or more \
             (mobc 0.8.5 counts from its creation), so none it hands out has been idle as long as the path \
             allows; socket_timeout={socket_s} bounds its SELECT 1 check and any query on a connection that \
             died anyway, and pool_timeout={pool_s} stays above that plus quaint's 5 s connect, so a hung \
             check is replaced instead of ending in P2024"
        ),
        Pool::Bare => format!(
            "at checkout quaint closes and replaces any connection last checked out {lifetime_s} s ago or \
             more (mobc 0.8.3 counts from the last checkout, never later than the last use), so none it \
             hands out has been idle as long as the path allows; with no check before use, \
             socket_timeout={socket_s} turns a query on a connection that died anyway into an error instead \
             of a hang; pool_timeout={pool_s} is for Prisma's engine, whose check it must outlast, and here \
             only lengthens the wait for a free connection"
        ),
    };
    Shape {
        text,
        settings,
        why,
        // On this path no request waits on a dead connection: the one retired at checkout is
        // replaced by a new one before anything is sent, which takes one connect.
        first_request_bound: std::time::Duration::from_secs(1),
    }
}
