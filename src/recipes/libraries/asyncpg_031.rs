//! asyncpg's create_pool up to 0.31: `max_inactive_connection_lifetime` closes every idle
//! connection, those at min_size too (0.32 made min_size a floor that it spares: `asyncpg.rs`).

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{seconds_value, set, Shape};
use super::super::{secs_up, Timings, Variant};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "asyncpg 0.31 and earlier (read in 0.30.0 and 0.31.0)",
    clock: Clock::Idle,
    minimum_exempt: false,
    shrink: "every connection, those at min_size included, is closed max_inactive_connection_lifetime (300 s by default) after its last release; its holder reconnects on the next acquire, and nothing refills the pool in the background",
    check: "none on acquire beyond is_closed() (an EOF is noticed by the event loop and reconnected)",
    socket_bound: "command_timeout (seconds, also ends slow queries); no client keepalive option, so server_settings asks the server for keepalives",
    keepalive_recipe: true,
    can_evict: true,
    source: "asyncpg 0.31.0 pool.py (PoolConnectionHolder._setup_inactive_callback, _deactivate_inactive_connection, acquire), connection.py (_cleanup)",
};

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    match variant {
        Variant::Eviction => {
            let read_s = secs_up(t.read_timeout);
            let lifetime = seconds_value(t.lifetime);
            let settings = vec![
                set("max_inactive_connection_lifetime", lifetime.clone()),
                set("command_timeout", json!(read_s)),
            ];
            Shape {
                text: format!(
                    "asyncpg.create_pool(dsn, max_inactive_connection_lifetime={lifetime}, command_timeout={read_s})"
                ),
                settings,
                why: format!(
                    "asyncpg up to 0.31 closes every connection idle {}, those at min_size too, and \
                     reconnects on the next acquire, so none is used after the path could have \
                     forgotten it; command_timeout ends any other dead read after {read_s} s",
                    human(t.lifetime)
                ),
                first_request_bound: std::time::Duration::from_secs(1),
            }
        }
        Variant::Keepalive => super::asyncpg::keepalive(t),
    }
}
