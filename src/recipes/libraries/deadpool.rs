//! tokio-postgres with deadpool-postgres: no lifetime of its own; retain, a pre-recycle hook and
//! a bounded Verified check do the work. The text is Rust that compiles as printed: statements
//! run where the user's `tokio_postgres::Config` is in `config`, inside a function that returns
//! a `Result` (the `?` takes deadpool's `BuildError`), in a tokio runtime (the retain task).

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{keepalive_keys, seconds_value, set, ConnString, Shape};
use super::super::{secs_down, secs_up, Timings, Variant};
use super::rust_code::{duration_f64, tokio_postgres_keepalives, tokio_postgres_user_timeout};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "deadpool-postgres 0.14.2 (deadpool 0.13.1, tokio-postgres 0.7.18): read there, and the code compiled against them",
    clock: Clock::None,
    minimum_exempt: false,
    shrink: "never on its own: Pool::retain closes what you filter out, a pre_recycle hook refuses at checkout",
    check: "the default RecyclingMethod::Fast sends nothing (is_closed only); Verified runs simple_query(\"\"), bounded only by Timeouts::recycle, which needs .runtime(Runtime::Tokio1) (else NoRuntimeSpecified); a failed or timed-out check drops the object and takes another, unseen by the caller",
    socket_bound: "tcp_user_timeout (tokio_postgres::Config::tcp_user_timeout; whole seconds in a connection string)",
    keepalive_recipe: true,
    can_evict: true,
    source: "deadpool-postgres 0.14 lib.rs (Manager::recycle, RecyclingMethod); deadpool 0.13 managed/pool.rs (timeout_get, try_recycle, retain, resize), managed/hooks.rs (HookError::message), managed/metrics.rs (last_used), managed/builder.rs (runtime); tokio-postgres 0.7 config.rs",
};

const USES: &str = "use std::time::Duration;\n\
    use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Metrics, Pool, RecyclingMethod, Runtime};";
const USES_KEEPALIVE: &str = "use std::time::Duration;\n\
    use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};";

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    match variant {
        Variant::Eviction => eviction(t),
        Variant::Keepalive => keepalive(t),
    }
}

/// The manager with a Verified check, and the builder with the runtime and the check's bound.
fn verified_pool(t: &Timings) -> String {
    format!(
        "let manager = Manager::from_config(config, tokio_postgres::NoTls, ManagerConfig {{ recycling_method: RecyclingMethod::Verified }});\n\
         let pool = Pool::builder(manager)\n    .runtime(Runtime::Tokio1)\n    .recycle_timeout(Some(Duration::from_secs({})))",
        secs_up(t.check_timeout)
    )
}

fn eviction(t: &Timings) -> Shape {
    let dead_s = secs_up(t.dead_bound);
    let check_s = secs_up(t.check_timeout);
    let half = duration_f64(t.lifetime / 2);
    let settings = vec![
        set("recycling_method", json!("Verified")),
        set("recycle_timeout", json!(check_s)),
        set("pre_recycle_max_idle", seconds_value(t.lifetime)),
        set("retain_interval", seconds_value(t.lifetime / 2)),
        set("retain_max_idle", seconds_value(t.lifetime / 2)),
        set("tcp_user_timeout", json!(dead_s)),
    ];
    let text = format!(
        "{USES}\n{}\n{}\n    .pre_recycle(Hook::sync_fn(|_, metrics: &Metrics| {{\n        \
         if metrics.last_used() >= {} {{\n            \
         return Err(HookError::message(\"idle longer than the path keeps a flow\"));\n        }}\n        \
         Ok(())\n    }}))\n    .build()?;\n\
         // Close idle connections in the background, before the path forgets them.\n\
         let weak = pool.weak();\n\
         tokio::spawn(async move {{\n    let mut every = tokio::time::interval({half});\n    \
         loop {{\n        every.tick().await;\n        \
         let Some(pool) = weak.upgrade() else {{ break }};\n        \
         pool.retain(|_, metrics| metrics.last_used() < {half});\n    }}\n}});",
        tokio_postgres_user_timeout(t),
        verified_pool(t),
        duration_f64(t.lifetime),
    );
    Shape {
        text,
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

/// Keepalives on the user's `Config`, and a Verified check: with the default `Fast` recycling
/// deadpool sends nothing before handing a connection out, so a flow the box forgot anyway would
/// reach the caller.
fn keepalive(t: &Timings) -> Shape {
    let mut settings = keepalive_keys(t, ConnString::TokioPostgres);
    settings.push(set("recycling_method", json!("Verified")));
    settings.push(set("recycle_timeout", json!(secs_up(t.check_timeout))));
    Shape {
        text: format!(
            "{USES_KEEPALIVE}\n{}\n{}\n    .build()?;",
            tokio_postgres_keepalives(t),
            verified_pool(t)
        ),
        settings,
        why: format!(
            "a keepalive every {} s resets the box's idle timer, so the flow never looks idle and the \
             connections stay warm; deadpool's default Fast recycling sends nothing before handing a \
             connection out, so the Verified check (an empty query, bounded to {} s by recycle_timeout) \
             replaces one the box forgot anyway, unseen by the caller",
            secs_down(t.keepalive_idle),
            secs_up(t.check_timeout)
        ),
        first_request_bound: std::time::Duration::from_secs(1),
    }
}
