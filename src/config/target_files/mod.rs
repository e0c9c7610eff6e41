//! Target files: `target_files: [glob, ...]` in the configuration names files that each hold a
//! YAML or JSON list of targets, in exactly the schema of `targets` (the exporter's analogue of
//! Prometheus' `file_sd_configs`, for fleets whose targets are generated).
//!
//! [`TargetFiles`] remembers, per file, what its content last gave and which of its targets are
//! in force. A refresh [`scan`]s the globs and the files (the daemon does it on a worker thread,
//! under a deadline, periodically and on every reload; `--config.check` once, through
//! [`TargetFiles::refresh`]) and [`TargetFiles::apply`] decides what is in force (`merge.rs`).
//! The rules:
//! - A file whose bytes did not change is not checked again (unless the refresh is forced, as on
//!   a reload, which re-reads the passwords and CA files a target names, like the main file).
//! - A file that is unreadable, unparsable or invalid, or that brings a target name another
//!   source already uses, is refused alone: its last good targets stay in force (none if it never
//!   loaded), every other file and the inline targets go on. On a name clash the target that
//!   already ran keeps its name; the inline targets always keep theirs.
//! - A file no glob matches any more (deleted, or caught between a delete and its re-creation)
//!   keeps its targets for a grace period of [`GRACE_REFRESHES`] refresh intervals, refused
//!   ("gone") meanwhile; if it is still gone after that, its targets are removed (no error).
//!   A file that vanishes between the listing and its read is left as it was until the next
//!   refresh's listing decides. A listing cut short (a bound of the walk) removes nothing.
//! - Bounded: at most [`MAX_TARGET_FILES`] files, [`MAX_TARGETS_PER_FILE`] targets in a file and
//!   [`MAX_TARGETS`] in all; a file past a bound is refused with the bound in its error.
//! - An empty file is refused: a file caught in the middle of being rewritten is empty, and
//!   taking it for "no targets" would stop its targets and throw their measurements away. A
//!   file without targets says `[]`.
//!
//! The targets it yields go through the daemon's one `apply`, so a reload's keep-what-is-true
//! rules ([`super::TargetChange`]) hold for a file's targets as for inline ones.

mod candidate;
mod label_cap;
mod merge;
mod scan;
mod walk;

pub use scan::{scan, Event, Known, Scan, Scanned};
pub use walk::{MAX_DEPTH as MAX_WALK_DEPTH, MAX_ENTRIES as MAX_WALK_ENTRIES};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{ConfigError, TargetConfig};
use candidate::{Candidate, Decision};
use scan::FileTarget;

/// How often the globs and files are read again unless `target_files_refresh_interval` says.
pub const DEFAULT_REFRESH_INTERVAL: &str = "30s";
/// The shortest `target_files_refresh_interval` accepted: a refresh reads every file.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// The most files the globs may match: each file is a label value of two metric families, and
/// all of them are read at every refresh. Files beyond it (in path order) are not read.
pub const MAX_TARGET_FILES: usize = 1000;
/// The most targets one target file may hold (a fleet's generated file; split past that).
pub const MAX_TARGETS_PER_FILE: usize = 2000;
/// The most targets in all, inline and from every file (before `--shard`): each is a probe
/// engine, sessions on its server, and a few dozen series.
pub const MAX_TARGETS: usize = 10_000;
/// How many refresh intervals a file no glob matches keeps its targets before they are removed.
pub const GRACE_REFRESHES: u32 = 2;

/// `target_files` and `target_files_refresh_interval`, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetFilesConfig {
    /// Glob patterns, relative ones already joined to the configuration file's folder.
    pub patterns: Vec<String>,
    pub refresh_interval: Duration,
    /// `target_files_allowed_dirs`, relative ones joined to the configuration file's folder:
    /// folders besides its own whose files (`password_file`, `dsn_file`, `ca_file`, a DSN's
    /// `sslrootcert`) a target file may name.
    pub allowed_dirs: Vec<PathBuf>,
    /// What the files' unset environment variables do: as for the configuration file.
    pub missing_env: super::MissingEnv,
}

impl Default for TargetFilesConfig {
    fn default() -> Self {
        TargetFilesConfig {
            patterns: Vec::new(),
            refresh_interval: Duration::from_secs(30),
            allowed_dirs: Vec::new(),
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

/// What is known of one matched file.
#[derive(Debug)]
struct FileState {
    /// SHA-256 of the bytes last read; `None` when they could not be read.
    digest: Option<Vec<u8>>,
    /// What those bytes give: the targets, or why they are refused.
    content: Result<Vec<FileTarget>, ConfigError>,
    /// The targets in force from this file: its last good ones.
    running: Vec<TargetConfig>,
    /// Why the file's content is not in force (invalid, a name clash, gone); `None` when it is.
    refusal: Option<ConfigError>,
    /// Since when no glob matches it (its grace period started then).
    missing_since: Option<Instant>,
}

impl FileState {
    /// A file seen for the first time: nothing of it in force yet.
    fn new(content: Result<Vec<FileTarget>, ConfigError>) -> FileState {
        FileState {
            digest: None,
            content,
            running: Vec::new(),
            refusal: None,
            missing_since: None,
        }
    }
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
    /// Files no glob matches any more, past their grace period: their series go.
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
    /// Scans (on this thread) and applies: what `--config.check` and the tests use. `force`:
    /// see [`Known::force`].
    pub fn refresh(
        &mut self,
        config: &TargetFilesConfig,
        inline: &[TargetConfig],
        main_file: &Path,
        force: bool,
    ) -> Refresh {
        let mut found = Scan::default();
        scan(config, main_file, &self.known(force), &mut |e| {
            found.take(e);
            true
        });
        self.apply(config, inline, main_file, found, Instant::now())
    }

    /// What the next [`scan`] needs to know.
    pub fn known(&self, force: bool) -> Known {
        Known {
            digests: self
                .files
                .iter()
                .filter_map(|(path, state)| Some((path.clone(), state.digest.clone()?)))
                .collect(),
            force,
            skip: BTreeSet::new(),
        }
    }

    /// Applies what a scan found at `now` and decides which targets are in force. `inline`
    /// are the main file's targets (their names are never taken by a file), `main_file` its
    /// path (for messages).
    pub fn apply(
        &mut self,
        config: &TargetFilesConfig,
        inline: &[TargetConfig],
        main_file: &Path,
        found: Scan,
        now: Instant,
    ) -> Refresh {
        let mut outcome = Refresh::default();
        if let Some(listing) = found.listing {
            self.listed(config, &listing, main_file, now, &mut outcome);
        }
        for (path, scanned) in found.files {
            self.read(path, scanned, &mut outcome);
        }
        self.merge(inline, main_file, &mut outcome);
        outcome
    }

    /// Takes a listing: its warnings, the over-limit refusal, and files gone (their grace
    /// period starts, or ends) or back.
    fn listed(
        &mut self,
        config: &TargetFilesConfig,
        listing: &scan::Listing,
        main_file: &Path,
        now: Instant,
        outcome: &mut Refresh,
    ) {
        for problem in &listing.problems {
            outcome.warnings.push(format!("target_files: {problem}"));
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
        let grace = config.refresh_interval * GRACE_REFRESHES;
        let mut gone = Vec::new();
        for (path, state) in &mut self.files {
            if listed.contains(path) {
                state.missing_since = None;
            } else if listing.complete {
                let since = *state.missing_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= grace || state.running.is_empty() {
                    gone.push(path.clone());
                }
            }
        }
        for path in gone {
            if let Some(state) = self.files.remove(&path) {
                outcome.changed |= !state.running.is_empty();
            }
            outcome.gone.push(path);
        }
    }

    /// Takes what reading one file gave.
    fn read(&mut self, path: PathBuf, scanned: Scanned, outcome: &mut Refresh) {
        let (digest, content) = match scanned {
            Scanned::Gone | Scanned::Unchanged | Scanned::Skipped => return,
            Scanned::Refused(e) => (None, Err(e)),
            Scanned::Parsed { digest, content } => {
                let content = content.map(|(targets, warnings)| {
                    outcome.warnings.extend(warnings);
                    targets
                });
                (Some(digest), content)
            }
        };
        let state = self
            .files
            .entry(path)
            .or_insert_with(|| FileState::new(Ok(Vec::new())));
        state.digest = digest;
        state.content = content;
    }

    /// Decides what is in force (see [`merge`]) and reports what changed.
    fn merge(&mut self, inline: &[TargetConfig], main_file: &Path, outcome: &mut Refresh) {
        let inline_labels: BTreeSet<&str> = inline
            .iter()
            .flat_map(|t| t.labels.keys().map(String::as_str))
            .collect();
        let inline: Vec<&str> = inline.iter().map(|t| t.name.as_str()).collect();
        let candidates: Vec<Candidate<'_>> = self
            .files
            .iter()
            .map(|(path, state)| candidate(path, state))
            .collect();
        let decisions = merge::merge(&inline, &inline_labels, main_file, &candidates);
        let chosen: Vec<(Vec<TargetConfig>, Option<ConfigError>)> = self
            .files
            .values()
            .zip(decisions)
            .map(|(state, decision)| (in_force(state, &decision), decision.refusal))
            .collect();
        for (state, (targets, refusal)) in self.files.values_mut().zip(chosen) {
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

    /// Whether every target the globs stand for is known: no file refused (nor gone and in its
    /// grace period), none past the cap.
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

/// What merging needs of one file: its new content unless it is invalid or gone.
fn candidate<'a>(path: &'a Path, state: &'a FileState) -> Candidate<'a> {
    let gone = state.missing_since.map(|_| ConfigError {
        file: path.to_path_buf(),
        line: None,
        field: String::new(),
        reason: "no glob matches it any more (deleted or moved?); its targets keep running for a grace period in case it comes back".to_string(),
    });
    let new = match (&state.content, &gone) {
        (Ok(targets), None) => Some(
            targets
                .iter()
                .map(|t| (t.config.name.as_str(), t.name_line))
                .collect(),
        ),
        _ => None,
    };
    let new_labels = match (&new, &state.content) {
        (Some(_), Ok(targets)) => targets
            .iter()
            .map(|t| t.config.labels.keys().map(String::as_str).collect())
            .collect(),
        _ => Vec::new(),
    };
    Candidate {
        path,
        new,
        new_labels,
        running: state.running.iter().map(|t| t.name.as_str()).collect(),
        running_labels: state
            .running
            .iter()
            .flat_map(|t| t.labels.keys().map(String::as_str))
            .collect(),
        refusal: gone.or_else(|| state.content.as_ref().err().cloned()),
    }
}

/// The targets a decision puts in force for a file.
fn in_force(state: &FileState, decision: &Decision) -> Vec<TargetConfig> {
    match (&state.content, decision.take_new) {
        (Ok(targets), true) => targets.iter().map(|t| t.config.clone()).collect(),
        (_, true) => Vec::new(),
        (_, false) => state
            .running
            .iter()
            .filter(|t| !decision.dropped.contains(&t.name))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests;
