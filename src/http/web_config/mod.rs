//! TLS and basic auth for the exporter's own endpoint, from a web configuration file in the
//! format of Prometheus' exporter-toolkit (`--web.config.file`), so the file already written for
//! node_exporter or postgres_exporter works here unchanged:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # optional
//!   client_ca_file: clients-ca.crt
//!   min_version: TLS12
//! http_server_config:
//!   headers: {Strict-Transport-Security: max-age=31536000}
//! basic_auth_users:
//!   prometheus: $2y$10$...   # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! What is refused rather than silently ignored (a security setting that does nothing is worse
//! than an error): TLS 1.0/1.1, `cipher_suites`, `curve_preferences` (rustls picks safe ones),
//! `client_allowed_sans`, client auth types that do not verify the certificate, and inline
//! `cert`/`key`/`client_ca`. `http_server_config.http2` is accepted and ignored: we serve
//! HTTP/1.1, which every Prometheus negotiates.
//!
//! **When the file is read.** Like exporter-toolkit, for every new connection: the file and the
//! certificate, key and CA files it names are read again, so a rotated certificate (cert-manager,
//! a renewed file) or a changed user list applies without a restart or a signal, and a scrape
//! can never be served with a certificate that is no longer on disk. The bytes are compared with
//! the last ones, so an unchanged set costs a few small reads, not a parse or a TLS setup, and the
//! bcrypt cache survives. A file that turns invalid while running is logged (once per change) and
//! the last valid one stays in force, as with the main configuration's reload; at start an
//! invalid file is refused with exit status 78.
//!
//! **Basic auth** follows exporter-toolkit: bcrypt hashes only. Credentials that passed once
//! are cached (an HMAC of user, password and hash under a per-process random key: the cache
//! holds no secret) and let in at once, ahead of any queue, so a scrape every second costs
//! microseconds and no flood delays a scraper that proved its password. bcrypt runs on blocking
//! threads, bounded in total: as many checks at once as there are cores but one (at least one),
//! a few more waiting, any more refused at once with 503 (`Access::Busy`), so a flood from any
//! number of addresses neither queues without end nor takes every core. An unknown user is
//! refused at once
//! (unlike exporter-toolkit, response times tell which user names exist: the names are not the
//! secret) and each source address has at most one check waiting or running, any more refused.
//!
//! Layout: [`raw`] the file's serde types; `tls.rs` the rustls server configuration;
//! [`auth`] basic auth and its cache; [`watcher`] the configuration in force per connection.

mod auth;
mod raw;
mod tls;
mod watcher;

#[cfg(test)]
mod tests;

pub use auth::Access;
pub use watcher::Watcher;

use std::path::{Path, PathBuf};

use hyper::header::{HeaderName, HeaderValue};
use tokio_rustls::TlsAcceptor;

use crate::config::locate::{line_of, Step, Step::Key};
use crate::config::{yaml_error, ConfigError};
use auth::BasicAuth;
use raw::{RawHttp, RawWebConfig};

/// The response headers exporter-toolkit lets a web config set.
const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// A checked web configuration, ready to serve with.
pub struct WebConfig {
    /// `None`: plain HTTP.
    pub tls: Option<TlsAcceptor>,
    /// Extra response headers from `http_server_config.headers`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Things worth a log line (basic auth over plain HTTP).
    pub warnings: Vec<String>,
    auth: BasicAuth,
    /// The files this configuration was built from, with their bytes (for change detection).
    inputs: Vec<(PathBuf, Vec<u8>)>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.auth.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Reads and checks a web configuration file (at start, for `--check-config`, and on change).
pub fn load(path: &Path) -> Result<WebConfig, ConfigError> {
    let bytes = crate::config::read_file(path, crate::config::MAX_FILE_BYTES)
        .map_err(|e| ConfigError::unreadable(path, e))?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    crate::config::check_nesting(path, &text)?;
    let raw: RawWebConfig = if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        // exporter-toolkit treats an empty file as "no TLS, no auth".
        RawWebConfig::default()
    } else {
        serde_yaml::from_str(&text).map_err(|e| yaml_error(path, e))?
    };
    let checker = Checker { path, text: &text };
    let mut inputs = vec![(path.to_path_buf(), bytes)];
    let tls = match raw.tls_server_config {
        Some(tls) => checker.tls(tls, &mut inputs)?,
        None => None,
    };
    let headers = checker.headers(raw.http_server_config.unwrap_or_default())?;
    let users = raw.basic_auth_users.unwrap_or_default();
    for (user, hash) in &users {
        if user.is_empty() || user.contains(':') {
            return Err(checker.user_error(user, "a user name must be non-empty without `:`"));
        }
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(checker.user_error(
                user,
                "not a bcrypt hash (like $2y$10$...; make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)",
            ));
        }
    }
    let mut warnings = Vec::new();
    if !users.is_empty() && tls.is_none() {
        warnings.push(format!(
            "{}: basic_auth_users without tls_server_config: passwords cross the network in clear text",
            path.display()
        ));
    }
    let auth = BasicAuth::new(users).ok_or_else(|| ConfigError {
        file: path.to_path_buf(),
        line: None,
        field: String::new(),
        reason: "no randomness for the auth cache key".into(),
    })?;
    Ok(WebConfig {
        tls,
        headers,
        warnings,
        auth,
        inputs,
    })
}

impl WebConfig {
    pub fn requires_auth(&self) -> bool {
        !self.auth.users.is_empty()
    }

    /// Checks an `Authorization` header from `source` against `basic_auth_users`.
    pub async fn authorize(
        &self,
        header: Option<&HeaderValue>,
        source: std::net::IpAddr,
    ) -> Access {
        self.auth.authorize(header, source).await
    }
}

struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn error(&self, at: &[Step<'_>], reason: impl Into<String>) -> ConfigError {
        ConfigError::at(self.path, self.text, at, reason)
    }

    fn user_error(&self, user: &str, reason: &str) -> ConfigError {
        let section = line_of(self.text, &[Key("basic_auth_users")]);
        let line = section.and_then(|start| {
            self.text
                .lines()
                .enumerate()
                .skip(start)
                .find(|(_, l)| {
                    let l = l.trim_start();
                    l.starts_with(&format!("{user}:"))
                        || l.starts_with(&format!("\"{user}\":"))
                        || l.starts_with(&format!("'{user}':"))
                })
                .map(|(i, _)| i + 1)
        });
        ConfigError {
            file: self.path.to_path_buf(),
            line: line.or(section),
            field: format!("basic_auth_users.{user}"),
            reason: reason.into(),
        }
    }

    fn read(
        &self,
        at: &[Step<'_>],
        file: &str,
        inputs: &mut Vec<(PathBuf, Vec<u8>)>,
    ) -> Result<Vec<u8>, ConfigError> {
        let path = crate::config::relative_to(self.path, file);
        let bytes = crate::config::read_file(&path, crate::config::MAX_FILE_BYTES)
            .map_err(|e| self.error(at, format!("cannot read {}: {e}", path.display())))?;
        inputs.push((path, bytes.clone()));
        Ok(bytes)
    }

    fn headers(&self, raw: RawHttp) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
        let _ = raw.http2; // HTTP/1.1 only; see the module doc.
        let mut out = Vec::new();
        for (name, value) in raw.headers.unwrap_or_default() {
            let at = [Key("http_server_config"), Key("headers")];
            let Some(allowed) = ALLOWED_HEADERS
                .iter()
                .find(|a| a.eq_ignore_ascii_case(&name))
            else {
                return Err(self.error(
                    &at,
                    format!(
                        "`{name}` cannot be set (allowed: {})",
                        ALLOWED_HEADERS.join(", ")
                    ),
                ));
            };
            let value = HeaderValue::from_str(&value)
                .map_err(|_| self.error(&at, format!("{name}: not a valid header value")))?;
            let name = HeaderName::from_bytes(allowed.to_ascii_lowercase().as_bytes())
                .expect("a listed header name");
            out.push((name, value));
        }
        Ok(out)
    }
}
