//! The binary with a stderr nobody reads any more (`idle_drop_exporter ... 2>&1 | head -3`):
//! logging must not panic tasks, stop probing, or make SIGTERM go unheard (issue 9, defect 5).

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_closed_stderr_pipe_stops_neither_probing_nor_sigterm() {
    let port = common::free_port();
    let config = common::TempConfig::new(&format!(
        "listen_address: 127.0.0.1:{port}\nlog:\n  level: debug\ntargets:\n  - name: db\n    dsn: postgres://probe@127.0.0.1:1/postgres\n    connect_timeout: 200ms\n"
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_idle_drop_exporter"))
        .arg("--config")
        .arg(&config.path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the first line, then go away like `head -1`.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.contains("started"), "{first}");
    drop(stderr);

    // The target keeps being tried (and logged about) with nobody reading.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let address = format!("127.0.0.1:{port}").parse().unwrap();
    let attempts = |runtime: &tokio::runtime::Runtime| {
        let (_, text) = runtime.block_on(common::http_get(address, "/metrics"));
        common::Metrics::parse(&text).sum("idle_drop_connect_errors_total", &[])
    };
    // Attempts back off (1 s, 2 s, 4 s, ...): wait for the next one rather than a fixed time.
    std::thread::sleep(Duration::from_secs(1));
    let before = attempts(&runtime);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = before;
    while after <= before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        after = attempts(&runtime);
    }
    assert!(after > before, "probing goes on: {before} -> {after}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 20 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}
