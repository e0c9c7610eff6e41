//! Target files with the real binary: watched without a reload, a bad file refused alone while
//! its last good targets keep running, a deleted file's targets removed, `--shard` and
//! `--config.check`. Targets point at a closed loopback port: no database is needed to see
//! which targets run (their series) and how each file fared (its series and the log).

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{http_get, http_request, Metrics, TempConfig};

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

type Running = common::Served;

impl Running {
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

/// A generator that deletes and re-creates its file does not stop its targets: a file no glob
/// matches keeps them for two refresh intervals (refused meanwhile). Gone for good, its target
/// is removed, but its stored measurement is kept for a day: back, it resumes from it instead
/// of measuring from zero. Earlier versions removed the target at the first refresh that
/// missed the file and threw the measurement away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_file_keeps_its_targets_for_a_grace_period_and_a_removed_target_resumes() {
    let config =
        TempConfig::new("target_files: [\"targets/*.yaml\"]\ntarget_files_refresh_interval: 1s\n");
    std::fs::create_dir_all(config.dir.join("targets")).unwrap();
    let a = config.dir.join("targets/a.yaml");
    // A long connect timeout: a resumed target stays `confirming` while its first probe waits.
    let text = target_timing_out_after("a", "30s", "");
    put(&a, &text);
    // The measurement a previous run stored for `a`.
    let loaded = idle_drop_exporter::config::load(&config.path).unwrap();
    let mut files = idle_drop_exporter::config::TargetFiles::default();
    files.refresh(&loaded.target_files, &[], &config.path, true);
    let fingerprint = files.targets().next().unwrap().fingerprint();
    let storage = config.dir.join("state");
    std::fs::create_dir(&storage).unwrap();
    let state = storage.join("idle_drop_exporter.state.json");
    std::fs::write(
        &state,
        format!(
            r#"{{"version": 1, "targets": {{"a": {{"fingerprint": "{fingerprint}", "lower_seconds": 8.1, "upper_seconds": 8.4, "measured_at": "2026-11-25T16:00:00Z"}}}}}}"#
        ),
    )
    .unwrap();
    let resumed = |m: &Metrics| {
        m.get(
            "idle_drop_threshold_lower_bound_seconds",
            &[("target", "a")],
        ) == Some(8.1)
    };
    let flag = format!("--storage.path={}", storage.display());
    let exporter = Running::start(&config, &[&flag]).await;
    exporter.wait_for(WAIT, "a resumed", resumed).await;

    // Deleted and re-created, three times, a refresh in between: a never stops.
    for _ in 0..3 {
        std::fs::remove_file(&a).unwrap();
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let m = exporter.metrics().await;
        assert_eq!(running(&m), ["a"], "{}", m.text);
        assert_eq!(file_ok(&m, &a), Some(0.0), "{}", m.text);
        put(&a, &text);
        exporter
            .wait_for(WAIT, "a.yaml back", |m| file_ok(m, &a) == Some(1.0))
            .await;
    }
    assert_eq!(
        exporter.log_lines(&["target stopped"]).await,
        Vec::<String>::new()
    );

    // Gone for good: removed after the grace period; its entry stays, marked removed.
    std::fs::remove_file(&a).unwrap();
    exporter
        .wait_for(WAIT, "a removed", |m| running(m).is_empty())
        .await;
    let stored = std::fs::read_to_string(&state).unwrap();
    assert!(
        stored.contains("\"a\"") && stored.contains("\"removed_at\""),
        "{stored}"
    );
    // Back within the day: resumed, not measured from zero.
    put(&a, &text);
    exporter
        .wait_for(WAIT, "a back and resumed", |m| {
            running(m) == ["a"] && resumed(m)
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

/// `n` targets in flow style, one line each.
fn flow_targets(n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| format!("{{name: t{i}, dsn: 'postgres://probe@127.0.0.1:1/postgres'}}"))
        .collect();
    format!("[{}]\n", items.join(",\n "))
}

/// Reading the target files runs off the daemon's loop under a 10 s deadline. Here a refresh
/// takes far longer (400 files at the per-file cap of 2,000 targets, about 60 ms each to check
/// in a debug build): `/-/ready` answers throughout, SIGTERM ends the exporter at once, and a
/// start waits for the files at most the deadline, refusing the file it was reading then.
/// Earlier versions read them on the loop: not ready and deaf to SIGTERM until every file was
/// read (hours here: each such file took 14 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_target_files_never_hold_up_signals_or_readiness() {
    let config = TempConfig::new("target_files: [\"targets/*.yaml\"]\n");
    std::fs::create_dir_all(config.dir.join("targets")).unwrap();
    let text = flow_targets(2000);
    for i in 0..400 {
        std::fs::write(config.dir.join(format!("targets/t{i:03}.yaml")), &text).unwrap();
    }

    // SIGTERM while the first read runs: out within seconds.
    let exporter = Running::start(&config, &[]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = Instant::now();
    let (status, _) = http_get(exporter.address, "/-/ready").await;
    assert_eq!(status, 503, "not ready while the files are read");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    let pid = exporter.process.0.id().to_string();
    let sent = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut exporter = exporter;
    let exited = loop {
        if let Some(status) = exporter.process.0.try_wait().unwrap() {
            break Some(status);
        }
        if sent.elapsed() > Duration::from_secs(8) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        exited.is_some(),
        "still running 8 s after SIGTERM:\n{}",
        exporter.log_text()
    );
    eprintln!("SIGTERM during the read: exited after {:?}", sent.elapsed());

    // Left alone: ready once the deadline passed, the file it was reading then refused.
    let started = Instant::now();
    let exporter = Running::start(&config, &[]).await;
    loop {
        if http_get(exporter.address, "/-/ready").await.0 == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            exporter.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("ready after {:?}", started.elapsed());
    let overdue = exporter.log_lines(&["took longer than 10s"]).await;
    assert_eq!(overdue.len(), 1, "{}", exporter.log_text());
    let m = exporter.metrics().await;
    let files = m.label_values("idle_drop_target_file_last_load_successful", "file");
    assert!(
        !files.is_empty() && files.len() < 400,
        "{} files known",
        files.len()
    );
}

/// A target file may name files only in its own folder (after every symlink) or in
/// `target_files_allowed_dirs`: `password_file: ../../../../etc/shadow` passed `--config.check`,
/// and a DSN pointed at one's own server received the file. A target file that is itself a
/// symlink to a one-line secret is refused without quoting it (serde's `invalid type: string
/// "..."` did, in the log, on the status page and here).
#[test]
fn check_config_refuses_files_outside_a_target_files_folder_and_never_quotes_them() {
    let config = TempConfig::new("target_files: [\"targets/*.yaml\"]\n");
    std::fs::create_dir_all(config.dir.join("targets")).unwrap();
    std::fs::create_dir_all(config.dir.join("secrets")).unwrap();
    let secret = config.dir.join("secrets/db.pw");
    std::fs::write(&secret, "TOPSECRET-4711\nsecond-line\n").unwrap();
    let check = || {
        let out = exporter()
            .args(["--config.check", "--config.file"])
            .arg(&config.path)
            .output()
            .unwrap();
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!shown.contains("TOPSECRET"), "{shown}");
        (out.status.code(), shown)
    };
    let a = config.dir.join("targets/a.yaml");
    for named in [
        "password_file: ../../../../../../../../etc/passwd",
        "password_file: ../secrets/db.pw",
        "dsn_file: ../secrets/db.pw",
        "ca_file: /etc/passwd",
    ] {
        let entry = if named.starts_with("dsn_file") {
            format!("- name: a\n  {named}\n")
        } else {
            target("a", &format!("  {named}\n"))
        };
        put(&a, &entry);
        let (code, shown) = check();
        assert_eq!(code, Some(78), "{named}: {shown}");
        assert!(
            shown.contains("outside this target file's folder"),
            "{named}: {shown}"
        );
    }
    // A symlink in the folder to a file outside it is outside too.
    std::os::unix::fs::symlink(&secret, config.dir.join("targets/db.pw")).unwrap();
    put(&a, &target("a", "  password_file: db.pw\n"));
    let (code, shown) = check();
    assert_eq!(code, Some(78), "{shown}");
    assert!(
        shown.contains("outside this target file's folder"),
        "{shown}"
    );

    // Allowed by the main configuration: read (and refused for its second line).
    std::fs::write(
        &config.path,
        "target_files: [\"targets/*.yaml\"]\ntarget_files_allowed_dirs: [secrets]\n",
    )
    .unwrap();
    let (code, shown) = check();
    assert_eq!(code, Some(78), "{shown}");
    assert!(shown.contains("holds more than one line"), "{shown}");
    std::fs::write(&secret, "TOPSECRET-4711\n").unwrap();
    let (code, shown) = check();
    assert_eq!(code, Some(0), "{shown}");

    // A target file that is a symlink to the secret itself.
    std::fs::remove_file(&a).unwrap();
    std::os::unix::fs::symlink(&secret, &a).unwrap();
    let (code, shown) = check();
    assert_eq!(code, Some(78), "{shown}");
    assert!(
        shown.contains("invalid type: a string, expected a sequence"),
        "{shown}"
    );
}
