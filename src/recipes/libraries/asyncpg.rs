//! asyncpg's create_pool, from 0.32 (where min_size became a floor that idle closing spares);
//! `asyncpg_031.rs` is the same pool up to 0.31.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{
    kwargs_object, python_dict_of_strings, seconds_value, server_keepalives, set, Shape,
};
use super::super::{secs_down, secs_up, Timings, Variant};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "asyncpg 0.32 and later (read in 0.32.0)",
    clock: Clock::Idle,
    minimum_exempt: true,
    shrink: "each connection above min_size is closed exactly max_inactive_connection_lifetime after its last use; those at min_size never",
    check: "none on acquire beyond is_closed() (an EOF is noticed by the event loop and reconnected)",
    socket_bound: "command_timeout (seconds, also ends slow queries); no client keepalive option, so server_settings asks the server for keepalives",
    keepalive_recipe: true,
    can_evict: true,
    source: "asyncpg 0.32.0 pool.py (PoolConnectionHolder._setup_inactive_callback, _deactivate_inactive_connection, Pool._maintain_min_size), connection.py (_cleanup)",
};

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    let one_second = std::time::Duration::from_secs(1);
    match variant {
        Variant::Eviction => {
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
                    "from 0.32 asyncpg closes inactive connections only above min_size, so with a floor of 0 every \
                     connection idle {} is closed before the path forgets it; command_timeout ends any \
                     other dead read after {read_s} s",
                    human(t.lifetime)
                ),
                first_request_bound: one_second,
            }
        }
        Variant::Keepalive => keepalive(t),
    }
}

/// Both asyncpg configurations keep flows alive the same way: the server sends the keepalives.
pub(super) fn keepalive(t: &Timings) -> Shape {
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
        first_request_bound: std::time::Duration::from_secs(1),
    }
}
