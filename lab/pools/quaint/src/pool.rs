//! quaint's pool, in the configuration this binary was built as: Prisma's query engine
//! (`engine` feature: what prisma-engines' PostgreSQL connector sets on top of the URL) or
//! quaint as it comes (no checkout check). The mobc underneath is this build's Cargo.lock pin.

use std::time::Duration;

use quaint::connector::{PostgresFlavour, Queryable};
use quaint::pooled::Quaint;

use crate::job::Job;
use crate::rounds::{bounded, error_text};

pub const ENGINE: bool = cfg!(feature = "engine");

/// The harness id (`Library` ids in src/recipes/pools.rs).
pub fn library_id() -> &'static str {
    if ENGINE {
        "quaint_prisma"
    } else {
        "quaint_bare"
    }
}

/// What was really built, from Cargo.lock (build.rs).
pub fn version() -> String {
    let check = if ENGINE {
        "with Prisma's checkout check"
    } else {
        "no checkout check"
    };
    format!(
        "quaint {} + mobc {}, {check}",
        env!("LOCK_VERSION_quaint"),
        env!("LOCK_VERSION_mobc")
    )
}

/// The pool, as prisma-engines builds it (query-engine/connectors/sql-query-connector/src/
/// database/native/postgresql.rs, `PostgreSql::from_source`) or as quaint builds it alone.
pub fn build(url: &str) -> Result<Quaint, String> {
    let mut builder = Quaint::builder(url).map_err(|e| format!("Quaint::builder: {e}"))?;
    if ENGINE {
        builder.set_postgres_flavour(PostgresFlavour::Postgres);
        builder.health_check_interval(Duration::from_secs(15));
        builder.test_on_check_out(true);
    }
    Ok(builder.build())
}

/// One request as Prisma makes it: check a connection out, run a statement, give it back.
pub async fn query(pool: Quaint) -> Result<(), String> {
    let conn = pool.check_out().await.map_err(|e| error_text(&e))?;
    conn.query_raw("SELECT 1", &[])
        .await
        .map_err(|e| error_text(&e))?;
    Ok(())
}

/// Holds `pool.min` (or 1) connections at once, runs `SELECT 1` on each, and gives them all
/// back: with `connection_limit` = that many, the pool then keeps them all (quaint opens
/// nothing by itself and closes nothing idle before a checkout).
pub async fn warm(job: &Job, pool: &Quaint) -> Result<(), String> {
    let n = job.warm_count() as usize;
    bounded(job, "warm-up", async {
        let mut held = Vec::new();
        for _ in 0..n {
            let p = pool.clone();
            held.push(tokio::spawn(async move { p.check_out().await }));
        }
        let mut conns = Vec::new();
        for h in held {
            let conn = h
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| error_text(&e))?;
            conns.push(conn);
        }
        for conn in &conns {
            conn.query_raw("SELECT 1", &[])
                .await
                .map_err(|e| error_text(&e))?;
        }
        eprintln!(
            "quaint-harness: warm-up held {} connections at once",
            conns.len()
        );
        Ok(())
    })
    .await
}
