use std::time::Duration;

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

/// The recipe of one library for a silent path at `lower` seconds, behind a box that counts
/// `box_counts`.
fn recipe_of(library: Library, lower: f64, box_counts: BoxCounts) -> Recipe {
    for_path(
        &path(lower, DropKind::Silent, box_counts),
        &Knobs::default(),
    )
    .into_iter()
    .find(|r| r.library == library)
    .expect("every library has a recipe")
}

/// A setting's value, through nested objects: `["pool", "idleTimeoutMillis"]`.
fn setting(r: &Recipe, keys: &[&str]) -> serde_json::Value {
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
            let r = recipe_of(library, lower, BoxCounts::Unknown);
            let idle = setting(&r, &["pool", idle_key]).as_u64().unwrap();
            let period = setting(&r, &["pool", period_key]).as_u64().unwrap();
            assert_eq!(setting(&r, &["pool", "min"]), 0, "{lower}: min is exempt");
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
            let r = recipe_of(library, lower, BoxCounts::Unknown);
            let life = setting(&r, &path(&r, "maxLifetimeSeconds"))
                .as_f64()
                .unwrap();
            assert!(life > 0.0 && life < lower, "{lower}: {library:?} {life}");
            let r = recipe_of(library, lower, BoxCounts::Packets);
            let delay = setting(&r, &path(&r, "keepAliveInitialDelayMillis"))
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
            let r = recipe_of(library, lower, BoxCounts::Unknown);
            let life = setting(&r, &[key]).as_f64().unwrap();
            assert!(life > 0.0 && life < lower, "{lower}: {library:?} {life}");
            let r = recipe_of(library, lower, BoxCounts::Packets);
            let every = setting(&r, &["keep_alive"]).as_u64().unwrap();
            assert!(every >= 1 && (every as f64) < lower, "{lower}: {every}");
        }
    }
}

/// Sequelize hands pg.Client keepAlive but not its delay (Linux's two hours): never a
/// keepalive line, even where the box counts packets.
#[test]
fn sequelize_is_never_told_to_rely_on_keepalives() {
    let r = recipe_of(Library::Sequelize, 60.0, BoxCounts::Packets);
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
            let r = recipe_of(library, 60.0, box_counts);
            assert!(!r.why.contains("the pool's check"), "{}", r.why);
            assert!(!r.why.contains("tcp_user_timeout catch"), "{}", r.why);
            assert!(!r.text.contains("tcp_user_timeout"), "{}", r.text);
        }
    }
}
