//! Faults in the lab: the database restarts mid-discovery, the network is cut and restored, the
//! server runs out of connection slots. Under each, /metrics keeps answering, counters never go
//! backwards, the budget is never exceeded, the right kind is counted, and shutdown leaves no
//! session behind.

mod common;

use std::time::Duration;

use common::*;

const BUDGET: usize = 6;

fn config_for(lab: &Lab) -> TempConfig {
    TempConfig::new(&format!(
        "listen_address: 127.0.0.1:0\ntargets:\n{}",
        lab_target("f", lab, &format!("    max_connections: {BUDGET}\n"))
    ))
}

async fn finish(exporter: Exporter, scrapes: ScrapeWatch, sessions: SessionWatch, lab: &Lab) {
    assert!(scrapes.finish().await > 10);
    exporter.shutdown().await;
    let max = sessions.finish();
    assert!(
        max <= BUDGET,
        "the server saw {max} exporter sessions, budget {BUDGET}"
    );
    let mut left = lab.exporter_sessions();
    for _ in 0..20 {
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        left = lab.exporter_sessions();
    }
    assert_eq!(left, 0, "sessions left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_discovery() {
    let lab = Lab::up("frs", "silent", 8);
    let config = config_for(&lab);
    let sessions = SessionWatch::start(&lab.name);
    let exporter = Exporter::start(&config).await;
    let scrapes = ScrapeWatch::start(exporter.address);
    let target = [("target", "f")];
    exporter
        .wait_for(Duration::from_secs(30), "probing to start", |m| {
            m.sum("idle_drop_probe_uses_total", &target) >= 3.0
        })
        .await;
    lab.lab(&["restart-postgres", &lab.name]);
    // The restart kills every session with 57P01 (admin shutdown): an outage, not an idle drop.
    let m = exporter
        .wait_for(
            Duration::from_secs(120),
            "discovery to finish after the restart",
            |m| m.get("idle_drop_discovery_runs_total", &target) >= Some(1.0),
        )
        .await;
    let lower = m
        .get("idle_drop_threshold_lower_bound_seconds", &target)
        .unwrap();
    let upper = m
        .get("idle_drop_threshold_upper_bound_seconds", &target)
        .unwrap();
    assert!(
        lower < 8.15 && upper >= 7.85,
        "[{lower}, {upper}] must still contain 8"
    );
    assert!(
        m.sum(
            "idle_drop_closed_connections_total",
            &[("target", "f"), ("sqlstate", "57P01")]
        ) >= 1.0,
        "the restart's FATAL 57P01 is counted:\n{}",
        m.text
    );
    finish(exporter, scrapes, sessions, &lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_then_recovery() {
    let lab = Lab::up("fpt", "silent", 5);
    let config = config_for(&lab);
    let sessions = SessionWatch::start(&lab.name);
    let exporter = Exporter::start(&config).await;
    let scrapes = ScrapeWatch::start(exporter.address);
    let target = [("target", "f")];
    exporter
        .wait_for(Duration::from_secs(90), "the first discovery", |m| {
            m.get("idle_drop_discovery_runs_total", &target) >= Some(1.0)
        })
        .await;
    lab.lab(&["link-down", &lab.name]);
    exporter
        .wait_for(Duration::from_secs(60), "the target to be seen down", |m| {
            m.get("idle_drop_target_up", &target) == Some(0.0)
                && m.get(
                    "idle_drop_discovery_state",
                    &[("target", "f"), ("state", "unreachable")],
                ) == Some(1.0)
        })
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    lab.lab(&["link-up", &lab.name]);
    let m = exporter
        .wait_for(Duration::from_secs(120), "recovery to watching", |m| {
            m.get("idle_drop_target_up", &target) == Some(1.0)
                && m.get(
                    "idle_drop_discovery_state",
                    &[("target", "f"), ("state", "watching")],
                ) == Some(1.0)
        })
        .await;
    let lower = m
        .get("idle_drop_threshold_lower_bound_seconds", &target)
        .unwrap();
    let upper = m
        .get("idle_drop_threshold_upper_bound_seconds", &target)
        .unwrap();
    assert!(
        lower < 5.15 && upper >= 4.85,
        "the partition must not move the bracket: [{lower}, {upper}]"
    );
    // Connections cut by the partition left sessions on the server; they are reaped.
    exporter
        .wait_for(
            Duration::from_secs(30),
            "partition ghosts to be gone",
            |m| m.get("idle_drop_ghost_backends", &target) == Some(0.0),
        )
        .await;
    finish(exporter, scrapes, sessions, &lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_out_of_connection_slots() {
    // max_connections 5 minus 3 reserved for superusers: room for two exporter sessions.
    let lab = Lab::up_with("fmc", "server", 4, &["--max-connections", "5"]);
    let config = config_for(&lab);
    let sessions = SessionWatch::start(&lab.name);
    let exporter = Exporter::start(&config).await;
    let scrapes = ScrapeWatch::start(exporter.address);
    let m = exporter
        .wait_for(Duration::from_secs(60), "53300 to be counted", |m| {
            m.get(
                "idle_drop_connect_errors_total",
                &[("target", "f"), ("kind", "too_many_connections")],
            ) >= Some(1.0)
        })
        .await;
    assert_eq!(m.get("idle_drop_target_up", &[("target", "f")]), Some(1.0));
    // Backoff: a full server is not hammered.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let refused = exporter.metrics().await.sum(
        "idle_drop_connect_errors_total",
        &[("target", "f"), ("kind", "too_many_connections")],
    );
    assert!(refused <= 8.0, "{refused} refused attempts in ~10 s");
    finish(exporter, scrapes, sessions, &lab).await;
}
