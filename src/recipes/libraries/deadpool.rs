//! tokio-postgres with deadpool-postgres: no lifetime of its own; retain, a pre-recycle hook and
//! a bounded Verified check do the work.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{
    keepalive_keys, keepalive_why, seconds_value, set, ConnString, Shape,
};
use super::super::{secs_up, Timings, Variant};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "deadpool-postgres 0.14 (deadpool 0.13)",
    clock: Clock::None,
    minimum_exempt: false,
    shrink: "never on its own: Pool::retain closes what you filter out, a pre_recycle hook refuses at checkout",
    check: "RecyclingMethod::Verified runs simple_query(\"\"), bounded only by Timeouts::recycle; a failed or timed-out check drops the object and takes another, unseen by the caller",
    socket_bound: "tcp_user_timeout (whole seconds in a tokio-postgres connection string)",
    keepalive_recipe: true,
    can_evict: true,
    source: "deadpool-postgres 0.14 lib.rs (Manager::recycle); deadpool 0.13 managed/pool.rs (try_recycle, retain), managed/metrics.rs; tokio-postgres 0.7 config.rs (Config::param)",
};

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    match variant {
        Variant::Eviction => eviction(t),
        Variant::Keepalive => keepalive(t),
    }
}

fn eviction(t: &Timings) -> Shape {
    let dead_s = secs_up(t.dead_bound);
    let check_s = secs_up(t.check_timeout);
    let half = seconds_value(t.lifetime / 2);
    let settings = vec![
        set("recycling_method", json!("Verified")),
        set("recycle_timeout", seconds_value(t.check_timeout)),
        set("pre_recycle_max_idle", seconds_value(t.lifetime)),
        set("retain_interval", half.clone()),
        set("retain_max_idle", half.clone()),
        set("tcp_user_timeout", json!(dead_s)),
    ];
    Shape {
        text: format!(
            "connection string: tcp_user_timeout={dead_s}\n\
             ManagerConfig {{ recycling_method: RecyclingMethod::Verified }}, .recycle_timeout(Some({} s))\n\
             .pre_recycle(Hook::sync_fn(|_, m| if m.last_used() >= {} s {{ Err(..) }} else {{ Ok(()) }}))\n\
             every {half} s (retain_interval): pool.retain(|_, m| m.last_used() < {half} s)",
            seconds_value(t.check_timeout),
            seconds_value(t.lifetime)
        ),
        settings,
        why: format!(
            "deadpool has no lifetime of its own: retain closes connections idle {} in the background, \
             before the path forgets them (else they linger as ghost sessions), the pre_recycle hook \
             refuses any older one at checkout, and a Verified check bounded to {check_s} s replaces a \
             dead one without the caller seeing it",
            human(t.lifetime / 2)
        ),
        first_request_bound: std::time::Duration::from_secs(1),
    }
}

/// Shared with bb8: both take keepalives in a tokio-postgres connection string.
pub(crate) fn keepalive(t: &Timings) -> Shape {
    let settings = keepalive_keys(t, ConnString::TokioPostgres);
    Shape {
        text: format!(
            "connection string: {}",
            super::super::spelling::conninfo(&settings)
        ),
        settings,
        why: keepalive_why(t),
        first_request_bound: std::time::Duration::from_secs(1),
    }
}
