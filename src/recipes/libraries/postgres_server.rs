//! PostgreSQL's own keepalive settings: not a pool, but they end ghost sessions sooner.

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{config_file_lines, server_keepalives, Shape};
use super::super::{Timings, Variant};

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "PostgreSQL 12 and later (tcp_user_timeout is new in 12)",
    clock: Clock::None,
    minimum_exempt: false,
    shrink: "not a pool",
    check: "server keepalives find dead clients",
    socket_bound: "tcp_keepalives_*, tcp_user_timeout (milliseconds)",
    keepalive_recipe: true,
    can_evict: false,
    source: "PostgreSQL docs, 'Connections and Authentication'",
};

pub(crate) fn shape(_variant: Variant, t: &Timings) -> Shape {
    let settings = server_keepalives(t);
    Shape {
        text: config_file_lines(&settings),
        settings,
        why:
            "the server probes idle clients before the box forgets them, and ends the sessions of \
              clients that are gone (ghosts) instead of keeping them for hours"
                .to_string(),
        first_request_bound: t.dead_bound + std::time::Duration::from_secs(1),
    }
}
