//! Test harness: the network-namespace lab (real PostgreSQL behind a conntrack middlebox, see
//! `lab/lab.sh`), the exporter started in-process on port 0, and a tiny HTTP client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What this machine lacks for `needs` ("root", "postgres", "prometheus", ...), if anything.
fn missing(needs: &[&str]) -> Option<String> {
    let on_path = |program: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
    };
    for need in needs {
        let lacking = match *need {
            "root" => Command::new("id")
                .arg("-u")
                .output()
                .map_or(true, |o| String::from_utf8_lossy(&o.stdout).trim() != "0"),
            "postgres" => std::fs::read_dir("/usr/lib/postgresql").map_or(true, |versions| {
                !versions
                    .flatten()
                    .any(|v| v.path().join("bin/postgres").is_file())
            }),
            program => !on_path(program),
        };
        if lacking {
            return Some(match *need {
                "root" => "needs root (network namespaces, nftables)".to_string(),
                "postgres" => "needs a PostgreSQL server (Debian: postgresql)".to_string(),
                program => format!("needs `{program}` on PATH"),
            });
        }
    }
    None
}

/// The lab tests need root, a PostgreSQL server and the network tools `lab/lab.sh` uses. On a
/// machine without them the test is skipped with one line saying why and how to run it; under
/// CI (`CI` set to anything but `false`) a missing piece fails the test instead, so CI never
/// skips the lab silently. `also`: further programs the test runs (`prometheus`, `promtool`).
pub fn skip_without_lab(also: &[&str]) -> bool {
    let mut needs = vec!["root", "postgres", "ip", "nft", "conntrack", "psql"];
    needs.extend_from_slice(also);
    skip_without(&needs)
}

/// Like [`skip_without_lab`], for tests that need only some programs (`promtool`).
pub fn skip_without(needs: &[&str]) -> bool {
    let Some(reason) = missing(needs) else {
        return false;
    };
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    assert!(!ci, "CI must run every lab test, but this machine {reason}");
    // Straight to stderr: the test harness captures `eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "skipped {}: this test {reason}; run `sudo bash scripts/test-all.sh` to install what the lab needs and run every test",
        std::thread::current().name().unwrap_or("a lab test")
    );
    true
}

/// A lab instance; torn down on drop.
pub struct Lab {
    pub name: String,
    pub env: HashMap<String, String>,
}

impl Lab {
    /// `mode`: silent | reset | server; `timeout`: the middlebox's idle timeout in seconds.
    pub fn up(name: &str, mode: &str, timeout: u64) -> Lab {
        Self::up_with(name, mode, timeout, &[])
    }

    /// `IDLE_DROP_LAB_PREFIX` (one letter, say) goes before `name`: two runs of the suite on
    /// one machine then never take down each other's labs (lab names are global).
    pub fn up_with(name: &str, mode: &str, timeout: u64, extra: &[&str]) -> Lab {
        let name = format!(
            "{}{name}",
            std::env::var("IDLE_DROP_LAB_PREFIX").unwrap_or_default()
        );
        let name = name.as_str();
        let output = Command::new("bash")
            .arg(repo().join("lab/lab.sh"))
            .args([
                "up",
                name,
                "--mode",
                mode,
                "--timeout",
                &timeout.to_string(),
            ])
            .args(extra)
            .output()
            .expect("run lab/lab.sh (needs root, iproute2, nftables, PostgreSQL)");
        assert!(
            output.status.success(),
            "lab up {name} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let env = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.trim_matches('\'').trim_matches('"').to_string(),
                )
            })
            .collect();
        Lab {
            name: name.to_string(),
            env,
        }
    }

    /// The lab's PostgreSQL processes: the postmaster first (stopped first, it forks nothing
    /// more), then its children.
    pub fn server_processes(&self) -> Vec<String> {
        let pid_file = format!("/tmp/idle-drop-lab/{}/data/postmaster.pid", self.name);
        let postmaster = std::fs::read_to_string(pid_file)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string();
        let children = Command::new("pgrep")
            .args(["-P", &postmaster])
            .output()
            .unwrap();
        let mut pids = vec![postmaster];
        pids.extend(
            String::from_utf8_lossy(&children.stdout)
                .lines()
                .map(str::to_string),
        );
        pids
    }

    pub fn get(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("lab printed no {key}"))
    }

    pub fn dsn(&self) -> &str {
        self.get("LAB_DSN")
    }

    pub fn password_file(&self) -> &str {
        self.get("LAB_PASSWORD_FILE")
    }

    pub fn lab(&self, args: &[&str]) -> String {
        let output = Command::new("bash")
            .arg(repo().join("lab/lab.sh"))
            .args(args)
            .output()
            .expect("run lab/lab.sh");
        assert!(
            output.status.success(),
            "lab {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Runs SQL as the superuser (over the lab's unix socket) and returns psql's unaligned output.
    pub fn sql(&self, sql: &str) -> String {
        self.lab(&["psql", &self.name, "-Atc", sql])
    }

    /// How many sessions of the exporter the server lists right now.
    pub fn exporter_sessions(&self) -> usize {
        self.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'idle_drop_exporter%'",
        )
        .parse()
        .expect("a count")
    }

    /// The exporter's sessions the server still lists after at most `limit` of waiting for
    /// them to go (closing and terminating take a moment).
    pub fn sessions_left_after(&self, limit: Duration) -> usize {
        let give_up = Instant::now() + limit;
        loop {
            let left = self.exporter_sessions();
            if left == 0 || Instant::now() >= give_up {
                return left;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn set_timeout(&self, seconds: u64) {
        self.lab(&["set-timeout", &self.name, &seconds.to_string()]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("lab/lab.sh"))
            .args(["down", &self.name])
            .output();
    }
}

/// A config file in a fresh temp dir.
pub struct TempConfig {
    pub dir: PathBuf,
    pub path: PathBuf,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TempConfig {
    pub fn new(text: &str) -> TempConfig {
        let dir = std::env::temp_dir().join(format!(
            "idle-drop-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.yaml");
        std::fs::write(&path, text).unwrap();
        TempConfig { dir, path }
    }

    pub fn write(&self, text: &str) {
        std::fs::write(&self.path, text).unwrap();
    }
}

/// The target block the lab tests use: short timeouts so silent drops are noticed fast.
pub fn lab_target(name: &str, lab: &Lab, extra: &str) -> String {
    format!(
        "  - name: {name}\n    dsn: {dsn}\n    password_file: {pw}\n    sslmode: disable\n    connect_timeout: 3s\n    query_timeout: 3s\n    tcp_user_timeout: 2s\n    idle_range: {{min: 1s, max: 60s}}\n{extra}",
        dsn = lab.dsn(),
        pw = lab.password_file(),
    )
}

/// A configuration file with one lab target (see [`lab_target`]) on a free loopback port.
pub fn lab_config(name: &str, lab: &Lab, extra: &str) -> TempConfig {
    TempConfig::new(&format!(
        "listen_address: 127.0.0.1:0\ntargets:\n{}",
        lab_target(name, lab, extra)
    ))
}

/// A child process killed when dropped (Prometheus, Alertmanager, the binary).
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Sends SIGTERM and waits for the exit, at most `limit` (panics past it).
    pub async fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit {limit:?} after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts `program` with its stderr in `log` (kept for a failing test's reader).
    pub fn start(program: &str, args: &[String], log: &Path) -> Process {
        let log = std::fs::File::create(log).unwrap();
        Process(
            Command::new(program)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("{program} (installed by scripts/test-all.sh): {e}")),
        )
    }
}

/// Debian's Prometheus, scraping `exporter` as job `idle_drop_exporter` every second with
/// `alerts/` loaded (evaluated every second), sending alerts to Alertmanager on
/// `alertmanager_port` if given. Returns the process and its address.
pub fn start_prometheus(
    dir: &Path,
    exporter: SocketAddr,
    alertmanager_port: Option<u16>,
) -> (Process, SocketAddr) {
    let port = free_port();
    let alerting = alertmanager_port.map_or(String::new(), |am| {
        format!("alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am}']\n")
    });
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\n{alerting}scrape_configs:\n  - job_name: idle_drop_exporter\n    static_configs:\n      - targets: ['{exporter}']\n",
            rules = repo().join("alerts/idle_drop_exporter.rules.yml").display(),
        ),
    )
    .unwrap();
    let process = Process::start(
        "prometheus",
        &[
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        &dir.join("prometheus.log"),
    );
    (process, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Prometheus' instant query API; returns the number of series in the result.
pub async fn prometheus_query(prometheus: SocketAddr, expr: &str) -> usize {
    let encoded: String = expr
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, body) = http_get(prometheus, &format!("/api/v1/query?query={encoded}")).await;
    assert_eq!(status, 200, "{expr}: {body}");
    assert!(body.contains("\"status\":\"success\""), "{expr}: {body}");
    body.matches("\"metric\":").count()
}

/// The exporter running in-process, as `main` runs it.
pub struct Exporter {
    pub address: SocketAddr,
    pub stop: CancellationToken,
    pub reload: idle_drop_exporter::reload::ReloadTrigger,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    pub async fn start(config: &TempConfig) -> Exporter {
        Self::start_with_storage(config, None).await
    }

    /// Like [`Exporter::start`], with `--storage.path` set to `storage` (as `main` sets it).
    pub async fn start_with_storage(config: &TempConfig, storage: Option<&Path>) -> Exporter {
        let mut loaded = idle_drop_exporter::config::load(&config.path).expect("valid config");
        loaded.storage_path = storage.map(Path::to_path_buf);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let (trigger, inbox) = idle_drop_exporter::reload::channel();
        let task = tokio::spawn(idle_drop_exporter::daemon::run(
            config.path.clone(),
            loaded,
            listener,
            (trigger.clone(), inbox),
            stop.clone(),
        ));
        Exporter {
            address,
            stop,
            reload: trigger,
            task,
        }
    }

    pub async fn metrics(&self) -> Metrics {
        Metrics::parse(&http_get(self.address, "/metrics").await.1)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.address, path).await
    }

    /// Polls /metrics until `done` holds, or panics after `limit` with the last scrape.
    pub async fn wait_for(
        &self,
        limit: Duration,
        what: &str,
        done: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        let start = Instant::now();
        loop {
            let m = self.metrics().await;
            if done(&m) {
                return m;
            }
            if start.elapsed() > limit {
                panic!(
                    "timed out after {limit:?} waiting for {what}; last scrape:\n{}",
                    m.text
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until `target` is in `state` (`watching`, `discovering`, ...).
    pub async fn wait_for_state(&self, limit: Duration, target: &str, state: &str) -> Metrics {
        self.wait_for(limit, state, |m| m.state_is(target, state))
            .await
    }

    pub async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("exporter stops within 30s")
            .unwrap();
    }
}

/// GET over a fresh connection; returns (status, body).
pub async fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    http_request(address, "GET", path).await
}

pub async fn http_request(address: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(address).expect("connect to exporter");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    })
    .await
    .unwrap()
}

/// A parsed scrape.
pub struct Metrics {
    pub text: String,
    pub samples: Vec<(String, HashMap<String, String>, f64)>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().expect("number"),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, HashMap::new()),
            };
            samples.push((name.to_string(), labels, value));
        }
        Metrics {
            text: text.to_string(),
            samples,
        }
    }

    /// The value of the one sample of `name` whose labels include `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    }

    /// The sum over samples of `name` whose labels include `labels`.
    /// Whether `target` is in `state` (`watching`, `discovering`, ...) in this scrape.
    pub fn state_is(&self, target: &str, state: &str) -> bool {
        self.get(
            "idle_drop_discovery_state",
            &[("target", target), ("state", state)],
        ) == Some(1.0)
    }

    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .sum()
    }

    /// Distinct values of `label` among samples of `name`.
    /// A target's threshold bracket `(lower, upper)` in seconds; panics if either is missing.
    pub fn bracket(&self, target: &str) -> (f64, f64) {
        let bound = |name: &str| {
            self.get(name, &[("target", target)])
                .unwrap_or_else(|| panic!("no {name} for {target}:\n{}", self.text))
        };
        (
            bound("idle_drop_threshold_lower_bound_seconds"),
            bound("idle_drop_threshold_upper_bound_seconds"),
        )
    }

    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .filter_map(|(_, l, _)| l.get(label).cloned())
            .collect();
        values.sort();
        values.dedup();
        values
    }
}

fn parse_labels(text: &str) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        rest = &after[end..];
    }
    labels
}

/// Watches the server's count of exporter sessions in the background and remembers the
/// maximum, to prove the budget is never exceeded.
pub struct SessionWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<usize>,
}

impl SessionWatch {
    pub fn start(lab_name: &str) -> SessionWatch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let name = lab_name.to_string();
        let handle = std::thread::spawn(move || {
            let mut max = 0;
            while !flag.load(Ordering::Relaxed) {
                let out = Command::new("bash")
                    .arg(repo().join("lab/lab.sh"))
                    .args(["psql", &name, "-Atc", "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'idle_drop_exporter%'"])
                    .output();
                if let Ok(out) = out {
                    if let Ok(n) = String::from_utf8_lossy(&out.stdout).trim().parse::<usize>() {
                        max = max.max(n);
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            max
        });
        SessionWatch { stop, handle }
    }

    /// Stops watching; returns the largest count seen.
    pub fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// Idle times are measured from the client's last answer, a middlebox's timer from the last
/// packet it forwarded: they differ by well under this many seconds.
pub const CLOCK_SLACK: f64 = 0.15;

/// Asserts that a measured bracket contains `t` (within [`CLOCK_SLACK`]) and meets ±5%.
pub fn assert_bracket(what: &str, lower: f64, upper: f64, t: f64) {
    assert!(
        lower < t + CLOCK_SLACK && upper >= t - CLOCK_SLACK,
        "{what}: [{lower}, {upper}] must contain {t}"
    );
    assert!(
        upper - lower <= 0.05 * (upper + lower) + 1e-6,
        "{what}: [{lower}, {upper}] is wider than ±5%"
    );
}

/// A loopback port free right now, for tests that must hand a fixed port to a process they
/// start.
///
/// It is taken below the kernel's ephemeral range (`ip_local_port_range`, 32768 and up by
/// default), where the kernel never hands out ports on its own. A port from `bind(:0)` is in
/// that range, so between the check and the child's bind, any process's outgoing connection or
/// `bind(:0)` could take it (a CI run installs packages meanwhile): the child then fails to
/// listen and the test talks to whoever holds the port, or to itself (a TCP self-connect).
/// Each test binary starts at its own offset (its pid), and a counter keeps its tests apart.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    for _ in 0..SPAN {
        let step = NEXT.fetch_add(1, Ordering::Relaxed) as u32;
        let port = (FIRST + (start + step) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + SPAN);
}

/// Waits (up to 10 s) until a process this test started accepts connections on `address`.
pub async fn wait_until_listening(address: SocketAddr) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(address).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the exporter at `address` says it is ready: it listens first and reads its
/// target files off its loop, so until then `/metrics` shows no targets yet.
pub async fn wait_until_ready(address: SocketAddr) {
    wait_until_listening(address).await;
    for _ in 0..400 {
        if http_get(address, "/-/ready").await.0 == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{address} not ready within 20 s");
}

/// The binary serving `config` with `flags` on a free port, its log (JSON lines) in
/// `DIR/exporter.log`; killed when dropped. Returns once it listens (not once it is ready: it
/// reads its target files after that).
pub struct Served {
    pub process: Process,
    pub address: SocketAddr,
    pub log: PathBuf,
}

impl Served {
    pub async fn start(config: &TempConfig, flags: &[&str]) -> Served {
        let port = free_port();
        let log = config.dir.join("exporter.log");
        let process = Process(
            Command::new(env!("CARGO_BIN_EXE_idle_drop_exporter"))
                .arg("--config.file")
                .arg(&config.path)
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.format=json")
                .args(flags)
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        wait_until_listening(address).await;
        let mut process = process;
        if let Ok(Some(status)) = process.0.try_wait() {
            panic!(
                "the exporter exited ({status}) instead of listening on {address}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Served {
            process,
            address,
            log,
        }
    }

    pub async fn metrics(&self) -> Metrics {
        Metrics::parse(&http_get(self.address, "/metrics").await.1)
    }
}

/// Sends `kill -SIGNAL` to `pids`; whether every one got it (one may have exited since).
pub fn signal(signal: &str, pids: &[String]) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids)
        .status()
        .unwrap()
        .success()
}

pub fn exists(path: &str) -> bool {
    Path::new(path).exists()
}

/// Scrapes the exporter every 250 ms in the background and checks that /metrics always answers
/// and that no counter ever goes backwards.
pub struct ScrapeWatch {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<Result<usize, String>>,
}

impl ScrapeWatch {
    pub fn start(address: SocketAddr) -> ScrapeWatch {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let handle = tokio::spawn(async move {
            let mut last: HashMap<String, f64> = HashMap::new();
            let mut scrapes = 0;
            while !token.is_cancelled() {
                let (status, body) =
                    tokio::time::timeout(Duration::from_secs(5), http_get(address, "/metrics"))
                        .await
                        .map_err(|_| "a scrape took more than 5s".to_string())?;
                if status != 200 {
                    return Err(format!("/metrics answered {status}"));
                }
                scrapes += 1;
                for line in body.lines().filter(|l| !l.starts_with('#')) {
                    let Some((series, value)) = line.rsplit_once(' ') else {
                        continue;
                    };
                    if !(series.contains("_total")
                        || series.contains("_count")
                        || series.contains("_bucket"))
                    {
                        continue;
                    }
                    let value: f64 = value.parse().unwrap_or(f64::NAN);
                    if let Some(previous) = last.insert(series.to_string(), value) {
                        if value < previous {
                            return Err(format!("{series} went backwards: {previous} -> {value}"));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok(scrapes)
        });
        ScrapeWatch { stop, handle }
    }

    /// Stops; panics with the first problem seen. Returns how many scrapes were checked.
    pub async fn finish(self) -> usize {
        self.stop.cancel();
        self.handle.await.unwrap().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Like [`lab_target`], but connecting to `host:port` (e.g. `idle_drop_exporter simulate` in
/// front of the lab's PostgreSQL) with the lab's user, database and password.
pub fn lab_target_at(name: &str, lab: &Lab, host: &str, port: u16, extra: &str) -> String {
    format!(
        "  - name: {name}\n    dsn: postgres://{user}@{host}:{port}/postgres\n    password_file: {pw}\n    sslmode: disable\n    connect_timeout: 3s\n    query_timeout: 3s\n    tcp_user_timeout: 2s\n    idle_range: {{min: 1s, max: 60s}}\n{extra}",
        user = lab.get("LAB_USER"),
        pw = lab.password_file(),
    )
}
