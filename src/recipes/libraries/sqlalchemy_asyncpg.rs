//! SQLAlchemy 2's asyncio engine over asyncpg (`create_async_engine("postgresql+asyncpg://…")`):
//! the same QueuePool as `sqlalchemy.rs` (AsyncAdaptedQueuePool), but asyncpg's connections.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{set, Shape};
use super::super::{secs_down, secs_up, Timings, Variant};

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "SQLAlchemy 2.0 with asyncpg (read in 2.0.58 with asyncpg 0.32.0)",
    clock: Clock::Age,
    minimum_exempt: false,
    shrink: "AsyncAdaptedQueuePool never shrinks on idle; pool_recycle replaces a connection at checkout once it is older than the setting, closing the old one gracefully for up to 2 s first",
    check: "pool_pre_ping runs `;` through asyncpg (inside a transaction unless autocommit), bounded only by asyncpg's command_timeout; a failed ping invalidates every older pooled connection",
    socket_bound: "connect_args: asyncpg's command_timeout (seconds, also ends slow queries) and server_settings; asyncpg sets no client keepalive or TCP_USER_TIMEOUT",
    keepalive_recipe: false,
    can_evict: true,
    source: "SQLAlchemy 2.0 pool/base.py (_ConnectionRecord.get_connection), connectors/asyncio.py (AsyncAdapt_terminate.terminate), dialects/postgresql/asyncpg.py (AsyncAdapt_asyncpg_connection._async_ping, _terminate_graceful_close, do_ping); asyncpg connection.py (Connection.close)",
};

/// Recycling a connection the path forgot waits for asyncpg's graceful close (2 s) first.
const GRACEFUL_CLOSE: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) fn shape(_variant: Variant, t: &Timings) -> Shape {
    let lifetime_s = secs_down(t.lifetime);
    let read_s = secs_up(t.read_timeout);
    let connect = vec![set("command_timeout", json!(read_s))];
    let (settings, text) =
        super::sqlalchemy::recycle_and_ping("create_async_engine", lifetime_s, &connect);
    Shape {
        text,
        settings,
        why: format!(
            "pool_recycle counts age since connect and is checked at checkout, so SQLAlchemy never \
             hands out a connection older than {lifetime_s} s, one the path could have forgotten; \
             replacing one it did forget first waits up to 2 s for asyncpg's graceful close, and \
             command_timeout bounds the ping and every query at {read_s} s"
        ),
        first_request_bound: GRACEFUL_CLOSE + std::time::Duration::from_secs(1),
    }
}
