//! Flags as Prometheus users type them, through the real binary: every `--web.listen-address`
//! form, repeated, and in the file's `listen_address`; `--log.format=logfmt` on the daemon,
//! `discover` and `simulate`; `--config.check.allow-missing-env` linting the shipped
//! configuration without its secret; shell completions, the man page, and what `--help` says
//! besides the flags.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn exporter() -> Command {
    Command::new(env!("CARGO_BIN_EXE_idle_drop_exporter"))
}

const TARGET: &str = "targets:\n  - name: db\n    dsn: postgres://probe@127.0.0.1:1/postgres\n    connect_timeout: 200ms\n";

/// Whether this machine can bind IPv6 loopback (containers may have no IPv6).
fn has_ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// The binary with `config` and `args`, its stderr in a file; returns it and the log's path.
fn start(config: &common::TempConfig, args: &[String]) -> (common::Process, std::path::PathBuf) {
    let log = config.dir.join("stderr.log");
    let child = exporter()
        .arg("--config.file")
        .arg(&config.path)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (common::Process(child), log)
}

/// The first line of `log` containing `text`, waiting up to 10 s for it.
async fn log_line(log: &std::path::Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = all.lines().find(|l| l.contains(text)) {
            return line.to_string();
        }
        assert!(Instant::now() < deadline, "no `{text}` in:\n{all}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `:PORT`, `HOST:PORT`, `IP:PORT` and `[IPv6]:PORT`, all at once (the flag repeated): the
/// exporter serves on each; the start line names every bound address.
#[tokio::test]
async fn every_listen_form_serves_and_the_flag_repeats() {
    let config = common::TempConfig::new(TARGET);
    let ports: Vec<u16> = (0..4).map(|_| common::free_port()).collect();
    let mut args = vec![
        format!("--web.listen-address=:{}", ports[0]),
        format!("--web.listen-address=localhost:{}", ports[1]),
        format!("--web.listen-address=127.0.0.1:{}", ports[2]),
    ];
    let ipv6 = has_ipv6();
    if ipv6 {
        args.push(format!("--web.listen-address=[::1]:{}", ports[3]));
    }
    let (child, log) = start(&config, &args);
    let mut reached: Vec<SocketAddr> = vec![
        SocketAddr::from(([127, 0, 0, 1], ports[0])),
        SocketAddr::from(([127, 0, 0, 1], ports[1])),
        SocketAddr::from(([127, 0, 0, 1], ports[2])),
    ];
    if ipv6 {
        // `:PORT` is one socket for both families; [::1] is its own listener.
        reached.push(format!("[::1]:{}", ports[0]).parse().unwrap());
        reached.push(format!("[::1]:{}", ports[3]).parse().unwrap());
    }
    for address in &reached {
        common::wait_until_listening(*address).await;
        let (status, body) = common::http_get(*address, "/metrics").await;
        assert_eq!(status, 200, "{address}");
        assert!(body.contains("idle_drop_build_info"), "{address}");
    }
    let started = log_line(&log, "idle_drop_exporter started").await;
    drop(child);
    assert!(started.contains(&format!(":{}", ports[1])), "{started}");
    assert!(
        started.contains(&format!("127.0.0.1:{}", ports[2])),
        "{started}"
    );
    eprintln!("served on {reached:?} (IPv6: {ipv6})");
}

/// The file's `listen_address` takes the same forms; a wrong one is refused with its line, and
/// a wrong flag with exit 2 naming the flag and the forms.
#[tokio::test]
async fn the_files_listen_address_takes_the_same_forms() {
    let port = common::free_port();
    let config = common::TempConfig::new(&format!("listen_address: ':{port}'\n{TARGET}"));
    let (child, _log) = start(&config, &[]);
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    common::wait_until_listening(address).await;
    assert_eq!(common::http_get(address, "/-/healthy").await.0, 200);
    drop(child);

    let bad = common::TempConfig::new(&format!("listen_address: '::1:{port}'\n{TARGET}"));
    let out = exporter()
        .arg("--config.file")
        .arg(&bad.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":1: listen_address: `::1:") && stderr.contains("[IPv6]:PORT"),
        "{stderr}"
    );

    for bad in ["10187", "::1:10187", "host:port", ":99999"] {
        let out = exporter()
            .arg(format!("--web.listen-address={bad}"))
            .arg("--config.check")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--web.listen-address") && stderr.contains(":PORT, HOST:PORT"),
            "{stderr}"
        );
    }
}

/// One logfmt line: its `key=value` pairs, quoted values unescaped.
fn logfmt_pairs(line: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = line.trim_end();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').unwrap_or_else(|| panic!("{line}"));
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => panic!("{line}"),
                    },
                    Some((i, '"')) => break i + 1,
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated quote in {line}"),
                }
            };
            (value, &quoted[end..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            assert!(!after[..end].contains('"'), "{line}");
            (after[..end].to_string(), &after[end..])
        };
        assert!(!key.contains([' ', '"']), "{line}");
        pairs.push((key.to_string(), value));
        rest = next.trim_start();
    }
    pairs
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> &'a str {
    &pairs.iter().find(|(k, _)| k == key).unwrap().1
}

/// `--log.format=logfmt`: `time level msg` first, then the fields, quoted only where needed, on
/// the daemon, `discover` and `simulate` alike.
#[tokio::test]
async fn logfmt_on_the_daemon_discover_and_simulate() {
    let config = common::TempConfig::new(TARGET);
    let port = common::free_port();
    let (child, log) = start(
        &config,
        &[
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.format=logfmt".into(),
        ],
    );
    let line = log_line(&log, "idle_drop_exporter started").await;
    drop(child);
    let pairs = logfmt_pairs(&line);
    let keys: Vec<&str> = pairs.iter().take(3).map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["time", "level", "msg"], "{line}");
    assert_eq!(get(&pairs, "level"), "INFO");
    assert_eq!(get(&pairs, "msg"), "idle_drop_exporter started");
    assert!(
        line.contains(" msg=\"idle_drop_exporter started\" "),
        "{line}"
    );
    assert_eq!(get(&pairs, "version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(get(&pairs, "address"), format!("127.0.0.1:{port}"));
    assert!(get(&pairs, "time").ends_with('Z'));

    // discover: its warnings about the unreachable target, with the error quoted.
    let out = exporter()
        .args([
            "discover",
            "--dsn",
            "postgres://probe@127.0.0.1:1/postgres",
            "--sslmode",
            "disable",
            "--time-limit",
            "2s",
            "--log.format=logfmt",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("msg=\"cannot connect to target\""))
        .unwrap_or_else(|| panic!("{stderr}"));
    let pairs = logfmt_pairs(line);
    assert_eq!(get(&pairs, "level"), "WARN");
    assert!(
        get(&pairs, "error").contains("Connection refused"),
        "{line}"
    );

    // simulate: its start line.
    let sim = common::TempConfig::new("");
    let log = sim.dir.join("sim.log");
    let child = common::Process(
        exporter()
            .args([
                "simulate",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "127.0.0.1:1",
                "--idle-timeout",
                "5s",
                "--mode",
                "silent",
                "--log.format",
                "logfmt",
            ])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let line = log_line(&log, "simulator started").await;
    drop(child);
    let pairs = logfmt_pairs(&line);
    assert_eq!(get(&pairs, "msg"), "simulator started");
    assert_eq!(get(&pairs, "mode"), "silent");
    assert_eq!(get(&pairs, "idle_timeout"), "5s");

    // The file's log.format takes logfmt too (it used to be read as text).
    let config = common::TempConfig::new(&format!("log:\n  format: logfmt\n{TARGET}"));
    let port = common::free_port();
    let (child, log) = start(&config, &[format!("--web.listen-address=127.0.0.1:{port}")]);
    let line = log_line(&log, "idle_drop_exporter started").await;
    drop(child);
    assert!(
        line.starts_with("time=") && line.contains(" level=INFO msg="),
        "{line}"
    );
}

/// `--config.check.allow-missing-env`: the shipped config.yaml, whose password comes from
/// ORDERS_DB_PASSWORD, passes CI's lint without it, with a warning naming file, line, field
/// and variable; without the flag it is refused as before. The same for `dsn_env` and for a
/// target file's variables; anything else wrong is still refused.
#[test]
fn config_check_allow_missing_env_lints_without_secrets() {
    let check = |config: &std::path::Path, allow: bool| {
        let mut command = exporter();
        command
            .arg("--config.file")
            .arg(config)
            .arg("--config.check")
            .env_remove("ORDERS_DB_PASSWORD")
            .env_remove("IDLE_DROP_FLAGS_URL")
            .env_remove("IDLE_DROP_FLAGS_PW");
        if allow {
            command.arg("--config.check.allow-missing-env");
        }
        let out = command.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let shipped = common::repo().join("config.yaml");
    let line = std::fs::read_to_string(&shipped)
        .unwrap()
        .lines()
        .position(|l| {
            l.trim_start()
                .starts_with("password_env: ORDERS_DB_PASSWORD")
        })
        .unwrap()
        + 1;
    let (code, _, stderr) = check(&shipped, false);
    assert_eq!(code, Some(78), "{stderr}");
    let (code, stdout, stderr) = check(&shipped, true);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("OK (1 targets)"), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "warning: {}:{line}: targets[0].password_env: environment variable ORDERS_DB_PASSWORD is not set or empty (allowed by --config.check.allow-missing-env)",
            shipped.display()
        )),
        "{stderr}"
    );

    let config = common::TempConfig::new(
        "targets:\n  - name: app\n    dsn_env: IDLE_DROP_FLAGS_URL\ntarget_files: [more.yaml]\n",
    );
    std::fs::write(
        config.dir.join("more.yaml"),
        "- name: other\n  dsn: postgres://probe@127.0.0.1/db\n  password_env: IDLE_DROP_FLAGS_PW\n",
    )
    .unwrap();
    let (code, _, stderr) = check(&config.path, false);
    assert_eq!(code, Some(78), "{stderr}");
    let (code, stdout, stderr) = check(&config.path, true);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("OK (2 targets)"), "{stdout}");
    assert!(
        stderr.contains(":3: targets[0].dsn_env: environment variable IDLE_DROP_FLAGS_URL"),
        "{stderr}"
    );
    assert!(
        stderr.contains("more.yaml:3: [0].password_env: environment variable IDLE_DROP_FLAGS_PW"),
        "{stderr}"
    );

    // Still a lint: anything else wrong is refused.
    config.write(
        "targets:\n  - name: app\n    dsn_env: IDLE_DROP_FLAGS_URL\n    max_connections: 500\n",
    );
    let (code, _, stderr) = check(&config.path, true);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("max_connections"), "{stderr}");

    // Only with --config.check: the daemon never runs on a placeholder.
    let out = exporter()
        .args(["--config.check.allow-missing-env"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Completions for bash, zsh and fish name the daemon's flags and commands; the man page is
/// roff with the flags, the commands, the exit status and signals; `--help` ends with the
/// default port, the exit status and the signals.
#[test]
fn completions_man_page_and_help() {
    let run = |args: &[&str]| {
        let out = exporter().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = run(&["completions", shell]);
        for word in ["web.listen-address", "log.format", "discover", "simulate"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    // bash can load it.
    let script = run(&["completions", "bash"]);
    let out = Command::new("bash")
        .args([
            "-c",
            "eval \"$1\" && complete -p idle_drop_exporter",
            "_",
            &script,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let page = run(&["man"]);
    assert!(page.contains(".TH idle_drop_exporter 1"), "{page}");
    for text in [
        "web.listen\\-address",
        "discover",
        "Exit status",
        "SIGHUP",
        env!("CARGO_PKG_VERSION"),
    ] {
        assert!(page.contains(text), "man page lacks {text}");
    }

    let help = run(&["--help"]);
    for text in ["10187", "Exit status:", "78", "SIGHUP", "SIGTERM"] {
        assert!(help.contains(text), "--help lacks {text}");
    }
}
