//! Target files against real files in a scratch folder: globs, both formats, refusals that keep
//! the last good targets, name clashes, sizes, and files a target names.

use super::*;
use crate::config::locate::{self, Step};
use crate::config::{parse, Config};

/// A fresh folder for one test (`tag` keeps tests apart; the pid keeps runs apart).
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("idle-drop-tf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("targets")).unwrap();
    dir
}

fn target(name: &str) -> String {
    format!("- name: {name}\n  dsn: postgres://probe@127.0.0.1:1/postgres\n")
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

/// The configuration `dir/config.yaml` with `body`, parsed.
fn config(dir: &Path, body: &str) -> Config {
    let path = dir.join("config.yaml");
    std::fs::write(&path, body).unwrap();
    parse(&path, body).unwrap()
}

const GLOBS: &str = "target_files: [\"targets/*.yaml\", \"targets/*.json\"]\n";

struct Files {
    config: Config,
    main: PathBuf,
    files: TargetFiles,
}

impl Files {
    fn new(dir: &Path, body: &str) -> Files {
        Files {
            config: config(dir, body),
            main: dir.join("config.yaml"),
            files: TargetFiles::default(),
        }
    }

    fn refresh(&mut self, force: bool) -> Refresh {
        self.files.refresh(
            &self.config.target_files,
            &self.config.targets,
            &self.main,
            force,
        )
    }

    /// A periodic refresh at `now`.
    fn refresh_at(&mut self, now: Instant) -> Refresh {
        let mut found = Scan::default();
        let known = self.files.known(false);
        scan(&self.config.target_files, &self.main, &known, &mut |e| {
            found.take(e);
            true
        });
        self.files.apply(
            &self.config.target_files,
            &self.config.targets,
            &self.main,
            found,
            now,
        )
    }

    /// Names in force, from the files, in path order.
    fn names(&self) -> Vec<&str> {
        self.files.targets().map(|t| t.name.as_str()).collect()
    }

    /// (file name, ok, targets) per matched file.
    fn status(&self) -> Vec<(String, bool, usize)> {
        self.files
            .files()
            .map(|f| {
                let name = f.path.file_name().unwrap().to_string_lossy().to_string();
                (name, f.ok, f.targets)
            })
            .collect()
    }
}

#[test]
fn globs_are_relative_to_the_config_file_and_read_yaml_and_json() {
    // A `[` in the folder's own name is no glob.
    let dir = scratch("globs-[x]");
    write(
        &dir,
        "targets/a.yaml",
        &format!("{}{}", target("a1"), target("a2")),
    );
    write(
        &dir,
        "targets/b.json",
        "[\n  {\"name\": \"b1\", \"dsn\": \"postgres://probe@127.0.0.1:1/postgres\"}\n]\n",
    );
    // Not matched: a hidden file (an editor's), another extension, a subfolder's file.
    write(&dir, "targets/.a.yaml.swp", &target("hidden"));
    write(&dir, "targets/notes.txt", &target("txt"));
    std::fs::create_dir_all(dir.join("targets/sub")).unwrap();
    write(&dir, "targets/sub/c.yaml", &target("deep"));

    let mut files = Files::new(&dir, GLOBS);
    assert!(files.config.targets.is_empty(), "no inline target needed");
    assert_eq!(
        files.config.target_files.refresh_interval,
        Duration::from_secs(30)
    );
    let first = files.refresh(false);
    assert!(first.changed && first.refused.is_empty(), "{first:?}");
    assert_eq!(files.names(), ["a1", "a2", "b1"]);
    assert_eq!(
        files.status(),
        [("a.yaml".into(), true, 2), ("b.json".into(), true, 1)]
    );
    // Label values are the paths as matched: the config's folder joined with the glob.
    let paths: Vec<PathBuf> = files.files.files().map(|f| f.path.to_path_buf()).collect();
    assert_eq!(paths[0], dir.join("targets/a.yaml"));

    // Nothing changed: nothing to apply.
    assert!(!files.refresh(false).changed);

    // A glob that matches the configuration file itself leaves it out.
    let mut beside = Files::new(&dir, "target_files: [\"*.yaml\", \"targets/a.yaml\"]\n");
    let read = beside.refresh(false);
    assert!(read.refused.is_empty(), "{read:?}");
    assert_eq!(beside.names(), ["a1", "a2"]);

    // A pattern that matches nothing is told once.
    let mut typo = Files::new(&dir, "target_files: [\"targtes/*.yaml\"]\n");
    let read = typo.refresh(false);
    assert_eq!(read.warnings.len(), 1, "{read:?}");
    assert!(read.warnings[0].contains("matches no file"), "{read:?}");
    assert!(typo.refresh(false).warnings.is_empty());
}

#[test]
fn config_fields_are_checked_with_their_line() {
    let dir = scratch("fields");
    let path = dir.join("config.yaml");
    let e = parse(&path, "log:\n  level: info\n").unwrap_err();
    assert_eq!(e.field, "targets");
    assert!(e.reason.contains("target_files"), "{e}");
    let e = parse(&path, "target_files:\n  - \"targets/[a.yaml\"\n").unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (Some(2), "target_files[0]"));
    assert!(e.reason.contains("is not a glob"), "{e}");
    let e = parse(&path, "target_files: [\"\"]\n").unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (Some(1), "target_files[0]"));
    for (interval, reason) in [("0s", "longer than zero"), ("500ms", "at least 1s")] {
        let e = parse(
            &path,
            &format!("target_files: [a.yaml]\ntarget_files_refresh_interval: {interval}\n"),
        )
        .unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(2), "target_files_refresh_interval")
        );
        assert!(e.reason.contains(reason), "{e}");
    }
    let c = parse(
        &path,
        "target_files: [/etc/idle/*.json, a.yaml]\ntarget_files_refresh_interval: 1s\n",
    )
    .unwrap();
    assert_eq!(
        c.target_files.patterns,
        [
            "/etc/idle/*.json".to_string(),
            format!("{}/a.yaml", dir.display())
        ]
    );
    assert_eq!(c.target_files.refresh_interval, Duration::from_secs(1));
}

#[test]
fn a_bad_file_is_refused_alone_with_file_line_and_field_and_keeps_its_last_good_targets() {
    let dir = scratch("refused");
    write(&dir, "targets/a.yaml", &target("a1"));
    write(&dir, "targets/b.yaml", &target("b1"));
    let mut files = Files::new(&dir, GLOBS);
    files.refresh(false);
    assert_eq!(files.names(), ["a1", "b1"]);

    // b: a value out of range on line 6. a changes at the same time, and that still applies.
    write(
        &dir,
        "targets/b.yaml",
        &format!("{}{}  max_connections: 500\n", target("b1"), target("b2")),
    );
    write(
        &dir,
        "targets/a.yaml",
        &format!("{}{}", target("a1"), target("a2")),
    );
    let read = files.refresh(false);
    assert!(read.changed);
    assert_eq!(files.names(), ["a1", "a2", "b1"]);
    assert_eq!(read.refused.len(), 1, "{read:?}");
    let e = &read.refused[0];
    assert_eq!(e.file, dir.join("targets/b.yaml"));
    assert_eq!((e.line, e.field.as_str()), (Some(5), "[1].max_connections"));
    assert!(
        e.to_string().starts_with(&format!(
            "{}:5: [1].max_connections: 500 is outside",
            dir.join("targets/b.yaml").display()
        )),
        "{e}"
    );
    assert_eq!(
        files.status(),
        [("a.yaml".into(), true, 2), ("b.yaml".into(), false, 1)]
    );
    // Told once, not at every refresh.
    assert!(files.refresh(false).refused.is_empty());
    assert!(files.refresh(true).refused.is_empty());

    // Unparsable YAML and an unknown field: refused with the line serde gives.
    write(&dir, "targets/b.yaml", "- name: b1\n  dsn: [oops\n");
    let e = files.refresh(false).refused.remove(0);
    assert!(e.line.is_some(), "{e}");
    write(
        &dir,
        "targets/b.yaml",
        &format!("{}  max_conections: 3\n", target("b1")),
    );
    let e = files.refresh(false).refused.remove(0);
    assert_eq!((e.line, e.field.as_str()), (Some(3), "[0]"), "{e}");
    assert!(
        e.to_string().contains("unknown field `max_conections`"),
        "{e}"
    );
    // The other shape (the main file's) is not a target file.
    write(
        &dir,
        "targets/b.yaml",
        &format!("targets:\n{}", target("b1")),
    );
    assert!(files.refresh(false).refused[0]
        .reason
        .contains("expected a sequence"));
    assert_eq!(files.names(), ["a1", "a2", "b1"]);

    // JSON: the line of the field, found after parsing.
    write(
        &dir,
        "targets/c.json",
        "[\n  {\n    \"name\": \"c1\",\n    \"dsn\": \"postgres://probe@127.0.0.1:1/postgres\",\n    \"precision\": \"lots\"\n  }\n]\n",
    );
    let e = files.refresh(false).refused.remove(0);
    assert_eq!(e.file, dir.join("targets/c.json"));
    assert_eq!((e.line, e.field.as_str()), (Some(5), "[0].precision"));

    // Fixed: in force again.
    write(
        &dir,
        "targets/b.yaml",
        &format!("{}{}", target("b1"), target("b2")),
    );
    std::fs::remove_file(dir.join("targets/c.json")).unwrap();
    let read = files.refresh(false);
    assert_eq!(read.recovered, [dir.join("targets/b.yaml")]);
    assert_eq!(read.gone, [dir.join("targets/c.json")]);
    assert_eq!(files.names(), ["a1", "a2", "b1", "b2"]);
    assert!(files.status().iter().all(|(_, ok, _)| *ok));
}

#[test]
fn a_file_never_loaded_gives_nothing_while_refused_and_a_deleted_file_removes_its_targets() {
    let dir = scratch("never");
    write(&dir, "targets/a.yaml", &target("a1"));
    write(&dir, "targets/b.yaml", "- name: b1\n");
    let mut files = Files::new(&dir, GLOBS);
    let read = files.refresh(false);
    assert_eq!(files.names(), ["a1"]);
    assert_eq!(read.refused.len(), 1);
    assert_eq!(read.refused[0].field, "[0]");
    assert!(read.refused[0].reason.contains("`dsn` is required"));
    assert_eq!(
        files.status(),
        [("a.yaml".into(), true, 1), ("b.yaml".into(), false, 0)]
    );

    // Deleted: kept (refused, "gone") for two refresh intervals, then removed; a file that
    // never gave a target goes at once.
    std::fs::remove_file(dir.join("targets/a.yaml")).unwrap();
    std::fs::remove_file(dir.join("targets/b.yaml")).unwrap();
    let start = Instant::now();
    let read = files.refresh_at(start);
    assert!(!read.changed, "{read:?}");
    assert_eq!(read.gone, [dir.join("targets/b.yaml")]);
    assert!(
        read.refused[0]
            .reason
            .contains("no glob matches it any more"),
        "{read:?}"
    );
    assert_eq!(files.names(), ["a1"]);
    assert_eq!(files.status(), [("a.yaml".into(), false, 1)]);
    assert!(!files.files.all_known());
    let interval = files.config.target_files.refresh_interval;
    assert!(files.refresh_at(start + interval).gone.is_empty());
    let read = files.refresh_at(start + interval * 2);
    assert!(read.changed && read.refused.is_empty(), "{read:?}");
    assert_eq!(read.gone, [dir.join("targets/a.yaml")]);
    assert!(files.names().is_empty());
}

/// A generator that deletes and re-creates its file (or is caught between the two) does not
/// stop its targets: within the grace period the file comes back with its targets running.
#[test]
fn a_file_deleted_and_recreated_within_the_grace_period_keeps_its_targets() {
    let dir = scratch("recreated");
    write(
        &dir,
        "targets/a.yaml",
        &format!("{}{}", target("a1"), target("a2")),
    );
    let mut files = Files::new(&dir, GLOBS);
    let start = Instant::now();
    files.refresh_at(start);
    assert_eq!(files.names(), ["a1", "a2"]);
    let running: Vec<TargetConfig> = files.files.targets().cloned().collect();
    for round in 1..=10u32 {
        std::fs::remove_file(dir.join("targets/a.yaml")).unwrap();
        let read = files.refresh_at(start + Duration::from_secs(u64::from(round) * 3));
        assert!(
            !read.changed && read.gone.is_empty(),
            "round {round}: {read:?}"
        );
        write(
            &dir,
            "targets/a.yaml",
            &format!("{}{}", target("a1"), target("a2")),
        );
        let read = files.refresh_at(start + Duration::from_secs(u64::from(round) * 3 + 1));
        assert!(!read.changed, "round {round}: {read:?}");
        assert_eq!(read.recovered, [dir.join("targets/a.yaml")]);
        assert_eq!(files.files.targets().cloned().collect::<Vec<_>>(), running);
    }
    // Torn in place (empty, or cut inside a quoted value): refused, the targets stay. (Cut where
    // the rest still parses, it is a smaller file: the targets it lost are removed, and their
    // stored measurements are kept for a day, see `storage`.)
    for torn in ["", "- name: a1\n  dsn: 'postgres://pro"] {
        write(&dir, "targets/a.yaml", torn);
        let read = files.refresh_at(start + Duration::from_secs(60));
        assert!(
            !read.changed && read.refused.len() == 1,
            "{torn:?}: {read:?}"
        );
        assert_eq!(files.names(), ["a1", "a2"]);
    }
}

#[test]
fn a_clashing_name_refuses_the_file_that_brings_it() {
    let dir = scratch("clash");
    write(&dir, "targets/b.yaml", &target("x"));
    let mut files = Files::new(
        &dir,
        &format!("{GLOBS}targets:\n  - name: inline\n    dsn: postgres://h/db\n"),
    );
    files.refresh(false);

    // a (first in path order) brings `x`, which b already runs: a is refused, b keeps it.
    write(
        &dir,
        "targets/a.yaml",
        &format!("{}{}", target("a1"), target("x")),
    );
    let read = files.refresh(false);
    assert_eq!(files.names(), ["x"]);
    let e = &read.refused[0];
    assert_eq!(e.file, dir.join("targets/a.yaml"));
    assert_eq!((e.line, e.field.as_str()), (Some(3), "[1].name"));
    assert!(
        e.reason.contains(&format!(
            "`x` is already a target of {}",
            dir.join("targets/b.yaml").display()
        )),
        "{e}"
    );

    // b lets go of `x`: a, unchanged but refused, is merged again at every refresh and gets it.
    write(&dir, "targets/b.yaml", &target("b1"));
    let read = files.refresh(false);
    assert_eq!(files.names(), ["a1", "x", "b1"]);
    assert_eq!(read.recovered, [dir.join("targets/a.yaml")]);

    // A name of an inline target: the file is refused (the main file's targets keep theirs).
    write(
        &dir,
        "targets/c.yaml",
        &format!("{}{}", target("c1"), target("inline")),
    );
    let read = files.refresh(false);
    assert_eq!(files.names(), ["a1", "x", "b1"]);
    assert!(read.refused[0].reason.contains("config.yaml"), "{read:?}");

    // Two files that both bring a new name at once: the first in path order gets it.
    write(&dir, "targets/d.yaml", &target("new"));
    write(&dir, "targets/e.yaml", &target("new"));
    let read = files.refresh(false);
    assert_eq!(files.names(), ["a1", "x", "b1", "new"]);
    assert_eq!(read.refused[0].file, dir.join("targets/e.yaml"));

    // A reload that adds an inline target a file runs: the inline one wins, the file loses it.
    files.config = config(
        &dir,
        &format!("{GLOBS}targets:\n  - name: inline\n    dsn: postgres://h/db\n  - name: b1\n    dsn: postgres://h/db\n"),
    );
    let read = files.refresh(true);
    assert!(!files.names().contains(&"b1"), "{:?}", files.names());
    assert!(read
        .refused
        .iter()
        .any(|e| e.file == dir.join("targets/b.yaml")));

    // Within one file: refused like a duplicate in the main file.
    write(
        &dir,
        "targets/f.yaml",
        &format!("{}{}", target("f"), target("f")),
    );
    let e = files.refresh(false).refused.remove(0);
    assert_eq!((e.line, e.field.as_str()), (Some(3), "[1].name"));
}

#[test]
fn files_are_read_like_the_config_regular_bounded_and_not_empty() {
    let dir = scratch("bounded");
    let mut big = target("a1");
    while big.len() as u64 <= super::super::MAX_FILE_BYTES {
        big.push_str(&format!("# {}\n", "padding ".repeat(16)));
    }
    write(&dir, "targets/big.yaml", &big);
    write(&dir, "targets/empty.yaml", "\n");
    write(
        &dir,
        "targets/deep.yaml",
        &format!("{}\n", "[".repeat(100_000)),
    );
    let fifo = dir.join("targets/fifo.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let mut files = Files::new(&dir, GLOBS);
    let read = files.refresh(false);
    let reasons: Vec<String> = read.refused.iter().map(|e| e.to_string()).collect();
    assert_eq!(reasons.len(), 4, "{reasons:#?}");
    assert!(reasons[0].contains("big.yaml: cannot read the file: larger than 1 MiB"));
    assert!(reasons[1].contains("deep.yaml:1: nested more than 64 levels"));
    assert!(reasons[2].contains("empty.yaml: the file is empty (a file without targets says [])"));
    assert!(reasons[3].contains("fifo.yaml: cannot read the file: not a regular file"));
    write(&dir, "targets/empty.yaml", "[]\n");
    files.refresh(false);
    assert!(files.status().contains(&("empty.yaml".into(), true, 0)));
}

#[test]
fn files_a_target_names_are_relative_to_its_target_file_and_reread_on_reload() {
    let dir = scratch("password");
    std::fs::create_dir_all(dir.join("targets/secrets")).unwrap();
    write(&dir, "targets/secrets/a.pw", "first-s3cret\n");
    write(
        &dir,
        "targets/a.yaml",
        &format!("{}  password_file: secrets/a.pw\n", target("a1")),
    );
    let mut files = Files::new(&dir, GLOBS);
    files.refresh(false);
    let password = |files: &Files| {
        files
            .files
            .targets()
            .next()
            .unwrap()
            .driver
            .get_password()
            .map(<[u8]>::to_vec)
    };
    assert_eq!(password(&files), Some(b"first-s3cret".to_vec()));

    // The target file's bytes are the same: a periodic refresh does not read it again; a
    // reload (forced) does, and picks up the rotated password.
    write(&dir, "targets/secrets/a.pw", "second-s3cret\n");
    assert!(!files.refresh(false).changed);
    assert_eq!(password(&files), Some(b"first-s3cret".to_vec()));
    assert!(files.refresh(true).changed);
    assert_eq!(password(&files), Some(b"second-s3cret".to_vec()));

    // A missing password file is refused naming the target file, line and field, never the
    // password.
    std::fs::remove_file(dir.join("targets/secrets/a.pw")).unwrap();
    let e = files.refresh(true).refused.remove(0);
    assert_eq!((e.line, e.field.as_str()), (Some(3), "[0].password_file"));
    assert!(e.reason.contains("secrets/a.pw"), "{e}");
    assert!(!format!("{e} {e:?} {:?}", files.files).contains("s3cret"));
    assert_eq!(password(&files), Some(b"second-s3cret".to_vec()));
}

#[test]
fn more_files_than_the_cap_are_not_read_and_say_so() {
    let dir = scratch("cap");
    for i in 0..=MAX_TARGET_FILES {
        write(&dir, &format!("targets/t{i:04}.yaml"), "[]\n");
    }
    let mut files = Files::new(&dir, GLOBS);
    let read = files.refresh(false);
    assert_eq!(files.files.files().count(), MAX_TARGET_FILES);
    let reason = read.over_limit.expect("over the cap");
    assert!(
        reason.contains("match 1001 files, more than 1000"),
        "{reason}"
    );
    assert_eq!(read.refused.len(), 1);
    assert_eq!(read.refused[0].field, "target_files");
    assert!(files.refresh(false).refused.is_empty(), "told once");
}

/// Hostile target files: any text is a list of targets or refused naming the file; never a
/// panic (the JSON line finder included).
mod fuzz {
    use super::*;
    use crate::postgres::dsn::fuzz::budget;
    use proptest::prelude::*;

    /// Pieces of JSON and flow YAML, glued at random.
    fn flowish() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(
                    &[
                        "[",
                        "]",
                        "{",
                        "}",
                        ",",
                        ":",
                        ": ",
                        "\"name\"",
                        "\"dsn\"",
                        "'a''b'",
                        "\"x\\\"",
                        "\n",
                        "# c\n",
                        "\"postgres://h/x\"",
                        "name",
                        " ",
                        "\"precision\": \"lots\"",
                        "- ",
                    ][..]
                )
                .prop_map(str::to_string),
                "(?s).{0,3}",
            ],
            0..40,
        )
        .prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(budget(256))]

        #[test]
        fn any_text_is_targets_or_refused_naming_the_file(
            text in prop_oneof!["(?s).{0,200}", flowish()]
        ) {
            let path = Path::new("/nonexistent-fuzz-dir/targets/t.json");
            if let Err(e) = scan::parse(&TargetFilesConfig::default(), path, &text) {
                prop_assert!(e.to_string().starts_with("/nonexistent-fuzz-dir/targets/t.json"), "{e}");
            }
            for steps in [
                &[Step::Index(0), Step::Key("name")][..],
                &[Step::Index(1), Step::Key("idle_range"), Step::Key("max")][..],
            ] {
                let _ = locate::line_of(&text, steps);
            }
        }
    }
}

/// Runs `f` on a thread; panics if it takes longer than `limit` (a hang must fail the test, not
/// stall it). Returns what `f` returned and how long it took.
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> (T, Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let start = Instant::now();
        let out = f();
        let _ = tx.send((out, start.elapsed()));
    });
    match rx.recv_timeout(limit) {
        Ok(done) => done,
        Err(_) => panic!("{what}: not done after {limit:?}"),
    }
}

/// `s1 -> .` and `s2 -> .` under a `**` glob: the glob crate's walk entered every link at
/// every level (exponential, never ready). Each folder is entered once per glob component.
#[test]
fn a_glob_over_directory_symlink_loops_lists_each_file_once_and_quickly() {
    let dir = scratch("loops");
    write(&dir, "targets/a.yaml", &target("a1"));
    std::fs::create_dir_all(dir.join("targets/sub")).unwrap();
    write(&dir, "targets/sub/b.yaml", &target("b1"));
    for link in ["s1", "s2", "sub/up"] {
        let to = if link == "sub/up" { ".." } else { "." };
        std::os::unix::fs::symlink(to, dir.join("targets").join(link)).unwrap();
    }
    let config = config(&dir, "target_files: [\"targets/**/*.yaml\"]\n");
    let main = dir.join("config.yaml");
    let (listing, took) = within(Duration::from_secs(20), "listing", move || {
        scan::list(&config.target_files.patterns, &main)
    });
    assert_eq!(
        listing.files,
        [dir.join("targets/a.yaml"), dir.join("targets/sub/b.yaml")]
    );
    assert!(
        listing.complete && listing.problems.is_empty(),
        "{listing:?}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Nothing to find: the glob crate never ended this one.
    let json = self::config(&dir, "target_files: [\"targets/**/*.json\"]\n");
    let main = dir.join("config.yaml");
    let (listing, took) = within(Duration::from_secs(20), "listing", move || {
        scan::list(&json.target_files.patterns, &main)
    });
    assert!(listing.files.is_empty() && listing.complete, "{listing:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// A `**` stops [`MAX_WALK_DEPTH`] folders down and says so; what it listed so far is kept,
/// and a listing cut short removes no file.
#[test]
fn a_deep_tree_is_walked_to_a_bound_and_says_so() {
    let dir = scratch("deep");
    let mut deep = dir.join("targets");
    for _ in 0..MAX_WALK_DEPTH + 2 {
        deep = deep.join("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    write(&dir, "targets/a.yaml", &target("a1"));
    let config = config(&dir, "target_files: [\"targets/**/*.yaml\"]\n");
    let listing = scan::list(&config.target_files.patterns, &dir.join("config.yaml"));
    assert_eq!(listing.files, [dir.join("targets/a.yaml")]);
    assert!(!listing.complete);
    assert!(
        listing.problems[0].contains("deeper than 32 folders"),
        "{listing:?}"
    );
}

/// `n` targets in flow style (JSON-like), one line each, named `{prefix}{i}`.
fn flow_targets(prefix: &str, n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| format!("{{name: {prefix}{i}, dsn: 'postgres://probe@127.0.0.1:1/postgres'}}"))
        .collect();
    format!("[{}]\n", items.join(",\n "))
}

/// 16,000 flow-style targets in one file took 87 s to check (each target's name line was
/// found by reading the whole file again): past the per-file cap it is refused at once.
#[test]
fn a_file_past_the_per_file_cap_is_refused_quickly() {
    let dir = scratch("per-file-cap");
    write(&dir, "targets/many.yaml", &flow_targets("t", 16_000));
    let mut files = Files::new(&dir, GLOBS);
    let (read, took) = within(
        Duration::from_secs(60),
        "refusing 16,000 targets",
        move || {
            let read = files.refresh(false);
            (read, files.names().len())
        },
    );
    let (read, running) = read;
    assert_eq!(running, 0);
    assert!(
        read.refused[0]
            .reason
            .contains("16000 targets, more than 2000 in one file"),
        "{read:?}"
    );
    // 0.25 s on an idle machine; the quadratic check this replaced took 87 s. The bound is
    // loose because the test command runs many tests at once on two cores.
    assert!(took < Duration::from_secs(40), "{took:?}");
}

/// Checking N targets costs O(N log N): files at the per-file cap, up to the total cap, each
/// name clashing with the next file's, are checked and merged in seconds; the file that would
/// pass the total is refused, keeping its last good targets.
#[test]
fn checking_many_targets_is_fast_and_the_total_is_capped() {
    let dir = scratch("total-cap");
    for f in 0..5 {
        write(
            &dir,
            &format!("targets/f{f}.yaml"),
            &flow_targets(&format!("f{f}-"), MAX_TARGETS_PER_FILE),
        );
    }
    let mut files = Files::new(&dir, GLOBS);
    let ((read, names), took) = within(Duration::from_secs(120), "10,000 targets", move || {
        let read = files.refresh(false);
        let names = files.names().len();
        // One more file: past the total cap, refused.
        write(&dir, "targets/f5.yaml", &flow_targets("f5-", 10));
        let more = files.refresh(false);
        assert_eq!(files.names().len(), MAX_TARGETS);
        assert_eq!(more.refused.len(), 1, "{more:?}");
        assert!(
            more.refused[0]
                .reason
                .contains("more than 10000 targets in all"),
            "{more:?}"
        );
        // Every name of f0 also in f1: f1 is refused, naming the first clash's line.
        write(
            &dir,
            "targets/f1.yaml",
            &flow_targets("f0-", MAX_TARGETS_PER_FILE),
        );
        let clash = files.refresh(false);
        assert!(
            clash
                .refused
                .iter()
                .any(|e| e.field == "[0].name" && e.line == Some(1)),
            "{clash:?}"
        );
        (read, names)
    });
    assert!(read.refused.is_empty(), "{read:?}");
    assert_eq!(names, MAX_TARGETS);
    assert!(took < Duration::from_secs(60), "{took:?}");
    eprintln!("10,000 targets in 5 files checked, capped and clashed in {took:?}");
}

/// `l{from}: x` .. `l{to-1}: x` as a target's `labels` block (list items at the file's top).
fn labelled(name: &str, names: std::ops::Range<usize>) -> String {
    let block: String = names.map(|n| format!("    l{n:02}: x\n")).collect();
    format!("{}  labels:\n{block}", target(name))
}

#[test]
fn a_target_files_labels_are_checked_with_file_line_and_field() {
    let dir = scratch("labels");
    write(
        &dir,
        "targets/a.yaml",
        &format!(
            "{}{}  labels:\n    team: payments\n    Team-x: nope\n",
            target("a1"),
            target("a2")
        ),
    );
    write(
        &dir,
        "targets/b.json",
        "[{\"name\": \"b1\", \"dsn\": \"postgres://probe@127.0.0.1:1/postgres\",\n  \"labels\": {\"team\": \"billing\"}}]\n",
    );
    let mut files = Files::new(&dir, GLOBS);
    let read = files.refresh(false);
    assert_eq!(files.names(), ["b1"]);
    let b1 = files.files.targets().next().unwrap();
    assert_eq!(b1.labels.get("team").map(String::as_str), Some("billing"));
    assert_eq!(read.refused.len(), 1, "{read:?}");
    let e = &read.refused[0];
    assert_eq!(e.file, dir.join("targets/a.yaml"));
    assert_eq!(
        (e.line, e.field.as_str()),
        (Some(7), "[1].labels.Team-x"),
        "{e}"
    );
    assert!(!e.to_string().contains("nope"), "{e}");

    // Fixed, the labels are a live setting of the running targets: in force at once.
    write(
        &dir,
        "targets/a.yaml",
        &format!(
            "{}{}  labels: {{team: payments}}\n",
            target("a1"),
            target("a2")
        ),
    );
    let read = files.refresh(false);
    assert!(read.changed && read.refused.is_empty(), "{read:?}");
    assert_eq!(files.names(), ["a1", "a2", "b1"]);
}

#[test]
fn distinct_label_names_are_capped_over_the_config_and_every_file() {
    let dir = scratch("label-cap");
    // Inline: 12 names; a.yaml: 12 more; b.yaml: 8 more, 32 in all; c.yaml: a 33rd.
    let inline = format!("{GLOBS}targets:\n{}", labelled("inline", 0..12));
    write(&dir, "targets/a.yaml", &labelled("a1", 12..24));
    write(&dir, "targets/b.yaml", &labelled("b1", 24..32));
    write(
        &dir,
        "targets/c.yaml",
        &format!("{}{}", target("c1"), labelled("c2", 30..33)),
    );
    let mut files = Files::new(&dir, &inline);
    assert_eq!(files.config.targets[0].labels.len(), 12);
    let read = files.refresh(false);
    assert_eq!(files.names(), ["a1", "b1"]);
    assert_eq!(read.refused.len(), 1, "{read:?}");
    let e = &read.refused[0];
    assert_eq!(e.file, dir.join("targets/c.yaml"));
    // The field names the 33rd name; the line is its target's.
    assert_eq!(
        (e.line, e.field.as_str()),
        (Some(3), "[1].labels.l32"),
        "{e}"
    );
    assert!(e.reason.contains("past the 32 distinct ones"), "{e}");

    // b drops three names. Its new content is in force at once; c comes in at the refresh after
    // (while b's new content was not yet in force, its old names counted too).
    write(&dir, "targets/b.yaml", &labelled("b1", 24..29));
    files.refresh(false);
    assert_eq!(files.files.targets().nth(1).unwrap().labels.len(), 5);
    assert_eq!(files.names(), ["a1", "b1"]);
    let read = files.refresh(false);
    assert!(read.changed && read.refused.is_empty(), "{read:?}");
    assert_eq!(files.names(), ["a1", "b1", "c1", "c2"]);
    assert!(files.files.all_known());
}
