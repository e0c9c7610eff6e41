//! Configuration: load `config.yaml`, check every field, and produce the typed settings the
//! daemon runs on.
//!
//! Two steps, so that a mistake is reported as `FILE:LINE: FIELD: reason` before anything starts
//! (and, on reload, while the old configuration keeps running):
//! 1. [`raw`] deserializes the text with unknown fields rejected; serde reports the position.
//! 2. [`validate`] turns raw values into checked types ([`Config`], [`TargetConfig`]), resolving
//!    durations, percentages, passwords and TLS files; [`locate`] finds the line of a field.
//!
//! [`ConfigError`] and how it is built from a YAML error or a field path live in `error.rs`;
//! [`TargetChange`] (what a reload changes) in `change.rs`. Targets kept in files of their own
//! (`target_files`, read and refreshed apart from this file) are loaded by [`target_files`].
//!
//! Passwords live only in [`Secret`](crate::secret::Secret)s inside the driver config; nothing
//! here prints them.

mod change;
mod error;
pub(crate) mod locate;
mod nesting;
pub(crate) mod raw;
mod shard;
pub mod target_files;
pub(crate) mod validate;

pub use change::TargetChange;
pub(crate) use error::yaml_error;
pub use error::ConfigError;
pub(crate) use nesting::check_nesting;
pub use shard::Shard;
pub use target_files::{TargetFiles, TargetFilesConfig};
pub use validate::{
    Labels, MAX_LABELS_PER_TARGET, MAX_LABEL_NAMES, MAX_LABEL_NAME_LEN, MAX_LABEL_VALUE_LEN,
    RESERVED_LABELS,
};

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::discovery::PolicyKind;
use crate::postgres::connection::ConnectSpec;
use crate::postgres::dsn::{AppParams, SslMode};
use crate::postgres::tls::CaBundle;

/// The port we listen on by default (Prometheus' allocation list is full for 9100-9999;
/// postgres_exporter has 9187).
pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:10187";
/// No target may hold more sessions than this on its server, whatever the config says: the
/// exporter must never become the reason a database runs out of connections.
pub const MAX_CONNECTIONS_HARD_CAP: usize = 64;
/// A ladder rung becomes a label value; this bounds the label's cardinality.
pub const MAX_LADDER_RUNGS: usize = 16;
pub use crate::format::{parse_duration, MAX_DURATION};

/// A fully checked configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `listen_address`, in any form `--web.listen-address` takes (`:PORT`, `HOST:PORT`...).
    pub listen_address: crate::listener::ListenAddress,
    pub log: LogConfig,
    /// The targets written in this file (`targets`); more may come from `target_files`.
    pub targets: Vec<TargetConfig>,
    /// Where more targets come from, and how often they are read again.
    pub target_files: TargetFilesConfig,
    /// Things worth a log line that do not stop loading (e.g. a password written in a DSN).
    pub warnings: Vec<String>,
    /// The exporter-toolkit web configuration (TLS, basic auth) for our own endpoint. Not part
    /// of the YAML file: `main` sets it from `--web.config.file`; see [`crate::http::web_config`].
    pub web_config_file: Option<PathBuf>,
    /// The directory holding the state file (each target's last measurement). Not part of the
    /// YAML file: `main` sets it from `--storage.path`; see [`crate::storage`].
    pub storage_path: Option<PathBuf>,
    /// Where `/metrics` is served. Not part of the YAML file: `main` sets it from
    /// `--web.telemetry-path`.
    pub telemetry_path: String,
    /// This replica's share of the targets (`--shard=I/N`); `None`: all of them. Not part of
    /// the YAML file: `main` sets it.
    pub shard: Option<Shard>,
}

/// Where metrics are served unless `--web.telemetry-path` says otherwise.
pub const DEFAULT_TELEMETRY_PATH: &str = "/metrics";

/// Checks a log level or filter (`info`, `idle_drop_exporter=debug,warn`): returns it trimmed.
///
/// tracing-subscriber's parser indexes the trimmed text but slices the untrimmed one, so a
/// leading space before a multi-byte character panicked it (found by the config fuzzer:
/// `level: ' À='`). Directives are ASCII; anything else is refused before it gets there.
pub fn parse_log_level(text: &str) -> Result<String, String> {
    let level = text.trim();
    let refused = || {
        format!("`{text}` is not a level (error, warn, info, debug, trace) or a filter like idle_drop_exporter=debug")
    };
    if level.is_empty() || !level.chars().all(|c| c.is_ascii_graphic()) {
        return Err(refused());
    }
    tracing_subscriber::EnvFilter::try_new(level).map_err(|_| refused())?;
    Ok(level.to_string())
}

/// Checks a `--web.telemetry-path`: an absolute path that the status page and the `/-/`
/// endpoints do not use.
pub fn parse_telemetry_path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') || text == "/" || text.starts_with("/-/") {
        return Err(format!(
            "`{text}` must be a path like /metrics, not / or under /-/ (the status page and the health, ready and reload endpoints)"
        ));
    }
    // What a client can put in a request's path (RFC 3986 `path-absolute`): hyper compares
    // the path as sent, so anything else (non-ASCII, `<`, `"`, a space, `?`, `#`) would be a
    // path nobody can request.
    let bytes = text.as_bytes();
    let requestable = bytes.iter().enumerate().all(|(i, b)| match b {
        b'%' => bytes
            .get(i + 1..i + 3)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)),
        b if b.is_ascii_alphanumeric() => true,
        _ => b"-._~!$&'()*+,;=:@/".contains(b),
    });
    if !requestable {
        return Err(format!(
            "`{}` is not a path a client can request: use ASCII letters, digits, - . _ ~ ! $ & ' ( ) * + , ; = : @ / and %XX escapes",
            text.escape_debug()
        ));
    }
    Ok(text.to_string())
}

/// How log lines are written (`log.format`, `--log.format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// For a person at a terminal: time, level, message, then `key=value` fields (tracing's
    /// own layout; values are not quoted for a parser).
    #[default]
    Text,
    /// `time=... level=INFO msg="..." key=value`, quoted where needed, as Prometheus logs.
    Logfmt,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// `text`, `logfmt` or `json`.
    pub fn parse(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "logfmt" => Ok(LogFormat::Logfmt),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "`{other}` is not a log format (text, logfmt or json)"
            )),
        }
    }
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
    /// Driver settings with the password filled in (never printed: see [`Secret`](crate::secret::Secret)).
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
    /// The application's pool idle lifetime the guard idles: `app_max_idle_lifetime`, else
    /// what a quaint URL says (or quaint's default); see [`LifetimeSource`].
    pub app_max_idle_lifetime: Option<Duration>,
    /// Where `app_max_idle_lifetime` came from (`None` when there is none).
    pub app_lifetime_source: Option<LifetimeSource>,
    /// The application's pool and socket settings its URL carried, stripped before connecting.
    pub app_params: AppParams,
    pub recommendation_margin: f64,
    pub recommended_socket_timeout: Duration,
    pub keepalive_probe: Option<KeepaliveProbe>,
    pub reap_ghosts: bool,
    /// Send the password when the server asks for it in clear text on a connection without
    /// TLS (libpq's `require_auth=password`); off: such a connection is refused, nothing sent.
    pub allow_cleartext_password: bool,
    /// How discovery picks idle times. `Adaptive` in production; the baselines exist so
    /// `docs/benchmarks.md` can compare policies in the real engine.
    pub discovery_policy: PolicyKind,
    /// `labels`: exported on `idle_drop_target_info` (checked in `validate/labels.rs`); a
    /// reload that changes them is a live change.
    pub labels: Labels,
}

impl TargetConfig {
    /// What the driver layer needs to open this target's connections.
    pub fn connect_spec(&self) -> ConnectSpec {
        ConnectSpec {
            driver: self.driver.clone(),
            sslmode: self.sslmode,
            ca: self.ca_pem.clone(),
            connect_timeout: self.connect_timeout,
            tcp_user_timeout: self.tcp_user_timeout,
            allow_cleartext_password: self.allow_cleartext_password,
        }
    }
}

/// Where the lifetime the guard idles came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifetimeSource {
    /// `app_max_idle_lifetime` in the configuration (it wins over the URL).
    Config,
    /// The URL's `max_idle_connection_lifetime`.
    Url,
    /// A quaint URL without `max_idle_connection_lifetime`: quaint's default applies
    /// ([`crate::recipes::pools::QUAINT_DEFAULT_MAX_IDLE_LIFETIME`]).
    LibraryDefault,
}

impl LifetimeSource {
    /// The `source` label of `idle_drop_app_lifetime_source`.
    pub fn label(self) -> &'static str {
        match self {
            LifetimeSource::Config => "config",
            LifetimeSource::Url => "url",
            LifetimeSource::LibraryDefault => "library_default",
        }
    }

    /// How the status page says it, after the value.
    pub fn describe(self) -> &'static str {
        match self {
            LifetimeSource::Config => "from the config",
            LifetimeSource::Url => "from the URL",
            LifetimeSource::LibraryDefault => "quaint default, URL has none",
        }
    }
}

/// Settings of the keepalive-enabled probe that tells a packet-counting box from a proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepaliveProbe {
    pub interval: Duration,
}

/// The largest configuration file, web configuration file, CA bundle, certificate or key read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// The largest password file read.
pub const MAX_PASSWORD_FILE_BYTES: u64 = 4096;
/// The largest `dsn_file` read (a URL with every parameter fits many times over).
pub const MAX_DSN_FILE_BYTES: u64 = 16 * 1024;
/// The deepest nesting of YAML flow collections (`[`, `{`) accepted. The YAML parser's time
/// grows with depth × tokens (100,000 `[` took 34 s to refuse); our files nest 4 levels. See
/// `nesting.rs`.
pub const MAX_YAML_NESTING: usize = 64;

/// Reads a file named by the operator: a regular file only (a FIFO would block, a device such as
/// `/dev/zero` never ends), at most `limit` bytes. Errors say what was wrong, never what the file
/// holds.
///
/// The type is checked on the open file (`fstat`), not only on the path before opening: a file
/// swapped for a FIFO in between blocked the daemon in `open()`. The open is `O_NONBLOCK` (so
/// opening a FIFO with no writer returns at once, to be refused) and `O_NOCTTY`; the check of
/// the path before it only spares opening a device in the common case.
pub fn read_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    read_file_at(path, limit, false)
}

/// [`read_file`]; with `no_follow`, a symlink as the last component is refused (`O_NOFOLLOW`):
/// for a path already resolved and checked, which must not be swapped for a link since.
pub(crate) fn read_file_at(path: &Path, limit: u64, no_follow: bool) -> std::io::Result<Vec<u8>> {
    use rustix::fs::OFlags;
    use std::io::{Error, ErrorKind};
    use std::os::unix::fs::OpenOptionsExt;
    let check = |meta: std::fs::Metadata| {
        if !meta.is_file() {
            return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
        }
        if meta.len() > limit {
            return Err(too_large(limit));
        }
        Ok(())
    };
    check(if no_follow {
        std::fs::symlink_metadata(path)?
    } else {
        std::fs::metadata(path)?
    })?;
    let mut flags = OFlags::NONBLOCK | OFlags::NOCTTY;
    if no_follow {
        flags |= OFlags::NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)?;
    read_opened(file, limit)
}

/// Reads a file already opened (`O_NONBLOCK`), at most `limit` bytes, checking on the handle
/// that it is a regular file.
pub(crate) fn read_opened(file: std::fs::File, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    if meta.len() > limit {
        return Err(too_large(limit));
    }
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

/// What a load does with an environment variable a target names (`dsn_env`, `password_env`)
/// that is not set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissingEnv {
    /// Refuse the configuration: the daemon cannot connect without it.
    #[default]
    Refuse,
    /// Warn and check everything else (`--config.check.allow-missing-env`: CI lints a
    /// configuration without its secrets). Such a configuration must never run: the target's
    /// DSN is a placeholder, its password missing.
    Warn,
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_checking(path, MissingEnv::Refuse)
}

/// [`load`], with what to do about unset environment variables (here and in the target files
/// the configuration names).
pub fn load_checking(path: &Path, missing_env: MissingEnv) -> Result<Config, ConfigError> {
    let bytes = read_file(path, MAX_FILE_BYTES).map_err(|e| ConfigError::unreadable(path, e))?;
    let text = String::from_utf8(bytes).map_err(|_| ConfigError {
        file: path.to_path_buf(),
        line: None,
        field: String::new(),
        reason: "the file is not UTF-8 text".to_string(),
    })?;
    parse_checking(path, &text, missing_env)
}

/// Checks configuration text; `path` is only used in messages and to resolve relative files.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    parse_checking(path, text, MissingEnv::Refuse)
}

/// [`parse`], with what to do about unset environment variables.
pub fn parse_checking(
    path: &Path,
    text: &str,
    missing_env: MissingEnv,
) -> Result<Config, ConfigError> {
    check_nesting(path, text)?;
    let raw: raw::RawConfig = serde_yaml::from_str(text).map_err(|e| yaml_error(path, e))?;
    validate::config(path, text, raw, missing_env)
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

#[cfg(test)]
mod tests;
