//! The exporter is never blind longer than it must be, against a real server in the lab:
//! - a reload keeps what is still true: a live change keeps the bracket and the `watching`
//!   state, a reconnect resumes from the remembered bracket and confirms it within about its
//!   upper bound, a new path is measured again, and `target_up` never reads 0 meanwhile;
//! - the guard probe pages (through the alert rule, evaluated by a real Prometheus) while the
//!   first discovery is still running;
//! - with `--storage.path`, a restarted exporter is back to `watching` within 1.2× the stored
//!   upper bound, without a discovery (figures for `docs/benchmarks.md`, "Warm start");
//! - a corrupt or mismatched state file costs a discovery, never the start.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio_util::sync::CancellationToken;

/// The one state of `target` whose one-hot series reads 1.
fn state_of(m: &Metrics, target: &str) -> Option<String> {
    m.samples
        .iter()
        .find(|(name, labels, value)| {
            name == "idle_drop_discovery_state"
                && labels.get("target").map(String::as_str) == Some(target)
                && *value == 1.0
        })
        .and_then(|(_, labels, _)| labels.get("state").cloned())
}

fn bracket_of(m: &Metrics, target: &str) -> Option<(f64, f64)> {
    let t = [("target", target)];
    Some((
        m.get("idle_drop_threshold_lower_bound_seconds", &t)?,
        m.get("idle_drop_threshold_upper_bound_seconds", &t)?,
    ))
}

/// What one background scrape saw of one target.
#[derive(Clone, Debug)]
struct Sample {
    at: Instant,
    up: Option<f64>,
    state: Option<String>,
    runs: Option<f64>,
    bracket: Option<(f64, f64)>,
}

/// Scrapes the exporter every 200 ms in the background and keeps what it saw of one target, so
/// that a test can check every moment of a reload, not just its end.
struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(address: SocketAddr, target: &str) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (store, token, target) = (samples.clone(), stop.clone(), target.to_string());
        let handle = tokio::spawn(async move {
            while !token.is_cancelled() {
                let (status, body) = http_get(address, "/metrics").await;
                assert_eq!(status, 200, "/metrics answered {status}");
                let m = Metrics::parse(&body);
                let t = [("target", target.as_str())];
                store.lock().unwrap().push(Sample {
                    at: Instant::now(),
                    up: m.get("idle_drop_target_up", &t),
                    state: state_of(&m, &target),
                    runs: m.get("idle_drop_discovery_runs_total", &t),
                    bracket: bracket_of(&m, &target),
                });
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Sampler {
            samples,
            stop,
            handle,
        }
    }

    fn since(&self, start: Instant) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.at >= start)
            .cloned()
            .collect()
    }

    async fn finish(self) -> Vec<Sample> {
        self.stop.cancel();
        self.handle
            .await
            .expect("the sampler never failed a scrape");
        Arc::try_unwrap(self.samples).unwrap().into_inner().unwrap()
    }
}

const T_RELOAD: u64 = 6;
const BUDGET: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_reload_keeps_or_remeasures_and_target_up_stays_1() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("nbr", "silent", T_RELOAD);
    let config_with = |extra: &str| {
        format!(
            "listen_address: 127.0.0.1:0\ntargets:\n{}",
            lab_target(
                "r",
                &lab,
                &format!("    max_connections: {BUDGET}\n{extra}")
            )
        )
    };
    let config = TempConfig::new(&config_with(""));
    let sessions = SessionWatch::start(&lab.name);
    let exporter = Exporter::start(&config).await;
    let sampler = Sampler::start(exporter.address, "r");
    let target = [("target", "r")];
    let m = exporter
        .wait_for(Duration::from_secs(90), "the first discovery", |m| {
            m.get("idle_drop_discovery_runs_total", &target) >= Some(1.0)
                && state_of(m, "r").as_deref() == Some("watching")
        })
        .await;
    let settled = Instant::now();
    let bracket = m.bracket("r");
    let runs = m.get("idle_drop_discovery_runs_total", &target).unwrap();
    assert_bracket("first discovery", bracket.0, bracket.1, T_RELOAD as f64);
    let recommended =
        |m: &Metrics| m.get("idle_drop_recommended_max_idle_lifetime_seconds", &target);
    let recommended_before = recommended(&m).expect("a recommendation once watching");

    // Live: the guard's lifetime (below T, so it survives), a looser precision (the bracket
    // already meets it) and a wider margin reach the running engine.
    let live =
        "    app_max_idle_lifetime: 3s\n    precision: 10%\n    recommendation_margin: 40%\n";
    config.write(&config_with(live));
    let reloaded = Instant::now();
    assert_eq!(exporter.reload.reload().await, Ok(()));
    let m = exporter
        .wait_for(Duration::from_secs(5), "the live settings", |m| {
            m.get("idle_drop_app_max_idle_lifetime_seconds", &target) == Some(3.0)
                && recommended(m) != Some(recommended_before)
        })
        .await;
    let lifetime = recommended(&m).unwrap();
    assert!(
        (lifetime - bracket.0 * 0.6).abs() < 0.05,
        "recommended {lifetime} s with a 40% margin below the lower bound {} s",
        bracket.0
    );
    // Long enough for the sentinels to idle past the upper bound: a live change must not make
    // them (or anything) start over.
    tokio::time::sleep(Duration::from_secs_f64(bracket.1 * 1.5)).await;
    let live_samples = sampler.since(reloaded);
    assert!(live_samples.len() > 20, "{live_samples:?}");
    for s in &live_samples {
        assert_eq!(
            s.state.as_deref(),
            Some("watching"),
            "after a live change: {s:?}"
        );
        assert_eq!(s.bracket, Some(bracket), "after a live change: {s:?}");
        assert_eq!(s.runs, Some(runs), "after a live change: {s:?}");
    }

    // Reconnect: the run restarts, publishes the remembered bracket at once and confirms it.
    // The triggers are a rotated password (the role's and the file's) and `reap_ghosts: false`.
    // From then on the silently dropped sentinels leave ghosts the exporter may not terminate:
    // each run hands them to the next, which counts them (the budget check at the end).
    let password_copy = config.dir.join("password");
    std::fs::write(&password_copy, "nb-rotated-password\n").unwrap();
    lab.sql(&format!(
        "ALTER ROLE \"{}\" PASSWORD 'nb-rotated-password'",
        lab.get("LAB_USER")
    ));
    let copied_password = |text: String| {
        text.replace(
            &format!("password_file: {}\n", lab.password_file()),
            &format!("password_file: {}\n", password_copy.display()),
        )
    };
    let live = &format!("{live}    reap_ghosts: false\n");
    config.write(&copied_password(config_with(live)));
    let reloaded = Instant::now();
    assert_eq!(exporter.reload.reload().await, Ok(()));
    // The sentinels confirm at about the upper bound; the old run's shutdown sweep for ghosts
    // may take up to 8 s before the new run starts.
    let limit = Duration::from_secs_f64(1.2 * bracket.1 + 8.0);
    let back = loop {
        let samples = sampler.since(reloaded);
        let confirming = samples
            .iter()
            .position(|s| s.state.as_deref() == Some("confirming"));
        if let Some(back) = confirming.and_then(|i| {
            samples[i..]
                .iter()
                .find(|s| s.state.as_deref() == Some("watching"))
        }) {
            break back.at - reloaded;
        }
        assert!(
            reloaded.elapsed() < limit + Duration::from_secs(20),
            "no confirming → watching after the reconnect: {samples:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "reconnect: back to watching {:.1} s after the reload (upper {:.3} s, limit {:.1} s)",
        back.as_secs_f64(),
        bracket.1,
        limit.as_secs_f64()
    );
    assert!(
        back <= limit,
        "watching again after {back:?}, limit {limit:?}"
    );
    for s in sampler.since(reloaded) {
        assert!(
            matches!(s.state.as_deref(), Some("watching" | "confirming")),
            "after a reconnect: {s:?}"
        );
        assert_eq!(s.bracket, Some(bracket), "after a reconnect: {s:?}");
        assert_eq!(s.runs, Some(runs), "after a reconnect: {s:?}");
    }

    // New path: measured again.
    config.write(&copied_password(config_with(&format!(
        "{live}    probe_query: SELECT 2\n"
    ))));
    let reloaded = Instant::now();
    assert_eq!(exporter.reload.reload().await, Ok(()));
    let m = exporter
        .wait_for(Duration::from_secs(90), "the new path's discovery", |m| {
            m.get("idle_drop_discovery_runs_total", &target) >= Some(runs + 1.0)
                && state_of(m, "r").as_deref() == Some("watching")
        })
        .await;
    assert_eq!(
        m.get("idle_drop_discovery_runs_total", &target),
        Some(runs + 1.0)
    );
    let (lower, upper) = m.bracket("r");
    let t = T_RELOAD as f64;
    assert!(
        lower < t + CLOCK_SLACK && upper >= t - CLOCK_SLACK,
        "new bracket [{lower}, {upper}] must contain {t}"
    );
    assert!(
        sampler
            .since(reloaded)
            .iter()
            .any(|s| s.state.as_deref() == Some("discovering")),
        "a new path is discovered again"
    );
    // The guard idled 3 s on a path that drops at 6 s: never an unexpected death.
    assert_eq!(
        m.sum("idle_drop_unexpected_closed_connections_total", &target),
        0.0,
        "{}",
        m.text
    );

    let samples = sampler.finish().await;
    exporter.shutdown().await;
    // (Before the first control connection a new target is rightly 0: not known up yet.)
    let checked: Vec<&Sample> = samples.iter().filter(|s| s.at >= settled).collect();
    for s in &checked {
        assert_eq!(s.up, Some(1.0), "target_up during the reloads: {s:?}");
    }
    eprintln!(
        "{} scrapes from the first discovery on, target_up 1 in each",
        checked.len()
    );
    let max = sessions.finish();
    assert!(
        max <= BUDGET,
        "the server saw {max} exporter sessions, budget {BUDGET}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_pages_through_the_alert_rule_while_discovery_still_runs() {
    if skip_without_lab(&["prometheus"]) {
        return;
    }
    // T = 30 s: the first discovery takes 1.6–2×T (48–60 s). The guard idles 35 s, so the
    // path drops it and its probe learns it ~2 s later (tcp_user_timeout), at ~37 s: the page
    // (one scrape and one evaluation later) has about 10 s of margin.
    let lab = Lab::up("nbg", "silent", 30);
    let config = lab_config("g", &lab, "    app_max_idle_lifetime: 35s\n");
    let exporter = Exporter::start(&config).await;
    let started = Instant::now();

    let (_prometheus, prometheus) = start_prometheus(&config.dir, exporter.address, None);

    let alert = r#"ALERTS{alertname="IdleDropClosedConnectionsSpike",alertstate="firing",job="idle_drop_exporter",target="g",role="guard"}"#;
    let target = [("target", "g")];
    let mut scraped_by_prometheus = false;
    loop {
        // Prometheus may still be starting: its API refuses connections until then.
        let up = std::net::TcpStream::connect(prometheus).is_ok();
        let firing = up && prometheus_query(prometheus, alert).await > 0;
        scraped_by_prometheus |=
            up && prometheus_query(prometheus, "idle_drop_target_up").await > 0;
        let m = exporter.metrics().await;
        let deaths = m.sum(
            "idle_drop_unexpected_closed_connections_total",
            &[("target", "g"), ("role", "guard")],
        );
        let runs = m.get("idle_drop_discovery_runs_total", &target);
        let state = state_of(&m, "g");
        if firing {
            eprintln!(
                "paged {:.1} s after the start; exporter state {state:?}, discovery runs {runs:?}, guard deaths {deaths}",
                started.elapsed().as_secs_f64()
            );
            assert_eq!(
                state.as_deref(),
                Some("discovering"),
                "the page must come while discovering:\n{}",
                m.text
            );
            assert_eq!(runs, Some(0.0), "{}", m.text);
            assert!(deaths >= 1.0, "{}", m.text);
            break;
        }
        assert!(
            runs < Some(1.0),
            "the first discovery ended {:.1} s after the start without a page (guard deaths {deaths}, Prometheus scraping: {scraped_by_prometheus}):\n{}",
            started.elapsed().as_secs_f64(),
            m.text
        );
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "no page and no discovery after 150 s:\n{}",
            m.text
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    exporter.shutdown().await;
}

/// Measures from zero with a state file, restarts with the same file, and times how long the
/// second process takes to be back to `watching`.
async fn warm_start(lab_name: &str, t: u64) {
    let lab = Lab::up(lab_name, "silent", t);
    let config = lab_config("w", &lab, "");
    let storage = config.dir.join("state");
    std::fs::create_dir_all(&storage).unwrap();
    let target = [("target", "w")];

    let started = Instant::now();
    let exporter = Exporter::start_with_storage(&config, Some(&storage)).await;
    let m = exporter
        .wait_for(Duration::from_secs(4 * t + 60), "the cold discovery", |m| {
            m.get("idle_drop_discovery_runs_total", &target) >= Some(1.0)
                && state_of(m, "w").as_deref() == Some("watching")
        })
        .await;
    let cold = started.elapsed().as_secs_f64();
    let (lower, upper) = m.bracket("w");
    assert_bracket("cold discovery", lower, upper, t as f64);
    exporter.shutdown().await;

    let file: serde_json::Value = serde_json::from_slice(
        &std::fs::read(storage.join("idle_drop_exporter.state.json")).expect("a state file"),
    )
    .expect("the state file is JSON");
    let stored = &file["targets"]["w"];
    let seconds = |key: &str| {
        stored[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no {key} in {file}"))
    };
    assert!(
        (seconds("lower_seconds") - lower).abs() < 1e-3
            && (seconds("upper_seconds") - upper).abs() < 1e-3,
        "stored {stored} vs measured [{lower}, {upper}]"
    );

    let started = Instant::now();
    let exporter = Exporter::start_with_storage(&config, Some(&storage)).await;
    let limit = 1.2 * upper;
    let mut states = Vec::new();
    let warm = loop {
        let m = exporter.metrics().await;
        let state = state_of(&m, "w");
        // No discovery at any moment of the warm start, and the stored bracket from the
        // first scrape that has one.
        assert_eq!(
            m.get("idle_drop_discovery_runs_total", &target)
                .unwrap_or(0.0),
            0.0,
            "{}",
            m.text
        );
        if let Some(state) = &state {
            assert_eq!(
                bracket_of(&m, "w"),
                Some((lower, upper)),
                "in state {state}:\n{}",
                m.text
            );
            if states.last() != Some(state) {
                states.push(state.clone());
            }
        }
        if state.as_deref() == Some("watching") {
            break started.elapsed().as_secs_f64();
        }
        assert!(
            started.elapsed().as_secs_f64() < limit + 30.0,
            "not watching {:.1} s after the warm start (states {states:?}):\n{}",
            started.elapsed().as_secs_f64(),
            m.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "warm start: T={t}s cold_to_watching={cold:.1}s upper={upper:.3}s warm_to_watching={warm:.1}s ratio={:.2}",
        warm / upper
    );
    assert_eq!(
        states,
        ["confirming", "watching"],
        "states of the warm start"
    );
    assert!(
        warm <= limit,
        "watching {warm:.1} s after the warm start, above 1.2 × {upper:.3} s"
    );
    exporter.shutdown().await;
}

/// The tight case: confirming once waited for `sentinel_high`'s death too (1.05 × upper plus
/// the `tcp_user_timeout` a silent drop needs to show: 1.32 × upper here); the low sentinel's
/// survival alone confirms now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_start_is_back_to_watching_within_1_2_upper_at_t10() {
    if skip_without_lab(&[]) {
        return;
    }
    warm_start("nbw10", 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_start_is_back_to_watching_within_1_2_upper_at_t30() {
    if skip_without_lab(&[]) {
        return;
    }
    warm_start("nbw30", 30).await;
}

/// Target `c` at `address` goes `discovering` → `watching`: measured from zero, not resumed.
async fn assert_discovered_from_zero(address: SocketAddr, why: &str) {
    let states = states_until(address, "c", Duration::from_secs(60), |m: &Metrics| {
        m.get("idle_drop_discovery_runs_total", &[("target", "c")]) >= Some(1.0)
            && state_of(m, "c").as_deref() == Some("watching")
    })
    .await;
    assert_eq!(states, ["discovering", "watching"], "{why}");
}

/// Polls the exporter at `address` until `done`, remembering every state it went through.
async fn states_until(
    address: SocketAddr,
    target: &str,
    limit: Duration,
    done: impl Fn(&Metrics) -> bool,
) -> Vec<String> {
    let start = Instant::now();
    let mut states: Vec<String> = Vec::new();
    loop {
        // The binary may not listen yet.
        if std::net::TcpStream::connect(address).is_ok() {
            let m = Metrics::parse(&http_get(address, "/metrics").await.1);
            if let Some(state) = state_of(&m, target) {
                if states.last() != Some(&state) {
                    states.push(state);
                }
            }
            if done(&m) {
                return states;
            }
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} (states {states:?}):\n{}",
                m.text
            );
        }
        assert!(start.elapsed() < limit, "nothing listens at {address}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn state_file(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("idle_drop_exporter.state.json")).unwrap())
        .expect("the state file is valid JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_mismatched_state_file_costs_a_discovery_not_the_start() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("nbc", "silent", 4);
    // (a) Garbage in the file: the real binary starts, logs it once, and measures from zero.
    let port = free_port();
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = TempConfig::new(&format!(
        "listen_address: {address}\ntargets:\n{}",
        lab_target("c", &lab, "    probe_query: SELECT 1\n")
    ));
    let storage = config.dir.join("state");
    std::fs::create_dir_all(&storage).unwrap();
    std::fs::write(
        storage.join("idle_drop_exporter.state.json"),
        "{\"version\": 1, \"targets\": {\"c\": \x00garbage",
    )
    .unwrap();
    let stderr = config.dir.join("stderr.log");
    let mut child = Process::start(
        env!("CARGO_BIN_EXE_idle_drop_exporter"),
        &[
            format!("--config.file={}", config.path.display()),
            format!("--storage.path={}", storage.display()),
        ],
        &stderr,
    );
    assert_discovered_from_zero(address, "a corrupt file is ignored").await;
    let status = child.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
    let logs = std::fs::read_to_string(&stderr).unwrap();
    let ignored: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("state file") && l.contains("ignored"))
        .collect();
    assert_eq!(ignored.len(), 1, "one line for the ignored file:\n{logs}");
    let file = state_file(&storage);
    let entry = &file["targets"]["c"];
    assert!(
        entry["fingerprint"].is_string()
            && entry["lower_seconds"].is_f64()
            && entry["upper_seconds"].is_f64(),
        "the rewritten file has the new measurement: {file}"
    );
    let old_fingerprint = entry["fingerprint"].clone();

    // (b) The file holds a valid entry for "c", measured with `SELECT 1`: another probe query
    // is another path, so it is measured from zero (in-process this time).
    config.write(&format!(
        "listen_address: 127.0.0.1:0\ntargets:\n{}",
        lab_target("c", &lab, "    probe_query: SELECT 2\n")
    ));
    let exporter = Exporter::start_with_storage(&config, Some(&storage)).await;
    assert_discovered_from_zero(exporter.address, "a mismatched entry is ignored").await;
    exporter.shutdown().await;
    let file = state_file(&storage);
    assert!(
        file["targets"]["c"]["fingerprint"].is_string()
            && file["targets"]["c"]["fingerprint"] != old_fingerprint,
        "the entry now belongs to the new path: {file}"
    );
}
