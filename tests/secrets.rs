//! No password anywhere a person or a scraper can see it. The real binary runs against the lab
//! at debug level, in text, JSON and logfmt log formats, with the password in every supported place
//! (URL DSN, key=value DSN, `password_file`, `password_env`), a target with a wrong password
//! (authentication failures get logged), a target whose host does not resolve, and reloads of
//! broken configurations that carry the password (over HTTP and by SIGHUP). Then `/metrics`,
//! the landing page, every log line, the reload answers and `--check-config` output are searched
//! for the passwords and for any `user:password@` form.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Distinctive strings: alphanumeric so URL encoding cannot hide them from the search.
const PASSWORD: &str = "SecPwQz7Xk3Rm9Tv";
const WRONG: &str = "WrongMarkerJ4nH8Yc";
const ENV_VAR: &str = "IDLE_DROP_SECRETS_TEST_PW";

fn target(name: &str, dsn: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    dsn: \"{dsn}\"\n{extra}    sslmode: disable\n    connect_timeout: 3s\n    query_timeout: 3s\n    tcp_user_timeout: 2s\n    max_connections: 3\n    idle_range: {{min: 1s, max: 20s}}\n"
    )
}

fn good_config(lab: &Lab, port: u16, password_file: &Path) -> String {
    let host = lab.get("LAB_HOST");
    format!(
        "listen_address: 127.0.0.1:{port}\ntargets:\n{}{}{}{}{}{}",
        target(
            "url",
            &format!("postgres://probe:{PASSWORD}@{host}:5432/postgres"),
            ""
        ),
        target(
            "kv",
            &format!("host={host} port=5432 user=probe password={PASSWORD} dbname=postgres"),
            ""
        ),
        target(
            "file",
            lab.dsn(),
            &format!("    password_file: {}\n", password_file.display())
        ),
        target("env", lab.dsn(), &format!("    password_env: {ENV_VAR}\n")),
        target(
            "wrong",
            &format!("postgres://probe:{WRONG}@{host}:5432/postgres"),
            ""
        ),
        target(
            "nohost",
            // A label over 63 bytes fails inside the resolver: no DNS query leaves the machine.
            &format!(
                "postgres://probe:{PASSWORD}@{}.invalid:5432/postgres",
                "a".repeat(64)
            ),
            ""
        ),
    )
}

/// Broken configurations whose first error is on a line that carries the password.
fn broken_configs(lab: &Lab, port: u16) -> Vec<String> {
    let host = lab.get("LAB_HOST");
    let head = format!("listen_address: 127.0.0.1:{port}\ntargets:\n");
    vec![
        // The driver refuses the port of a URL with a password.
        format!(
            "{head}{}",
            target(
                "url",
                &format!("postgres://probe:{PASSWORD}@{host}:notaport/postgres"),
                ""
            )
        ),
        // Our own TLS parameter check on a key=value DSN with a password.
        format!(
            "{head}{}",
            target(
                "kv",
                &format!("host={host} password={PASSWORD} sslmode=bogus"),
                ""
            )
        ),
        // A YAML syntax error in the middle of the password line.
        format!(
            "{head}  - name: url\n    dsn: \"postgres://probe:{PASSWORD}@{host}/postgres\n    max_connections: 3\n"
        ),
        // A type error next to a password.
        format!(
            "{head}  - name: kv\n    dsn: {{password: {PASSWORD}}}\n"
        ),
        // Two password places.
        format!(
            "{head}{}",
            target(
                "url",
                &format!("postgres://probe:{PASSWORD}@{host}/postgres"),
                &format!("    password_env: {ENV_VAR}\n")
            )
        ),
    ]
}

/// Every place a secret must not be, with where it came from.
struct Seen(Vec<(String, String)>);

impl Seen {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.0.push((what.into(), text.into()));
    }

    fn assert_clean(&self) {
        for (what, text) in &self.0 {
            for secret in [PASSWORD, WRONG] {
                if let Some(line) = text.lines().find(|l| l.contains(secret)) {
                    panic!("{what} shows a password:\n{line}");
                }
            }
            if let Some(line) = text.lines().find(|l| has_userinfo_password(l)) {
                panic!("{what} shows a user:password@ form:\n{line}");
            }
        }
    }
}

/// `scheme://user:password@...` anywhere in the line.
fn has_userinfo_password(line: &str) -> bool {
    line.match_indices("://").any(|(i, _)| {
        let authority: String = line[i + 3..]
            .chars()
            .take_while(|c| !matches!(c, '/' | ' ' | '"' | '\'' | '<' | '>' | '?' | '#'))
            .collect();
        authority
            .split_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    })
}

fn exporter() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_idle_drop_exporter"));
    command.env(ENV_VAR, PASSWORD);
    command
}

fn check_config(path: &Path) -> (Option<i32>, String) {
    let out = exporter()
        .arg("--config")
        .arg(path)
        .arg("--check-config")
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// One run of the binary in `format`; everything it showed goes into `seen`.
async fn run_once(lab: &Lab, format: &str, seen: &mut Seen) {
    let port = free_port();
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = TempConfig::new("");
    let password_file = config.dir.join("pw");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let good = good_config(lab, port, &password_file);
    config.write(&good);

    let (code, out) = check_config(&config.path);
    assert_eq!(code, Some(0), "{out}");
    seen.add("--check-config (valid)", out);
    for (i, broken) in broken_configs(lab, port).iter().enumerate() {
        config.write(broken);
        let (code, out) = check_config(&config.path);
        assert_eq!(code, Some(78), "broken config {i} must be refused: {out}");
        seen.add(format!("--check-config (broken {i})"), out);
    }
    config.write(&good);

    let stdout_path = config.dir.join("stdout");
    let stderr_path = config.dir.join("stderr");
    let mut child = exporter()
        .arg("--config")
        .arg(&config.path)
        .args(["--log.level", "debug", "--log.format", format])
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).unwrap())
        .stderr(File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let start = Instant::now();
    while std::net::TcpStream::connect(address).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{format}: the exporter exited ({status}):\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{format}: no listener"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Wait until every password place has logged in, the wrong password and the unknown host
    // have failed, and some probe has died idle (T = 3 s).
    let start = Instant::now();
    let m = loop {
        let (status, body) =
            tokio::time::timeout(Duration::from_secs(5), http_get(address, "/metrics"))
                .await
                .unwrap_or((0, String::new()));
        if status == 200 {
            let m = Metrics::parse(&body);
            let up = |t: &str| m.get("idle_drop_target_up", &[("target", t)]) == Some(1.0);
            let failed = |t: &str| m.sum("idle_drop_connect_errors_total", &[("target", t)]) >= 1.0;
            let died: f64 = ["url", "kv", "file", "env"]
                .iter()
                .map(|t| m.sum("idle_drop_closed_connections_total", &[("target", t)]))
                .sum();
            if up("url")
                && up("kv")
                && up("file")
                && up("env")
                && failed("wrong")
                && failed("nohost")
                && died >= 1.0
            {
                break m;
            }
            if start.elapsed() > Duration::from_secs(90) {
                let _ = child.kill();
                panic!(
                    "{format}: targets not where expected after 90s:\n{body}\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        } else if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!(
                "{format}: /metrics never answered:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        m.get(
            "idle_drop_connect_errors_total",
            &[("target", "wrong"), ("kind", "auth")]
        ) >= Some(1.0),
        "{}",
        m.text
    );

    // Reloads of broken configurations, over HTTP (the answer is captured) and by SIGHUP.
    for (i, broken) in broken_configs(lab, port).iter().enumerate() {
        config.write(broken);
        let (status, body) = http_request(address, "POST", "/-/reload").await;
        assert_eq!(status, 500, "broken config {i}: {body}");
        seen.add(format!("{format}: POST /-/reload (broken {i})"), body);
        signal(pid, "HUP");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    config.write(&good);
    signal(pid, "HUP");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, body) = http_request(address, "POST", "/-/reload").await;
    assert_eq!(status, 200, "{body}");

    for path in ["/metrics", "/", "/-/healthy", "/-/ready"] {
        let (status, body) = http_get(address, path).await;
        assert_eq!(status, 200, "{path}");
        seen.add(format!("{format}: GET {path}"), body);
    }

    signal(pid, "TERM");
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the exporter did not stop within 40s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");

    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    // The log is not empty of what we wanted to provoke: auth failures, a DNS failure, reload
    // refusals, probe deaths; otherwise this test would prove nothing.
    for expected in [
        "wrong",
        "nohost",
        "invalid configuration",
        "probe connection closed",
    ] {
        assert!(
            stderr.contains(expected),
            "{format}: the log never mentions `{expected}`:\n{stderr}"
        );
    }
    if format == "json" {
        for line in stderr.lines() {
            assert!(line.starts_with('{'), "not a JSON line: {line}");
        }
    }
    if format == "logfmt" {
        for line in stderr.lines() {
            assert!(line.starts_with("time="), "not a logfmt line: {line}");
        }
    }
    // Logs a person can read: durations like `2s 950ms`, never Rust's debug text.
    for line in stderr.lines() {
        for debug in ["Some(", "None,", "[(\"", "\")]", "ns,", "µs"] {
            assert!(
                !line.contains(debug),
                "{format}: debug text `{debug}` in: {line}"
            );
        }
    }
    let idle = regex_like_duration(&stderr, "idle=");
    assert!(
        idle,
        "{format}: no `idle=` with a readable duration:\n{stderr}"
    );
    seen.add(format!("{format}: stderr"), stderr);
    seen.add(format!("{format}: stdout"), stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_is_ever_shown() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("sec1", "silent", 3);
    // lab.sh gives the role a random password; ours is distinctive so a search can find it.
    lab.sql(&format!("ALTER ROLE probe PASSWORD '{PASSWORD}'"));
    let mut seen = Seen(Vec::new());
    run_once(&lab, "text", &mut seen).await;
    run_once(&lab, "json", &mut seen).await;
    run_once(&lab, "logfmt", &mut seen).await;
    seen.assert_clean();
}

#[test]
fn the_userinfo_detector_works() {
    assert!(has_userinfo_password("dsn=postgres://probe:x@h/db"));
    assert!(!has_userinfo_password("dsn=postgres://probe@h:5432/db"));
    assert!(!has_userinfo_password("see http://127.0.0.1:10187/metrics"));
}

/// Whether some `key` in the log is followed by a humantime duration (`2s 950ms`, `1m 3s`),
/// quoted in JSON and in logfmt (it has a space) or bare in text.
fn regex_like_duration(log: &str, key: &str) -> bool {
    let json_key = format!("\"{}\":\"", key.trim_end_matches('='));
    let logfmt_key = format!("{key}\"");
    log.lines().any(|line| {
        [logfmt_key.as_str(), key, json_key.as_str()]
            .iter()
            .any(|k| {
                line.split(k).nth(1).is_some_and(|rest| {
                    let first: String = rest
                        .chars()
                        .take_while(char::is_ascii_alphanumeric)
                        .collect();
                    first.chars().next().is_some_and(|c| c.is_ascii_digit())
                        && humantime::parse_duration(&first).is_ok()
                })
            })
    })
}
