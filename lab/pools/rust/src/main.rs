//! pool-harness: the Rust side of the pool matrix (../README.md). Reads one job (JSON) naming a
//! library (`deadpool`, `sqlx`, `bb8` or `diesel`), builds that library's real pool against the job's
//! PostgreSQL, warms it, lets it idle, queries it, and prints one result object on stdout.
//! Diagnostics go to stderr. The process exits as soon as the result is printed, even if some
//! queries are still stuck inside the library (they are abandoned, not awaited).

mod job;
mod pool_bb8;
mod pool_deadpool;
mod pool_diesel;
mod pool_sqlx;
mod printed;
mod recipe;
mod rounds;
mod tokens;

use std::io::Write;

use job::{Job, Outcome};

#[tokio::main]
async fn main() {
    let path = match std::env::args().nth(1) {
        Some(p) => p,
        None => {
            eprintln!("usage: pool-harness JOB_FILE");
            std::process::exit(2);
        }
    };
    let job = match std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {path}: {e}"))
        .and_then(|text| serde_json::from_str::<Job>(&text).map_err(|e| format!("bad job: {e}")))
    {
        Ok(job) => job,
        Err(e) => {
            eprintln!("pool-harness: {e}");
            std::process::exit(2);
        }
    };

    let (version, result) = match job.library.as_str() {
        "deadpool" => (pool_deadpool::version(), pool_deadpool::run(&job).await),
        "sqlx" => (pool_sqlx::version(), pool_sqlx::run(&job).await),
        "bb8" => (pool_bb8::version(), pool_bb8::run(&job).await),
        "diesel" => (pool_diesel::version(), pool_diesel::run(&job).await),
        other => {
            eprintln!("pool-harness: unknown library {other:?} (deadpool, sqlx, bb8, diesel)");
            std::process::exit(2);
        }
    };
    let code = if result.is_ok() { 0 } else { 1 };
    let outcome = Outcome::new(&job, version, result);
    let mut stdout = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut stdout, &outcome);
    let _ = writeln!(stdout);
    let _ = stdout.flush();
    // Hung queries still hold tasks and sockets: do not wait for the runtime to wind them down.
    std::process::exit(code);
}
