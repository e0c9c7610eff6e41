//! Targets behind PgBouncer in transaction mode, whose server pool grows while the probes
//! connect (found by the watch-phase benchmark, `docs/benchmarks.md`): each probe then gets a
//! server connection PgBouncer opened just for it, so it looks like a session of its own.
//!
//! Two things went wrong there. The ghost check ran as a prepared statement, whose parse and
//! execute PgBouncer sent to different server connections ("prepared statement does not
//! exist"), and the control connection took that for a lost connection, which pages. And a dead
//! probe's "session", a pooled server connection other clients went on using, stayed listed
//! for good, so its slot was never freed and the target stopped measuring.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// PgBouncer inside the lab's namespace, on port 6432 of its address, in front of its
/// PostgreSQL (unix socket), transaction pooling, an empty server pool that grows on demand,
/// and server connections handed out round robin so consecutive statements of one client
/// reach different ones (the order a busy pool ends up with anyway).
fn pgbouncer(lab: &Lab, dir: &std::path::Path) -> Process {
    let ini = dir.join("pgbouncer.ini");
    std::fs::write(
        &ini,
        format!(
            "[databases]\npostgres = host={socket} port=5432 dbname=postgres user=probe\n\
             [pgbouncer]\nlisten_addr = *\nlisten_port = 6432\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/userlist.txt\npool_mode = transaction\n\
             default_pool_size = 20\nmin_pool_size = 0\nserver_round_robin = 1\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             logfile = {dir}/pgbouncer.log\n",
            socket = lab.get("LAB_SOCKET_DIR"),
            dir = dir.display(),
        ),
    )
    .unwrap();
    std::fs::write(dir.join("userlist.txt"), "\"probe\" \"\"\n").unwrap();
    let chown = Command::new("chown")
        .args(["-R", "postgres"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(chown.success());
    let process = Process(
        Command::new("ip")
            .args(["netns", "exec", &format!("idl-{}", lab.name)])
            .args(["pgbouncer", "-u", "postgres"])
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let address = format!("{}:6432", lab.get("LAB_HOST")).parse().unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_ok() {
            return process;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "pgbouncer did not listen on {address}:\n{}",
        std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_growing_transaction_pool_the_target_is_measured_and_never_pages() {
    if skip_without_lab(&["pgbouncer"]) {
        return;
    }
    let t = 6.0;
    let lab = Lab::up("pgbq", "silent", t as u64);
    let config = TempConfig::new("");
    let _pgbouncer = pgbouncer(&lab, &config.dir);
    let targets: String = ["pool-a", "pool-b"]
        .iter()
        .map(|name| {
            format!(
                "  - name: {name}\n    dsn: postgres://probe@{host}:6432/postgres\n    sslmode: disable\n    connect_timeout: 3s\n    query_timeout: 3s\n    tcp_user_timeout: 2s\n    idle_range: {{min: 1s, max: 30s}}\n    reap_ghosts: false\n",
                host = lab.get("LAB_HOST"),
            )
        })
        .collect();
    config.write(&format!("listen_address: 127.0.0.1:0\ntargets:\n{targets}"));
    let exporter = Exporter::start(&config).await;

    let m = exporter
        .wait_for(Duration::from_secs(150), "both targets watching", |m| {
            m.state_is("pool-a", "watching") && m.state_is("pool-b", "watching")
        })
        .await;
    for target in ["pool-a", "pool-b"] {
        let (lower, upper) = m.bracket(target);
        assert_bracket(target, lower, upper, t);
        assert_eq!(
            m.sum(
                "idle_drop_unexpected_closed_connections_total",
                &[("target", target), ("role", "control")]
            ),
            0.0,
            "the control connection of {target} was never lost:\n{}",
            m.text
        );
        assert!(
            m.get("idle_drop_probe_connections", &[("target", target)])
                .unwrap()
                <= 8.0,
            "{}",
            m.text
        );
    }
    // Watching goes on: the high sentinel keeps dying past T, which only a freed slot allows,
    // and nothing pages.
    let deaths = |m: &Metrics| {
        m.sum(
            "idle_drop_closed_connections_total",
            &[("target", "pool-a"), ("role", "sentinel_high")],
        )
    };
    let before = deaths(&m);
    let m = exporter
        .wait_for(
            Duration::from_secs(60),
            "two more high-sentinel deaths while watching",
            |m| deaths(m) >= before + 2.0,
        )
        .await;
    for target in ["pool-a", "pool-b"] {
        assert_eq!(
            m.sum(
                "idle_drop_unexpected_closed_connections_total",
                &[("target", target), ("role", "control")]
            ),
            0.0,
            "{}",
            m.text
        );
    }
    exporter.shutdown().await;
}
