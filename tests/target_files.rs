//! Target files with the real binary: watched without a reload, a bad file refused alone while
//! its last good targets keep running, a deleted file's targets removed, `--shard` and
//! `--config.check`. Targets point at a closed loopback port: no database is needed to see
//! which targets run (their series) and how each file fared (its series and the log).

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, http_get, http_request, Metrics, Process, TempConfig};

fn exporter() -> Command {
    Command::new(env!("CARGO_BIN_EXE_idle_drop_exporter"))
}

/// A target file entry (YAML) whose server refuses at once.
fn target(name: &str, extra: &str) -> String {
    target_timing_out_after(name, "200ms", extra)
}

fn target_timing_out_after(name: &str, connect_timeout: &str, extra: &str) -> String {
    format!("- name: {name}\n  dsn: postgres://probe@127.0.0.1:1/postgres\n  connect_timeout: {connect_timeout}\n{extra}")
}

/// Replaces `path` whole, as a generator should (write aside, rename): a refresh never reads
/// half a file.
fn put(path: &Path, text: &str) {
    let aside = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// The binary serving `config` with `flags`, its log (JSON lines) in `log`.
struct Running {
    _process: Process,
    address: std::net::SocketAddr,
    log: PathBuf,
}

impl Running {
    async fn start(config: &TempConfig, flags: &[&str]) -> Running {
        let port = free_port();
        let log = config.dir.join("exporter.log");
        let process = Process(
            exporter()
                .arg("--config.file")
                .arg(&config.path)
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.format=json")
                .args(flags)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        common::wait_until_listening(address).await;
        Running {
            _process: process,
            address,
            log,
        }
    }

    async fn metrics(&self) -> Metrics {
        Metrics::parse(&http_get(self.address, "/metrics").await.1)
    }

    /// Polls /metrics until `done` holds; panics after `limit` with the last scrape and the log.
    async fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&Metrics) -> bool) {
        let start = Instant::now();
        loop {
            let m = self.metrics().await;
            if done(&m) {
                return;
            }
            if start.elapsed() > limit {
                panic!(
                    "timed out after {limit:?} waiting for {what}; last scrape:\n{}\nlog:\n{}",
                    m.text,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log lines holding every one of `parts`, waiting a moment for the log's writer
    /// thread.
    async fn log_lines(&self, parts: &[&str]) -> Vec<String> {
        for _ in 0..20 {
            let lines: Vec<String> = self
                .log_text()
                .lines()
                .filter(|line| parts.iter().all(|part| line.contains(part)))
                .map(str::to_string)
                .collect();
            if !lines.is_empty() {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Vec::new()
    }
}

/// The targets running (those with a `target_up` series).
fn running(m: &Metrics) -> Vec<String> {
    m.label_values("idle_drop_target_up", "target")
}

fn file_ok(m: &Metrics, file: &Path) -> Option<f64> {
    m.get(
        "idle_drop_target_file_last_load_successful",
        &[("file", &file.display().to_string())],
    )
}

fn file_targets(m: &Metrics, file: &Path) -> Option<f64> {
    m.get(
        "idle_drop_target_file_targets",
        &[("file", &file.display().to_string())],
    )
}

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_files_are_watched_and_a_bad_file_is_refused_alone() {
    let config = TempConfig::new(
        "target_files: [\"targets/*.yaml\", \"targets/*.json\"]\ntarget_files_refresh_interval: 1s\ntargets:\n  - name: inline\n    dsn: postgres://probe@127.0.0.1:1/postgres\n    connect_timeout: 200ms\n",
    );
    std::fs::create_dir_all(config.dir.join("targets")).unwrap();
    let a = config.dir.join("targets/a.yaml");
    let b = config.dir.join("targets/b.json");
    let c = config.dir.join("targets/c.yaml");
    put(&a, &format!("{}{}", target("a1", ""), target("a2", "")));
    put(
        &b,
        "[\n  {\"name\": \"b1\", \"dsn\": \"postgres://probe@127.0.0.1:1/postgres\", \"connect_timeout\": \"200ms\"}\n]\n",
    );
    let exporter = Running::start(&config, &[]).await;
    exporter
        .wait_for(WAIT, "inline, a1, a2 and b1", |m| {
            running(m) == ["a1", "a2", "b1", "inline"]
                && file_ok(m, &a) == Some(1.0)
                && file_ok(m, &b) == Some(1.0)
                && file_targets(m, &a) == Some(2.0)
                && file_targets(m, &b) == Some(1.0)
                && m.get("idle_drop_targets", &[]) == Some(4.0)
        })
        .await;

    // A target added to a file runs within the refresh interval, without a reload. a2's
    // precision changes in the same write: a live change, applied to the running target.
    put(
        &a,
        &format!(
            "{}{}{}",
            target("a1", ""),
            target("a2", "  precision: 10%\n"),
            target("a3", "")
        ),
    );
    exporter
        .wait_for(WAIT, "a3 added by the file", |m| {
            running(m).contains(&"a3".to_string()) && file_targets(m, &a) == Some(3.0)
        })
        .await;
    let m = exporter.metrics().await;
    assert_eq!(
        m.get("idle_drop_config_reloads_total", &[("result", "success")]),
        Some(1.0),
        "the start's load only: no reload was needed"
    );
    assert_eq!(
        exporter
            .log_lines(&["target reconnects", "\"target_name\":\"a2\""])
            .await,
        Vec::<String>::new(),
        "a live change must not restart a2"
    );

    // b turns bad (line 3, `max_connections`): refused alone. b1 keeps running; a's change in
    // the meantime (a1 removed, a2's connect_timeout, which reconnects it) still applies.
    put(
        &b,
        "[\n  {\"name\": \"b1\", \"dsn\": \"postgres://probe@127.0.0.1:1/postgres\",\n   \"max_connections\": 500}\n]\n",
    );
    put(
        &a,
        &format!(
            "{}{}",
            target_timing_out_after("a2", "300ms", "  precision: 10%\n"),
            target("a3", "")
        ),
    );
    exporter
        .wait_for(WAIT, "b refused, a1 removed", |m| {
            running(m) == ["a2", "a3", "b1", "inline"]
                && file_ok(m, &b) == Some(0.0)
                && file_targets(m, &b) == Some(1.0)
                && file_ok(m, &a) == Some(1.0)
        })
        .await;
    let refused = exporter
        .log_lines(&["target file refused", "\"level\":\"ERROR\""])
        .await;
    assert_eq!(refused.len(), 1, "one error line: {refused:#?}");
    assert!(
        refused[0].contains(&format!(
            "{}:3: [0].max_connections: 500 is outside 2..=64",
            b.display()
        )),
        "{}",
        refused[0]
    );
    // The status page says which file is refused and why, beside the others.
    let page = http_get(exporter.address, "/").await.1;
    let b_row = page
        .lines()
        .find(|line| line.contains(&format!("<code>{}</code>", b.display())))
        .unwrap_or_else(|| panic!("no row for b on the page:\n{page}"));
    assert!(
        b_row.contains("refused")
            && b_row.contains("[0].max_connections: 500 is outside 2..=64")
            && b_row.contains("<td>1</td>"),
        "{b_row}"
    );
    assert!(
        page.contains(&format!(
            "<code>{}</code></td><td>2</td><td><span class=\"ok\">loaded</span>",
            a.display()
        )),
        "{page}"
    );
    assert!(
        !exporter
            .log_lines(&["target reconnects", "\"target_name\":\"a2\""])
            .await
            .is_empty(),
        "a2's connect_timeout reconnects it:\n{}",
        exporter.log_text()
    );

    // Fixed, with one more target: in force again.
    put(
        &b,
        "[{\"name\": \"b1\", \"dsn\": \"postgres://probe@127.0.0.1:1/postgres\", \"connect_timeout\": \"200ms\"},\n {\"name\": \"b2\", \"dsn\": \"postgres://probe@127.0.0.1:1/postgres\", \"connect_timeout\": \"200ms\"}]\n",
    );
    exporter
        .wait_for(WAIT, "b accepted again", |m| {
            running(m) == ["a2", "a3", "b1", "b2", "inline"]
                && file_ok(m, &b) == Some(1.0)
                && file_targets(m, &b) == Some(2.0)
        })
        .await;

    // A new file that brings a name a runs is refused; a keeps it.
    put(&c, &format!("{}{}", target("c1", ""), target("a2", "")));
    exporter
        .wait_for(WAIT, "c refused for a2", |m| {
            file_ok(m, &c) == Some(0.0)
                && file_targets(m, &c) == Some(0.0)
                && !running(m).contains(&"c1".to_string())
        })
        .await;
    let clash = exporter.log_lines(&["`a2` is already a target of"]).await;
    assert!(
        clash.len() == 1 && clash[0].contains(&format!("{}:4: [1].name", c.display())),
        "{clash:#?}"
    );

    // a deleted: its targets go (a3), so do its series; a2 is free now, and c takes it.
    std::fs::remove_file(&a).unwrap();
    exporter
        .wait_for(WAIT, "a's targets removed, c in force", |m| {
            running(m) == ["a2", "b1", "b2", "c1", "inline"]
                && file_ok(m, &a).is_none()
                && file_targets(m, &a).is_none()
                && file_ok(m, &c) == Some(1.0)
                && file_targets(m, &c) == Some(2.0)
        })
        .await;
}

/// A reload (SIGHUP, `POST /-/reload`) reads the target files at once, whatever the interval;
/// `--shard` splits the files' targets as it splits inline ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reads_the_target_files_and_shards_split_their_targets() {
    let config =
        TempConfig::new("target_files: [\"fleet-*.yaml\"]\ntarget_files_refresh_interval: 1h\n");
    let fleet = config.dir.join("fleet-1.yaml");
    put(&fleet, &target("orders-db", ""));
    let exporter = Running::start(&config, &["--shard=0/3"]).await;
    exporter
        .wait_for(WAIT, "orders-db", |m| running(m) == ["orders-db"])
        .await;

    let names = ["orders-db", "billing", "users", "search", "audit"];
    let all: String = names.iter().map(|name| target(name, "")).collect();
    put(&fleet, &all);
    let (status, body) = http_request(exporter.address, "POST", "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    // Pinned in tests/cli.rs: shard 0 of 3 holds orders-db, search and audit.
    let m = exporter.metrics().await;
    assert_eq!(running(&m), ["audit", "orders-db", "search"], "{}", m.text);
    assert_eq!(m.get("idle_drop_targets", &[]), Some(3.0));
    assert_eq!(file_targets(&m, &fleet), Some(5.0));
}

#[test]
fn check_config_counts_each_files_targets_and_fails_on_a_bad_one() {
    let config = TempConfig::new(
        "target_files: [\"targets/*.yaml\"]\ntargets:\n  - name: inline\n    dsn: postgres://probe@127.0.0.1:1/postgres\n",
    );
    std::fs::create_dir_all(config.dir.join("targets")).unwrap();
    let a = config.dir.join("targets/a.yaml");
    let b = config.dir.join("targets/b.yaml");
    put(&a, &format!("{}{}", target("a1", ""), target("a2", "")));
    put(&b, &target("b1", ""));
    let check = || {
        exporter()
            .args(["--config.check", "--config.file"])
            .arg(&config.path)
            .output()
            .unwrap()
    };
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(": OK (4 targets)"), "{stdout}");
    assert!(stdout.contains("  inline: 1 targets"), "{stdout}");
    assert!(
        stdout.contains(&format!("  {}: 2 targets\n", a.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("  {}: 1 targets\n", b.display())),
        "{stdout}"
    );

    put(
        &b,
        "- name: b1\n  dsn: postgres://probe:hunter2-secret@127.0.0.1:1/postgres?sslmode=bogus\n",
    );
    let out = check();
    assert_eq!(out.status.code(), Some(78));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stderr.contains(&format!("invalid target file: {}:2: [0].dsn:", b.display())),
        "{stderr}"
    );
    assert!(stdout.contains(": REFUSED (3 targets)"), "{stdout}");
    assert!(
        stdout.contains(&format!("  {}: 0 targets (refused)", b.display())),
        "{stdout}"
    );
    assert!(
        !stdout.contains("hunter2-secret") && !stderr.contains("hunter2-secret"),
        "{stderr}"
    );
}
