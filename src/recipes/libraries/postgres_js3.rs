//! postgres.js 3.x: no `min` and no query timeout; each connection has its own idle and
//! lifetime timers.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{seconds_value, set, Shape};
use super::super::{secs_down, Timings, Variant};
use super::js::{self, js_fields};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "postgres (postgres.js) 3.4 (read in 3.4.7 and 3.4.10)",
    clock: Clock::Idle,
    minimum_exempt: false,
    shrink: "every connection has its own timers: idle_timeout (off by default) ends it that long after it went idle, whatever the pool's size (3.x has no min); max_lifetime (a random 30 to 60 min by default) ends it that long after it connected, after the query it runs; connections reopen only on demand",
    check: "none on checkout: a connection whose socket ends while idle is closed and reopened on demand; a silently dropped one gets the next query",
    socket_bound: "none for a query (3.x has no query_timeout; connect_timeout, 30 s, bounds connecting only); keep_alive (seconds, 60 by default: the first probe's delay); no TCP_USER_TIMEOUT",
    keepalive_recipe: true,
    can_evict: true,
    source: "postgres 3.4.10 cjs/src/index.js (parseOptions: defaults, max_lifetime; move: idleTimer), cjs/src/connection.js (Connection: idleTimer, lifeTimer, end, connected: setKeepAlive, timer); the same lines in 3.4.7",
};

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    let (settings, why) = match variant {
        Variant::Eviction => (
            vec![set("idle_timeout", seconds_value(t.lifetime))],
            format!(
                "postgres.js 3 ends each connection idle_timeout ({}) after it went idle, every \
                 connection (3.x keeps no minimum), so none is left idle as long as the path \
                 allows; 3.x has no query timeout, so nothing bounds a query on a connection lost \
                 some other way",
                human(t.lifetime)
            ),
        ),
        Variant::Keepalive => {
            let every = secs_down(t.keepalive_idle);
            (
                vec![set("keep_alive", json!(every))],
                format!(
                    "postgres.js turns TCP keepalives on itself, but only after 60 s of silence by \
                     default; keep_alive: {every} has the kernel send one after every {every} s of \
                     silence, which resets the box's idle timer, so the connections stay warm; 3.x \
                     has no check on checkout and no query timeout, so a query on a flow the box \
                     forgets anyway waits until TCP gives up"
                ),
            )
        }
    };
    let text = format!("postgres(url, {{ ...options, {} }})", js_fields(&settings));
    js::shape(settings, text, why)
}
