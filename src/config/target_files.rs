//! Target files: `target_files: [glob, ...]` in the configuration names files that each hold a
//! YAML or JSON list of targets, in exactly the schema of `targets` (the exporter's analogue of
//! Prometheus' `file_sd_configs`, for fleets whose targets are generated).
//!
//! [`TargetFiles`] remembers, per file, what its content last gave and which of its targets are
//! in force, and [`TargetFiles::refresh`] reads the globs and the files again (the daemon calls it
//! periodically and on every reload; `--config.check` once). The rules:
//! - A file whose bytes did not change is not checked again (unless the refresh is forced, as on
//!   a reload, which re-reads the passwords and CA files a target names, like the main file).
//! - A file that is unreadable, unparsable or invalid, or that brings a target name another
//!   source already uses, is refused alone: its last good targets stay in force (none if it never
//!   loaded), every other file and the inline targets go on. On a name clash the target that
//!   already ran keeps its name; the inline targets always keep theirs.
//! - A file no glob matches any more (deleted) takes its targets with it: that is a removal,
//!   not an error. A file that vanishes between the listing and its read is left as it was
//!   until the next refresh's listing decides.
//! - An empty file is refused: a file caught in the middle of being rewritten is empty, and
//!   taking it for "no targets" would stop its targets and throw their measurements away. A
//!   file without targets says `[]`.
//!
//! The targets it yields go through the daemon's one `apply`, so a reload's keep-what-is-true
//! rules ([`super::TargetChange`]) hold for a file's targets as for inline ones.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ring::digest;

use super::locate::{self, Step};
use super::{check_nesting, raw, read_file, validate, yaml_error, ConfigError, TargetConfig};

/// How often the globs and files are read again unless `target_files_refresh_interval` says.
pub const DEFAULT_REFRESH_INTERVAL: &str = "30s";
/// The shortest `target_files_refresh_interval` accepted: a refresh reads every file.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// The most files the globs may match: each file is a label value of two metric families, and
/// all of them are read at every refresh. Files beyond it (in path order) are not read.
pub const MAX_TARGET_FILES: usize = 1000;

/// `target_files` and `target_files_refresh_interval`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetFilesConfig {
    /// Glob patterns, relative ones already joined to the configuration file's folder.
    pub patterns: Vec<String>,
    pub refresh_interval: Duration,
    /// What the files' unset environment variables do: as for the configuration file.
    pub missing_env: super::MissingEnv,
}

impl Default for TargetFilesConfig {
    fn default() -> Self {
        TargetFilesConfig {
            patterns: Vec::new(),
            refresh_interval: Duration::from_secs(30),
            missing_env: super::MissingEnv::Refuse,
        }
    }
}

/// The options every glob is matched with: `*` does not cross `/`, and does not match a
/// leading dot (editors' swap files, Kubernetes' `..data` folders of a mounted ConfigMap).
const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// Checks a glob written in the configuration file `config_file` and makes it relative to that
/// file's folder (the folder's own name is escaped, so a `[` in it is no pattern).
pub(crate) fn resolve_pattern(config_file: &Path, pattern: &str) -> Result<String, String> {
    if pattern.trim().is_empty() {
        return Err("a glob must not be empty".to_string());
    }
    glob::Pattern::new(pattern).map_err(|e| format!("`{pattern}` is not a glob: {e}"))?;
    if Path::new(pattern).is_absolute() {
        return Ok(pattern.to_string());
    }
    let folder = config_file.parent().unwrap_or_else(|| Path::new(""));
    if folder.as_os_str().is_empty() {
        return Ok(pattern.to_string());
    }
    let folder = folder.to_str().ok_or_else(|| {
        "the configuration file's folder is not UTF-8: give target_files as absolute paths"
            .to_string()
    })?;
    Ok(format!(
        "{}/{pattern}",
        glob::Pattern::escape(folder.trim_end_matches('/'))
    ))
}

/// What the globs match now.
#[derive(Debug, Default)]
struct Listing {
    /// At most [`MAX_TARGET_FILES`], in path order.
    files: Vec<PathBuf>,
    /// How many more matched beyond the cap.
    over_limit: usize,
    /// Patterns that matched no file (likely a typo).
    unmatched: Vec<String>,
    /// Folders the walk could not read.
    problems: Vec<String>,
}

/// The files `patterns` match, but `main_file`: `*.yaml` next to `config.yaml` matches it too,
/// and it is no list of targets.
fn list(patterns: &[String], main_file: &Path) -> Listing {
    let main_file = main_file.canonicalize().ok();
    let is_main = |path: &Path| main_file.is_some() && path.canonicalize().ok() == main_file;
    let mut found = BTreeSet::new();
    let mut listing = Listing::default();
    for pattern in patterns {
        let Ok(paths) = glob::glob_with(pattern, MATCH) else {
            // Checked when the configuration was loaded.
            continue;
        };
        let mut matched = false;
        for entry in paths {
            match entry {
                // A folder is no target file; `targets/*` may well match one.
                Ok(path) if path.is_dir() || is_main(&path) => {}
                Ok(path) => {
                    matched = true;
                    found.insert(path);
                    // Enough to know the cap is passed; a runaway glob is not walked to its end.
                    if found.len() > MAX_TARGET_FILES * 2 {
                        break;
                    }
                }
                Err(e) => listing.problems.push(e.to_string()),
            }
        }
        if !matched {
            listing.unmatched.push(pattern.clone());
        }
    }
    listing.over_limit = found.len().saturating_sub(MAX_TARGET_FILES);
    listing.files = found.into_iter().take(MAX_TARGET_FILES).collect();
    listing
}

/// One target of a file, with the line its name is on (for a name clash found later).
#[derive(Clone, Debug)]
struct FileTarget {
    config: TargetConfig,
    name_line: Option<usize>,
}

/// Parses and checks one target file's text: a YAML or JSON list of targets.
fn parse(
    path: &Path,
    text: &str,
    missing_env: super::MissingEnv,
) -> Result<(Vec<FileTarget>, Vec<String>), ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError {
            file: path.to_path_buf(),
            line: None,
            field: String::new(),
            reason: "the file is empty (a file without targets says [])".to_string(),
        });
    }
    check_nesting(path, text)?;
    let raw: Vec<raw::RawTarget> = serde_yaml::from_str(text).map_err(|e| {
        let mut e = yaml_error(path, e);
        // serde_yaml starts the path of an item of a top-level list with a dot (`.[0]`); the
        // validator's fields do not.
        if let Some(field) = e.field.strip_prefix('.') {
            e.field = field.to_string();
        }
        e
    })?;
    let (targets, warnings) = validate::target_list(path, text, raw, missing_env)?;
    let targets = targets
        .into_iter()
        .enumerate()
        .map(|(i, config)| FileTarget {
            config,
            name_line: locate::line_of(text, &[Step::Index(i), Step::Key("name")]),
        })
        .collect();
    Ok((targets, warnings))
}

/// What a file's last read gave.
enum Read {
    /// Gone between the listing and the read.
    Gone,
    Bytes(Vec<u8>),
    Refused(ConfigError),
}

fn read(path: &Path) -> Read {
    match read_file(path, super::MAX_FILE_BYTES) {
        Ok(bytes) => Read::Bytes(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Read::Gone,
        Err(e) => Read::Refused(ConfigError::unreadable(path, e)),
    }
}

/// What is known of one matched file.
#[derive(Debug)]
struct FileState {
    /// SHA-256 of the bytes last read; `None` when they could not be read.
    digest: Option<Vec<u8>>,
    /// What those bytes give: the targets, or why they are refused.
    content: Result<Vec<FileTarget>, ConfigError>,
    /// The targets in force from this file: its last good ones.
    running: Vec<TargetConfig>,
    /// Why the file's content is not in force (invalid, or a name clash); `None` when it is.
    refusal: Option<ConfigError>,
}

impl FileState {
    /// A file seen for the first time: nothing of it in force yet.
    fn new(content: Result<Vec<FileTarget>, ConfigError>) -> FileState {
        FileState {
            digest: None,
            content,
            running: Vec::new(),
            refusal: None,
        }
    }
}

/// Where a target name comes from, while merging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Inline,
    File(usize),
}

/// What one refresh did, for the daemon to log and export.
#[derive(Debug, Default)]
pub struct Refresh {
    /// Whether the targets in force changed (the daemon applies them then).
    pub changed: bool,
    /// Files refused by this refresh, or refused for another reason than before: one log line
    /// each.
    pub refused: Vec<ConfigError>,
    /// Files in force again after a refusal.
    pub recovered: Vec<PathBuf>,
    /// Files no glob matches any more: their series go.
    pub gone: Vec<PathBuf>,
    /// Warnings of newly read files (a password in a DSN, ...), and about the globs.
    pub warnings: Vec<String>,
    /// Set when more files match than [`MAX_TARGET_FILES`]: the reason.
    pub over_limit: Option<String>,
}

/// One matched file as the daemon exports it.
#[derive(Debug)]
pub struct FileStatus<'a> {
    pub path: &'a Path,
    /// Whether its current content is in force.
    pub ok: bool,
    /// How many of its targets are in force (its last good ones while refused).
    pub targets: usize,
    pub refusal: Option<&'a ConfigError>,
}

/// The target files the globs match, each with its targets in force; see the module doc.
#[derive(Debug, Default)]
pub struct TargetFiles {
    files: BTreeMap<PathBuf, FileState>,
    /// The last refresh's globs that matched nothing and its over-limit count, so each is
    /// told once, not at every refresh.
    unmatched: Vec<String>,
    over_limit: usize,
}

impl TargetFiles {
    /// Reads the globs and the files again and decides which targets are in force. `inline`
    /// are the main file's targets (their names are never taken by a file), `main_file` its
    /// path (for messages). `force` checks every file again even when its bytes are the same
    /// (a reload: the files its targets name may have changed).
    pub fn refresh(
        &mut self,
        config: &TargetFilesConfig,
        inline: &[TargetConfig],
        main_file: &Path,
        force: bool,
    ) -> Refresh {
        let mut outcome = Refresh::default();
        let listing = list(&config.patterns, main_file);
        for problem in &listing.problems {
            outcome
                .warnings
                .push(format!("target_files: cannot read a folder: {problem}"));
        }
        if listing.unmatched != self.unmatched {
            for pattern in listing
                .unmatched
                .iter()
                .filter(|p| !self.unmatched.contains(p))
            {
                outcome
                    .warnings
                    .push(format!("target_files: `{pattern}` matches no file"));
            }
            self.unmatched = listing.unmatched.clone();
        }
        if listing.over_limit > 0 {
            let reason = format!(
                "target_files match {} files, more than {MAX_TARGET_FILES}: the last {} in path order are not read (after {})",
                MAX_TARGET_FILES + listing.over_limit,
                listing.over_limit,
                listing.files.last().map_or(String::new(), |p| p.display().to_string()),
            );
            if listing.over_limit != self.over_limit {
                outcome.refused.push(ConfigError {
                    file: main_file.to_path_buf(),
                    line: None,
                    field: "target_files".to_string(),
                    reason: reason.clone(),
                });
            }
            outcome.over_limit = Some(reason);
        }
        self.over_limit = listing.over_limit;

        let listed: BTreeSet<&PathBuf> = listing.files.iter().collect();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|path| !listed.contains(path))
            .cloned()
            .collect();
        for path in gone {
            if let Some(state) = self.files.remove(&path) {
                outcome.changed |= !state.running.is_empty();
            }
            outcome.gone.push(path);
        }

        for path in &listing.files {
            let bytes = match read(path) {
                Read::Gone => continue,
                Read::Refused(e) => {
                    self.files
                        .entry(path.clone())
                        .and_modify(|state| {
                            state.digest = None;
                            state.content = Err(e.clone());
                        })
                        .or_insert_with(|| FileState::new(Err(e)));
                    continue;
                }
                Read::Bytes(bytes) => bytes,
            };
            let sum = digest::digest(&digest::SHA256, &bytes).as_ref().to_vec();
            let known = self.files.get(path);
            if !force && known.is_some_and(|state| state.digest.as_ref() == Some(&sum)) {
                continue;
            }
            let content = match String::from_utf8(bytes) {
                Ok(text) => parse(path, &text, config.missing_env).map(|(targets, warnings)| {
                    outcome.warnings.extend(warnings);
                    targets
                }),
                Err(_) => Err(ConfigError {
                    file: path.clone(),
                    line: None,
                    field: String::new(),
                    reason: "the file is not UTF-8 text".to_string(),
                }),
            };
            let state = self
                .files
                .entry(path.clone())
                .or_insert_with(|| FileState::new(Ok(Vec::new())));
            state.digest = Some(sum);
            state.content = content;
        }

        self.merge(inline, main_file, &mut outcome);
        outcome
    }

    /// Decides what is in force: every file's new content where it is valid and clashes with
    /// no name of another source, its last good targets where not.
    fn merge(&mut self, inline: &[TargetConfig], main_file: &Path, outcome: &mut Refresh) {
        let paths: Vec<PathBuf> = self.files.keys().cloned().collect();
        let states: Vec<&FileState> = self.files.values().collect();
        // Per file: whether its new content is taken, names dropped from its last good targets
        // (an inline target took them), and why it is refused.
        let mut take_new: Vec<bool> = states.iter().map(|s| s.content.is_ok()).collect();
        let mut dropped: Vec<BTreeSet<String>> = vec![BTreeSet::new(); states.len()];
        let mut refusal: Vec<Option<ConfigError>> = states
            .iter()
            .map(|s| s.content.as_ref().err().cloned())
            .collect();
        // The targets file `i` would have in force: its new content, or its last good targets
        // less the names dropped from them.
        let in_force =
            |i: usize, take_new: &[bool], dropped: &[BTreeSet<String>]| -> Vec<&TargetConfig> {
                if take_new[i] {
                    match &states[i].content {
                        Ok(targets) => targets.iter().map(|t| &t.config).collect(),
                        Err(_) => Vec::new(),
                    }
                } else {
                    states[i]
                        .running
                        .iter()
                        .filter(|t| !dropped[i].contains(&t.name))
                        .collect()
                }
            };
        // One clash settled per round: each round takes a file back to its last good targets
        // or drops a name from them, so the rounds end.
        loop {
            let mut holders: HashMap<String, Vec<Source>> = HashMap::new();
            for target in inline {
                holders
                    .entry(target.name.clone())
                    .or_default()
                    .push(Source::Inline);
            }
            for i in 0..states.len() {
                for target in in_force(i, &take_new, &dropped) {
                    holders
                        .entry(target.name.clone())
                        .or_default()
                        .push(Source::File(i));
                }
            }
            let clash = holders
                .into_iter()
                .filter(|(_, sources)| sources.len() > 1)
                .min_by_key(|(name, sources)| (sources[1], name.clone()));
            let Some((name, sources)) = clash else { break };
            // Inline targets keep their names; then the file that already ran the target; then
            // the first file in path order.
            let winner = if sources.contains(&Source::Inline) {
                Source::Inline
            } else {
                sources
                    .iter()
                    .copied()
                    .find(|s| {
                        matches!(s, Source::File(i) if states[*i].running.iter().any(|t| t.name == name))
                    })
                    .unwrap_or(sources[0])
            };
            let Some(Source::File(loser)) = sources.iter().copied().find(|s| *s != winner) else {
                break;
            };
            let holder = match winner {
                Source::Inline => main_file.display().to_string(),
                Source::File(i) => paths[i].display().to_string(),
            };
            let clashing = match &states[loser].content {
                Ok(targets) => targets
                    .iter()
                    .enumerate()
                    .find(|(_, t)| t.config.name == name),
                Err(_) => None,
            };
            let clash_error = ConfigError {
                file: paths[loser].clone(),
                line: clashing.and_then(|(_, t)| t.name_line),
                field: clashing.map_or(String::new(), |(i, _)| format!("[{i}].name")),
                reason: format!(
                    "`{name}` is already a target of {holder}; names must be unique across targets and every target file"
                ),
            };
            if take_new[loser] {
                take_new[loser] = false;
            } else {
                dropped[loser].insert(name);
            }
            // The first reason is the one to fix (an invalid file's own error before a clash).
            refusal[loser].get_or_insert(clash_error);
        }

        let chosen: Vec<Vec<TargetConfig>> = (0..states.len())
            .map(|i| {
                in_force(i, &take_new, &dropped)
                    .into_iter()
                    .cloned()
                    .collect()
            })
            .collect();
        for ((state, targets), refusal) in self.files.values_mut().zip(chosen).zip(refusal) {
            if state.running != targets {
                outcome.changed = true;
                state.running = targets;
            }
            match (&state.refusal, &refusal) {
                (_, Some(new)) if state.refusal.as_ref() != Some(new) => {
                    outcome.refused.push(new.clone())
                }
                (Some(old), None) => outcome.recovered.push(old.file.clone()),
                _ => {}
            }
            state.refusal = refusal;
        }
    }

    /// Whether every target the globs stand for is known: no file refused, none past the cap.
    pub fn all_known(&self) -> bool {
        self.over_limit == 0 && self.files.values().all(|state| state.refusal.is_none())
    }

    /// The targets in force from every file, in path order.
    pub fn targets(&self) -> impl Iterator<Item = &TargetConfig> {
        self.files.values().flat_map(|state| state.running.iter())
    }

    /// Each matched file: whether it is in force and how many targets it gives.
    pub fn files(&self) -> impl Iterator<Item = FileStatus<'_>> {
        self.files.iter().map(|(path, state)| FileStatus {
            path,
            ok: state.refusal.is_none(),
            targets: state.running.len(),
            refusal: state.refusal.as_ref(),
        })
    }
}

#[cfg(test)]
mod tests;
