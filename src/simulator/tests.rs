//! Unit tests of the simulator: flag parsing, the expiry logic on in-memory pipes with paused
//! time, and each fate over real loopback TCP (short timeouts, no database).

use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::flow::{relay, Relayed, Side, Traffic};
use super::*;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    args: Args,
}

fn parse(flags: &[&str]) -> Result<Args, clap::Error> {
    Cli::try_parse_from(std::iter::once("simulate").chain(flags.iter().copied())).map(|c| c.args)
}

const REQUIRED: [&str; 8] = [
    "--listen",
    "127.0.0.1:6543",
    "--upstream",
    "db.internal:5432",
    "--idle-timeout",
    "30s",
    "--mode",
    "fin",
];

#[test]
fn flags_parse_into_settings_with_defaults() {
    let args = parse(&REQUIRED).unwrap();
    assert_eq!(args.listen, "127.0.0.1:6543".parse().unwrap());
    assert_eq!(
        args.settings(),
        Settings {
            upstream: "db.internal:5432".into(),
            idle_timeout: Duration::from_secs(30),
            mode: Mode::Fin,
            max_flows: 1024,
            connect_timeout: Duration::from_secs(5),
        }
    );
    assert_eq!(args.web_listen_address, None);
    assert_eq!(args.log().level, "info");
    assert_eq!(args.log().format, crate::config::LogFormat::Text);
}

#[test]
fn every_flag_is_understood() {
    let mut flags = REQUIRED.to_vec();
    flags[5] = "1m30s";
    flags[7] = "silent";
    flags.extend([
        "--max-flows",
        "3",
        "--upstream-connect-timeout",
        "750ms",
        "--web.listen-address",
        "127.0.0.1:10188",
        "--log.level",
        "debug",
        "--log.format",
        "json",
    ]);
    let args = parse(&flags).unwrap();
    let settings = args.settings();
    assert_eq!(settings.idle_timeout, Duration::from_secs(90));
    assert_eq!(settings.mode, Mode::Silent);
    assert_eq!(settings.max_flows, 3);
    assert_eq!(settings.connect_timeout, Duration::from_millis(750));
    assert_eq!(
        args.web_listen_address,
        Some("127.0.0.1:10188".parse().unwrap())
    );
    assert_eq!(args.log().format, crate::config::LogFormat::Json);
    assert_eq!(args.log().level, "debug");
    for (mode, expected) in [
        ("silent", Mode::Silent),
        ("reset", Mode::Reset),
        ("fin", Mode::Fin),
    ] {
        let mut flags = REQUIRED.to_vec();
        flags[7] = mode;
        assert_eq!(parse(&flags).unwrap().mode, expected);
        assert_eq!(expected.as_str(), mode);
    }
}

#[test]
fn bad_flags_are_refused() {
    let with = |index: usize, value: &'static str| {
        let mut flags = REQUIRED.to_vec();
        flags[index] = value;
        parse(&flags)
    };
    assert!(with(7, "drop").is_err(), "unknown mode");
    assert!(with(5, "30").is_err(), "a duration needs a unit");
    assert!(
        with(5, "0s").is_err(),
        "a zero timeout would expire every flow"
    );
    assert!(with(1, "localhost:6543").is_err(), "--listen is an address");
    // `500000000000y` used to panic in every flow (and leave flows_active at 1).
    let e = with(5, "500000000000y").expect_err("too long");
    assert!(e.to_string().contains("longest duration accepted"), "{e}");
    assert!(with(5, "31days").is_err(), "above the 30-day bound");
    assert!(with(5, "30days").is_ok(), "the bound itself is accepted");
    let mut flags = REQUIRED.to_vec();
    flags.extend(["--upstream-connect-timeout", "500000000000y"]);
    assert!(parse(&flags).is_err());
    assert!(parse(&REQUIRED[..6]).is_err(), "--mode is required");
    let mut flags = REQUIRED.to_vec();
    flags.extend(["--max-flows", "0"]);
    assert!(
        parse(&flags).is_err(),
        "max flows 0 would refuse everything"
    );
    let mut flags = REQUIRED.to_vec();
    flags.extend(["--log.format", "xml"]);
    assert!(parse(&flags).is_err());
}

fn settings(mode: Mode, idle_timeout: Duration, upstream: &str) -> Settings {
    Settings {
        upstream: upstream.to_string(),
        idle_timeout,
        mode,
        max_flows: 16,
        connect_timeout: Duration::from_secs(2),
    }
}

/// Expiry counts from the last byte in either direction, and not a moment earlier.
#[tokio::test(start_paused = true)]
async fn a_flow_expires_exactly_one_timeout_after_its_last_byte() {
    let t = Duration::from_secs(30);
    let metrics = SimulatorMetrics::new(&settings(Mode::Silent, t, "x:1"));
    let (mut client, mut client_app) = tokio::io::duplex(1024);
    let (mut upstream, mut server_app) = tokio::io::duplex(1024);
    let traffic = Traffic::default();
    let stop = CancellationToken::new();
    let start = Instant::now();
    let relay = tokio::spawn(async move {
        let r = relay(&mut client, &mut upstream, t, &traffic, &metrics, &stop).await;
        (r, Instant::now(), traffic, metrics)
    });
    // Traffic every 0.9 T, alternating directions, keeps the flow alive past 3 T.
    let mut buffer = [0u8; 8];
    for round in 0..4u32 {
        tokio::time::sleep(t.mul_f64(0.9)).await;
        if round % 2 == 0 {
            client_app.write_all(b"ping").await.unwrap();
            server_app.read_exact(&mut buffer[..4]).await.unwrap();
        } else {
            server_app.write_all(b"pong!").await.unwrap();
            client_app.read_exact(&mut buffer[..5]).await.unwrap();
        }
    }
    let last_byte = Instant::now();
    assert!(last_byte - start >= t.mul_f64(3.6));
    let (relayed, ended, traffic, metrics) = relay.await.unwrap();
    assert_eq!(relayed, Relayed::Expired { idle: t });
    assert_eq!(
        ended - last_byte,
        t,
        "expired exactly T after the last byte"
    );
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(traffic.client_to_upstream.load(Relaxed), 8);
    assert_eq!(traffic.upstream_to_client.load(Relaxed), 10);
    let text = metrics.encode();
    assert!(text
        .contains("idle_drop_simulator_forwarded_bytes_total{direction=\"client_to_upstream\"} 8"));
    assert!(text.contains(
        "idle_drop_simulator_forwarded_bytes_total{direction=\"upstream_to_client\"} 10"
    ));
}

#[tokio::test(start_paused = true)]
async fn a_close_before_the_timeout_is_not_an_expiry() {
    let t = Duration::from_secs(30);
    for closer in [Side::Client, Side::Upstream] {
        let metrics = SimulatorMetrics::new(&settings(Mode::Fin, t, "x:1"));
        let (mut client, client_app) = tokio::io::duplex(1024);
        let (mut upstream, mut server_app) = tokio::io::duplex(1024);
        let stop = CancellationToken::new();
        let relay = tokio::spawn(async move {
            relay(
                &mut client,
                &mut upstream,
                t,
                &Traffic::default(),
                &metrics,
                &stop,
            )
            .await
        });
        tokio::time::sleep(t.mul_f64(0.5)).await;
        let mut client_app = Some(client_app);
        match closer {
            Side::Client => drop(client_app.take()),
            Side::Upstream => server_app.shutdown().await.unwrap(),
        }
        // The other side goes away too, as PostgreSQL and its clients do after a close.
        if closer == Side::Upstream {
            let mut buffer = [0u8; 4];
            let mut client_app = client_app.take().unwrap();
            assert_eq!(
                client_app.read(&mut buffer).await.unwrap(),
                0,
                "FIN passed on"
            );
            drop(client_app);
        } else {
            drop(server_app);
        }
        let started = Instant::now();
        assert_eq!(relay.await.unwrap(), Relayed::ClosedBy(closer));
        assert!(
            Instant::now() - started < t,
            "ended at the close, not at expiry"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_a_relay_at_once() {
    let t = Duration::from_secs(30);
    let metrics = SimulatorMetrics::new(&settings(Mode::Reset, t, "x:1"));
    let (mut client, _client_app) = tokio::io::duplex(64);
    let (mut upstream, _server_app) = tokio::io::duplex(64);
    let stop = CancellationToken::new();
    let token = stop.clone();
    let relay = tokio::spawn(async move {
        relay(
            &mut client,
            &mut upstream,
            t,
            &Traffic::default(),
            &metrics,
            &token,
        )
        .await
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    assert_eq!(relay.await.unwrap(), Relayed::Shutdown);
}

/// A loopback upstream that echoes and reports whether it saw EOF; and a running simulator.
struct Rig {
    address: std::net::SocketAddr,
    metrics: Arc<SimulatorMetrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    upstream_events: tokio::sync::mpsc::UnboundedReceiver<&'static str>,
}

async fn rig(mode: Mode, idle_timeout: Duration, max_flows: usize) -> Rig {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_address = upstream.local_addr().unwrap();
    let (events, upstream_events) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = upstream.accept().await.unwrap();
            let events = events.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 1024];
                loop {
                    match stream.read(&mut buffer).await {
                        Ok(0) => {
                            let _ = events.send("eof");
                            return;
                        }
                        Ok(n) => {
                            let _ = events.send("data");
                            if stream.write_all(&buffer[..n]).await.is_err() {
                                return;
                            }
                        }
                        Err(_) => {
                            let _ = events.send("error");
                            return;
                        }
                    }
                }
            });
        }
    });
    let mut settings = settings(mode, idle_timeout, &upstream_address.to_string());
    settings.max_flows = max_flows;
    let metrics = Arc::new(SimulatorMetrics::new(&settings));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(settings, listener, metrics.clone(), stop.clone()));
    Rig {
        address,
        metrics,
        stop,
        task,
        upstream_events,
    }
}

impl Rig {
    fn ended(&self, fate: &str) -> f64 {
        let text = self.metrics.encode();
        let prefix = format!("idle_drop_simulator_flows_ended_total{{fate=\"{fate}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .expect("every fate is exported")
            .parse()
            .unwrap()
    }

    async fn ended_soon(&self, fate: &str) -> f64 {
        for _ in 0..100 {
            if self.ended(fate) > 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.ended(fate)
    }

    async fn next_upstream_event(&mut self) -> Option<&'static str> {
        tokio::time::timeout(Duration::from_secs(2), self.upstream_events.recv())
            .await
            .ok()
            .flatten()
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("run returns promptly on shutdown")
            .unwrap();
    }
}

async fn echo(stream: &mut TcpStream, text: &[u8]) {
    stream.write_all(text).await.unwrap();
    let mut buffer = vec![0u8; text.len()];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut buffer))
        .await
        .expect("echo answers")
        .unwrap();
    assert_eq!(buffer, text);
}

const SHORT: Duration = Duration::from_millis(400);

#[tokio::test]
async fn fin_mode_closes_the_idle_client_with_eof() {
    let mut rig = rig(Mode::Fin, SHORT, 16).await;
    let mut client = TcpStream::connect(rig.address).await.unwrap();
    echo(&mut client, b"hello").await;
    assert_eq!(rig.next_upstream_event().await, Some("data"));
    let idle_since = std::time::Instant::now();
    let mut buffer = [0u8; 16];
    // The client, idle, sees EOF (not an error) once the timeout has passed.
    let n = tokio::time::timeout(Duration::from_secs(3), client.read(&mut buffer))
        .await
        .expect("a FIN arrives")
        .expect("EOF, not an error");
    assert_eq!(n, 0);
    let waited = idle_since.elapsed();
    assert!(
        waited >= SHORT - Duration::from_millis(20) && waited < SHORT * 3,
        "FIN after {waited:?}"
    );
    assert_eq!(
        rig.next_upstream_event().await,
        Some("eof"),
        "upstream got a FIN"
    );
    drop(client);
    assert_eq!(rig.ended_soon("expired_fin").await, 1.0);
    assert!(rig
        .metrics
        .encode()
        .contains("idle_drop_simulator_flows_expired_total 1"));
    rig.stop().await;
}

#[tokio::test]
async fn reset_mode_answers_the_next_packet_with_rst() {
    let mut rig = rig(Mode::Reset, SHORT, 16).await;
    let mut client = TcpStream::connect(rig.address).await.unwrap();
    echo(&mut client, b"hello").await;
    assert_eq!(rig.next_upstream_event().await, Some("data"));
    tokio::time::sleep(SHORT * 2).await;
    // Forgotten: the upstream was closed, the idle client was told nothing...
    assert_eq!(rig.next_upstream_event().await, Some("eof"));
    let mut buffer = [0u8; 16];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), client.read(&mut buffer))
            .await
            .is_err(),
        "an idle client hears nothing from a NAT gateway"
    );
    // ...until it sends: then it gets a reset.
    client.write_all(b"SELECT 1").await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(2), client.read(&mut buffer))
        .await
        .expect("an answer to the late packet");
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset)
    );
    assert_eq!(rig.ended_soon("expired_reset").await, 1.0);
    rig.stop().await;
}

#[tokio::test]
async fn silent_mode_swallows_everything_until_the_client_closes() {
    let mut rig = rig(Mode::Silent, SHORT, 16).await;
    let mut client = TcpStream::connect(rig.address).await.unwrap();
    echo(&mut client, b"hello").await;
    assert_eq!(rig.next_upstream_event().await, Some("data"));
    tokio::time::sleep(SHORT * 2).await;
    client.write_all(b"SELECT 1").await.unwrap();
    let mut buffer = [0u8; 16];
    assert!(
        tokio::time::timeout(Duration::from_secs(1), client.read(&mut buffer))
            .await
            .is_err(),
        "no answer, no FIN, no RST"
    );
    // The upstream never saw the late query, and its session is still open (a ghost).
    assert!(rig.next_upstream_event().await.is_none());
    assert_eq!(rig.ended("expired_silent"), 0.0, "the flow lingers");
    assert!(rig
        .metrics
        .encode()
        .contains("idle_drop_simulator_flows_active 1"));
    // When the client gives up and closes, the upstream session is closed too.
    drop(client);
    assert_eq!(rig.next_upstream_event().await, Some("eof"));
    assert_eq!(rig.ended_soon("expired_silent").await, 1.0);
    let text = rig.metrics.encode();
    assert!(text.contains("idle_drop_simulator_flows_active 0"));
    assert!(text
        .contains("idle_drop_simulator_forwarded_bytes_total{direction=\"client_to_upstream\"} 5"));
    rig.stop().await;
}

#[tokio::test]
async fn max_flows_refuses_and_counts_the_excess_and_shutdown_closes_the_rest() {
    let mut rig = rig(Mode::Fin, Duration::from_secs(60), 2).await;
    let mut first = TcpStream::connect(rig.address).await.unwrap();
    let mut second = TcpStream::connect(rig.address).await.unwrap();
    echo(&mut first, b"one").await;
    echo(&mut second, b"two").await;
    let mut third = TcpStream::connect(rig.address).await.unwrap();
    let mut buffer = [0u8; 8];
    let refused = tokio::time::timeout(Duration::from_secs(2), third.read(&mut buffer))
        .await
        .expect("the third connection is closed at once");
    assert!(matches!(refused, Ok(0) | Err(_)));
    assert_eq!(rig.ended_soon("refused_max_flows").await, 1.0);
    let text = rig.metrics.encode();
    assert!(text.contains("idle_drop_simulator_flows_opened_total 3"));
    assert!(text.contains("idle_drop_simulator_flows_active 2"));
    while rig.upstream_events.try_recv().is_ok() {}

    // Shutdown closes both open flows, on both sides.
    let metrics = rig.metrics.clone();
    rig.stop.cancel();
    for client in [&mut first, &mut second] {
        let read = tokio::time::timeout(Duration::from_secs(2), client.read(&mut buffer))
            .await
            .expect("closed by shutdown");
        assert!(matches!(read, Ok(0) | Err(_)));
    }
    assert_eq!(rig.next_upstream_event().await, Some("eof"));
    assert_eq!(rig.next_upstream_event().await, Some("eof"));
    rig.task.await.unwrap();
    let text = metrics.encode();
    assert!(text.contains("idle_drop_simulator_flows_ended_total{fate=\"shutdown\"} 2"));
    assert!(text.contains("idle_drop_simulator_flows_active 0"));
}

#[tokio::test]
async fn an_unreachable_upstream_is_counted_and_the_client_closed() {
    // A port nothing listens on: bind, learn it, close.
    let unused = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = unused.local_addr().unwrap();
    drop(unused);
    let settings = settings(Mode::Fin, SHORT, &address.to_string());
    let metrics = Arc::new(SimulatorMetrics::new(&settings));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listen = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(settings, listener, metrics.clone(), stop.clone()));
    let mut client = TcpStream::connect(listen).await.unwrap();
    let mut buffer = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(3), client.read(&mut buffer))
        .await
        .expect("closed after the failed connect");
    assert!(matches!(read, Ok(0) | Err(_)));
    stop.cancel();
    task.await.unwrap();
    assert!(metrics
        .encode()
        .contains("idle_drop_simulator_flows_ended_total{fate=\"upstream_connect_failed\"} 1"));
}

#[test]
fn metrics_carry_the_settings_and_every_fate() {
    let metrics = SimulatorMetrics::new(&settings(Mode::Reset, Duration::from_millis(4500), "x:1"));
    let text = metrics.encode();
    assert!(text.contains("idle_drop_simulator_idle_timeout_seconds 4.5"));
    assert!(text.contains("idle_drop_simulator_mode_info{mode=\"reset\"} 1"));
    assert!(text.contains("idle_drop_simulator_max_flows 16"));
    for fate in Fate::ALL {
        assert!(
            text.contains(&format!(
                "idle_drop_simulator_flows_ended_total{{fate=\"{}\"}} 0",
                fate.as_str()
            )),
            "{fate:?} missing:\n{text}"
        );
    }
}
