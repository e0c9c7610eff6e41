use super::sim::{ratio_stats, ratio_stats_within, simulate, SimOptions};
use super::*;

fn s(x: f64) -> Duration {
    Duration::from_secs_f64(x)
}

/// How many thresholds a simulator table samples: `IDLE_DROP_SIM_SAMPLES`, else `default`.
fn sim_samples(default: usize) -> usize {
    std::env::var("IDLE_DROP_SIM_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

/// Jitter within the precision below the lower bound is not a young death; nothing is without
/// a survival to compare with.
#[test]
fn a_death_is_younger_than_survivors_only_past_the_precision() {
    let bracket = Bracket {
        lower: Some(s(100.0)),
        upper: Some(s(110.0)),
    };
    assert!(bracket.died_younger_than_survivors(s(94.9), 0.05));
    assert!(!bracket.died_younger_than_survivors(s(95.0), 0.05));
    assert!(!bracket.died_younger_than_survivors(s(120.0), 0.05));
    assert!(!Bracket::default().died_younger_than_survivors(s(1.0), 0.05));
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
    let samples = sim_samples(300);
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
    let samples = sim_samples(2000);
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
                // 1.1 s: a silent death confirmed from the server's side (`postgres::arrival`,
                // measured 1.06-1.17 s in the lab); 10 s: the default `tcp_user_timeout`.
                let detections: &[f64] = match policy {
                    PolicyKind::Adaptive => &[0.0, 1.1, 10.0],
                    _ => &[0.0, 10.0],
                };
                for &detection in detections {
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

/// The second table for docs/benchmarks.md: T from 5 s (issue 18's goals start there), the
/// slots `discover` and the daemon use at a budget of 8 (7, and 6 beside a guard or the
/// keepalive check), each detection model:
/// `cargo test --release --lib ratio_table_from_5s -- --ignored --nocapture`.
#[test]
#[ignore]
fn ratio_table_from_5s() {
    let samples = sim_samples(2000);
    println!("| slots | precision | detection | median ×T | p90 ×T | max ×T | unconverged |");
    println!("|---|---|---|---|---|---|---|");
    for slots in [6, 7] {
        for detection in [0.0, 1.1, 10.0] {
            let o = SimOptions {
                failure_detection: s(detection),
                ..SimOptions::default()
            };
            let thresholds = (s(5.0), s(3600.0));
            let r = ratio_stats_within(
                space(0.05),
                thresholds,
                slots,
                PolicyKind::Adaptive,
                &o,
                samples,
                7,
            );
            println!(
                "| {slots} | ±5% | {detection}s | {:.2} | {:.2} | {:.2} | {}/{} |",
                r.median, r.p90, r.max, r.unconverged, r.samples
            );
        }
    }
}

/// The adaptive policy at ±5% in the range 1 s–1 h against threshold `t` (seconds), with up
/// to 20×T + 1 min to converge.
fn adaptive_at(slots: usize, t: f64, o: &SimOptions) -> sim::SimOutcome {
    simulate(
        space(0.05),
        slots,
        PolicyKind::Adaptive,
        s(t),
        o,
        s(t * 20.0 + 60.0),
    )
}

/// What the policy alone predicts for each cell of the lab benchmark (`scripts/bench-discovery.py`:
/// range 1 s–1 h, ±5%, budget 8): the bracket's time ×T at the lab's thresholds, 7 slots (alone)
/// and 6 (beside a guard or `discover`'s keepalive check), each detection model:
/// `cargo test --release --lib ratio_at_the_lab_thresholds -- --ignored --nocapture`.
#[test]
#[ignore]
fn ratio_at_the_lab_thresholds() {
    println!("| T | slots | 0 s | 1.1 s | 10 s |");
    println!("|---|---|---|---|---|");
    for t in [5.0, 8.0, 13.0, 20.0, 40.0, 120.0] {
        for slots in [7, 6] {
            let ratios: Vec<String> = [0.0, 1.1, 10.0]
                .iter()
                .map(|&detection| {
                    let o = SimOptions {
                        failure_detection: s(detection),
                        ..SimOptions::default()
                    };
                    let r = adaptive_at(slots, t, &o);
                    let at = r.converged_at.expect("converges");
                    format!("{:.2}", at.as_secs_f64() / t)
                })
                .collect();
            println!("| {t} s | {slots} | {} |", ratios.join(" | "));
        }
    }
}

/// Where the adaptive policy's time goes (docs/benchmarks.md, issue 18, cause 1): its escalation
/// until the first death, then the refinement, for T log-uniform in 5 s–1 h, beside the bound the
/// escalation's structure sets. Testing a value v needs a connection idle v; with k slots used in
/// turn at ×g steps, each test also waits out the slot's earlier uses, 1/(1 − g^−k) × v, and the
/// first value tested above T is on average (g − 1)/ln g × T:
/// `cargo test --release --lib escalation_and_refinement -- --ignored --nocapture`.
#[test]
#[ignore]
fn escalation_and_refinement() {
    let samples = sim_samples(400);
    let bound = |g: f64, k: i32| (g - 1.0) / g.ln() * g.powi(k) / (g.powi(k) - 1.0);
    println!("| slots | detection | first death, median ×T | p90 | answer, median ×T | p90 | bound at ×1.3 | best bound (g) |");
    println!("|---|---|---|---|---|---|---|---|");
    for slots in [6, 7] {
        let k = slots as i32;
        let (best, best_g) = (105..200)
            .map(|step| f64::from(step) / 100.0)
            .map(|g| (bound(g, k), g))
            .fold((f64::INFINITY, 0.0), |a, b| if b.0 < a.0 { b } else { a });
        for detection in [0.0, 1.1] {
            let o = SimOptions {
                failure_detection: s(detection),
                ..SimOptions::default()
            };
            let (mut first, mut answer): (Vec<f64>, Vec<f64>) = (0..samples)
                .map(|i| {
                    let at = (i as f64 + 0.5) / samples as f64;
                    let t = (5f64.ln() + (3600f64.ln() - 5f64.ln()) * at).exp();
                    let r = adaptive_at(slots, t, &o);
                    let ratio = |d: Option<Duration>| d.expect("converges").as_secs_f64() / t;
                    (ratio(r.first_death), ratio(r.converged_at))
                })
                .unzip();
            first.sort_by(f64::total_cmp);
            answer.sort_by(f64::total_cmp);
            let q = |v: &[f64], q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
            println!(
                "| {slots} | {detection} s | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {best:.2} ({best_g}) |",
                q(&first, 0.5),
                q(&first, 0.9),
                q(&answer, 0.5),
                q(&answer, 0.9),
                bound(1.3, k)
            );
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

/// Drives `d` against threshold `t` with instant answers until `until`: every due action done
/// at once, a probe surviving iff its idle time is below `t`.
fn drive(d: &mut Discovery, t: f64, until: f64) {
    let mut now = s(0.0);
    let mut since = vec![s(0.0); d.slots.len()];
    while now <= s(until) {
        for action in d.poll(now) {
            match action {
                Action::Open { slot } => {
                    since[slot] = now;
                    d.on_opened(slot, now);
                }
                Action::Probe { slot } => {
                    let idle = now - since[slot];
                    since[slot] = now;
                    d.on_probe(slot, idle, idle < s(t), now);
                }
                Action::Discard { slot } => d.on_released(slot, now),
            }
        }
        match d.next_deadline() {
            Some(next) if next > now => now = next,
            _ => break,
        }
    }
}

/// Issue 18: the guard idles a lifetime the application chose; the escalation went on from
/// its survival, so at 0.75×T the next step (0.975×T) survived too and the first death came a
/// step later. Its survival now narrows the bracket (the answer, the verdict) and leaves the
/// discovery's own schedule as it was.
#[test]
fn the_guards_survival_narrows_the_bracket_not_the_schedule() {
    let (t, guard) = (20.0, 15.0);
    let new = || {
        Discovery::new(
            space(0.05),
            6,
            PolicyKind::Adaptive,
            Bracket::default(),
            s(0.0),
        )
    };
    let (mut with_guard, mut without) = (new(), new());
    drive(&mut with_guard, t, 15.0);
    drive(&mut without, t, 15.0);
    let own = without.bracket();
    assert!(own.lower.unwrap() < s(guard), "{own:?}");
    with_guard.observe(s(guard), true);
    assert_eq!(
        with_guard.bracket().lower,
        Some(s(guard)),
        "its evidence counts"
    );
    assert_eq!(with_guard.search(), own);
    assert_eq!(with_guard.next_deadline(), without.next_deadline());
    let next = with_guard.next_deadline().unwrap();
    assert_eq!(with_guard.poll(next), without.poll(next));
    // The next step is the discovery's own (13.8 s × 1.3 = 17.9 s), not 15 s × 1.3 = 19.5 s.
    let testing = with_guard.testing.iter().flatten().max().copied().unwrap();
    assert!(
        testing < s(19.0),
        "escalated from the guard's survival: {testing:?}"
    );
}

/// The guard's survival can end the search: the discovery's own results leave the bracket
/// too wide, the guard's lower bound narrows it within the precision.
#[test]
fn the_guards_survival_can_meet_the_precision() {
    let seed = Bracket {
        lower: Some(s(17.0)),
        upper: Some(s(21.0)),
    };
    let mut d = Discovery::new(space(0.05), 6, PolicyKind::Adaptive, seed, s(0.0));
    assert_eq!(d.verdict(), Verdict::Searching);
    d.observe(s(19.5), true);
    assert_eq!(d.verdict(), Verdict::Converged);
    assert_eq!(d.search().lower, Some(s(17.0)));
}

/// A result of the guard's that contradicts the bracket (the threshold moved) restarts the
/// search from it, as one of the discovery's own would: the search never plans from a
/// bracket the answer has left behind.
#[test]
fn a_contradicting_guard_result_restarts_the_search_too() {
    let seed = Bracket {
        lower: Some(s(10.0)),
        upper: Some(s(20.0)),
    };
    let mut d = Discovery::new(space(0.05), 6, PolicyKind::Adaptive, seed, s(0.0));
    d.observe(s(25.0), true);
    let restarted = Bracket {
        lower: Some(s(25.0)),
        upper: None,
    };
    assert_eq!((d.bracket(), d.search()), (restarted, restarted));
    d.observe(s(5.0), false);
    let restarted = Bracket {
        lower: None,
        upper: Some(s(5.0)),
    };
    assert_eq!((d.bracket(), d.search()), (restarted, restarted));
}

/// Where T holds still, a guard beside the discovery never makes its answer later, at any
/// lifetime (below T its survivals count, above it its deaths), with any number of slots
/// and detection time; the bracket still contains T, and near T the guard's survivals end
/// some searches sooner. (When the escalation went on from the guard's survivals, a guard at
/// 0.75×T made many answers later: the demo's below.)
#[test]
fn a_guard_never_makes_the_answer_later() {
    let sp = space(0.05);
    let mut sooner = 0;
    for slots in [1, 2, 6] {
        for detection in [0.0, 3.4, 10.0] {
            for guard in [0.5, 0.75, 0.8125, 0.9, 0.97, 1.2, 2.0] {
                for i in 0..25 {
                    let t = (1.5f64.ln() + (2000.0f64 / 1.5).ln() * f64::from(i) / 24.0).exp();
                    let o = SimOptions {
                        failure_detection: s(detection),
                        ..SimOptions::default()
                    };
                    let guarded = SimOptions {
                        guard: Some(guard),
                        ..o
                    };
                    let limit = s(t * 40.0 + 300.0);
                    let alone = simulate(sp, slots, PolicyKind::Adaptive, s(t), &o, limit);
                    let with = simulate(sp, slots, PolicyKind::Adaptive, s(t), &guarded, limit);
                    let case = format!("slots {slots}, detection {detection} s, guard {guard}×T, T {t:.1} s: {alone:?} / {with:?}");
                    let (alone_at, with_at) =
                        (alone.converged_at.unwrap(), with.converged_at.unwrap());
                    assert!(with_at <= alone_at, "later with the guard: {case}");
                    assert_eq!(with.verdict, Verdict::Converged, "{case}");
                    let b = with.bracket;
                    assert!(
                        b.lower.unwrap() < s(t) && b.upper.unwrap() >= s(t),
                        "{case}"
                    );
                    sooner += usize::from(with_at < alone_at);
                }
            }
        }
    }
    assert!(
        sooner > 0,
        "the guard's results never ended a search sooner"
    );
}

/// Issue 18's demo (silent box, T = 20 s, 3 s `tcp_user_timeout`, the guard at 15 s, 6
/// discovery slots): with the guard as fast as without it, where it used to be 2.34×T.
#[test]
fn the_demos_guard_costs_nothing_on_the_simulator() {
    let sp = SearchSpace {
        min: s(1.0),
        max: s(600.0),
        precision: 0.05,
    };
    let o = SimOptions {
        failure_detection: s(3.4),
        ..SimOptions::default()
    };
    let guarded = SimOptions {
        guard: Some(0.75),
        ..o
    };
    let alone = simulate(sp, 6, PolicyKind::Adaptive, s(20.0), &o, s(800.0));
    let with = simulate(sp, 6, PolicyKind::Adaptive, s(20.0), &guarded, s(800.0));
    assert_eq!(
        with.converged_at, alone.converged_at,
        "{alone:?} / {with:?}"
    );
    assert!(with.converged_at.unwrap() < s(20.0 * 2.2), "{with:?}");
}

/// The guard's cost on the simulator, for docs/benchmarks.md:
/// `cargo test --release --lib guard_table -- --ignored --nocapture`.
#[test]
#[ignore]
fn guard_table() {
    let samples = sim_samples(2000);
    println!("| detection | discovery slots | guard | median ×T | p90 ×T | max ×T |");
    println!("|---|---|---|---|---|---|");
    for detection in [0.0, 3.4, 10.0] {
        for (slots, guard) in [
            (7, None),
            (6, None),
            (6, Some(0.5)),
            (6, Some(0.75)),
            (6, Some(0.9)),
            (6, Some(0.97)),
            (6, Some(1.5)),
        ] {
            let o = SimOptions {
                failure_detection: s(detection),
                guard,
                ..SimOptions::default()
            };
            let r = ratio_stats(space(0.05), slots, PolicyKind::Adaptive, &o, samples, 7);
            let guard = guard.map_or("none".to_string(), |g| format!("{g}×T"));
            println!(
                "| {detection} s | {slots} | {guard} | {:.2} | {:.2} | {:.2} |",
                r.median, r.p90, r.max
            );
        }
    }
}
