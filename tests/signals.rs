//! The daemon's signal relay (issue 9, defect 4): a SIGTERM that follows a SIGHUP is never lost,
//! not even while the reload it asked for is still running. Real signals sent to this test
//! process (its own binary, so no other test hears them).

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idle_drop_exporter::shutdown::Signals;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

fn send(signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(std::process::id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// One test: every listener in this process hears every signal sent, so nothing runs beside it.
#[tokio::test]
async fn sigterm_after_sighup_is_never_lost_even_during_a_slow_reload() {
    let signals = Signals::new().unwrap();
    let stop = CancellationToken::new();
    let reloads = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Notify::new());
    let finish = Arc::new(Notify::new());
    let relay = tokio::spawn({
        let (stop, reloads, started, finish) = (
            stop.clone(),
            reloads.clone(),
            started.clone(),
            finish.clone(),
        );
        signals.relay(stop, move || {
            let (reloads, started, finish) = (reloads.clone(), started.clone(), finish.clone());
            async move {
                reloads.fetch_add(1, Ordering::SeqCst);
                started.notify_one();
                // A slow reload: it ends only when the test says so.
                finish.notified().await;
            }
        })
    });

    // SIGHUP, and a second one while the first reload runs: one more reload afterwards.
    send("HUP");
    tokio::time::timeout(Duration::from_secs(5), started.notified())
        .await
        .expect("SIGHUP starts a reload");
    send("HUP");
    tokio::time::sleep(Duration::from_millis(200)).await;
    finish.notify_one();
    tokio::time::timeout(Duration::from_secs(5), started.notified())
        .await
        .expect("the SIGHUP that came during the reload is not lost");
    assert_eq!(reloads.load(Ordering::SeqCst), 2);
    assert!(!stop.is_cancelled());

    // The second reload never finishes: SIGTERM must still stop everything at once.
    send("TERM");
    tokio::time::timeout(Duration::from_secs(5), stop.cancelled())
        .await
        .expect("SIGTERM during a reload stops the daemon");
    tokio::time::timeout(Duration::from_secs(5), relay)
        .await
        .expect("the relay ends")
        .unwrap();

    // Issue 9: `kill -HUP $P; kill -TERM $P` left the daemon running in 4 of 20 tries.
    for _ in 0..20 {
        let signals = Signals::new().unwrap();
        let stop = CancellationToken::new();
        let relay = tokio::spawn(signals.relay(stop.clone(), || async {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }));
        send("HUP");
        send("TERM");
        tokio::time::timeout(Duration::from_secs(5), stop.cancelled())
            .await
            .expect("SIGTERM after SIGHUP stops the daemon");
        relay.await.unwrap();
    }
}
