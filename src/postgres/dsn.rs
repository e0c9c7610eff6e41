//! Connection strings: parse a target's DSN (URL or `key=value`) into a driver config, take out
//! the TLS settings the driver cannot express, and print it without secrets.
//!
//! tokio-postgres only understands `sslmode=disable|prefer|require`; libpq users write
//! `verify-ca`/`verify-full` and `sslrootcert`. We strip those parameters here and hand them to
//! our own TLS setup, so any DSN a libpq user would write is accepted.
//!
//! An application's own `DATABASE_URL` also carries its pool's settings (quaint/Prisma's
//! `max_idle_connection_lifetime`, `socket_timeout`, ...) and libpq's keepalive settings for the
//! application's sockets. Those are read into [`AppParams`] and stripped too: the driver refuses
//! quaint's keys, and the libpq ones would describe the probe's sockets, which keep keepalives
//! off (see `Connector::new`).

use std::fmt;
use std::str::FromStr;

use tokio_postgres::config::Host;

/// The TLS policy of a target, in libpq's vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(format!(
                "unknown sslmode `{other}` (expected disable, prefer, require, verify-ca or verify-full)"
            )),
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// A DSN split into what the driver takes and what we handle ourselves.
#[derive(Clone)]
pub struct ParsedDsn {
    pub config: tokio_postgres::Config,
    pub sslmode: Option<SslMode>,
    pub sslrootcert: Option<String>,
    /// The application's pool and socket settings the DSN carried (never given to the driver).
    pub app: AppParams,
}

/// Settings in an application's URL that describe the application's pool and sockets, not the
/// probe's: read so the guard and `discover` can judge them, stripped before connecting.
/// Values are as the libraries read them: whole seconds, except `tcp_user_timeout` (libpq:
/// milliseconds); 0 in quaint's lifetimes and timeouts means "none".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppParams {
    // quaint / Prisma (prisma-engines quaint/src/connector/postgres, parse_query_params).
    pub max_idle_connection_lifetime: Option<u64>,
    pub max_connection_lifetime: Option<u64>,
    pub socket_timeout: Option<u64>,
    pub connection_limit: Option<u64>,
    pub pool_timeout: Option<u64>,
    pub connect_timeout: Option<u64>,
    pub schema: Option<String>,
    pub pgbouncer: Option<bool>,
    pub statement_cache_size: Option<u64>,
    // libpq, for the application's sockets.
    pub keepalives: Option<bool>,
    pub keepalives_idle: Option<u64>,
    pub keepalives_interval: Option<u64>,
    pub keepalives_count: Option<u64>,
    pub tcp_user_timeout_ms: Option<u64>,
}

/// The keys [`AppParams`] takes out of a DSN.
pub const APP_KEYS: &[&str] = &[
    "max_idle_connection_lifetime",
    "max_connection_lifetime",
    "socket_timeout",
    "connection_limit",
    "pool_timeout",
    "connect_timeout",
    "schema",
    "pgbouncer",
    "statement_cache_size",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
];

impl AppParams {
    /// The URL is quaint's (Prisma's): it carries a key only quaint reads. `connect_timeout`
    /// does not count: libpq URLs carry it too, and a libpq application has no idle lifetime
    /// that quaint's default could stand for.
    pub fn is_quaint(&self) -> bool {
        self.max_idle_connection_lifetime.is_some()
            || self.max_connection_lifetime.is_some()
            || self.socket_timeout.is_some()
            || self.connection_limit.is_some()
            || self.pool_timeout.is_some()
            || self.schema.is_some()
            || self.pgbouncer.is_some()
            || self.statement_cache_size.is_some()
    }

    /// Reads one application key; `shown` says whether the value may be quoted in an error.
    fn set(&mut self, key: &str, value: &str, shown: bool) -> Result<(), DsnError> {
        let refuse = |what: &str| {
            let value = if shown {
                format!("`{value}` ")
            } else {
                String::new()
            };
            DsnError::AppParam {
                key: key.to_string(),
                reason: format!("{value}is not {what}"),
            }
        };
        let number = |what: &str| value.trim().parse::<u64>().map_err(|_| refuse(what));
        let seconds = || number("a whole number of seconds (like 300)");
        match key {
            "max_idle_connection_lifetime" => self.max_idle_connection_lifetime = Some(seconds()?),
            "max_connection_lifetime" => self.max_connection_lifetime = Some(seconds()?),
            "socket_timeout" => self.socket_timeout = Some(seconds()?),
            "pool_timeout" => self.pool_timeout = Some(seconds()?),
            "connect_timeout" => self.connect_timeout = Some(seconds()?),
            "keepalives_idle" => self.keepalives_idle = Some(seconds()?),
            "keepalives_interval" => self.keepalives_interval = Some(seconds()?),
            "connection_limit" => self.connection_limit = Some(number("a whole number")?),
            "statement_cache_size" => self.statement_cache_size = Some(number("a whole number")?),
            "keepalives_count" => self.keepalives_count = Some(number("a whole number")?),
            "tcp_user_timeout" => {
                self.tcp_user_timeout_ms = Some(number("a whole number of milliseconds")?)
            }
            "schema" => self.schema = Some(value.to_string()),
            // quaint parses it as a Rust bool; libpq's keepalives is 0 or 1.
            "pgbouncer" => {
                self.pgbouncer = Some(match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(refuse("true or false")),
                })
            }
            "keepalives" => {
                self.keepalives = Some(match value.trim() {
                    "1" => true,
                    "0" => false,
                    _ => return Err(refuse("0 or 1")),
                })
            }
            _ => {}
        }
        Ok(())
    }
}

impl fmt::Debug for ParsedDsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedDsn")
            .field("dsn", &redacted(&self.config))
            .field("sslmode", &self.sslmode)
            .field("app", &self.app)
            .finish()
    }
}

/// Why a DSN was refused. Messages name the offending parameter, never the DSN itself (it may
/// carry a password).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DsnError {
    #[error("{0}")]
    Invalid(String),
    #[error("sslmode: {0}")]
    SslMode(String),
    #[error("the DSN names no host")]
    NoHost,
    /// An application setting (`max_idle_connection_lifetime=abc`); the value is quoted only
    /// when it cannot be (part of) the password.
    #[error("{key}: {reason}")]
    AppParam { key: String, reason: String },
}

/// Parses a URL (`postgres://…`) or `key=value` DSN.
pub fn parse(dsn: &str) -> Result<ParsedDsn, DsnError> {
    let stripped = if is_url(dsn) {
        // The driver ends the credentials at the first `@` (even past a `?`): with another one,
        // the rest of a password would become the (shown) host, database or parameter name.
        if dsn.matches('@').count() > 1 {
            return Err(DsnError::Invalid(
                "more than one `@`: write `@` in a user name, password or parameter as %40"
                    .to_string(),
            ));
        }
        strip_url_params(dsn)
    } else {
        strip_keyword_params(dsn)?
    };
    let Stripped {
        rest,
        sslmode,
        sslrootcert,
        app: app_pairs,
        secrets,
    } = stripped;
    let mut app = AppParams::default();
    for (key, value) in &app_pairs {
        // Never quote a value that holds the password or a piece of it.
        let shown = value.chars().count() <= 32
            && !value.chars().any(char::is_control)
            && secrets
                .iter()
                .filter(|s| !s.is_empty())
                .all(|s| !s.contains(value.as_str()) && !value.contains(s.as_str()));
        app.set(key, value, shown)?;
    }
    let sslmode = sslmode
        .map(|m| m.parse::<SslMode>().map_err(DsnError::SslMode))
        .transpose()?;
    let config = tokio_postgres::Config::from_str(&rest).map_err(|e| {
        let detail = std::error::Error::source(&e)
            .map(|s| format!("{e}: {s}"))
            .unwrap_or_else(|| e.to_string());
        DsnError::Invalid(scrub(&detail, dsn))
    })?;
    if config.get_hosts().is_empty() {
        return Err(DsnError::NoHost);
    }
    Ok(ParsedDsn {
        config,
        sslmode,
        sslrootcert,
        app,
    })
}

/// `postgres://user@host:port/db`: enough to tell targets apart, never a password.
pub fn redacted(config: &tokio_postgres::Config) -> String {
    let user = config.get_user().unwrap_or("");
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{name}:{port}"),
                None => name,
            }
        })
        .collect();
    let db = config.get_dbname().unwrap_or("");
    if user.is_empty() {
        format!("postgres://{}/{db}", hosts.join(","))
    } else {
        format!("postgres://{user}@{}/{db}", hosts.join(","))
    }
}

fn is_url(dsn: &str) -> bool {
    dsn.starts_with("postgres://") || dsn.starts_with("postgresql://")
}

/// A DSN without the parameters we handle ourselves, and those parameters.
struct Stripped {
    /// What the driver parses.
    rest: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    /// The application's settings ([`APP_KEYS`]), values decoded.
    app: Vec<(String, String)>,
    /// Every password the DSN spells (as written and decoded): never quoted in an error.
    secrets: Vec<String>,
}

fn strip_url_params(dsn: &str) -> Stripped {
    // The query starts at the first `?` after the credentials, as the driver reads it: a `?` in
    // a user name or password must not turn the rest into a (quoted) `sslmode`.
    let credentials = dsn.find('@').map_or(0, |at| at + 1);
    let mut secrets = Vec::new();
    if credentials > 0 {
        let userinfo = dsn[..credentials - 1]
            .split_once("://")
            .map_or("", |(_, info)| info);
        if let Some((_, password)) = userinfo.split_once(':') {
            secrets.push(password.to_string());
            secrets.push(percent_decode(password));
        }
    }
    let Some(start) = dsn[credentials..].find('?').map(|q| credentials + q) else {
        return Stripped {
            rest: dsn.to_string(),
            sslmode: None,
            sslrootcert: None,
            app: Vec::new(),
            secrets,
        };
    };
    let (base, query) = (&dsn[..start], &dsn[start + 1..]);
    let mut sslmode = None;
    let mut sslrootcert = None;
    let mut app = Vec::new();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => sslmode = Some(percent_decode(v)),
            Some(("sslrootcert", v)) => sslrootcert = Some(percent_decode(v)),
            Some((k, v)) if APP_KEYS.contains(&k) => app.push((k.to_string(), percent_decode(v))),
            Some(("password", v)) => {
                secrets.push(v.to_string());
                secrets.push(percent_decode(v));
                kept.push(pair);
            }
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Stripped {
        rest,
        sslmode,
        sslrootcert,
        app,
        secrets,
    }
}

fn strip_keyword_params(dsn: &str) -> Result<Stripped, DsnError> {
    let mut sslmode = None;
    let mut sslrootcert = None;
    let mut app = Vec::new();
    let mut secrets = Vec::new();
    let mut kept = Vec::new();
    for (key, value) in keyword_pairs(dsn)? {
        match key.as_str() {
            "sslmode" => sslmode = Some(value),
            "sslrootcert" => sslrootcert = Some(value),
            k if APP_KEYS.contains(&k) => app.push((key, value)),
            _ => {
                if key == "password" {
                    secrets.push(value.clone());
                }
                kept.push(format!(
                    "{key}='{}'",
                    value.replace('\\', "\\\\").replace('\'', "\\'")
                ))
            }
        }
    }
    Ok(Stripped {
        rest: kept.join(" "),
        sslmode,
        sslrootcert,
        app,
        secrets,
    })
}

/// Splits `key=value key2='quoted value'` as libpq does (spaces around `=` allowed, `\` escapes
/// inside quotes).
fn keyword_pairs(dsn: &str) -> Result<Vec<(String, String)>, DsnError> {
    let mut pairs = Vec::new();
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(DsnError::Invalid(format!(
                "expected `=` after {}",
                shown_key(&key)
            )));
        }
        let mut spaced = false;
        while chars.next_if(|c| c.is_whitespace()).is_some() {
            spaced = true;
        }
        // `host= password=secret` (an unset template variable) would make libpq take
        // `password=secret` as the host, and the host is shown everywhere: refuse it instead.
        if spaced && chars.peek() != Some(&'\'') {
            let next: String = chars.clone().take_while(|c| !c.is_whitespace()).collect();
            if next.contains('=') {
                return Err(DsnError::Invalid(format!(
                    "{} has an empty value (an unset variable?)",
                    shown_key(&key)
                )));
            }
        }
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => {
                        return Err(DsnError::Invalid(format!(
                            "unterminated quoted value for {}",
                            shown_key(&key)
                        )))
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    // `host=a\ password=secret` would make the password part of the (shown)
                    // host: a value with a space must be quoted.
                    if chars.peek().is_some_and(|c| c.is_whitespace()) {
                        return Err(DsnError::Invalid(format!(
                            "{}: quote a value that holds a space ('a b') instead of escaping it",
                            shown_key(&key)
                        )));
                    }
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// libpq's connection keywords: safe to quote in a message. Anything else in key position may be
/// a misparsed piece of a password (`password=a b`), so it is not repeated.
const KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "sslnegotiation",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
];

fn shown_key(key: &str) -> String {
    if KEYWORDS.contains(&key) {
        format!("`{key}`")
    } else {
        "a key that is not a libpq keyword".to_string()
    }
}

/// `%XX` escapes of a URL query value. Invalid escapes stay as they are and invalid UTF-8 becomes
/// U+FFFD (the crate works on bytes, so an escape next to a multi-byte character cannot split it).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Last line of defence: a driver message that quotes part of the DSN must not carry its password.
fn scrub(message: &str, dsn: &str) -> String {
    let Ok(config) = tokio_postgres::Config::from_str(dsn) else {
        return message.to_string();
    };
    match config.get_password() {
        Some(pw) if !pw.is_empty() => {
            message.replace(String::from_utf8_lossy(pw).as_ref(), "[redacted]")
        }
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
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
        let err =
            parse("postgres://app:hunter2@db/app?max_idle_connection_lifetime=abc").unwrap_err();
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
}

/// Hostile input: the parser never panics, and nothing it returns or prints carries the password,
/// whatever else is wrong with the DSN.
#[cfg(test)]
pub(crate) mod fuzz {
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
    /// `PROPTEST_CASES` variable does not change it) and no failure files written into the tree
    /// (a failure prints its minimal input; it becomes a named regression test).
    pub(crate) fn budget(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

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
}
