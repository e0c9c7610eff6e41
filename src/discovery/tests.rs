use super::sim::{ratio_stats, simulate, SimOptions};
use super::*;

fn s(x: f64) -> Duration {
    Duration::from_secs_f64(x)
}

fn space(precision: f64) -> SearchSpace {
    SearchSpace {
        min: s(1.0),
        max: s(3600.0),
        precision,
    }
}

#[test]
fn verdicts() {
    let sp = space(0.05);
    let b = |l: Option<f64>, u: Option<f64>| Bracket {
        lower: l.map(s),
        upper: u.map(s),
    };
    assert_eq!(b(None, None).verdict(&sp), Verdict::Searching);
    assert_eq!(b(Some(100.0), Some(110.0)).verdict(&sp), Verdict::Converged);
    assert_eq!(b(Some(100.0), Some(111.0)).verdict(&sp), Verdict::Searching);
    assert_eq!(b(Some(3600.0), None).verdict(&sp), Verdict::NoDropUpToMax);
    assert_eq!(b(None, Some(1.0)).verdict(&sp), Verdict::BelowRange);
    assert!(!b(Some(10.0), Some(9.0)).is_consistent());
    assert_eq!(b(Some(10.0), Some(9.0)).verdict(&sp), Verdict::Searching);
}

#[test]
fn contradictions_restart_from_the_newest_observation() {
    let mut d = Discovery::new(
        space(0.05),
        2,
        PolicyKind::Adaptive,
        Bracket::default(),
        s(0.0),
    );
    d.observe_survival(s(10.0));
    d.observe_death(s(20.0));
    d.observe_survival(s(25.0));
    assert_eq!(
        d.bracket(),
        Bracket {
            lower: Some(s(25.0)),
            upper: None
        }
    );
    d.observe_death(s(5.0));
    assert_eq!(
        d.bracket(),
        Bracket {
            lower: None,
            upper: Some(s(5.0))
        }
    );
}

#[test]
fn never_acts_on_a_busy_slot_and_discards_after_the_verdict() {
    let mut d = Discovery::new(
        space(0.05),
        3,
        PolicyKind::Adaptive,
        Bracket::default(),
        s(0.0),
    );
    let opens = d.poll(s(0.0));
    assert_eq!(opens.len(), 3);
    assert!(d.poll(s(0.0)).is_empty(), "slots are busy until opened");
    for slot in 0..3 {
        d.on_opened(slot, s(0.0));
    }
    assert_eq!(
        d.next_deadline(),
        Some(s(1.0)),
        "escalation starts at the range min"
    );
    assert_eq!(d.poll(s(1.0)), vec![Action::Probe { slot: 0 }]);
    d.on_probe(0, s(1.0), true, s(1.0));
    d.bracket = Bracket {
        lower: Some(s(100.0)),
        upper: Some(s(101.0)),
    };
    let discards = d.poll(s(2.0));
    assert_eq!(discards.len(), 3);
    assert!(discards.iter().all(|a| matches!(a, Action::Discard { .. })));
}

fn check_contains(policy: PolicyKind, slots: usize, opts: &SimOptions) {
    let sp = space(0.05);
    for i in 0..60 {
        let t = (i as f64 * 0.137).exp().min(3500.0) + 0.5;
        let out = simulate(sp, slots, policy, s(t), opts, s(t * 40.0 + 300.0));
        let b = out.bracket;
        assert!(
            b.lower.is_none_or(|l| l < s(t)),
            "{policy:?} slots={slots} T={t}: lower {b:?}"
        );
        assert!(
            b.upper.is_none_or(|u| u >= s(t)),
            "{policy:?} slots={slots} T={t}: upper {b:?}"
        );
    }
}

#[test]
fn the_bracket_always_contains_t() {
    let silent = SimOptions {
        failure_detection: s(10.0),
        ..SimOptions::default()
    };
    for policy in [
        PolicyKind::Adaptive,
        PolicyKind::Bisection,
        PolicyKind::FixedLadder,
    ] {
        for slots in [1, 2, 7, 16] {
            check_contains(policy, slots, &SimOptions::default());
            check_contains(policy, slots, &silent);
        }
    }
}

#[test]
fn edge_thresholds() {
    let sp = space(0.05);
    let o = SimOptions::default();
    let below = simulate(sp, 7, PolicyKind::Adaptive, s(0.5), &o, s(100.0));
    assert_eq!(below.verdict, Verdict::BelowRange);
    let above = simulate(sp, 7, PolicyKind::Adaptive, s(5000.0), &o, s(20000.0));
    assert_eq!(above.verdict, Verdict::NoDropUpToMax);
    assert!(above.converged_at.unwrap() < s(3600.0 * 1.5), "{above:?}");
    for slots in [1, 2] {
        let out = simulate(sp, slots, PolicyKind::Adaptive, s(42.0), &o, s(42.0 * 40.0));
        assert_eq!(out.verdict, Verdict::Converged, "slots={slots}");
    }
    let silent = SimOptions {
        failure_detection: s(10.0),
        ..o
    };
    let out = simulate(sp, 7, PolicyKind::Adaptive, s(30.0), &silent, s(600.0));
    assert_eq!(out.verdict, Verdict::Converged);
}

/// The figures behind docs/benchmarks.md (`cargo test --release -- --nocapture ratio_table`
/// prints them with more samples).
#[test]
fn adaptive_meets_its_goal_and_beats_the_baselines() {
    let samples: usize = std::env::var("IDLE_DROP_SIM_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let o = SimOptions::default();
    let sp = space(0.05);
    let adaptive8 = ratio_stats(sp, 8, PolicyKind::Adaptive, &o, samples, 1);
    let adaptive7 = ratio_stats(sp, 7, PolicyKind::Adaptive, &o, samples, 1);
    let bisection = ratio_stats(sp, 8, PolicyKind::Bisection, &o, samples, 1);
    let ladder = ratio_stats(sp, 8, PolicyKind::FixedLadder, &o, samples, 1);
    // A budget of 2 leaves one probe connection: adaptive must not lose to plain bisection.
    let adaptive1 = ratio_stats(sp, 1, PolicyKind::Adaptive, &o, samples, 1);
    eprintln!("±5%, 8 slots: adaptive {adaptive8:?}\n7 slots: adaptive {adaptive7:?}\n1 slot: adaptive {adaptive1:?}\nbisection {bisection:?}\nladder {ladder:?}");
    assert_eq!(adaptive8.unconverged, 0);
    assert!(adaptive8.median <= 2.0, "median {}", adaptive8.median);
    assert!(adaptive8.p90 <= 2.5, "p90 {}", adaptive8.p90);
    assert!(adaptive7.median <= 2.0, "median {}", adaptive7.median);
    assert!(adaptive8.median < bisection.median);
    assert!(
        adaptive1.median <= bisection.median * 1.05,
        "one slot: adaptive {adaptive1:?} vs bisection {bisection:?}"
    );
    assert!(
        ladder.unconverged > samples / 2,
        "a fixed ladder cannot reach ±5% for most T"
    );
}

/// Prints the full table for docs/benchmarks.md:
/// `cargo test --release --lib ratio_table -- --ignored --nocapture`.
#[test]
#[ignore]
fn ratio_table() {
    let samples: usize = std::env::var("IDLE_DROP_SIM_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    println!(
        "| policy | slots | precision | detection | median ×T | p90 ×T | max ×T | unconverged |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for policy in [
        PolicyKind::Adaptive,
        PolicyKind::Bisection,
        PolicyKind::FixedLadder,
    ] {
        for slots in [1, 2, 4, 7, 8, 16] {
            for precision in [0.05, 0.02] {
                for detection in [0.0, 10.0] {
                    let o = SimOptions {
                        failure_detection: s(detection),
                        ..SimOptions::default()
                    };
                    let r = ratio_stats(space(precision), slots, policy, &o, samples, 7);
                    println!(
                        "| {policy:?} | {slots} | ±{}% | {detection}s | {:.2} | {:.2} | {:.2} | {}/{} |",
                        precision * 100.0, r.median, r.p90, r.max, r.unconverged, r.samples
                    );
                }
            }
        }
    }
}

/// After the threshold went down, only the sentinel's death is known: the search starts from
/// it, not from the range min (at T = 300 s that was a first probe at 17 s).
#[test]
fn a_rediscovery_seeded_with_a_death_descends_from_it() {
    let seed = Bracket {
        lower: None,
        upper: Some(s(300.0)),
    };
    let mut d = Discovery::new(space(0.05), 6, PolicyKind::Adaptive, seed, s(0.0));
    for action in d.poll(s(0.0)) {
        if let Action::Open { slot } = action {
            d.on_opened(slot, s(0.0));
        }
    }
    let first_probe = d.next_deadline().expect("a probe is scheduled");
    assert!(
        first_probe >= s(140.0) && first_probe <= s(160.0),
        "first probe at {first_probe:?}"
    );
}
