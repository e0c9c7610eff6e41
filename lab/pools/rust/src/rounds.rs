//! The part every library shares: idle, then fire concurrent queries and sort them into ok,
//! failed and hung. A query is a spawned task that acquires, runs `SELECT 1` and releases through
//! the pool's normal path; one still running `hang_seconds` after the round started is counted
//! as hung and left running (it keeps its connection, as a stuck request would).

use std::future::Future;
use std::time::Duration;

use tokio::time::{sleep, timeout_at, Instant};

use crate::job::{Job, RoundResult};

/// Error texts are cut to this many characters (the contract's limit).
const ERROR_CHARS: usize = 200;

pub async fn run<F, Fut>(job: &Job, query: F) -> Vec<RoundResult>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let hang = Duration::from_secs_f64(job.hang_seconds);
    let mut results = Vec::new();
    for round in &job.rounds {
        // No traffic from us at all while idle: whatever the pool does now is its own doing.
        sleep(Duration::from_secs_f64(round.idle_seconds)).await;
        let started = Instant::now();
        let tasks: Vec<_> = (0..round.queries)
            .map(|_| {
                let q = query();
                tokio::spawn(async move {
                    let r = q.await;
                    (r, started.elapsed())
                })
            })
            .collect();
        let deadline = started + hang;
        let mut result = RoundResult {
            idle_seconds: round.idle_seconds,
            ok: 0,
            failed: 0,
            hung: 0,
            max_latency_seconds: None,
            errors: Vec::new(),
        };
        for task in tasks {
            // Dropping a JoinHandle does not cancel the task: a hung query is abandoned.
            match timeout_at(deadline, task).await {
                Ok(Ok((Ok(()), latency))) => {
                    result.ok += 1;
                    let s = latency.as_secs_f64();
                    result.max_latency_seconds =
                        Some(result.max_latency_seconds.map_or(s, |m: f64| m.max(s)));
                }
                Ok(Ok((Err(e), _))) => {
                    result.failed += 1;
                    note_error(&mut result.errors, e);
                }
                Ok(Err(join)) => {
                    result.failed += 1;
                    note_error(&mut result.errors, format!("query task panicked: {join}"));
                }
                Err(_) => result.hung += 1,
            }
        }
        if let Some(m) = result.max_latency_seconds.as_mut() {
            *m = (*m * 1000.0).round() / 1000.0;
        }
        eprintln!(
            "{}: {}: idle {}s: ok {} failed {} hung {} max {:?}",
            env!("CARGO_PKG_NAME"),
            job.library,
            round.idle_seconds,
            result.ok,
            result.failed,
            result.hung,
            result.max_latency_seconds
        );
        results.push(result);
    }
    results
}

fn note_error(errors: &mut Vec<String>, e: String) {
    let e: String = e.chars().take(ERROR_CHARS).collect();
    if !errors.contains(&e) {
        errors.push(e);
    }
}

/// An error and its causes, as one line (libraries differ in whether Display shows the cause).
pub fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text = format!("{text}: {c_text}");
        }
        cause = c.source();
    }
    text
}

/// Runs a setup step (build, warm) with the job's hang bound, so a dead path cannot stall the
/// harness before the rounds even start.
pub async fn bounded<T>(
    job: &Job,
    what: &str,
    f: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_secs_f64(job.hang_seconds), f).await {
        Ok(r) => r.map_err(|e| format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {} s", job.hang_seconds)),
    }
}
