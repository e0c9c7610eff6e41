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
//! The file is a cache, never a reason not to run: a corrupt file, one from a newer exporter, or
//! a nonsense entry is ignored with a log line and replaced on the next write; a failed write is
//! logged and the measurement stays in memory. Writes are atomic (temp file in the same
//! directory, fsync, rename), so a crash leaves the old file or the new one, never half of one.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::MAX_DURATION;

/// The file's name inside `--storage.path`.
pub const FILE_NAME: &str = "idle_drop_exporter.state.json";
/// Where a write goes before it is renamed over [`FILE_NAME`]; hidden, and overwritten by the
/// next write if a crash left it behind.
const TEMP_NAME: &str = ".idle_drop_exporter.state.json.tmp";
/// The format this exporter writes and reads. A file with a higher version came from a newer
/// exporter (a rollback): its fields may mean something else, so it is not read at all.
const VERSION: u64 = 1;
/// The largest state file read; a few hundred bytes per target, so anything near this is not
/// ours.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// The last second humantime can write (end of year 9999); later clock readings are clamped.
const LAST_WRITABLE_SECOND: u64 = 253_402_300_800 - 1;

/// What a target's last measurement found.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    pub lower: Option<Duration>,
    pub upper: Option<Duration>,
    /// e.g. "timeout", "reset", "eof" (free text from the engine).
    pub drop_kind: Option<String>,
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
    measurement: Measurement,
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
    pub fn recall(&self, target: &str, fingerprint: &str) -> Option<Measurement> {
        let entries = self.inner.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get(target)?;
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
            .is_some_and(|entry| entry.fingerprint == fingerprint)
    }

    /// Stores `m` for `target` (in memory, and in the file if any). A failed write is logged
    /// (warn); the measurement stays in memory and the next write tries again.
    ///
    /// A measurement the file could not give back (see [`check`]) is refused with a warn line:
    /// it would be lost at the next restart anyway, and it means the caller has a bug.
    pub fn remember(&self, target: &str, fingerprint: &str, mut m: Measurement) {
        if let Err(reason) = check(&m) {
            tracing::warn!(target_name = %target, reason = %reason, "measurement not stored");
            return;
        }
        m.measured_at = whole_second(m.measured_at);
        let entry = Entry {
            fingerprint: fingerprint.to_string(),
            measurement: m,
        };
        self.change(|entries| entries.insert(target.to_string(), entry.clone()) != Some(entry));
    }

    /// Drops a target (removed from the configuration) so the file does not grow forever.
    pub fn forget(&self, target: &str) {
        self.change(|entries| entries.remove(target).is_some());
    }

    /// Drops every target for which `keep` is false: at start, the targets removed from the
    /// configuration while the exporter was not running (a reload's removals use [`forget`]).
    ///
    /// [`forget`]: Store::forget
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.change(|entries| {
            let before = entries.len();
            entries.retain(|name, _| keep(name));
            entries.len() != before
        });
    }

    /// Applies `edit` (which says whether it changed anything) and writes the file if so.
    fn change(&self, edit: impl FnOnce(&mut BTreeMap<String, Entry>) -> bool) {
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
    let probe = dir.join(TEMP_NAME);
    let tried = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe);
    let _ = fs::remove_file(&probe);
    tried
        .map(drop)
        .map_err(|e| format!("storage path {shown}: not writable ({e})"))
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drop_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keepalive_rescue: Option<bool>,
    measured_at: String,
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
    for (name, value) in targets {
        let entry = serde_json::from_value::<FileEntry>(value.clone())
            .map_err(|e| e.to_string())
            .and_then(decode);
        match entry {
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
    let measurement = Measurement {
        lower,
        upper,
        drop_kind: raw.drop_kind,
        keepalive_rescue: raw.keepalive_rescue,
        measured_at: whole_second(measured_at),
    };
    check(&measurement)?;
    Ok(Entry {
        fingerprint: raw.fingerprint,
        measurement,
    })
}

/// What a bracket must satisfy, written or read: bounds at most [`MAX_DURATION`], and the
/// longest idle that survived shorter than the shortest that died.
fn check(m: &Measurement) -> Result<(), String> {
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
                drop_kind: m.drop_kind.clone(),
                keepalive_rescue: m.keepalive_rescue,
                measured_at: humantime::format_rfc3339_seconds(whole_second(m.measured_at))
                    .to_string(),
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

/// Replaces `dir/FILE_NAME` with `bytes`: temp file in the same directory (a rename is atomic
/// only within one file system), fsync, rename over the old file, then fsync the directory so
/// the rename itself survives a power cut.
fn write_atomically(dir: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = dir.join(TEMP_NAME);
    let written = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, dir.join(FILE_NAME))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    // Best effort: the new file is already in place; some file systems refuse to sync a
    // directory, which is no reason to report the write as failed.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system's temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "idle-drop-storage-{tag}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn file(&self) -> PathBuf {
            self.0.join(FILE_NAME)
        }

        fn write(&self, text: impl AsRef<[u8]>) {
            fs::write(self.file(), text).unwrap();
        }

        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(&self.0)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const FP: &str = "0123456789abcdef0123456789abcdef";

    fn measurement() -> Measurement {
        Measurement {
            lower: Some(Duration::from_millis(8_100)),
            upper: Some(Duration::from_millis(8_400)),
            drop_kind: Some("timeout".to_string()),
            keepalive_rescue: Some(true),
            measured_at: UNIX_EPOCH + Duration::from_secs(1_795_622_400),
        }
    }

    /// One good entry, as this exporter writes it.
    const GOOD: &str = r#""orders-db": {"fingerprint": "0123456789abcdef0123456789abcdef",
        "lower_seconds": 8.1, "upper_seconds": 8.4, "drop_kind": "timeout",
        "keepalive_rescue": true, "measured_at": "2026-11-25T16:00:00Z"}"#;

    #[test]
    fn a_measurement_survives_a_restart() {
        let dir = TempDir::new("round-trip");
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(store.recall("orders-db", FP), None);
        store.remember("orders-db", FP, measurement());
        let unfinished = Measurement {
            lower: Some(Duration::from_secs(3)),
            upper: None,
            drop_kind: None,
            keepalive_rescue: None,
            measured_at: UNIX_EPOCH + Duration::from_secs(1_795_622_401),
        };
        store.remember("billing", "other", unfinished.clone());

        assert_eq!(
            load(&dir.file()).0,
            Loaded::Read {
                kept: 2,
                rejected: 0
            }
        );
        let restarted = Store::open(&dir.0).unwrap();
        assert_eq!(restarted.recall("orders-db", FP), Some(measurement()));
        assert_eq!(restarted.recall("billing", "other"), Some(unfinished));
        assert_eq!(restarted.recall("unknown", FP), None);
    }

    #[test]
    fn the_file_is_readable_json_in_the_documented_shape() {
        let dir = TempDir::new("shape");
        Store::open(&dir.0)
            .unwrap()
            .remember("orders-db", FP, measurement());
        let text = fs::read_to_string(dir.file()).unwrap();
        let file: serde_json::Value = serde_json::from_str(&text).unwrap();
        let expected: serde_json::Value =
            serde_json::from_str(&format!("{{\"version\": 1, \"targets\": {{{GOOD}}}}}")).unwrap();
        assert_eq!(file, expected, "{text}");
        assert!(text.lines().count() > 3, "one field a line: {text}");
    }

    #[test]
    fn durations_and_times_come_back_exactly() {
        let dir = TempDir::new("exact");
        let store = Store::open(&dir.0).unwrap();
        let durations = [
            Duration::from_nanos(1),
            Duration::new(8, 123_456_789),
            Duration::new(3_599, 999_999_999),
            MAX_DURATION - Duration::from_nanos(1),
        ];
        for (i, lower) in durations.into_iter().enumerate() {
            let m = Measurement {
                lower: Some(lower),
                upper: Some(MAX_DURATION),
                drop_kind: None,
                keepalive_rescue: Some(false),
                measured_at: UNIX_EPOCH + Duration::new(1_795_622_400 + i as u64, 999_999_999),
            };
            store.remember(&format!("t{i}"), FP, m.clone());
            let stored = Measurement {
                measured_at: UNIX_EPOCH + Duration::from_secs(1_795_622_400 + i as u64),
                ..m
            };
            // Memory and file agree: the time is kept to the second in both.
            assert_eq!(store.recall(&format!("t{i}"), FP), Some(stored.clone()));
            let restarted = Store::open(&dir.0).unwrap();
            assert_eq!(restarted.recall(&format!("t{i}"), FP), Some(stored));
        }
    }

    #[test]
    fn a_clock_outside_what_rfc3339_writes_does_not_panic() {
        let dir = TempDir::new("clock");
        let store = Store::open(&dir.0).unwrap();
        for (name, at) in [
            ("past", UNIX_EPOCH - Duration::from_secs(10)),
            ("future", UNIX_EPOCH + Duration::from_secs(400_000_000_000)),
        ] {
            let m = Measurement {
                measured_at: at,
                ..measurement()
            };
            store.remember(name, FP, m);
        }
        assert_eq!(
            load(&dir.file()).0,
            Loaded::Read {
                kept: 2,
                rejected: 0
            }
        );
    }

    #[test]
    fn another_fingerprint_is_not_recalled() {
        let dir = TempDir::new("fingerprint");
        let store = Store::open(&dir.0).unwrap();
        store.remember("orders-db", FP, measurement());
        assert_eq!(store.recall("orders-db", "changed"), None);
        let restarted = Store::open(&dir.0).unwrap();
        assert_eq!(restarted.recall("orders-db", "changed"), None);
        // Still there for the settings it belongs to (a reload may switch back).
        assert_eq!(restarted.recall("orders-db", FP), Some(measurement()));
    }

    #[test]
    fn an_unusable_file_is_ignored_and_then_replaced() {
        let huge = format!(
            "{{\"version\": 1, \"targets\": {{{GOOD}}}, \"padding\": \"{}\"}}",
            "x".repeat(MAX_FILE_BYTES as usize)
        );
        let cases: [(&str, &[u8], &str); 8] = [
            ("garbage", b"\x00\xff garbage \x01", "not JSON"),
            (
                "truncated",
                br#"{"version": 1, "targets": {"orders-db": {"fing"#,
                "not JSON",
            ),
            ("empty", b"", "not JSON"),
            ("huge", huge.as_bytes(), "larger than 1 MiB"),
            ("no version", br#"{"targets": {}}"#, "no `version`"),
            ("array", b"[1, 2]", "no `version`"),
            (
                "future",
                br#"{"version": 2, "targets": {}}"#,
                "newer exporter",
            ),
            (
                "targets",
                br#"{"version": 1, "targets": []}"#,
                "not an object",
            ),
        ];
        for (tag, text, why) in cases {
            let dir = TempDir::new("unusable");
            dir.write(text);
            match load(&dir.file()) {
                (Loaded::Ignored(reason), entries) => {
                    assert!(reason.contains(why), "{tag}: {reason}");
                    assert!(entries.is_empty(), "{tag}");
                }
                other => panic!("{tag}: {other:?}"),
            }
            let store = Store::open(&dir.0).unwrap();
            assert_eq!(store.recall("orders-db", FP), None, "{tag}");
            store.remember("orders-db", FP, measurement());
            assert_eq!(
                load(&dir.file()).0,
                Loaded::Read {
                    kept: 1,
                    rejected: 0
                },
                "{tag}"
            );
        }
    }

    #[test]
    fn a_file_from_a_newer_exporter_is_not_read_even_if_its_entries_look_fine() {
        let dir = TempDir::new("future");
        dir.write(format!("{{\"version\": 2, \"targets\": {{{GOOD}}}}}"));
        assert!(matches!(load(&dir.file()).0, Loaded::Ignored(_)));
        assert_eq!(Store::open(&dir.0).unwrap().recall("orders-db", FP), None);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let dir = TempDir::new("unknown");
        let good = GOOD.replace("\"drop_kind\"", "\"added_later\": [1, {}], \"drop_kind\"");
        dir.write(format!(
            "{{\"version\": 1, \"written_by\": \"0.2.0\", \"targets\": {{{good}}}}}"
        ));
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(store.recall("orders-db", FP), Some(measurement()));
    }

    #[test]
    fn nonsense_entries_are_dropped_and_the_rest_kept() {
        let entry = |name: &str, fields: &str| {
            format!("\"{name}\": {{\"fingerprint\": \"{FP}\", \"measured_at\": \"2026-11-25T16:00:00Z\", {fields}}}")
        };
        let bad = [
            entry("negative", "\"lower_seconds\": -1.0"),
            entry("inverted", "\"lower_seconds\": 9, \"upper_seconds\": 8.4"),
            entry("equal", "\"lower_seconds\": 8.4, \"upper_seconds\": 8.4"),
            entry("absurd", "\"upper_seconds\": 2592001"),
            entry("string", "\"upper_seconds\": \"8s\""),
            entry("kind", "\"drop_kind\": 3"),
            "\"no-time\": {\"fingerprint\": \"x\", \"lower_seconds\": 1}".to_string(),
            "\"bad-time\": {\"fingerprint\": \"x\", \"measured_at\": \"yesterday\"}".to_string(),
            "\"no-fingerprint\": {\"measured_at\": \"2026-11-25T16:00:00Z\"}".to_string(),
            "\"not-an-object\": 8.1".to_string(),
        ];
        let dir = TempDir::new("nonsense");
        dir.write(format!(
            "{{\"version\": 1, \"targets\": {{{GOOD}, {}}}}}",
            bad.join(", ")
        ));
        let (loaded, entries) = load(&dir.file());
        assert_eq!(
            loaded,
            Loaded::Read {
                kept: 1,
                rejected: bad.len()
            }
        );
        assert_eq!(entries.keys().collect::<Vec<_>>(), ["orders-db"]);

        // The next write leaves them out.
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(store.recall("negative", FP), None);
        store.remember("billing", FP, measurement());
        assert_eq!(
            load(&dir.file()).0,
            Loaded::Read {
                kept: 2,
                rejected: 0
            }
        );
    }

    #[test]
    fn seconds_are_checked() {
        let check = seconds("x");
        assert_eq!(check(0.0), Ok(Duration::ZERO));
        assert_eq!(check(8.1), Ok(Duration::from_millis(8_100)));
        assert_eq!(check(MAX_DURATION.as_secs_f64()), Ok(MAX_DURATION));
        for nonsense in [
            -0.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            2_592_000.001,
        ] {
            assert!(check(nonsense).is_err(), "{nonsense}");
        }
    }

    #[test]
    fn a_measurement_that_could_not_be_read_back_is_not_stored() {
        let dir = TempDir::new("refused-measurement");
        let store = Store::open(&dir.0).unwrap();
        for (lower, upper) in [(9, 8), (8, 8), (1, 2_592_001)] {
            let m = Measurement {
                lower: Some(Duration::from_secs(lower)),
                upper: Some(Duration::from_secs(upper)),
                ..measurement()
            };
            store.remember("orders-db", FP, m);
            assert_eq!(store.recall("orders-db", FP), None, "{lower} {upper}");
        }
        assert_eq!(dir.names(), Vec::<String>::new());
    }

    #[test]
    fn a_write_leaves_no_temp_file_behind() {
        let dir = TempDir::new("atomic");
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(dir.names(), Vec::<String>::new());
        store.remember("orders-db", FP, measurement());
        store.remember("orders-db", FP, measurement());
        store.remember("billing", FP, measurement());
        assert_eq!(dir.names(), [FILE_NAME]);
    }

    #[test]
    fn a_leftover_temp_file_is_overwritten() {
        let dir = TempDir::new("leftover");
        fs::write(dir.0.join(TEMP_NAME), "half of a previous write").unwrap();
        let store = Store::open(&dir.0).unwrap();
        store.remember("orders-db", FP, measurement());
        assert_eq!(dir.names(), [FILE_NAME]);
        assert_eq!(
            load(&dir.file()).0,
            Loaded::Read {
                kept: 1,
                rejected: 0
            }
        );
    }

    #[test]
    fn a_failed_write_keeps_the_measurement_in_memory() {
        let dir = TempDir::new("failed-write");
        let store = Store::open(&dir.0).unwrap();
        fs::remove_dir_all(&dir.0).unwrap();
        store.remember("orders-db", FP, measurement());
        assert_eq!(store.recall("orders-db", FP), Some(measurement()));
        // The next write, once the directory is back, has everything.
        fs::create_dir_all(&dir.0).unwrap();
        store.remember("billing", FP, measurement());
        assert_eq!(
            load(&dir.file()).0,
            Loaded::Read {
                kept: 2,
                rejected: 0
            }
        );
    }

    #[test]
    fn a_path_that_is_not_a_writable_directory_is_refused_by_name() {
        let dir = TempDir::new("refused");
        let missing = dir.0.join("missing");
        let e = Store::open(&missing).unwrap_err();
        assert!(e.contains(&missing.display().to_string()), "{e}");

        let file = dir.0.join("a-file");
        fs::write(&file, "").unwrap();
        let e = Store::open(&file).unwrap_err();
        assert!(e.contains(&file.display().to_string()), "{e}");
        assert!(e.contains("not a directory"), "{e}");

        let state_is_a_dir = TempDir::new("state-dir");
        fs::create_dir(state_is_a_dir.file()).unwrap();
        let e = Store::open(&state_is_a_dir.0).unwrap_err();
        assert!(e.contains(FILE_NAME), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_state_file_that_is_not_a_regular_file_is_ignored_then_replaced() {
        let dir = TempDir::new("symlink");
        std::os::unix::fs::symlink("/dev/zero", dir.file()).unwrap();
        assert_eq!(
            load(&dir.file()).0,
            Loaded::Ignored("not a regular file".to_string())
        );
        let store = Store::open(&dir.0).unwrap();
        store.remember("orders-db", FP, measurement());
        assert!(fs::symlink_metadata(dir.file()).unwrap().is_file());
        assert_eq!(
            load(&dir.file()).0,
            Loaded::Read {
                kept: 1,
                rejected: 0
            }
        );
    }

    #[test]
    fn forget_and_retain_remove_entries_from_the_file() {
        let dir = TempDir::new("forget");
        let store = Store::open(&dir.0).unwrap();
        for name in ["orders-db", "billing", "gone-while-down"] {
            store.remember(name, FP, measurement());
        }
        store.forget("orders-db");
        store.forget("never-stored");
        assert_eq!(store.recall("orders-db", FP), None);
        let restarted = Store::open(&dir.0).unwrap();
        assert_eq!(restarted.recall("orders-db", FP), None);
        assert_eq!(restarted.recall("billing", FP), Some(measurement()));

        restarted.retain(|name| name == "billing");
        let (_, entries) = load(&dir.file());
        assert_eq!(entries.keys().collect::<Vec<_>>(), ["billing"]);
    }

    #[test]
    fn the_memory_store_remembers_and_forgets_without_a_file() {
        let store = Store::memory();
        let shared = store.clone();
        shared.remember("orders-db", FP, measurement());
        assert_eq!(store.recall("orders-db", FP), Some(measurement()));
        assert_eq!(store.recall("orders-db", "changed"), None);
        store.forget("orders-db");
        assert_eq!(shared.recall("orders-db", FP), None);
    }

    #[test]
    fn concurrent_writers_leave_the_latest_state() {
        let dir = TempDir::new("concurrent");
        let store = Store::open(&dir.0).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for j in 0..10 {
                        let m = Measurement {
                            lower: Some(Duration::from_secs(j)),
                            upper: Some(Duration::from_secs(10)),
                            ..measurement()
                        };
                        store.remember(&format!("t{i}"), FP, m);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let restarted = Store::open(&dir.0).unwrap();
        for i in 0..8 {
            let m = restarted.recall(&format!("t{i}"), FP).unwrap();
            assert_eq!(m.lower, Some(Duration::from_secs(9)));
        }
        assert_eq!(dir.names(), [FILE_NAME]);
    }
}
