//! The probe engine of one target: owns the probe connections (the slots), executes what the
//! current scheduler (discovery or watch) asks for, classifies every use and death, and keeps
//! the metrics and the status page in step.
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
//! The rooms: this file holds the engine's state (phase, slots), its loop and the helpers the
//! others share; `phases.rs` moves between discovery, watch and draining; `tasks.rs` is the
//! spawned network work; `results.rs` applies what the tasks report (to the schedulers, the
//! guard, and through the [`Publisher`] to the metrics and the page).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch as latest, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::guard::Guard;
use super::network::{Connect, Control};
use super::publisher::Publisher;
use super::status::StatusBoard;
use super::watch::Watch;
use crate::backoff::Backoff;
use crate::config::TargetConfig;
use crate::discovery::{Action, Bracket, Discovery, Scheduler};
use crate::metrics::TargetMetrics;
use crate::model::Role;
use crate::postgres::connection::{Attempt, BackendIdentity};
use crate::recommend;
use crate::storage::{self, Store};
use tasks::Event;

enum Phase {
    Discovering {
        discovery: Discovery,
        started: Instant,
    },
    Watching(Watch),
    /// Closing every slot before the next phase starts (after convergence, a detected change,
    /// or an outage); the next phase starts once all slots are empty and the server answers.
    Draining {
        next: Next,
    },
}

#[derive(Clone, Copy, Debug)]
enum Next {
    Discover(Bracket),
    Watch(Bracket),
    /// A bracket from an earlier run: watch it, and call it confirmed once the low sentinel
    /// survived just below its lower bound.
    Confirm(Bracket),
    /// `discover`: the bracket is known; one keepalive probe tells what kind of box it is.
    CheckKeepalives(Bracket),
    /// Discovery is over and the run was for one measurement only (`discover`).
    Stop,
}

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

#[derive(Default)]
enum SlotState<C> {
    #[default]
    Empty,
    Opening,
    Idle(Box<C>),
    /// A probe (or a passive death check) is in flight; the connection is in that task.
    InUse,
    /// Closed or dead; waiting for the server to stop listing the session.
    Releasing,
}

struct Slot<C> {
    generation: u64,
    state: SlotState<C>,
    role: Option<Role>,
    /// The session this slot holds on the server, and when we last used it (what the
    /// shutdown sweep needs for slots whose connection is in flight). For an attempt given up
    /// on that may linger, the attempt's identity (its name) and when it started.
    backend: Option<(BackendIdentity, Instant)>,
    /// The attempt being opened, and whether it got past the queue (only then can it reach
    /// the server, and the shutdown sweep looks for it).
    attempt: Option<(Attempt, Arc<AtomicBool>)>,
    /// Releasing, and we closed it ourselves (the server was told it goes): no session any
    /// more, though the slot stays taken until the ghost check frees it.
    closed: bool,
    /// Holds a session the previous run left (releasing until the server lets go of it):
    /// counted in the budget, but no phase waits for it to start.
    inherited: bool,
}

impl<C> Default for Slot<C> {
    fn default() -> Self {
        Slot {
            generation: 0,
            state: SlotState::Empty,
            role: None,
            backend: None,
            attempt: None,
            closed: false,
            inherited: false,
        }
    }
}

/// One target's probe engine.
pub struct Engine<N: Connect, K: Control> {
    target: Arc<TargetConfig>,
    publish: Publisher,
    connector: Arc<N>,
    control: K,
    events: mpsc::UnboundedSender<Event<N::Conn>>,
    inbox: mpsc::UnboundedReceiver<Event<N::Conn>>,
    slots: Vec<Slot<N::Conn>>,
    /// The guard's own slot (the last one), when the target has an `app_max_idle_lifetime`
    /// and the budget leaves room beside the schedulers.
    guard: Option<Guard>,
    /// A reload added or removed the guard: the new plan, installed once every slot is empty.
    replanned_guard: Option<Option<Guard>>,
    /// Settings a reload changes in place (see `config/change.rs`).
    updates: Option<latest::Receiver<Arc<TargetConfig>>>,
    /// Where settled measurements are kept, with this path's fingerprint.
    memory: Option<(Store, String)>,
    /// Since when a resumed bracket is being confirmed.
    confirming: Option<Instant>,
    /// The bracket is a stored one the sentinels have not confirmed yet: the control
    /// connection does not trust its lower bound, and nothing is recommended from it.
    unconfirmed: bool,
    phase: Phase,
    epoch: Instant,
    bracket: Bracket,
    ghosts_alive: usize,
    /// The target is unreachable (entered an outage and no phase started since): deaths now are
    /// the outage's, never unexpected idle deaths.
    in_outage: bool,
    open_gate: Arc<Mutex<(Backoff, Instant)>>,
    open_permits: Arc<Semaphore>,
    /// Cancels the schedulers' opens still queued when their phase ends (a queued open that
    /// connected after discovery ended was opened only to be closed), and the guard's when it
    /// stops; renewed for the next phase.
    phase_stop: CancellationToken,
    guard_stop: CancellationToken,
    /// When the newest probe attempt that connected started: with the control connection's,
    /// what shows the server takes new connections again (see `tasks::watch_until_gone`).
    newest_connected: Arc<Mutex<Option<Instant>>>,
    tasks: JoinSet<()>,
    rungs: Vec<(Duration, String)>,
    mode: RunMode,
    shutdown: CancellationToken,
}

impl<N: Connect, K: Control> Engine<N, K> {
    pub fn new(
        target: Arc<TargetConfig>,
        metrics: TargetMetrics,
        board: StatusBoard,
        connector: Arc<N>,
        control: K,
        mode: RunMode,
        shutdown: CancellationToken,
    ) -> Self {
        let (events, inbox) = mpsc::unbounded_channel();
        let probe_slots = target.max_connections - 1;
        let rungs = rungs(&target);
        let publish = Publisher::new(&target, metrics, board);
        let guard = plan_guard(&target, probe_slots);
        Engine {
            publish,
            connector,
            control,
            events,
            inbox,
            slots: (0..probe_slots).map(|_| Slot::default()).collect(),
            guard,
            replanned_guard: None,
            updates: None,
            memory: None,
            confirming: None,
            unconfirmed: false,
            phase: Phase::Draining {
                next: Next::Discover(Bracket::default()),
            },
            epoch: Instant::now(),
            bracket: Bracket::default(),
            ghosts_alive: 0,
            in_outage: false,
            open_gate: Arc::new(Mutex::new((
                Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
                Instant::now(),
            ))),
            open_permits: Arc::new(Semaphore::new(2)),
            phase_stop: CancellationToken::new(),
            guard_stop: CancellationToken::new(),
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
            .filter(|slot| !self.is_guard(*slot))
            .collect();
        let mut free = free.into_iter();
        for (backend, last_used) in sessions {
            let Some(slot) = free.next() else {
                tracing::warn!(target_name = %self.target.name, pid = backend.pid, "a session the previous run left is beyond this run's budget; not counted");
                continue;
            };
            let s = &mut self.slots[slot];
            s.generation += 1;
            s.state = SlotState::Releasing;
            s.backend = Some((backend.clone(), last_used));
            s.inherited = true;
            let generation = s.generation;
            self.watch_until_gone(slot, generation, backend, last_used, false);
        }
        self
    }

    /// Keeps settled measurements in `store`, and resumes from the one stored for this path
    /// (same fingerprint) if there is one: its bracket is published at once and confirmed by
    /// the sentinels instead of discovered again.
    pub fn with_memory(mut self, store: Store) -> Self {
        let fingerprint = self.target.fingerprint();
        if let Some(stored) = store.recall(&self.target.name, &fingerprint) {
            self.resume(stored);
        }
        self.memory = Some((store, fingerprint));
        self
    }

    fn resume(&mut self, stored: storage::StoredMeasurement) {
        let bracket = Bracket {
            lower: stored.lower,
            upper: stored.upper,
        };
        if bracket.lower.is_none() && bracket.upper.is_none() {
            // Nothing to resume from (the daemon skipped its reset for a stored entry).
            self.publish.start_measuring();
            return;
        }
        let age = SystemTime::now()
            .duration_since(stored.measured_at)
            .unwrap_or_default();
        tracing::info!(
            target_name = %self.target.name,
            lower = %crate::format::bound(bracket.lower), upper = %crate::format::bound(bracket.upper),
            measured = %format!("{} ago", humantime::format_duration(Duration::from_secs(age.as_secs()))),
            "resuming from the stored measurement; the sentinels confirm it"
        );
        self.unconfirmed = true;
        self.set_bracket(bracket);
        // Published with the bracket: until the control connection is up and the sentinels
        // start, the series would otherwise still say `discovering` (what a fresh target
        // starts with), as if the stored measurement were not used.
        self.publish
            .set_state(crate::model::TargetState::Confirming);
        self.publish.resumed(
            stored.keepalive_rescue,
            stored.drop_kind,
            stored.measured_at,
        );
        self.phase = Phase::Draining {
            next: Next::Confirm(bracket),
        };
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

    /// The active phase's scheduler; `None` while draining.
    fn scheduler(&mut self) -> Option<&mut dyn Scheduler> {
        match &mut self.phase {
            Phase::Discovering { discovery, .. } => Some(discovery),
            Phase::Watching(watch) => Some(watch),
            Phase::Draining { .. } => None,
        }
    }

    fn scheduler_ref(&self) -> Option<&dyn Scheduler> {
        match &self.phase {
            Phase::Discovering { discovery, .. } => Some(discovery),
            Phase::Watching(watch) => Some(watch),
            Phase::Draining { .. } => None,
        }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// When the scheduler or the guard next has something to do.
    fn deadline(&self) -> Option<Duration> {
        let scheduler = self.scheduler_ref().and_then(|s| s.next_deadline());
        let guard = self
            .guard
            .as_ref()
            .filter(|_| self.guard_runs())
            .and_then(Guard::next_deadline);
        scheduler.into_iter().chain(guard).min()
    }

    fn role(&self, slot: usize) -> Role {
        self.slots[slot].role.unwrap_or(Role::Discovery)
    }

    fn is_guard(&self, slot: usize) -> bool {
        self.guard.as_ref().is_some_and(|g| g.slot() == slot)
    }

    /// How many slots the discovery or the watch gets: all but the guard's.
    fn scheduler_slots(&self) -> usize {
        self.slots.len() - usize::from(self.guard.is_some())
    }

    /// The guard runs in every phase, but not while the server is unreachable and not once
    /// the run is stopping.
    fn guard_runs(&self) -> bool {
        !self.in_outage && !matches!(self.phase, Phase::Draining { next: Next::Stop })
    }

    /// Whether a connection that just answered in `slot` is kept for its next use.
    fn keeps(&self, slot: usize) -> bool {
        if self.is_guard(slot) {
            self.guard_runs()
        } else {
            self.is_active()
        }
    }

    fn is_active(&self) -> bool {
        !matches!(self.phase, Phase::Draining { .. })
    }

    // ---- executing the scheduler's actions -------------------------------------------------

    fn execute(&mut self, now: Duration) {
        let mut actions = self.scheduler().map_or_else(Vec::new, |s| s.poll(now));
        if self.guard_runs() {
            actions.extend(self.guard.as_mut().and_then(|g| g.poll(now)));
        }
        for action in actions {
            match action {
                Action::Open { slot } => self.open(slot),
                Action::Probe { slot } => self.probe(slot),
                Action::Discard { slot } => self.discard(slot),
            }
        }
    }

    fn discard(&mut self, slot: usize) {
        match std::mem::take(&mut self.slots[slot].state) {
            SlotState::Idle(conn) => self.release(slot, *conn, false),
            other => {
                self.slots[slot].state = other;
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
        self.control
            .set_lower_bound(bracket.lower.filter(|_| !self.unconfirmed));
        let t = &self.target;
        let recommendation = recommend::recommend(
            &bracket,
            t.recommendation_margin,
            t.recommended_socket_timeout,
        );
        self.publish
            .set_bracket(bracket, recommendation, !self.unconfirmed);
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

/// Probe sessions that exist on the server (or may, until it stops listing them): a
/// connection being opened is an attempt, not a session (a server with 3 free slots showed 42),
/// and one we closed ourselves is gone (`discover` once reported 10 "at most" while the
/// server listed 3: closed connections waiting for their check). An attempt given up on that
/// may linger is counted until the server is seen without it.
fn probe_sessions<C>(slots: &[Slot<C>]) -> usize {
    slots
        .iter()
        .filter(|s| match s.state {
            SlotState::Idle(_) | SlotState::InUse => true,
            SlotState::Releasing => !s.closed,
            SlotState::Empty | SlotState::Opening => false,
        })
        .count()
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
mod tasks;

#[cfg(test)]
mod tests;
