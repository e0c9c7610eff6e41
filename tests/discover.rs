//! `idle_drop_exporter discover` as a person runs it: the real binary against the lab in every
//! mode, its JSON report and exit codes, the plain progress lines when stderr is a pipe,
//! Ctrl-C printing what is known so far, and no session left behind on the server.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn discover(lab: &Lab, range_max: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_idle_drop_exporter"));
    command
        .args(["discover", "--dsn", lab.dsn(), "--password-file"])
        .arg(lab.password_file())
        .args(["--sslmode", "disable", "--range-max", range_max])
        .args(["--query-timeout", "3s", "--tcp-user-timeout", "2s"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}):\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn seconds(report: &Value, field: &str) -> f64 {
    report[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing in {report:#}"))
}

/// Runs discover to completion against a lab with threshold `t`; checks what every mode shares.
fn measured(lab: &Lab, t: f64) -> Value {
    let started = Instant::now();
    let output = discover(lab, "60s", &["--json"]).output().unwrap();
    let report = report(&output);
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["outcome"], "measured");
    let (lower, upper) = (
        seconds(&report, "lower_bound_seconds"),
        seconds(&report, "upper_bound_seconds"),
    );
    assert!(
        lower <= t + 0.3 && upper >= t - 0.3,
        "[{lower}, {upper}] misses T={t}"
    );
    assert!((upper - lower) <= 0.05 * (upper + lower) + 1e-9);
    let recommended = seconds(&report["recommendation"], "max_idle_lifetime_seconds");
    assert!(
        recommended < lower,
        "recommended {recommended} >= lower {lower}"
    );
    let quaint = report["recipes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["library"] == "quaint_prisma")
        .expect("quaint (Prisma engine) settings");
    assert!(quaint["text"].as_str().unwrap().contains(&format!(
        "max_idle_connection_lifetime={}",
        recommended as u64
    )));
    // Progress went to stderr as plain lines (stderr is a pipe here).
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.lines().any(|l| l.contains("discovering: bracket [")),
        "{stderr}"
    );
    assert!(!stderr.contains('\r'), "no redraws on a pipe: {stderr:?}");
    assert!(started.elapsed() < Duration::from_secs(90));
    assert_eq!(lab.exporter_sessions(), 0, "sessions left behind");
    // The keepalive verdict ran beside the discovery (budget 8), and the answer, verdict
    // included, came well before the 1.25 x the upper bound the check took after the bracket.
    assert_eq!(
        report["keepalive_check"], "alongside_discovery",
        "{report:#}"
    );
    assert_ne!(report["box_counts"], "unknown", "{report:#}");
    let verdict_after_bracket =
        seconds(&report, "elapsed_seconds") - seconds(&report, "discovery_seconds");
    assert!(
        verdict_after_bracket < 1.25 * upper,
        "the answer came {verdict_after_bracket:.1} s after the bracket: {report:#}"
    );
    report
}

#[test]
fn silent_drop_is_measured_with_ghosts() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("ds5", "silent", 5);
    let report = measured(&lab, 5.0);
    assert_eq!(report["drop"]["kind"], "silent", "{report:#}");
    assert!(report["drop"]["deaths"]["timeout"].as_u64().unwrap() >= 1);
    assert_eq!(report["ghosts"]["server_keeps_ghosts"], true, "{report:#}");
    assert!(report["ghosts"]["reaped"].as_u64().unwrap() >= 1);
    assert_eq!(report["server_settings"]["tcp_keepalives_idle"], "7200");
    assert_eq!(
        report["box_counts"], "packets",
        "keepalives keep a conntrack flow alive: {report:#}"
    );
}

#[test]
fn reset_is_measured_and_named() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("dr4", "reset", 4);
    let report = measured(&lab, 4.0);
    assert_eq!(report["drop"]["kind"], "reset", "{report:#}");
    assert_eq!(report["box_counts"], "packets", "{report:#}");
}

/// A budget of 3 leaves the discovery two probe slots and none to spare: the keepalive check
/// runs after the bracket, as the report says (JSON and text), and still gets the verdict
/// right; the server never lists more sessions than the budget.
#[test]
fn a_budget_without_a_slot_to_spare_checks_keepalives_after_the_bracket() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("dkb3", "reset", 4);
    let sessions = SessionWatch::start(&lab.name);
    let output = discover(&lab, "60s", &["--json", "--budget", "3"])
        .output()
        .unwrap();
    let listed = sessions.finish();
    let report = report(&output);
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["keepalive_check"], "after_bracket", "{report:#}");
    assert_eq!(report["box_counts"], "packets", "{report:#}");
    let upper = seconds(&report, "upper_bound_seconds");
    let verdict_after_bracket =
        seconds(&report, "elapsed_seconds") - seconds(&report, "discovery_seconds");
    assert!(
        verdict_after_bracket >= 1.25 * upper,
        "the check idles 1.25 x the upper bound after the bracket: {report:#}"
    );
    assert!(report["sessions_peak"].as_u64().unwrap() <= 3, "{report:#}");
    assert!(listed <= 3, "the server listed {listed} sessions, budget 3");
    // The text report says what the small budget cost.
    let text = discover(&lab, "60s", &["--budget", "3"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("checked after the bracket"), "{text}");
    assert_eq!(lab.exporter_sessions(), 0, "sessions left behind");
}

#[test]
fn server_timeout_is_named_with_its_sqlstate_and_leaves_no_ghost() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("dv3", "server", 3);
    let report = measured(&lab, 3.0);
    assert_eq!(report["drop"]["kind"], "server_terminated", "{report:#}");
    assert_eq!(report["drop"]["sqlstate"], "57P05");
    assert_eq!(report["ghosts"]["server_keeps_ghosts"], Value::Null);
    assert_eq!(report["ghosts"]["seen"], 0);
    assert_eq!(
        report["box_counts"], "requests",
        "keepalives do not stop idle_session_timeout: {report:#}"
    );
}

#[test]
fn nothing_dropping_up_to_the_max_is_an_answer() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("dn", "silent", 3600);
    let output = discover(&lab, "3s", &["--json"]).output().unwrap();
    let report = report(&output);
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["outcome"], "no_drop_up_to_max");
    assert_eq!(report["upper_bound_seconds"], Value::Null);
    assert!(seconds(&report, "lower_bound_seconds") >= 3.0);
    // The text form says so too.
    let output = discover(&lab, "2s", &[]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("no drop up to the range's max"), "{text}");
    assert!(text.contains("nothing died"), "{text}");
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < limit, "no exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ctrl_c_prints_what_is_known_and_closes_every_session() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("di", "silent", 30);
    let mut child = discover(&lab, "60s", &["--json"]).spawn().unwrap();
    // Let it learn something: a lower bound appears within a few seconds.
    std::thread::sleep(Duration::from_secs(6));
    assert!(lab.exporter_sessions() >= 2, "probing had started");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let output = child.wait_with_output().unwrap();
    let report = report(&output);
    assert_eq!(status.code(), Some(130), "{report:#}");
    assert_eq!(report["outcome"], "interrupted");
    assert!(seconds(&report, "lower_bound_seconds") >= 1.0, "{report:#}");
    assert_eq!(lab.exporter_sessions(), 0, "sessions left behind");
}

#[test]
fn an_unreachable_target_fails_with_status_1() {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_idle_drop_exporter"))
        .args(["discover", "--dsn", "postgres://probe@127.0.0.1:1/db"])
        .args(["--sslmode", "disable", "--connect-timeout", "1s", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report = report(&output);
    assert_eq!(report["outcome"], "unreachable");
    assert!(report["last_error"].as_str().unwrap().contains("refused"));
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn bad_usage_exits_2_naming_the_flag_and_never_the_password() {
    let output = Command::new(env!("CARGO_BIN_EXE_idle_drop_exporter"))
        .args([
            "discover",
            "--dsn",
            "postgres://probe:pa55-secret@127.0.0.1/db",
        ])
        .args(["--budget", "500"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--budget"), "{stderr}");
    assert!(!stderr.contains("pa55-secret"), "{stderr}");
    let output = Command::new(env!("CARGO_BIN_EXE_idle_drop_exporter"))
        .args(["discover"])
        .env_remove("IDLE_DROP_DSN")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "a missing --dsn is bad usage"
    );
}

#[test]
fn the_time_limit_ends_with_the_bracket_so_far_and_status_1() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("dt", "silent", 30);
    let started = Instant::now();
    // Long enough for a probe to survive 1 s even on a loaded machine.
    let output = discover(&lab, "60s", &["--json", "--time-limit", "8s"])
        .output()
        .unwrap();
    let report = report(&output);
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    assert_eq!(report["outcome"], "time_limit");
    assert!(seconds(&report, "lower_bound_seconds") >= 1.0, "{report:#}");
    assert_eq!(report["upper_bound_seconds"], Value::Null);
    assert!(started.elapsed() < Duration::from_secs(25));
    assert_eq!(lab.exporter_sessions(), 0, "sessions left behind");
}

/// On a terminal the progress is one line redrawn in place (run under `script`, which gives the
/// command a pseudo-terminal; bsdutils is essential in Debian).
#[test]
fn on_a_terminal_progress_redraws_one_line() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("dy", "server", 3);
    let command = format!(
        "{} discover --dsn {} --password-file {} --sslmode disable --range-max 60s",
        env!("CARGO_BIN_EXE_idle_drop_exporter"),
        lab.dsn(),
        lab.password_file()
    );
    let output = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(
        screen.contains("\r\x1b[2K[") && screen.contains("bracket ["),
        "{screen:?}"
    );
    assert!(screen.contains("idle-drop threshold  between"), "{screen}");
}

/// The report's "connections at most" is what the server could have listed, not attempts nor
/// connections already closed (issue 20: "23/33 connections at most" while the server saw at
/// most 2). With the role limited to 3 sessions, `--budget 64` can never have had more.
#[test]
fn the_report_counts_at_most_the_sessions_the_server_allowed() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("rbdc", "silent", 3);
    lab.sql(&format!(
        "ALTER ROLE {} CONNECTION LIMIT 3",
        lab.get("LAB_USER")
    ));
    let sessions = SessionWatch::start(&lab.name);
    let output = discover(
        &lab,
        "60s",
        &["--json", "--budget", "64", "--keepalive-check", "false"],
    )
    .output()
    .unwrap();
    let listed = sessions.finish();
    let report = report(&output);
    let peak = report["sessions_peak"].as_u64().unwrap();
    eprintln!("--budget 64, role limited to 3: the report says {peak} at most, the server listed {listed} at most");
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert!(
        peak <= 3,
        "{peak} connections at most, on a role limited to 3"
    );
    assert_eq!(lab.exporter_sessions(), 0, "sessions left behind");
}

/// `--time-limit` bounds the whole run, a connect under way included: a server that takes the
/// connection and never answers, with `--connect-timeout 1h` (it ended at 35 s for a 20 s
/// limit: 15 s of grace waiting for the control connection's connect).
#[test]
fn the_time_limit_bounds_a_connect_under_way() {
    // A loopback "server" that accepts and then says nothing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(64) {
            held.push(stream);
        }
    });
    let password = std::env::temp_dir().join(format!("rb-silent-pw-{}", std::process::id()));
    std::fs::write(&password, "unused\n").unwrap();
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_idle_drop_exporter"))
        .args([
            "discover",
            "--dsn",
            &format!("postgres://probe@127.0.0.1:{port}/db"),
        ])
        .arg("--password-file")
        .arg(&password)
        .args(["--sslmode", "disable", "--json", "--time-limit", "4s"])
        .args(["--connect-timeout", "1h"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    let _ = std::fs::remove_file(&password);
    let report = report(&output);
    eprintln!("--time-limit 4s --connect-timeout 1h: ended after {took:?}");
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    assert_eq!(report["outcome"], "time_limit", "{report:#}");
    // The limit, and the moment a process takes to exit.
    assert!(
        took < Duration::from_millis(4500),
        "a 4 s time limit ended after {took:?}"
    );
}
