//! Faults in the lab: the database restarts mid-discovery, the network is cut and restored, the
//! server runs out of connection slots. Under each, /metrics keeps answering, counters never go
//! backwards, the budget is never exceeded, the right kind is counted, and shutdown leaves no
//! session behind.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::time::Duration;

use common::*;

const BUDGET: usize = 6;

fn config_for(lab: &Lab) -> TempConfig {
    lab_config("f", lab, &format!("    max_connections: {BUDGET}\n"))
}

/// An exporter on `config` with the server's session count and the scrapes watched from the
/// start.
async fn watched(lab: &Lab, config: &TempConfig) -> (Exporter, ScrapeWatch, SessionWatch) {
    let sessions = SessionWatch::start(&lab.name);
    let exporter = Exporter::start(config).await;
    let scrapes = ScrapeWatch::start(exporter.address);
    (exporter, scrapes, sessions)
}

async fn finish(exporter: Exporter, scrapes: ScrapeWatch, sessions: SessionWatch, lab: &Lab) {
    assert!(scrapes.finish().await > 10);
    exporter.shutdown().await;
    let max = sessions.finish();
    assert!(
        max <= BUDGET,
        "the server saw {max} exporter sessions, budget {BUDGET}"
    );
    let left = lab.sessions_left_after(Duration::from_millis(5000));
    assert_eq!(left, 0, "sessions left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_discovery() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("frs", "silent", 8);
    let config = config_for(&lab);
    let (exporter, scrapes, sessions) = watched(&lab, &config).await;
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
    let (lower, upper) = m.bracket("f");
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
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("fpt", "silent", 5);
    let config = config_for(&lab);
    let (exporter, scrapes, sessions) = watched(&lab, &config).await;
    let target = [("target", "f")];
    exporter
        .wait_for(Duration::from_secs(90), "the first discovery", |m| {
            m.get("idle_drop_discovery_runs_total", &target) >= Some(1.0)
        })
        .await;
    lab.lab(&["link-down", &lab.name]);
    exporter
        .wait_for(Duration::from_secs(60), "the target to be seen down", |m| {
            m.get("idle_drop_target_up", &target) == Some(0.0) && m.state_is("f", "unreachable")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    lab.lab(&["link-up", &lab.name]);
    let m = exporter
        .wait_for(Duration::from_secs(120), "recovery to watching", |m| {
            m.get("idle_drop_target_up", &target) == Some(1.0) && m.state_is("f", "watching")
        })
        .await;
    let (lower, upper) = m.bracket("f");
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
    if skip_without_lab(&[]) {
        return;
    }
    // max_connections 5 minus 3 reserved for superusers: room for two exporter sessions.
    let lab = Lab::up_with("fmc", "server", 4, &["--max-connections", "5"]);
    let config = config_for(&lab);
    let (exporter, scrapes, sessions) = watched(&lab, &config).await;
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

/// A host name the resolver refuses locally: a label longer than 63 bytes cannot be put in a DNS
/// query, so the lookup fails without any packet leaving this machine.
fn unresolvable_host() -> String {
    format!("{}.invalid", "a".repeat(64))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_counted_backed_off_and_never_disturb_a_healthy_target() {
    if skip_without_lab(&[]) {
        return;
    }
    let plain = Lab::up("fcp", "silent", 5);
    let tls = Lab::up_with("fct", "server", 30, &["--tls"]);
    let wrong_password = TempConfig::new("");
    let wrong_pw_file = wrong_password.dir.join("pw");
    std::fs::write(&wrong_pw_file, "not-the-password\n").unwrap();
    let failing = |name: &str, dsn: &str, extra: &str| {
        format!("  - name: {name}\n    dsn: {dsn}\n    connect_timeout: 2s\n    max_connections: 3\n{extra}")
    };
    let config = TempConfig::new(&format!(
        "listen_address: 127.0.0.1:0\ntargets:\n{healthy}{badpw}{nodns}{needtls}{wrongca}",
        healthy = lab_target("f", &plain, &format!("    max_connections: {BUDGET}\n")),
        badpw = failing(
            "badpw",
            plain.dsn(),
            &format!(
                "    sslmode: disable\n    password_file: {}\n",
                wrong_pw_file.display()
            )
        ),
        nodns = failing(
            "nodns",
            &format!("postgres://probe@{}:5432/postgres", unresolvable_host()),
            "    sslmode: disable\n"
        ),
        // The plain lab's server has TLS off: a client that requires it must refuse to go on.
        needtls = failing(
            "needtls",
            plain.dsn(),
            &format!(
                "    sslmode: require\n    password_file: {}\n",
                plain.password_file()
            )
        ),
        wrongca = failing(
            "wrongca",
            tls.dsn(),
            &format!(
                "    sslmode: verify-ca\n    ca_file: {}\n    password_file: {}\n",
                tls.get("LAB_WRONG_CA_FILE"),
                tls.password_file()
            )
        ),
    ));
    let sessions = SessionWatch::start(&plain.name);
    let started = std::time::Instant::now();
    let exporter = Exporter::start(&config).await;
    let scrapes = ScrapeWatch::start(exporter.address);
    let expected = [
        ("badpw", "auth"),
        ("nodns", "dns"),
        ("needtls", "tls"),
        ("wrongca", "tls"),
    ];
    exporter
        .wait_for(
            Duration::from_secs(60),
            "the healthy target to watch and every failure to be classified",
            |m| {
                m.state_is("f", "watching")
                    && expected.iter().all(|(target, kind)| {
                        m.get(
                            "idle_drop_connect_errors_total",
                            &[("target", target), ("kind", kind)],
                        ) >= Some(1.0)
                    })
            },
        )
        .await;
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(started.elapsed())).await;
    let m = exporter.metrics().await;
    let elapsed = started.elapsed().as_secs_f64();
    for (target, kind) in expected {
        assert_eq!(
            m.get("idle_drop_target_up", &[("target", target)]),
            Some(0.0)
        );
        let attempts = m.sum("idle_drop_connect_errors_total", &[("target", target)]);
        // Backoff doubles from 1 s: about log2(elapsed) + 1 attempts, never one per second.
        assert!(
            attempts <= 2.0 + elapsed.log2().ceil(),
            "{target}: {attempts} failed attempts in {elapsed:.0}s\n{}",
            m.text
        );
        assert_eq!(
            m.get(
                "idle_drop_connect_errors_total",
                &[("target", target), ("kind", kind)]
            ),
            Some(attempts),
            "{target} fails only as {kind}"
        );
    }
    let (lower, upper) = m.bracket("f");
    assert!(lower < 5.15 && upper >= 4.85, "[{lower}, {upper}]");
    assert_eq!(tls.exporter_sessions(), 0, "a refused CA never logs in");
    finish(exporter, scrapes, sessions, &plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_counted_as_one_and_never_as_an_unexpected_idle_death() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("hout", "silent", 5);
    let config = lab_config(
        "o",
        &lab,
        &format!("    max_connections: {BUDGET}\n    app_max_idle_lifetime: 3s\n"),
    );
    let exporter = Exporter::start(&config).await;
    let target = [("target", "o")];
    exporter
        .wait_for_state(Duration::from_secs(90), "o", "watching")
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = exporter.metrics().await;
    assert_eq!(
        before.sum("idle_drop_unexpected_closed_connections_total", &target),
        0.0,
        "{}",
        before.text
    );
    assert_eq!(before.get("idle_drop_outages_total", &target), Some(0.0));

    lab.lab(&["link-down", &lab.name]);
    exporter
        .wait_for(Duration::from_secs(60), "the target to be seen down", |m| {
            m.get("idle_drop_target_up", &target) == Some(0.0)
        })
        .await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    lab.lab(&["link-up", &lab.name]);
    let m = exporter
        .wait_for(Duration::from_secs(120), "recovery to watching", |m| {
            m.get("idle_drop_target_up", &target) == Some(1.0) && m.state_is("o", "watching")
        })
        .await;
    assert_eq!(
        m.sum("idle_drop_unexpected_closed_connections_total", &target),
        0.0,
        "an outage paged as idle deaths:\n{}",
        m.text
    );
    assert!(
        m.get("idle_drop_outages_total", &target) >= Some(1.0),
        "{}",
        m.text
    );
    exporter.shutdown().await;
}
