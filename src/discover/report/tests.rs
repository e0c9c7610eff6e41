use super::*;

fn deaths(items: &[(&str, u64)]) -> BTreeMap<DeathCause, u64> {
    items
        .iter()
        .map(|(k, n)| (DeathCause::parse(k).unwrap(), *n))
        .collect()
}

#[test]
fn the_most_frequent_cause_names_the_drop() {
    let look = drop_look(&deaths(&[("timeout", 4), ("error", 9), ("reset", 1)]));
    assert_eq!(look.kind, Some(DropKind::Silent));
    let look = drop_look(&deaths(&[("server_terminated (57P05)", 3)]));
    assert_eq!(look.kind, Some(DropKind::ServerTerminated));
    assert_eq!(look.sqlstate.as_deref(), Some("57P05"));
    assert!(
        look.summary.contains("idle_session_timeout"),
        "{}",
        look.summary
    );
    assert_eq!(drop_look(&deaths(&[("eof", 2)])).kind, Some(DropKind::Fin));
    assert_eq!(drop_look(&BTreeMap::new()).kind, None);
}

#[test]
fn ghosts_are_could_not_check_unless_a_check_ran() {
    // Link down mid-run: 8 silent deaths, no ghost check could run. The old report said
    // "no: the server let go of every dead probe session" while 8 remained.
    let yaml = "targets:\n  - name: t\n    dsn: postgres://probe@10.0.0.5/app\n";
    let target = crate::config::parse(std::path::Path::new("t.yaml"), yaml)
        .unwrap()
        .targets
        .remove(0);
    let mut status = TargetStatus::new(&target);
    status.deaths = deaths(&[("timeout", 8)]);
    let report = |status: &TargetStatus| {
        Report::new(
            &target,
            status,
            Outcome::Unreachable,
            Duration::from_secs(60),
        )
    };
    let unchecked = report(&status);
    assert_eq!(unchecked.ghosts.server_keeps_ghosts, None);
    let text = unchecked.render_text();
    assert!(
        text.contains("ghost sessions       could not check"),
        "{text}"
    );
    assert!(!text.contains("let go"), "{text}");

    status.ghosts_checked = 3;
    let checked = report(&status);
    assert_eq!(checked.ghosts.server_keeps_ghosts, Some(false));
    assert!(checked
        .render_text()
        .contains("let go of every dead probe session"));

    status.ghosts_seen = 2;
    assert_eq!(report(&status).ghosts.server_keeps_ghosts, Some(true));

    let quiet = TargetStatus::new(&target);
    assert!(report(&quiet)
        .render_text()
        .contains("not known (no connection died"));
}

#[test]
fn the_report_counts_sessions_that_existed_not_the_budget() {
    // Issue 9: with 3 free server slots, `--budget 64` reported "with 64 connections".
    let yaml =
        "targets:\n  - name: t\n    dsn: postgres://probe@10.0.0.5/app\n    max_connections: 64\n";
    let target = crate::config::parse(std::path::Path::new("t.yaml"), yaml)
        .unwrap()
        .targets
        .remove(0);
    let mut status = TargetStatus::new(&target);
    status.sessions_peak = 3;
    let report = Report::new(&target, &status, Outcome::Measured, Duration::from_secs(9));
    let text = report.render_text();
    assert!(
        text.contains("with 3 connections at most (budget 64)"),
        "{text}"
    );
    assert_eq!(report.sessions_peak, 3);
}

#[test]
fn the_urls_lifetime_is_judged_against_the_lower_bound() {
    let s = Duration::from_secs;
    let unsafe_url = url_pool_verdict(Some(300), Some(s(240)), Some(s(250)), Some(s(192)));
    assert_eq!(
        unsafe_url.verdict,
        "your URL's max_idle_connection_lifetime 300 s is above the measured threshold's lower bound 240 s: unsafe (set it to at most 192 s)"
    );
    assert_eq!(unsafe_url.safe, Some(false));
    assert_eq!(unsafe_url.set_at_most_seconds, Some(192));
    let safe = url_pool_verdict(Some(60), Some(s(240)), Some(s(250)), Some(s(192)));
    assert_eq!(
        safe.verdict,
        "your URL's max_idle_connection_lifetime 60 s is below the measured threshold's lower bound 240 s: safe"
    );
    assert_eq!((safe.safe, safe.set_at_most_seconds), (Some(true), None));
    let absent = url_pool_verdict(None, Some(s(240)), Some(s(250)), Some(s(192)));
    assert_eq!(
        absent.verdict,
        "your URL's max_idle_connection_lifetime is absent: quaint's default 300 s applies, and it is above the measured threshold's lower bound 240 s: unsafe (set it to at most 192 s)"
    );
    assert_eq!(
        (absent.source, absent.effective_seconds),
        ("library_default", Some(300))
    );
    let off = url_pool_verdict(Some(0), Some(s(240)), Some(s(250)), Some(s(192)));
    assert_eq!(off.safe, Some(false));
    assert!(off.verdict.contains("=0 never retires"), "{}", off.verdict);
    let unknown = url_pool_verdict(Some(60), None, Some(s(1)), None);
    assert_eq!(unknown.safe, None);
    assert!(
        url_pool_verdict(Some(240), Some(s(240)), None, Some(s(192)))
            .verdict
            .contains("is at the measured")
    );
}

#[test]
fn a_quaint_urls_verdict_is_in_the_text_and_the_json() {
    let yaml = "targets:\n  - name: t\n    dsn: postgres://probe@10.0.0.5/app?connection_limit=5\n";
    let target = crate::config::parse(std::path::Path::new("t.yaml"), yaml)
        .unwrap()
        .targets
        .remove(0);
    let mut status = TargetStatus::new(&target);
    status.bracket = crate::discovery::Bracket {
        lower: Some(Duration::from_secs(240)),
        upper: Some(Duration::from_secs(250)),
    };
    let report = Report::new(&target, &status, Outcome::Measured, Duration::from_secs(9));
    assert!(
        report
            .render_text()
            .contains("  your URL's pool      your URL's max_idle_connection_lifetime is absent: quaint's default 300 s applies"),
        "{}",
        report.render_text()
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["url_pool"]["source"], "library_default");
    assert_eq!(json["url_pool"]["effective_seconds"], 300);
    assert_eq!(json["url_pool"]["safe"], false);
    assert!(json["url_pool"]["verdict"]
        .as_str()
        .unwrap()
        .contains("unsafe"));

    let plain = "targets:\n  - name: t\n    dsn: postgres://probe@10.0.0.5/app\n";
    let target = crate::config::parse(std::path::Path::new("t.yaml"), plain)
        .unwrap()
        .targets
        .remove(0);
    let report = Report::new(&target, &status, Outcome::Measured, Duration::from_secs(9));
    assert!(serde_json::to_value(&report).unwrap()["url_pool"].is_null());
    assert!(!report.render_text().contains("your URL's pool"));
}

#[test]
fn exit_codes_follow_the_outcome() {
    assert_eq!(Outcome::Measured.exit_code(), 0);
    assert_eq!(Outcome::NoDropUpToMax.exit_code(), 0);
    assert_eq!(Outcome::Unreachable.exit_code(), 1);
    assert_eq!(Outcome::TimeLimit.exit_code(), 1);
    assert_eq!(Outcome::Interrupted.exit_code(), 130);
}
