use super::*;

fn check(text: &str) -> Result<Config, ConfigError> {
    parse(Path::new("test.yaml"), text)
}

fn err(text: &str) -> ConfigError {
    check(text).expect_err("config should be refused")
}

const MINIMAL: &str = "targets:\n  - name: db\n    dsn: postgres://probe@127.0.0.1:5432/postgres\n";

#[test]
fn the_shipped_example_loads() {
    std::env::set_var("ORDERS_DB_PASSWORD", "from-env");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml");
    let config = load(&path).expect("config.yaml must load");
    assert_eq!(config.listen_address.port(), 10187);
    let t = &config.targets[0];
    assert_eq!(t.name, "orders-db");
    assert_eq!(t.app_max_idle_lifetime, Some(Duration::from_secs(300)));
    assert_eq!(t.driver.get_password(), Some("from-env".as_bytes()));
    assert!(!format!("{config:?}").contains("from-env"));
}

#[test]
fn defaults_are_the_documented_ones() {
    let t = &check(MINIMAL).unwrap().targets[0];
    assert_eq!(t.max_connections, 8);
    assert_eq!(t.idle_min, Duration::from_secs(1));
    assert_eq!(t.idle_max, Duration::from_secs(3600));
    assert!((t.precision - 0.05).abs() < 1e-9);
    assert!((t.recommendation_margin - 0.2).abs() < 1e-9);
    assert_eq!(t.probe_query, "SELECT 1");
    assert_eq!(t.tcp_user_timeout, t.query_timeout);
    assert_eq!(t.watch_ladder.len(), 8);
    assert!(t.keepalive_probe.is_none());
    assert!(t.reap_ghosts);
    assert_eq!(t.discovery_policy, PolicyKind::Adaptive);
}

#[test]
fn discovery_policy_is_one_of_three() {
    for (text, kind) in [
        ("adaptive", PolicyKind::Adaptive),
        ("bisection", PolicyKind::Bisection),
        ("fixed_ladder", PolicyKind::FixedLadder),
    ] {
        let c = check(&format!("{MINIMAL}    discovery_policy: {text}\n")).unwrap();
        assert_eq!(c.targets[0].discovery_policy, kind, "{text}");
    }
    let e = err(&format!("{MINIMAL}    discovery_policy: random\n"));
    assert_eq!(e.field, "targets[0].discovery_policy");
    assert_eq!(e.line, Some(4));
    assert!(
        e.reason.contains("adaptive, bisection or fixed_ladder"),
        "{e}"
    );
}

#[test]
fn unknown_field_names_line_and_field() {
    let e = err("targets:\n  - name: db\n    dsn: postgres://h/db\n    max_conections: 3\n");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.to_string().contains("max_conections"), "{e}");
    assert!(e.to_string().starts_with("test.yaml:4:"), "{e}");
}

#[test]
fn budget_above_the_hard_cap_is_refused() {
    let e = err(&format!("{MINIMAL}    max_connections: 500\n"));
    assert_eq!(e.field, "targets[0].max_connections");
    assert_eq!(e.line, Some(4));
    assert!(e.reason.contains("2..=64"), "{e}");
}

#[test]
fn inverted_range_and_zero_durations_are_refused() {
    let e = err(&format!(
        "{MINIMAL}    idle_range:\n      min: 10m\n      max: 1m\n"
    ));
    assert_eq!(e.field, "targets[0].idle_range.min");
    assert_eq!(e.line, Some(5));
    assert!(e.reason.contains("inverted"), "{e}");

    let e = err(&format!("{MINIMAL}    query_timeout: 0s\n"));
    assert_eq!(e.field, "targets[0].query_timeout");
    assert!(e.reason.contains("longer than zero"), "{e}");

    let e = err(&format!("{MINIMAL}    connect_timeout: soon\n"));
    assert!(e.reason.contains("not a duration"), "{e}");
}

#[test]
fn percentages_in_both_spellings() {
    let c = check(&format!(
        "{MINIMAL}    precision: 2%\n    recommendation_margin: 0.3\n"
    ))
    .unwrap();
    assert!((c.targets[0].precision - 0.02).abs() < 1e-9);
    assert!((c.targets[0].recommendation_margin - 0.3).abs() < 1e-9);
    let e = err(&format!("{MINIMAL}    precision: 80%\n"));
    assert_eq!(e.field, "targets[0].precision");
}

#[test]
fn passwords_come_from_one_place_and_never_show() {
    let dir = std::env::temp_dir().join(format!("idle-drop-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pw"), "s3cret-file\n").unwrap();
    let text = format!("{MINIMAL}    password_file: pw\n");
    let c = parse(&dir.join("c.yaml"), &text).unwrap();
    assert_eq!(
        c.targets[0].driver.get_password(),
        Some("s3cret-file".as_bytes())
    );
    assert!(!format!("{c:?}").contains("s3cret"));

    let e = parse(
        &dir.join("c.yaml"),
        &format!("{MINIMAL}    password_file: pw\n    password_env: X\n"),
    )
    .unwrap_err();
    assert!(e.reason.contains("one place"), "{e}");

    let e = err(&format!(
        "{MINIMAL}    password_env: IDLE_DROP_SURELY_UNSET_VAR\n"
    ));
    assert!(e.reason.contains("IDLE_DROP_SURELY_UNSET_VAR"), "{e}");

    let e = parse(
        &dir.join("c.yaml"),
        &format!("{MINIMAL}    password_file: missing\n"),
    )
    .unwrap_err();
    assert!(e.reason.contains("cannot read"), "{e}");

    let c = check("targets:\n  - name: db\n    dsn: postgres://u:inline-pw@h/db\n").unwrap();
    assert_eq!(c.warnings.len(), 1);
    assert!(!c.warnings[0].contains("inline-pw"));
    let e = err("targets:\n  - name: db\n    dsn: postgres://u:inline-pw@h/db?sslmode=nope\n");
    assert!(!e.to_string().contains("inline-pw"), "{e}");
}

#[test]
fn tls_settings_are_checked() {
    let e = err(&format!("{MINIMAL}    sslmode: verify-full\n"));
    assert_eq!(e.field, "targets[0].ca_file");
    let e = err(&format!("{MINIMAL}    sslmode: maybe\n"));
    assert_eq!(e.field, "targets[0].sslmode");
    let c = check("targets:\n  - name: db\n    dsn: host=h sslmode=require\n").unwrap();
    assert_eq!(c.targets[0].sslmode, SslMode::Require);
}

#[test]
fn names_must_be_unique_and_label_safe() {
    let e = err(&format!("{MINIMAL}  - name: db\n    dsn: postgres://h/x\n"));
    assert_eq!(e.line, Some(4));
    assert!(e.reason.contains("unique"));
    let e = err("targets:\n  - name: \"a b\"\n    dsn: postgres://h/x\n");
    assert_eq!(e.field, "targets[0].name");
    let e = err("targets:\n  - dsn: postgres://h/x\n");
    assert!(e.reason.contains("name"));
    assert_eq!(e.line, Some(2));
}

#[test]
fn ladder_must_increase_and_stay_small() {
    let e = err(&format!("{MINIMAL}    watch_ladder: [1m, 30s]\n"));
    assert!(e.reason.contains("increasing"));
    let many: Vec<String> = (1..=20).map(|i| format!("{i}s")).collect();
    let e = err(&format!(
        "{MINIMAL}    watch_ladder: [{}]\n",
        many.join(", ")
    ));
    assert!(e.reason.contains("1 to 16"));
}

#[test]
fn other_global_fields() {
    let e = err(&format!("listen_address: nowhere\n{MINIMAL}"));
    assert_eq!(e.line, Some(1));
    let e = err(&format!("log:\n  format: xml\n{MINIMAL}"));
    assert_eq!(e.field, "log.format");
    assert_eq!(e.line, Some(2));
    let e = err("targets: []\n");
    assert!(e.reason.contains("at least one"));
    let e = err("targets:\n  - name: [oops\n");
    assert!(e.line.is_some(), "{e}");
}
