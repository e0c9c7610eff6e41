//! Ghost reaping never ends a session that is not the exporter's own dead one. Against the lab's
//! real PostgreSQL, through the real control connection: a probe session somebody used after
//! the exporter last did is left alone (the pooler case: PgBouncer in transaction mode hands
//! the same server connection to the next client); a backend the server did not start for our
//! connection is never terminated; a session nobody touched since our last use is terminated.
//! The same for an attempt we gave up on, known only by the nonce in its `application_name`:
//! terminated while nobody ran a query on it but ours, spared once somebody did, and never a
//! session that started before the attempt.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use idle_drop_exporter::metrics::Metrics;
use idle_drop_exporter::postgres::connection::{Attempt, Connector};
use idle_drop_exporter::probe::control::{self, GhostVerdict};
use idle_drop_exporter::probe::publisher::Publisher;
use idle_drop_exporter::probe::status::StatusBoard;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaping_spares_sessions_used_after_us_and_sessions_not_started_for_us() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("gs", "silent", 3600);
    let config = idle_drop_exporter::config::parse(
        std::path::Path::new("test.yaml"),
        &format!("targets:\n{}", lab_target("g", &lab, "")),
    )
    .unwrap();
    let target = Arc::new(config.targets[0].clone());
    let connector = Arc::new(Connector::new(&target.connect_spec()).unwrap());
    let board: StatusBoard = Default::default();
    let publish = Publisher::start(&Arc::new(Metrics::new()), &board, &target, None);
    let stop = CancellationToken::new();
    let (control, task) = control::spawn(target.clone(), connector.clone(), publish, stop.clone());
    let started = Instant::now();
    while !control.is_up() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "control connection up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alive = |pid: i32| {
        lab.sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
        )) == "1"
    };

    // Used by "somebody else" 3 s after our last use, then idle again: not our ghost but a
    // session someone else has (a pooler's server connection), never ended.
    let reused = connector.open(&Attempt::new(), None, |_| {}).await.unwrap();
    assert!(
        reused.backend.exclusive,
        "a direct connection's backend is its own"
    );
    let our_last_use = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Somebody else's query: without our connection's tag.
    reused.client().simple_query("SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        control.ghost(reused.backend.clone(), our_last_use).await,
        GhostVerdict::Reused
    );
    assert!(
        alive(reused.backend.pid),
        "a session used after us survives"
    );

    // A backend the server did not start for our connection (a pooler's): never terminated.
    let mut pooled = reused.backend.clone();
    pooled.exclusive = false;
    assert_eq!(
        control
            .ghost(pooled, our_last_use - Duration::from_secs(60))
            .await,
        GhostVerdict::Gone
    );
    assert!(alive(reused.backend.pid));

    // Nobody touched it since our last use: it is a ghost of ours, terminated; also when our
    // own last query ran late (a stalled server runs it when it resumes).
    let ghost = connector.open(&Attempt::new(), None, |_| {}).await.unwrap();
    let last_use = Instant::now() - Duration::from_secs(30);
    tokio::time::sleep(Duration::from_secs(1)).await;
    ghost
        .simple_query("SELECT 1", Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(
        control.ghost(ghost.backend.clone(), last_use).await,
        GhostVerdict::Reaped
    );
    let gone_by = Instant::now() + Duration::from_secs(5);
    while alive(ghost.backend.pid) {
        assert!(Instant::now() < gone_by, "the terminated ghost disappears");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An attempt given up on (we never learnt its pid) whose session the server finished:
    // found by its name, terminated while it ran nothing but our identity query.
    let attempt = Attempt::new();
    let abandoned = connector.open(&attempt, None, |_| {}).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        control.ghost(attempt.identity(), attempt.started).await,
        GhostVerdict::Reaped
    );
    let gone_by = Instant::now() + Duration::from_secs(5);
    while alive(abandoned.backend.pid) {
        assert!(
            Instant::now() < gone_by,
            "the abandoned attempt's session disappears"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Somebody ran a query on a session with that name since: not ours to end.
    let attempt = Attempt::new();
    let used = connector.open(&attempt, None, |_| {}).await.unwrap();
    used.client().simple_query("SELECT 2").await.unwrap();
    assert_eq!(
        control.ghost(attempt.identity(), attempt.started).await,
        GhostVerdict::Reused
    );
    assert!(alive(used.backend.pid), "a session used after us survives");
    // A session with the name that started before the attempt: never the attempt's.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let older = Attempt {
        started: Instant::now(),
        ..attempt.clone()
    };
    assert_eq!(
        control.ghost(older.identity(), older.started).await,
        GhostVerdict::Gone
    );
    assert!(alive(used.backend.pid));

    used.close().await;
    abandoned.close().await;
    reused.close().await;
    ghost.close().await;
    stop.cancel();
    task.await.unwrap();
}
