//! SQLAlchemy 2's QueuePool over psycopg 3 (libpq).

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{
    keepalive_keys, keepalive_why, kwargs_object, python_dict, set, ConnString, Shape,
};
use super::super::{millis, secs_down, Setting, Timings, Variant};

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "SQLAlchemy 2.0 with psycopg 3",
    clock: Clock::Age,
    minimum_exempt: false,
    shrink: "QueuePool never shrinks on idle; pool_recycle replaces a connection at checkout once it is older than the setting",
    check: "pool_pre_ping runs SELECT 1 with no timeout of its own (tcp_user_timeout bounds it behind conntrack, nothing behind a proxy); a failed ping invalidates every older pooled connection",
    socket_bound: "connect_args: libpq keepalives and tcp_user_timeout",
    keepalive_recipe: true,
    can_evict: true,
    source: "SQLAlchemy 2.0 pool/base.py (_ConnectionRecord.get_connection, _ConnectionFairy._checkout), pool/impl.py (QueuePool), engine/default.py (do_ping)",
};

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    let one_second = std::time::Duration::from_secs(1);
    match variant {
        Variant::Eviction => {
            let lifetime_s = secs_down(t.lifetime);
            let connect = vec![set("tcp_user_timeout", json!(millis(t.dead_bound)))];
            let (settings, text) = recycle_and_ping("create_engine", lifetime_s, &connect);
            Shape {
                text,
                settings,
                why: format!(
                    "pool_recycle counts age since connect and is checked at checkout, so SQLAlchemy never \
                     hands out a connection older than {lifetime_s} s, one the path could have forgotten"
                ),
                first_request_bound: one_second,
            }
        }
        Variant::Keepalive => {
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
    }
}

/// `pool_recycle` and `pool_pre_ping` with the driver's `connect_args`, as `constructor`
/// (`create_engine` or `create_async_engine`) takes them: the settings and the line to paste.
pub(super) fn recycle_and_ping(
    constructor: &str,
    lifetime_s: u64,
    connect: &[Setting],
) -> (Vec<Setting>, String) {
    let settings = vec![
        set("pool_recycle", json!(lifetime_s)),
        set("pool_pre_ping", json!(true)),
        set("connect_args", kwargs_object(connect)),
    ];
    let text = format!(
        "{constructor}(url, pool_recycle={lifetime_s}, pool_pre_ping=True,\n    connect_args={})",
        python_dict(connect)
    );
    (settings, text)
}
