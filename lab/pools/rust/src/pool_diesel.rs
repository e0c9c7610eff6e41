//! Diesel's PgConnection (libpq, through pq-sys) in diesel's r2d2 pool, in the matrix.
//!
//! r2d2 0.8 is synchronous: every acquire and query runs on tokio's blocking threads, so a hung
//! one holds a thread, not the runtime (the process exits without waiting for it). What r2d2
//! does (lib.rs): `get` pops the newest idle connection and, with `test_on_check_out` (default
//! on), runs diesel's `SELECT 1` on it with no bound but the socket's (`connection_timeout`
//! bounds only the wait for a free connection); `idle_timeout` and `max_lifetime` apply only in
//! the reaper, every 30 s; `min_idle` (default: `max_size`) is refilled after.
//!
//! A recipe runs as printed (`recipe_text`): the eviction text is Rust compiled in by build.rs
//! (src/printed.rs); the keepalive text is a connection-string suffix handed to libpq.

use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, ManageConnection, Pool};

use crate::job::{Job, RoundResult};
use crate::printed;
use crate::recipe::application_name;
use crate::rounds::{self, bounded};

pub fn version() -> String {
    format!(
        "diesel {} (r2d2 {}, pq-sys {})",
        env!("LOCK_VERSION_diesel"),
        env!("LOCK_VERSION_r2d2"),
        env!("LOCK_VERSION_pq_sys")
    )
}

pub async fn run(job: &Job) -> Result<Vec<RoundResult>, String> {
    let url = url(job);
    match (&job.recipe, job.recipe_text.as_deref()) {
        (None, _) => {
            let mut builder = Pool::builder();
            if let Some(p) = job.pool {
                builder = builder.max_size(p.max).min_idle(Some(p.min));
            }
            let manager = ConnectionManager::<PgConnection>::new(url);
            let pool = build(job, move || builder.build(manager)).await?;
            drive(job, pool).await
        }
        (Some(_), Some(text)) if text.starts_with('?') => {
            // The keepalive recipe: libpq parameters, appended as printed.
            let manager = ConnectionManager::<PgConnection>::new(format!("{url}&{}", &text[1..]));
            let max = job.pool.map_or(10, |p| p.max);
            let pool = build(job, move || Pool::builder().max_size(max).build(manager)).await?;
            drive(job, pool).await
        }
        (Some(_), Some(text)) => {
            let variant = printed::load("diesel", text)?;
            if variant != "eviction" {
                return Err(format!("no compiled diesel {variant} text"));
            }
            let max = job.pool.map_or(10, |p| p.max);
            let pool = build(job, move || {
                printed::diesel_eviction::build_pool(&url, max)
            })
            .await?;
            drive(job, pool).await
        }
        (Some(_), None) => Err("diesel: a recipe runs as its printed text (recipe_text)".into()),
    }
}

/// `postgres://` URL of the job's database; user and password percent-encoded.
fn url(job: &Job) -> String {
    let d = &job.dsn;
    format!(
        "postgres://{}:{}@{}:{}/{}?application_name={}",
        encode(&d.user),
        encode(&d.password),
        d.host,
        d.port,
        encode(&d.dbname),
        encode(&application_name(job))
    )
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Builds the pool on a blocking thread (r2d2 waits for its first connections), bounded.
async fn build<M, F>(job: &Job, f: F) -> Result<Pool<M>, String>
where
    M: ManageConnection,
    F: FnOnce() -> Result<Pool<M>, diesel::r2d2::PoolError> + Send + 'static,
{
    bounded(job, "building the pool", async {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    })
    .await
}

async fn drive<M>(job: &Job, pool: Pool<M>) -> Result<Vec<RoundResult>, String>
where
    M: ManageConnection<Connection = PgConnection>,
{
    let warm_pool = pool.clone();
    let n = job.warm_count();
    bounded(job, "warm-up", async move {
        tokio::task::spawn_blocking(move || warm(&warm_pool, n))
            .await
            .map_err(|e| e.to_string())?
    })
    .await?;
    Ok(rounds::run(job, || {
        let pool = pool.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = pool.get().map_err(|e| e.to_string())?;
                select_1(&mut conn)
            })
            .await
            .map_err(|e| format!("query task: {e}"))?
        }
    })
    .await)
}

fn select_1(conn: &mut PgConnection) -> Result<(), String> {
    diesel::sql_query("SELECT 1")
        .execute(conn)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Holds `n` connections at once, runs `SELECT 1` on each and returns them all to the pool.
fn warm<M>(pool: &Pool<M>, n: u32) -> Result<(), String>
where
    M: ManageConnection<Connection = PgConnection>,
{
    let mut held = Vec::with_capacity(n as usize);
    for _ in 0..n {
        held.push(pool.get().map_err(|e| e.to_string())?);
    }
    for conn in &mut held {
        select_1(conn)?;
    }
    drop(held);
    let open = pool.state().connections;
    if open < n {
        return Err(format!("warm-up left {open} connections, wanted {n}"));
    }
    Ok(())
}
