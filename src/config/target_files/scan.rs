//! Reading the target files: what the globs match ([`walk`](super::walk)) and each file's
//! bytes, parsed and checked. It holds no state and reads no clock, so it can run on a worker
//! thread under a deadline (see `daemon/files.rs`); what it finds is applied by
//! [`TargetFiles::apply`](super::TargetFiles::apply). Each step is reported as it happens
//! ([`Event`]), so a scan cut short by its deadline still says which file it was reading.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ring::digest;

use super::super::{check_nesting, locate, raw, read_file, validate, yaml_error, ConfigError};
use super::walk::Walker;
use super::{TargetFilesConfig, MAX_TARGETS_PER_FILE, MAX_TARGET_FILES};
use crate::config::TargetConfig;

/// What the globs match now.
#[derive(Debug, Default)]
pub struct Listing {
    /// At most [`MAX_TARGET_FILES`], in path order.
    pub(super) files: Vec<PathBuf>,
    /// How many more matched beyond the cap.
    pub(super) over_limit: usize,
    /// Patterns that matched no file (likely a typo).
    pub(super) unmatched: Vec<String>,
    /// Folders the walk could not read, and a bound that stopped it.
    pub(super) problems: Vec<String>,
    /// False when the walk was cut short: a known file not listed may still be there.
    pub(super) complete: bool,
}

/// The files `patterns` match, but `main_file`: `*.yaml` next to `config.yaml` matches it too,
/// and it is no list of targets.
pub(super) fn list(patterns: &[String], main_file: &Path) -> Listing {
    let main_file = main_file.canonicalize().ok();
    let is_main = |path: &Path| main_file.is_some() && path.canonicalize().ok() == main_file;
    let mut found = BTreeSet::new();
    let mut listing = Listing::default();
    // Enough to know the cap is passed; a runaway glob is not walked to its end.
    let mut walker = Walker::new(MAX_TARGET_FILES * 2);
    for pattern in patterns {
        let mut matched = false;
        for path in walker.walk(pattern) {
            if !is_main(&path) {
                matched = true;
                found.insert(path);
            }
        }
        if !matched {
            listing.unmatched.push(pattern.clone());
        }
    }
    let walked = walker.finish();
    listing.problems = walked.problems;
    listing.complete = walked.complete && found.len() <= MAX_TARGET_FILES * 2;
    listing.over_limit = found.len().saturating_sub(MAX_TARGET_FILES);
    listing.files = found.into_iter().take(MAX_TARGET_FILES).collect();
    listing
}

/// One target of a file, with the line its name is on (for a name clash found later).
#[derive(Clone, Debug)]
pub struct FileTarget {
    pub(super) config: TargetConfig,
    pub(super) name_line: Option<usize>,
}

/// What reading one listed file gave.
#[derive(Debug)]
pub enum Scanned {
    /// Gone between the listing and the read.
    Gone,
    /// Its bytes are those of the last read, and the read was not forced: nothing to do.
    Unchanged,
    /// Not read this time (a scan still stuck on it); left as it was.
    Skipped,
    /// Unreadable.
    Refused(ConfigError),
    /// Read: the SHA-256 of its bytes, and the targets they give (with their warnings) or why
    /// they are refused.
    Parsed {
        digest: Vec<u8>,
        content: Result<(Vec<FileTarget>, Vec<String>), ConfigError>,
    },
}

/// One step of a scan, in order: the listing, then per file its start and its result.
#[derive(Debug)]
pub enum Event {
    Listed(Listing),
    Reading(PathBuf),
    File(PathBuf, Scanned),
}

/// What a scan found, collected from its [`Event`]s (all of them, or those before its deadline).
#[derive(Debug, Default)]
pub struct Scan {
    /// `None`: cut short before the listing was done.
    pub listing: Option<Listing>,
    pub files: Vec<(PathBuf, Scanned)>,
    /// The file being read when the scan was cut short.
    pub reading: Option<PathBuf>,
}

impl Scan {
    pub fn take(&mut self, event: Event) {
        match event {
            Event::Listed(listing) => self.listing = Some(listing),
            Event::Reading(path) => self.reading = Some(path),
            Event::File(path, scanned) => {
                self.reading = None;
                self.files.push((path, scanned));
            }
        }
    }
}

/// What a scan needs of the last one.
#[derive(Clone, Debug, Default)]
pub struct Known {
    /// SHA-256 of each file's bytes last read.
    pub(super) digests: BTreeMap<PathBuf, Vec<u8>>,
    /// Check every file again even when its bytes are the same (a reload: the files its
    /// targets name may have changed).
    pub force: bool,
    /// Files not to read: an earlier scan is still stuck on them.
    pub skip: BTreeSet<PathBuf>,
}

/// Lists the globs and reads every listed file (see [`Known`]), telling each step to `emit`;
/// stops as soon as `emit` says nobody listens any more (a scan past its deadline).
pub fn scan(
    config: &TargetFilesConfig,
    main_file: &Path,
    known: &Known,
    emit: &mut dyn FnMut(Event) -> bool,
) {
    let listing = list(&config.patterns, main_file);
    let files = listing.files.clone();
    if !emit(Event::Listed(listing)) {
        return;
    }
    for path in files {
        let listening = if known.skip.contains(&path) {
            emit(Event::File(path, Scanned::Skipped))
        } else {
            emit(Event::Reading(path.clone())) && {
                let scanned = scan_file(config, &path, known);
                emit(Event::File(path, scanned))
            }
        };
        if !listening {
            return;
        }
    }
}

fn scan_file(config: &TargetFilesConfig, path: &Path, known: &Known) -> Scanned {
    let bytes = match read_file(path, super::super::MAX_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Scanned::Gone,
        Err(e) => return Scanned::Refused(ConfigError::unreadable(path, e)),
    };
    let sum = digest::digest(&digest::SHA256, &bytes).as_ref().to_vec();
    if !known.force && known.digests.get(path) == Some(&sum) {
        return Scanned::Unchanged;
    }
    let content = match String::from_utf8(bytes) {
        Ok(text) => parse(config, path, &text),
        Err(_) => Err(ConfigError {
            file: path.to_path_buf(),
            line: None,
            field: String::new(),
            reason: "the file is not UTF-8 text".to_string(),
        }),
    };
    Scanned::Parsed {
        digest: sum,
        content,
    }
}

/// Parses and checks one target file's text: a YAML or JSON list of at most
/// [`MAX_TARGETS_PER_FILE`] targets.
pub(super) fn parse(
    config: &TargetFilesConfig,
    path: &Path,
    text: &str,
) -> Result<(Vec<FileTarget>, Vec<String>), ConfigError> {
    let refused = |reason: String| ConfigError {
        file: path.to_path_buf(),
        line: None,
        field: String::new(),
        reason,
    };
    if text.trim().is_empty() {
        return Err(refused(
            "the file is empty (a file without targets says [])".to_string(),
        ));
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
    if raw.len() > MAX_TARGETS_PER_FILE {
        return Err(refused(format!(
            "{} targets, more than {MAX_TARGETS_PER_FILE} in one file: split it",
            raw.len()
        )));
    }
    let (targets, warnings) =
        validate::target_list(path, text, raw, &config.allowed_dirs, config.missing_env)?;
    let lines = locate::item_key_lines(text, "name", targets.len());
    let targets = targets
        .into_iter()
        .zip(lines)
        .map(|(config, name_line)| FileTarget { config, name_line })
        .collect();
    Ok((targets, warnings))
}
