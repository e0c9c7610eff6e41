//! Compressed scrapes with the real scraper: Debian's Prometheus scrapes the exporter through a
//! relay started here that keeps what passes in each direction. Prometheus asks for gzip on
//! every scrape; the exporter must answer gzip, and Prometheus must read every sample of it
//! (`up` 1, the build info and the targets' series stored). A client that does not ask gets
//! the plain text.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The first bytes seen in each direction, per connection: (request, response).
type Seen = Arc<Mutex<Vec<(Vec<u8>, Vec<u8>)>>>;

/// Keeps up to 8 KiB of what passes.
const KEEP: usize = 8192;

async fn pipe(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    seen: Seen,
    index: usize,
    request: bool,
) {
    let mut buffer = [0u8; 16384];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut seen = seen.lock().unwrap();
            let side = if request {
                &mut seen[index].0
            } else {
                &mut seen[index].1
            };
            let room = KEEP.saturating_sub(side.len()).min(n);
            side.extend_from_slice(&buffer[..room]);
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A TCP relay on loopback to `upstream`; returns its address and what it saw.
async fn relay(upstream: SocketAddr) -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                continue;
            };
            let index = {
                let mut log = log.lock().unwrap();
                log.push((Vec::new(), Vec::new()));
                log.len() - 1
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(pipe(client_read, server_write, log.clone(), index, true));
            tokio::spawn(pipe(server_read, client_write, log.clone(), index, false));
        }
    });
    (address, seen)
}

/// The head (up to the blank line) of `bytes`, lower-cased.
fn head(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_gzip_and_reads_every_sample() {
    if skip_without(&["prometheus"]) {
        return;
    }
    let config = TempConfig::new(
        "targets:\n  - name: closed\n    dsn: postgres://probe@127.0.0.1:1/postgres\n    sslmode: disable\n    connect_timeout: 200ms\n",
    );
    let exporter = Exporter::start(&config).await;
    let (relay, seen) = relay(exporter.address).await;
    let (_prometheus, prometheus) = start_prometheus(&config.dir, relay, None);
    wait_until_listening(prometheus).await;
    // Prometheus listens before its storage is up, and answers queries 503 until then.
    let ready_by = Instant::now() + Duration::from_secs(60);
    while http_get(prometheus, "/-/ready").await.0 != 200 {
        assert!(Instant::now() < ready_by, "Prometheus never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Prometheus stored what it scraped: the scrape succeeded, and it read as many samples as
    // the plain text has (counted again each time: a new series may appear meanwhile).
    let deadline = Instant::now() + Duration::from_secs(60);
    for expr in [
        "up{job=\"idle_drop_exporter\"} == 1",
        "idle_drop_build_info{job=\"idle_drop_exporter\"} == 1",
        "idle_drop_target_up{target=\"closed\"}",
        "scrape_samples_scraped{job=\"idle_drop_exporter\"} == SAMPLES",
    ] {
        loop {
            let (_, text) = http_get(exporter.address, "/metrics").await;
            let samples = text.lines().filter(|l| !l.starts_with('#')).count();
            let expr = expr.replace("SAMPLES", &samples.to_string());
            if prometheus_query(prometheus, &expr).await == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{expr} never held; Prometheus log:\n{}",
                std::fs::read_to_string(config.dir.join("prometheus.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    let scrapes: Vec<(String, String)> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(request, _)| head(request).starts_with("get /metrics "))
        .map(|(request, response)| (head(request), head(response)))
        .collect();
    assert!(!scrapes.is_empty(), "no scrape passed the relay");
    for (request, response) in &scrapes {
        assert!(
            request.contains("\r\naccept-encoding: gzip"),
            "Prometheus asks for gzip: {request}"
        );
        assert!(response.starts_with("http/1.1 200"), "{response}");
        assert!(
            response.contains("\r\ncontent-encoding: gzip"),
            "answered gzip: {response}"
        );
    }
    eprintln!("{} scrapes through the relay, all gzip", scrapes.len());

    // A client that does not ask for gzip (the test harness' own) reads plain text.
    let (status, text) = http_get(exporter.address, "/metrics").await;
    assert_eq!(status, 200);
    assert!(text.contains("# TYPE idle_drop_build_info gauge"), "{text}");
    exporter.shutdown().await;
}
