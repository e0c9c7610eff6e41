//! Connection strings: parse a target's DSN (URL or `key=value`) into a driver config, take out
//! the TLS settings the driver cannot express, and print it without secrets.
//!
//! tokio-postgres only understands `sslmode=disable|prefer|require`; libpq users write
//! `verify-ca`/`verify-full` and `sslrootcert`. We strip those parameters here and hand them to
//! our own TLS setup, so any DSN a libpq user would write is accepted.

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
}

impl fmt::Debug for ParsedDsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedDsn")
            .field("dsn", &redacted(&self.config))
            .field("sslmode", &self.sslmode)
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
}

/// Parses a URL (`postgres://…`) or `key=value` DSN.
pub fn parse(dsn: &str) -> Result<ParsedDsn, DsnError> {
    let (rest, sslmode, sslrootcert) = if is_url(dsn) {
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

type Stripped = (String, Option<String>, Option<String>);

fn strip_url_params(dsn: &str) -> Stripped {
    // The query starts at the first `?` after the credentials, as the driver reads it: a `?` in
    // a user name or password must not turn the rest into a (quoted) `sslmode`.
    let credentials = dsn.find('@').map_or(0, |at| at + 1);
    let Some(start) = dsn[credentials..].find('?').map(|q| credentials + q) else {
        return (dsn.to_string(), None, None);
    };
    let (base, query) = (&dsn[..start], &dsn[start + 1..]);
    let mut sslmode = None;
    let mut sslrootcert = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => sslmode = Some(percent_decode(v)),
            Some(("sslrootcert", v)) => sslrootcert = Some(percent_decode(v)),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, sslmode, sslrootcert)
}

fn strip_keyword_params(dsn: &str) -> Result<Stripped, DsnError> {
    let mut sslmode = None;
    let mut sslrootcert = None;
    let mut kept = Vec::new();
    for (key, value) in keyword_pairs(dsn)? {
        match key.as_str() {
            "sslmode" => sslmode = Some(value),
            "sslrootcert" => sslrootcert = Some(value),
            _ => kept.push(format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            )),
        }
    }
    Ok((kept.join(" "), sslmode, sslrootcert))
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
mod tests;

/// Hostile input: the parser never panics, and nothing it returns or prints carries the password,
/// whatever else is wrong with the DSN.
#[cfg(test)]
pub(crate) mod fuzz;
