//! Reloads that need no database: a target whose server never answers still has a run to stop
//! (its control connection waits out `connect_timeout`), which is what these tests lean on.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::time::Duration;

use common::*;

/// A TCP server that accepts connections and never answers: a probe's startup waits for its
/// whole `connect_timeout`.
fn black_hole() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

fn silent_target(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    dsn: postgres://probe@127.0.0.1:{port}/postgres\n    sslmode: disable\n    connect_timeout: 3s\n    max_connections: 2\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_readded_while_its_old_run_stops_keeps_its_series_and_page_entry() {
    let port = black_hole();
    let (x, y) = (silent_target("x", port), silent_target("y", port));
    let config = TempConfig::new(&format!("listen_address: 127.0.0.1:0\ntargets:\n{x}{y}"));
    let exporter = Exporter::start(&config).await;
    // y's control connection is now waiting for a server that never answers.
    tokio::time::sleep(Duration::from_millis(500)).await;

    config.write(&format!("listen_address: 127.0.0.1:0\ntargets:\n{x}"));
    assert_eq!(exporter.reload.reload().await, Ok(()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    config.write(&format!("listen_address: 127.0.0.1:0\ntargets:\n{x}{y}"));
    assert_eq!(exporter.reload.reload().await, Ok(()));

    // The removed run ends within its connect_timeout (3 s); its clean-up must not delete the
    // name that came back.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let m = exporter.metrics().await;
    assert_eq!(
        m.get("idle_drop_target_up", &[("target", "y")]),
        Some(0.0),
        "y lost its series:\n{}",
        m.text
    );
    assert!(m.state_is("y", "discovering"), "{}", m.text);
    let (status, page) = exporter.get("/").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<h2>y</h2>"),
        "y lost its page entry:\n{page}"
    );
    exporter.shutdown().await;
}

/// Every setting that shows as a series (the app lifetime and its source, the target's
/// labels), driven present → absent → present by reloads: the series follows each time (a
/// value nobody configures any more must not stay exported, or
/// `IdleDropAppPoolLifetimeUnsafe` keeps firing on it). The keepalive probe's result is a
/// stored fact of the path measured with it: a run without the probe does not show it, and
/// the run that measures with the probe again resumes it, with its bracket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_setting_shown_as_a_series_goes_away_and_comes_back_with_it() {
    let port = black_hole();
    let with =
        "    app_max_idle_lifetime: 5m\n    keepalive_probe: {enabled: true, interval: 1s}\n    \
                labels: {team: payments}\n";
    let text = |extra: &str| {
        format!(
            "listen_address: 127.0.0.1:0\ntargets:\n{}{extra}",
            silent_target("k", port)
        )
    };
    let config = TempConfig::new(&text(with));
    // What an earlier process measured on this path, with the keepalive probe.
    let storage = config.dir.join("state");
    std::fs::create_dir_all(&storage).unwrap();
    let target = idle_drop_exporter::config::load(&config.path)
        .unwrap()
        .targets[0]
        .clone();
    idle_drop_exporter::storage::Store::open(&storage)
        .unwrap()
        .remember(
            "k",
            &target.fingerprint(),
            idle_drop_exporter::storage::StoredMeasurement {
                lower: Some(Duration::from_secs(100)),
                upper: Some(Duration::from_secs(105)),
                drop_kind: Some(idle_drop_exporter::model::DeathCause::Timeout),
                keepalive_rescue: Some(true),
                measured_at: std::time::SystemTime::now(),
            },
        );
    let exporter = Exporter::start_with_storage(&config, Some(&storage)).await;
    wait_until_ready(exporter.address).await;
    let k = [("target", "k")];
    let shown = |m: &Metrics| {
        (
            m.get("idle_drop_app_max_idle_lifetime_seconds", &k),
            m.label_values("idle_drop_app_lifetime_source", "source"),
            m.get("idle_drop_keepalive_rescue", &k),
            m.label_values("idle_drop_target_info", "team"),
        )
    };
    let present = (
        Some(300.0),
        vec!["config".to_string()],
        Some(1.0),
        vec!["payments".to_string()],
    );
    let m = exporter.metrics().await;
    assert_eq!(shown(&m), present, "{}", m.text);
    assert!(m.state_is("k", "confirming"), "{}", m.text);

    config.write(&text(""));
    assert_eq!(exporter.reload.reload().await, Ok(()));
    // The keepalive probe is part of the path: its run restarts once the old one closed
    // (within connect_timeout, 3 s).
    let m = exporter
        .wait_for(Duration::from_secs(10), "the settings gone", |m| {
            shown(m) == (None, vec![], None, vec![])
        })
        .await;
    assert!(m.state_is("k", "discovering"), "{}", m.text);
    assert_eq!(m.bracket("k"), (0.0, f64::INFINITY), "{}", m.text);

    config.write(&text(with));
    assert_eq!(exporter.reload.reload().await, Ok(()));
    let m = exporter
        .wait_for(Duration::from_secs(10), "the settings back", |m| {
            shown(m) == present
        })
        .await;
    assert!(m.state_is("k", "confirming"), "{}", m.text);
    assert_eq!(m.bracket("k"), (100.0, 105.0), "{}", m.text);
    exporter.shutdown().await;
}
