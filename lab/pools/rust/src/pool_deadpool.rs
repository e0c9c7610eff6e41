//! deadpool-postgres (deadpool's managed pool over tokio-postgres) in the matrix.
//!
//! deadpool has no minimum size and no background eviction: connections are only looked at when
//! handed out (`deadpool::managed::Pool::timeout_get` -> `try_recycle`: the `pre_recycle` hooks,
//! then `Manager::recycle` under `Timeouts::recycle`; any failure there discards the object and
//! takes the next one or connects anew, invisibly to the caller). "min 4 warm" is therefore done
//! the way deadpool users do it: get 4 objects at once and return them.

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Metrics, Pool, QueueMode, RecyclingMethod, Runtime,
};
use std::time::Duration;

use tokio_postgres::NoTls;

use crate::job::{Job, RoundResult};
use crate::printed;
use crate::recipe::Recipe;
use crate::rounds::{self, bounded, error_text};

pub fn version() -> String {
    format!(
        "{} (deadpool {}, tokio-postgres {})",
        env!("LOCK_VERSION_deadpool_postgres"),
        env!("LOCK_VERSION_deadpool"),
        env!("LOCK_VERSION_tokio_postgres")
    )
}

pub async fn run(job: &Job) -> Result<Vec<RoundResult>, String> {
    let (pool, retain) = build(job)?;
    if let Some((every, max_idle)) = retain {
        spawn_retain(&pool, every, max_idle);
    }
    bounded(job, "warm-up", warm(&pool, job.warm_count() as usize)).await?;
    Ok(rounds::run(job, || {
        let pool = pool.clone();
        async move {
            let client = pool.get().await.map_err(|e| error_text(&e))?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| error_text(&e))?;
            Ok(())
        }
    })
    .await)
}

/// The pool, and the `retain_interval` / `retain_max_idle` pair if the recipe asks for it.
fn build(job: &Job) -> Result<(Pool, Option<(Duration, Duration)>), String> {
    if let (Some(_), Some(text)) = (&job.recipe, &job.recipe_text) {
        // The printed code, as printed: it builds the pool and spawns its own retain task.
        let variant = printed::load("deadpool", text)?;
        let pool = printed::deadpool(variant, Recipe::none().tokio_postgres_config(job)?)?;
        if let Some(p) = job.pool {
            pool.resize(p.max as usize);
        }
        return Ok((pool, None));
    }
    let mut recipe = Recipe::of(job);
    let pg = recipe.tokio_postgres_config(job)?;
    let recycling_method = match recipe.string("recycling_method")?.as_deref() {
        None | Some("Fast") => RecyclingMethod::Fast,
        Some("Verified") => RecyclingMethod::Verified,
        Some("Clean") => RecyclingMethod::Clean,
        Some(other) => {
            return Err(format!(
                "recipe recycling_method: {other:?} is not Fast, Verified or Clean"
            ))
        }
    };
    let manager = Manager::from_config(pg, NoTls, ManagerConfig { recycling_method });
    // The runtime is what lets deadpool apply its timeouts at all (`apply_timeout` fails with
    // NoRuntimeSpecified otherwise).
    let mut builder = Pool::builder(manager).runtime(Runtime::Tokio1);
    if let Some(p) = job.pool {
        builder = builder.max_size(p.max as usize);
    }
    if let Some(n) = recipe.uint("max_size")? {
        builder = builder.max_size(n as usize);
    }
    if let Some(t) = recipe.duration("wait_timeout")? {
        builder = builder.wait_timeout(t);
    }
    if let Some(t) = recipe.duration("create_timeout")? {
        builder = builder.create_timeout(t);
    }
    if let Some(t) = recipe.duration("recycle_timeout")? {
        builder = builder.recycle_timeout(t);
    }
    match recipe.string("queue_mode")?.as_deref() {
        None => {}
        Some("Fifo") => builder = builder.queue_mode(QueueMode::Fifo),
        Some("Lifo") => builder = builder.queue_mode(QueueMode::Lifo),
        Some(other) => return Err(format!("recipe queue_mode: {other:?} is not Fifo or Lifo")),
    }
    // deadpool has no lifetime setting; its documented way is a pre_recycle hook on the
    // object's Metrics. A hook error discards the object at checkout (pool.rs `try_recycle`).
    // `last_used()` is the time since the object was last handed out (or created), so it
    // over-counts idle time by the time the object was held: it errs on the safe side.
    if let Some(max_idle) = recipe.required_duration("pre_recycle_max_idle")? {
        builder = builder.pre_recycle(Hook::sync_fn(move |_, m: &Metrics| {
            if m.last_used() >= max_idle {
                Err(HookError::message("idle longer than pre_recycle_max_idle"))
            } else {
                Ok(())
            }
        }));
    }
    if let Some(max_age) = recipe.required_duration("pre_recycle_max_age")? {
        builder = builder.pre_recycle(Hook::sync_fn(move |_, m: &Metrics| {
            if m.age() >= max_age {
                Err(HookError::message("older than pre_recycle_max_age"))
            } else {
                Ok(())
            }
        }));
    }
    let retain = match (
        recipe.required_duration("retain_interval")?,
        recipe.required_duration("retain_max_idle")?,
    ) {
        (Some(every), Some(max_idle)) if !every.is_zero() => Some((every, max_idle)),
        (None, None) => None,
        _ => return Err("recipe retain_interval (above 0) and retain_max_idle go together".into()),
    };
    recipe.finish()?;
    let pool = builder
        .build()
        .map_err(|e| format!("building the pool: {e}"))?;
    Ok((pool, retain))
}

/// The background eviction deadpool documents for `Pool::retain` (deadpool managed/pool.rs):
/// every `every`, drop idle objects not handed out for `max_idle`. Unlike the checkout hook,
/// this closes a connection while the path still carries its FIN, so the server does not keep
/// a ghost session behind a box that drops silently.
fn spawn_retain(pool: &Pool, every: Duration, max_idle: Duration) {
    let weak = pool.weak();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await; // the first tick is immediate
        loop {
            tick.tick().await;
            let Some(pool) = weak.upgrade() else { break };
            pool.retain(|_, m| m.last_used() < max_idle);
        }
    });
}

/// Holds `n` objects at once (so `n` distinct connections exist), runs `SELECT 1` on each and
/// returns them all to the pool.
async fn warm(pool: &Pool, n: usize) -> Result<(), String> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(pool.get().await.map_err(|e| error_text(&e))?);
    }
    for client in &held {
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| error_text(&e))?;
    }
    drop(held);
    let size = pool.status().size;
    if size < n {
        return Err(format!("warm-up left {size} connections, wanted {n}"));
    }
    Ok(())
}
