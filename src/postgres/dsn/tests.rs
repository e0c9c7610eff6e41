use super::*;

#[test]
fn url_form_keeps_driver_params_and_takes_out_tls_ones() {
    let parsed = parse(
        "postgres://probe@db.internal:6432/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
    )
    .unwrap();
    assert_eq!(parsed.sslmode, Some(SslMode::VerifyFull));
    assert_eq!(parsed.sslrootcert.as_deref(), Some("/etc/ca.pem"));
    assert_eq!(parsed.config.get_ports(), &[6432]);
    assert_eq!(parsed.config.get_application_name(), Some("x"));
    assert_eq!(
        redacted(&parsed.config),
        "postgres://probe@db.internal:6432/app"
    );
}

#[test]
fn keyword_form_with_quotes_and_spaces() {
    let parsed =
        parse("host=10.0.0.1 port = 5433 user=probe dbname='my db' sslmode=verify-ca").unwrap();
    assert_eq!(parsed.sslmode, Some(SslMode::VerifyCa));
    assert_eq!(parsed.config.get_dbname(), Some("my db"));
    assert_eq!(
        redacted(&parsed.config),
        "postgres://probe@10.0.0.1:5433/my db"
    );
}

#[test]
fn redaction_never_shows_a_password() {
    for dsn in [
        "postgres://probe:hunter2@h:5432/db",
        "host=h user=probe password=hunter2",
        "host=h user=probe password='hunter2'",
    ] {
        let parsed = parse(dsn).unwrap();
        assert!(!redacted(&parsed.config).contains("hunter2"));
        assert!(!format!("{parsed:?}").contains("hunter2"));
    }
}

#[test]
fn errors_name_the_problem_not_the_secret() {
    let err = parse("postgres://probe:hunter2@h:5432/db?sslmode=bogus").unwrap_err();
    assert!(err.to_string().contains("bogus"), "{err}");
    let err = parse("host=h password=hunter2 port=notaport").unwrap_err();
    assert!(err.to_string().contains("port"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert_eq!(parse("user=probe").unwrap_err(), DsnError::NoHost);
    // An unset template variable must not turn the password into the (shown) host name.
    let err = parse("host= password=hunter2 user=probe").unwrap_err();
    assert!(
        err.to_string().contains("`host` has an empty value"),
        "{err}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(parse("host='unterminated").is_err());
}

#[test]
fn a_password_with_a_raw_at_sign_is_never_shown_as_the_host() {
    // Found by `raw_unicode_url_never_panics_or_leaks`: the driver ends the password at the
    // first `@`, so `2024@db` became the host, shown in logs, labels and the landing page.
    let err = parse("postgres://probe:hunter@2024@db:5432/app").unwrap_err();
    assert!(err.to_string().contains("%40"), "{err}");
    assert!(!err.to_string().contains("2024"), "{err}");
    assert!(parse("postgres://probe:hunter%402024@db:5432/app").is_ok());
    assert!(parse("postgres://probe:a?@2024@db:5432/app").is_err());
    assert!(parse("postgres://probe:hunter@db/app?application_name=2024@x").is_err());
    // A `?` in the credentials does not start the query (the driver reads them to the `@`).
    let parsed = parse("postgres://probe:a?sslmode=hunter2@db/app").unwrap();
    assert_eq!(parsed.sslmode, None);
    assert!(!redacted(&parsed.config).contains("hunter2"));
    let parsed = parse("postgres://probe:a?b@db/app?sslmode=require").unwrap();
    assert_eq!(parsed.config.get_password(), Some("a?b".as_bytes()));
    assert_eq!(parsed.sslmode, Some(SslMode::Require));
}

#[test]
fn an_escaped_space_never_pulls_the_password_into_the_host() {
    // Found by `raw_unicode_keyword_never_panics_or_leaks`: `host=\ password=...` made the
    // host ` password=hunter2`, shown in logs, labels and the landing page.
    let err = parse("host=db\\ password=hunter2 user=probe").unwrap_err();
    assert!(err.to_string().contains("`host`: quote a value"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let parsed = parse("host=db password='hunter 2' user=probe\\_x").unwrap();
    assert_eq!(parsed.config.get_user(), Some("probe_x"));
}

#[test]
fn a_prisma_url_has_its_pool_settings_read_and_stripped() {
    let parsed = parse(
        "postgresql://app:pw@db:5432/app?schema=public&connection_limit=5&max_idle_connection_lifetime=60&socket_timeout=10",
    )
    .unwrap();
    assert_eq!(parsed.app.max_idle_connection_lifetime, Some(60));
    assert_eq!(parsed.app.socket_timeout, Some(10));
    assert_eq!(parsed.app.connection_limit, Some(5));
    assert_eq!(parsed.app.schema.as_deref(), Some("public"));
    assert!(parsed.app.is_quaint());
    assert_eq!(redacted(&parsed.config), "postgres://app@db:5432/app");
}

#[test]
fn every_application_key_is_read_and_none_reaches_the_driver() {
    let url = "postgres://app@db/app?max_idle_connection_lifetime=1&max_connection_lifetime=2\
        &socket_timeout=3&connection_limit=4&pool_timeout=5&connect_timeout=6\
        &schema=my%20schema&pgbouncer=true&statement_cache_size=7&keepalives=1\
        &keepalives_idle=8&keepalives_interval=9&keepalives_count=10&tcp_user_timeout=11000\
        &application_name=kept";
    let expected = AppParams {
        max_idle_connection_lifetime: Some(1),
        max_connection_lifetime: Some(2),
        socket_timeout: Some(3),
        connection_limit: Some(4),
        pool_timeout: Some(5),
        connect_timeout: Some(6),
        schema: Some("my schema".into()),
        pgbouncer: Some(true),
        statement_cache_size: Some(7),
        keepalives: Some(true),
        keepalives_idle: Some(8),
        keepalives_interval: Some(9),
        keepalives_count: Some(10),
        tcp_user_timeout_ms: Some(11000),
    };
    let parsed = parse(url).unwrap();
    assert_eq!(parsed.app, expected);
    assert_eq!(parsed.config.get_application_name(), Some("kept"));
    // The probe's sockets keep the driver's defaults; `Connector::new` sets its own.
    let plain = tokio_postgres::Config::new();
    assert_eq!(parsed.config.get_keepalives(), plain.get_keepalives());
    assert_eq!(parsed.config.get_connect_timeout(), None);
    assert_eq!(parsed.config.get_tcp_user_timeout(), None);

    let keyword = "host=db user=app max_idle_connection_lifetime=1 max_connection_lifetime=2 \
        socket_timeout=3 connection_limit=4 pool_timeout=5 connect_timeout=6 \
        schema='my schema' pgbouncer=true statement_cache_size=7 keepalives=1 \
        keepalives_idle=8 keepalives_interval=9 keepalives_count=10 tcp_user_timeout=11000";
    assert_eq!(parse(keyword).unwrap().app, expected);
    // Percent-encoded values are decoded.
    let parsed = parse("postgres://db/app?max_idle_connection_lifetime=%3120").unwrap();
    assert_eq!(parsed.app.max_idle_connection_lifetime, Some(120));
}

#[test]
fn connect_timeout_alone_does_not_make_a_url_quaints() {
    let parsed = parse("postgres://db/app?connect_timeout=10").unwrap();
    assert_eq!(parsed.app.connect_timeout, Some(10));
    assert!(!parsed.app.is_quaint());
    assert!(!parse("postgres://db/app?keepalives_idle=30")
        .unwrap()
        .app
        .is_quaint());
}

#[test]
fn a_bad_application_value_names_the_key_never_the_password() {
    let err = parse("postgres://app:hunter2@db/app?max_idle_connection_lifetime=abc").unwrap_err();
    assert_eq!(
        err.to_string(),
        "max_idle_connection_lifetime: `abc` is not a whole number of seconds (like 300)"
    );
    for (query, key) in [
        ("socket_timeout=-1", "socket_timeout"),
        ("connection_limit=five", "connection_limit"),
        ("pgbouncer=yes", "pgbouncer"),
        ("keepalives=2", "keepalives"),
        ("tcp_user_timeout=1s", "tcp_user_timeout"),
    ] {
        let err = parse(&format!("postgres://app:hunter2@db/app?{query}")).unwrap_err();
        assert!(err.to_string().starts_with(&format!("{key}: ")), "{err}");
    }
    // A value that is (part of) the password is not quoted.
    for dsn in [
        "postgres://app:hunter2@db/app?socket_timeout=hunter2",
        "postgres://app:hunter2@db/app?socket_timeout=unter",
        "postgres://db/app?password=hunter2&socket_timeout=hunter2",
        "postgres://app:hunter%32@db/app?socket_timeout=hunter2",
        "host=db password=hunter2 socket_timeout=hunter2",
    ] {
        let err = parse(dsn).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with("socket_timeout: is not"),
            "{dsn}: {shown}"
        );
        assert!(!shown.contains("unter"), "{dsn}: {shown}");
        assert!(!format!("{err:?}").contains("unter"), "{dsn}");
    }
}

#[test]
fn percent_escapes_next_to_multibyte_characters_never_panic() {
    // `%a` followed by `é`: the old decoder sliced bytes inside the `é` and panicked. Now an
    // invalid escape is refused (see below), next to a multi-byte character too.
    for dsn in [
        "postgres://h/db?sslrootcert=%a\u{e9}&sslmode=require",
        "postgres://h/db?sslmode=%4\u{e9}",
        "postgres://\u{e9}%\u{e9}:%\u{e9}@h\u{e9}%/d%\u{e9}?%\u{e9}=%",
    ] {
        let err = parse(dsn).unwrap_err();
        assert!(err.to_string().contains("holds a `%`"), "{dsn}: {err}");
    }
    // A valid escape at the very end is decoded too.
    let parsed = parse("postgres://h/db?sslmode=requir%65").unwrap();
    assert_eq!(parsed.sslmode, Some(SslMode::Require));
}

/// A `%` that starts no `%XX` escape was kept as it is by the driver: `%ZZ` in a password was
/// sent as those three characters. Refused like libpq does, naming the part, never the text.
#[test]
fn a_bad_percent_escape_is_refused_naming_its_part_not_its_text() {
    for (url, part) in [
        ("postgres://probe:hunter%ZZ2@db/app", "the password"),
        ("postgres://probe:hunter2%@db/app", "the password"),
        ("postgres://pro%gbe:hunter2@db/app", "the user name"),
        ("postgres://probe@d%b/app", "the host"),
        ("postgres://probe@db/ap%p", "the database name"),
        (
            "postgres://probe@db/app?application_name=x%zz",
            "the value of `application_name`",
        ),
        ("postgres://probe@db/app?password=hunter%2", "the password"),
        (
            "postgres://probe@db/app?appl%ication_name=x",
            "a parameter name",
        ),
    ] {
        let e = parse(url).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{part} holds a `%`")), "{url}: {e}");
        assert!(
            !e.contains("hunter") && !e.contains("zz") && !e.contains("ZZ"),
            "{url}: {e}"
        );
    }
    let fine = parse("postgres://probe:hun%25ter%2F2@db/app%2Dx?application_name=a%20b").unwrap();
    assert_eq!(fine.config.get_password(), Some(&b"hun%ter/2"[..]));
}
