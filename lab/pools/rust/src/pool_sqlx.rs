//! sqlx (PgPool, tokio runtime, no TLS) in the matrix.
//!
//! sqlx evicts only from its maintenance task, which runs every min(idle_timeout, max_lifetime)
//! (sqlx-core pool/inner.rs `spawn_maintenance_tasks`), closes idle connections past
//! `idle_timeout` (time since released) or `max_lifetime` (age since connect) and reopens up to
//! `min_connections`. `acquire` itself only pings (`test_before_acquire`), bounded by
//! `acquire_timeout` for the whole acquire. sqlx 0.9 sets no TCP keepalive or TCP_USER_TIMEOUT.

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Postgres;

use crate::job::{Job, RoundResult};
use crate::printed;
use crate::recipe::{application_name, Recipe};
use crate::rounds::{self, bounded, error_text};

pub fn version() -> String {
    format!(
        "{} (sqlx-postgres {})",
        env!("LOCK_VERSION_sqlx"),
        env!("LOCK_VERSION_sqlx_postgres")
    )
}

pub async fn run(job: &Job) -> Result<Vec<RoundResult>, String> {
    let (options, connect) = options(job)?;
    // `connect_with` opens max(1, min_connections) connections before returning.
    let pool = bounded(job, "building the pool", async {
        options
            .connect_with(connect)
            .await
            .map_err(|e| error_text(&e))
    })
    .await?;
    bounded(job, "warm-up", warm(&pool, job.warm_count())).await?;
    Ok(rounds::run(job, || {
        let pool = pool.clone();
        async move {
            let mut conn = pool.acquire().await.map_err(|e| error_text(&e))?;
            select_1(&mut conn).await
        }
    })
    .await)
}

async fn select_1(conn: &mut PoolConnection<Postgres>) -> Result<(), String> {
    sqlx::query("SELECT 1")
        .execute(&mut **conn)
        .await
        .map_err(|e| error_text(&e))?;
    Ok(())
}

fn options(job: &Job) -> Result<(PgPoolOptions, PgConnectOptions), String> {
    let d = &job.dsn;
    let connect = PgConnectOptions::new()
        .host(&d.host)
        .port(d.port)
        .username(&d.user)
        .password(&d.password)
        .database(&d.dbname)
        .application_name(&application_name(job));
    if let (Some(_), Some(text)) = (&job.recipe, &job.recipe_text) {
        // The printed code, as printed: it leaves the options; the job's sizing goes on top.
        let mut o = printed::sqlx(printed::load("sqlx", text)?)?;
        if let Some(p) = job.pool {
            o = o.max_connections(p.max).min_connections(p.min);
        }
        return Ok((o, connect));
    }
    let mut recipe = Recipe::of(job);
    let mut o = PgPoolOptions::new();
    if let Some(p) = job.pool {
        o = o.max_connections(p.max).min_connections(p.min);
    }
    if let Some(n) = recipe.uint("max_connections")? {
        o = o.max_connections(n);
    }
    if let Some(n) = recipe.uint("min_connections")? {
        o = o.min_connections(n);
    }
    if let Some(t) = recipe.duration("idle_timeout")? {
        o = o.idle_timeout(t);
    }
    if let Some(t) = recipe.duration("max_lifetime")? {
        o = o.max_lifetime(t);
    }
    if let Some(t) = recipe.required_duration("acquire_timeout")? {
        o = o.acquire_timeout(t);
    }
    if let Some(v) = recipe.boolean("test_before_acquire")? {
        o = o.test_before_acquire(v);
    }
    recipe.finish()?;
    Ok((o, connect))
}

/// Holds `n` connections at once, runs `SELECT 1` on each and returns them all to the pool.
async fn warm(pool: &PgPool, n: u32) -> Result<(), String> {
    let mut held = Vec::with_capacity(n as usize);
    for _ in 0..n {
        held.push(pool.acquire().await.map_err(|e| error_text(&e))?);
    }
    for conn in &mut held {
        select_1(conn).await?;
    }
    drop(held);
    let open = pool.size();
    if open < n {
        return Err(format!("warm-up left {open} connections, wanted {n}"));
    }
    Ok(())
}
