//! The landing page as a person sees it: the exporter probes a lab target until it watches,
//! then headless Chromium (Debian's `chromium`) loads `/`. The DOM after scripts ran must show
//! the target, its bracket, the survival chart with the bracket and the app's lifetime marked,
//! the recent closed connections and the settings with Copy buttons; the page as served,
//! before any script, must already carry every setting as text. A screenshot is kept as a test
//! artifact (`target/tmp/landing-page.png`).

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

fn chromium(profile: &Path, args: &[&str], url: &str) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=2000"])
        .args(args)
        .arg(url)
        .output()
        .expect("chromium (installed by scripts/install-deps.sh)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_in_chromium() {
    if skip_without_lab(&["chromium"]) {
        return;
    }
    let lab = Lab::up("page", "silent", 5);
    let config = lab_config("orders", &lab, "    app_max_idle_lifetime: 8s\n");
    let exporter = Exporter::start(&config).await;
    exporter
        .wait_for_state(Duration::from_secs(90), "orders", "watching")
        .await;
    // Let the guard (8 s, above T) die once, so the page has an unexpected event to show.
    exporter
        .wait_for(Duration::from_secs(60), "a guard death", |m| {
            m.sum(
                "idle_drop_closed_connections_total",
                &[("target", "orders"), ("role", "guard")],
            ) >= 1.0
        })
        .await;
    let url = format!("http://{}/", exporter.address);
    let profile = config.dir.join("chromium-profile");
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let screenshot = artifacts.join("landing-page.png");
    let _ = std::fs::remove_file(&screenshot);

    let (_, served) = exporter.get("/").await;
    let (dom, shot) = tokio::task::spawn_blocking({
        let profile = profile.clone();
        let screenshot = screenshot.clone();
        move || {
            // A profile each: a Chromium that has just exited may still hold its profile's lock.
            let dom = chromium(&profile.join("dom"), &["--dump-dom"], &url);
            let shot = chromium(
                &profile.join("shot"),
                &[
                    "--window-size=1280,1500",
                    &format!("--screenshot={}", screenshot.display()),
                ],
                &url,
            );
            (dom, shot)
        }
    })
    .await
    .unwrap();
    exporter.shutdown().await;

    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("<h2>orders</h2>"), "{dom}");
    assert!(dom.contains(lab.dsn()), "the redacted DSN is shown");
    assert!(dom.contains("<svg class=\"survival\""), "{dom}");
    assert!(dom.contains("class=\"bracket\""), "the bracket is shaded");
    assert!(dom.contains("class=\"survived\"") && dom.contains("class=\"died\""));
    assert!(
        dom.contains("your pool 8.0s"),
        "the app's lifetime is marked"
    );
    assert!(
        dom.contains("8.0s (unsafe)"),
        "an app lifetime above the bracket is flagged"
    );
    assert!(dom.contains("<code>timeout</code>"), "deaths by cause");
    assert!(dom.contains("guard"), "recent events list the guard death");
    let buttons = dom.matches("class=\"copy-button\"").count();
    let blocks = dom.matches("<pre class=\"copy\"").count();
    assert!(blocks >= 10, "settings for each library: {blocks}");
    assert_eq!(
        buttons, blocks,
        "one Copy button per setting once scripts ran"
    );
    let password = std::fs::read_to_string(lab.password_file()).unwrap();
    assert!(!dom.contains(password.trim()), "no secret on the page");

    assert!(
        served.contains("max_idle_connection_lifetime="),
        "settings readable without JavaScript"
    );
    assert_eq!(served.matches("class=\"copy-button\"").count(), 0);

    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    println!("screenshot: {}", screenshot.display());
}
