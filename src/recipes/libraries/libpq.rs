//! libpq's connection string: anything built on libpq without a pool of its own.

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{conninfo, keepalive_keys, ConnString, Shape};
use super::super::{secs_down, secs_up, Timings, Variant};

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "libpq 12 and later (tcp_user_timeout is new in 12)",
    clock: Clock::None,
    minimum_exempt: true,
    shrink: "no pool",
    check: "none",
    socket_bound: "tcp_user_timeout (milliseconds); no read timeout exists",
    keepalive_recipe: true,
    can_evict: false,
    source: "PostgreSQL docs, libpq 'Parameter Key Words'",
};

pub(crate) fn shape(_variant: Variant, t: &Timings) -> Shape {
    let settings = keepalive_keys(t, ConnString::Libpq);
    Shape {
        text: conninfo(&settings),
        settings,
        why: format!(
            "a keepalive every {} s resets the box's idle timer, so the flow never looks idle; \
             tcp_user_timeout ends a connection the box forgot anyway within {} s",
            secs_down(t.keepalive_idle),
            secs_up(t.dead_bound)
        ),
        first_request_bound: t.dead_bound + std::time::Duration::from_secs(1),
    }
}
