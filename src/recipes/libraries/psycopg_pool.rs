//! psycopg_pool's ConnectionPool (psycopg 3).

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{
    keepalive_keys, keepalive_why, kwargs_object, python_dict, seconds_value, set, ConnString,
    Shape,
};
use super::super::{millis, Timings, Variant};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "psycopg_pool 3.3",
    clock: Clock::Age,
    minimum_exempt: true,
    shrink: "max_idle closes at most one connection above min_size per max_idle period; max_lifetime (age) is checked only when a connection is returned, never at getconn",
    check: "check=ConnectionPool.check_connection runs execute(\"\") with no timeout, and each failed check makes getconn back off 1, 2, 4 s",
    socket_bound: "kwargs: libpq keepalives and tcp_user_timeout",
    keepalive_recipe: true,
    can_evict: true,
    source: "psycopg_pool 3.3 pool.py (_shrink_pool, _return_connection, check_connection, _getconn_with_check_loop), base.py (_set_connection_expiry_date)",
};

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    let one_second = std::time::Duration::from_secs(1);
    match variant {
        Variant::Eviction => {
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
        Variant::Keepalive => {
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
    }
}
