//! `--web.config.file`: the exporter's own endpoint over TLS with basic auth (and, optionally,
//! verified client certificates), fetched with curl as a scraper would; bad files refused at
//! start with exit 78 and the field named. Certificates are made here with the openssl CLI.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio_util::sync::CancellationToken;

/// Runs openssl in `dir`, panicking with its stderr on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

/// A self-signed server certificate for 127.0.0.1, and a client CA with one client certificate.
fn certificates(dir: &Path) {
    let req = |extra: &[&str]| {
        let mut args = vec!["req", "-x509", "-nodes", "-days", "1"];
        args.extend(EC);
        args.extend(extra);
        openssl(dir, &args);
    };
    req(&[
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.crt",
    ]);
    req(&[
        "-subj",
        "/CN=test client CA",
        "-keyout",
        "clientca.key",
        "-out",
        "clientca.crt",
    ]);
    let mut args = vec!["req", "-nodes"];
    args.extend(EC);
    args.extend([
        "-subj",
        "/CN=prometheus",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
    ]);
    openssl(dir, &args);
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "clientca.crt",
            "-CAkey",
            "clientca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "client.ext",
            "-out",
            "client.crt",
        ],
    );
}

/// The exporter in-process with `web_config_file` set, as `main` does after checking it. Its
/// one target is a closed loopback port: we only care about our own endpoint here.
struct Running {
    address: std::net::SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _config: TempConfig,
}

async fn start(web_config: &Path) -> Running {
    let config = TempConfig::new(
        "targets:\n  - name: closed\n    dsn: postgres://probe@127.0.0.1:1/postgres\n    sslmode: disable\n",
    );
    let mut loaded = idle_drop_exporter::config::load(&config.path).unwrap();
    idle_drop_exporter::http::web_config::load(web_config).expect("valid web config");
    loaded.web_config_file = Some(web_config.to_path_buf());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(idle_drop_exporter::daemon::run(
        config.path.clone(),
        loaded,
        listener,
        idle_drop_exporter::reload::channel(),
        stop.clone(),
    ));
    Running {
        address,
        stop,
        task,
        _config: config,
    }
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("stops")
            .unwrap();
    }
}

/// curl's (status code, headers + body); status 0 when no HTTP answer came.
async fn curl(args: Vec<String>) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-sS", "-i", "--max-time", "10", "-w", "\n%{http_code}"])
            .args(&args)
            .output()
            .expect("curl");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", "000"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    })
    .await
    .unwrap()
}

fn https(dir: &Path, address: std::net::SocketAddr, path: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--cacert".to_string(),
        dir.join("server.crt").display().to_string(),
        format!("https://{address}{path}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("idle-drop-web-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_basic_auth_guard_every_path() {
    let dir = temp_dir("auth");
    certificates(&dir);
    let hash = bcrypt::hash("scrape-pw", 4).unwrap();
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS12\nhttp_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  prometheus: '{hash}'\n"
        ),
    )
    .unwrap();
    let exporter = start(&web).await;
    let a = exporter.address;

    let (status, body) = curl(https(&dir, a, "/metrics", &["-u", "prometheus:scrape-pw"])).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("idle_drop_targets"), "{body}");
    assert!(
        body.to_ascii_lowercase().contains("x-frame-options: deny"),
        "{body}"
    );
    // Again: served from the auth cache this time, same answer.
    let (status, _) = curl(https(&dir, a, "/", &["-u", "prometheus:scrape-pw"])).await;
    assert_eq!(status, 200);

    for creds in [
        vec!["-u", "prometheus:wrong"],
        vec!["-u", "nobody:scrape-pw"],
        vec![],
    ] {
        let (status, body) = curl(https(&dir, a, "/metrics", &creds)).await;
        assert_eq!(status, 401, "{creds:?}: {body}");
        assert!(
            body.to_ascii_lowercase()
                .contains("www-authenticate: basic"),
            "{body}"
        );
        assert!(!body.contains("idle_drop_"), "no metrics without auth");
    }
    // Every path but the health and readiness probes' (tests below).
    let (status, _) = curl(https(&dir, a, "/", &[])).await;
    assert_eq!(status, 401);

    // Plain HTTP to the TLS port gets no HTTP answer.
    let (status, body) = curl(vec![
        "-u".into(),
        "prometheus:scrape-pw".into(),
        format!("http://{a}/metrics"),
    ])
    .await;
    assert_eq!(status, 0, "plain HTTP must fail: {body}");

    // The file is read per connection: a new password applies at once, without a reload.
    let hash = bcrypt::hash("rotated-pw", 4).unwrap();
    let text = std::fs::read_to_string(&web).unwrap();
    let old_hash_line = text.lines().last().unwrap().to_string();
    std::fs::write(
        &web,
        text.replace(&old_hash_line, &format!("  prometheus: '{hash}'")),
    )
    .unwrap();
    let (status, _) = curl(https(&dir, a, "/metrics", &["-u", "prometheus:rotated-pw"])).await;
    assert_eq!(status, 200);
    let (status, _) = curl(https(&dir, a, "/metrics", &["-u", "prometheus:scrape-pw"])).await;
    assert_eq!(status, 401, "the old password is gone with its hash");

    // A broken file keeps the last valid one in force.
    std::fs::write(&web, "tls_server_config:\n  cert_file: [\n").unwrap();
    let (status, _) = curl(https(&dir, a, "/metrics", &["-u", "prometheus:rotated-pw"])).await;
    assert_eq!(status, 200);
    exporter.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_and_verified() {
    let dir = temp_dir("mtls");
    certificates(&dir);
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clientca.crt\n",
    )
    .unwrap();
    let exporter = start(&web).await;
    let a = exporter.address;
    let cert = dir.join("client.crt").display().to_string();
    let key = dir.join("client.key").display().to_string();
    let (status, body) = curl(https(
        &dir,
        a,
        "/metrics",
        &["--cert", &cert, "--key", &key],
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = curl(https(&dir, a, "/metrics", &[])).await;
    assert_eq!(status, 0, "no client certificate, no connection");
    // A certificate from another CA (the server's own self-signed one) is refused too.
    let other_cert = dir.join("server.crt").display().to_string();
    let other_key = dir.join("server.key").display().to_string();
    let (status, _) = curl(https(
        &dir,
        a,
        "/metrics",
        &["--cert", &other_cert, "--key", &other_key],
    ))
    .await;
    assert_eq!(status, 0);
    exporter.stop().await;
}

/// The probes of a shipped manifest: (path, container port, scheme) of each httpGet probe.
fn manifest_probes(file: &str) -> Vec<(String, u16, String)> {
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut probes = Vec::new();
    for container in doc["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap()
    {
        let port_of = |port: &serde_yaml::Value| match port.as_str() {
            Some(name) => container["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|p| p["name"].as_str() == Some(name))
                .and_then(|p| p["containerPort"].as_u64())
                .unwrap_or_else(|| panic!("{file}: no port named {name}")),
            None => port.as_u64().unwrap(),
        };
        for kind in ["livenessProbe", "readinessProbe", "startupProbe"] {
            let get = &container[kind]["httpGet"];
            if get.is_mapping() {
                probes.push((
                    get["path"].as_str().unwrap().to_string(),
                    u16::try_from(port_of(&get["port"])).unwrap(),
                    get["scheme"].as_str().unwrap_or("HTTP").to_string(),
                ));
            }
        }
    }
    probes
}

/// The port the shipped ConfigMap's configuration listens on (the Deployment passes no flag).
fn configmap_port() -> u16 {
    let text = std::fs::read_to_string(repo().join("deploy/kubernetes/configmap.yaml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let config: serde_yaml::Value =
        serde_yaml::from_str(doc["data"]["config.yaml"].as_str().unwrap()).unwrap();
    let address = config["listen_address"].as_str().unwrap_or("0.0.0.0:10187");
    address.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// Polls `path` without credentials until it answers 200 (readiness comes once the targets
/// are started); returns curl's (status, headers + body).
async fn probe_until_ok(args: impl Fn() -> Vec<String>) -> (u16, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = curl(args()).await;
        if answer.0 == 200 || std::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Kubernetes probes carry no credentials: with basic auth on, `/-/healthy` and `/-/ready`
/// answer anyway (GET and HEAD, over TLS when it is on), and nothing else does. The shipped
/// Deployment's and StatefulSet's probes use those paths on the port the shipped configuration
/// listens on; with TLS on, the same paths with scheme HTTPS (the kubelet does not verify the
/// certificate, as `curl -k` here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_need_no_credentials_under_auth_and_tls() {
    let mut probes = manifest_probes("deploy/kubernetes/deployment.yaml");
    probes.extend(manifest_probes(
        "deploy/kubernetes/sharded/statefulset.yaml",
    ));
    assert_eq!(probes.len(), 4, "{probes:?}");
    let port = configmap_port();
    for (path, probe_port, scheme) in &probes {
        assert_eq!(*probe_port, port, "{path} probes another port");
        assert_eq!(
            scheme, "HTTP",
            "the shipped configuration serves plain HTTP"
        );
        assert!(
            ["/-/healthy", "/-/ready"].contains(&path.as_str()),
            "{path}"
        );
    }

    let dir = temp_dir("probes");
    certificates(&dir);
    let hash = bcrypt::hash("scrape-pw", 4).unwrap();
    let users = format!("basic_auth_users:\n  prometheus: '{hash}'\n");
    let tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

    // Basic auth alone: the manifests' probes as the kubelet sends them (plain HTTP, no
    // credentials), and HEAD answered without a body.
    let web = dir.join("auth.yml");
    std::fs::write(&web, &users).unwrap();
    let exporter = start(&web).await;
    let a = exporter.address;
    for (path, _, _) in &probes {
        let (status, body) = probe_until_ok(|| vec![format!("http://{a}{path}")]).await;
        assert_eq!(status, 200, "{path}: {body}");
        let (status, body) = http_request(a, "HEAD", path).await;
        assert_eq!((status, body.as_str()), (200, ""), "HEAD {path}");
    }
    assert_eq!(http_request(a, "HEAD", "/metrics").await.0, 401);
    assert_eq!(http_get(a, "/metrics").await.0, 401);
    assert_eq!(http_request(a, "POST", "/-/reload").await.0, 401);
    exporter.stop().await;

    // TLS and basic auth.
    let web = dir.join("tls.yml");
    std::fs::write(&web, format!("{tls}{users}")).unwrap();
    let exporter = start(&web).await;
    let a = exporter.address;
    for (path, answer) in [("/-/healthy", "Healthy."), ("/-/ready", "Ready.")] {
        let (status, body) =
            probe_until_ok(|| vec!["-k".into(), format!("https://{a}{path}")]).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.trim_end().ends_with(answer), "{body}");
        let (status, head) = curl(https(&dir, a, path, &["--head"])).await;
        assert_eq!(status, 200, "HEAD {path}: {head}");
        assert!(!head.contains(answer), "HEAD has no body: {head}");
    }
    for (path, extra) in [
        ("/metrics", vec![]),
        ("/", vec![]),
        ("/-/reload", vec!["-X", "POST"]),
    ] {
        let (status, _) = curl(https(&dir, a, path, &extra)).await;
        assert_eq!(status, 401, "{path} stays guarded");
    }
    let (status, _) = curl(https(&dir, a, "/metrics", &["-u", "prometheus:scrape-pw"])).await;
    assert_eq!(status, 200);
    exporter.stop().await;
}

/// The binary with a bad web config: exit 78 and one line naming the file and field.
#[test]
fn bad_web_config_exits_78_naming_the_field() {
    let dir = temp_dir("bad");
    certificates(&dir);
    let config =
        TempConfig::new("targets:\n  - name: db\n    dsn: postgres://probe@127.0.0.1:1/db\n");
    let cases = [
        ("tls_server_config:\n  cert_file: server.crt\n", "tls_server_config.key_file"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: missing.key\n", "tls_server_config.key_file"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: clientca.key\n", "tls_server_config.key_file"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS10\n", "tls_server_config.min_version"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n", "tls_server_config.client_ca_file"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAnyClientCert\n  client_ca_file: clientca.crt\n", "tls_server_config.client_auth_type"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "tls_server_config.cipher_suites"),
        ("tls_server_config:\n  certfile: server.crt\n", "certfile"),
        ("basic_auth_users:\n  prometheus: hunter2-not-a-hash\n", "basic_auth_users.prometheus"),
        ("http_server_config:\n  headers:\n    Set-Cookie: a=b\n", "http_server_config.headers"),
        ("http_server_config:\n  http3: true\n", "http3"),
    ];
    for (i, (text, field)) in cases.iter().enumerate() {
        let web = dir.join(format!("bad{i}.yml"));
        std::fs::write(&web, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_idle_drop_exporter"))
            .arg("--config")
            .arg(&config.path)
            .arg("--web.config.file")
            .arg(&web)
            .arg("--web.listen-address")
            .arg("127.0.0.1:0")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{text}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.starts_with(&format!("invalid configuration: {}:", web.display())),
            "{stderr}"
        );
        assert!(
            stderr.contains(field),
            "{text} should name {field}: {stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    // And --check-config checks it too.
    let out = Command::new(env!("CARGO_BIN_EXE_idle_drop_exporter"))
        .arg("--config")
        .arg(&config.path)
        .arg("--web.config.file")
        .arg(dir.join("bad0.yml"))
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
}

/// One request over a fresh connection from `source` (any 127.x.y.z: Linux routes all of
/// 127/8 to loopback); returns its status (0: no answer) and how long it took.
async fn get_from(
    source: std::net::Ipv4Addr,
    address: std::net::SocketAddr,
    authorization: &str,
) -> (u16, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = std::time::Instant::now();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    let Ok(mut stream) = socket.connect(address).await else {
        return (0, started.elapsed());
    };
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: test\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (0, started.elapsed());
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let status = String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, started.elapsed())
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// 200 attackers, each from its own loopback address, guess passwords for the real user while
/// Prometheus scrapes: the scraper proved its password before, so it never waits behind their
/// bcrypt checks (issue 20: with 200 addresses a scrape timed out at 10 s). And a scraper whose
/// password was never checked yet is answered within a bounded time too, not after the whole
/// flood's checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_many_addresses_never_delays_a_known_scraper() {
    let dir = temp_dir("flood");
    let users: Vec<(&str, &str)> = vec![("prometheus", "scrape-pw"), ("second", "second-pw")];
    let mut text = "basic_auth_users:\n".to_string();
    for (user, password) in &users {
        text.push_str(&format!(
            "  {user}: '{}'\n",
            bcrypt::hash(password, 8).unwrap()
        ));
    }
    let web = dir.join("web.yml");
    std::fs::write(&web, text).unwrap();
    let running = start(&web).await;
    let address = running.address;
    let home = std::net::Ipv4Addr::LOCALHOST;
    let scraper = basic("prometheus", "scrape-pw");
    // The scraper's first scrape: its password is checked once, then known.
    let (status, first) = get_from(home, address, &scraper).await;
    assert_eq!(status, 200);

    let flooding = Arc::new(AtomicBool::new(true));
    let mut attackers = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let flooding = flooding.clone();
        let source = std::net::Ipv4Addr::new(127, 1, (i / 200) as u8, (i % 200 + 1) as u8);
        attackers.spawn(async move {
            let mut sent = 0u32;
            while flooding.load(Ordering::Relaxed) {
                let guess = basic("prometheus", &format!("guess-{i}-{sent}"));
                let (status, _) = get_from(source, address, &guess).await;
                assert_ne!(status, 200, "a wrong password passed");
                sent += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            sent
        });
    }
    // Let the flood build up its queue.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut known = Vec::new();
    let flood_started = std::time::Instant::now();
    while flood_started.elapsed() < Duration::from_secs(3) {
        let (status, took) = get_from(home, address, &scraper).await;
        assert_eq!(status, 200, "the known scraper is let in");
        known.push(took);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A scraper never seen before (another user): its check waits behind a bounded queue.
    let (new_status, new_took) = get_from(
        std::net::Ipv4Addr::new(127, 0, 0, 2),
        address,
        &basic("second", "second-pw"),
    )
    .await;
    flooding.store(false, Ordering::Relaxed);
    let mut guesses = 0;
    while let Some(sent) = attackers.join_next().await {
        guesses += sent.unwrap();
    }
    running.stop().await;
    let slowest = known.iter().max().unwrap();
    eprintln!(
        "200 attackers, {guesses} guesses: the known scraper's slowest of {} scrapes took \
         {slowest:?} (its first, uncached, {first:?}); a new scraper got {new_status} after \
         {new_took:?}",
        known.len()
    );
    assert!(
        *slowest < Duration::from_millis(100),
        "a known scraper waited {slowest:?} behind the flood"
    );
    assert!(
        new_took < Duration::from_secs(2) && matches!(new_status, 200 | 503),
        "a new scraper got {new_status} after {new_took:?}"
    );
}
