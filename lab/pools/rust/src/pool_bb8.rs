//! bb8 with bb8-postgres (tokio-postgres underneath) in the matrix.
//!
//! bb8 evicts only from its reaper task, every `reaper_rate` (default 30 s): `idle_timeout`
//! (time since the connection was put back) and `max_lifetime` (age since connect) are checked
//! there (internals.rs `PoolInternals::reap`), and `max_lifetime` also when a connection is put
//! back. Nothing is checked when a connection is handed out except `test_on_check_out`
//! (`is_valid` = `simple_query("")`), and that check is bounded only by `connection_timeout`,
//! which bounds the whole `get()`.

use std::time::Duration;

use bb8::{Pool, QueueStrategy};
use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::NoTls;

use crate::job::{Job, RoundResult};
use crate::printed;
use crate::recipe::Recipe;
use crate::rounds::{self, bounded, error_text};

type Manager = PostgresConnectionManager<NoTls>;

pub fn version() -> String {
    format!(
        "{} (bb8-postgres {}, tokio-postgres {})",
        env!("LOCK_VERSION_bb8"),
        env!("LOCK_VERSION_bb8_postgres"),
        env!("LOCK_VERSION_tokio_postgres")
    )
}

pub async fn run(job: &Job) -> Result<Vec<RoundResult>, String> {
    let (builder, manager) = builder(job)?;
    // `build` waits for `min_idle` connections; the warm-up below opens `pool.min` anyway.
    let pool = bounded(job, "building the pool", async {
        builder.build(manager).await.map_err(|e| error_text(&e))
    })
    .await?;
    bounded(job, "warm-up", warm(&pool, job.warm_count())).await?;
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

fn builder(job: &Job) -> Result<(bb8::Builder<Manager>, Manager), String> {
    if let (Some(_), Some(text)) = (&job.recipe, &job.recipe_text) {
        // The printed code, as printed: it sets what it sets on the config and leaves a builder.
        let variant = printed::load("bb8", text)?;
        let mut config = Recipe::none().tokio_postgres_config(job)?;
        let mut b = printed::bb8(variant, &mut config)?;
        if let Some(p) = job.pool {
            b = b.max_size(p.max).min_idle(p.min);
        }
        return Ok((b, PostgresConnectionManager::new(config, NoTls)));
    }
    let mut recipe = Recipe::of(job);
    let manager = PostgresConnectionManager::new(recipe.tokio_postgres_config(job)?, NoTls);
    let mut b = Pool::builder();
    if let Some(p) = job.pool {
        b = b.max_size(p.max).min_idle(p.min);
    }
    if let Some(n) = recipe.uint("max_size")? {
        b = b.max_size(n);
    }
    if let Some(n) = recipe.uint("min_idle")? {
        b = b.min_idle(n);
    }
    // bb8 panics on a zero idle_timeout, max_lifetime or connection_timeout, tokio's interval on
    // a zero reaper_rate: refuse them here. JSON null turns idle_timeout / max_lifetime off.
    if let Some(t) = recipe.duration("idle_timeout")? {
        b = b.idle_timeout(t.map(|d| nonzero("idle_timeout", d)).transpose()?);
    }
    if let Some(t) = recipe.duration("max_lifetime")? {
        b = b.max_lifetime(t.map(|d| nonzero("max_lifetime", d)).transpose()?);
    }
    if let Some(t) = recipe.required_duration("connection_timeout")? {
        b = b.connection_timeout(nonzero("connection_timeout", t)?);
    }
    if let Some(t) = recipe.required_duration("reaper_rate")? {
        b = b.reaper_rate(nonzero("reaper_rate", t)?);
    }
    if let Some(v) = recipe.boolean("test_on_check_out")? {
        b = b.test_on_check_out(v);
    }
    match recipe.string("queue_strategy")?.as_deref() {
        None => {}
        Some("Fifo") => b = b.queue_strategy(QueueStrategy::Fifo),
        Some("Lifo") => b = b.queue_strategy(QueueStrategy::Lifo),
        Some(other) => {
            return Err(format!(
                "recipe queue_strategy: {other:?} is not Fifo or Lifo"
            ))
        }
    }
    recipe.finish()?;
    Ok((b, manager))
}

fn nonzero(key: &str, d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        Err(format!("recipe {key}: must be above 0"))
    } else {
        Ok(d)
    }
}

/// Holds `n` connections at once, runs `SELECT 1` on each and returns them all to the pool.
async fn warm(pool: &Pool<Manager>, n: u32) -> Result<(), String> {
    let mut held = Vec::with_capacity(n as usize);
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
    let open = pool.state().connections;
    if open < n {
        return Err(format!("warm-up left {open} connections, wanted {n}"));
    }
    Ok(())
}
