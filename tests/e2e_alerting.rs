//! End to end with the real stack: Debian's Prometheus scrapes the exporter and loads
//! `alerts/`, Debian's Alertmanager routes to a webhook started here. The lab then drops
//! connections the guard probe relies on (T below `app_max_idle_lifetime`): the page must reach
//! the webhook with the right target and kind, and resolve once T is raised again. On the way,
//! every query of the Grafana dashboard runs against Prometheus and must return data.
//! Everything listens on loopback or lives in the lab's namespace.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A webhook receiver: keeps every POSTed body.
async fn webhook() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buffer).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            store.lock().unwrap().push(body.to_string());
                            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (address, received)
}

/// The first notification of the spike alert for the lab with `status` that also contains
/// `with` (e.g. a role).
fn page_for(received: &Arc<Mutex<Vec<String>>>, status: &str, with: &str) -> Option<String> {
    received
        .lock()
        .unwrap()
        .iter()
        .find(|b| {
            b.contains("\"alertname\":\"IdleDropClosedConnectionsSpike\"")
                && b.contains(&format!("\"status\":\"{status}\""))
                && b.contains("\"target\":\"lab\"")
                && b.contains(with)
        })
        .cloned()
}

async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_failure_pages_through_prometheus_and_alertmanager_and_resolves() {
    if skip_without_lab(&["prometheus", "prometheus-alertmanager"]) {
        return;
    }
    let lab = Lab::up("e2e", "silent", 8);
    let host = lab.get("LAB_HOST").to_string();
    // A second target on a closed port of the lab host, so connect errors exist for the dashboard.
    let config = TempConfig::new(&format!(
        "listen_address: 127.0.0.1:0\ntargets:\n{}  - name: down\n    dsn: postgres://probe@{host}:5433/postgres\n    sslmode: disable\n",
        lab_target("lab", &lab, "    app_max_idle_lifetime: 5s\n")
    ));
    let exporter = Exporter::start(&config).await;
    let (hook, received) = webhook().await;

    let am_port = free_port();
    std::fs::write(
        config.dir.join("alertmanager.yml"),
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname, target, kind]\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://{hook}/\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let _alertmanager = Process::start(
        "prometheus-alertmanager",
        &[
            format!(
                "--config.file={}",
                config.dir.join("alertmanager.yml").display()
            ),
            format!("--storage.path={}", config.dir.join("am").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".into(),
        ],
        &config.dir.join("alertmanager.log"),
    );

    let (_prometheus, prometheus) = start_prometheus(&config.dir, exporter.address, Some(am_port));

    exporter
        .wait_for_state(Duration::from_secs(120), "lab", "watching")
        .await;
    assert!(
        page_for(&received, "firing", "").is_none(),
        "no page while the app's 5s lifetime is safe"
    );

    // The path now drops after 3 s: the guard (idling the app's 5 s) dies, as the app would.
    // (The control connection may die first and page on its own: its pings, spaced for the
    // old threshold, are now too far apart. The guard's page must come too.)
    lab.set_timeout(3);
    let guard = "\"role\":\"guard\"";
    wait_until(
        Duration::from_secs(120),
        "the guard's page at the webhook",
        || page_for(&received, "firing", guard).is_some(),
    )
    .await;
    let page = page_for(&received, "firing", guard).unwrap();
    assert!(page.contains("\"kind\":\"timeout\""), "{page}");
    assert!(page.contains("\"role\":\"guard\""), "{page}");
    assert!(page.contains("\"severity\":\"critical\""), "{page}");
    assert!(
        page.contains("docs/runbook.md#idledropclosedconnectionsspike"),
        "{page}"
    );
    assert!(page.contains("max idle lifetime to at most"), "{page}");

    // Every dashboard query returns data while connections are dying, with the dashboard's
    // variables (job, instance, target) resolved by their own queries against this Prometheus.
    exporter
        .wait_for(
            Duration::from_secs(90),
            "the rediscovery at the lower threshold",
            |m| m.get("idle_drop_discovery_runs_total", &[("target", "lab")]) >= Some(2.0),
        )
        .await;
    let output = Command::new("python3")
        .arg(repo().join("scripts/dashboard-queries.py"))
        .arg(repo().join("dashboards/idle_drop_exporter.json"))
        .arg("--prometheus")
        .arg(prometheus.to_string())
        .output()
        .unwrap();
    let variables = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{variables}");
    for (name, value) in [
        ("job", "idle_drop_exporter"),
        ("instance", &exporter.address.to_string()),
        ("target", "down"),
        ("target", "lab"),
    ] {
        assert!(
            variables
                .lines()
                .any(|l| l.starts_with(&format!("variable {name} = ")) && l.contains(value)),
            "variable {name} does not offer {value}: {variables}"
        );
    }
    let expressions: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(expressions.len() >= 20, "{expressions:?}");
    let mut empty = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for expr in &expressions {
        loop {
            if prometheus_query(prometheus, expr).await > 0 {
                break;
            }
            if Instant::now() > deadline {
                empty.push(expr.clone());
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data: {empty:#?}"
    );
    eprintln!("{} dashboard queries returned data", expressions.len());

    // Raise T again: the guard survives, the spike window drains, the page resolves.
    lab.set_timeout(12);
    wait_until(Duration::from_secs(600), "the page to resolve", || {
        page_for(&received, "resolved", "").is_some()
    })
    .await;
    exporter.shutdown().await;
}
