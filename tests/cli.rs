//! The binary as a user meets it: flags, the exit code and the one-line message on bad config,
//! and no secret in any of it.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::process::Command;

fn exporter() -> Command {
    Command::new(env!("CARGO_BIN_EXE_idle_drop_exporter"))
}

/// `--config.file` and `--config.check` as every Prometheus exporter spells them, and the
/// earlier `--config` and `--check-config` still accepted.
#[test]
fn check_config_accepts_the_shipped_example() {
    for flags in [
        ["--config.file", "config.yaml", "--config.check"],
        ["--config", "config.yaml", "--check-config"],
    ] {
        let out = exporter()
            .args(flags)
            .env("ORDERS_DB_PASSWORD", "not-printed")
            .current_dir(common::repo())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("OK (1 targets)"), "{stdout}");
        assert!(!stdout.contains("not-printed"));
    }
}

/// Starts the exporter on a configuration `text` it must refuse with status 78; returns the
/// file and what it printed on stderr.
fn refused(text: &str) -> (common::TempConfig, String) {
    let config = common::TempConfig::new(text);
    let out = exporter()
        .arg("--config.file")
        .arg(&config.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (config, stderr)
}

#[test]
fn bad_config_exits_78_with_file_line_and_field() {
    let (config, stderr) = refused(
        "targets:\n  - name: db\n    dsn: postgres://probe@127.0.0.1/db\n    max_connections: 500\n",
    );
    let expected = format!(
        "invalid configuration: {}:4: targets[0].max_connections:",
        config.path.display()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn errors_never_print_a_password() {
    let (_config, stderr) = refused(
        "targets:\n  - name: db\n    dsn: postgres://probe:hunter2-secret@127.0.0.1/db?sslmode=bogus\n",
    );
    assert!(stderr.contains("sslmode"), "{stderr}");
    assert!(!stderr.contains("hunter2-secret"), "{stderr}");
}

/// A target may take the application's own URL from an environment variable: accepted when
/// the variable is set (its password is not warned about nor shown), refused with exit 78,
/// naming `dsn_env` and the variable, when it is not.
#[test]
fn check_config_reads_the_application_url_from_dsn_env() {
    let config =
        common::TempConfig::new("targets:\n  - name: app\n    dsn_env: IDLE_DROP_CLI_APP_URL\n");
    let url = "postgresql://app:app-url-secret@127.0.0.1:5432/app?schema=public&connection_limit=5&max_idle_connection_lifetime=60&socket_timeout=10";
    let out = exporter()
        .args(["--config.check", "--config.file"])
        .arg(&config.path)
        .env("IDLE_DROP_CLI_APP_URL", url)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("OK (1 targets)"), "{stdout}");
    assert!(!stdout.contains("app-url-secret") && !stderr.contains("app-url-secret"));
    assert!(!stderr.contains("carries a password"), "{stderr}");

    let out = exporter()
        .args(["--config.check", "--config.file"])
        .arg(&config.path)
        .env_remove("IDLE_DROP_CLI_APP_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":3: targets[0].dsn_env: environment variable IDLE_DROP_CLI_APP_URL is not set or empty"),
        "{stderr}"
    );
    assert!(!stderr.contains("app-url-secret"), "{stderr}");
}

/// `--storage.path DIR --config.check` checks that `DIR` is writable by writing a temp file in
/// it: through a fresh, exclusively created name, so a symlink planted at the name earlier
/// versions used (`.idle_drop_exporter.state.json.tmp`) is left alone, and so is its target.
#[cfg(unix)]
#[test]
fn a_planted_symlink_in_the_storage_directory_is_not_written_through() {
    let config = common::TempConfig::new(
        "targets:\n  - name: db\n    dsn: postgres://probe@127.0.0.1:1/db\n    sslmode: disable\n",
    );
    let storage = config.dir.join("state");
    std::fs::create_dir(&storage).unwrap();
    let victim = config.dir.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let planted = storage.join(".idle_drop_exporter.state.json.tmp");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let out = exporter()
        .args(["--config.check", "--config.file"])
        .arg(&config.path)
        .arg("--storage.path")
        .arg(&storage)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(std::fs::symlink_metadata(&planted)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn missing_file_and_unknown_flags() {
    let out = exporter()
        .args(["--config", "/nonexistent/idle.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/idle.yaml"));
    let out = exporter().arg("--no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The binary serving `config` with `flag` on a free loopback port, once it listens.
async fn serving(
    config: &common::TempConfig,
    flag: &str,
) -> (common::Process, std::net::SocketAddr) {
    let port = common::free_port();
    let child = common::Process(
        exporter()
            .arg("--config.file")
            .arg(&config.path)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(flag)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    common::wait_until_ready(address).await;
    (child, address)
}

/// `--web.telemetry-path` moves the metrics (the status page links there); a path the other
/// endpoints use is refused at the flag.
#[tokio::test]
async fn telemetry_path_moves_the_metrics_and_refuses_reserved_paths() {
    let config = common::TempConfig::new(
        "targets:\n  - name: db\n    dsn: postgres://probe@127.0.0.1:1/postgres\n    connect_timeout: 200ms\n",
    );
    let (child, address) = serving(&config, "--web.telemetry-path=/probe/metrics").await;
    let answer = common::http_get(address, "/probe/metrics").await;
    let metrics_moved = answer.0 == 200 && answer.1.contains("idle_drop_target_up");
    let old_path = common::http_get(address, "/metrics").await.0;
    let page = common::http_get(address, "/").await.1;
    drop(child);
    assert!(metrics_moved, "{answer:?}");
    assert_eq!(old_path, 404);
    assert!(page.contains("<a href=\"/probe/metrics\">Metrics</a>"));

    for reserved in ["/", "/-/healthy", "metrics", "/a b"] {
        let out = exporter()
            .arg(format!("--web.telemetry-path={reserved}"))
            .arg("--config.check")
            .current_dir(common::repo())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{reserved}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--web.telemetry-path"), "{stderr}");
    }
}

/// `--shard=I/N`: each replica probes the targets whose name hashes to I, and says so.
#[tokio::test]
async fn shards_split_the_targets_and_every_target_has_exactly_one() {
    let names = ["orders-db", "billing", "users", "search", "audit"];
    let targets: String = names
        .iter()
        .map(|name| {
            format!("  - name: {name}\n    dsn: postgres://probe@127.0.0.1:1/postgres\n    connect_timeout: 200ms\n")
        })
        .collect();
    let config = common::TempConfig::new(&format!("targets:\n{targets}"));
    let mut owned_by = std::collections::BTreeMap::new();
    for index in 0..3 {
        let (child, address) = serving(&config, &format!("--shard={index}/3")).await;
        let (_, body) = common::http_get(address, "/metrics").await;
        drop(child);
        let m = common::Metrics::parse(&body);
        assert_eq!(m.get("idle_drop_shards", &[]), Some(3.0), "{body}");
        assert_eq!(
            m.get("idle_drop_shard_info", &[("shard", &index.to_string())]),
            Some(1.0)
        );
        let mine = m.label_values("idle_drop_target_up", "target");
        assert_eq!(m.get("idle_drop_targets", &[]), Some(mine.len() as f64));
        for name in mine {
            assert!(
                owned_by.insert(name.clone(), index).is_none(),
                "{name} in two shards"
            );
        }
    }
    let all: Vec<&str> = owned_by.keys().map(String::as_str).collect();
    let mut expected = names.to_vec();
    expected.sort();
    assert_eq!(all, expected, "every target in one shard");
    // Pinned, like the hash's unit test: a target must not move on upgrade.
    assert_eq!(owned_by["orders-db"], 0);
    assert_eq!(owned_by["billing"], 1);

    let out = exporter()
        .args([
            "--config.file",
            "config.yaml",
            "--config.check",
            "--shard=0/2",
        ])
        .env("ORDERS_DB_PASSWORD", "x")
        .current_dir(common::repo())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("in shard 0/2"), "{stdout}");
    for bad in ["3/3", "1", "x/2"] {
        let out = exporter().arg(format!("--shard={bad}")).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--shard"));
    }
}

/// Two exporters on one `--storage.path` would overwrite each other's entries (each writes its
/// own targets and drops the other's): the second refuses to start, naming the directory; once
/// the first is gone the directory is free again. `--config.check` takes no lock.
#[tokio::test]
async fn a_second_exporter_on_the_same_storage_directory_refuses_to_start() {
    let config = common::TempConfig::new(
        "targets:\n  - name: db\n    dsn: postgres://probe@127.0.0.1:1/postgres\n    connect_timeout: 200ms\n",
    );
    let storage = config.dir.join("state");
    std::fs::create_dir(&storage).unwrap();
    let flag = format!("--storage.path={}", storage.display());
    let (first, _) = serving(&config, &flag).await;
    let second = exited_within(
        exporter()
            .arg("--config.file")
            .arg(&config.path)
            .arg("--web.listen-address=127.0.0.1:0")
            .arg(&flag),
        std::time::Duration::from_secs(10),
    );
    let check = exporter()
        .arg("--config.file")
        .arg(&config.path)
        .arg(&flag)
        .arg("--config.check")
        .output()
        .unwrap();
    drop(first);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "storage path {}: in use by another idle_drop_exporter",
            storage.display()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let (again, _) = serving(&config, &flag).await;
    drop(again);
}

/// Runs `command` and returns its output once it exits; kills it (and returns what it printed)
/// if it still runs after `limit`, so a test of a refusal cannot hang on an exporter that
/// started instead.
fn exited_within(command: &mut Command, limit: std::time::Duration) -> std::process::Output {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() && start.elapsed() < limit {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}
