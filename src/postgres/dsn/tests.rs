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
fn percent_escapes_next_to_multibyte_characters_never_panic() {
    // `%a` followed by `é`: the old decoder sliced bytes inside the `é` and panicked.
    let err = parse("postgres://h/db?sslrootcert=%a\u{e9}&sslmode=require");
    assert_eq!(
        err.unwrap().sslrootcert.as_deref(),
        Some("%a\u{e9}"),
        "an invalid escape stays as written"
    );
    let err = parse("postgres://h/db?sslmode=%4\u{e9}").unwrap_err();
    assert!(matches!(err, DsnError::SslMode(_)), "{err}");
    // A valid escape at the very end is decoded too.
    let parsed = parse("postgres://h/db?sslmode=requir%65").unwrap();
    assert_eq!(parsed.sslmode, Some(SslMode::Require));
}
