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
    for library in [Library::Quaint, Library::PostgresServer] {
        let r = recipes.iter().find(|r| r.library == library).unwrap();
        assert!(
            matches!(&r.proof, Proof::NotVerified { reason } if !reason.is_empty()),
            "{:?}",
            r.proof
        );
        assert!(!r.is_proven());
    }
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
