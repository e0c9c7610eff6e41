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
//! **Basic auth** follows exporter-toolkit: bcrypt hashes only. bcrypt runs one at a time on a
//! blocking thread, so a flood of wrong passwords cannot eat both cores; and so that the flood
//! cannot queue ahead of a real scrape either, an unknown user is refused at once (unlike
//! exporter-toolkit, response times tell which user names exist: the names are not the secret)
//! and each source address has at most one check waiting or running, any more are refused.
//! A successful check is cached (HMAC of the password under a per-process random key, compared
//! in constant time; never the password itself), so a scrape every second costs microseconds.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use hyper::header::{HeaderName, HeaderValue};
use ring::hmac;
use serde::Deserialize;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::config::locate::{line_of, Step, Step::Key};
use crate::config::{yaml_error, ConfigError};

/// The response headers exporter-toolkit lets a web config set.
const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_ca: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// A checked web configuration, ready to serve with.
pub struct WebConfig {
    /// `None`: plain HTTP.
    pub tls: Option<TlsAcceptor>,
    /// Extra response headers from `http_server_config.headers`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Things worth a log line (basic auth over plain HTTP).
    pub warnings: Vec<String>,
    users: BTreeMap<String, String>,
    cache: Mutex<HashMap<String, (String, hmac::Tag)>>,
    cache_key: hmac::Key,
    bcrypt_turn: tokio::sync::Mutex<()>,
    /// Source addresses with a bcrypt check waiting or running.
    checking: Mutex<std::collections::HashSet<std::net::IpAddr>>,
    /// The files this configuration was built from, with their bytes (for change detection).
    inputs: Vec<(PathBuf, Vec<u8>)>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
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
    let rng = ring::rand::SystemRandom::new();
    let cache_key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| ConfigError {
        file: path.to_path_buf(),
        line: None,
        field: String::new(),
        reason: "no randomness for the auth cache key".into(),
    })?;
    Ok(WebConfig {
        tls,
        headers,
        warnings,
        users,
        cache: Mutex::new(HashMap::new()),
        cache_key,
        bcrypt_turn: tokio::sync::Mutex::new(()),
        checking: Mutex::new(Default::default()),
        inputs,
    })
}

/// What a request's credentials amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// 401 with `WWW-Authenticate: Basic`.
    Denied,
}

impl WebConfig {
    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks an `Authorization` header from `source` against `basic_auth_users`.
    pub async fn authorize(
        &self,
        header: Option<&HeaderValue>,
        source: std::net::IpAddr,
    ) -> Access {
        if self.users.is_empty() {
            return Access::Allowed;
        }
        let Some((user, password)) = header.and_then(basic_credentials) else {
            return Access::Denied;
        };
        // Unknown users cost nothing, so they cannot queue ahead of a real scrape.
        let Some(hash) = self.users.get(&user).cloned() else {
            return Access::Denied;
        };
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((cached_hash, tag)) = cache.get(&user) {
                // hmac::verify compares in constant time.
                if *cached_hash == hash
                    && hmac::verify(&self.cache_key, password.as_bytes(), tag.as_ref()).is_ok()
                {
                    return Access::Allowed;
                }
            }
        }
        // One check per source at a time: a flood from one address waits behind itself only.
        if !self
            .checking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(source)
        {
            return Access::Denied;
        }
        let _done = SourceDone(&self.checking, source);
        let verified = {
            let _turn = self.bcrypt_turn.lock().await;
            let password = password.clone();
            let hash = hash.clone();
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false)
        };
        if !verified {
            return Access::Denied;
        }
        let tag = hmac::sign(&self.cache_key, password.as_bytes());
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user, (hash, tag));
        Access::Allowed
    }
}

/// Frees a source's check slot when its check ends (or its request is dropped).
struct SourceDone<'a>(
    &'a Mutex<std::collections::HashSet<std::net::IpAddr>>,
    std::net::IpAddr,
);

impl Drop for SourceDone<'_> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

/// `Basic base64(user:password)` → (user, password).
fn basic_credentials(header: &HeaderValue) -> Option<(String, String)> {
    let value = header.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn error(&self, at: &[Step], reason: impl Into<String>) -> ConfigError {
        let line = (1..=at.len())
            .rev()
            .find_map(|n| line_of(self.text, &at[..n]));
        let field = at
            .iter()
            .filter_map(|s| match s {
                Key(k) => Some(*k),
                Step::Index(_) => None,
            })
            .collect::<Vec<_>>()
            .join(".");
        ConfigError {
            file: self.path.to_path_buf(),
            line,
            field,
            reason: reason.into(),
        }
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
        at: &[Step],
        file: &str,
        inputs: &mut Vec<(PathBuf, Vec<u8>)>,
    ) -> Result<Vec<u8>, ConfigError> {
        let path = crate::config::relative_to(self.path, file);
        let bytes = crate::config::read_file(&path, crate::config::MAX_FILE_BYTES)
            .map_err(|e| self.error(at, format!("cannot read {}: {e}", path.display())))?;
        inputs.push((path, bytes.clone()));
        Ok(bytes)
    }

    fn tls(
        &self,
        raw: RawTls,
        inputs: &mut Vec<(PathBuf, Vec<u8>)>,
    ) -> Result<Option<TlsAcceptor>, ConfigError> {
        let at = |field: &'static str| [Key("tls_server_config"), Key(field)];
        let refuse = |field: &'static str, why: &str| Err(self.error(&at(field), why.to_string()));
        if raw.cert.is_some() || raw.key.is_some() || raw.client_ca.is_some() {
            let field = if raw.cert.is_some() {
                "cert"
            } else if raw.key.is_some() {
                "key"
            } else {
                "client_ca"
            };
            return refuse(
                field,
                "inline certificates and keys are not supported; use cert_file, key_file, client_ca_file",
            );
        }
        if raw.cipher_suites.as_ref().is_some_and(|v| !v.is_empty()) {
            return refuse(
                "cipher_suites",
                "not supported: rustls offers only modern AEAD suites; remove the field",
            );
        }
        if raw
            .curve_preferences
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        {
            return refuse(
                "curve_preferences",
                "not supported: rustls picks the key exchange groups; remove the field",
            );
        }
        if raw
            .client_allowed_sans
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        {
            return refuse(
                "client_allowed_sans",
                "not supported; restrict clients with client_ca_file instead",
            );
        }
        let (cert_file, key_file) = match (&raw.cert_file, &raw.key_file) {
            (None, None) => {
                // exporter-toolkit: a tls_server_config without cert and key serves plain HTTP,
                // but then nothing else in it may be set.
                if raw.client_ca_file.is_some() || raw.client_auth_type.is_some() {
                    return refuse(
                        "cert_file",
                        "client certificates need cert_file and key_file",
                    );
                }
                return Ok(None);
            }
            (Some(_), None) => return refuse("key_file", "missing: cert_file needs key_file"),
            (None, Some(_)) => return refuse("cert_file", "missing: key_file needs cert_file"),
            (Some(c), Some(k)) => (c.clone(), k.clone()),
        };
        let cert_pem = self.read(&at("cert_file"), &cert_file, inputs)?;
        let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error(&at("cert_file"), format!("{cert_file}: not PEM: {e}")))?;
        if certs.is_empty() {
            return refuse("cert_file", &format!("{cert_file} holds no certificate"));
        }
        let key_pem = self.read(&at("key_file"), &key_file, inputs)?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .ok()
            .flatten()
            .ok_or_else(|| {
                self.error(
                    &at("key_file"),
                    format!("{key_file} holds no PEM private key"),
                )
            })?;

        let version =
            |field: &'static str, value: &Option<String>, default: &'static str| match value
                .as_deref()
                .unwrap_or(default)
            {
                "TLS12" => Ok(12),
                "TLS13" => Ok(13),
                "TLS10" | "TLS11" => Err(self.error(
                    &at(field),
                    "TLS 1.0 and 1.1 are not supported (TLS12 or TLS13)",
                )),
                other => Err(self.error(
                    &at(field),
                    format!("`{other}` is not a TLS version (TLS12 or TLS13)"),
                )),
            };
        let min = version("min_version", &raw.min_version, "TLS12")?;
        let max = version("max_version", &raw.max_version, "TLS13")?;
        if min > max {
            return refuse("min_version", "is above max_version");
        }
        let versions: Vec<&'static rustls::SupportedProtocolVersion> =
            [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
                .into_iter()
                .filter(|(v, _)| (min..=max).contains(v))
                .map(|(_, p)| p)
                .collect();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| self.error(&at("min_version"), e.to_string()))?;
        let auth_type = raw.client_auth_type.as_deref().unwrap_or("NoClientCert");
        let verify = match auth_type {
            "" | "NoClientCert" => None,
            "VerifyClientCertIfGiven" => Some(true),
            "RequireAndVerifyClientCert" => Some(false),
            "RequestClientCert" | "RequireAnyClientCert" => {
                return refuse(
                    "client_auth_type",
                    &format!("{auth_type} accepts certificates without checking them; use VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
                )
            }
            other => {
                return refuse(
                    "client_auth_type",
                    &format!("`{other}` is not one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"),
                )
            }
        };
        let builder = match (verify, &raw.client_ca_file) {
            (None, None) => builder.with_no_client_auth(),
            (None, Some(_)) => {
                return refuse(
                    "client_ca_file",
                    "given without a client_auth_type that verifies (VerifyClientCertIfGiven or RequireAndVerifyClientCert)",
                )
            }
            (Some(_), None) => {
                return refuse(
                    "client_ca_file",
                    &format!("{auth_type} needs client_ca_file"),
                )
            }
            (Some(optional), Some(ca_file)) => {
                let ca_pem = self.read(&at("client_ca_file"), ca_file, inputs)?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_pemfile::certs(&mut ca_pem.as_slice()) {
                    let cert = cert.map_err(|e| {
                        self.error(&at("client_ca_file"), format!("{ca_file}: not PEM: {e}"))
                    })?;
                    roots.add(cert).map_err(|e| {
                        self.error(&at("client_ca_file"), format!("{ca_file}: {e}"))
                    })?;
                }
                if roots.is_empty() {
                    return refuse(
                        "client_ca_file",
                        &format!("{ca_file} holds no certificate"),
                    );
                }
                let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                );
                if optional {
                    verifier = verifier.allow_unauthenticated();
                }
                let verifier = verifier
                    .build()
                    .map_err(|e| self.error(&at("client_ca_file"), e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            self.error(
                &at("key_file"),
                format!("{key_file} does not go with {cert_file}: {e}"),
            )
        })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.ignore_client_order = raw.prefer_server_cipher_suites.unwrap_or(true);
        Ok(Some(TlsAcceptor::from(Arc::new(config))))
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

/// The web configuration in force, read again for each new connection (see the module doc).
pub struct Watcher {
    path: PathBuf,
    current: Mutex<Option<Arc<WebConfig>>>,
    /// The error last logged, so a broken file is logged once, not per connection.
    last_error: Mutex<Option<String>>,
}

impl Watcher {
    /// Loads the file; if it cannot be loaded now (it was checked at start, so only a race),
    /// connections are refused until it can.
    pub fn new(path: &Path) -> Watcher {
        let watcher = Watcher {
            path: path.to_path_buf(),
            current: Mutex::new(None),
            last_error: Mutex::new(None),
        };
        if let Some(config) = watcher.current() {
            for warning in &config.warnings {
                tracing::warn!("{warning}");
            }
        }
        watcher
    }

    /// The configuration to serve a new connection with: the last one if no input file changed,
    /// a fresh one if they did and it is valid, else the last valid one.
    pub fn current(&self) -> Option<Arc<WebConfig>> {
        let previous = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(previous) = &previous {
            let unchanged = previous.inputs.iter().all(|(path, bytes)| {
                crate::config::read_file(path, crate::config::MAX_FILE_BYTES)
                    .is_ok_and(|now| now == *bytes)
            });
            if unchanged {
                return Some(previous.clone());
            }
        }
        match load(&self.path) {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                if previous.is_some() {
                    tracing::info!(file = %self.path.display(), "web configuration reloaded");
                }
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
                Some(fresh)
            }
            Err(e) => {
                let message = e.to_string();
                let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
                if last.as_deref() != Some(message.as_str()) {
                    tracing::error!(error = %message, "invalid web configuration; keeping the last valid one");
                    *last = Some(message);
                }
                previous
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("idle-drop-web-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn empty_file_means_plain_and_open() {
        let d = dir("empty");
        let config = load(&write(&d, "web.yml", "# nothing\n")).unwrap();
        assert!(config.tls.is_none());
        assert!(!config.requires_auth());
    }

    #[test]
    fn only_bounded_regular_files_and_shallow_yaml_are_read() {
        let d = dir("bounded");
        let e = load(Path::new("/dev/zero")).unwrap_err();
        assert!(e.reason.contains("not a regular file"), "{e}");
        let e = load(&write(
            &d,
            "w.yml",
            "tls_server_config:\n  cert_file: /dev/zero\n  key_file: /dev/zero\n",
        ))
        .unwrap_err();
        assert_eq!(e.field, "tls_server_config.cert_file", "{e}");
        assert!(e.reason.contains("not a regular file"), "{e}");
        let deep = format!("basic_auth_users: {}\n", "[".repeat(100_000));
        let e = load(&write(&d, "deep.yml", &deep)).unwrap_err();
        assert!(e.reason.contains("nested more than 64 levels"), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let d = dir("errors");
        let e = load(&write(&d, "w1.yml", "tls_server_config:\n  cert_fil: x\n")).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().contains("cert_fil"), "{e}");
        let e = load(&write(
            &d,
            "w2.yml",
            "tls_server_config:\n  cert_file: x.crt\n",
        ))
        .unwrap_err();
        assert_eq!(e.field, "tls_server_config.key_file", "{e}");
        let e = load(&write(
            &d,
            "w3.yml",
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
        ))
        .unwrap_err();
        assert_eq!(e.field, "tls_server_config.cert_file", "{e}");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().contains("w3.yml"), "{e}");
        let e = load(&write(
            &d,
            "w4.yml",
            "basic_auth_users:\n  alice: $2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\n  bob: plaintext\n",
        ))
        .unwrap_err();
        assert_eq!(e.field, "basic_auth_users.bob", "{e}");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(!e.to_string().contains("plaintext"), "{e}");
        let e = load(&write(
            &d,
            "w5.yml",
            "http_server_config:\n  headers:\n    Server: x\n",
        ))
        .unwrap_err();
        assert_eq!(e.field, "http_server_config.headers", "{e}");
    }

    fn here() -> std::net::IpAddr {
        std::net::Ipv4Addr::LOCALHOST.into()
    }

    fn basic(user: &str, pw: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_password_flood_does_not_delay_a_real_scrape() {
        // Issue 9: with 100 attackers the first real (uncached) scrape took 5.4 s.
        let d = dir("flood");
        let hash = bcrypt::hash("right", 6).unwrap();
        let config = Arc::new(
            load(&write(
                &d,
                "web.yml",
                &format!("basic_auth_users:\n  prometheus: '{hash}'\n"),
            ))
            .unwrap(),
        );
        // One bcrypt check, for scale.
        let started = std::time::Instant::now();
        let probe = std::net::Ipv4Addr::new(10, 9, 9, 9).into();
        assert_eq!(
            config
                .authorize(Some(&basic("prometheus", "nope")), probe)
                .await,
            Access::Denied
        );
        let one = started.elapsed();

        let attacker: std::net::IpAddr = std::net::Ipv4Addr::new(10, 6, 6, 6).into();
        let mut flood = tokio::task::JoinSet::new();
        for i in 0..100 {
            let config = config.clone();
            let user = if i % 2 == 0 { "prometheus" } else { "mallory" };
            flood.spawn(async move {
                config
                    .authorize(Some(&basic(user, &format!("guess{i}"))), attacker)
                    .await
            });
        }
        tokio::task::yield_now().await;
        let started = std::time::Instant::now();
        let real = config
            .authorize(Some(&basic("prometheus", "right")), here())
            .await;
        let waited = started.elapsed();
        assert_eq!(real, Access::Allowed);
        // At most the attacker's one check ahead of ours, plus ours (slack for a busy machine).
        assert!(
            waited < one * 10,
            "real scrape waited {waited:?}, one check takes {one:?}"
        );
        while let Some(result) = flood.join_next().await {
            assert_eq!(result.unwrap(), Access::Denied);
        }
        assert!(
            config.checking.lock().unwrap().is_empty(),
            "every slot freed"
        );
    }

    #[tokio::test]
    async fn basic_auth_checks_and_caches() {
        let d = dir("auth");
        let hash = bcrypt::hash("right", 4).unwrap();
        let config = load(&write(
            &d,
            "web.yml",
            &format!("basic_auth_users:\n  alice: '{hash}'\n"),
        ))
        .unwrap();
        assert_eq!(config.warnings.len(), 1, "basic auth over plain HTTP warns");
        let header = |user: &str, pw: &str| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
        };
        assert_eq!(config.authorize(None, here()).await, Access::Denied);
        assert_eq!(
            config
                .authorize(Some(&header("alice", "wrong")), here())
                .await,
            Access::Denied
        );
        assert_eq!(
            config
                .authorize(Some(&header("mallory", "right")), here())
                .await,
            Access::Denied
        );
        assert_eq!(
            config
                .authorize(Some(&header("alice", "right")), here())
                .await,
            Access::Allowed
        );
        assert!(config.cache.lock().unwrap().contains_key("alice"));
        // Cached: the right password still passes, a wrong one still fails.
        assert_eq!(
            config
                .authorize(Some(&header("alice", "right")), here())
                .await,
            Access::Allowed
        );
        assert_eq!(
            config
                .authorize(Some(&header("alice", "wrong")), here())
                .await,
            Access::Denied
        );
        let bearer = HeaderValue::from_static("Bearer abc");
        assert_eq!(
            config.authorize(Some(&bearer), here()).await,
            Access::Denied
        );
    }
}

/// Hostile web configuration files and `Authorization` headers: never a panic; a refusal gives
/// the file and a field or line, and never repeats a password hash.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::postgres::dsn::fuzz::{budget, leaks, text, unicode_password};
    use proptest::prelude::*;
    use serde_yaml::{Mapping, Value};

    const KEYS: &[&str] = &[
        "tls_server_config",
        "http_server_config",
        "basic_auth_users",
        "cert_file",
        "key_file",
        "client_auth_type",
        "client_ca_file",
        "min_version",
        "max_version",
        "cipher_suites",
        "headers",
        "http2",
        "Strict-Transport-Security",
        "X-Frame-Options",
        "TLS13",
        "RequireAndVerifyClientCert",
    ];

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            3 => prop::sample::select(KEYS).prop_map(Value::from),
            3 => text(8).prop_map(Value::from),
            1 => any::<bool>().prop_map(Value::from),
            1 => any::<i64>().prop_map(Value::from),
        ]
    }

    fn key() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => prop::sample::select(KEYS).prop_map(Value::from),
            1 => text(6).prop_map(Value::from),
        ]
    }

    /// A YAML document shaped like a web config: known and unknown keys, nested up to 3 deep.
    fn document() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                3 => prop::collection::vec((key(), inner.clone()), 0..4)
                    .prop_map(|kv| Value::Mapping(kv.into_iter().collect::<Mapping>())),
                1 => prop::collection::vec(inner, 0..3).prop_map(Value::Sequence),
            ]
        })
    }

    /// Users whose "hash" is a marked password: never a valid bcrypt hash, never to be repeated.
    fn users() -> impl Strategy<Value = Value> {
        prop::collection::vec((text(6), unicode_password()), 1..3).prop_map(|users| {
            let mut map = Mapping::new();
            map.insert(
                "basic_auth_users".into(),
                Value::Mapping(
                    users
                        .into_iter()
                        .map(|(u, h)| (Value::from(u), Value::from(h)))
                        .collect(),
                ),
            );
            Value::Mapping(map)
        })
    }

    fn check(path: &Path, text: &str) -> Result<(), TestCaseError> {
        std::fs::write(path, text).unwrap();
        if let Err(e) = load(path) {
            let shown = e.to_string();
            prop_assert!(shown.starts_with(&path.display().to_string()), "{shown}");
            prop_assert!(!leaks(&shown), "{text}\n{shown}");
            prop_assert!(!leaks(&format!("{e:?}")), "{text}\n{e:?}");
            if serde_yaml::from_str::<Value>(text).is_ok() {
                prop_assert!(
                    e.line.is_some() || !e.field.is_empty(),
                    "neither line nor field: {shown}\n{text}"
                );
            }
        }
        Ok(())
    }

    /// Fuzz budget: 3 x 256 web configurations and 512 headers per run.
    const WEB_CASES: u32 = 256;

    proptest! {
        #![proptest_config(budget(WEB_CASES))]

        #[test]
        fn any_text_as_a_web_config_never_panics(text in text(60)) {
            let d = std::env::temp_dir().join(format!("idle-drop-web-fuzz-{}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            check(&d.join("text.yml"), &text)?;
        }

        #[test]
        fn web_config_shaped_yaml_names_field_or_line(doc in document()) {
            let d = std::env::temp_dir().join(format!("idle-drop-web-fuzz-{}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            check(&d.join("doc.yml"), &serde_yaml::to_string(&doc).unwrap())?;
        }

        /// An invalid hash is refused naming the user, never repeating the hash.
        #[test]
        fn a_bad_user_hash_is_refused_without_repeating_it(doc in users()) {
            let d = std::env::temp_dir().join(format!("idle-drop-web-fuzz-{}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            let text = serde_yaml::to_string(&doc).unwrap();
            let path = d.join("users.yml");
            check(&path, &text)?;
            let e = load(&path).unwrap_err();
            prop_assert!(e.field.starts_with("basic_auth_users"), "{e}");
        }
    }

    proptest! {
        #![proptest_config(budget(2 * WEB_CASES))]

        /// Any header bytes: no panic; what is read as credentials is exactly what was sent.
        #[test]
        fn any_authorization_header_never_panics(
            raw in prop::collection::vec(any::<u8>(), 0..40),
            user in text(6),
            password in text(6),
        ) {
            if let Ok(header) = HeaderValue::from_bytes(&raw) {
                let _ = basic_credentials(&header);
            }
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{user}:{password}"));
            if let Ok(header) = HeaderValue::from_str(&format!("Basic {encoded}")) {
                let read = basic_credentials(&header);
                if !user.contains(':') {
                    prop_assert_eq!(read, Some((user, password)));
                }
            }
        }
    }
}
