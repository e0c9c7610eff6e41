//! The application's own URL against a real server behind conntrack: a target reads a
//! quaint/Prisma `DATABASE_URL` from the environment (`dsn_env`), connects without the pool
//! parameters the driver would refuse, guards exactly the URL's `max_idle_connection_lifetime`
//! (quaint's 300 s default when the URL has none), says where that value came from, and pages
//! when the URL's lifetime is above the path's threshold.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_idles_the_urls_lifetime_and_pages_when_it_is_above_t() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("aurl", "silent", 5);
    let password = std::fs::read_to_string(lab.password_file()).unwrap();
    let url = |params: &str| {
        format!(
            "postgresql://{user}:{password}@{host}:{port}/postgres?schema=public&connection_limit=5{params}",
            user = lab.get("LAB_USER"),
            password = password.trim(),
            host = lab.get("LAB_HOST"),
            port = lab.get("LAB_PORT"),
        )
    };
    // Unique names: the tests of a binary share the process' environment.
    std::env::set_var(
        "AURL_UNSAFE_DATABASE_URL",
        url("&max_idle_connection_lifetime=8&socket_timeout=3"),
    );
    std::env::set_var("AURL_DEFAULT_DATABASE_URL", url(""));
    let target = |name: &str, var: &str| {
        format!(
            "  - name: {name}\n    dsn_env: {var}\n    sslmode: disable\n    connect_timeout: 3s\n    query_timeout: 3s\n    tcp_user_timeout: 2s\n    idle_range: {{min: 1s, max: 60s}}\n    max_connections: 4\n"
        )
    };
    let config = TempConfig::new(&format!(
        "listen_address: 127.0.0.1:0\ntargets:\n{}{}",
        target("unsafe", "AURL_UNSAFE_DATABASE_URL"),
        target("default", "AURL_DEFAULT_DATABASE_URL"),
    ));
    let exporter = Exporter::start(&config).await;
    let guard = [("target", "unsafe"), ("role", "guard")];
    let m = exporter
        .wait_for(
            Duration::from_secs(60),
            "the URL's 8 s guard to die (T = 5 s)",
            |m| m.sum("idle_drop_unexpected_closed_connections_total", &guard) >= 1.0,
        )
        .await;
    assert_eq!(
        m.get(
            "idle_drop_app_max_idle_lifetime_seconds",
            &[("target", "unsafe")]
        ),
        Some(8.0)
    );
    assert_eq!(
        m.get(
            "idle_drop_app_lifetime_source",
            &[("target", "unsafe"), ("source", "url")]
        ),
        Some(1.0)
    );
    // Connected although the URL carries parameters the driver does not know.
    assert_eq!(
        m.get("idle_drop_target_up", &[("target", "unsafe")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("idle_drop_target_up", &[("target", "default")]),
        Some(1.0)
    );
    assert_eq!(
        m.get(
            "idle_drop_app_max_idle_lifetime_seconds",
            &[("target", "default")]
        ),
        Some(300.0),
        "quaint's default when the URL has no max_idle_connection_lifetime"
    );
    assert_eq!(
        m.get(
            "idle_drop_app_lifetime_source",
            &[("target", "default"), ("source", "library_default")]
        ),
        Some(1.0)
    );
    let (_, page) = http_get(exporter.address, "/").await;
    assert!(
        !page.contains(password.trim()),
        "the URL's password is never shown"
    );
    assert!(!m.text.contains(password.trim()));
    exporter.shutdown().await;
}
