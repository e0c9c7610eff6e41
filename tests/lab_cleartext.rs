//! A server that asks for the password in clear text (the lab's PostgreSQL with pg_hba's
//! `password` method): on a connection without TLS the exporter refuses before sending
//! anything, unless the target says `allow_cleartext_password: true`; over TLS it answers.
//! Earlier versions sent the password (or whatever file `password_file` named) to any server
//! that asked for it in clear text.
//!
//! The proof that nothing was sent is the server's own log: a wrong password sent in clear text
//! makes PostgreSQL log `password authentication failed`; the refused targets carry a wrong
//! password and the log stays clean, while a target allowed to send the same wrong password
//! makes the line appear.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::time::Duration;

use common::*;

fn target(name: &str, lab: &Lab, password_file: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    dsn: {dsn}\n    password_file: {password_file}\n    connect_timeout: 3s\n    max_connections: 2\n    idle_range: {{min: 1s, max: 60s}}\n{extra}",
        dsn = lab.dsn(),
    )
}

fn auth_failures(lab: &Lab) -> usize {
    let log = std::path::Path::new(lab.get("LAB_SOCKET_DIR")).join("postgres.log");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("password authentication failed")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleartext_password_request_is_refused_unless_tls_or_allowed() {
    if skip_without_lab(&[]) {
        return;
    }
    let plain = Lab::up_with("clrtxt", "server", 300, &["--auth", "password"]);
    let tls = Lab::up_with("clrtls", "server", 300, &["--auth", "password", "--tls"]);
    let scratch = TempConfig::new("");
    let wrong = scratch.dir.join("wrong.password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let wrong = wrong.display().to_string();
    let right = plain.password_file().to_string();

    // Without TLS, cleartext not allowed: refused, nothing sent (the wrong password would be
    // in the server's log), whatever sslmode short of require says.
    let config = TempConfig::new(&format!(
        "listen_address: 127.0.0.1:0\ntargets:\n{}{}{}{}",
        target("refused", &plain, &wrong, "    sslmode: disable\n"),
        target("prefer", &plain, &wrong, ""),
        target(
            "allowed",
            &plain,
            &right,
            "    sslmode: disable\n    allow_cleartext_password: true\n"
        ),
        target(
            "overtls",
            &tls,
            tls.password_file(),
            "    sslmode: require\n"
        ),
    ));
    let exporter = Exporter::start(&config).await;
    let m = exporter
        .wait_for(Duration::from_secs(60), "every target judged", |m| {
            m.get("idle_drop_target_up", &[("target", "allowed")]) == Some(1.0)
                && m.get("idle_drop_target_up", &[("target", "overtls")]) == Some(1.0)
                && ["refused", "prefer"].iter().all(|t| {
                    m.get(
                        "idle_drop_connect_errors_total",
                        &[("target", t), ("kind", "auth")],
                    ) >= Some(2.0)
                })
        })
        .await;
    for refused in ["refused", "prefer"] {
        assert_eq!(
            m.get("idle_drop_target_up", &[("target", refused)]),
            Some(0.0)
        );
    }
    let (_, page) = exporter.get("/").await;
    assert!(
        page.contains("asked for the password in clear text on a connection without TLS"),
        "{page}"
    );
    exporter.shutdown().await;
    assert_eq!(
        auth_failures(&plain),
        0,
        "a refused target sent its password"
    );

    // The control: allowed, the same wrong password reaches the server and is logged.
    let config = TempConfig::new(&format!(
        "listen_address: 127.0.0.1:0\ntargets:\n{}",
        target(
            "sent",
            &plain,
            &wrong,
            "    sslmode: disable\n    allow_cleartext_password: true\n"
        ),
    ));
    let exporter = Exporter::start(&config).await;
    exporter
        .wait_for(
            Duration::from_secs(60),
            "the wrong password refused by the server",
            |m| {
                m.get(
                    "idle_drop_connect_errors_total",
                    &[("target", "sent"), ("kind", "auth")],
                ) >= Some(1.0)
            },
        )
        .await;
    exporter.shutdown().await;
    assert!(auth_failures(&plain) >= 1, "the control sent nothing?");
    drop(tls);
}
