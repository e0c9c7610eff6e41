use super::*;
use proptest::prelude::*;

/// Passwords start with `PWX` (nothing else generated has upper case), so a hit is a leak.
fn password() -> impl Strategy<Value = String> {
    "PWX[a-z0-9 '\\\\@:/?=&%#-]{3,12}"
}

fn encoded(pw: &str) -> String {
    pw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn junk() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("5432".to_string()),
        "[a-z0-9:@/?=&%' .-]{0,10}",
    ]
}

fn url() -> impl Strategy<Value = (String, String)> {
    (
        password(),
        any::<bool>(),
        "[a-z]{0,6}",
        "[a-z0-9.]{0,10}",
        junk(),
        "[a-z]{0,6}",
        prop::collection::vec(
            prop_oneof![
                Just("sslmode=require".to_string()),
                Just("sslmode=verify-full".to_string()),
                Just("sslrootcert=%2Fx".to_string()),
                Just("application_name=x".to_string()),
                Just("max_idle_connection_lifetime=60".to_string()),
                Just("schema=public".to_string()),
                "(socket_timeout|connection_limit|keepalives)=[a-z0-9%]{0,4}",
                "[a-z_=%]{0,10}",
            ],
            0..3,
        ),
    )
        .prop_map(|(pw, encode, user, host, port, db, params)| {
            let shown = if encode { encoded(&pw) } else { pw.clone() };
            let query = if params.is_empty() {
                String::new()
            } else {
                format!("?{}", params.join("&"))
            };
            (
                format!("postgres://{user}:{shown}@{host}:{port}/{db}{query}"),
                pw,
            )
        })
}

fn keyword() -> impl Strategy<Value = (String, String)> {
    (
        password(),
        any::<bool>(),
        prop::collection::vec(
            prop_oneof![
                "host=[a-z0-9.]{0,8}",
                "port=[0-9a-z]{0,6}",
                "user=[a-z]{0,6}",
                "sslmode=[a-z-]{0,11}",
                "[a-z_]{1,8}=[a-z0-9']{0,6}",
                "[a-z=' ]{0,6}",
            ],
            0..5,
        ),
        0usize..5,
    )
        .prop_map(|(pw, quote, mut parts, at)| {
            // Unquoted, libpq reads spaces, quotes and backslashes itself.
            let pw = if quote {
                pw
            } else {
                pw.replace([' ', '\\', '\''], "x")
            };
            let value = if quote {
                format!("'{}'", pw.replace('\\', "\\\\").replace('\'', "\\'"))
            } else {
                pw.clone()
            };
            parts.insert(at.min(parts.len()), format!("password={value}"));
            (parts.join(" "), pw)
        })
}

fn assert_no_password(dsn: &str, pw: &str) -> Result<(), TestCaseError> {
    match parse(dsn) {
        Ok(parsed) => {
            prop_assert!(!redacted(&parsed.config).contains(pw), "{dsn}");
            prop_assert!(!format!("{parsed:?}").contains(pw), "{dsn}");
        }
        Err(e) => {
            prop_assert!(!e.to_string().contains(pw), "{dsn}: {e}");
            prop_assert!(!format!("{e:?}").contains(pw), "{dsn}: {e:?}");
        }
    }
    Ok(())
}

/// Marks both ends of a generated password; nothing else generated contains them, so either
/// one in an output means (part of) the password leaked.
pub(crate) const PW_OPEN: char = '\u{1F511}';
pub(crate) const PW_CLOSE: char = '\u{1F512}';

/// The proptest settings of every fuzz property in the crate: a fixed case budget (the
/// `PROPTEST_CASES` variable does not change it), no failure files written into the tree (a
/// failure prints its minimal input; it becomes a named regression test), and a fixed seed,
/// so a test run is reproducible and CI never fails on a case no earlier run tried. To
/// explore further, set `IDLE_DROP_FUZZ_SEED` to another number, or to `random`.
pub(crate) fn budget(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed: fuzz_seed(),
        ..ProptestConfig::default()
    }
}

/// The seed `IDLE_DROP_FUZZ_SEED` asks for; a fixed one by default.
pub(crate) fn fuzz_seed() -> proptest::test_runner::RngSeed {
    use proptest::test_runner::RngSeed;
    match std::env::var("IDLE_DROP_FUZZ_SEED").ok().as_deref() {
        Some("random") => RngSeed::Random,
        Some(n) => n
            .parse()
            .map_or(RngSeed::Fixed(DEFAULT_SEED), RngSeed::Fixed),
        None => RngSeed::Fixed(DEFAULT_SEED),
    }
}

const DEFAULT_SEED: u64 = 0x1D1E_D50F;

/// One piece of hostile text: any Unicode scalar value (controls, whitespace, combining
/// marks, astral planes) or a piece of URL / `key=value` syntax.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<char>().prop_map(String::from),
        1 => prop::sample::select(vec![
            "@", "?", "&", "=", ":", "/", ",", "%", "%4", "%e9", "%FF", "%00", "'", "\\", " ",
            "\t", "\n", "[", "]", "#", "sslmode=", "sslrootcert=", "password=", "host=",
            "postgres://", "\u{e9}", "\u{3000}", "\u{200b}",
        ])
        .prop_map(str::to_string),
    ]
}

/// Arbitrary Unicode text (never the password markers).
pub(crate) fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..max)
        .prop_map(|pieces| pieces.concat().replace([PW_OPEN, PW_CLOSE], "~"))
}

/// A password over arbitrary Unicode, between the two markers.
pub(crate) fn unicode_password() -> impl Strategy<Value = String> {
    text(10).prop_map(|t| format!("{PW_OPEN}{t}{PW_CLOSE}"))
}

/// What a generated DSN says, to compare with what the parser made of it.
#[derive(Clone, Debug)]
pub(crate) struct Fields {
    pub host: String,
    pub port: String,
    pub user: String,
    pub dbname: String,
    pub password: String,
    pub sslmode: Option<String>,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        text(8),
        prop_oneof![
            (1u16..).prop_map(|p| p.to_string()),
            Just(String::new()),
            text(4)
        ],
        text(8),
        text(8),
        unicode_password(),
        prop::option::of(prop_oneof![
            prop::sample::select(vec![
                "disable",
                "prefer",
                "require",
                "verify-ca",
                "verify-full"
            ])
            .prop_map(str::to_string),
            text(6),
        ]),
    )
        .prop_map(|(host, port, user, dbname, password, sslmode)| Fields {
            host,
            port,
            user,
            dbname,
            password,
            sslmode,
        })
}

/// Every byte but the unreserved ones as `%XX`.
pub(crate) fn encode_all(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A URL DSN over arbitrary Unicode; `encode` percent-encodes every component (so the parse
/// is checkable), otherwise they are pasted in raw, as a careless template would.
pub(crate) fn unicode_url() -> impl Strategy<Value = (String, Fields, bool)> {
    (fields(), any::<bool>(), any::<bool>()).prop_map(|(f, encode, long_scheme)| {
        let e = |t: &str| if encode { encode_all(t) } else { t.to_string() };
        let query = match &f.sslmode {
            Some(mode) => format!("?sslmode={}&application_name=fuzz", e(mode)),
            None => String::new(),
        };
        let scheme = if long_scheme {
            "postgresql"
        } else {
            "postgres"
        };
        let dsn = format!(
            "{scheme}://{}:{}@{}:{}/{}{query}",
            e(&f.user),
            e(&f.password),
            e(&f.host),
            e(&f.port),
            e(&f.dbname)
        );
        (dsn, f, encode)
    })
}

/// A `key=value` DSN over arbitrary Unicode; `quote` quotes and escapes every value as libpq
/// wants (so the parse is checkable), otherwise they are pasted in raw. Keys in random order.
pub(crate) fn unicode_keyword() -> impl Strategy<Value = (String, Fields, bool)> {
    (fields(), any::<bool>(), any::<u64>()).prop_map(|(mut f, quote, order)| {
        if !quote {
            // Unquoted, a space ends the value: what follows is not the password.
            f.password = f.password.replace(char::is_whitespace, "_");
        }
        let q = |t: &str| {
            if quote {
                format!("'{}'", t.replace('\\', "\\\\").replace('\'', "\\'"))
            } else if t.trim_start().starts_with('\'') {
                // A leading quote opens a quoted value that may hold the rest of the line,
                // password included: that is what was written, not a leak.
                format!("x{t}")
            } else {
                t.to_string()
            }
        };
        let mut parts = vec![
            format!("host={}", q(&f.host)),
            format!("port={}", q(&f.port)),
            format!("user={}", q(&f.user)),
            format!("dbname={}", q(&f.dbname)),
            format!("password={}", q(&f.password)),
        ];
        if let Some(mode) = &f.sslmode {
            parts.push(format!("sslmode={}", q(mode)));
        }
        let n = parts.len() as u64;
        for i in (1..n).rev() {
            let j = (order.rotate_left(i as u32 * 7) % (i + 1)) as usize;
            parts.swap(i as usize, j);
        }
        (parts.join(" "), f, quote)
    })
}

/// Neither end of the password in anything the parser returns or prints.
pub(crate) fn leaks(shown: &str) -> bool {
    shown.contains(PW_OPEN) || shown.contains(PW_CLOSE)
}

/// The ports libpq's `port` value means (comma-separated, empty = 5432), if all are valid.
fn ports(text: &str) -> Option<Vec<u16>> {
    text.split(',')
        .map(|p| {
            if p.is_empty() {
                Some(5432)
            } else {
                p.parse().ok()
            }
        })
        .collect()
}

/// Never a panic, never a leak; if `exact`, an accepted DSN has exactly the generated host,
/// port, user, database and sslmode, and a refused one names what was wrong.
fn check_unicode(dsn: &str, f: &Fields, exact: bool) -> Result<(), TestCaseError> {
    match parse(dsn) {
        Ok(parsed) => {
            let shown = redacted(&parsed.config);
            prop_assert!(!leaks(&shown), "{dsn:?} shown as {shown:?}");
            prop_assert!(!leaks(&format!("{parsed:?}")), "{dsn:?}");
            if !exact {
                return Ok(());
            }
            prop_assert_eq!(parsed.config.get_hosts(), &[Host::Tcp(f.host.clone())][..]);
            let ports = ports(&f.port);
            prop_assert_eq!(Some(parsed.config.get_ports()), ports.as_deref());
            prop_assert_eq!(parsed.config.get_user(), Some(f.user.as_str()));
            // A URL's empty path sets no database; `dbname=''` sets an empty one.
            prop_assert_eq!(parsed.config.get_dbname().unwrap_or(""), f.dbname.as_str());
            prop_assert_eq!(parsed.config.get_password(), Some(f.password.as_bytes()));
            let mode = f.sslmode.as_deref().map(|m| m.parse::<SslMode>().unwrap());
            prop_assert_eq!(parsed.sslmode, mode);
        }
        Err(e) => {
            let message = e.to_string();
            prop_assert!(!leaks(&message), "{dsn:?}: {message}");
            prop_assert!(!leaks(&format!("{e:?}")), "{dsn:?}: {e:?}");
            if exact {
                let named = ["host", "port", "sslmode"]
                    .iter()
                    .any(|field| message.contains(field));
                prop_assert!(named, "{dsn:?}: {message}");
            }
        }
    }
    Ok(())
}

/// Fuzz budget of this module: 4 properties x 512 cases = 2,048 DSNs per test run (the
/// three older properties below add 3 x 512).
const UNICODE_CASES: u32 = 512;

proptest! {
    #![proptest_config(budget(UNICODE_CASES))]

    /// Percent-encoded URL over arbitrary Unicode: exact round trip, or a refusal naming
    /// the field.
    #[test]
    fn unicode_url_round_trips_or_names_the_field((dsn, f, encoded) in unicode_url()) {
        check_unicode(&dsn, &f, encoded && !f.host.starts_with('/'))?;
    }

    /// Quoted `key=value` over arbitrary Unicode: exact round trip, or a refusal naming
    /// the field.
    #[test]
    fn unicode_keyword_round_trips_or_names_the_field((dsn, f, quoted) in unicode_keyword()) {
        let exact = quoted && !f.host.starts_with('/') && !f.host.contains(',');
        check_unicode(&dsn, &f, exact)?;
    }

    /// Raw (unencoded) URL text: never a panic, never a piece of the password shown.
    #[test]
    fn raw_unicode_url_never_panics_or_leaks((dsn, f, _) in unicode_url().prop_filter("raw", |(_, _, e)| !e)) {
        check_unicode(&dsn, &f, false)?;
    }

    /// Raw (unquoted) `key=value` text: never a panic, never a piece of the password shown.
    #[test]
    fn raw_unicode_keyword_never_panics_or_leaks((dsn, f, _) in unicode_keyword().prop_filter("raw", |(_, _, q)| !q)) {
        check_unicode(&dsn, &f, false)?;
    }
}

proptest! {
    #![proptest_config(budget(512))]

    #[test]
    fn arbitrary_text_never_panics(dsn in ".{0,80}") {
        if let Err(e) = parse(&dsn) {
            let _ = e.to_string();
        }
    }

    #[test]
    fn url_dsns_never_show_the_password((dsn, pw) in url()) {
        assert_no_password(&dsn, &pw)?;
    }

    #[test]
    fn keyword_dsns_never_show_the_password((dsn, pw) in keyword()) {
        assert_no_password(&dsn, &pw)?;
    }
}
