//! psycopg_pool's ConnectionPool (psycopg 3).

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{
    keepalive_keys, kwargs_object, python_dict, seconds_value, set, ConnString, Shape,
};
use super::super::{millis, secs_down, secs_up, Timings, Variant};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "psycopg_pool 3.3",
    clock: Clock::Age,
    minimum_exempt: true,
    shrink: "max_idle closes at most one connection above min_size per max_idle period; max_lifetime (age) is checked only when a connection is returned, never at getconn",
    check: "check=ConnectionPool.check_connection runs execute(\"\") with no timeout; after a failed check getconn() tries the next connection at once, then sleeps 1, 2, 4 s (±10 %) before each further try",
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
                    "import logging, threading, time\n\n\
                     pool = ConnectionPool(conninfo, kwargs={})\n\n\
                     def check_idle_connections(pool, every):\n\
                     \x20   # pool.check() pings each idle connection and replaces broken ones\n\
                     \x20   while True:\n\
                     \x20       time.sleep(every)\n\
                     \x20       try:\n\
                     \x20           pool.check()\n\
                     \x20       except Exception:\n\
                     \x20           logging.exception(\"pool.check() failed; trying again in %s s\", every)\n\n\
                     threading.Thread(target=check_idle_connections, args=(pool, {}), daemon=True).start()",
                    python_dict(&kwargs),
                    seconds_value(interval),
                ),
                settings,
                why: format!(
                    "psycopg_pool never looks at idle time before lending a connection (max_idle spares \
                     min_size, max_lifetime is checked only on return), so the application pings the idle \
                     ones itself every {} (check_interval), which also keeps the path from ever seeing \
                     them idle; the loop logs a failed check and goes on",
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
                why: format!(
                    "a keepalive every {} s resets the box's idle timer, so the flow never looks idle \
                     and the connections stay warm; check_connection replaces one the box forgot anyway \
                     (on Linux tcp_user_timeout, not a probe count, ends it about {} s after its last \
                     answer), but getconn() sleeps 1, 2, 4 s between failed checks, so a request that \
                     meets several such connections in a row waits that much longer",
                    secs_down(t.keepalive_idle),
                    secs_up(t.dead_bound)
                ),
                first_request_bound: one_second,
            }
        }
    }
}
