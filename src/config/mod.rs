//! Configuration: load `config.yaml`, check every field, and produce the typed settings the
//! daemon runs on.
//!
//! Two steps, so that a mistake is reported as `FILE:LINE: FIELD: reason` before anything starts
//! (and, on reload, while the old configuration keeps running):
//! 1. [`raw`] deserializes the text with unknown fields rejected; serde reports the position.
//! 2. [`validate`] turns raw values into checked types ([`Config`], [`TargetConfig`]), resolving
//!    durations, percentages, passwords and TLS files; [`locate`] finds the line of a field.
//!
//! Passwords live only in [`Secret`]s inside the driver config; nothing here prints them.

mod change;
pub(crate) mod locate;
mod raw;

pub use change::TargetChange;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use locate::Step::{self, Index, Key};

use crate::discovery::PolicyKind;
use crate::postgres::dsn::{self, SslMode};
use crate::secret::Secret;

/// The port we listen on by default (Prometheus' allocation list is full for 9100-9999;
/// postgres_exporter has 9187).
pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:10187";
/// No target may hold more sessions than this on its server, whatever the config says: the
/// exporter must never become the reason a database runs out of connections.
pub const MAX_CONNECTIONS_HARD_CAP: usize = 64;
/// A ladder rung becomes a label value; this bounds the label's cardinality.
pub const MAX_LADDER_RUNGS: usize = 16;
/// The longest duration accepted anywhere (config, `discover` and `simulate` flags): 30 days.
/// Longer than any idle timeout a box keeps (Linux conntrack's default for an established flow
/// is 5 days), and short enough that adding it, or a few multiples of it, to any clock reading
/// and converting it to milliseconds or seconds can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Parses a humantime duration (`500ms`, `90s`, `1h30m`) above zero and at most
/// [`MAX_DURATION`]. The message says what was wrong, not where (callers add that).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration like 90s, 5m or 1h30m ({e})"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".to_string());
    }
    if duration > MAX_DURATION {
        return Err(format!(
            "`{text}` is longer than {}, the longest duration accepted",
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(duration)
}

/// A fully checked configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub listen_address: SocketAddr,
    pub log: LogConfig,
    pub targets: Vec<TargetConfig>,
    /// Things worth a log line that do not stop loading (e.g. a password written in a DSN).
    pub warnings: Vec<String>,
    /// The exporter-toolkit web configuration (TLS, basic auth) for our own endpoint. Not part
    /// of the YAML file: `main` sets it from `--web.config.file`; see [`crate::http::web_config`].
    pub web_config_file: Option<PathBuf>,
    /// The directory holding the state file (each target's last measurement). Not part of the
    /// YAML file: `main` sets it from `--storage.path`; see [`crate::storage`].
    pub storage_path: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info` or `idle_drop_exporter=debug`.
    pub level: String,
}

/// Everything one target's probe engine needs.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetConfig {
    pub name: String,
    /// Driver settings with the password filled in (never printed: see [`Secret`]).
    pub driver: tokio_postgres::Config,
    /// The DSN without its password, for pages and logs.
    pub display_dsn: String,
    pub sslmode: SslMode,
    /// PEM bundle of trusted CAs, read at load time so a broken file fails the load, not a probe.
    pub ca_pem: Option<CaBundle>,
    pub connect_timeout: Duration,
    pub probe_query: String,
    pub query_timeout: Duration,
    pub tcp_user_timeout: Duration,
    pub max_connections: usize,
    pub idle_min: Duration,
    pub idle_max: Duration,
    /// Half-width of the bracket relative to its midpoint at which discovery stops (0.05 = ±5%).
    pub precision: f64,
    pub watch_ladder: Vec<Duration>,
    pub app_max_idle_lifetime: Option<Duration>,
    pub recommendation_margin: f64,
    pub recommended_socket_timeout: Duration,
    pub keepalive_probe: Option<KeepaliveProbe>,
    pub reap_ghosts: bool,
    /// How discovery picks idle times. `Adaptive` in production; the baselines exist so
    /// `docs/benchmarks.md` can compare policies in the real engine.
    pub discovery_policy: PolicyKind,
}

/// The CA certificates of a target, with where they came from (for error messages).
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle {
    pub path: PathBuf,
    pub pem: Vec<u8>,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaBundle({})", self.path.display())
    }
}

/// Settings of the keepalive-enabled probe that tells a packet-counting box from a proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepaliveProbe {
    pub interval: Duration,
}

/// A refused configuration: which file, where, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl ConfigError {
    /// The file itself could not be read.
    pub fn unreadable(path: &Path, error: std::io::Error) -> ConfigError {
        ConfigError {
            file: path.to_path_buf(),
            line: None,
            field: String::new(),
            reason: format!("cannot read the file: {error}"),
        }
    }
}

/// The largest configuration file, web configuration file, CA bundle, certificate or key read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// The largest password file read.
pub const MAX_PASSWORD_FILE_BYTES: u64 = 4096;
/// The deepest nesting of YAML flow collections (`[`, `{`) accepted. The YAML parser's time
/// grows steeply with depth (100,000 `[` took 34 s to refuse); our files nest 4 levels.
pub const MAX_YAML_NESTING: usize = 64;

/// Reads a file named by the operator: a regular file only (a FIFO would block, a device such as
/// `/dev/zero` never ends), at most `limit` bytes. Checked before opening and again on the open
/// file. Errors say what was wrong, never what the file holds.
pub fn read_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let check = |meta: std::fs::Metadata| {
        if !meta.is_file() {
            return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
        }
        if meta.len() > limit {
            return Err(too_large(limit));
        }
        Ok(())
    };
    check(std::fs::metadata(path)?)?;
    let file = std::fs::File::open(path)?;
    check(file.metadata()?)?;
    let mut bytes = Vec::new();
    // The file may grow between the check and the read.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

fn too_large(limit: u64) -> std::io::Error {
    let size = if limit >= 1024 * 1024 {
        format!("{} MiB", limit / (1024 * 1024))
    } else {
        format!("{} KiB", limit / 1024)
    };
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("larger than {size}"),
    )
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let bytes = read_file(path, MAX_FILE_BYTES).map_err(|e| ConfigError::unreadable(path, e))?;
    let text = String::from_utf8(bytes).map_err(|_| ConfigError {
        file: path.to_path_buf(),
        line: None,
        field: String::new(),
        reason: "the file is not UTF-8 text".to_string(),
    })?;
    parse(path, &text)
}

/// Checks configuration text; `path` is only used in messages and to resolve relative files.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    check_nesting(path, text)?;
    let raw: raw::RawConfig = serde_yaml::from_str(text).map_err(|e| yaml_error(path, e))?;
    Validator { path, text }.config(raw)
}

/// Refuses YAML nested deeper than [`MAX_YAML_NESTING`] flow collections, before the parser
/// sees it. Counts every `[`/`{` against every `]`/`}`, even inside quotes or comments: an
/// overestimate, which only matters for text with 64 unmatched brackets.
pub(crate) fn check_nesting(path: &Path, text: &str) -> Result<(), ConfigError> {
    let mut depth = 0usize;
    for (number, line) in text.lines().enumerate() {
        for c in line.chars() {
            match c {
                '[' | '{' => depth += 1,
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth > MAX_YAML_NESTING {
                return Err(ConfigError {
                    file: path.to_path_buf(),
                    line: Some(number + 1),
                    field: String::new(),
                    reason: format!(
                        "nested more than {MAX_YAML_NESTING} levels deep (`[` and `{{`); refused before parsing"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// A serde_yaml error as a [`ConfigError`]: its line, and the field path serde_yaml puts in
/// front of the message (`targets[0]: unknown field ...`) as the field.
pub(crate) fn yaml_error(path: &Path, e: serde_yaml::Error) -> ConfigError {
    let line = e.location().map(|l| l.line());
    let mut reason = e.to_string();
    if let Some(pos) = reason.rfind(" at line ") {
        reason.truncate(pos);
    }
    let (field, reason) = match reason.split_once(": ") {
        Some((field, rest)) if !field.contains(' ') => (field.to_string(), rest.to_string()),
        _ => (String::new(), reason),
    };
    ConfigError {
        file: path.to_path_buf(),
        line,
        field,
        reason,
    }
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
}

type Checked<T> = Result<T, ConfigError>;

impl Validator<'_> {
    fn error(&self, at: &[Step], reason: impl Into<String>) -> ConfigError {
        // Point at the field, or at the closest enclosing one that is written in the file.
        let line = (1..=at.len())
            .rev()
            .find_map(|n| locate::line_of(self.text, &at[..n]));
        ConfigError {
            file: self.path.to_path_buf(),
            line,
            field: field_name(at),
            reason: reason.into(),
        }
    }

    fn config(&self, raw: raw::RawConfig) -> Checked<Config> {
        let listen = raw
            .listen_address
            .as_deref()
            .unwrap_or(DEFAULT_LISTEN_ADDRESS);
        let listen_address = listen.parse().map_err(|_| {
            self.error(
                &[Key("listen_address")],
                format!("`{listen}` is not an address like 0.0.0.0:10187"),
            )
        })?;
        let log = self.log(raw.log)?;
        if raw.targets.is_empty() {
            return Err(self.error(&[Key("targets")], "at least one target is required"));
        }
        let mut names = HashSet::new();
        let mut targets = Vec::new();
        let mut warnings = Vec::new();
        for (i, target) in raw.targets.into_iter().enumerate() {
            let target = self.target(i, target, &mut warnings)?;
            if !names.insert(target.name.clone()) {
                return Err(self.error(
                    &[Key("targets"), Index(i), Key("name")],
                    format!(
                        "`{}` is used by another target; names must be unique",
                        target.name
                    ),
                ));
            }
            targets.push(target);
        }
        Ok(Config {
            listen_address,
            log,
            targets,
            warnings,
            web_config_file: None,
            storage_path: None,
        })
    }

    fn log(&self, raw: Option<raw::RawLog>) -> Checked<LogConfig> {
        let raw = raw.unwrap_or(raw::RawLog {
            format: None,
            level: None,
        });
        let format = match raw.format.as_deref() {
            None | Some("text") | Some("logfmt") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(self.error(
                    &[Key("log"), Key("format")],
                    format!("`{other}` is not a log format (text or json)"),
                ))
            }
        };
        let level = raw.level.unwrap_or_else(|| "info".to_string());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            return Err(self.error(
                &[Key("log"), Key("level")],
                format!("`{level}` is not a level (error, warn, info, debug, trace) or filter"),
            ));
        }
        Ok(LogConfig { format, level })
    }

    fn target(
        &self,
        i: usize,
        raw: raw::RawTarget,
        warnings: &mut Vec<String>,
    ) -> Checked<TargetConfig> {
        let at = |field: &'static str| [Key("targets"), Index(i), Key(field)];
        let name = raw
            .name
            .clone()
            .ok_or_else(|| self.error(&[Key("targets"), Index(i)], "`name` is required"))?;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(self.error(
                &at("name"),
                format!("`{name}`: use 1-64 characters from A-Z a-z 0-9 - _ ."),
            ));
        }
        let dsn_text = raw
            .dsn
            .as_deref()
            .ok_or_else(|| self.error(&[Key("targets"), Index(i)], "`dsn` is required"))?;
        let parsed = dsn::parse(dsn_text).map_err(|e| self.error(&at("dsn"), e.to_string()))?;
        let mut driver = parsed.config.clone();
        let display_dsn = dsn::redacted(&driver);

        let password = self.password(i, &raw, driver.get_password().is_some())?;
        if driver.get_password().is_some() {
            warnings.push(format!(
                "target {name}: the DSN carries a password; prefer password_file or password_env"
            ));
        }
        if let Some(password) = password {
            driver.password(password.expose());
        }

        let sslmode = match (&raw.sslmode, parsed.sslmode) {
            (Some(text), _) => text
                .parse::<SslMode>()
                .map_err(|e| self.error(&at("sslmode"), e))?,
            (None, Some(from_dsn)) => from_dsn,
            (None, None) => SslMode::Prefer,
        };
        let ca_path = raw.ca_file.clone().or(parsed.sslrootcert.clone());
        let ca_pem = match ca_path {
            Some(file) => Some(self.ca_bundle(&at("ca_file"), &file)?),
            None => None,
        };
        if matches!(sslmode, SslMode::VerifyCa | SslMode::VerifyFull) && ca_pem.is_none() {
            return Err(self.error(
                &at("ca_file"),
                format!("sslmode {sslmode} needs ca_file (the CA bundle that signed the server's certificate)"),
            ));
        }

        let connect_timeout = self.duration(&at("connect_timeout"), &raw.connect_timeout, "5s")?;
        let query_timeout = self.duration(&at("query_timeout"), &raw.query_timeout, "10s")?;
        let tcp_user_timeout = match &raw.tcp_user_timeout {
            Some(_) => self.duration(&at("tcp_user_timeout"), &raw.tcp_user_timeout, "")?,
            None => query_timeout,
        };
        let probe_query = raw.probe_query.clone().unwrap_or_else(|| "SELECT 1".into());
        if probe_query.trim().is_empty() {
            return Err(self.error(&at("probe_query"), "must not be empty"));
        }

        let max_connections = raw.max_connections.unwrap_or(8);
        if max_connections < 2 || max_connections as usize > MAX_CONNECTIONS_HARD_CAP {
            return Err(self.error(
                &at("max_connections"),
                format!(
                    "{max_connections} is outside 2..={MAX_CONNECTIONS_HARD_CAP} (one session is the control connection, the rest probe; the cap protects the server)"
                ),
            ));
        }

        let range_at = |f: &'static str| [Key("targets"), Index(i), Key("idle_range"), Key(f)];
        let (raw_min, raw_max) = match &raw.idle_range {
            Some(r) => (r.min.clone(), r.max.clone()),
            None => (None, None),
        };
        let idle_min = self.duration(&range_at("min"), &raw_min, "1s")?;
        let idle_max = self.duration(&range_at("max"), &raw_max, "1h")?;
        if idle_min >= idle_max {
            return Err(self.error(
                &range_at("min"),
                format!(
                    "min {} is not below max {}: the range is inverted",
                    humantime::format_duration(idle_min),
                    humantime::format_duration(idle_max)
                ),
            ));
        }

        let precision = self.fraction(&at("precision"), &raw.precision, 0.05)?;
        if !(precision > 0.0 && precision <= 0.5) {
            return Err(self.error(&at("precision"), "must be above 0% and at most 50%"));
        }
        let margin = self.fraction(
            &at("recommendation_margin"),
            &raw.recommendation_margin,
            0.2,
        )?;
        if !(0.0..=0.9).contains(&margin) {
            return Err(self.error(&at("recommendation_margin"), "must be between 0% and 90%"));
        }

        let watch_ladder = self.ladder(i, &raw.watch_ladder)?;
        let app_max_idle_lifetime = match &raw.app_max_idle_lifetime {
            Some(_) => {
                Some(self.duration(&at("app_max_idle_lifetime"), &raw.app_max_idle_lifetime, "")?)
            }
            None => None,
        };
        let recommended_socket_timeout = self.duration(
            &at("recommended_socket_timeout"),
            &raw.recommended_socket_timeout,
            "10s",
        )?;
        let keepalive_probe = match &raw.keepalive_probe {
            Some(k) if k.enabled.unwrap_or(true) => Some(KeepaliveProbe {
                interval: self.duration(
                    &[
                        Key("targets"),
                        Index(i),
                        Key("keepalive_probe"),
                        Key("interval"),
                    ],
                    &k.interval,
                    "30s",
                )?,
            }),
            _ => None,
        };
        let discovery_policy = match raw.discovery_policy.as_deref().map(str::trim) {
            None | Some("adaptive") => PolicyKind::Adaptive,
            Some("bisection") => PolicyKind::Bisection,
            Some("fixed_ladder") => PolicyKind::FixedLadder,
            Some(other) => {
                return Err(self.error(
                    &at("discovery_policy"),
                    format!(
                        "`{other}` is not a discovery policy (adaptive, bisection or fixed_ladder; the last two are baselines for benchmarking)"
                    ),
                ))
            }
        };

        Ok(TargetConfig {
            name,
            driver,
            display_dsn,
            sslmode,
            ca_pem,
            connect_timeout,
            probe_query,
            query_timeout,
            tcp_user_timeout,
            max_connections: max_connections as usize,
            idle_min,
            idle_max,
            precision,
            watch_ladder,
            app_max_idle_lifetime,
            recommendation_margin: margin,
            recommended_socket_timeout,
            keepalive_probe,
            reap_ghosts: raw.reap_ghosts.unwrap_or(true),
            discovery_policy,
        })
    }

    fn password(
        &self,
        i: usize,
        raw: &raw::RawTarget,
        dsn_has_password: bool,
    ) -> Checked<Option<Secret>> {
        let at = |field: &'static str| [Key("targets"), Index(i), Key(field)];
        let sources = [
            raw.password_file.is_some(),
            raw.password_env.is_some(),
            dsn_has_password,
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            let field = if raw.password_file.is_some() {
                "password_file"
            } else {
                "password_env"
            };
            return Err(self.error(
                &at(field),
                "give the password in one place only: password_file, password_env or the DSN",
            ));
        }
        if let Some(file) = &raw.password_file {
            let path = self.relative(file);
            let bytes = read_file(&path, MAX_PASSWORD_FILE_BYTES).map_err(|e| {
                self.error(
                    &at("password_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            // Never quote the bytes: they are (or contain) the password.
            let text = String::from_utf8(bytes).map_err(|_| {
                self.error(
                    &at("password_file"),
                    format!("{} is not UTF-8 text", path.display()),
                )
            })?;
            let password = text.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                return Err(
                    self.error(&at("password_file"), format!("{} is empty", path.display()))
                );
            }
            return Ok(Some(Secret::new(password)));
        }
        if let Some(var) = &raw.password_env {
            return match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Some(Secret::new(v))),
                _ => Err(self.error(
                    &at("password_env"),
                    format!("environment variable {var} is not set or empty"),
                )),
            };
        }
        Ok(None)
    }

    fn ca_bundle(&self, at: &[Step], file: &str) -> Checked<CaBundle> {
        let path = self.relative(file);
        let pem = read_file(&path, MAX_FILE_BYTES)
            .map_err(|e| self.error(at, format!("cannot read {}: {e}", path.display())))?;
        let certs = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error(at, format!("{}: not PEM: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(self.error(at, format!("{} holds no certificate", path.display())));
        }
        // Parse each as the TLS setup will (a CERTIFICATE block holding something else failed
        // only at the first connection, so the target was never probed).
        let mut roots = rustls::RootCertStore::empty();
        for (n, cert) in certs.into_iter().enumerate() {
            roots.add(cert).map_err(|e| {
                self.error(
                    at,
                    format!(
                        "{}: certificate {} of the file is not a valid certificate: {e}",
                        path.display(),
                        n + 1
                    ),
                )
            })?;
        }
        Ok(CaBundle { path, pem })
    }

    fn duration(&self, at: &[Step], value: &Option<String>, default: &str) -> Checked<Duration> {
        let text = value.as_deref().unwrap_or(default);
        parse_duration(text).map_err(|reason| self.error(at, reason))
    }

    fn fraction(
        &self,
        at: &[Step],
        value: &Option<raw::RawFraction>,
        default: f64,
    ) -> Checked<f64> {
        match value {
            None => Ok(default),
            Some(raw::RawFraction::Number(n)) => Ok(*n),
            Some(raw::RawFraction::Text(text)) => text
                .trim()
                .strip_suffix('%')
                .and_then(|n| n.trim().parse::<f64>().ok())
                .map(|n| n / 100.0)
                .ok_or_else(|| self.error(at, format!("`{text}` is not a percentage like 5%"))),
        }
    }

    fn ladder(&self, i: usize, value: &Option<Vec<String>>) -> Checked<Vec<Duration>> {
        let at = [Key("targets"), Index(i), Key("watch_ladder")];
        let Some(values) = value else {
            return Ok(["10s", "30s", "1m", "2m", "5m", "10m", "30m", "1h"]
                .iter()
                .map(|s| humantime::parse_duration(s).expect("default ladder parses"))
                .collect());
        };
        if values.is_empty() || values.len() > MAX_LADDER_RUNGS {
            return Err(self.error(&at, format!("give 1 to {MAX_LADDER_RUNGS} durations")));
        }
        let mut ladder = Vec::with_capacity(values.len());
        for v in values {
            let d = self.duration(&at, &Some(v.clone()), "")?;
            if ladder.last().is_some_and(|last| *last >= d) {
                return Err(self.error(&at, "rungs must be in increasing order"));
            }
            ladder.push(d);
        }
        Ok(ladder)
    }

    fn relative(&self, file: &str) -> PathBuf {
        relative_to(self.path, file)
    }
}

/// A file named in a configuration file: relative paths are relative to that file's folder
/// (as in Prometheus and exporter-toolkit), not to the working directory.
pub(crate) fn relative_to(config_file: &Path, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        config_file
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(path)
    }
}

fn field_name(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests;
