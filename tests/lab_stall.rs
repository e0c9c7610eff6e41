//! A stalled server and the connection budget (issue 20, item 5). Every process of the lab's
//! PostgreSQL is stopped (SIGSTOP) for longer than `connect_timeout`, with the box forgetting
//! idle flows sooner than that: an attempt the exporter gives up on is finished by the server
//! once it resumes, and the exporter's goodbye (its FIN) was dropped by the box. Each attempt
//! carries a nonce in its `application_name`, so such a session is found, counted against the
//! budget until it is gone, and terminated, also by SIGTERM's sweep. Before: three 20 s stops
//! left 12 sessions on a budget of 5, and 8 after SIGTERM.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

const BUDGET: usize = 5;
const WATCHER: &str = "rb-stall-watcher";

/// The lab's PostgreSQL processes but the watcher's own backend: the postmaster first (so it
/// forks nothing more), then its children.
fn server_processes(lab: &Lab, watcher_pid: &str) -> Vec<String> {
    let mut pids = lab.server_processes();
    pids.retain(|pid| pid != watcher_pid);
    pids
}

/// What a run through the stalls saw.
struct Stalled {
    given_up: f64,
    /// The most exporter sessions the server listed at once.
    max: usize,
    /// Exporter sessions still listed 3 s after SIGTERM, as `pid state application_name`.
    left: Vec<String>,
    exited_ok: bool,
    log: String,
}

/// Runs the binary (budget 5, connect_timeout 2 s) against `lab` through three stalls of the
/// server (every process, or only the postmaster), then SIGTERM.
async fn through_stalls(lab: &Lab, postmaster_only: bool) -> Stalled {
    // The watcher: one session of the superuser over the unix socket, kept running through
    // the stalls (a new session needs the postmaster), counting the exporter's sessions.
    let (watcher, connection) = tokio_postgres::connect(
        &format!(
            "host=/tmp/idle-drop-lab/{} user=postgres dbname=postgres application_name={WATCHER}",
            lab.name
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let watcher_pid = watcher
        .simple_query("SELECT pg_backend_pid()::text")
        .await
        .unwrap()
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap();
    let max = Arc::new(AtomicUsize::new(0));
    let counting = Arc::new(AtomicBool::new(true));
    let counter = {
        let (max, counting) = (max.clone(), counting.clone());
        tokio::spawn(async move {
            while counting.load(Ordering::Relaxed) {
                let rows = watcher
                    .simple_query(
                        "SELECT pg_stat_clear_snapshot(); SELECT count(*)::text FROM \
                         pg_stat_activity WHERE application_name LIKE 'idle_drop_exporter%'",
                    )
                    .await
                    .unwrap();
                for m in rows {
                    if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
                        if let Some(n) = row.get(0).and_then(|n| n.parse::<usize>().ok()) {
                            max.fetch_max(n, Ordering::Relaxed);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let port = free_port();
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = TempConfig::new(&format!(
        "listen_address: {address}\ntargets:\n  - name: s\n    dsn: {dsn}\n    password_file: {pw}\n    sslmode: disable\n    connect_timeout: 2s\n    query_timeout: 2s\n    tcp_user_timeout: 2s\n    idle_range: {{min: 1s, max: 60s}}\n    max_connections: {BUDGET}\n",
        dsn = lab.dsn(),
        pw = lab.password_file(),
    ));
    let stderr = config.dir.join("stderr.log");
    let mut child = Process::start(
        env!("CARGO_BIN_EXE_idle_drop_exporter"),
        &[
            format!("--config.file={}", config.path.display()),
            "--log.level=debug".into(),
        ],
        &stderr,
    );
    wait_until_listening(address).await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    for stall in [9, 7, 8] {
        let mut pids = server_processes(lab, &watcher_pid);
        if postmaster_only {
            pids.truncate(1);
        }
        signal("STOP", &pids);
        tokio::time::sleep(Duration::from_secs(stall)).await;
        signal("CONT", &pids);
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let m = Metrics::parse(&http_get(address, "/metrics").await.1);
    let given_up = m.sum("idle_drop_connect_errors_total", &[("kind", "timeout")]);
    let status = child.terminate(Duration::from_secs(30)).await;
    lab.sessions_left_after(Duration::from_secs(3));
    counting.store(false, Ordering::Relaxed);
    counter.await.unwrap();
    let left = lab.sql(
        "SELECT string_agg(pid || ' ' || coalesce(state, '?') || ' ' || application_name, ', ') \
         FROM pg_stat_activity WHERE application_name LIKE 'idle_drop_exporter%'",
    );
    Stalled {
        given_up,
        max: max.load(Ordering::Relaxed),
        left: left
            .split(", ")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        exited_ok: status.success(),
        log: std::fs::read_to_string(&stderr).unwrap_or_default(),
    }
}

fn assert_within_budget_and_swept(what: &str, run: &Stalled) {
    eprintln!(
        "{what}: {} connects given up, at most {} exporter sessions listed (budget {BUDGET}), \
         {} left after SIGTERM",
        run.given_up,
        run.max,
        run.left.len()
    );
    assert!(run.exited_ok, "exit status after SIGTERM");
    assert!(
        run.given_up >= 1.0,
        "the stalls made the exporter give up connects"
    );
    // Besides the budget, only what is being opened: the control connection's reconnect.
    assert!(
        run.max <= BUDGET + 1,
        "the server listed {} exporter sessions on a budget of {BUDGET}:\n{}",
        run.max,
        run.log
    );
    assert!(
        run.left.is_empty(),
        "sessions left after SIGTERM: {:?}",
        run.left
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_given_up_on_a_stalled_server_stay_in_the_budget_and_are_swept() {
    if skip_without_lab(&[]) {
        return;
    }
    // T = 2 s, connect_timeout 2 s: a given-up attempt's FIN reaches a box that forgot it.
    let lab = Lab::up("rbsg", "silent", 2);
    let run = through_stalls(&lab, false).await;
    assert_within_budget_and_swept("every server process stopped 9, 7, 8 s", &run);
}

/// Only the postmaster stalls, and the server trusts the probe's address (no password round
/// trip): each startup queued while it was stopped becomes a session of ours when it resumes,
/// after the exporter already gave it up and looked for it once. The slot stays taken until
/// the server took a newer connection, so the check that follows finds the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_a_resumed_postmaster_finishes_later_are_found_too() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("rbsp", "silent", 2);
    let hba = format!("/tmp/idle-drop-lab/{}/data/pg_hba.conf", lab.name);
    let rules = std::fs::read_to_string(&hba)
        .unwrap()
        .replace("scram-sha-256", "trust");
    std::fs::write(&hba, rules).unwrap();
    lab.sql("SELECT pg_reload_conf()");
    let run = through_stalls(&lab, true).await;
    assert_within_budget_and_swept("the postmaster stopped 9, 7, 8 s, trust auth", &run);
}
