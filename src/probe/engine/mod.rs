//! The probe engine of one target: owns the probe connections (the slots), executes what the
//! schedulers (the current phase's discovery or watch, and the guard in its own slot) ask for,
//! classifies every use and death, and decides what the metrics and the status page show (the
//! [`Publisher`] writes it).
//!
//! Each slot holds at most one server session, from the moment we start opening it until the
//! server no longer lists it (a dead connection's slot is only freed after the ghost check), so
//! the exporter never holds more than `max_connections` sessions: the slots plus the control
//! connection. (When the control connection dies silently, its session is reaped right after
//! the reconnect, and counted until then.)
//!
//! Network work (connect, probe, close, ghost check) runs in spawned tasks that report back as
//! [`Event`]s; the engine loop itself never waits on the network.
//!
//! The rooms, by the state each owns: this file holds the engine, its loop and its settings;
//! `phases.rs` the phase machine (discovery, confirming, watch, draining, outage) and what
//! moves it; `slots.rs` the slots, the sessions they hold and which scheduler (the phase's or
//! the guard's) each reports to; `tasks.rs` the spawned network work; `results.rs` what the
//! tasks report (to the schedulers, and through the [`Publisher`] to the metrics and the
//! page).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch as latest, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::keepalive_check::{self, CheckTiming, KeepaliveCheck};
use super::network::{Connect, ControlLink};
use super::publisher::Publisher;
use crate::discovery::Guard;

use crate::backoff::Backoff;
use crate::config::TargetConfig;
use crate::discovery::{Action, Bracket, Scheduler};
use crate::postgres::connection::BackendIdentity;
use crate::recommend;
use crate::storage::{self, Store};
use phases::{Next, Phase};
use slots::{probe_sessions, End, Holding, Slot};
use tasks::Event;

/// Sessions of ours the server still lists when a run ends (ghosts it could not, or was not
/// allowed to, terminate), with when each was last used: the next run of the target counts them
/// against the budget until the server lets go of them.
pub type LeftoverSessions = Vec<(BackendIdentity, Instant)>;

/// Whether the engine keeps watching after discovery (the daemon) or stops (`discover`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RunMode {
    #[default]
    Continuous,
    DiscoverOnce,
}

/// One target's probe engine.
pub struct Engine<N: Connect, K: ControlLink> {
    target: Arc<TargetConfig>,
    publish: Publisher,
    connector: Arc<N>,
    control: K,
    events: mpsc::UnboundedSender<Event<N::Conn>>,
    inbox: mpsc::UnboundedReceiver<Event<N::Conn>>,
    slots: Vec<Slot<N::Conn>>,
    /// The guard's own slot (the last one), when the target has an `app_max_idle_lifetime`
    /// and the budget leaves room beside the schedulers (a reload's new plan waits in the
    /// phase transition).
    guard: Option<Guard>,
    /// `discover`'s keepalive verdict in a slot of its own beside the discovery (the one below
    /// the guard's), when the budget can spare it; otherwise it runs after the bracket.
    keepalive_check: Option<KeepaliveCheck>,
    /// Settings a reload changes in place (see `config/change.rs`).
    updates: Option<latest::Receiver<Arc<TargetConfig>>>,
    /// Where settled measurements are kept, with this path's fingerprint.
    memory: Option<(Store, String)>,
    phase: Phase,
    epoch: Instant,
    bracket: Bracket,
    ghosts_alive: usize,
    open_gate: Arc<Mutex<(Backoff, Instant)>>,
    open_permits: Arc<Semaphore>,
    /// Cancels the schedulers' opens still queued when their phase ends (a queued open that
    /// connected after discovery ended was opened only to be closed), the guard's and the
    /// keepalive check's when each stops (or the server is unreachable); renewed for the next
    /// phase.
    phase_stop: CancellationToken,
    guard_stop: CancellationToken,
    check_stop: CancellationToken,
    /// When the newest probe attempt that connected started: with the control connection's,
    /// what shows the server takes new connections again (see `tasks::watch_until_gone`).
    newest_connected: Arc<Mutex<Option<Instant>>>,
    tasks: JoinSet<()>,
    rungs: Vec<(Duration, String)>,
    mode: RunMode,
    shutdown: CancellationToken,
}

impl<N: Connect, K: ControlLink> Engine<N, K> {
    /// `publish`: the run's publisher, its first publication done (see [`Publisher::start`]).
    pub fn new(
        target: Arc<TargetConfig>,
        publish: Publisher,
        connector: Arc<N>,
        control: K,
        mode: RunMode,
        shutdown: CancellationToken,
    ) -> Self {
        let (events, inbox) = mpsc::unbounded_channel();
        let probe_slots = target.max_connections - 1;
        let rungs = rungs(&target);
        let guard = plan_guard(&target, probe_slots);
        let keepalive_check = plan_keepalive_check(&target, mode, probe_slots, guard.is_some());
        Engine {
            publish,
            connector,
            control,
            events,
            inbox,
            slots: (0..probe_slots).map(|_| Slot::default()).collect(),
            guard,
            keepalive_check,
            updates: None,
            memory: None,
            phase: Phase::towards(Next::Discover(Bracket::default())),
            epoch: Instant::now(),
            bracket: Bracket::default(),
            ghosts_alive: 0,
            open_gate: Arc::new(Mutex::new((
                Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
                Instant::now(),
            ))),
            open_permits: Arc::new(Semaphore::new(2)),
            phase_stop: CancellationToken::new(),
            guard_stop: CancellationToken::new(),
            check_stop: CancellationToken::new(),
            newest_connected: Arc::new(Mutex::new(None)),
            tasks: JoinSet::new(),
            rungs,
            mode,
            shutdown,
            target,
        }
    }

    /// Takes later settings of the same path from `updates` (a reload's live changes).
    pub fn with_updates(mut self, updates: latest::Receiver<Arc<TargetConfig>>) -> Self {
        self.updates = Some(updates);
        self
    }

    /// Counts the sessions the previous run left on the server: each occupies a slot, watched
    /// like a closed probe's session, until the server no longer lists it.
    pub fn with_inherited(mut self, sessions: LeftoverSessions) -> Self {
        let free: Vec<usize> = (0..self.slots.len())
            .rev()
            .filter(|slot| !self.is_side(*slot))
            .collect();
        let mut free = free.into_iter();
        for (backend, last_used) in sessions {
            let Some(slot) = free.next() else {
                tracing::warn!(target_name = %self.target.name, pid = backend.pid, "a session the previous run left is beyond this run's budget; not counted");
                continue;
            };
            let s = &mut self.slots[slot];
            s.generation += 1;
            s.holding = Holding::Releasing;
            s.backend = Some((backend.clone(), last_used));
            s.inherited = true;
            let generation = s.generation;
            self.watch_until_gone(slot, generation, backend, last_used, End::Closed);
        }
        self
    }

    /// Keeps settled measurements in `store` for the next run of this path.
    pub fn with_memory(mut self, store: Store) -> Self {
        let fingerprint = self.target.fingerprint();
        self.memory = Some((store, fingerprint));
        self
    }

    /// Resumes from `stored`, the measurement the publisher's first publication showed (see
    /// [`super::publisher::resumable`]): its bracket is confirmed by the sentinels instead of
    /// discovered again.
    pub fn resuming(mut self, stored: Option<storage::StoredMeasurement>) -> Self {
        let Some(stored) = stored else {
            return self;
        };
        let bracket = Bracket {
            lower: stored.lower,
            upper: stored.upper,
        };
        let age = SystemTime::now()
            .duration_since(stored.measured_at)
            .unwrap_or_default();
        tracing::info!(
            target_name = %self.target.name,
            lower = %crate::format::bound(bracket.lower), upper = %crate::format::bound(bracket.upper),
            measured = %format!("{} ago", humantime::format_duration(Duration::from_secs(age.as_secs()))),
            "resuming from the stored measurement; the sentinels confirm it"
        );
        // Already published (state `confirming`, nothing recommended): the control connection
        // does not trust its lower bound yet.
        self.phase = Phase::towards(Next::Confirm(bracket));
        self.bracket = bracket;
        self.control.set_lower_bound(None);
        self
    }

    /// Keeps the settled measurement for the next run of this path.
    fn remember(&self) {
        let Some((store, fingerprint)) = &self.memory else {
            return;
        };
        let (drop_kind, keepalive_rescue) = self.publish.drop_and_rescue();
        store.remember(
            &self.target.name,
            fingerprint,
            storage::StoredMeasurement {
                lower: self.bracket.lower,
                upper: self.bracket.upper,
                drop_kind,
                keepalive_rescue,
                measured_at: SystemTime::now(),
            },
        );
    }

    /// Runs until `shutdown` (or, in [`RunMode::DiscoverOnce`], until discovery is over and
    /// every probe session is released), then closes every probe connection and terminates any
    /// of our sessions the server still lists.
    pub async fn run(mut self) -> LeftoverSessions {
        let mut reachability = self.control.subscribe();
        let mut control_sessions = self.control.subscribe_sessions();
        let mut updates = self.updates.take();
        loop {
            if matches!(self.maybe_start_next_phase(), Some(Next::Stop)) {
                break;
            }
            self.execute(self.now());
            self.publish_sessions();
            while self.tasks.try_join_next().is_some() {}
            let deadline = self.deadline().map(|d| self.epoch + d);
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                event = self.inbox.recv() => {
                    if let Some(event) = event {
                        self.handle(event);
                    }
                }
                changed = reachability.changed() => {
                    if changed.is_ok() && !*reachability.borrow() {
                        self.enter_outage();
                    }
                }
                Ok(()) = control_sessions.changed() => {}
                Some(settings) = next_update(&mut updates) => self.apply_settings(settings),
                _ = sleep_until_opt(deadline) => {}
            }
        }
        self.close_all().await
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// When the scheduler, the guard or the keepalive check next has something to do.
    fn deadline(&self) -> Option<Duration> {
        let scheduler = self.phase.estimator_ref().and_then(|s| s.next_deadline());
        let guard = self
            .guard
            .as_ref()
            .filter(|_| self.guard_runs())
            .and_then(|g| g.next_deadline());
        let check = self
            .keepalive_check
            .as_ref()
            .filter(|_| self.check_runs())
            .and_then(|k| k.next_deadline());
        scheduler.into_iter().chain(guard).chain(check).min()
    }

    /// The guard runs in every phase, but not while the server is unreachable and not once
    /// the run is stopping.
    fn guard_runs(&self) -> bool {
        !self.phase.is_outage()
            && !self
                .phase
                .transition()
                .is_some_and(|t| matches!(t.next, Next::Stop))
    }

    /// The keepalive check runs from the start until its verdict is in (through the drain
    /// that ends the run), but not while the server is unreachable.
    fn check_runs(&self) -> bool {
        !self.phase.is_outage() && self.keepalive_check.as_ref().is_some_and(|k| k.running())
    }

    // ---- executing the schedulers' actions ---------------------------------------------------

    fn execute(&mut self, now: Duration) {
        let mut actions = self
            .phase
            .estimator()
            .map_or_else(Vec::new, |s| s.poll(now));
        if self.guard_runs() {
            actions.extend(self.guard.as_mut().map_or_else(Vec::new, |g| g.poll(now)));
        }
        if self.check_runs() {
            actions.extend(
                self.keepalive_check
                    .as_mut()
                    .map_or_else(Vec::new, |k| k.poll(now)),
            );
        }
        for action in actions {
            match action {
                Action::Open { slot } => self.open(slot),
                Action::Probe { slot } => self.probe(slot),
                Action::Discard { slot } => self.discard(slot),
            }
        }
    }

    // ---- publishing ------------------------------------------------------------------------

    /// The bracket, to the metrics, the page and the control connection (which pings less
    /// often once the lower bound is known), with the pool settings recommended from it. A
    /// stored bracket not yet confirmed is neither: the control connection paces its pings
    /// from the range minimum (a stale [20 s, 21 s] with the box at 8 s had it ping every
    /// 10 s and die), and its recommendation is shown as stored, never published as advice.
    fn set_bracket(&mut self, bracket: Bracket) {
        self.bracket = bracket;
        let unconfirmed = self.phase.unconfirmed();
        self.control
            .set_lower_bound(bracket.lower.filter(|_| !unconfirmed));
        let t = &self.target;
        let recommendation = recommend::recommend(
            &bracket,
            t.recommendation_margin,
            t.recommended_socket_timeout,
        );
        self.publish
            .set_bracket(bracket, recommendation, !unconfirmed);
    }

    fn publish_sessions(&self) {
        self.publish
            .sessions(probe_sessions(&self.slots) + self.control.sessions());
    }
}

/// The `rung` label of probe uses: each ladder value with its label text.
fn rungs(target: &TargetConfig) -> Vec<(Duration, String)> {
    target
        .watch_ladder
        .iter()
        .map(|d| (*d, humantime::format_duration(*d).to_string()))
        .collect()
}

/// The guard, in the last slot, when there is a lifetime to guard and the budget leaves the
/// schedulers at least one slot.
fn plan_guard(target: &TargetConfig, probe_slots: usize) -> Option<Guard> {
    let lifetime = target.app_max_idle_lifetime?;
    (probe_slots >= 2).then(|| Guard::new(probe_slots - 1, lifetime))
}

/// When a `discover` run of `target` measures its keepalive verdict (`None`: it does not):
/// beside the discovery when the budget leaves it enough slots besides the check's
/// ([`keepalive_check::runs_alongside`]), else after the bracket.
pub fn keepalive_check_timing(target: &TargetConfig) -> Option<CheckTiming> {
    target.keepalive_probe?;
    let probe_slots = target.max_connections - 1;
    let scheduler_slots = probe_slots - usize::from(plan_guard(target, probe_slots).is_some());
    Some(if keepalive_check::runs_alongside(scheduler_slots) {
        CheckTiming::AlongsideDiscovery
    } else {
        CheckTiming::AfterBracket
    })
}

/// `discover`'s keepalive check in a slot of its own (the last one below the guard's), when
/// [`keepalive_check_timing`] says so.
fn plan_keepalive_check(
    target: &TargetConfig,
    mode: RunMode,
    probe_slots: usize,
    guard: bool,
) -> Option<KeepaliveCheck> {
    if mode != RunMode::DiscoverOnce {
        return None;
    }
    let scheduler_slots = probe_slots - usize::from(guard);
    match keepalive_check_timing(target)? {
        CheckTiming::AlongsideDiscovery => {
            Some(KeepaliveCheck::new(scheduler_slots - 1, target.precision))
        }
        CheckTiming::AfterBracket => {
            tracing::info!(
                target_name = %target.name, discovery_slots = scheduler_slots,
                "the keepalive check runs after the bracket: the budget has no slot to spare beside the discovery (about 1.25 x the upper bound more)"
            );
            None
        }
    }
}

/// The next settings from a reload; never, without a source (or once it is gone).
async fn next_update(
    updates: &mut Option<latest::Receiver<Arc<TargetConfig>>>,
) -> Option<Arc<TargetConfig>> {
    match updates {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => {
                *updates = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

mod phases;
mod results;
mod slots;
mod tasks;

#[cfg(test)]
mod tests;
