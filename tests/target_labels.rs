//! Targets' `labels` with the real binary, through `/metrics`: inline and target-file targets
//! each get one `idle_drop_target_info` series with their labels; a reload (or a file refresh)
//! that changes or removes them replaces the series, live (the target is neither restarted nor
//! measured again), and a removed target takes its series along. Targets point at a closed
//! loopback port: no database is needed to see their series.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{http_get, http_request, Metrics, TempConfig};

const WAIT: Duration = Duration::from_secs(15);
const INFO: &str = "idle_drop_target_info";

fn target(name: &str, labels: &str) -> String {
    format!("- name: {name}\n  dsn: postgres://probe@127.0.0.1:1/postgres\n  connect_timeout: 200ms\n{labels}")
}

/// The main file: the inline target `inline` with `labels` (a flow mapping, or nothing), and
/// the target files under `targets/`, read every second.
fn main_file(labels: &str) -> String {
    let labels = if labels.is_empty() {
        String::new()
    } else {
        format!("    labels: {labels}\n")
    };
    format!(
        "target_files: [\"targets/*.yaml\"]\ntarget_files_refresh_interval: 1s\ntargets:\n  - name: inline\n    dsn: postgres://probe@127.0.0.1:1/postgres\n    connect_timeout: 200ms\n{labels}"
    )
}

/// Replaces `path` whole (write aside, rename): a refresh never reads half a file.
fn put(path: &Path, text: &str) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

type Running = common::Served;

impl Running {
    /// Polls until the info series are exactly `want`; panics after [`WAIT`] with the last
    /// scrape and the log.
    async fn wait_for_info(&self, what: &str, want: &[(&str, &[(&str, &str)])]) -> Metrics {
        let want: BTreeMap<String, BTreeMap<String, String>> = want
            .iter()
            .map(|(target, labels)| {
                let mut all: BTreeMap<String, String> = labels
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect();
                all.insert("target".into(), target.to_string());
                (target.to_string(), all)
            })
            .collect();
        let start = Instant::now();
        loop {
            let m = self.metrics().await;
            if info(&m) == want {
                return m;
            }
            if start.elapsed() > WAIT {
                panic!(
                    "timed out waiting for {what}: want {want:?}, got {:?}\nlog:\n{}",
                    info(&m),
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log lines holding every one of `parts`.
    fn log_lines(&self, parts: &[&str]) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|line| parts.iter().all(|part| line.contains(part)))
            .map(str::to_string)
            .collect()
    }
}

/// Every info series as target -> all its labels; panics on a target with two series or a
/// value other than 1.
fn info(m: &Metrics) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (name, labels, value) in &m.samples {
        if name != INFO {
            continue;
        }
        assert_eq!(*value, 1.0, "{}", m.text);
        let labels: BTreeMap<String, String> = labels.clone().into_iter().collect();
        let previous = out.insert(labels["target"].clone(), labels);
        assert!(
            previous.is_none(),
            "two info series for a target:\n{}",
            m.text
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_exported_once_per_target_and_follow_reloads_live() {
    let config = TempConfig::new(&main_file("{team: payments, service: checkout}"));
    std::fs::create_dir_all(config.dir.join("targets")).unwrap();
    let file = config.dir.join("targets/fleet.yaml");
    put(
        &file,
        &format!(
            "{}{}",
            target("f1", "  labels:\n    team: billing\n    tier: 1\n"),
            target("f2", "")
        ),
    );
    let exporter = Running::start(&config, &[]).await;
    let m = exporter
        .wait_for_info(
            "every target's labels",
            &[
                ("inline", &[("team", "payments"), ("service", "checkout")]),
                ("f1", &[("team", "billing"), ("tier", "1")]),
                ("f2", &[]),
            ],
        )
        .await;
    assert!(
        m.text.contains("# TYPE idle_drop_target_info gauge\n"),
        "{}",
        m.text
    );
    let (_, page) = http_get(exporter.address, "/").await;
    assert!(
        page.contains("<code>service=\"checkout\"</code>, <code>team=\"payments\"</code>"),
        "{page}"
    );

    // Changed and removed labels, inline (a reload) and in the file (its refresh).
    config.write(&main_file("{team: checkout-core}"));
    put(
        &file,
        &format!(
            "{}{}",
            target("f1", ""),
            target("f2", "  labels: {team: search}\n")
        ),
    );
    let (status, body) = http_request(exporter.address, "POST", "/-/reload").await;
    assert_eq!(status, 200, "{body}");
    exporter
        .wait_for_info(
            "the new labels, no old ones",
            &[
                ("inline", &[("team", "checkout-core")]),
                ("f1", &[]),
                ("f2", &[("team", "search")]),
            ],
        )
        .await;
    // The status page follows too.
    let (status, page) = http_get(exporter.address, "/").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<code>team=\"checkout-core\"</code>"),
        "{page}"
    );
    assert!(page.contains("<code>team=\"search\"</code>"), "{page}");
    assert!(
        !page.contains("checkout\"") && !page.contains("billing"),
        "{page}"
    );
    // Live: each running target took its new labels in place; none was stopped or
    // reconnected (which would measure again or reopen its connections).
    for name in ["inline", "f1", "f2"] {
        let tag = format!("\"target_name\":\"{name}\"");
        let applied = exporter.log_lines(&["settings applied; the measurement is kept", &tag]);
        assert_eq!(applied.len(), 1, "{name}:\n{}", exporter.log_text());
        for restart in ["target stopped", "target reconnects"] {
            assert!(
                exporter.log_lines(&[restart, &tag]).is_empty(),
                "{name} restarted:\n{}",
                exporter.log_text()
            );
        }
    }

    // A bad label refuses the file alone: its targets keep their labels; the log names file,
    // line and field, not the value.
    put(
        &file,
        &format!(
            "{}{}",
            target("f1", ""),
            target("f2", "  labels:\n    Team-x: leaked-value\n")
        ),
    );
    let start = Instant::now();
    let refusal = loop {
        let lines = exporter.log_lines(&["target file refused", "[1].labels.Team-x"]);
        if let Some(line) = lines.first() {
            break line.clone();
        }
        assert!(start.elapsed() < WAIT, "{}", exporter.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        refusal.contains("fleet.yaml:8: [1].labels.Team-x"),
        "{refusal}"
    );
    assert!(!exporter.log_text().contains("leaked-value"));
    let m = exporter.metrics().await;
    assert_eq!(
        info(&m)["f2"].get("team").map(String::as_str),
        Some("search")
    );

    // A target removed from the file takes its series along.
    put(&file, &target("f1", ""));
    exporter
        .wait_for_info(
            "f2's series gone",
            &[("inline", &[("team", "checkout-core")]), ("f1", &[])],
        )
        .await;
}
