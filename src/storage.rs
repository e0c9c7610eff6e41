//! The state file: each target's last measurement, kept so that a restarted exporter (a
//! Kubernetes pod on every rollout) resumes from it instead of spending another 2×T measuring
//! from zero.
//!
//! One JSON file, `DIR/idle_drop_exporter.state.json`, human-readable:
//!
//! ```json
//! {"version": 1, "targets": {"orders-db": {"fingerprint": "…", "lower_seconds": 8.1,
//!   "upper_seconds": 8.4, "drop_kind": "timeout", "keepalive_rescue": true,
//!   "measured_at": "2026-11-25T16:00:00Z"}}}
//! ```
//!
//! A measurement belongs to a network path, so each entry carries the target's
//! [`fingerprint`](crate::config::TargetConfig::fingerprint) (a digest that leaves out the
//! password): an entry whose path settings changed is not used. Nothing secret is written.
//!
//! A target removed from the configuration (or from a target file that vanished or was cut
//! short) keeps its entry for [`RETENTION`], marked `removed_at`: if the target comes back
//! within that day (a file re-created, a bad deploy rolled back) it resumes from it. Older
//! removed entries are dropped at the next write.
//!
//! The file is a cache, never a reason not to run: a corrupt file, one from a newer exporter, or
//! a nonsense entry is ignored with a log line and replaced on the next write; a failed write is
//! logged and the measurement stays in memory. Writes are atomic (a fresh temp file in the same
//! directory, fsync, rename), so a crash leaves the old file or the new one, never half of one.
//! The temp file gets a new random name for each write and is created exclusively (`tempfile`),
//! so nothing planted in the directory (a symlink to another file) is ever opened for writing.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::MAX_DURATION;
use crate::model::DeathCause;

/// The file's name inside `--storage.path`.
pub const FILE_NAME: &str = "idle_drop_exporter.state.json";
/// The lock file inside `--storage.path` (see [`lock`]); hidden, empty.
pub const LOCK_NAME: &str = ".idle_drop_exporter.lock";
/// How the temp file a write goes through starts (a random suffix follows); hidden. One a crash
/// left behind is never reused: each write creates a new one.
const TEMP_PREFIX: &str = ".idle_drop_exporter.state.";
/// The format this exporter writes and reads. A file with a higher version came from a newer
/// exporter (a rollback): its fields may mean something else, so it is not read at all.
const VERSION: u64 = 1;
/// The largest state file read; a few hundred bytes per target, so anything near this is not
/// ours.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// How long the entry of a removed target is kept, for the target to resume if it comes back.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// The last second humantime can write (end of year 9999); later clock readings are clamped.
const LAST_WRITABLE_SECOND: u64 = 253_402_300_800 - 1;

/// What a target's last measurement found.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMeasurement {
    pub lower: Option<Duration>,
    pub upper: Option<Duration>,
    /// How connections died on this path (the page's "stored" drop until the run sees deaths
    /// of its own). Written as its text (`timeout`, `server_terminated (57P05)`, ...).
    pub drop_kind: Option<DeathCause>,
    /// Some(true): TCP keepalives rescued an idle connection (the box counts packets).
    pub keepalive_rescue: Option<bool>,
    /// Kept to the second (the file's resolution), in memory too, so that what [`Store::recall`]
    /// returns does not depend on whether the process restarted in between.
    pub measured_at: SystemTime,
}

/// Measurements per target name, kept in memory and, with `--storage.path`, in a file.
/// Cheap to clone (an `Arc` inside): one store is shared by all targets' engines.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// The directory holding [`FILE_NAME`]; `None`: memory only.
    dir: Option<PathBuf>,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Held for a whole write (snapshot, temp file, fsync, rename), so writes happen one at a
    /// time and each one's snapshot includes every earlier change: the file never goes back to
    /// an older state. `entries` is only held while taking the snapshot, so `recall` never
    /// waits for the disk.
    writing: Mutex<()>,
}

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    fingerprint: String,
    measurement: StoredMeasurement,
    /// When its target was removed (to the second); `None` while it is configured.
    removed_at: Option<SystemTime>,
}

impl Entry {
    /// Still worth keeping at `now`: configured, or removed less than [`RETENTION`] ago.
    fn kept(&self, now: SystemTime) -> bool {
        self.removed_at.is_none_or(|removed| {
            now.duration_since(removed).is_ok_and(|ago| ago < RETENTION) || now < removed
        })
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Remembers measurements only while the process runs (a target restarted by a reload
    /// still finds its own).
    pub fn memory() -> Store {
        Store::with(None, BTreeMap::new())
    }

    /// Opens `DIR/idle_drop_exporter.state.json` (created on the first write). `Err`, naming
    /// the path, when `dir` does not exist or is not a writable directory: that is a mistake
    /// in the flag, better refused at start than found after a 2×T measurement was lost. A
    /// corrupt file, or one from a newer exporter, is ignored with one warn line and the store
    /// starts empty.
    pub fn open(dir: &Path) -> Result<Store, String> {
        check_dir(dir)?;
        let path = dir.join(FILE_NAME);
        let (loaded, entries) = load(&path);
        match &loaded {
            Loaded::Fresh => {
                tracing::info!(file = %path.display(), "no state file yet; targets measure from zero")
            }
            Loaded::Read { kept, rejected } => {
                tracing::info!(file = %path.display(), measurements = kept, rejected, "state file read")
            }
            Loaded::Ignored(reason) => tracing::warn!(
                file = %path.display(),
                reason = %reason,
                "state file ignored; targets measure from zero and the file is replaced on the next write"
            ),
        }
        Ok(Store::with(Some(dir.to_path_buf()), entries))
    }

    fn with(dir: Option<PathBuf>, entries: BTreeMap<String, Entry>) -> Store {
        Store {
            inner: Arc::new(Inner {
                dir,
                entries: Mutex::new(entries),
                writing: Mutex::new(()),
            }),
        }
    }

    /// The stored measurement for `target` if its fingerprint matches; one with a different
    /// fingerprint belongs to other path settings and is ignored (one info line, `None`).
    pub fn recall(&self, target: &str, fingerprint: &str) -> Option<StoredMeasurement> {
        let entries = self.inner.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(target).filter(|e| e.kept(SystemTime::now()))?;
        if entry.fingerprint != fingerprint {
            tracing::info!(
                target_name = %target,
                "stored measurement not used: path settings changed; measuring again"
            );
            return None;
        }
        Some(entry.measurement.clone())
    }

    /// Whether [`Store::recall`] would return a measurement, without its log line.
    pub fn holds(&self, target: &str, fingerprint: &str) -> bool {
        let entries = self.inner.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(target)
            .is_some_and(|entry| entry.fingerprint == fingerprint && entry.kept(SystemTime::now()))
    }

    /// Stores `m` for `target` (in memory, and in the file if any). A failed write is logged
    /// (warn); the measurement stays in memory and the next write tries again.
    ///
    /// A measurement the file could not give back (see [`check`]) is refused with a warn line:
    /// it would be lost at the next restart anyway, and it means the caller has a bug.
    pub fn remember(&self, target: &str, fingerprint: &str, mut m: StoredMeasurement) {
        if let Err(reason) = check(&m) {
            tracing::warn!(target_name = %target, reason = %reason, "measurement not stored");
            return;
        }
        m.measured_at = whole_second(m.measured_at);
        let entry = Entry {
            fingerprint: fingerprint.to_string(),
            measurement: m,
            removed_at: None,
        };
        self.change(|entries| entries.insert(target.to_string(), entry.clone()) != Some(entry));
    }

    /// Marks a target removed from the configuration: its entry is kept for [`RETENTION`] (for
    /// the target to resume if it comes back), then dropped so the file does not grow forever.
    pub fn forget(&self, target: &str) {
        let now = whole_second(SystemTime::now());
        self.change(|entries| match entries.get_mut(target) {
            Some(entry) if entry.removed_at.is_none() => {
                entry.removed_at = Some(now);
                true
            }
            _ => false,
        });
    }

    /// [`forget`]s every target for which `keep` is false: at start, the targets removed from
    /// the configuration while the exporter was not running (a reload's removals use `forget`).
    ///
    /// [`forget`]: Store::forget
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let now = whole_second(SystemTime::now());
        self.change(|entries| {
            let mut changed = false;
            for (name, entry) in entries.iter_mut() {
                if entry.removed_at.is_none() && !keep(name) {
                    entry.removed_at = Some(now);
                    changed = true;
                }
            }
            changed
        });
    }

    /// A target is configured (again): its entry, if any, is no longer marked removed, so it
    /// is not dropped a day later while the target runs.
    pub fn revive(&self, target: &str) {
        self.change(|entries| match entries.get_mut(target) {
            Some(entry) if entry.removed_at.is_some() => {
                entry.removed_at = None;
                true
            }
            _ => false,
        });
    }

    /// Applies `edit` (which says whether it changed anything), drops the entries of targets
    /// removed more than [`RETENTION`] ago, and writes the file if anything changed.
    fn change(&self, edit: impl FnOnce(&mut BTreeMap<String, Entry>) -> bool) {
        let edit = |entries: &mut BTreeMap<String, Entry>| {
            let changed = edit(entries);
            let before = entries.len();
            let now = SystemTime::now();
            entries.retain(|_, entry| entry.kept(now));
            changed || entries.len() != before
        };
        let Some(dir) = &self.inner.dir else {
            edit(&mut self.inner.entries.lock().unwrap_or_else(|e| e.into_inner()));
            return;
        };
        let _writing = self.inner.writing.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = {
            let mut entries = self.inner.entries.lock().unwrap_or_else(|e| e.into_inner());
            if !edit(&mut entries) {
                return;
            }
            encode(&entries)
        };
        if let Err(e) = write_atomically(dir, &bytes) {
            tracing::warn!(
                file = %dir.join(FILE_NAME).display(),
                error = %e,
                "cannot write the state file; measurements are kept in memory only until a write succeeds"
            );
        }
    }
}

/// Refuses a `--storage.path` that is not an existing, writable directory. Writability is
/// tried, not guessed from permission bits (a read-only mount, root, ACLs).
fn check_dir(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    let meta = fs::metadata(dir).map_err(|e| format!("storage path {shown}: {e}"))?;
    if !meta.is_dir() {
        return Err(format!("storage path {shown}: not a directory"));
    }
    let path = dir.join(FILE_NAME);
    if fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_dir()) {
        // Every write's rename over it would fail (anything else there is replaced).
        return Err(format!("{}: is a directory", path.display()));
    }
    // A fresh temp file, removed when dropped, like every write's.
    temp_file(dir)
        .map(drop)
        .map_err(|e| format!("storage path {shown}: not writable ({e})"))
}

/// The storage directory, held by one exporter: released when dropped (or when the process
/// ends, however it ends: the kernel drops a flock with its last descriptor).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Locks `dir` for this exporter, so that a second one started on the same `--storage.path`
/// refuses to start instead of silently overwriting the first one's entries (each writes its
/// own targets' measurements and drops the others'). An exclusive `flock` on
/// `DIR/.idle_drop_exporter.lock` (created if missing, never truncated or followed if it is a
/// symlink; a lock file rather than the directory itself because NFS, where flock becomes a
/// byte-range lock, only grants one on a file open for writing).
pub fn lock(dir: &Path) -> Result<DirLock, String> {
    use rustix::fs::{flock, FlockOperation};
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(LOCK_NAME);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .map_err(|e| {
            format!(
                "storage path {}: cannot open its lock file {}: {e}",
                dir.display(),
                path.display()
            )
        })?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(format!(
            "storage path {}: in use by another idle_drop_exporter (it holds the lock on {}); give each exporter its own --storage.path",
            dir.display(),
            path.display()
        )),
        Err(e) => Err(format!(
            "storage path {}: cannot lock {}: {e}",
            dir.display(),
            path.display()
        )),
    }
}

/// How opening a store went: what [`Store::open`] logs, returned so tests can check it.
#[derive(Debug, PartialEq)]
enum Loaded {
    /// No file yet.
    Fresh,
    /// Read; `rejected` entries held nonsense and were dropped (one log line each).
    Read { kept: usize, rejected: usize },
    /// Unreadable, corrupt, or from a newer exporter: why.
    Ignored(String),
}

/// One entry as written in the file. Unknown fields are ignored (a later exporter of the same
/// version may add some); missing optional ones are `None`.
#[derive(Serialize, Deserialize)]
struct FileEntry {
    fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lower_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upper_seconds: Option<f64>,
    /// [`DeathCause`]'s text, as exporters before and after this one read and write it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drop_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keepalive_rescue: Option<bool>,
    measured_at: String,
    /// Set while its target is removed (see [`RETENTION`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    removed_at: Option<String>,
}

#[derive(Serialize)]
struct FileOut<'a> {
    version: u64,
    targets: BTreeMap<&'a str, FileEntry>,
}

/// Reads the state file at `path`. Never fails: whatever cannot be used is reported in
/// [`Loaded`] (the whole file) or logged (one entry).
fn load(path: &Path) -> (Loaded, BTreeMap<String, Entry>) {
    let bytes = match crate::config::read_file(path, MAX_FILE_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (Loaded::Fresh, BTreeMap::new()),
        Err(e) => return (Loaded::Ignored(e.to_string()), BTreeMap::new()),
    };
    let ignored = |reason: String| (Loaded::Ignored(reason), BTreeMap::new());
    let file: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(file) => file,
        Err(e) => return ignored(format!("not JSON ({e})")),
    };
    match file.get("version").and_then(serde_json::Value::as_u64) {
        None => return ignored("no `version` number".to_string()),
        Some(v) if v > VERSION => {
            return ignored(format!(
                "format version {v}, written by a newer exporter (this one reads {VERSION})"
            ))
        }
        Some(VERSION) => {}
        Some(v) => return ignored(format!("unknown format version {v}")),
    }
    let targets = match file.get("targets") {
        None => {
            return (
                Loaded::Read {
                    kept: 0,
                    rejected: 0,
                },
                BTreeMap::new(),
            )
        }
        Some(serde_json::Value::Object(targets)) => targets,
        Some(_) => return ignored("`targets` is not an object".to_string()),
    };
    let mut entries = BTreeMap::new();
    let mut rejected = 0;
    let now = SystemTime::now();
    for (name, value) in targets {
        let entry = serde_json::from_value::<FileEntry>(value.clone())
            .map_err(|e| e.to_string())
            .and_then(decode);
        match entry {
            // Removed more than a day ago: dropped at the next write.
            Ok(entry) if !entry.kept(now) => {}
            Ok(entry) => {
                entries.insert(name.clone(), entry);
            }
            Err(reason) => {
                rejected += 1;
                tracing::warn!(
                    file = %path.display(),
                    target_name = %name,
                    reason = %reason,
                    "stored measurement ignored; that target measures from zero"
                );
            }
        }
    }
    let kept = entries.len();
    (Loaded::Read { kept, rejected }, entries)
}

/// Checks one entry read from the file: what this exporter could have written, or an error.
fn decode(raw: FileEntry) -> Result<Entry, String> {
    let lower = raw
        .lower_seconds
        .map(seconds("lower_seconds"))
        .transpose()?;
    let upper = raw
        .upper_seconds
        .map(seconds("upper_seconds"))
        .transpose()?;
    let measured_at = humantime::parse_rfc3339(&raw.measured_at)
        .map_err(|e| format!("measured_at `{}`: {e}", raw.measured_at))?;
    let removed_at = raw
        .removed_at
        .as_deref()
        .map(|text| {
            humantime::parse_rfc3339(text)
                .map(whole_second)
                .map_err(|e| format!("removed_at `{text}`: {e}"))
        })
        .transpose()?;
    // A kind this exporter does not name (a later one's) reads as none: the bracket is what
    // matters, and the next measurement of the path writes a kind again.
    let drop_kind = raw.drop_kind.as_deref().and_then(DeathCause::parse);
    let measurement = StoredMeasurement {
        lower,
        upper,
        drop_kind,
        keepalive_rescue: raw.keepalive_rescue,
        measured_at: whole_second(measured_at),
    };
    check(&measurement)?;
    Ok(Entry {
        fingerprint: raw.fingerprint,
        measurement,
        removed_at,
    })
}

/// What a bracket must satisfy, written or read: bounds at most [`MAX_DURATION`], and the
/// longest idle that survived shorter than the shortest that died.
fn check(m: &StoredMeasurement) -> Result<(), String> {
    for (field, bound) in [("lower", m.lower), ("upper", m.upper)] {
        if bound.is_some_and(|d| d > MAX_DURATION) {
            return Err(format!(
                "{field} is longer than {}",
                humantime::format_duration(MAX_DURATION)
            ));
        }
    }
    if let (Some(lower), Some(upper)) = (m.lower, m.upper) {
        if lower >= upper {
            return Err(format!(
                "lower ({}s) is not below upper ({}s)",
                lower.as_secs_f64(),
                upper.as_secs_f64()
            ));
        }
    }
    Ok(())
}

/// A field in seconds as a duration: finite, not negative, at most [`MAX_DURATION`]. Rounded
/// to the nanosecond, so every duration up to `MAX_DURATION` survives the trip through `f64`
/// unchanged (a nanosecond there is still two ULPs).
fn seconds(field: &'static str) -> impl Fn(f64) -> Result<Duration, String> {
    move |s| {
        if !s.is_finite() || s < 0.0 || s > MAX_DURATION.as_secs_f64() {
            return Err(format!(
                "{field} ({s}) is not between 0 and {} seconds",
                MAX_DURATION.as_secs()
            ));
        }
        let whole = s.trunc();
        let nanos = ((s - whole) * 1e9).round() as u64;
        Ok(Duration::from_secs(whole as u64) + Duration::from_nanos(nanos))
    }
}

/// `t` truncated to the second, within what RFC 3339 with four-digit years can write
/// (humantime panics outside it; a broken clock must not take the daemon down).
fn whole_second(t: SystemTime) -> SystemTime {
    let seconds = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .min(LAST_WRITABLE_SECOND);
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn encode(entries: &BTreeMap<String, Entry>) -> Vec<u8> {
    let targets = entries
        .iter()
        .map(|(name, entry)| {
            let m = &entry.measurement;
            let raw = FileEntry {
                fingerprint: entry.fingerprint.clone(),
                lower_seconds: m.lower.map(|d| d.as_secs_f64()),
                upper_seconds: m.upper.map(|d| d.as_secs_f64()),
                drop_kind: m.drop_kind.as_ref().map(DeathCause::to_string),
                keepalive_rescue: m.keepalive_rescue,
                measured_at: humantime::format_rfc3339_seconds(whole_second(m.measured_at))
                    .to_string(),
                removed_at: entry
                    .removed_at
                    .map(|t| humantime::format_rfc3339_seconds(whole_second(t)).to_string()),
            };
            (name.as_str(), raw)
        })
        .collect();
    let file = FileOut {
        version: VERSION,
        targets,
    };
    let mut bytes = serde_json::to_vec_pretty(&file).expect("strings, numbers and booleans");
    bytes.push(b'\n');
    bytes
}

/// A new temp file in `dir`: a random name, created exclusively (`O_EXCL`, so a symlink or
/// anything else already at that name is never opened), readable by its owner only; removed
/// when dropped unless persisted.
fn temp_file(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(".tmp")
        .tempfile_in(dir)
}

/// Replaces `dir/FILE_NAME` with `bytes`: a fresh temp file in the same directory (a rename is
/// atomic only within one file system), fsync, rename over the old file, then fsync the
/// directory so the rename itself survives a power cut. A failed write removes its temp file.
fn write_atomically(dir: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp = temp_file(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(dir.join(FILE_NAME)).map_err(|e| e.error)?;
    // Best effort: the new file is already in place; some file systems refuse to sync a
    // directory, which is no reason to report the write as failed.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests;
