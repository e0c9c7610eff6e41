//! postgres.js (the `postgres` npm package), 4.x: its own pool, its own protocol code.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{seconds_value, set, Shape};
use super::super::{secs_down, secs_up, Timings, Variant};
use super::js::{self, js_fields};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "postgres (postgres.js) 4.1 and 4.2 (`min` exists from 4.0.0, query_timeout from 4.1.0; 3.x has neither)",
    clock: Clock::Age,
    minimum_exempt: true,
    shrink: "idle_timeout (off by default) closes a connection idle that long only while the pool holds more than min; max_lifetime (a random 30 to 60 min by default) closes each connection that long after it opened, min included, as soon as it is idle; the pool then reconnects up to min at once",
    check: "none on checkout: a connection whose socket ends while idle is dropped (and replaced up to min); a silently dropped one gets the next query",
    socket_bound: "query_timeout (seconds, from 4.1: counts waiting and running; cancels the query, and closes the connection when the cancel gets no answer within cancel_timeout, 5 s); keep_alive (seconds, 60 by default: the first probe's delay); connect_timeout (30 s) bounds connecting only; no TCP_USER_TIMEOUT",
    keepalive_recipe: true,
    can_evict: true,
    source: "postgres 4.2.0 src/index.js (parseOptions: defaults, max_lifetime), src/pool.js (lifetime, idle, idled, onclose, grow, deadline), src/connection.js (cancel, expect, unanswered), src/startup.js (open: keepAlive, connect_timeout), src/socket.js (keepAlive); the 3.4.7, 4.0.0 and 4.1.0 npm tarballs for min and query_timeout",
};

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    let read_s = secs_up(t.read_timeout);
    let cancel = format!(
        "query_timeout cancels anything left after {read_s} s and closes its connection when the \
         cancel gets no answer within cancel_timeout (5 s)"
    );
    let (settings, why) = match variant {
        Variant::Eviction => (
            vec![
                set("max_lifetime", seconds_value(t.lifetime)),
                set("query_timeout", json!(read_s)),
            ],
            format!(
                "postgres.js closes every connection max_lifetime ({}) after it opened, min \
                 included, and reconnects up to min at once, so none is left idle as long as the \
                 path allows; {cancel}",
                human(t.lifetime)
            ),
        ),
        Variant::Keepalive => {
            let every = secs_down(t.keepalive_idle);
            (
                vec![
                    set("keep_alive", json!(every)),
                    set("query_timeout", json!(read_s)),
                ],
                format!(
                    "postgres.js turns TCP keepalives on itself, but only after 60 s of silence by \
                     default; keep_alive: {every} has the kernel send one after every {every} s of \
                     silence, which resets the box's idle timer, so the connections stay warm; \
                     there is no check on checkout, so if the box forgets a flow anyway, {cancel}"
                ),
            )
        }
    };
    let text = format!("postgres(url, {{ ...options, {} }})", js_fields(&settings));
    js::shape(settings, text, why)
}
