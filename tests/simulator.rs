//! `idle_drop_exporter simulate` against a real PostgreSQL from the lab (whose own middlebox is
//! set to an hour, so only the simulator drops anything):
//!
//! - the exporter, pointed at the simulator, finds the simulator's idle timeout in each mode and
//!   classifies the deaths as the mode dictates;
//! - a deadpool-postgres pool that never expires idle connections gets `kind: Closed` through
//!   the simulator, and the same pool with the recommended idle lifetime does not;
//! - the binary serves `/metrics` that `promtool check metrics` accepts, logs each flow's fate
//!   and exits cleanly on SIGTERM.
//!
//! The lab tests need root (network namespaces); each has its own lab, so they run in parallel.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod};
use idle_drop_exporter::simulator::{self, Mode, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The simulator running in-process, as the binary runs it.
struct Simulator {
    port: u16,
    metrics: Arc<simulator::SimulatorMetrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Simulator {
    async fn start(mode: Mode, idle_timeout: Duration, upstream: String) -> Simulator {
        let settings = Settings {
            upstream,
            idle_timeout,
            mode,
            max_flows: 64,
            connect_timeout: Duration::from_secs(3),
        };
        let metrics = Arc::new(simulator::SimulatorMetrics::new(&settings));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let task = tokio::spawn(simulator::run(
            settings,
            listener,
            metrics.clone(),
            stop.clone(),
        ));
        Simulator {
            port,
            metrics,
            stop,
            task,
        }
    }

    fn metrics(&self) -> Metrics {
        Metrics::parse(&self.metrics.encode())
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the simulator stops within 10s")
            .unwrap();
    }
}

fn upstream_of(lab: &Lab) -> String {
    format!("{}:{}", lab.get("LAB_HOST"), lab.get("LAB_PORT"))
}

async fn exporter_finds_the_simulated_timeout(lab_name: &str, mode: Mode, t: u64, kind: &str) {
    let started = Instant::now();
    let lab = Lab::up(lab_name, "silent", 3600);
    let sim = Simulator::start(mode, Duration::from_secs(t), upstream_of(&lab)).await;
    let config = TempConfig::new(&format!(
        "listen_address: 127.0.0.1:0\ntargets:\n{}",
        lab_target_at(
            "sim",
            &lab,
            "127.0.0.1",
            sim.port,
            "    max_connections: 8\n"
        )
    ));
    let exporter = Exporter::start(&config).await;
    let target = [("target", "sim")];
    let m = exporter
        .wait_for(Duration::from_secs(60), "the first discovery", |m| {
            m.get("idle_drop_discovery_runs_total", &target) >= Some(1.0)
        })
        .await;
    let (lower, upper) = m.bracket("sim");
    let t = t as f64;
    eprintln!(
        "simulate --mode {} T={t}s: bracket [{lower:.3}, {upper:.3}] after {:.1}s",
        mode.as_str(),
        started.elapsed().as_secs_f64()
    );
    assert_bracket(mode.as_str(), lower, upper, t);
    assert_eq!(
        m.label_values("idle_drop_closed_connections_total", "kind"),
        vec![kind.to_string()],
        "closed-connection kinds in mode {}:\n{}",
        mode.as_str(),
        m.text
    );
    assert!(m.sum("idle_drop_closed_connections_total", &[("kind", kind)]) >= 1.0);

    // The simulator saw it from its side: flows expired, in this mode's way.
    let s = sim.metrics();
    assert!(
        s.get("idle_drop_simulator_flows_expired_total", &[]) >= Some(1.0),
        "{}",
        s.text
    );
    exporter.shutdown().await;
    let registry = sim.metrics.clone();
    sim.stop().await;
    // After shutdown every flow has ended, silent ones (which end when their client closes)
    // included.
    let s = Metrics::parse(&registry.encode());
    let fate = format!("expired_{}", mode.as_str());
    assert!(
        s.get("idle_drop_simulator_flows_ended_total", &[("fate", &fate)]) >= Some(1.0),
        "{}",
        s.text
    );
    for other in ["expired_silent", "expired_reset", "expired_fin"] {
        if other != fate {
            assert_eq!(
                s.get("idle_drop_simulator_flows_ended_total", &[("fate", other)]),
                Some(0.0)
            );
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_finds_the_simulated_timeout_silent() {
    if skip_without_lab(&[]) {
        return;
    }
    exporter_finds_the_simulated_timeout("sim1", Mode::Silent, 4, "timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_finds_the_simulated_timeout_reset() {
    if skip_without_lab(&[]) {
        return;
    }
    exporter_finds_the_simulated_timeout("sim2", Mode::Reset, 5, "reset").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_finds_the_simulated_timeout_fin() {
    if skip_without_lab(&[]) {
        return;
    }
    exporter_finds_the_simulated_timeout("sim3", Mode::Fin, 4, "eof").await;
}

/// `discover` (the real binary) finds the simulator's timeout in every mode and names the
/// drop the way the mode makes it look. One upstream, three simulators, three runs at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_finds_the_simulated_timeout_in_every_mode() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("sim5", "silent", 3600);
    let cases = [
        (Mode::Silent, 4u64, "silent"),
        (Mode::Reset, 5, "reset"),
        (Mode::Fin, 4, "fin"),
    ];
    let mut runs = Vec::new();
    for (mode, t, look) in cases {
        let sim = Simulator::start(mode, Duration::from_secs(t), upstream_of(&lab)).await;
        let dsn = format!(
            "postgres://{}@127.0.0.1:{}/postgres",
            lab.get("LAB_USER"),
            sim.port
        );
        let password_file = lab.password_file().to_string();
        let run = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_idle_drop_exporter"))
                .args(["discover", "--dsn", &dsn, "--password-file", &password_file])
                .args(["--sslmode", "disable", "--range-max", "60s", "--json"])
                .args(["--query-timeout", "3s", "--tcp-user-timeout", "2s"])
                .output()
                .unwrap()
        });
        runs.push((sim, run, t, look));
    }
    for (sim, run, t, look) in runs {
        let output = run.await.unwrap();
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
                panic!(
                    "no report ({e}): {}",
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        assert_eq!(output.status.code(), Some(0), "{report:#}");
        let lower = report["lower_bound_seconds"].as_f64().unwrap();
        let upper = report["upper_bound_seconds"].as_f64().unwrap();
        let t = t as f64;
        assert_bracket(look, lower, upper, t);
        assert_eq!(report["drop"]["kind"], look, "{report:#}");
        assert_eq!(
            report["box_counts"], "requests",
            "keepalives never reach a proxy's idle timer: {report:#}"
        );
        sim.stop().await;
    }
    assert_eq!(lab.exporter_sessions(), 0, "sessions left behind");
}

fn pool(lab: &Lab, port: u16, max_idle: Option<Duration>) -> Pool {
    let password = std::fs::read_to_string(lab.password_file()).unwrap();
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(lab.get("LAB_USER"))
        .password(password.trim())
        .dbname("postgres");
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut builder = Pool::builder(manager).max_size(1);
    if let Some(max_idle) = max_idle {
        // What the recommendation means for deadpool: never hand out a connection idle longer
        // than the recommended lifetime. `last_used` counts from the last checkout, which is at
        // least as long ago as the last return, so this errs on the safe side.
        builder = builder.pre_recycle(Hook::sync_fn(move |_, metrics| {
            if metrics.last_used() > max_idle {
                Err(HookError::message(
                    "idle longer than the recommended lifetime",
                ))
            } else {
                Ok(())
            }
        }));
    }
    builder.build().unwrap()
}

/// The application's schedule: use a connection, idle `short`, use it again, idle `long`, use
/// it again. Returns the backend pid seen at each use, or the error of the failed use.
async fn schedule(
    pool: &Pool,
    short: Duration,
    long: Duration,
) -> Vec<Result<i32, tokio_postgres::Error>> {
    let mut uses = Vec::new();
    for idle in [Duration::ZERO, short, long] {
        tokio::time::sleep(idle).await;
        let client = pool.get().await.expect("a connection from the pool");
        let pid = tokio::time::timeout(
            Duration::from_secs(10),
            client.query_one("SELECT pg_backend_pid()", &[]),
        )
        .await
        .expect("no hang: reset mode answers at once")
        .map(|row| row.get::<_, i32>(0));
        uses.push(pid);
    }
    uses
}

/// Reset mode is the honest reproduction for deadpool: `RecyclingMethod::Fast` only asks
/// `is_closed()`, and a FIN (mode `fin`) ends tokio-postgres' connection task while the
/// connection sits in the pool, so deadpool quietly replaces it and never shows the bug. After an
/// RST-style drop nothing reaches the idle client, `is_closed()` stays false, the dead
/// connection is handed out, and the query fails with `kind: Closed` (the connection task itself
/// ended with `Io(ConnectionReset)`), exactly what quaint logs behind a NAT gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_without_idle_lifetime_gets_kind_closed_and_the_recommended_one_does_not() {
    if skip_without_lab(&[]) {
        return;
    }
    let t = Duration::from_secs(3);
    let lab = Lab::up("sim4", "silent", 3600);
    let sim = Simulator::start(Mode::Reset, t, upstream_of(&lab)).await;
    let short = t.mul_f64(0.5);
    let long = t + Duration::from_millis(1500);

    // Default pool: keeps idle connections forever.
    let naive = pool(&lab, sim.port, None);
    let uses = schedule(&naive, short, long).await;
    let first = uses[0].as_ref().expect("first use works");
    assert_eq!(
        uses[1].as_ref().ok(),
        Some(first),
        "reused after a short idle"
    );
    let error = uses[2]
        .as_ref()
        .expect_err("the connection idle past T is dead when used");
    let debug = format!("{error:?}");
    assert!(
        debug.contains("kind: Closed"),
        "expected kind: Closed, got {debug}"
    );
    eprintln!("pool without idle lifetime: {debug}");
    drop(naive);

    // The same pool with the recommended idle lifetime (below T).
    let recommended = t.mul_f64(0.8);
    let safe = pool(&lab, sim.port, Some(recommended));
    let uses = schedule(&safe, short, long).await;
    let pids: Vec<i32> = uses
        .into_iter()
        .map(|r| r.expect("no error with the recommended lifetime"))
        .collect();
    assert_eq!(pids[0], pids[1], "a short idle still reuses the connection");
    assert_ne!(
        pids[1], pids[2],
        "the connection idle past the lifetime was replaced"
    );
    drop(safe);

    let s = sim.metrics();
    assert!(
        s.get(
            "idle_drop_simulator_flows_ended_total",
            &[("fate", "expired_reset")]
        ) >= Some(1.0),
        "{}",
        s.text
    );
    sim.stop().await;
}

/// The binary: flags, JSON logs, /metrics through promtool, SIGTERM. No database needed: the
/// upstream is a loopback echo server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_metrics_promtool_accepts_and_stops_on_sigterm() {
    if skip_without(&["promtool"]) {
        return;
    }
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_address = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = upstream.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 256];
                while let Ok(n) = stream.read(&mut buffer).await {
                    if n == 0 || stream.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let listen = format!("127.0.0.1:{}", free_port());
    let web: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_idle_drop_exporter"))
        .args([
            "simulate",
            "--listen",
            &listen,
            "--upstream",
            &upstream_address.to_string(),
            "--idle-timeout",
            "500ms",
            "--mode",
            "fin",
            "--web.listen-address",
            &web.to_string(),
            "--log.format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // One flow through it, forgotten with a FIN after 500 ms.
    let mut client = None;
    for _ in 0..100 {
        if let Ok(stream) = TcpStream::connect(&listen).await {
            client = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = client.expect("the simulator listens");
    client.write_all(b"hello").await.unwrap();
    let mut buffer = [0u8; 16];
    client.read_exact(&mut buffer[..5]).await.unwrap();
    assert_eq!(&buffer[..5], b"hello");
    let eof = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buffer))
        .await
        .expect("a FIN after the idle timeout")
        .unwrap();
    assert_eq!(eof, 0);
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (status, body) = http_get(web, "/metrics").await;
    assert_eq!(status, 200);
    let m = Metrics::parse(&body);
    assert_eq!(
        m.get("idle_drop_simulator_flows_opened_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        m.get(
            "idle_drop_simulator_flows_ended_total",
            &[("fate", "expired_fin")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.get(
            "idle_drop_simulator_forwarded_bytes_total",
            &[("direction", "upstream_to_client")]
        ),
        Some(5.0)
    );
    assert_eq!(
        m.get("idle_drop_simulator_idle_timeout_seconds", &[]),
        Some(0.5)
    );
    assert_eq!(
        m.get("idle_drop_simulator_mode_info", &[("mode", "fin")]),
        Some(1.0)
    );
    assert_eq!(http_get(web, "/nothing").await.0, 404);

    let mut promtool = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        checked.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{body}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success(), "exit status {:?}", output.status);
    let logs = String::from_utf8_lossy(&output.stderr);
    let ended: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("\"flow ended\""))
        .collect();
    assert_eq!(ended.len(), 1, "one end line per flow:\n{logs}");
    for field in [
        "\"fate\":\"expired_fin\"",
        "\"flow\":1",
        "\"client_to_upstream_bytes\":5",
        "\"upstream_to_client_bytes\":5",
        "\"idle_at_expiry_seconds\":0.5",
        "\"lifetime_seconds\":",
    ] {
        assert!(ended[0].contains(field), "{field} missing in {}", ended[0]);
    }
    assert!(logs.contains("\"flow opened\""), "{logs}");
    assert!(logs.contains("SIGTERM"), "{logs}");
}
