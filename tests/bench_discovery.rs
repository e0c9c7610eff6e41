//! Discovery benchmark in the lab: wall time to reach ±5% and ±2% as a multiple of the real
//! threshold T, for the adaptive policy at several connection budgets and for the two baselines
//! (sequential bisection on one connection, a fixed ladder), all run by the real engine against
//! real PostgreSQL behind a real conntrack middlebox (`lab/lab.sh`, silent mode).
//!
//! Ignored by default (minutes of wall time, needs root). Run it with
//!
//! ```sh
//! cargo test --release --test bench_discovery -- --ignored --nocapture
//! ```
//!
//! Knobs (environment): `IDLE_DROP_BENCH_T` (default `5,13,40`), `IDLE_DROP_BENCH_BUDGETS`
//! (`2,4,8,16`), `IDLE_DROP_BENCH_PRECISIONS` (percent, `5,2`), `IDLE_DROP_BENCH_POLICIES`
//! (`adaptive,bisection,fixed_ladder`), `IDLE_DROP_BENCH_REPEATS` (`1`), `IDLE_DROP_BENCH_OUT`
//! (also write the table to this file).
//!
//! How it measures: one lab per T (name `bnd<T>`), all labs at once; one in-process exporter
//! whose targets are every (T, policy, budget, precision, repeat) combination, so they all start
//! together and probe concurrently (each has its own connections, hence its own conntrack flows).
//! `/metrics` is scraped every 100 ms; for each target the first scrape whose bracket is within
//! ±5% (±2%) gives the time to that precision, measured from the exporter's start (it includes
//! opening the control connection, a few ms on loopback). The engine's own
//! `idle_drop_discovery_duration_seconds` (time to the configured precision, from the start of
//! the discovery phase) is reported beside it.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::*;

/// Every target uses this range; the fixed ladder's rungs are fractions of its max (30s/1h,
/// 1m/1h, ... of 100 s: 0.83 s (clamped to the 1 s min), 1.67, 3.33, 8.33, 16.7, 33.3, 50, 100 s).
const RANGE_MAX_SECS: u64 = 100;
/// The ladder gets 7 probe connections (budget 8): rungs up to 50 s, enough for T ≤ 40 s.
const LADDER_BUDGET: usize = 8;
/// Sequential bisection uses one probe connection: control + 1.
const BISECTION_BUDGET: usize = 2;
const POLL: Duration = Duration::from_millis(100);

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

struct Run {
    name: String,
    t: u64,
    policy: &'static str,
    budget: usize,
    /// Configured precision, percent.
    precision: u64,
    limit: Duration,
    reached5: Option<Duration>,
    reached2: Option<Duration>,
    engine: Option<f64>,
    bracket: (f64, f64),
    /// Every bracket seen, with when (to tell when the fixed ladder reached its final width).
    history: Vec<(Duration, f64, f64)>,
    done: bool,
}

fn within(lower: f64, upper: f64, p: f64) -> bool {
    lower > 0.0 && upper.is_finite() && lower < upper && upper - lower <= p * (upper + lower) + 1e-9
}

fn fmt_at(at: Option<Duration>, t: u64) -> String {
    match at {
        Some(d) => format!(
            "{:.1} s | **{:.2}**",
            d.as_secs_f64(),
            d.as_secs_f64() / t as f64
        ),
        None => "never | –".to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: minutes of wall time in the lab, needs root"]
async fn bench_discovery() {
    if skip_without_lab(&[]) {
        return;
    }
    let ts: Vec<u64> = env_list("IDLE_DROP_BENCH_T", "5,13,40")
        .iter()
        .map(|s| s.parse().expect("IDLE_DROP_BENCH_T: whole seconds"))
        .collect();
    let budgets: Vec<usize> = env_list("IDLE_DROP_BENCH_BUDGETS", "2,4,8,16")
        .iter()
        .map(|s| s.parse().expect("IDLE_DROP_BENCH_BUDGETS: numbers"))
        .collect();
    let precisions: Vec<u64> = env_list("IDLE_DROP_BENCH_PRECISIONS", "5,2")
        .iter()
        .map(|s| {
            s.parse()
                .expect("IDLE_DROP_BENCH_PRECISIONS: whole percent")
        })
        .collect();
    let policies = env_list(
        "IDLE_DROP_BENCH_POLICIES",
        "adaptive,bisection,fixed_ladder",
    );
    let repeats: usize = std::env::var("IDLE_DROP_BENCH_REPEATS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);

    // The runs, per T.
    let mut runs: Vec<Run> = Vec::new();
    for &t in &ts {
        for rep in 1..=repeats {
            let mut add = |policy: &'static str, budget: usize, precision: u64, limit: Duration| {
                runs.push(Run {
                    name: format!("t{t}-{policy}-b{budget}-p{precision}-r{rep}"),
                    t,
                    policy,
                    budget,
                    precision,
                    limit,
                    reached5: None,
                    reached2: None,
                    engine: None,
                    bracket: (0.0, f64::INFINITY),
                    history: Vec::new(),
                    done: false,
                });
            };
            let search_limit = Duration::from_secs(12 * t + 60);
            for p in &policies {
                match p.as_str() {
                    "adaptive" => {
                        for &b in &budgets {
                            for &pr in &precisions {
                                add("adaptive", b, pr, search_limit);
                            }
                        }
                    }
                    "bisection" => {
                        for &pr in &precisions {
                            add("bisection", BISECTION_BUDGET, pr, search_limit);
                        }
                    }
                    // Never converges; its final bracket is known once the first rung above T
                    // was tested (≤ 50 s + a connect here).
                    "fixed_ladder" => {
                        add(
                            "fixed_ladder",
                            LADDER_BUDGET,
                            *precisions.iter().min().unwrap_or(&5),
                            Duration::from_secs(4 * t + 60),
                        );
                    }
                    other => panic!("unknown policy {other}"),
                }
            }
        }
    }

    // One lab per T, brought up in parallel; room for every session plus the superuser.
    let labs: Vec<(u64, Lab)> = std::thread::scope(|scope| {
        let handles: Vec<_> = ts
            .iter()
            .map(|&t| {
                let sessions: usize = runs.iter().filter(|r| r.t == t).map(|r| r.budget).sum();
                let max = (sessions + 10).to_string();
                scope.spawn(move || {
                    (
                        t,
                        Lab::up_with(
                            &format!("bnd{t}"),
                            "silent",
                            t,
                            &["--max-connections", &max],
                        ),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let lab_of: HashMap<u64, &Lab> = labs.iter().map(|(t, l)| (*t, l)).collect();

    let mut yaml = String::from("listen_address: 127.0.0.1:0\ntargets:\n");
    for r in &runs {
        let lab = lab_of[&r.t];
        write!(
            yaml,
            "  - name: {name}\n    dsn: {dsn}\n    password_file: {pw}\n    sslmode: disable\n    connect_timeout: 3s\n    query_timeout: 3s\n    tcp_user_timeout: 2s\n    idle_range: {{min: 1s, max: {RANGE_MAX_SECS}s}}\n    max_connections: {budget}\n    precision: {precision}%\n    discovery_policy: {policy}\n",
            name = r.name,
            dsn = lab.dsn(),
            pw = lab.password_file(),
            budget = r.budget,
            precision = r.precision,
            policy = r.policy,
        )
        .unwrap();
    }
    let config = TempConfig::new(&yaml);
    eprintln!(
        "bench: {} runs over T = {ts:?}, {} labs; longest limit {:?}",
        runs.len(),
        labs.len(),
        runs.iter().map(|r| r.limit).max().unwrap_or_default()
    );

    let start = Instant::now();
    let exporter = Exporter::start(&config).await;
    while runs.iter().any(|r| !r.done) {
        tokio::time::sleep(POLL).await;
        let m = exporter.metrics().await;
        let now = start.elapsed();
        for r in runs.iter_mut().filter(|r| !r.done) {
            let target = [("target", r.name.as_str())];
            let lower = m
                .get("idle_drop_threshold_lower_bound_seconds", &target)
                .unwrap_or(0.0);
            let upper = m
                .get("idle_drop_threshold_upper_bound_seconds", &target)
                .unwrap_or(f64::INFINITY);
            if (lower, upper) != r.bracket {
                r.bracket = (lower, upper);
                r.history.push((now, lower, upper));
            }
            if r.reached5.is_none() && within(lower, upper, 0.05) {
                r.reached5 = Some(now);
            }
            if r.reached2.is_none() && within(lower, upper, 0.02) {
                r.reached2 = Some(now);
            }
            if m.get("idle_drop_discovery_runs_total", &target) >= Some(1.0) {
                r.engine = m.get("idle_drop_discovery_duration_seconds", &target);
                r.done = true;
                eprintln!(
                    "bench: {} converged [{lower:.3}, {upper:.3}] at {:.1}s",
                    r.name,
                    now.as_secs_f64()
                );
            } else if now > r.limit {
                r.done = true;
                eprintln!(
                    "bench: {} stopped at its limit {:?} with [{lower:.3}, {upper:.3}]",
                    r.name, r.limit
                );
            }
        }
    }
    let wall = start.elapsed();
    exporter.shutdown().await;
    drop(labs);

    let mut table = String::new();
    writeln!(
        table,
        "| T | policy | budget | precision run to | ±5% reached | ×T | ±2% reached | ×T | engine's discovery_duration | bracket at the end | contains T |"
    )
    .unwrap();
    writeln!(table, "|---|---|---|---|---|---|---|---|---|---|---|").unwrap();
    for r in &runs {
        let (l, u) = r.bracket;
        let t = r.t as f64;
        let contains = l < t + CLOCK_SLACK && u >= t - CLOCK_SLACK;
        let end = if r.policy == "fixed_ladder" {
            // Repeated uses of the same rungs move the bounds by milliseconds: report when the
            // bracket first came within 1% of its final width.
            let width = (u - l) / (u + l);
            let since = r
                .history
                .iter()
                .find(|(_, hl, hu)| {
                    hu.is_finite() && *hl > 0.0 && (hu - hl) / (hu + hl) <= width * 1.01
                })
                .map_or(f64::NAN, |(at, _, _)| at.as_secs_f64());
            format!(
                "[{l:.2}, {u:.2}] (±{:.0}%) from {since:.1} s = {:.2}×T",
                100.0 * width,
                since / t
            )
        } else {
            format!("[{l:.3}, {u:.3}]")
        };
        writeln!(
            table,
            "| {} s | {} | {} | ±{}% | {} | {} | {} | {} | {} |",
            r.t,
            r.policy,
            r.budget,
            r.precision,
            fmt_at(r.reached5, r.t),
            fmt_at(r.reached2, r.t),
            r.engine.map_or("–".to_string(), |e| format!("{e:.1} s")),
            end,
            if contains { "yes" } else { "**no**" },
        )
        .unwrap();
    }
    println!(
        "\nDiscovery benchmark, silent mode, range 1s–{RANGE_MAX_SECS}s, tcp_user_timeout 2s, query_timeout 3s; {} runs in {:.0} s wall:\n\n{table}",
        runs.len(),
        wall.as_secs_f64()
    );
    if let Ok(path) = std::env::var("IDLE_DROP_BENCH_OUT") {
        std::fs::write(path, &table).expect("write IDLE_DROP_BENCH_OUT");
    }
    // The benchmark reports; it only insists that what converged is right.
    for r in runs.iter().filter(|r| r.engine.is_some()) {
        let (l, u) = r.bracket;
        let t = r.t as f64;
        assert!(
            l < t + CLOCK_SLACK && u >= t - CLOCK_SLACK,
            "{}: [{l}, {u}] must contain {t}",
            r.name
        );
    }
}
