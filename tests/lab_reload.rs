//! Reloads against a real server in the lab: a restarted target's old run must be over before
//! its new run starts, so neither its `up` series nor the session budget suffers.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_keeps_the_path_leaves_the_target_up() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("hup", "silent", 5);
    let with_lifetime = |lifetime: &str| {
        lab_config(
            "u",
            &lab,
            &format!("    app_max_idle_lifetime: {lifetime}\n"),
        )
    };
    let config = with_lifetime("3s");
    let exporter = Exporter::start(&config).await;
    let target = [("target", "u")];
    exporter
        .wait_for(Duration::from_secs(30), "probing to start", |m| {
            m.get("idle_drop_target_up", &target) == Some(1.0)
                && m.sum("idle_drop_probe_uses_total", &target) >= 2.0
        })
        .await;

    std::fs::copy(&with_lifetime("4s").path, &config.path).unwrap();
    assert_eq!(exporter.reload.reload().await, Ok(()));
    // The old run closes its probes and sweeps for ghosts (bounded by 8 s) before it ends;
    // after that, nothing of it may be left writing the series.
    tokio::time::sleep(Duration::from_secs(10)).await;
    for _ in 0..8 {
        let m = exporter.metrics().await;
        assert_eq!(
            m.get("idle_drop_target_up", &target),
            Some(1.0),
            "the target is reachable but its series says down:\n{}",
            m.text
        );
        assert_eq!(
            m.get("idle_drop_app_max_idle_lifetime_seconds", &target),
            Some(4.0)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    exporter.shutdown().await;
}

/// The most exporter sessions the server listed at once over the next `seconds`, sampled by the
/// server itself every 10 ms (the budget is overrun for milliseconds, too fast for psql polls).
fn peak_sessions(lab: &Lab, seconds: u32) -> std::thread::JoinHandle<usize> {
    let name = lab.name.clone();
    let samples = seconds * 100;
    std::thread::spawn(move || {
        let sql = format!(
            "CREATE FUNCTION pg_temp.peak() RETURNS int LANGUAGE plpgsql AS $$ \
             DECLARE m int := 0; c int; BEGIN FOR i IN 1..{samples} LOOP \
             PERFORM pg_stat_clear_snapshot(); \
             SELECT count(*) INTO c FROM pg_stat_activity WHERE application_name LIKE 'idle_drop_exporter%'; \
             m := greatest(m, c); PERFORM pg_sleep(0.01); END LOOP; RETURN m; END $$; \
             SELECT pg_temp.peak();"
        );
        let out = std::process::Command::new("bash")
            .arg(repo().join("lab/lab.sh"))
            .args(["psql", &name, "-Atc", &sql])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .last()
            .unwrap_or("")
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no peak: {text} {}", String::from_utf8_lossy(&out.stderr)))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_that_change_a_target_never_exceed_its_session_budget() {
    if skip_without_lab(&[]) {
        return;
    }
    const BUDGET: usize = 6;
    let lab = Lab::up("hbudget", "silent", 4);
    let with_precision = |precision: &str| {
        format!(
            "listen_address: 127.0.0.1:0\ntargets:\n{}",
            lab_target(
                "b",
                &lab,
                &format!("    max_connections: {BUDGET}\n    precision: {precision}\n")
            )
        )
    };
    let config = TempConfig::new(&with_precision("5%"));
    let sessions = SessionWatch::start(&lab.name);
    let exporter = Exporter::start(&config).await;
    let target = [("target", "b")];
    exporter
        .wait_for(Duration::from_secs(30), "every probe slot in use", |m| {
            m.get("idle_drop_probe_connections", &target) >= Some(BUDGET as f64)
        })
        .await;
    // Each reload changes the target, so each restarts it; the server must never see the old
    // run's sessions and the new run's together.
    let peak = peak_sessions(&lab, 15);
    for i in 0..20 {
        config.write(&with_precision(if i % 2 == 0 { "6%" } else { "5%" }));
        assert_eq!(exporter.reload.reload().await, Ok(()));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // (The server's count: the old code's teardown also clobbered the new run's gauges.)
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while lab.exporter_sessions() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the last run never probed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let peak = tokio::task::spawn_blocking(move || peak.join().unwrap())
        .await
        .unwrap();
    exporter.shutdown().await;
    let max = sessions.finish().max(peak);
    assert!(
        max <= BUDGET,
        "the server saw {max} exporter sessions, budget {BUDGET}"
    );
    assert_eq!(lab.exporter_sessions(), 0, "sessions left behind");
}
