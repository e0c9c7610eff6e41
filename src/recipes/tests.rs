use std::time::Duration;

use super::spelling;
use super::*;

fn path(lower_s: f64, drop: DropKind, box_counts: BoxCounts) -> Measurement {
    Measurement {
        lower: Duration::from_secs_f64(lower_s),
        upper: Some(Duration::from_secs_f64(lower_s * 1.05)),
        drop: Some(drop),
        box_counts,
    }
}

#[test]
fn keepalives_and_bounds_scale_with_the_threshold() {
    for lower in [3.0, 7.8, 9.0, 58.0, 342.0, 1_790.0, 7_200.0] {
        let m = path(lower, DropKind::Silent, BoxCounts::Packets);
        let t = Timings::new(&m, &Knobs::default()).expect("room for a lifetime");
        assert!(t.lifetime < m.lower, "{lower}: {t:?}");
        // The first keepalive leaves well before the box forgets the flow, and a flow it
        // forgot anyway is found before the lifetime is up.
        assert!(t.keepalive_idle < t.lifetime, "{lower}: {t:?}");
        let detection = t.keepalive_idle + t.keepalive_interval * t.keepalive_count;
        assert!(
            detection <= t.lifetime.max(Duration::from_secs(4)),
            "{lower}: {t:?}"
        );
        assert!(t.dead_bound >= Duration::from_secs(2), "{lower}: {t:?}");
        assert!(t.dead_bound <= Duration::from_secs(10), "{lower}: {t:?}");
        assert!(t.check_timeout <= t.dead_bound, "{lower}: {t:?}");
    }
}

#[test]
fn a_fixed_keepalive_interval_no_longer_outlives_a_short_threshold() {
    // The old libpq line said keepalives_interval=10 whatever T was; at T = 9 s the flow died
    // between keepalives.
    let m = path(9.0, DropKind::Silent, BoxCounts::Packets);
    let t = Timings::new(&m, &Knobs::default()).unwrap();
    assert!(t.keepalive_interval < Duration::from_secs(3), "{t:?}");
}

#[test]
fn the_dead_bound_follows_the_threshold_up_to_the_configured_socket_timeout() {
    let short = Timings::new(
        &path(7.8, DropKind::Silent, BoxCounts::Unknown),
        &Knobs::default(),
    )
    .unwrap();
    assert_eq!(short.dead_bound, Duration::from_secs(4));
    let long = Timings::new(
        &path(342.0, DropKind::Silent, BoxCounts::Unknown),
        &Knobs::default(),
    )
    .unwrap();
    assert_eq!(long.dead_bound, Duration::from_secs(10));
}

#[test]
fn keepalives_are_relied_on_only_where_the_box_counts_packets() {
    for (box_counts, expected) in [
        (BoxCounts::Packets, Variant::Keepalive),
        (BoxCounts::Requests, Variant::Eviction),
        (BoxCounts::Unknown, Variant::Eviction),
    ] {
        let recipes = for_path(&path(60.0, DropKind::Silent, box_counts), &Knobs::default());
        let libpq = recipes
            .iter()
            .find(|r| r.library == Library::Libpq)
            .unwrap();
        assert_eq!(
            libpq.variant,
            Variant::Keepalive,
            "libpq only has keepalives"
        );
        let sqlalchemy = recipes
            .iter()
            .find(|r| r.library == Library::Sqlalchemy)
            .unwrap();
        assert_eq!(sqlalchemy.variant, expected, "{box_counts:?}");
    }
}

/// Every value the matrix applies is in the line a person pastes.
#[test]
fn the_printed_line_carries_every_setting_the_matrix_runs() {
    fn values(v: &serde_json::Value) -> Vec<String> {
        match v {
            serde_json::Value::Object(map) => map.values().flat_map(values).collect(),
            serde_json::Value::String(s) => vec![s.clone()],
            other => vec![other.to_string()],
        }
    }
    for box_counts in [BoxCounts::Packets, BoxCounts::Unknown] {
        for r in for_path(&path(47.0, DropKind::Silent, box_counts), &Knobs::default()) {
            let text = r.text.to_lowercase();
            for s in &r.settings {
                for value in values(&s.value) {
                    assert!(
                        text.contains(&value.to_lowercase()),
                        "{}: {} = {value} missing from {:?}",
                        r.library.id(),
                        s.key,
                        r.text
                    );
                }
            }
            assert!(!r.why.is_empty());
        }
    }
}

#[test]
fn what_the_matrix_cannot_run_says_why() {
    let recipes = for_path(
        &path(60.0, DropKind::Fin, BoxCounts::Requests),
        &Knobs::default(),
    );
    let r = recipes
        .iter()
        .find(|r| r.library == Library::PostgresServer)
        .unwrap();
    assert!(
        matches!(&r.proof, Proof::NotVerified { reason } if !reason.is_empty()),
        "{:?}",
        r.proof
    );
    assert!(!r.is_proven());
}

#[test]
fn no_recipe_without_room_for_a_lifetime() {
    let m = path(1.1, DropKind::Silent, BoxCounts::Unknown);
    assert!(for_path(&m, &Knobs::default()).is_empty());
}

#[test]
fn every_library_has_one_recipe_and_a_cited_model() {
    let recipes = for_path(
        &path(300.0, DropKind::Reset, BoxCounts::Unknown),
        &Knobs::default(),
    );
    assert_eq!(recipes.len(), Library::ALL.len());
    for library in Library::ALL {
        assert!(!library.model().source.is_empty());
        let id = serde_json::to_value(library).unwrap();
        assert_eq!(id, serde_json::Value::from(library.id()));
    }
}

/// A claim in proven.json about a recipe the exporter never prints would prove nothing.
#[test]
fn every_proven_recipe_is_one_the_exporter_prints() {
    let printed: Vec<(Library, Variant)> = [BoxCounts::Packets, BoxCounts::Unknown]
        .into_iter()
        .flat_map(|box_counts| {
            for_path(&path(60.0, DropKind::Silent, box_counts), &Knobs::default())
                .into_iter()
                .map(|r| (r.library, r.variant))
        })
        .collect();
    let file: serde_json::Value =
        serde_json::from_str(include_str!("proven.json")).expect("proven.json parses");
    for claim in file["recipes"].as_array().expect("a list of recipes") {
        let library: Library = serde_json::from_value(claim["library"].clone()).unwrap();
        let variant: Variant = serde_json::from_value(claim["variant"].clone()).unwrap();
        assert!(
            printed.contains(&(library, variant)),
            "{claim}: never printed"
        );
    }
}

#[test]
fn a_recipe_proven_behind_the_measured_box_says_so_and_names_the_version() {
    let recipes = for_path(
        &path(300.0, DropKind::Silent, BoxCounts::Unknown),
        &Knobs::default(),
    );
    for r in recipes.iter().filter(|r| r.is_proven()) {
        let line = r.proof.to_string();
        assert!(line.starts_with("verified against "), "{line}");
        assert!(line.contains("silent") && line.contains("proxy"), "{line}");
    }
}

/// The tokenizer the Rust harness uses to match a printed text with the code it compiled.
#[path = "../../lab/pools/rust/src/tokens.rs"]
mod rust_tokens;

fn recipe_of(lower: f64, box_counts: BoxCounts, library: Library) -> Recipe {
    for_path(
        &path(lower, DropKind::Silent, box_counts),
        &Knobs::default(),
    )
    .into_iter()
    .find(|r| r.library == library)
    .unwrap()
}

/// The Rust harness compiles the texts printed for T = 10 s (lab/pools/rust/build.rs) and runs
/// any other T's text through that code with its own numbers: so the code must be the same at
/// every threshold, numbers aside, or the cells of other thresholds fail.
#[test]
fn a_rust_recipe_is_the_same_code_at_every_threshold() {
    let rust = [
        Library::Deadpool,
        Library::Bb8,
        Library::Sqlx,
        Library::Diesel,
    ];
    for box_counts in [BoxCounts::Packets, BoxCounts::Unknown] {
        for library in rust {
            let compiled = recipe_of(10.0, box_counts, library);
            for lower in [3.0, 7.8, 9.0, 19.7, 58.0, 342.0, 7_200.0] {
                let r = recipe_of(lower, box_counts, library);
                assert_eq!(r.variant, compiled.variant);
                assert_eq!(
                    rust_tokens::skeleton(&r.text),
                    rust_tokens::skeleton(&compiled.text),
                    "{library:?} at {lower} s:\n{}",
                    r.text
                );
            }
        }
    }
}

/// deadpool applies no timeout without a runtime (`NoRuntimeSpecified`); the old text set
/// `recycle_timeout` alone, in pseudo-code (`Some(2 s)`, `Err(..)`).
#[test]
fn deadpool_code_names_its_runtime_and_is_no_pseudo_code() {
    for box_counts in [BoxCounts::Packets, BoxCounts::Unknown] {
        let r = recipe_of(60.0, box_counts, Library::Deadpool);
        let runtime = r.text.find(".runtime(Runtime::Tokio1)").expect(&r.text);
        let timeout = r
            .text
            .find(".recycle_timeout(Some(Duration::")
            .expect(&r.text);
        assert!(runtime < timeout, "{}", r.text);
        for pseudo in ["..)", " s)", " s {", " s ("] {
            assert!(!r.text.contains(pseudo), "{pseudo:?} in {}", r.text);
        }
        assert!(r.text.contains("RecyclingMethod::Verified"), "{}", r.text);
    }
}

/// deadpool's default recycling (Fast) sends no query: its keepalive line must not lean on a
/// check it does not have, and bb8 says which check it has.
#[test]
fn deadpool_and_bb8_keepalive_reasons_are_their_own() {
    let m = path(60.0, DropKind::Silent, BoxCounts::Packets);
    let t = Timings::new(&m, &Knobs::default()).unwrap();
    let shared = spelling::keepalive_why(&t);
    let deadpool = recipe_of(60.0, BoxCounts::Packets, Library::Deadpool);
    assert_eq!(deadpool.variant, Variant::Keepalive);
    assert_ne!(deadpool.why, shared);
    assert!(
        deadpool.why.contains("Fast") && deadpool.why.contains("Verified"),
        "{}",
        deadpool.why
    );
    assert!(deadpool.settings.contains(&Setting {
        key: "recycling_method",
        value: serde_json::json!("Verified")
    }));
    let bb8 = recipe_of(60.0, BoxCounts::Packets, Library::Bb8);
    assert_ne!(bb8.why, shared);
    assert!(bb8.why.contains("test_on_check_out"), "{}", bb8.why);
}

/// ActiveRecord 6.1 closes idle connections only when its reaper runs: a connection can idle
/// idle_timeout + reaping_frequency, which must stay below the threshold. The harness loads the
/// printed lines as YAML: they must parse to exactly the settings.
#[test]
fn rails_lines_are_yaml_and_close_connections_before_the_threshold() {
    for lower in [3.0, 9.0, 58.0, 342.0] {
        for box_counts in [BoxCounts::Packets, BoxCounts::Unknown] {
            let r = recipe_of(lower, box_counts, Library::Rails);
            let parsed: serde_yaml::Mapping = serde_yaml::from_str(&r.text).expect(&r.text);
            assert_eq!(parsed.len(), r.settings.len(), "{}", r.text);
            for s in &r.settings {
                let v = &parsed[s.key];
                assert_eq!(v.as_f64(), s.value.as_f64(), "{}: {}", s.key, r.text);
            }
            if r.variant == Variant::Eviction {
                let secs = |key| parsed[key].as_f64().unwrap();
                assert!(
                    secs("idle_timeout") + secs("reaping_frequency") < lower,
                    "{lower}: {}",
                    r.text
                );
            }
        }
    }
}

/// r2d2 0.8 reaps every 30 s whatever the setting: on a short path the Diesel line must refuse
/// idle connections at checkout, below the threshold.
#[test]
fn diesel_refuses_idle_connections_below_the_threshold() {
    for lower in [3.0, 9.0, 25.0, 342.0] {
        let r = recipe_of(lower, BoxCounts::Unknown, Library::Diesel);
        assert_eq!(r.variant, Variant::Eviction);
        let max_idle = r
            .settings
            .iter()
            .find(|s| s.key == "max_idle")
            .and_then(|s| s.value.as_f64())
            .unwrap();
        assert!(max_idle < lower, "{lower}: {max_idle}");
        assert!(r.text.contains("impl ManageConnection for IdleLimited"));
        assert!(
            r.text
                .contains(&format!("max_idle: Duration::from_secs_f64({max_idle:?})"))
                || r.text
                    .contains(&format!("max_idle: Duration::from_secs_f64({max_idle:.1})")),
            "{}",
            r.text
        );
    }
}

fn quaint_recipes(lower_s: f64, knobs: &Knobs) -> Vec<Recipe> {
    for_path(&path(lower_s, DropKind::Fin, BoxCounts::Requests), knobs)
        .into_iter()
        .filter(|r| matches!(r.library, Library::QuaintPrisma | Library::QuaintBare))
        .collect()
}

fn setting(r: &Recipe, key: &str) -> u64 {
    r.settings
        .iter()
        .find(|s| s.key == key)
        .and_then(|s| s.value.as_u64())
        .unwrap_or_else(|| panic!("{}: no {key}", r.library.id()))
}

/// With the default pool_timeout (10 s) equal to socket_timeout=10, a hung checkout check in
/// Prisma's engine ends in P2024 instead of being replaced: pool_timeout must cover the check's
/// socket_timeout and quaint's 5 s connect, at every threshold and every --socket-timeout.
#[test]
fn quaint_pool_timeout_stays_above_the_socket_timeout_and_a_reconnect() {
    for socket in [1, 2, 5, 10, 30, 120] {
        let knobs = Knobs {
            socket_timeout: Duration::from_secs(socket),
            ..Knobs::default()
        };
        for lower in [3.0, 7.8, 19.6, 58.0, 342.0, 7_200.0] {
            let recipes = quaint_recipes(lower, &knobs);
            assert_eq!(recipes.len(), 2, "both quaint pools are printed");
            for r in &recipes {
                let socket_timeout = setting(r, "socket_timeout");
                let pool_timeout = setting(r, "pool_timeout");
                assert!(
                    pool_timeout > socket_timeout + 5,
                    "{lower}/{socket}: {}",
                    r.text
                );
                let lifetime = setting(r, "max_idle_connection_lifetime");
                assert!((lifetime as f64) < lower, "{lower}: {}", r.text);
                assert!(lifetime >= 1);
            }
        }
    }
}

/// The line is pasted onto a DATABASE_URL that usually has parameters already (`?schema=...`):
/// the `&` spelling must give exactly the settings, and so must the `?` one on a bare URL. The
/// old `?...` alone, appended to such a URL, made its settings part of the previous value.
#[test]
fn the_quaint_line_appends_with_an_ampersand_and_with_a_question_mark() {
    for r in quaint_recipes(19.6, &Knobs::default()) {
        let lines: Vec<&str> = r.text.lines().map(str::trim).collect();
        let amp: Vec<&str> = lines
            .iter()
            .filter(|l| l.starts_with('&'))
            .copied()
            .collect();
        let qm: Vec<&str> = lines
            .iter()
            .filter(|l| l.starts_with('?'))
            .copied()
            .collect();
        assert_eq!((amp.len(), qm.len()), (1, 1), "{}", r.text);
        let first_word = |l: &str| l.split_whitespace().next().unwrap().to_string();
        for url in [
            format!(
                "postgresql://app@db:5432/app?schema=public{}",
                first_word(amp[0])
            ),
            format!("postgresql://app@db:5432/app{}", first_word(qm[0])),
        ] {
            let app = crate::postgres::dsn::parse(&url).expect("parses").app;
            assert_eq!(
                app.max_idle_connection_lifetime,
                Some(setting(&r, "max_idle_connection_lifetime")),
                "{url}"
            );
            assert_eq!(
                app.socket_timeout,
                Some(setting(&r, "socket_timeout")),
                "{url}"
            );
            assert_eq!(app.pool_timeout, Some(setting(&r, "pool_timeout")), "{url}");
        }
    }
}

/// Each quaint line names the pool it is for, and says what its lifetime counts in that
/// version: age (mobc 0.8.5) for Prisma's engine, time since the last checkout (0.8.3) for the
/// other; "no check before use" only where there is none.
#[test]
fn each_quaint_line_is_true_for_the_versions_it_names() {
    let recipes = quaint_recipes(19.6, &Knobs::default());
    let prisma = recipes
        .iter()
        .find(|r| r.library == Library::QuaintPrisma)
        .unwrap();
    let bare = recipes
        .iter()
        .find(|r| r.library == Library::QuaintBare)
        .unwrap();
    assert!(prisma.versions.contains("mobc 0.8.5") && prisma.versions.contains("Prisma"));
    assert!(prisma.why.contains("opened") && prisma.why.contains("check"));
    assert!(Library::QuaintPrisma.model().check.starts_with("SELECT 1"));
    assert!(Library::QuaintBare.model().check.starts_with("none"));
    assert!(bare.versions.contains("mobc 0.8.3"));
    assert!(bare.why.contains("last checked out") && !bare.why.contains("opened"));
    assert!(bare.why.contains("no check before use"));
    assert_eq!(Library::QuaintPrisma.model().clock, pools::Clock::Age);
    assert_eq!(Library::QuaintBare.model().clock, pools::Clock::Idle);
    // Both are run by the matrix now: no reason to print them as unprovable.
    for r in [prisma, bare] {
        assert!(
            !matches!(&r.proof, Proof::NotVerified { reason } if reason.contains("downloaded")),
            "{:?}",
            r.proof
        );
        assert_eq!(r.first_request_bound, Duration::from_secs(1));
    }
}

/// Every key a setting names, nested objects (connect_args, kwargs, server_settings) included.
fn all_keys(settings: &[Setting]) -> Vec<String> {
    fn keys_of(v: &serde_json::Value, out: &mut Vec<String>) {
        if let serde_json::Value::Object(map) = v {
            for (k, v) in map {
                out.push(k.clone());
                keys_of(v, out);
            }
        }
    }
    let mut out = Vec::new();
    for s in settings {
        out.push(s.key.to_string());
        keys_of(&s.value, &mut out);
    }
    out
}

/// Linux reads no keepalive probe count once TCP_USER_TIMEOUT is set: a line that sets both
/// printed a setting that cannot matter (the old lines all did).
#[test]
fn no_line_prints_a_probe_count_beside_tcp_user_timeout() {
    for lower in [5.0, 9.0, 47.0, 342.0] {
        for box_counts in [BoxCounts::Packets, BoxCounts::Unknown] {
            for r in for_path(
                &path(lower, DropKind::Silent, box_counts),
                &Knobs::default(),
            ) {
                let keys = all_keys(&r.settings);
                if !keys.iter().any(|k| k == "tcp_user_timeout") {
                    continue;
                }
                for count in spelling::PROBE_COUNT_KEYS {
                    assert!(
                        !keys.iter().any(|k| k == count) && !r.text.contains(count),
                        "{} {:?}: {count} beside tcp_user_timeout in {:?}",
                        r.library.id(),
                        r.variant,
                        r.text
                    );
                    assert!(!r.why.contains(count), "{}: {}", r.library.id(), r.why);
                }
            }
        }
    }
}

/// asyncpg spares min_size from idle closing only from 0.32: both behaviours are printed, each
/// naming its releases, and the line for 0.31 and earlier neither needs nor claims the floor.
#[test]
fn asyncpg_is_printed_for_each_behaviour_with_its_versions() {
    let recipes = for_path(
        &path(60.0, DropKind::Silent, BoxCounts::Unknown),
        &Knobs::default(),
    );
    let new = recipes
        .iter()
        .find(|r| r.library == Library::Asyncpg)
        .unwrap();
    let old = recipes
        .iter()
        .find(|r| r.library == Library::Asyncpg031)
        .unwrap();
    assert!(new.versions.contains("0.32") && old.versions.contains("0.31"));
    assert!(Library::Asyncpg.model().minimum_exempt);
    assert!(!Library::Asyncpg031.model().minimum_exempt);
    assert!(new.text.contains("min_size=0"), "{}", new.text);
    assert!(!old.text.contains("min_size"), "{}", old.text);
    assert!(!old.why.contains("only above min_size"), "{}", old.why);
    assert!(new.why.contains("0.32") && old.why.contains("0.31"));
}

/// The psycopg_pool line is code that runs as printed: a loop that survives a failed check and
/// says so, not a list comprehension that grows forever and dies silently.
#[test]
fn the_psycopg_pool_check_loop_logs_a_failure_and_goes_on() {
    let recipes = for_path(
        &path(47.0, DropKind::Silent, BoxCounts::Unknown),
        &Knobs::default(),
    );
    for library in [Library::PsycopgPool, Library::DjangoPool] {
        let r = recipes.iter().find(|r| r.library == library).unwrap();
        assert_eq!(r.variant, Variant::Eviction);
        assert!(!r.text.contains("itertools.count"), "{}", r.text);
        for needed in [
            "while True:",
            "except Exception:",
            "logging.exception(",
            "pool.check()",
        ] {
            assert!(r.text.contains(needed), "{needed} missing: {}", r.text);
        }
        assert!(r.text.contains("import logging, threading, time"));
    }
}

/// check_connection makes getconn() back off 1, 2, 4 s after failed checks: the keepalive
/// line's why says so instead of promising a bound it cannot hold.
#[test]
fn the_psycopg_pool_keepalive_why_names_the_back_off() {
    let recipes = for_path(
        &path(47.0, DropKind::Silent, BoxCounts::Packets),
        &Knobs::default(),
    );
    let r = recipes
        .iter()
        .find(|r| r.library == Library::PsycopgPool)
        .unwrap();
    assert_eq!(r.variant, Variant::Keepalive);
    assert!(r.text.contains("check_connection"));
    assert!(r.why.contains("1, 2, 4 s"), "{}", r.why);
}

/// Recycling a connection the path forgot waits up to 2 s for asyncpg's graceful close
/// (SQLAlchemy's terminate()); the stated bound covers it.
#[test]
fn sqlalchemy_over_asyncpg_states_a_bound_that_covers_the_graceful_close() {
    let recipes = for_path(
        &path(47.0, DropKind::Silent, BoxCounts::Packets),
        &Knobs::default(),
    );
    let r = recipes
        .iter()
        .find(|r| r.library == Library::SqlalchemyAsyncpg)
        .unwrap();
    assert!(r.first_request_bound >= Duration::from_secs(3));
    assert!(r.why.contains("2 s"), "{}", r.why);
}

/// From pgx v4.17 (and in v5) pool_max_conn_idle_time spares MinConns; every version retires
/// by pool_max_conn_lifetime at its tick, MinConns included. The one line names them all and
/// uses the setting that holds in each (the old line used the idle time, true for v4.15 only).
#[test]
fn the_pgx_line_holds_for_every_version_it_names() {
    let recipes = for_path(
        &path(47.0, DropKind::Silent, BoxCounts::Unknown),
        &Knobs::default(),
    );
    let r = recipes.iter().find(|r| r.library == Library::Pgx).unwrap();
    for version in ["v4.15", "v4.17", "v5"] {
        assert!(r.versions.contains(version), "{}", r.versions);
    }
    assert!(r.text.contains("pool_max_conn_lifetime="), "{}", r.text);
    assert!(!r.text.contains("pool_max_conn_idle_time"), "{}", r.text);
    assert_eq!(Library::Pgx.model().clock, pools::Clock::Age);
}

/// HikariCP's Spring Boot spelling carries the same settings as its properties spelling, every
/// line under spring.datasource.hikari. (kebab-case, or data-source-properties for pgJDBC).
#[test]
fn hikaricp_is_printed_in_spring_boot_spelling_too() {
    for lower in [7.7, 340.0] {
        let recipes = for_path(
            &path(lower, DropKind::Silent, BoxCounts::Unknown),
            &Knobs::default(),
        );
        let plain = recipes
            .iter()
            .find(|r| r.library == Library::Hikaricp)
            .unwrap();
        let spring = recipes
            .iter()
            .find(|r| r.library == Library::HikaricpSpring)
            .unwrap();
        assert_eq!(plain.settings, spring.settings);
        for line in spring.text.lines().filter(|l| !l.starts_with('#')) {
            let (key, _) = line.split_once('=').expect("key=value");
            let rest = key.strip_prefix("spring.datasource.hikari.").expect(line);
            assert!(
                rest.starts_with("data-source-properties.")
                    || rest.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{line}"
            );
        }
        assert!(spring
            .text
            .contains("data-source-properties.socketTimeout="));
    }
}

/// Go and Java cannot run a line they were not compiled with, so their harnesses parse the
/// printed text strictly; these are the shapes they accept (lab/pools/gosql, lab/pools/java).
#[test]
fn the_go_and_java_lines_have_the_shape_their_harnesses_parse() {
    let m = path(47.0, DropKind::Silent, BoxCounts::Unknown);
    let t = Timings::new(&m, &Knobs::default()).unwrap();
    let recipes = for_path(&m, &Knobs::default());
    let go = recipes
        .iter()
        .find(|r| r.library == Library::DatabaseSql)
        .unwrap();
    assert_eq!(
        go.text,
        format!(
            "db.SetConnMaxLifetime({} * time.Millisecond)",
            millis(t.lifetime)
        )
    );
    let java = recipes
        .iter()
        .find(|r| r.library == Library::Pgjdbc)
        .unwrap();
    let lines: Vec<&str> = java.text.lines().collect();
    assert_eq!(lines.len(), 3, "{}", java.text);
    assert!(lines[0].starts_with("jdbc:postgresql://HOST/DB?socketTimeout="));
    assert!(lines[1].starts_with("// and before using a connection idle over "));
    assert!(lines[2].starts_with("if (!conn.isValid("));
}

/// A setting's value, through nested objects: `["pool", "idleTimeoutMillis"]`.
fn nested_setting(r: &Recipe, keys: &[&str]) -> serde_json::Value {
    let top = r.settings.iter().find(|s| s.key == keys[0]);
    let mut v = top.map(|s| s.value.clone()).unwrap_or_default();
    for key in &keys[1..] {
        v = v[*key].clone();
    }
    assert!(
        !v.is_null(),
        "{}: no {keys:?} in {:?}",
        r.library.id(),
        r.settings
    );
    v
}

const LOWERS: [f64; 8] = [1.6, 3.0, 7.8, 9.0, 19.5, 58.0, 342.0, 7_200.0];

/// tarn (Knex) and sequelize-pool close a connection at the first check after it has idled
/// the timeout: the timeout and the period together must stay below the threshold.
#[test]
fn knex_and_sequelize_reap_within_the_lifetime_at_every_threshold() {
    for lower in LOWERS {
        for (library, idle_key, period_key) in [
            (Library::Knex, "idleTimeoutMillis", "reapIntervalMillis"),
            (Library::Sequelize, "idle", "evict"),
        ] {
            let r = recipe_of(lower, BoxCounts::Unknown, library);
            let idle = nested_setting(&r, &["pool", idle_key]).as_u64().unwrap();
            let period = nested_setting(&r, &["pool", period_key]).as_u64().unwrap();
            assert_eq!(
                nested_setting(&r, &["pool", "min"]),
                0,
                "{lower}: min is exempt"
            );
            assert!(idle > 0 && period > 0, "{lower}: {idle} {period}");
            assert!(period <= 1000, "{lower}: {period}");
            assert!(
                ((idle + period) as f64) < lower * 1000.0,
                "{lower}: {library:?} idle {idle} + period {period}"
            );
        }
    }
}

/// The age limits of the pg.Pool based lines and postgres.js stay below the threshold, and a
/// keepalive delay is whole seconds and at least one: Node truncates the milliseconds, and 0
/// would leave the kernel's default of two hours.
#[test]
fn node_lifetimes_stay_below_and_keepalives_are_whole_seconds_at_every_threshold() {
    for lower in LOWERS {
        for library in [
            Library::NodePostgres,
            Library::Typeorm,
            Library::PrismaAdapterPg,
        ] {
            let path = |r: &Recipe, key: &'static str| -> Vec<&'static str> {
                if r.library == Library::Typeorm {
                    vec!["extra", key]
                } else {
                    vec![key]
                }
            };
            let r = recipe_of(lower, BoxCounts::Unknown, library);
            let life = nested_setting(&r, &path(&r, "maxLifetimeSeconds"))
                .as_f64()
                .unwrap();
            assert!(life > 0.0 && life < lower, "{lower}: {library:?} {life}");
            let r = recipe_of(lower, BoxCounts::Packets, library);
            let delay = nested_setting(&r, &path(&r, "keepAliveInitialDelayMillis"))
                .as_u64()
                .unwrap();
            assert!(
                delay >= 1000 && delay.is_multiple_of(1000),
                "{lower}: {delay}"
            );
            assert!((delay as f64) < lower * 1000.0, "{lower}: {delay}");
        }
        for (library, key) in [
            (Library::PostgresJs, "max_lifetime"),
            (Library::PostgresJs3, "idle_timeout"),
        ] {
            let r = recipe_of(lower, BoxCounts::Unknown, library);
            let life = nested_setting(&r, &[key]).as_f64().unwrap();
            assert!(life > 0.0 && life < lower, "{lower}: {library:?} {life}");
            let r = recipe_of(lower, BoxCounts::Packets, library);
            let every = nested_setting(&r, &["keep_alive"]).as_u64().unwrap();
            assert!(every >= 1 && (every as f64) < lower, "{lower}: {every}");
        }
    }
}

/// Sequelize hands pg.Client keepAlive but not its delay (Linux's two hours): never a
/// keepalive line, even where the box counts packets.
#[test]
fn sequelize_is_never_told_to_rely_on_keepalives() {
    let r = recipe_of(60.0, BoxCounts::Packets, Library::Sequelize);
    assert_eq!(r.variant, Variant::Eviction);
    assert!(!r.text.contains("keepAlive"), "{}", r.text);
}

/// pg.Pool has no checkout check and Node no TCP_USER_TIMEOUT: the Node lines' reasons must
/// not lean on either (the old node-postgres keepalive reason did).
#[test]
fn node_reasons_do_not_lean_on_a_checkout_check_or_tcp_user_timeout() {
    for library in [
        Library::NodePostgres,
        Library::PostgresJs,
        Library::PostgresJs3,
        Library::Knex,
        Library::Sequelize,
        Library::Typeorm,
        Library::PrismaAdapterPg,
    ] {
        for box_counts in [BoxCounts::Packets, BoxCounts::Unknown] {
            let r = recipe_of(60.0, box_counts, library);
            assert!(!r.why.contains("the pool's check"), "{}", r.why);
            assert!(!r.why.contains("tcp_user_timeout catch"), "{}", r.why);
            assert!(!r.text.contains("tcp_user_timeout"), "{}", r.text);
        }
    }
}
