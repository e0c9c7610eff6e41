//! The control connection is ours, not the application's: its deaths never page (issue 20,
//! item 3).
//!
//! - An administrator terminating the exporter's sessions (`pg_terminate_backend`, 57P01) is a
//!   termination, never an idle drop: no round may count an unexpected death of any role, nor
//!   a control-connection drop (a FATAL that lands on an in-flight ping used to be counted as
//!   `eof`, and a ping failing before the connection task had reported as `timeout`).
//! - A stale stored bracket ([20 s, 21 s] while the box forgets flows after 8 s) is not
//!   trusted before the sentinels confirm it: the control connection pings from the range
//!   minimum (it pinged every 10 s and died three times in 30 s), and the 16 s lifetime it
//!   would recommend is never published.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::*;

/// Every unexpected death and control-connection drop in a scrape, as `role/kind=value`.
fn paging_series(m: &Metrics) -> Vec<String> {
    m.samples
        .iter()
        .filter(|(name, _, value)| {
            *value > 0.0
                && (name == "idle_drop_unexpected_closed_connections_total"
                    || name == "idle_drop_control_connection_drops_total")
        })
        .map(|(name, labels, value)| {
            format!(
                "{name}{{role={:?},kind={:?}}}={value}",
                labels.get("role"),
                labels.get("kind")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_the_exporters_sessions_never_pages_nor_counts_as_a_control_drop() {
    if skip_without_lab(&[]) {
        return;
    }
    // A long T: nothing here is an idle drop. Four targets on the one server: four control
    // connections for each termination to race with (the race is a few percent per death).
    let lab = Lab::up("rbct", "silent", 60);
    const TARGETS: [&str; 4] = ["c", "c2", "c3", "c4"];
    let config = TempConfig::new(&format!(
        "listen_address: 127.0.0.1:0\ntargets:\n{}",
        TARGETS
            .iter()
            .map(|name| lab_target(name, &lab, "    max_connections: 3\n"))
            .collect::<String>()
    ));
    let exporter = Exporter::start(&config).await;
    let up = |m: &Metrics| {
        TARGETS
            .iter()
            .all(|t| m.get("idle_drop_target_up", &[("target", t)]) == Some(1.0))
    };
    exporter
        .wait_for(Duration::from_secs(30), "the control connection", up)
        .await;
    const ROUNDS: usize = 40;
    let started = Instant::now();
    // The rounds in which a paging series moved.
    let (mut moved_in, mut last_paging) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Let the probes open again, so some pings are in flight when the FATAL lands.
        tokio::time::sleep(Duration::from_millis(300 + 37 * (round as u64 % 7))).await;
        lab.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name LIKE 'idle_drop_exporter%'",
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let m = exporter
            .wait_for(Duration::from_secs(30), "the control connection back", up)
            .await;
        let paging = paging_series(&m);
        if paging != last_paging {
            moved_in.push(round);
            last_paging = paging;
        }
    }
    // Counters settle after the last reconnect.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = exporter.metrics().await;
    let control_deaths = m.sum("idle_drop_closed_connections_total", &[("role", "control")]);
    eprintln!(
        "{ROUNDS} termination rounds in {:.1} s: {control_deaths} control deaths, paging series \
         {:?} (moved in rounds {moved_in:?})",
        started.elapsed().as_secs_f64(),
        paging_series(&m)
    );
    assert!(
        control_deaths >= ROUNDS as f64,
        "the terminations reached the control connections ({control_deaths} deaths)"
    );
    assert!(paging_series(&m).is_empty(), "{}", m.text);
    assert!(
        m.get(
            "idle_drop_unexpected_closed_connections_total",
            &[("role", "control")]
        )
        .is_none(),
        "the control connection has no series in the paging counter:\n{}",
        m.text
    );
    exporter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_stored_bracket_is_neither_trusted_for_pings_nor_recommended() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("rbst", "silent", 8);
    let config = lab_config("s", &lab, "    max_connections: 4\n");
    let storage = config.dir.join("state");
    std::fs::create_dir_all(&storage).unwrap();
    {
        // What an earlier run stored for this path, before the box's timeout fell to 8 s.
        let loaded = idle_drop_exporter::config::load(&config.path).unwrap();
        let target = &loaded.targets[0];
        let store = idle_drop_exporter::storage::Store::open(&storage).unwrap();
        store.remember(
            "s",
            &target.fingerprint(),
            idle_drop_exporter::storage::StoredMeasurement {
                lower: Some(Duration::from_secs(20)),
                upper: Some(Duration::from_secs(21)),
                drop_kind: Some(idle_drop_exporter::model::DeathCause::Timeout),
                keepalive_rescue: None,
                measured_at: SystemTime::now() - Duration::from_secs(3600),
            },
        );
    }
    let exporter = Exporter::start_with_storage(&config, Some(&storage)).await;
    let target = [("target", "s")];
    let started = Instant::now();
    let mut states: Vec<String> = Vec::new();
    let mut recommended = Vec::new();
    // How long a lifetime above T (8 s) was published, and the control deaths seen.
    let mut unsafe_published = Duration::ZERO;
    let mut control_deaths = 0.0;
    let mut confirming_page = None;
    let mut last = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let m = exporter.metrics().await;
        let state = m
            .label_values("idle_drop_discovery_state", "state")
            .into_iter()
            .find(|s| m.state_is("s", s));
        if let Some(state) = state {
            // The last page while confirming (the engine publishes the stored bracket on the
            // page a moment after the daemon put it in the metrics).
            if state == "confirming" {
                confirming_page = Some(exporter.get("/").await.1);
            }
            if states.last() != Some(&state) {
                states.push(state);
            }
        }
        let lifetime = m.get("idle_drop_recommended_max_idle_lifetime_seconds", &target);
        if let Some(lifetime) = lifetime {
            if recommended.last() != Some(&lifetime) {
                recommended.push(lifetime);
            }
        }
        if lifetime.is_some_and(|l| l >= 8.0) {
            unsafe_published += last.elapsed();
        }
        last = Instant::now();
        control_deaths = m.sum(
            "idle_drop_unexpected_closed_connections_total",
            &[("target", "s"), ("role", "control")],
        ) + m.sum("idle_drop_control_connection_drops_total", &target);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    exporter.shutdown().await;
    eprintln!(
        "stale bracket, 30 s: states {states:?}, recommended lifetimes {recommended:?} \
         (one above T for {:.1} s), control deaths {control_deaths}",
        unsafe_published.as_secs_f64()
    );
    assert_eq!(
        states.first().map(String::as_str),
        Some("confirming"),
        "the stored bracket was resumed"
    );
    assert_eq!(control_deaths, 0.0, "the control connection died");
    assert!(
        recommended.iter().all(|lifetime| *lifetime < 8.0),
        "a lifetime the path does not allow was published: {recommended:?}"
    );
    // What the page shows of a stored, unconfirmed measurement.
    let page = confirming_page.expect("a scrape while confirming");
    assert!(
        page.contains("stored, confirming") && !page.contains("max_idle_connection_lifetime=16"),
        "{page}"
    );
}
