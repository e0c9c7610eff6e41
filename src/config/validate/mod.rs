//! The second step of loading: raw values as written ([`super::raw`]) become checked settings
//! ([`Config`], [`TargetConfig`]), resolving durations, percentages, passwords and CA files.
//! Every refusal names the field (and its line, through [`ConfigError::at`]). What a target
//! takes from files and the environment (its DSN, password, CA bundle), and where a target file
//! may take files from, is in `files.rs`; a target's `labels`, in `labels.rs`; a target's
//! sections, one function each, in `target.rs`.

mod files;
mod labels;
mod target;

pub(crate) use labels::too_many_names;
pub use labels::{
    Labels, MAX_LABELS_PER_TARGET, MAX_LABEL_NAMES, MAX_LABEL_NAME_LEN, MAX_LABEL_VALUE_LEN,
    RESERVED_LABELS,
};

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::locate::Step::{self, Index, Key};
use super::raw;
use super::target_files::{self, TargetFilesConfig};
use super::{
    parse_duration, relative_to, Config, ConfigError, LifetimeSource, LogConfig, LogFormat,
    MissingEnv, TargetConfig, DEFAULT_LISTEN_ADDRESS, MAX_DURATION, MAX_LADDER_RUNGS,
};
use crate::postgres::dsn::AppParams;
use crate::recipes::pools::QUAINT_DEFAULT_MAX_IDLE_LIFETIME;

/// Checks a parsed configuration file; `text` is the file's text (for line numbers).
pub(super) fn config(
    path: &Path,
    text: &str,
    raw: raw::RawConfig,
    missing_env: MissingEnv,
) -> Result<Config, ConfigError> {
    Validator {
        path,
        text,
        list_file: false,
        allowed: None,
        missing_env,
    }
    .config(raw)
}

/// Checks a target file (a list of targets, see `target_files.rs`); `text` is its text. Fields
/// are named from the list (`[2].precision`), and files a target names are relative to `path`
/// and must resolve inside its folder or one of `allowed` (see `files.rs`). Returns the targets
/// and the warnings they give.
pub(super) fn target_list(
    path: &Path,
    text: &str,
    raw: Vec<raw::RawTarget>,
    allowed: &[PathBuf],
    missing_env: MissingEnv,
) -> Result<(Vec<TargetConfig>, Vec<String>), ConfigError> {
    let mut warnings = Vec::new();
    let targets = Validator {
        path,
        text,
        list_file: true,
        allowed: Some(allowed),
        missing_env,
    }
    .targets(raw, &mut warnings)?;
    Ok((targets, warnings))
}

/// Checks one target given outside a file (the `discover` command's flags) as the first target
/// of a file named `source` with no text: refusals name `targets[0].FIELD`, without a line.
/// Returns the target and the warnings it gives.
pub(crate) fn target(
    source: &Path,
    raw: raw::RawTarget,
) -> Result<(TargetConfig, Vec<String>), ConfigError> {
    let mut warnings = Vec::new();
    let target = Validator {
        path: source,
        text: "",
        list_file: false,
        allowed: None,
        missing_env: MissingEnv::Refuse,
    }
    .target(0, raw, &mut warnings)?;
    Ok((target, warnings))
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    /// A target file: the targets are the file's top-level list, not `targets:` in it.
    list_file: bool,
    /// In a target file, the folders besides its own whose files its targets may name; `None`
    /// for the main configuration, which may name any.
    allowed: Option<&'a [PathBuf]>,
    /// What an unset `dsn_env` or `password_env` variable does.
    missing_env: MissingEnv,
}

/// The DSN a target whose `dsn_env` is unset gets when that is only warned about
/// ([`MissingEnv::Warn`]: `--config.check`, which never connects).
const UNSET_ENV_DSN: &str = "postgres://unset.invalid/postgres";

type Checked<T> = Result<T, ConfigError>;

impl Validator<'_> {
    /// An environment variable a target names is unset: refused, or (`--config.check
    /// .allow-missing-env`) a warning naming it, and the check goes on.
    fn unset_env(&self, at: &[Step<'_>], var: &str, warnings: &mut Vec<String>) -> Checked<()> {
        let error = self.error(
            at,
            format!("environment variable {var} is not set or empty"),
        );
        match self.missing_env {
            MissingEnv::Refuse => Err(error),
            MissingEnv::Warn => {
                warnings.push(format!(
                    "{error} (allowed by --config.check.allow-missing-env)"
                ));
                Ok(())
            }
        }
    }

    fn error(&self, at: &[Step<'_>], reason: impl Into<String>) -> ConfigError {
        // Every target check names its field from `targets`; in a target file the list is the
        // whole file.
        let at = match at.split_first() {
            Some((Key("targets"), rest)) if self.list_file => rest,
            _ => at,
        };
        ConfigError::at(self.path, self.text, at, reason)
    }

    fn config(&self, raw: raw::RawConfig) -> Checked<Config> {
        let listen = raw
            .listen_address
            .as_deref()
            .unwrap_or(DEFAULT_LISTEN_ADDRESS);
        let listen_address = crate::listener::ListenAddress::parse(listen)
            .map_err(|reason| self.error(&[Key("listen_address")], reason))?;
        let log = self.log(raw.log)?;
        let mut target_files =
            self.target_files(raw.target_files, raw.target_files_refresh_interval)?;
        target_files.allowed_dirs = self.allowed_dirs(raw.target_files_allowed_dirs)?;
        if raw.targets.is_empty() && target_files.patterns.is_empty() {
            return Err(self.error(
                &[Key("targets")],
                "at least one target is required (in targets, or target_files to read them from)",
            ));
        }
        let mut warnings = Vec::new();
        let targets = self.targets(raw.targets, &mut warnings)?;
        Ok(Config {
            listen_address,
            log,
            targets,
            target_files,
            warnings,
            web_config_file: None,
            storage_path: None,
            telemetry_path: super::DEFAULT_TELEMETRY_PATH.to_string(),
            shard: None,
        })
    }

    /// `target_files_allowed_dirs`: folders, relative to this file's folder.
    fn allowed_dirs(&self, dirs: Option<Vec<String>>) -> Checked<Vec<PathBuf>> {
        let mut resolved = Vec::new();
        for (i, dir) in dirs.unwrap_or_default().into_iter().enumerate() {
            if dir.trim().is_empty() {
                return Err(self.error(
                    &[Key("target_files_allowed_dirs"), Index(i)],
                    "a folder must not be empty",
                ));
            }
            resolved.push(relative_to(self.path, &dir));
        }
        Ok(resolved)
    }

    /// Checks each target, that no two share a name, and the cap on distinct label names.
    fn targets(
        &self,
        raw: Vec<raw::RawTarget>,
        warnings: &mut Vec<String>,
    ) -> Checked<Vec<TargetConfig>> {
        if raw.len() > target_files::MAX_TARGETS {
            return Err(self.error(
                &[Key("targets")],
                format!(
                    "{} targets, more than {} (the most in all, with every target file's)",
                    raw.len(),
                    target_files::MAX_TARGETS
                ),
            ));
        }
        let mut names = HashSet::new();
        let mut targets = Vec::new();
        for (i, target) in raw.into_iter().enumerate() {
            let target = self.target(i, target, warnings)?;
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
        let mut label_names = BTreeSet::new();
        for (i, target) in targets.iter().enumerate() {
            self.label_names_cap(i, &target.labels, &mut label_names)?;
        }
        Ok(targets)
    }

    /// `target_files` (globs, relative to this file's folder) and how often they are read.
    fn target_files(
        &self,
        patterns: Option<Vec<String>>,
        refresh_interval: Option<String>,
    ) -> Checked<TargetFilesConfig> {
        let mut resolved = Vec::new();
        for (i, pattern) in patterns.unwrap_or_default().into_iter().enumerate() {
            let at = [Key("target_files"), Index(i)];
            let pattern = target_files::resolve_pattern(self.path, &pattern)
                .map_err(|reason| self.error(&at, reason))?;
            resolved.push(pattern);
        }
        let at = [Key("target_files_refresh_interval")];
        let refresh_interval = self.duration(
            &at,
            &refresh_interval,
            target_files::DEFAULT_REFRESH_INTERVAL,
        )?;
        if refresh_interval < target_files::MIN_REFRESH_INTERVAL {
            return Err(self.error(
                &at,
                format!(
                    "must be at least {} (every refresh lists the globs and reads up to {} files)",
                    humantime::format_duration(target_files::MIN_REFRESH_INTERVAL),
                    target_files::MAX_TARGET_FILES
                ),
            ));
        }
        Ok(TargetFilesConfig {
            patterns: resolved,
            refresh_interval,
            allowed_dirs: Vec::new(),
            missing_env: self.missing_env,
        })
    }

    fn log(&self, raw: Option<raw::RawLog>) -> Checked<LogConfig> {
        let raw = raw.unwrap_or(raw::RawLog {
            format: None,
            level: None,
        });
        let format = match raw.format.as_deref() {
            None => LogFormat::Text,
            Some(format) => LogFormat::parse(format)
                .map_err(|reason| self.error(&[Key("log"), Key("format")], reason))?,
        };
        let level = super::parse_log_level(raw.level.as_deref().unwrap_or("info"))
            .map_err(|reason| self.error(&[Key("log"), Key("level")], reason))?;
        Ok(LogConfig { format, level })
    }

    /// The lifetime the guard idles and where it came from: `app_max_idle_lifetime` wins;
    /// else a quaint URL's `max_idle_connection_lifetime`, or quaint's default when the URL
    /// has none.
    fn app_lifetime(
        &self,
        name: &str,
        dsn_at: &[Step<'_>],
        configured: Option<Duration>,
        app: &AppParams,
        warnings: &mut Vec<String>,
    ) -> Checked<(Option<Duration>, Option<LifetimeSource>)> {
        let from_url = match app.max_idle_connection_lifetime {
            Some(0) => None,
            Some(secs) => {
                let lifetime = Duration::from_secs(secs);
                if lifetime > MAX_DURATION {
                    return Err(self.error(
                        dsn_at,
                        format!(
                            "max_idle_connection_lifetime: {secs} s is longer than {}, the longest duration accepted",
                            humantime::format_duration(MAX_DURATION)
                        ),
                    ));
                }
                Some((lifetime, LifetimeSource::Url))
            }
            None if app.is_quaint() => Some((
                QUAINT_DEFAULT_MAX_IDLE_LIFETIME,
                LifetimeSource::LibraryDefault,
            )),
            None => None,
        };
        if let Some(configured) = configured {
            if let Some((url, _)) = from_url.filter(|(url, _)| *url != configured) {
                warnings.push(format!(
                    "target {name}: app_max_idle_lifetime {} is guarded, but the URL's pool retires connections after {} (max_idle_connection_lifetime)",
                    humantime::format_duration(configured),
                    humantime::format_duration(url)
                ));
            }
            return Ok((Some(configured), Some(LifetimeSource::Config)));
        }
        if app.max_idle_connection_lifetime == Some(0) {
            warnings.push(format!(
                "target {name}: the URL's max_idle_connection_lifetime=0 keeps idle connections forever; there is no lifetime to guard (set app_max_idle_lifetime to guard one)"
            ));
        }
        Ok(from_url.map_or((None, None), |(d, source)| (Some(d), Some(source))))
    }

    fn duration(
        &self,
        at: &[Step<'_>],
        value: &Option<String>,
        default: &str,
    ) -> Checked<Duration> {
        let text = value.as_deref().unwrap_or(default);
        parse_duration(text).map_err(|reason| self.error(at, reason))
    }

    fn fraction(
        &self,
        at: &[Step<'_>],
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
}
