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
