//! A simulated world for the discovery policies: a middlebox with a known threshold T, ideal
//! timers, and configurable latencies. It drives a [`Discovery`] exactly as the engine does
//! (poll at deadlines, results delivered after their latency), so the wall-time figures in
//! `docs/benchmarks.md` come from the same decision code that runs in production. A guard
//! (`SimOptions::guard`) can run beside it in a slot of its own, its results passed on as
//! evidence ([`Estimator::observe`]) as the engine does.

use std::time::Duration;

use super::{
    Action, Bracket, Discovery, Estimator, Guard, PolicyKind, Scheduler, SearchSpace, Verdict,
};

/// Latencies of the simulated world.
#[derive(Clone, Copy, Debug)]
pub struct SimOptions {
    pub connect_latency: Duration,
    pub probe_rtt: Duration,
    /// How long a probe on a dead connection takes to report: a silent drop waits for the TCP
    /// user timeout, a reset is seen at once.
    pub failure_detection: Duration,
    /// Closing a dead connection and checking the server for its ghost.
    pub release_delay: Duration,
    /// A guard beside the discovery, in a slot of its own: it idles this fraction of T again
    /// and again (`app_max_idle_lifetime`, as the engine runs [`Guard`]), and each result is evidence
    /// for the discovery.
    pub guard: Option<f64>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            connect_latency: Duration::from_millis(5),
            probe_rtt: Duration::from_millis(1),
            failure_detection: Duration::ZERO,
            release_delay: Duration::from_millis(1000),
            guard: None,
        }
    }
}

/// How one simulated discovery went.
#[derive(Clone, Copy, Debug)]
pub struct SimOutcome {
    pub converged_at: Option<Duration>,
    pub bracket: Bracket,
    pub verdict: Verdict,
    pub probes: usize,
    pub opens: usize,
    /// When the discovery's first death was known: the end of its escalation.
    pub first_death: Option<Duration>,
}

#[derive(Clone, Copy, Debug)]
enum Pending {
    Opened {
        slot: usize,
    },
    Probed {
        slot: usize,
        idle: Duration,
        survived: bool,
    },
    Released {
        slot: usize,
    },
}

/// Runs one discovery against threshold `threshold` until it converges or `time_limit`.
pub fn simulate(
    space: SearchSpace,
    slots: usize,
    policy: PolicyKind,
    threshold: Duration,
    opts: &SimOptions,
    time_limit: Duration,
) -> SimOutcome {
    let slots = slots.max(1);
    let mut sim = Sim {
        discovery: Discovery::new(space, slots, policy, Bracket::default(), Duration::ZERO),
        guard: opts
            .guard
            .map(|fraction| Guard::new(slots, threshold.mul_f64(fraction))),
        since: vec![Duration::ZERO; slots + 1],
        pending: Vec::new(),
        threshold,
        opts,
        probes: 0,
        opens: 0,
        first_death: None,
    };
    let mut now = Duration::ZERO;
    loop {
        if sim.discovery.verdict() != Verdict::Searching {
            return sim.outcome(Some(now));
        }
        let mut actions = sim.discovery.poll(now);
        if let Some(g) = &mut sim.guard {
            actions.extend(g.poll(now));
        }
        for action in actions {
            sim.act(action, now);
        }
        let next_event = sim.pending.iter().map(|(at, _)| *at).min();
        let guard_deadline = sim.guard.as_ref().and_then(|g| g.next_deadline());
        let deadline = sim
            .discovery
            .next_deadline()
            .into_iter()
            .chain(guard_deadline)
            .min();
        let next = match (next_event, deadline) {
            (Some(a), Some(b)) => a.min(b.max(now)),
            (Some(a), None) => a,
            (None, Some(b)) => b.max(now),
            (None, None) => break,
        };
        if next > time_limit {
            break;
        }
        now = next;
        sim.deliver(now);
    }
    sim.outcome(None)
}

/// The simulated guard: one slot idling `lifetime` between uses (the engine's `Guard` is the
/// same [`SlotClock`]).
/// One simulated discovery: the path answers each action after its latency.
struct Sim<'a> {
    discovery: Discovery,
    guard: Option<Guard>,
    /// When each slot's connection last went idle (the guard's last).
    since: Vec<Duration>,
    /// Results the path has yet to deliver, with when.
    pending: Vec<(Duration, Pending)>,
    threshold: Duration,
    opts: &'a SimOptions,
    probes: usize,
    opens: usize,
    first_death: Option<Duration>,
}

impl Sim<'_> {
    /// What the path will answer to `action`, and when.
    fn act(&mut self, action: Action, now: Duration) {
        let opts = self.opts;
        match action {
            Action::Open { slot } => {
                self.opens += 1;
                self.pending
                    .push((now + opts.connect_latency, Pending::Opened { slot }));
            }
            Action::Probe { slot } => {
                self.probes += 1;
                let idle = now - self.since[slot];
                let survived = idle < self.threshold;
                let latency = if survived {
                    opts.probe_rtt
                } else {
                    opts.failure_detection.max(opts.probe_rtt)
                };
                let probed = Pending::Probed {
                    slot,
                    idle,
                    survived,
                };
                self.pending.push((now + latency, probed));
            }
            Action::Discard { slot } => {
                self.pending
                    .push((now + opts.release_delay, Pending::Released { slot }));
            }
        }
    }

    /// Delivers every result due at `now`, in time order.
    fn deliver(&mut self, now: Duration) {
        self.pending.sort_by_key(|(at, _)| *at);
        while let Some(&(at, event)) = self.pending.first() {
            if at > now {
                break;
            }
            self.pending.remove(0);
            match event {
                Pending::Opened { slot } => {
                    self.since[slot] = at;
                    self.scheduler(slot).on_opened(slot, at);
                }
                Pending::Probed {
                    slot,
                    idle,
                    survived,
                } => {
                    if survived {
                        self.since[slot] = at;
                    } else {
                        if !self.is_guard(slot) {
                            self.first_death.get_or_insert(at);
                        }
                        let release = at + self.opts.release_delay;
                        self.pending.push((release, Pending::Released { slot }));
                    }
                    self.scheduler(slot).on_probe(slot, idle, survived, at);
                    if self.is_guard(slot) {
                        self.discovery.observe(idle, survived);
                    }
                }
                Pending::Released { slot } => self.scheduler(slot).on_released(slot, at),
            }
        }
    }

    fn is_guard(&self, slot: usize) -> bool {
        self.guard.as_ref().is_some_and(|g| g.slot() == slot)
    }

    /// Whose slot it is: the guard's, or the discovery's.
    fn scheduler(&mut self, slot: usize) -> &mut dyn Scheduler {
        match &mut self.guard {
            Some(g) if g.slot() == slot => g,
            _ => &mut self.discovery,
        }
    }

    fn outcome(&self, converged_at: Option<Duration>) -> SimOutcome {
        SimOutcome {
            converged_at,
            bracket: self.discovery.bracket(),
            verdict: self.discovery.verdict(),
            probes: self.probes,
            opens: self.opens,
            first_death: self.first_death,
        }
    }
}

/// Distribution of `converged_at / T` over many thresholds.
#[derive(Clone, Copy, Debug)]
pub struct RatioStats {
    pub median: f64,
    pub p90: f64,
    pub max: f64,
    /// Runs that did not converge within 20×T (their ratio counts as +∞).
    pub unconverged: usize,
    pub samples: usize,
}

/// Runs `samples` discoveries with T log-uniform in the search range (deterministic for a seed).
pub fn ratio_stats(
    space: SearchSpace,
    slots: usize,
    policy: PolicyKind,
    opts: &SimOptions,
    samples: usize,
    seed: u64,
) -> RatioStats {
    let thresholds = (space.min, space.max);
    ratio_stats_within(space, thresholds, slots, policy, opts, samples, seed)
}

/// [`ratio_stats`] with T log-uniform in `thresholds` (inside the search range), e.g. the
/// thresholds a goal is stated for.
pub fn ratio_stats_within(
    space: SearchSpace,
    thresholds: (Duration, Duration),
    slots: usize,
    policy: PolicyKind,
    opts: &SimOptions,
    samples: usize,
    seed: u64,
) -> RatioStats {
    let mut rng = SplitMix(seed);
    let (lo, hi) = (
        thresholds.0.as_secs_f64().ln(),
        thresholds.1.as_secs_f64().ln(),
    );
    let mut ratios: Vec<f64> = (0..samples)
        .map(|_| {
            // Keep T strictly inside the range so every run can converge.
            let t = (lo + (hi - lo) * (0.02 + 0.96 * rng.unit())).exp();
            let threshold = Duration::from_secs_f64(t);
            let outcome = simulate(
                space,
                slots,
                policy,
                threshold,
                opts,
                Duration::from_secs_f64(t * 20.0 + 60.0),
            );
            match outcome.converged_at {
                Some(at) if outcome.verdict == Verdict::Converged => at.as_secs_f64() / t,
                _ => f64::INFINITY,
            }
        })
        .collect();
    ratios.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let at = |q: f64| ratios[((ratios.len() as f64 * q) as usize).min(ratios.len() - 1)];
    RatioStats {
        median: at(0.5),
        p90: at(0.9),
        max: *ratios.last().unwrap_or(&f64::NAN),
        unconverged: ratios.iter().filter(|r| r.is_infinite()).count(),
        samples,
    }
}

/// A tiny deterministic PRNG (SplitMix64): sampling needs repeatability, not quality.
struct SplitMix(u64);

impl SplitMix {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}
