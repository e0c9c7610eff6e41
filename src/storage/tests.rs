use super::*;
use crate::model::DeathCause;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    /// The state file here loads with `kept` entries used and `rejected` refused.
    fn assert_read(&self, kept: usize, rejected: usize) {
        assert_eq!(load(&self.file()).0, Loaded::Read { kept, rejected });
    }

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

fn measurement() -> StoredMeasurement {
    StoredMeasurement {
        lower: Some(Duration::from_millis(8_100)),
        upper: Some(Duration::from_millis(8_400)),
        drop_kind: Some(DeathCause::Timeout),
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
    let unfinished = StoredMeasurement {
        lower: Some(Duration::from_secs(3)),
        upper: None,
        drop_kind: None,
        keepalive_rescue: None,
        measured_at: UNIX_EPOCH + Duration::from_secs(1_795_622_401),
    };
    store.remember("billing", "other", unfinished.clone());

    dir.assert_read(2, 0);
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
fn drop_kinds_keep_the_text_exporters_before_and_after_this_one_read() {
    // Each kind as the earlier exporter wrote it (its `drop_kind` was the cause's text): read
    // back as the cause, and written again as the same text.
    let kinds = [
        ("timeout", DeathCause::Timeout),
        ("reset", DeathCause::Reset),
        ("eof", DeathCause::Eof),
        ("error", DeathCause::Error),
        (
            "server_terminated (57P05)",
            DeathCause::ServerTerminated {
                sqlstate: "57P05".to_string(),
            },
        ),
    ];
    for (text, cause) in kinds {
        let dir = TempDir::new("kinds");
        let old = GOOD.replace(
            "\"drop_kind\": \"timeout\"",
            &format!("\"drop_kind\": \"{text}\""),
        );
        dir.write(format!("{{\"version\": 1, \"targets\": {{{old}}}}}"));
        let store = Store::open(&dir.0).unwrap();
        let expected = StoredMeasurement {
            drop_kind: Some(cause),
            ..measurement()
        };
        assert_eq!(
            store.recall("orders-db", FP),
            Some(expected.clone()),
            "{text}"
        );
        store.remember("orders-db", FP, expected);
        let file: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dir.file()).unwrap()).unwrap();
        assert_eq!(file["targets"]["orders-db"]["drop_kind"], text, "{text}");
    }
    // A kind this exporter does not name (a later one's) leaves the measurement usable.
    let dir = TempDir::new("kinds");
    let later = GOOD.replace("\"timeout\"", "\"quantum_decay\"");
    dir.write(format!("{{\"version\": 1, \"targets\": {{{later}}}}}"));
    let expected = StoredMeasurement {
        drop_kind: None,
        ..measurement()
    };
    assert_eq!(
        Store::open(&dir.0).unwrap().recall("orders-db", FP),
        Some(expected)
    );
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
        let m = StoredMeasurement {
            lower: Some(lower),
            upper: Some(MAX_DURATION),
            drop_kind: None,
            keepalive_rescue: Some(false),
            measured_at: UNIX_EPOCH + Duration::new(1_795_622_400 + i as u64, 999_999_999),
        };
        store.remember(&format!("t{i}"), FP, m.clone());
        let stored = StoredMeasurement {
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
        let m = StoredMeasurement {
            measured_at: at,
            ..measurement()
        };
        store.remember(name, FP, m);
    }
    dir.assert_read(2, 0);
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
    dir.assert_read(2, 0);
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
        let m = StoredMeasurement {
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

/// The name earlier versions wrote through, with create + truncate: a symlink planted there
/// made the exporter empty the file it points to, then fill it with JSON.
const OLD_TEMP_NAME: &str = ".idle_drop_exporter.state.json.tmp";

#[cfg(unix)]
#[test]
fn a_symlink_at_the_old_temp_name_is_never_written_through() {
    let dir = TempDir::new("planted");
    let victims = TempDir::new("victim");
    let victim = victims.0.join("victim");
    fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, dir.0.join(OLD_TEMP_NAME)).unwrap();
    let store = Store::open(&dir.0).unwrap();
    store.remember("orders-db", FP, measurement());
    store.forget("orders-db");
    store.remember("billing", FP, measurement());
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert!(fs::symlink_metadata(dir.0.join(OLD_TEMP_NAME))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(dir.names(), [OLD_TEMP_NAME, FILE_NAME]);
    dir.assert_read(2, 0);
}

#[test]
fn a_leftover_temp_file_is_left_alone() {
    let dir = TempDir::new("leftover");
    fs::write(dir.0.join(OLD_TEMP_NAME), "half of a previous write").unwrap();
    let store = Store::open(&dir.0).unwrap();
    store.remember("orders-db", FP, measurement());
    assert_eq!(dir.names(), [OLD_TEMP_NAME, FILE_NAME]);
    dir.assert_read(1, 0);
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
    dir.assert_read(2, 0);
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
    dir.assert_read(1, 0);
}

/// A removed target's entry is kept for a day, marked `removed_at`, so the target resumes if
/// it comes back (a target file deleted and re-created, a torn rewrite, a rollback); a day
/// later it is dropped. Earlier versions dropped it at once.
#[test]
fn forgotten_and_unretained_entries_are_kept_for_a_day_then_dropped() {
    let dir = TempDir::new("forget");
    let store = Store::open(&dir.0).unwrap();
    for name in ["orders-db", "billing", "gone-while-down"] {
        store.remember(name, FP, measurement());
    }
    store.forget("orders-db");
    store.forget("never-stored");
    assert_eq!(store.recall("orders-db", FP), Some(measurement()));
    let restarted = Store::open(&dir.0).unwrap();
    assert_eq!(restarted.recall("orders-db", FP), Some(measurement()));
    assert_eq!(restarted.recall("billing", FP), Some(measurement()));
    restarted.retain(|name| name == "billing");
    let text = fs::read_to_string(dir.file()).unwrap();
    assert_eq!(text.matches("\"removed_at\"").count(), 2, "{text}");
    assert!(restarted.holds("gone-while-down", FP));

    // Back: no longer marked, so it is not dropped while it runs.
    restarted.revive("orders-db");
    let text = fs::read_to_string(dir.file()).unwrap();
    assert_eq!(text.matches("\"removed_at\"").count(), 1, "{text}");

    // Removed more than a day ago: not recalled, and gone from the file at the next write.
    let long_ago =
        humantime::format_rfc3339_seconds(SystemTime::now() - RETENTION - Duration::from_secs(60));
    let recent = humantime::format_rfc3339_seconds(SystemTime::now() - RETENTION / 2);
    dir.write(format!(
        r#"{{"version": 1, "targets": {{
          "old": {{"fingerprint": "{FP}", "lower_seconds": 8.1, "measured_at": "2026-11-25T16:00:00Z", "removed_at": "{long_ago}"}},
          "recent": {{"fingerprint": "{FP}", "lower_seconds": 8.1, "measured_at": "2026-11-25T16:00:00Z", "removed_at": "{recent}"}},
          "live": {{"fingerprint": "{FP}", "lower_seconds": 8.1, "measured_at": "2026-11-25T16:00:00Z"}}}}}}"#
    ));
    let reopened = Store::open(&dir.0).unwrap();
    assert_eq!(reopened.recall("old", FP), None);
    assert!(reopened.recall("recent", FP).is_some());
    reopened.remember("live", FP, measurement());
    let (_, entries) = load(&dir.file());
    assert_eq!(entries.keys().collect::<Vec<_>>(), ["live", "recent"]);
}

#[test]
fn the_memory_store_remembers_and_forgets_without_a_file() {
    let store = Store::memory();
    let shared = store.clone();
    shared.remember("orders-db", FP, measurement());
    assert_eq!(store.recall("orders-db", FP), Some(measurement()));
    assert_eq!(store.recall("orders-db", "changed"), None);
    store.forget("orders-db");
    assert_eq!(shared.recall("orders-db", FP), Some(measurement()));
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
                    let m = StoredMeasurement {
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
