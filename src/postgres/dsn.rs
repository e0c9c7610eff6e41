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
        if let Some(part) = bad_escape(dsn) {
            return Err(DsnError::Invalid(format!(
                "{part} holds a `%` not followed by two hex digits: write a `%` as %25"
            )));
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

/// Where a URL holds a `%` that does not start a `%XX` escape, if it does: the user name, the
/// password, the host, the database name or a parameter (named when it is a libpq keyword).
/// libpq refuses such a URL; the driver keeps the `%` as it is, so a password with `%ZZ` was
/// sent with the three characters, not what its writer meant. Never the text itself.
fn bad_escape(url: &str) -> Option<String> {
    let bytes = url.as_bytes();
    let at = (0..bytes.len()).find(|&i| {
        bytes[i] == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    })?;
    let start = url.find("://").map_or(0, |i| i + 3);
    let host_start = url[start..].find('@').map_or(start, |i| start + i + 1);
    if at < host_start {
        let userinfo = &url[start..host_start - 1];
        let password = userinfo.find(':').is_some_and(|colon| start + colon < at);
        return Some(
            if password {
                "the password"
            } else {
                "the user name"
            }
            .to_string(),
        );
    }
    let query = url[host_start..].find('?').map(|i| host_start + i);
    if let Some(query) = query.filter(|q| at > *q) {
        let pair_start = url[..at].rfind(['?', '&']).map_or(query, |i| i + 1);
        let pair = &url[pair_start..];
        let pair = pair.split('&').next().unwrap_or(pair);
        return Some(match pair.split_once('=') {
            Some((key, _)) if pair_start + key.len() > at => "a parameter name".to_string(),
            Some(("password", _)) => "the password".to_string(),
            Some((key, _)) => format!("the value of {}", shown_key(key)),
            None => "a parameter".to_string(),
        });
    }
    let path = url[host_start..].find('/').map(|i| host_start + i);
    Some(
        match path {
            Some(path) if at > path => "the database name",
            _ => "the host",
        }
        .to_string(),
    )
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
mod tests;

/// Hostile input: the parser never panics, and nothing it returns or prints carries the password,
/// whatever else is wrong with the DSN.
#[cfg(test)]
pub(crate) mod fuzz;
