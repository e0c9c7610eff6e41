//! What a release says about itself: `--version` in the layout of Prometheus' exporters, the
//! same values on `idle_drop_build_info` and in the start log line, `unknown` (not a
//! placeholder) when built outside git, and the files a platform team reviews (LICENSE,
//! CHANGELOG, the Docker image's labels).

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn exporter() -> Command {
    Command::new(env!("CARGO_BIN_EXE_idle_drop_exporter"))
}

/// `--version`'s values by name: version, branch, revision, build date, rustc version, platform.
fn version_fields() -> Vec<(String, String)> {
    let out = exporter().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let first = lines.next().unwrap();
    let rest = first
        .strip_prefix("idle_drop_exporter, version ")
        .unwrap_or_else(|| panic!("{text}"));
    let (version, context) = rest.split_once(" (branch: ").unwrap();
    let (branch, revision) = context
        .strip_suffix(')')
        .unwrap()
        .split_once(", revision: ")
        .unwrap();
    let mut fields = vec![
        ("version".to_string(), version.to_string()),
        ("branch".to_string(), branch.to_string()),
        ("revision".to_string(), revision.to_string()),
    ];
    for line in lines {
        let (name, value) = line.trim().split_once(':').unwrap();
        fields.push((name.replace(' ', "_"), value.trim().to_string()));
    }
    fields
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    &fields.iter().find(|(n, _)| n == name).unwrap().1
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(common::repo())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn version_prints_version_revision_build_date_and_rustc() {
    let fields = version_fields();
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "version",
            "branch",
            "revision",
            "build_date",
            "rustc_version",
            "platform"
        ]
    );
    assert_eq!(field(&fields, "version"), env!("CARGO_PKG_VERSION"));
    // Built from this checkout: the commit it is at (build.rs watches HEAD and the branch).
    if let Some(head) = git(&["rev-parse", "HEAD"]) {
        assert_eq!(field(&fields, "revision"), head);
    }
    let date = field(&fields, "build_date");
    assert!(
        date.len() == 20 && date.ends_with('Z') && date.as_bytes()[10] == b'T',
        "{date}"
    );
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    assert!(
        rustc.starts_with(&format!("rustc {} ", field(&fields, "rustc_version"))),
        "{rustc} vs {fields:?}"
    );
    assert!(field(&fields, "platform").contains("linux"), "{fields:?}");
}

/// The newest compiled build script of this package (target/<profile>/build/*/), next to the
/// test binary's own target directory.
fn build_script() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().unwrap().parent().unwrap();
    std::fs::read_dir(profile.join("build"))
        .unwrap()
        .flatten()
        .filter(|d| {
            d.file_name()
                .to_string_lossy()
                .starts_with("idle_drop_exporter-")
        })
        .map(|d| d.path().join("build-script-build"))
        .filter(|p| p.is_file())
        .max_by_key(|p| p.metadata().unwrap().modified().unwrap())
        .expect("the build script was compiled for this test")
}

/// A source tarball has no `.git`: the build script, run where git finds no repository, emits
/// vergen's placeholder for the revision and branch (which `build_info` shows as `unknown`,
/// unit-tested there) and still the build date and rustc; a value given in the environment
/// (the Dockerfile's build arguments) wins.
#[test]
fn outside_git_the_build_script_leaves_the_revision_unknown_or_as_given() {
    let dir = common::TempConfig::new("");
    let run = |extra: &[(&str, &str)]| {
        let mut command = Command::new(build_script());
        command
            .current_dir(&dir.dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("TARGET", "x86_64-unknown-linux-gnu")
            .env("OUT_DIR", &dir.dir)
            .env("RUSTC", std::env::var("RUSTC").unwrap_or("rustc".into()))
            // No repository above the directory either, whatever the temp dir's parents are.
            .env("GIT_CEILING_DIRECTORIES", dir.dir.parent().unwrap());
        command.envs(extra.iter().copied());
        let out = command.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let emitted = run(&[]);
    assert!(
        emitted.contains("cargo:rustc-env=VERGEN_GIT_SHA=VERGEN_IDEMPOTENT_OUTPUT\n"),
        "{emitted}"
    );
    assert!(
        emitted.contains("cargo:rustc-env=VERGEN_GIT_BRANCH=VERGEN_IDEMPOTENT_OUTPUT\n"),
        "{emitted}"
    );
    assert!(emitted.contains("cargo:rustc-env=VERGEN_RUSTC_SEMVER=1."));
    assert!(emitted.contains("cargo:rustc-env=VERGEN_BUILD_TIMESTAMP=20"));
    assert!(
        !emitted.contains("cargo:warning"),
        "a tarball build is quiet"
    );
    // The Dockerfile's arguments default to empty: empty is not given.
    let given = run(&[
        ("VERGEN_GIT_SHA", "0123abc"),
        ("VERGEN_GIT_BRANCH", ""),
        ("VERGEN_BUILD_TIMESTAMP", "2026-12-01T10:00:00Z"),
    ]);
    assert!(
        given.contains("cargo:rustc-env=VERGEN_GIT_BRANCH=VERGEN_IDEMPOTENT_OUTPUT\n"),
        "{given}"
    );
    assert!(
        given.contains("cargo:rustc-env=VERGEN_GIT_SHA=0123abc\n"),
        "{given}"
    );
    assert!(
        given.contains("cargo:rustc-env=VERGEN_BUILD_TIMESTAMP=2026-12-01T10:00:00Z\n"),
        "{given}"
    );
}

/// `idle_drop_build_info` carries what `--version` prints, and the start log line names it.
#[tokio::test]
async fn build_info_and_the_start_log_line_carry_the_version() {
    let fields = version_fields();
    let config = common::TempConfig::new(
        "targets:\n  - name: db\n    dsn: postgres://probe@127.0.0.1:1/postgres\n    connect_timeout: 200ms\n",
    );
    let served = common::Served::start(&config, &[]).await;
    let m = served.metrics().await;
    let labels: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        m.get("idle_drop_build_info", &labels),
        Some(1.0),
        "{fields:?}\n{}",
        m.text
            .lines()
            .filter(|l| l.contains("build_info"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The start line is written once the listener is bound; give the log writer a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let started = loop {
        let text = std::fs::read_to_string(&served.log).unwrap();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("idle_drop_exporter started"))
        {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "no start line in {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(served);
    let line: serde_json::Value = serde_json::from_str(&started).unwrap();
    assert_eq!(line["version"], field(&fields, "version"), "{started}");
    assert_eq!(line["revision"], field(&fields, "revision"), "{started}");
}

/// LICENSE is the Apache License 2.0 Cargo.toml names; CHANGELOG.md has this version's entry.
#[test]
fn license_and_changelog_match_the_manifest() {
    let manifest = std::fs::read_to_string(common::repo().join("Cargo.toml")).unwrap();
    assert!(manifest.contains("license = \"Apache-2.0\""));
    let license = std::fs::read_to_string(common::repo().join("LICENSE")).unwrap();
    assert!(
        license.contains("Apache License\n                           Version 2.0, January 2004")
    );
    assert!(license.contains("END OF TERMS AND CONDITIONS"));
    let changelog = std::fs::read_to_string(common::repo().join("CHANGELOG.md")).unwrap();
    assert!(
        changelog.contains(&format!("## [{}]", env!("CARGO_PKG_VERSION"))),
        "CHANGELOG.md has no entry for {}",
        env!("CARGO_PKG_VERSION")
    );
}

/// The Dockerfile labels the image with the OCI annotations, from build arguments, and passes
/// the revision and date to the build (vergen's variables); its default VERSION is Cargo's.
#[test]
fn the_dockerfile_labels_the_image_from_its_build_arguments() {
    let dockerfile = std::fs::read_to_string(common::repo().join("Dockerfile")).unwrap();
    for label in [
        "org.opencontainers.image.version=\"${VERSION}\"",
        "org.opencontainers.image.revision=\"${REVISION}\"",
        "org.opencontainers.image.created=\"${CREATED}\"",
        "org.opencontainers.image.source=\"${SOURCE}\"",
        "org.opencontainers.image.licenses=\"Apache-2.0\"",
    ] {
        assert!(dockerfile.contains(label), "no {label}");
    }
    assert!(dockerfile.contains(&format!("ARG VERSION={}\n", env!("CARGO_PKG_VERSION"))));
    for passed in [
        "VERGEN_GIT_SHA=\"${REVISION}\"",
        "VERGEN_BUILD_TIMESTAMP=\"${CREATED}\"",
    ] {
        assert!(dockerfile.contains(passed), "no {passed}");
    }
}
