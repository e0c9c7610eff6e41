//! The daemon's life in the lab: reloads (a bad file keeps the old config running), the guard
//! probe paging when the path starts dropping connections the application relies on, drift
//! detection, and the real binary's signals (SIGHUP reload, SIGTERM closing every session).

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_the_old_config_on_error_and_applies_a_good_one() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("rl", "server", 3);
    let a = lab_target("a", &lab, "    max_connections: 3\n");
    let b = lab_target("b", &lab, "    max_connections: 3\n");
    let config = TempConfig::new(&format!("listen_address: 127.0.0.1:0\ntargets:\n{a}"));
    let exporter = Exporter::start(&config).await;
    exporter
        .wait_for(Duration::from_secs(30), "target a up", |m| {
            m.get("idle_drop_target_up", &[("target", "a")]) == Some(1.0)
        })
        .await;

    // A broken file: refused with file, line and field; the old config keeps running.
    config.write(&format!(
        "listen_address: 127.0.0.1:0\ntargets:\n{a}    precision: lots\n"
    ));
    let (status, body) = http_request(exporter.address, "POST", "/-/reload").await;
    assert_eq!(status, 500);
    assert!(
        body.contains("config.yaml:") && body.contains("targets[0].precision"),
        "{body}"
    );
    let m = exporter.metrics().await;
    assert_eq!(
        m.get("idle_drop_config_last_reload_successful", &[]),
        Some(0.0)
    );
    assert_eq!(
        m.get("idle_drop_config_reloads_total", &[("result", "failure")]),
        Some(1.0)
    );
    assert_eq!(m.get("idle_drop_target_up", &[("target", "a")]), Some(1.0));
    let runs_before = m
        .get("idle_drop_discovery_runs_total", &[("target", "a")])
        .unwrap();
    exporter
        .wait_for(
            Duration::from_secs(40),
            "a still probing after the failed reload",
            |m| {
                m.get("idle_drop_discovery_runs_total", &[("target", "a")]) > Some(runs_before)
                    || m.sum("idle_drop_probe_uses_total", &[("target", "a")]) > 0.0
            },
        )
        .await;

    // A good file adds b and keeps a.
    config.write(&format!("listen_address: 127.0.0.1:0\ntargets:\n{a}{b}"));
    assert_eq!(exporter.reload.reload().await, Ok(()));
    exporter
        .wait_for(Duration::from_secs(30), "target b up", |m| {
            m.get("idle_drop_target_up", &[("target", "b")]) == Some(1.0)
        })
        .await;
    assert_eq!(
        exporter
            .metrics()
            .await
            .get("idle_drop_config_last_reload_successful", &[]),
        Some(1.0)
    );

    // Removing a deletes its series and closes its sessions.
    config.write(&format!("listen_address: 127.0.0.1:0\ntargets:\n{b}"));
    assert_eq!(exporter.reload.reload().await, Ok(()));
    exporter
        .wait_for(Duration::from_secs(30), "a's series to disappear", |m| {
            !m.text.contains("target=\"a\"")
        })
        .await;
    let (status, page) = exporter.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains(">b<") && !page.contains(">a<"), "{page}");
    exporter.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lab.exporter_sessions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_failures_page_and_a_moved_threshold_is_rediscovered() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("gd", "silent", 6);
    let config = lab_config("g", &lab, "    app_max_idle_lifetime: 4s\n");
    // Drift is a fault too: the same contract as in lab_faults.rs.
    let sessions = SessionWatch::start(&lab.name);
    let exporter = Exporter::start(&config).await;
    let scrapes = ScrapeWatch::start(exporter.address);
    let target = [("target", "g")];
    exporter
        .wait_for(Duration::from_secs(90), "the first discovery", |m| {
            m.get("idle_drop_discovery_runs_total", &target) >= Some(1.0)
        })
        .await;
    let m = exporter.metrics().await;
    assert_eq!(
        m.sum("idle_drop_unexpected_closed_connections_total", &target),
        0.0
    );
    assert_eq!(
        m.get("idle_drop_app_max_idle_lifetime_seconds", &target),
        Some(4.0)
    );

    // The path now drops after 3 s: the application's 4 s pool lifetime is unsafe.
    lab.set_timeout(3);
    let m = exporter
        .wait_for(
            Duration::from_secs(60),
            "a guard failure and a detected change",
            |m| {
                m.sum(
                    "idle_drop_unexpected_closed_connections_total",
                    &[("target", "g"), ("role", "guard")],
                ) >= 1.0
                    && m.sum(
                        "idle_drop_threshold_changes_total",
                        &[("target", "g"), ("direction", "down")],
                    ) >= 1.0
            },
        )
        .await;
    assert!(
        m.sum(
            "idle_drop_unexpected_closed_connections_total",
            &[("target", "g"), ("kind", "timeout")]
        ) >= 1.0
    );
    let m = exporter
        .wait_for(Duration::from_secs(90), "the rediscovery", |m| {
            m.get("idle_drop_discovery_runs_total", &target) >= Some(2.0)
        })
        .await;
    let (lower, upper) = m.bracket("g");
    assert!(
        lower < 3.15 && upper >= 2.85,
        "new bracket [{lower}, {upper}] must contain 3"
    );
    assert!(scrapes.finish().await > 10);
    exporter.shutdown().await;
    let max = sessions.finish();
    assert!(max <= 8, "the server saw {max} exporter sessions, budget 8");
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.exporter_sessions() > 0 {
        assert!(Instant::now() < deadline, "sessions left behind");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn scrape_blocking(address: &str) -> Option<Metrics> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(Metrics::parse(response.split_once("\r\n\r\n")?.1))
}

fn wait_blocking(address: &str, limit: Duration, done: impl Fn(&Metrics) -> bool) -> Metrics {
    let start = Instant::now();
    loop {
        if let Some(m) = scrape_blocking(address) {
            if done(&m) {
                return m;
            }
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_binary_reloads_on_sighup_and_closes_every_session_on_sigterm() {
    if skip_without_lab(&["promtool"]) {
        return;
    }
    let lab = Lab::up("sg", "silent", 4);
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let good = format!(
        "listen_address: {address}\nlog: {{format: json, level: info}}\ntargets:\n{}",
        lab_target("bin", &lab, "")
    );
    let config = TempConfig::new(&good);
    let mut child = Command::new(env!("CARGO_BIN_EXE_idle_drop_exporter"))
        .arg("--config")
        .arg(&config.path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    wait_blocking(&address, Duration::from_secs(60), |m| {
        m.sum("idle_drop_closed_connections_total", &[("target", "bin")]) >= 1.0
    });
    assert!(lab.exporter_sessions() >= 2);

    config.write(&format!("{good}    bogus_field: 1\n"));
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    wait_blocking(&address, Duration::from_secs(10), |m| {
        m.get("idle_drop_config_last_reload_successful", &[]) == Some(0.0)
    });
    config.write(&good);
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    wait_blocking(&address, Duration::from_secs(10), |m| {
        m.get("idle_drop_config_last_reload_successful", &[]) == Some(1.0)
    });

    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no exit 30s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    let mut logs = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    for line in logs.lines() {
        assert!(line.starts_with('{'), "not a JSON log line: {line}");
    }
    assert!(logs.contains("SIGTERM"));
    assert!(logs.contains("bogus_field"), "the failed reload is logged");
    let password = std::fs::read_to_string(lab.password_file()).unwrap();
    assert!(
        !logs.contains(password.trim()),
        "a password reached the logs"
    );
    assert_eq!(lab.exporter_sessions(), 0, "sessions left after SIGTERM");
}

/// Keepalives keep a conntrack entry alive (the box counts packets) but not a server-side idle
/// timeout (it counts requests, like a proxy): the keepalive probe must tell them apart.
async fn keepalive_verdict(lab_name: &str, mode: &str, t: u64) -> (f64, Exporter, Lab) {
    let lab = Lab::up(lab_name, mode, t);
    let config = lab_config(
        "k",
        &lab,
        "    keepalive_probe: {enabled: true, interval: 1s}\n",
    );
    let exporter = Exporter::start(&config).await;
    let m = exporter
        .wait_for(Duration::from_secs(120), "the keepalive verdict", |m| {
            m.get("idle_drop_keepalive_rescue", &[("target", "k")])
                .is_some()
        })
        .await;
    (
        m.get("idle_drop_keepalive_rescue", &[("target", "k")])
            .unwrap(),
        exporter,
        lab,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_rescue_conntrack_but_not_a_server_timeout() {
    if skip_without_lab(&["promtool"]) {
        return;
    }
    let (rescued, exporter, lab) = keepalive_verdict("kac", "silent", 4).await;
    assert_eq!(
        rescued, 1.0,
        "keepalives every 1s must keep a 4s conntrack entry alive"
    );

    // While we are here: the exposition is valid for Prometheus' own linter.
    let (_, text) = exporter.get("/metrics").await;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed by scripts/test-all.sh");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "promtool check metrics must print nothing"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    exporter.shutdown().await;
    drop(lab);

    let (rescued, exporter, _lab) = keepalive_verdict("kas", "server", 3).await;
    assert_eq!(
        rescued, 0.0,
        "keepalives cannot rescue a session the server times out"
    );
    exporter.shutdown().await;
}

/// Thresholds outside the search range are reported as such, and failed logins are classified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_edges_and_connect_errors_are_reported() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("edge", "server", 3);
    let wrong_password = TempConfig::new("");
    std::fs::write(wrong_password.dir.join("pw"), "not-the-password\n").unwrap();
    let host = lab.get("LAB_HOST");
    let config = TempConfig::new(&format!(
        "listen_address: 127.0.0.1:0\ntargets:\n\
         {above}    max_connections: 3\n    idle_range: {{min: 500ms, max: 2s}}\n\
         {below}    max_connections: 3\n    idle_range: {{min: 5s, max: 60s}}\n\
         \x20 - name: badpw\n    dsn: {dsn}\n    password_file: {pw}\n    sslmode: disable\n\
         \x20 - name: closed\n    dsn: postgres://probe@{host}:5433/postgres\n    sslmode: disable\n",
        above = lab_target("nodrop", &lab, "").replace("    idle_range: {min: 1s, max: 60s}\n", ""),
        below = lab_target("below", &lab, "").replace("    idle_range: {min: 1s, max: 60s}\n", ""),
        dsn = lab.dsn(),
        pw = wrong_password.dir.join("pw").display(),
    ));
    let exporter = Exporter::start(&config).await;
    let m = exporter
        .wait_for(
            Duration::from_secs(60),
            "verdicts and connect errors",
            |m| {
                m.state_is("nodrop", "no_drop")
                    && m.state_is("below", "below_range")
                    && m.get(
                        "idle_drop_connect_errors_total",
                        &[("target", "badpw"), ("kind", "auth")],
                    ) >= Some(1.0)
                    && m.get(
                        "idle_drop_connect_errors_total",
                        &[("target", "closed"), ("kind", "refused")],
                    ) >= Some(1.0)
            },
        )
        .await;
    assert_eq!(
        m.get(
            "idle_drop_threshold_upper_bound_seconds",
            &[("target", "nodrop")]
        ),
        Some(f64::INFINITY)
    );
    assert!(
        m.get(
            "idle_drop_threshold_lower_bound_seconds",
            &[("target", "nodrop")]
        ) >= Some(2.0)
    );
    assert!(
        m.get(
            "idle_drop_threshold_upper_bound_seconds",
            &[("target", "below")]
        ) <= Some(5.1)
    );
    assert_eq!(
        m.get("idle_drop_target_up", &[("target", "badpw")]),
        Some(0.0)
    );
    // Backoff: a refused target is retried with growing delays, not in a storm.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let attempts = exporter
        .metrics()
        .await
        .sum("idle_drop_connect_errors_total", &[("target", "closed")]);
    assert!(
        attempts <= 6.0,
        "{attempts} connection attempts in ~10s to a closed port"
    );
    let password = std::fs::read_to_string(lab.password_file()).unwrap();
    let (_, page) = exporter.get("/").await;
    assert!(
        !page.contains(password.trim()) && !exporter.metrics().await.text.contains(password.trim())
    );
    exporter.shutdown().await;
}
