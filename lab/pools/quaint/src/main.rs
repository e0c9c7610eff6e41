//! quaint-harness: the quaint (Prisma) side of the pool matrix (../README.md). One source, two
//! builds: `engine/` (Prisma's query engine: checkout check every 15 s, mobc 0.8.5) and `bare/`
//! (quaint alone, mobc 0.8.3). Reads one job, builds quaint's real pool from a DATABASE_URL with
//! the printed recipe appended as printed, warms it, lets it idle, queries it, and prints one
//! result object on stdout, with quaint's own log lines. Diagnostics go to stderr. The process
//! exits as soon as the result is printed, even if queries are still stuck inside quaint.

mod job;
mod logs;
mod pool;
// The rounds are the Rust harness's, word for word: one definition of a round for both.
#[path = "../../rust/src/rounds.rs"]
mod rounds;
mod url;

use std::io::Write;

use job::{Job, Outcome, RoundResult};

#[tokio::main]
async fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: {} JOB_FILE", pool::library_id());
        std::process::exit(2);
    };
    let job = match std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {path}: {e}"))
        .and_then(|text| serde_json::from_str::<Job>(&text).map_err(|e| format!("bad job: {e}")))
    {
        Ok(job) => job,
        Err(e) => {
            eprintln!("quaint-harness: {e}");
            std::process::exit(2);
        }
    };
    if job.library != pool::library_id() {
        eprintln!(
            "quaint-harness: this build is {:?}, the job asks for {:?}",
            pool::library_id(),
            job.library
        );
        std::process::exit(2);
    }
    let captured = logs::capture(&job.dsn.password);
    let url = url::database_url(&job);
    let parameters = url.as_deref().map(url::parameters_text).unwrap_or_default();
    let result = match url {
        Ok(url) => run(&job, &url).await,
        Err(e) => Err(e),
    };
    let result = result.map_err(|e| e.replace(&job.dsn.password, "***"));
    let code = if result.is_ok() { 0 } else { 1 };
    let outcome = Outcome::new(&job, pool::version(), result, captured.lines(), parameters);
    let mut stdout = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut stdout, &outcome);
    let _ = writeln!(stdout);
    let _ = stdout.flush();
    // Hung queries still hold tasks and sockets: do not wait for the runtime to wind them down.
    std::process::exit(code);
}

async fn run(job: &Job, url: &str) -> Result<Vec<RoundResult>, String> {
    eprintln!(
        "quaint-harness: {} with ?{}",
        pool::version(),
        url::parameters_text(url)
    );
    let pool = pool::build(url)?;
    pool::warm(job, &pool).await?;
    let secret = job.dsn.password.clone();
    let mut rounds = rounds::run(job, || {
        let p = pool.clone();
        async move { pool::query(p).await }
    })
    .await;
    for r in &mut rounds {
        for e in &mut r.errors {
            *e = e.replace(&secret, "***");
        }
    }
    Ok(rounds)
}
