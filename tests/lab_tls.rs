//! TLS against the lab's PostgreSQL with its own test CA. The server certificate names
//! `db.lab.invalid` only and the exporter connects by address, so: `require` encrypts without
//! checking; `verify-ca` checks the chain but not the name; `verify-full` checks both and must
//! refuse; `verify-full` with the certificate's name as `host` (and the address as `hostaddr`,
//! so no name is looked up) passes; an unrelated CA is refused by `verify-ca`; a server that
//! only accepts TLS refuses `disable`. Refusals are counted as the right connect-error kind and never stop the exporter.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::time::Duration;

use common::*;

fn target(name: &str, lab: &Lab, sslmode: &str, ca: Option<&str>) -> String {
    let ca = ca
        .map(|c| format!("    ca_file: {c}\n"))
        .unwrap_or_default();
    format!(
        "  - name: {name}\n    dsn: {dsn}\n    password_file: {pw}\n    sslmode: {sslmode}\n{ca}    max_connections: 2\n    idle_range: {{min: 1s, max: 60s}}\n",
        dsn = lab.dsn(),
        pw = lab.password_file(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_behave_as_in_libpq() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up_with("tls", "server", 30, &["--tls"]);
    let ca = lab.get("LAB_CA_FILE").to_string();
    let wrong = lab.get("LAB_WRONG_CA_FILE").to_string();
    let config = TempConfig::new(&format!(
        "listen_address: 127.0.0.1:0\ntargets:\n{}{}{}{}{}{}",
        target("require", &lab, "require", None),
        target("verifyca", &lab, "verify-ca", Some(&ca)),
        target("verifyfull", &lab, "verify-full", Some(&ca)),
        target("wrongca", &lab, "verify-ca", Some(&wrong)),
        target("plain", &lab, "disable", None),
        target("fullname", &lab, "verify-full", Some(&ca)).replace(
            lab.dsn(),
            &format!(
                "'host=db.lab.invalid hostaddr={} port={} user={} dbname=postgres'",
                lab.get("LAB_HOST"),
                lab.get("LAB_PORT"),
                lab.get("LAB_USER")
            )
        ),
    ));
    let exporter = Exporter::start(&config).await;
    let m = exporter
        .wait_for(Duration::from_secs(60), "every target to be judged", |m| {
            m.get("idle_drop_target_up", &[("target", "require")]) == Some(1.0)
                && m.get("idle_drop_target_up", &[("target", "verifyca")]) == Some(1.0)
                && m.get("idle_drop_target_up", &[("target", "fullname")]) == Some(1.0)
                && m.sum(
                    "idle_drop_connect_errors_total",
                    &[("target", "verifyfull")],
                ) >= 1.0
                && m.sum("idle_drop_connect_errors_total", &[("target", "wrongca")]) >= 1.0
                && m.sum("idle_drop_connect_errors_total", &[("target", "plain")]) >= 1.0
        })
        .await;
    assert!(
        m.get(
            "idle_drop_connect_errors_total",
            &[("target", "verifyfull"), ("kind", "tls")]
        ) >= Some(1.0),
        "{}",
        m.text
    );
    assert!(
        m.get(
            "idle_drop_connect_errors_total",
            &[("target", "wrongca"), ("kind", "tls")]
        ) >= Some(1.0),
        "{}",
        m.text
    );
    // The server's pg_hba has only hostssl lines: a plaintext login is refused by the server.
    assert!(
        m.get(
            "idle_drop_connect_errors_total",
            &[("target", "plain"), ("kind", "auth")]
        ) >= Some(1.0),
        "{}",
        m.text
    );
    for refused in ["verifyfull", "wrongca", "plain"] {
        assert_eq!(
            m.get("idle_drop_target_up", &[("target", refused)]),
            Some(0.0)
        );
    }
    // The encrypted sessions are really encrypted.
    let ssl = lab.sql("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name LIKE 'idle_drop_exporter%'");
    assert!(ssl.parse::<u32>().unwrap() >= 3, "TLS sessions: {ssl}");
    let (_, page) = exporter.get("/").await;
    assert!(
        page.contains("tls"),
        "the landing page shows why verifyfull is down"
    );
    exporter.shutdown().await;
}
