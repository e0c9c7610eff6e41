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
fn every_duration_above_thirty_days_is_refused_with_its_line() {
    // `290000000000y` used to pass and then panic every `GET /` (issue 9, defect 9).
    for value in ["290000000000y", "31days", "30days 1s"] {
        for (extra, field, line) in [
            ("    connect_timeout: V\n", "targets[0].connect_timeout", 4),
            ("    query_timeout: V\n", "targets[0].query_timeout", 4),
            (
                "    tcp_user_timeout: V\n",
                "targets[0].tcp_user_timeout",
                4,
            ),
            (
                "    app_max_idle_lifetime: V\n",
                "targets[0].app_max_idle_lifetime",
                4,
            ),
            (
                "    recommended_socket_timeout: V\n",
                "targets[0].recommended_socket_timeout",
                4,
            ),
            (
                "    idle_range:\n      max: V\n",
                "targets[0].idle_range.max",
                5,
            ),
            (
                "    keepalive_probe:\n      interval: V\n",
                "targets[0].keepalive_probe.interval",
                5,
            ),
            ("    watch_ladder: [1m, V]\n", "targets[0].watch_ladder", 4),
        ] {
            let e = err(&format!("{MINIMAL}{}", extra.replace('V', value)));
            assert_eq!(e.field, field, "{e}");
            assert_eq!(e.line, Some(line), "{e}");
            assert!(e.reason.contains("longest duration accepted"), "{e}");
        }
    }
    let c = check(&format!(
        "{MINIMAL}    app_max_idle_lifetime: 30days\n    idle_range:\n      max: 30days\n"
    ))
    .unwrap();
    assert_eq!(c.targets[0].idle_max, MAX_DURATION);
}

#[test]
fn every_zero_duration_and_every_bad_budget_is_refused_with_its_line() {
    for (extra, field, line) in [
        ("    connect_timeout: 0s\n", "targets[0].connect_timeout", 4),
        ("    query_timeout: 0ms\n", "targets[0].query_timeout", 4),
        (
            "    tcp_user_timeout: 0s\n",
            "targets[0].tcp_user_timeout",
            4,
        ),
        (
            "    app_max_idle_lifetime: 0s\n",
            "targets[0].app_max_idle_lifetime",
            4,
        ),
        (
            "    recommended_socket_timeout: 0s\n",
            "targets[0].recommended_socket_timeout",
            4,
        ),
        (
            "    idle_range:\n      min: 0s\n",
            "targets[0].idle_range.min",
            5,
        ),
        (
            "    idle_range:\n      max: 0s\n",
            "targets[0].idle_range.max",
            5,
        ),
        (
            "    keepalive_probe:\n      interval: 0s\n",
            "targets[0].keepalive_probe.interval",
            5,
        ),
        ("    watch_ladder: [0s, 1m]\n", "targets[0].watch_ladder", 4),
    ] {
        let e = err(&format!("{MINIMAL}{extra}"));
        assert_eq!(e.field, field, "{e}");
        assert_eq!(e.line, Some(line), "{e}");
        assert!(e.reason.contains("longer than zero"), "{e}");
    }
    for budget in ["1", "0", "-3", "65", "9223372036854775807"] {
        let e = err(&format!("{MINIMAL}    max_connections: {budget}\n"));
        assert_eq!(e.field, "targets[0].max_connections", "{e}");
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.reason.contains("2..=64"), "{e}");
    }
    // Equal bounds are an empty range: refused like an inverted one.
    let e = err(&format!("{MINIMAL}    idle_range: {{min: 1m, max: 60s}}\n"));
    assert_eq!(e.field, "targets[0].idle_range.min");
    assert!(e.reason.contains("inverted"), "{e}");
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

const PRISMA_URL: &str = "postgresql://app:app-secret-pw@db:5432/app?schema=public&connection_limit=5&max_idle_connection_lifetime=60&socket_timeout=10";

fn app_target(source: &str, extra: &str) -> String {
    format!("targets:\n  - name: app\n    {source}\n{extra}")
}

#[test]
fn the_application_url_comes_from_an_environment_variable() {
    std::env::set_var("IDLE_DROP_TEST_APP_URL", PRISMA_URL);
    let c = check(&app_target("dsn_env: IDLE_DROP_TEST_APP_URL", "")).unwrap();
    let t = &c.targets[0];
    assert_eq!(t.display_dsn, "postgres://app@db:5432/app");
    assert_eq!(t.driver.get_password(), Some("app-secret-pw".as_bytes()));
    assert_eq!(t.app_params.connection_limit, Some(5));
    assert!(
        c.warnings.is_empty(),
        "the app's URL holds its secret by design: {:?}",
        c.warnings
    );
    assert!(!format!("{c:?}").contains("app-secret-pw"));

    let e = err(&app_target("dsn_env: IDLE_DROP_SURELY_UNSET_URL", ""));
    assert_eq!(
        e.to_string(),
        "test.yaml:3: targets[0].dsn_env: environment variable IDLE_DROP_SURELY_UNSET_URL is not set or empty"
    );
    std::env::set_var("IDLE_DROP_TEST_EMPTY_URL", " ");
    let e = err(&app_target("dsn_env: IDLE_DROP_TEST_EMPTY_URL", ""));
    assert!(e.reason.contains("not set or empty"), "{e}");

    std::env::set_var(
        "IDLE_DROP_TEST_BAD_URL",
        "postgresql://app:app-secret-pw@db/app?max_idle_connection_lifetime=abc",
    );
    let e = err(&app_target("dsn_env: IDLE_DROP_TEST_BAD_URL", ""));
    let shown = e.to_string();
    assert!(
        shown.starts_with("test.yaml:3: targets[0].dsn_env: the URL in IDLE_DROP_TEST_BAD_URL: max_idle_connection_lifetime: "),
        "{shown}"
    );
    assert!(!shown.contains("app-secret-pw"), "{shown}");
}

#[test]
fn the_application_url_comes_from_a_file_trimmed() {
    let dir = scratch("dsn-file");
    std::fs::write(dir.join("url"), format!("\n  {PRISMA_URL}\n")).unwrap();
    let c = parse(&dir.join("c.yaml"), &app_target("dsn_file: url", "")).unwrap();
    assert_eq!(c.targets[0].display_dsn, "postgres://app@db:5432/app");
    assert_eq!(
        c.targets[0].app_params.max_idle_connection_lifetime,
        Some(60)
    );
    assert!(c.warnings.is_empty());

    let e = parse(&dir.join("c.yaml"), &app_target("dsn_file: missing", "")).unwrap_err();
    assert_eq!(e.field, "targets[0].dsn_file");
    assert!(e.reason.contains("cannot read"), "{e}");
    std::fs::write(dir.join("empty"), "\n").unwrap();
    let e = parse(&dir.join("c.yaml"), &app_target("dsn_file: empty", "")).unwrap_err();
    assert!(e.reason.ends_with("is empty"), "{e}");
    std::fs::write(
        dir.join("bad"),
        "postgresql://app:app-secret-pw@db/app?socket_timeout=app-secret-pw",
    )
    .unwrap();
    let e = parse(&dir.join("c.yaml"), &app_target("dsn_file: bad", "")).unwrap_err();
    assert_eq!(e.field, "targets[0].dsn_file");
    assert!(e.reason.contains("socket_timeout"), "{e}");
    assert!(!e.to_string().contains("app-secret-pw"), "{e}");

    // A second line was silently ignored (a DSN) or sent as part of the password: refused,
    // naming the file and the field, never what it holds.
    std::fs::write(
        dir.join("two-lines"),
        format!("{PRISMA_URL}\npostgresql://other:app-secret-pw@elsewhere/app\n"),
    )
    .unwrap();
    let e = parse(&dir.join("c.yaml"), &app_target("dsn_file: two-lines", "")).unwrap_err();
    assert_eq!(e.field, "targets[0].dsn_file");
    assert!(e.reason.contains("holds more than one line"), "{e}");
    assert!(!e.to_string().contains("app-secret-pw"), "{e}");
    std::fs::write(dir.join("pw"), "app-secret-pw\nsecond line\n").unwrap();
    let e = parse(
        &dir.join("c.yaml"),
        "targets:\n  - name: a\n    dsn: postgres://probe@db/app\n    password_file: pw\n",
    )
    .unwrap_err();
    assert_eq!(e.field, "targets[0].password_file");
    assert!(e.reason.contains("holds more than one line"), "{e}");
    assert!(!e.to_string().contains("app-secret-pw"), "{e}");
}

#[test]
fn exactly_one_dsn_source() {
    std::env::set_var("IDLE_DROP_TEST_ONE_URL", PRISMA_URL);
    let e = err("targets:\n  - name: app\n    max_connections: 4\n");
    assert_eq!(e.field, "targets[0]");
    assert!(e.reason.contains("dsn_env"), "{e}");
    let e = err(&format!("{MINIMAL}    dsn_env: IDLE_DROP_TEST_ONE_URL\n"));
    assert_eq!(e.field, "targets[0].dsn_env");
    assert_eq!(e.line, Some(4));
    assert!(e.reason.contains("one place"), "{e}");
    let e = err(&app_target(
        "dsn_env: IDLE_DROP_TEST_ONE_URL",
        "    dsn_file: url\n",
    ));
    assert_eq!(e.field, "targets[0].dsn_file");
}

#[test]
fn the_guard_lifetime_comes_from_the_config_the_url_or_quaints_default() {
    let dsn = |query: &str| app_target(&format!("dsn: postgres://app@db/app{query}"), "");
    // The URL's own value.
    let t = check(&dsn("?max_idle_connection_lifetime=60&schema=public"))
        .unwrap()
        .targets
        .remove(0);
    assert_eq!(t.app_max_idle_lifetime, Some(Duration::from_secs(60)));
    assert_eq!(t.app_lifetime_source, Some(LifetimeSource::Url));
    // A quaint URL without one: quaint's documented default.
    let t = check(&dsn("?connection_limit=5"))
        .unwrap()
        .targets
        .remove(0);
    assert_eq!(
        t.app_max_idle_lifetime,
        Some(crate::recipes::pools::QUAINT_DEFAULT_MAX_IDLE_LIFETIME)
    );
    assert_eq!(t.app_max_idle_lifetime, Some(Duration::from_secs(300)));
    assert_eq!(t.app_lifetime_source, Some(LifetimeSource::LibraryDefault));
    // The configuration wins, and says the URL disagrees.
    let c = check(&format!(
        "{}    app_max_idle_lifetime: 45s\n",
        dsn("?max_idle_connection_lifetime=60")
    ))
    .unwrap();
    assert_eq!(
        c.targets[0].app_max_idle_lifetime,
        Some(Duration::from_secs(45))
    );
    assert_eq!(
        c.targets[0].app_lifetime_source,
        Some(LifetimeSource::Config)
    );
    assert!(
        c.warnings[0].contains("max_idle_connection_lifetime"),
        "{:?}",
        c.warnings
    );
    // No quaint key: nothing to guard, as before.
    for query in [
        "",
        "?connect_timeout=10",
        "?keepalives_idle=30&application_name=x",
    ] {
        let t = check(&dsn(query)).unwrap().targets.remove(0);
        assert_eq!(t.app_max_idle_lifetime, None, "{query}");
        assert_eq!(t.app_lifetime_source, None, "{query}");
    }
    // 0 turns quaint's retirement off: nothing to guard, and a warning.
    let c = check(&dsn("?max_idle_connection_lifetime=0")).unwrap();
    assert_eq!(c.targets[0].app_max_idle_lifetime, None);
    assert!(c.warnings[0].contains("forever"), "{:?}", c.warnings);
    let e = err(&dsn("?max_idle_connection_lifetime=99999999999"));
    assert_eq!(e.field, "targets[0].dsn");
    assert!(e.reason.contains("longest duration"), "{e}");
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("idle-drop-config-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn only_regular_files_of_bounded_size_are_read() {
    // /dev/zero as a password, CA or config file grew the process to 4 GB; a FIFO hung it.
    let dir = scratch("bounded");
    let config = dir.join("c.yaml");
    for (field, extra) in [
        ("password_file", "    password_file: /dev/zero\n"),
        ("ca_file", "    ca_file: /dev/zero\n"),
    ] {
        let e = parse(&config, &format!("{MINIMAL}{extra}")).unwrap_err();
        assert_eq!(e.field, format!("targets[0].{field}"), "{e}");
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.reason.contains("not a regular file"), "{e}");
    }
    let e = load(Path::new("/dev/zero")).unwrap_err();
    assert!(e.reason.contains("not a regular file"), "{e}");

    let fifo = dir.join("fifo.yaml");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let e = load(&fifo).unwrap_err();
    assert!(e.reason.contains("not a regular file"), "{e}");

    // Sizes: a password file up to 4 KiB, any other file up to 1 MiB.
    std::fs::write(dir.join("pw"), "x".repeat(4096)).unwrap();
    let c = parse(&config, &format!("{MINIMAL}    password_file: pw\n")).unwrap();
    assert_eq!(
        c.targets[0].driver.get_password().map(<[u8]>::len),
        Some(4096)
    );
    std::fs::write(dir.join("pw"), "s3cret".repeat(700)).unwrap();
    let e = parse(&config, &format!("{MINIMAL}    password_file: pw\n")).unwrap_err();
    assert!(e.reason.contains("larger than 4 KiB"), "{e}");
    assert!(!e.to_string().contains("s3cret"), "{e}");

    let mut big = MINIMAL.to_string();
    while big.len() as u64 <= MAX_FILE_BYTES {
        big.push_str(&format!("# {}\n", "padding ".repeat(16)));
    }
    std::fs::write(&config, &big).unwrap();
    let e = load(&config).unwrap_err();
    assert!(e.reason.contains("larger than 1 MiB"), "{e}");
    std::fs::write(&config, MINIMAL).unwrap();
    assert!(load(&config).is_ok());
}

#[test]
fn deep_yaml_nesting_is_refused_before_parsing() {
    // 100,000 `[` took the YAML parser 34 s to refuse.
    let started = std::time::Instant::now();
    for text in [
        format!("targets: {}\n", "[".repeat(100_000)),
        format!("{MINIMAL}    name: {}\n", "{a: ".repeat(100_000)),
    ] {
        let e = err(&text);
        assert!(e.reason.contains("nested more than 64 levels"), "{e}");
        assert!(e.line.is_some(), "{e}");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Ordinary nesting, and brackets that close, are fine.
    let c = check(&format!("{MINIMAL}    watch_ladder: [[1s]]\n"));
    assert!(c.is_err_and(|e| !e.reason.contains("nested")));
    assert!(check(&format!("{MINIMAL}    watch_ladder: [1m, 2m]\n")).is_ok());
}

#[test]
fn a_ca_file_must_hold_parseable_certificates() {
    // A CERTIFICATE block that is not a certificate passed --check-config and a reload, then
    // every TLS setup failed with BadEncoding and the target was never probed.
    let dir = scratch("ca");
    std::fs::write(
        dir.join("bad.pem"),
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = parse(
        &dir.join("c.yaml"),
        &format!("{MINIMAL}    sslmode: verify-full\n    ca_file: bad.pem\n"),
    )
    .unwrap_err();
    assert_eq!(e.field, "targets[0].ca_file", "{e}");
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.reason.contains("not a valid certificate"), "{e}");
    // What the old code let through failed at every TLS setup: validation now agrees.
    let bundle = crate::postgres::tls::CaBundle {
        path: dir.join("bad.pem"),
        pem: std::fs::read(dir.join("bad.pem")).unwrap(),
    };
    assert!(crate::postgres::tls::connector(SslMode::VerifyFull, Some(&bundle)).is_err());
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

/// Hostile input: no text makes the loader panic, and a refusal always says where.
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const SHIPPED: &str = include_str!("../../config.yaml");

    /// Lines of the shipped file that hold a `key: value` we can replace.
    fn value_lines() -> Vec<usize> {
        SHIPPED
            .lines()
            .enumerate()
            .filter(|(_, l)| {
                let t = l.trim_start().trim_start_matches("- ");
                !t.starts_with('#')
                    && t.split_once(':').is_some_and(|(k, v)| {
                        k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                            && !v.trim().is_empty()
                    })
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("0s".to_string()),
            Just("-1s".to_string()),
            Just("99999999999999999999h".to_string()),
            Just("nan%".to_string()),
            Just("-5%".to_string()),
            Just("1e308".to_string()),
            Just("-9223372036854775808".to_string()),
            Just("~".to_string()),
            Just("[]".to_string()),
            Just("{}".to_string()),
            Just("[1s, 0s]".to_string()),
            Just("\"\"".to_string()),
            Just("true".to_string()),
            Just("postgres://u:p@h:notaport/db".to_string()),
            "[0-9]{1,20}(ms|s|m|h|d)?",
            "-?[0-9]{1,5}(\\.[0-9]{1,3})?%?",
            "[a-z0-9 =:/@._-]{0,20}",
        ]
    }

    proptest! {
        #![proptest_config(budget(256))]

        #[test]
        fn arbitrary_text_never_panics(text in "(?s).{0,200}") {
            if let Err(e) = check(&text) {
                let _ = e.to_string();
            }
        }

        #[test]
        fn yaml_like_text_never_panics(
            lines in prop::collection::vec(
                "( {0,4}- )?[a-z_]{1,12}: ?[a-z0-9%\\[\\]{}:, .-]{0,12}", 0..12)
        ) {
            if let Err(e) = check(&lines.join("\n")) {
                let _ = e.to_string();
            }
        }

        /// The shipped config with one value replaced: accepted, or refused naming the field
        /// and its line (a YAML syntax error has no field, but always a line).
        #[test]
        fn mutated_shipped_config_names_field_and_line(
            pick in any::<prop::sample::Index>(),
            value in value(),
        ) {
            std::env::set_var("ORDERS_DB_PASSWORD", "from-env");
            let lines = value_lines();
            let line = lines[pick.index(lines.len())];
            let mut text: Vec<String> = SHIPPED.lines().map(str::to_string).collect();
            let (key, _) = text[line].split_once(':').unwrap();
            text[line] = format!("{key}: {value}");
            let text = text.join("\n");
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml");
            if let Err(e) = parse(&path, &text) {
                prop_assert!(e.line.is_some(), "no line: {e}\n{}", text.lines().nth(line).unwrap());
                let yaml_ok = serde_yaml::from_str::<serde_yaml::Value>(&text).is_ok();
                if yaml_ok {
                    prop_assert!(!e.field.is_empty(), "no field: {e}");
                }
                prop_assert!(e.to_string().starts_with(&path.display().to_string()));
            }
        }
    }

    use crate::postgres::dsn::fuzz::{
        budget, encode_all, leaks, text, unicode_keyword, unicode_password, unicode_url,
    };
    use serde_yaml::{Mapping, Value};

    /// A plausible value most of the time (so the checks behind the first one run too),
    /// arbitrary Unicode otherwise.
    fn sometimes(valid: &'static [&'static str]) -> impl Strategy<Value = Option<Value>> {
        prop::option::weighted(
            0.4,
            prop_oneof![
                12 => prop::sample::select(valid).prop_map(Value::from),
                1 => text(8).prop_map(Value::from),
            ],
        )
    }

    const DURATIONS: &[&str] = &[
        "1s",
        "5s",
        "90s",
        "10m",
        "1h",
        "500ms",
        "0s",
        "30days",
        "31days",
        "290000000000y",
        " 2m ",
    ];

    /// Where a fuzzed configuration puts its DSN.
    #[derive(Clone, Copy, Debug)]
    enum DsnPlace {
        /// `dsn:` in the file.
        Inline,
        /// `dsn_file:`, a file the test writes first (the application's URL in a Secret).
        File,
        /// `dsn_env:` naming a variable nobody sets: refused, naming the field.
        UnsetEnv,
        /// `dsn:` and `dsn_file:` both: refused as given twice.
        Twice,
    }

    /// Where the DSN file of a fuzz case lives (absolute, so the config's made-up folder does
    /// not matter): one per DSN, under a folder of this process.
    fn fuzz_dsn_file(dsn: &str) -> PathBuf {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        dsn.hash(&mut hasher);
        std::env::temp_dir()
            .join(format!("idle-drop-fuzz-{}", std::process::id()))
            .join(format!("{:016x}.url", hasher.finish()))
    }

    /// A whole configuration over arbitrary Unicode, written by serde_yaml (so always valid
    /// YAML), with a password in the DSN; that password; and the DSN file to write first when
    /// the configuration names one.
    fn unicode_config(
    ) -> impl Strategy<Value = (String, String, DsnPlace, Option<(PathBuf, String)>)> {
        // Mostly a plain DSN (so the checks after the DSN's run too), else a hostile one.
        let plain = unicode_password().prop_map(|pw| {
            let dsn = format!("postgres://probe:{}@db.internal:5432/app", encode_all(&pw));
            (dsn, pw)
        });
        let dsn = prop_oneof![
            4 => plain,
            1 => unicode_url().prop_map(|(dsn, f, _)| (dsn, f.password)),
            1 => unicode_keyword().prop_map(|(dsn, f, _)| (dsn, f.password)),
        ];
        let durations = || sometimes(DURATIONS);
        let place = prop_oneof![
            8 => Just(DsnPlace::Inline),
            2 => Just(DsnPlace::File),
            1 => Just(DsnPlace::UnsetEnv),
            1 => Just(DsnPlace::Twice),
        ];
        (
            (
                (dsn, place),
                sometimes(&["db", "orders-db", "a.b_c"]),
                sometimes(&["disable", "prefer", "require"]),
                durations(),
                durations(),
                durations(),
                sometimes(&["SELECT 1", " "]),
                prop::option::weighted(
                    0.4,
                    prop_oneof![
                        12 => (2i64..=64).prop_map(Value::from),
                        1 => any::<i64>().prop_map(Value::from),
                        1 => text(4).prop_map(Value::from),
                    ],
                ),
            ),
            (
                durations(),
                durations(),
                sometimes(&["5%", "0.05", "50%", "0%", "nan%", "-1%"]),
                prop::option::of(prop::collection::vec(
                    prop_oneof![
                        prop::sample::select(DURATIONS).prop_map(str::to_string),
                        text(6)
                    ],
                    0..4,
                )),
                durations(),
                sometimes(&["20%", "0%", "90%", "91%"]),
                durations(),
                durations(),
            ),
            (
                sometimes(&["adaptive", "bisection", "fixed_ladder"]),
                sometimes(&["0.0.0.0:10187", "[::1]:0"]),
                sometimes(&["info", "debug", "idle_drop_exporter=trace"]),
                sometimes(&["text", "json"]),
                prop::option::weighted(0.05, text(8)),
                prop::option::weighted(0.05, text(8)),
                prop::option::weighted(
                    0.1,
                    prop::collection::vec(
                        prop_oneof![
                            4 => prop::sample::select(&["targets/*.yaml", "/nonexistent-fuzz-dir/*.json", "t/[ab].yaml", "[", "", "**/x"][..])
                                .prop_map(str::to_string),
                            1 => text(6),
                        ],
                        0..3,
                    ),
                ),
                prop::option::weighted(0.1, prop::sample::select(DURATIONS)),
            ),
        )
            .prop_map(|(a, b, c)| {
                let (((dsn, password), place), name, sslmode, connect, query, tcp_user, probe, max) =
                    a;
                let (min, max_idle, precision, ladder, lifetime, margin, socket, keepalive) = b;
                let (policy, listen, level, format, ca_file, password_file, globs, refresh) = c;
                let mut t = Mapping::new();
                let mut put = |key: &str, value: Option<Value>| {
                    if let Some(value) = value {
                        t.insert(key.into(), value);
                    }
                };
                put("name", Some(name.unwrap_or_else(|| "db".into())));
                let mut dsn_file = None;
                match place {
                    DsnPlace::Inline => put("dsn", Some(dsn.as_str().into())),
                    DsnPlace::File | DsnPlace::Twice => {
                        let path = fuzz_dsn_file(&dsn);
                        put("dsn_file", Some(path.display().to_string().into()));
                        if matches!(place, DsnPlace::Twice) {
                            put("dsn", Some(dsn.as_str().into()));
                        }
                        dsn_file = Some((path, dsn.clone()));
                    }
                    DsnPlace::UnsetEnv => put("dsn_env", Some("IDLE_DROP_FUZZ_NEVER_SET".into())),
                }
                put("sslmode", sslmode);
                put("connect_timeout", connect);
                put("query_timeout", query);
                put("tcp_user_timeout", tcp_user);
                put("probe_query", probe);
                put("max_connections", max);
                put("precision", precision);
                put(
                    "watch_ladder",
                    ladder.map(|l| Value::Sequence(l.into_iter().map(Value::from).collect())),
                );
                put("app_max_idle_lifetime", lifetime);
                put("recommendation_margin", margin);
                put("recommended_socket_timeout", socket);
                put("discovery_policy", policy);
                // Files under a folder that does not exist: never read, always refused.
                put("ca_file", ca_file.map(Value::from));
                put("password_file", password_file.map(Value::from));
                if min.is_some() || max_idle.is_some() {
                    let mut range = Mapping::new();
                    for (key, value) in [("min", min), ("max", max_idle)] {
                        if let Some(value) = value {
                            range.insert(key.into(), value);
                        }
                    }
                    put("idle_range", Some(Value::Mapping(range)));
                }
                if let Some(interval) = keepalive {
                    let mut k = Mapping::new();
                    k.insert("interval".into(), interval);
                    put("keepalive_probe", Some(Value::Mapping(k)));
                }
                let mut root = Mapping::new();
                if let Some(listen) = listen {
                    root.insert("listen_address".into(), listen);
                }
                if level.is_some() || format.is_some() {
                    let mut log = Mapping::new();
                    for (key, value) in [("level", level), ("format", format)] {
                        if let Some(value) = value {
                            log.insert(key.into(), value);
                        }
                    }
                    root.insert("log".into(), Value::Mapping(log));
                }
                root.insert("targets".into(), Value::Sequence(vec![Value::Mapping(t)]));
                if let Some(globs) = globs {
                    root.insert(
                        "target_files".into(),
                        Value::Sequence(globs.into_iter().map(Value::from).collect()),
                    );
                }
                if let Some(refresh) = refresh {
                    root.insert("target_files_refresh_interval".into(), refresh.into());
                }
                (serde_yaml::to_string(&root).unwrap(), password, place, dsn_file)
            })
    }

    /// Fuzz budget of the config properties: 512 whole configurations, 512 durations, 512
    /// duration round trips (plus the three older properties above, 3 x 256).
    const CONFIG_CASES: u32 = 512;

    proptest! {
        #![proptest_config(budget(CONFIG_CASES))]

        /// Any value in any field: accepted, or refused with the file, line and field; never a
        /// panic; the DSN's password in no message, warning or printed config.
        #[test]
        fn unicode_config_names_file_line_field_and_never_the_password(
            (text, _pw, place, dsn_file) in unicode_config()
        ) {
            if let Some((file, dsn)) = &dsn_file {
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(file, dsn).unwrap();
            }
            let path = Path::new("/nonexistent-fuzz-dir/config.yaml");
            match parse(path, &text) {
                Ok(config) => {
                    prop_assert!(
                        !matches!(place, DsnPlace::UnsetEnv | DsnPlace::Twice),
                        "{place:?} accepted:\n{text}"
                    );
                    prop_assert!(!leaks(&format!("{config:?}")), "{text}");
                    for w in &config.warnings {
                        prop_assert!(!leaks(w), "{w}");
                    }
                    prop_assert!(!leaks(&config.targets[0].display_dsn), "{text}");
                }
                Err(e) => {
                    let shown = e.to_string();
                    prop_assert!(!leaks(&shown), "{text}\n{shown}");
                    prop_assert!(!leaks(&format!("{e:?}")), "{text}\n{e:?}");
                    prop_assert!(shown.starts_with("/nonexistent-fuzz-dir/config.yaml:"), "{shown}");
                    prop_assert!(e.line.is_some(), "no line: {shown}\n{text}");
                    prop_assert!(
                        e.field.starts_with("targets[0]")
                            || e.field.starts_with("log.")
                            || e.field == "listen_address"
                            || e.field.starts_with("target_files"),
                        "field `{}`: {shown}\n{text}", e.field
                    );
                }
            }
        }

        /// Any text as a duration: refused with a message, or within (0, 30 days].
        #[test]
        fn any_text_as_a_duration_is_refused_or_within_bounds(text in text(12)) {
            match parse_duration(&text) {
                Ok(d) => prop_assert!(!d.is_zero() && d <= MAX_DURATION, "{text:?}: {d:?}"),
                Err(reason) => prop_assert!(!reason.is_empty()),
            }
        }

        /// Every duration in bounds, as humantime prints it, reads back the same.
        #[test]
        fn durations_in_bounds_round_trip(nanos in 1u128..=MAX_DURATION.as_nanos()) {
            let d = Duration::from_nanos(nanos as u64);
            let shown = humantime::format_duration(d).to_string();
            prop_assert_eq!(parse_duration(&shown), Ok(d), "{}", shown);
        }
    }
}

/// Each setting, changed alone, against what the reload table in `config/change.rs` says.
#[test]
fn a_reload_restarts_the_measurement_only_for_path_settings() {
    let base = "targets:\n  - name: db\n    dsn: postgres://probe:one@127.0.0.1:5432/postgres\n";
    let old = check(base).unwrap().targets.remove(0);
    let cases = [
        ("    app_max_idle_lifetime: 60s\n", TargetChange::Live),
        ("    recommendation_margin: 30%\n", TargetChange::Live),
        ("    recommended_socket_timeout: 7s\n", TargetChange::Live),
        ("    watch_ladder: [1m, 2m]\n", TargetChange::Live),
        ("    precision: 3%\n", TargetChange::Live),
        ("    idle_range: {min: 2s, max: 30m}\n", TargetChange::Live),
        ("    discovery_policy: bisection\n", TargetChange::Live),
        ("    labels: {team: payments}\n", TargetChange::Live),
        ("    reap_ghosts: false\n", TargetChange::Reconnect),
        (
            "    allow_cleartext_password: true\n",
            TargetChange::Reconnect,
        ),
        ("    max_connections: 5\n", TargetChange::NewPath),
        ("    probe_query: SELECT 2\n", TargetChange::NewPath),
        ("    query_timeout: 4s\n", TargetChange::NewPath),
        ("    connect_timeout: 4s\n", TargetChange::NewPath),
        ("    tcp_user_timeout: 4s\n", TargetChange::NewPath),
        (
            "    keepalive_probe: {interval: 5s}\n",
            TargetChange::NewPath,
        ),
    ];
    for (extra, expected) in cases {
        let new = check(&format!("{base}{extra}")).unwrap().targets.remove(0);
        assert_eq!(old.change_to(&new), expected, "{extra}");
    }
    let same = check(base).unwrap().targets.remove(0);
    assert_eq!(old.change_to(&same), TargetChange::Unchanged);
    let rotated = check(&base.replace(":one@", ":two@"))
        .unwrap()
        .targets
        .remove(0);
    assert_eq!(old.change_to(&rotated), TargetChange::Reconnect);
    assert_eq!(old.fingerprint(), rotated.fingerprint());
    // The URL's pool settings move the guard only; its password reconnects; its path, again.
    let url = "postgres://probe:one@127.0.0.1:5432/postgres?max_idle_connection_lifetime=60&socket_timeout=10";
    let with_url = check(&base.replace("postgres://probe:one@127.0.0.1:5432/postgres", url))
        .unwrap()
        .targets
        .remove(0);
    assert_eq!(old.change_to(&with_url), TargetChange::Live);
    assert_eq!(old.fingerprint(), with_url.fingerprint());
    for (changed, expected) in [
        ("max_idle_connection_lifetime=30&socket_timeout=10", TargetChange::Live),
        ("socket_timeout=5&max_idle_connection_lifetime=60&connection_limit=9", TargetChange::Live),
        ("max_idle_connection_lifetime=60&socket_timeout=10&keepalives=1&keepalives_idle=20&tcp_user_timeout=5000", TargetChange::Live),
        ("max_idle_connection_lifetime=60&socket_timeout=10&sslmode=require", TargetChange::NewPath),
    ] {
        let text = base.replace(
            "postgres://probe:one@127.0.0.1:5432/postgres",
            &format!("postgres://probe:one@127.0.0.1:5432/postgres?{changed}"),
        );
        let new = check(&text).unwrap().targets.remove(0);
        assert_eq!(with_url.change_to(&new), expected, "{changed}");
        if expected == TargetChange::Live {
            assert_eq!(with_url.fingerprint(), new.fingerprint(), "{changed}");
        }
    }
    let text = base.replace(
        "postgres://probe:one@127.0.0.1:5432/postgres",
        &url.replace(":one@", ":two@"),
    );
    let rotated_url = check(&text).unwrap().targets.remove(0);
    assert_eq!(with_url.change_to(&rotated_url), TargetChange::Reconnect);
    for (from, to) in [
        ("127.0.0.1", "127.0.0.2"),
        (":5432", ":5433"),
        ("/postgres", "/other"),
        ("probe:", "other:"),
    ] {
        let text = base.replace(
            "postgres://probe:one@127.0.0.1:5432/postgres",
            &url.replace(from, to),
        );
        let moved = check(&text).unwrap().targets.remove(0);
        assert_eq!(
            with_url.change_to(&moved),
            TargetChange::NewPath,
            "{from} -> {to}"
        );
    }
    for dsn in [
        "postgres://probe:one@127.0.0.2:5432/postgres",
        "postgres://probe:one@127.0.0.1:5433/postgres",
        "postgres://probe:one@127.0.0.1:5432/other",
        "postgres://other:one@127.0.0.1:5432/postgres",
        "postgres://probe:one@127.0.0.1:5432/postgres?sslmode=require",
    ] {
        let text = base.replace("postgres://probe:one@127.0.0.1:5432/postgres", dsn);
        let new = check(&text).unwrap().targets.remove(0);
        assert_eq!(old.change_to(&new), TargetChange::NewPath, "{dsn}");
    }
}

/// Found by the fuzzer: tracing-subscriber panicked on a leading space before a multi-byte
/// character; such a level is refused with the usual error instead.
#[test]
fn log_levels_that_would_panic_the_filter_parser_are_refused() {
    for level in [" À=", " é", "info\u{0}", "\u{1F511}=debug", ""] {
        let text = format!("log:\n  level: {level:?}\n{MINIMAL}");
        let e = err(&text);
        assert_eq!(e.field, "log.level", "{level:?}");
    }
    for level in ["info", " debug ", "idle_drop_exporter=debug,warn"] {
        let text = format!("log:\n  level: {level:?}\n{MINIMAL}");
        assert_eq!(check(&text).unwrap().log.level, level.trim());
    }
    assert!(parse_log_level(" À=").is_err());
}

/// A file swapped for a FIFO between the check of its path and its `open()` blocked the daemon
/// in `open()` (no writer ever comes). The open is non-blocking and the type is checked on the
/// open file: every read of a path flipping between a file and a FIFO returns at once.
#[test]
fn a_file_swapped_for_a_fifo_never_blocks_the_read() {
    let dir = std::env::temp_dir().join(format!("idle-drop-fifo-swap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("regular"), "targets: []\n").unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(dir.join("fifo"))
        .status()
        .unwrap();
    assert!(made.success());
    let path = dir.join("config.yaml");
    std::os::unix::fs::symlink("regular", &path).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (dir, stop) = (dir.clone(), stop.clone());
        std::thread::spawn(move || {
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let next = dir.join("next");
                let _ = std::fs::remove_file(&next);
                let to = if i % 2 == 0 { "fifo" } else { "regular" };
                std::os::unix::fs::symlink(to, &next).unwrap();
                std::fs::rename(&next, dir.join("config.yaml")).unwrap();
            }
        })
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut outcomes = (0, 0);
        for _ in 0..20_000 {
            match read_file(&path, MAX_FILE_BYTES) {
                Ok(_) => outcomes.0 += 1,
                Err(_) => outcomes.1 += 1,
            }
        }
        let _ = tx.send(outcomes);
    });
    let outcome = rx.recv_timeout(std::time::Duration::from_secs(60));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    if outcome.is_err() {
        // Let the blocked reader go before failing.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("fifo"));
    }
    let (read, refused) = outcome.expect("a read blocked in open()");
    assert!(read > 0 && refused > 0, "{read} read, {refused} refused");
}

/// `--web.telemetry-path` takes only what a client can send as a request path: `/métriques`,
/// `/a<b`, `/a"b` were accepted, and nothing could ever scrape them.
#[test]
fn telemetry_paths_are_ones_a_client_can_request() {
    for good in [
        "/metrics",
        "/probe/metrics",
        "/a-b_c.d~e",
        "/x%2Fy",
        "/v1;x=1",
        "/@:!$&'()*+,=",
    ] {
        assert_eq!(parse_telemetry_path(good).as_deref(), Ok(good), "{good}");
    }
    for bad in [
        "/métriques",
        "/a<b",
        "/a\"b",
        "/a b",
        "/a%zz",
        "/a%2",
        "/a\\b",
        "/a`b",
        "/a{b}",
        "/a|b",
        "/a^b",
        "/m?x",
        "/m#x",
        "/m\u{7f}",
    ] {
        let e = parse_telemetry_path(bad).unwrap_err();
        assert!(
            e.contains("is not a path a client can request"),
            "{bad}: {e}"
        );
    }
}
