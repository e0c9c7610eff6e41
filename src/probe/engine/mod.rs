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

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch as latest, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::control::GhostVerdict;
use super::guard::Guard;
use super::network::{Conn, Connect, Control};
use super::publisher::Publisher;
use super::status::StatusBoard;
use super::watch::{self, Role, Watch};
use crate::backoff::Backoff;
use crate::config::TargetConfig;
use crate::discovery::{Action, Bracket, Discovery, Scheduler, SearchSpace, Verdict};
use crate::metrics::TargetMetrics;
use crate::postgres::classify::DeathCause;
use crate::postgres::connection::{BackendIdentity, ConnectError, ProbeOutcome};
use crate::recommend;
use crate::storage::{self, Store};

/// How long a closed connection's session may take to disappear before we call it a ghost.
const GHOST_GRACE: Duration = Duration::from_secs(1);
/// How often an unreaped ghost is checked again.
const GHOST_RECHECK: Duration = Duration::from_secs(30);
/// How long shutdown may spend terminating sessions the server still lists.
const SWEEP_LIMIT: Duration = Duration::from_secs(8);

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
    /// A bracket from an earlier run: watch it, and call it confirmed once both sentinels gave
    /// their expected result.
    Confirm(Bracket),
    /// `discover`: the bracket is known; one keepalive probe tells what kind of box it is.
    CheckKeepalives(Bracket),
    /// Discovery is over and the run was for one measurement only (`discover`).
    Stop,
}

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
    /// shutdown sweep needs for slots whose connection is in flight).
    backend: Option<(BackendIdentity, Instant)>,
}

enum Event<C> {
    Opened {
        slot: usize,
        generation: u64,
        result: Result<C, ConnectError>,
    },
    Used {
        slot: usize,
        generation: u64,
        used: Use<C>,
    },
    Ended {
        slot: usize,
        generation: u64,
    },
    GhostAlive {
        slot: usize,
        generation: u64,
    },
    Released {
        slot: usize,
        generation: u64,
        seen: bool,
        reaped: bool,
        counted_alive: bool,
        /// The connection had died (its session's fate was a ghost check's question).
        died: bool,
    },
}

/// What one use of a connection found: a probe's answer, or a death noticed while idle.
struct Use<C> {
    conn: Box<C>,
    idle: Duration,
    outcome: ProbeOutcome,
    /// False for a death noticed while idle (no probe query was sent).
    probed: bool,
    /// Whether the control connection still answered right after the death.
    server_reachable: bool,
}

impl<C> Default for Slot<C> {
    fn default() -> Self {
        Slot {
            generation: 0,
            state: SlotState::Empty,
            role: None,
            backend: None,
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
    phase: Phase,
    epoch: Instant,
    bracket: Bracket,
    ghosts_alive: usize,
    /// The target is unreachable (entered an outage and no phase started since): deaths now are
    /// the outage's, never unexpected idle deaths.
    in_outage: bool,
    open_gate: Arc<Mutex<(Backoff, Instant)>>,
    open_permits: Arc<Semaphore>,
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

    fn resume(&mut self, stored: storage::Measurement) {
        let bracket = Bracket {
            lower: stored.lower,
            upper: stored.upper,
        };
        if bracket.lower.is_none() && bracket.upper.is_none() {
            return;
        }
        let age = SystemTime::now()
            .duration_since(stored.measured_at)
            .unwrap_or_default();
        tracing::info!(
            target_name = %self.target.name,
            lower = %format_bound(bracket.lower), upper = %format_bound(bracket.upper),
            measured = %format!("{} ago", humantime::format_duration(Duration::from_secs(age.as_secs()))),
            "resuming from the stored measurement; the sentinels confirm it"
        );
        self.set_bracket(bracket);
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
            storage::Measurement {
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
    pub async fn run(mut self) {
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
        self.close_all().await;
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

    fn open(&mut self, slot: usize) {
        let role = match &self.phase {
            _ if self.is_guard(slot) => Role::Guard,
            Phase::Watching(watch) => watch.role(slot),
            _ => Role::Discovery,
        };
        let keepalive = if role == Role::Keepalive {
            self.target
                .keepalive_probe
                .map(|k| watch::keepalive_interval(k.interval, self.bracket))
        } else {
            None
        };
        let s = &mut self.slots[slot];
        s.generation += 1;
        s.state = SlotState::Opening;
        s.role = Some(role);
        let generation = s.generation;
        let events = self.events.clone();
        let connector = self.connector.clone();
        let gate = self.open_gate.clone();
        let permits = self.open_permits.clone();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            let opening = async {
                let _permit = permits.acquire().await;
                // One gate for all slots: after a failure every slot waits, so a down server
                // sees one attempt per backoff step, not a storm.
                loop {
                    let not_before = gate.lock().unwrap_or_else(|e| e.into_inner()).1;
                    if Instant::now() >= not_before {
                        break;
                    }
                    tokio::time::sleep_until(not_before).await;
                }
                let ended_events = events.clone();
                let result = connector
                    .open(keepalive, move |_| {
                        let _ = ended_events.send(Event::Ended { slot, generation });
                    })
                    .await;
                let mut gate = gate.lock().unwrap_or_else(|e| e.into_inner());
                match &result {
                    Ok(_) => gate.0.reset(),
                    Err(_) => gate.1 = Instant::now() + gate.0.next_delay(),
                }
                result
            };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = opening => {
                    let _ = events.send(Event::Opened { slot, generation, result });
                }
            }
        });
    }

    fn probe(&mut self, slot: usize) {
        let SlotState::Idle(mut conn) =
            std::mem::replace(&mut self.slots[slot].state, SlotState::InUse)
        else {
            return;
        };
        let generation = self.slots[slot].generation;
        if let Some((_, last_used)) = &mut self.slots[slot].backend {
            *last_used = Instant::now();
        }
        let events = self.events.clone();
        let control = self.control.clone();
        let query = self.target.probe_query.clone();
        let query_timeout = self.target.query_timeout;
        self.tasks.spawn(async move {
            let now = Instant::now();
            let (if_alive, if_dead) = (conn.idle_survived(now), conn.idle_at_death(now));
            let outcome = conn.probe(&query, query_timeout).await;
            let idle = match outcome {
                ProbeOutcome::Alive => if_alive,
                _ => if_dead,
            };
            let server_reachable =
                matches!(outcome, ProbeOutcome::Alive) || control.healthy().await;
            let used = Use {
                conn,
                idle,
                outcome,
                probed: true,
                server_reachable,
            };
            let _ = events.send(Event::Used {
                slot,
                generation,
                used,
            });
        });
    }

    fn discard(&mut self, slot: usize) {
        match std::mem::take(&mut self.slots[slot].state) {
            SlotState::Idle(conn) => self.release(slot, *conn, false),
            other => {
                self.slots[slot].state = other;
            }
        }
    }

    /// Closes a connection and frees its slot once the server no longer lists the session.
    /// `died`: the connection died, so the check also tells whether the server keeps ghosts.
    fn release(&mut self, slot: usize, conn: N::Conn, died: bool) {
        let s = &mut self.slots[slot];
        s.state = SlotState::Releasing;
        let generation = s.generation;
        let backend = conn.backend().clone();
        // When we last sent anything: a probe's query may have reached the server even if its
        // answer never came back.
        let last_used = s.backend.as_ref().map_or(conn.last_active(), |(_, at)| *at);
        let events = self.events.clone();
        let control = self.control.clone();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            conn.close().await;
            let work = async {
                tokio::time::sleep(GHOST_GRACE).await;
                let mut seen = false;
                let mut counted_alive = false;
                loop {
                    match control.ghost(backend.clone(), last_used).await {
                        GhostVerdict::Gone => break (seen, false, counted_alive),
                        GhostVerdict::Reaped => break (true, true, counted_alive),
                        GhostVerdict::Alive => {
                            seen = true;
                            if !counted_alive {
                                counted_alive = true;
                                let _ = events.send(Event::GhostAlive { slot, generation });
                            }
                            tokio::time::sleep(GHOST_RECHECK).await;
                        }
                        GhostVerdict::Unknown => tokio::time::sleep(Duration::from_secs(2)).await,
                    }
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                (seen, reaped, counted_alive) = work => {
                    let _ = events.send(Event::Released { slot, generation, seen, reaped, counted_alive, died });
                }
            }
        });
    }

    // ---- handling results ------------------------------------------------------------------

    fn handle(&mut self, event: Event<N::Conn>) {
        let now = self.now();
        match event {
            Event::Opened {
                slot,
                generation,
                result,
            } => {
                if self.slots[slot].generation != generation {
                    return;
                }
                match result {
                    Ok(conn) => {
                        self.publish.connected(conn.connect_duration());
                        self.slots[slot].backend =
                            Some((conn.backend().clone(), conn.last_active()));
                        if self.keeps(slot) {
                            self.slots[slot].state = SlotState::Idle(Box::new(conn));
                            self.scheduler_opened(slot, now, true);
                        } else {
                            self.release(slot, conn, false);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(target_name = %self.target.name, error = %e, "probe connection failed");
                        self.publish.connect_failed(e.kind.label(), e.to_string());
                        self.slots[slot].state = SlotState::Empty;
                        self.scheduler_opened(slot, now, false);
                    }
                }
            }
            Event::Ended { slot, generation } => {
                let s = &mut self.slots[slot];
                if s.generation != generation {
                    return;
                }
                let SlotState::Idle(conn) = std::mem::replace(&mut s.state, SlotState::InUse)
                else {
                    return;
                };
                let Some(end) = conn.ended() else {
                    s.state = SlotState::Idle(conn);
                    return;
                };
                let events = self.events.clone();
                let control = self.control.clone();
                self.tasks.spawn(async move {
                    let idle = conn.idle_at_death(end.at);
                    let server_reachable = control.healthy().await;
                    let used = Use {
                        conn,
                        idle,
                        outcome: ProbeOutcome::ClosedWhileIdle { end },
                        probed: false,
                        server_reachable,
                    };
                    let _ = events.send(Event::Used {
                        slot,
                        generation,
                        used,
                    });
                });
            }
            Event::Used {
                slot,
                generation,
                used,
            } => {
                if self.slots[slot].generation != generation {
                    return;
                }
                self.on_used(slot, used, now);
            }
            Event::GhostAlive { slot, generation } => {
                if self.slots[slot].generation == generation {
                    self.ghosts_alive += 1;
                    self.publish.ghost_seen();
                    self.publish.ghosts_alive(self.ghosts_alive);
                }
            }
            Event::Released {
                slot,
                generation,
                seen,
                reaped,
                counted_alive,
                died,
            } => {
                if self.slots[slot].generation != generation {
                    return;
                }
                if died {
                    self.publish.ghost_checked();
                }
                if counted_alive {
                    self.ghosts_alive = self.ghosts_alive.saturating_sub(1);
                } else if seen {
                    self.publish.ghost_seen();
                }
                if reaped {
                    self.publish.ghost_reaped();
                    tracing::debug!(target_name = %self.target.name, slot, "reaped a ghost session");
                }
                self.publish.ghosts_alive(self.ghosts_alive);
                let s = &mut self.slots[slot];
                s.state = SlotState::Empty;
                s.backend = None;
                if self.is_guard(slot) {
                    if let Some(guard) = &mut self.guard {
                        guard.on_empty();
                    }
                } else if let Some(scheduler) = self.scheduler() {
                    scheduler.on_released(slot, now);
                }
            }
        }
        self.after_event();
    }

    fn on_used(&mut self, slot: usize, used: Use<N::Conn>, now: Duration) {
        let Use {
            conn,
            idle,
            outcome,
            probed,
            server_reachable,
        } = used;
        let conn = *conn;
        let role = self.role(slot);
        let outcome_label = outcome.label();
        if probed {
            let rung = self.rung(idle).to_string();
            self.publish.probe_use(&rung, outcome_label);
        }
        // A death tells us about idle time only if the server is still there and the death is
        // one idling can cause; otherwise (a restart's 57P01, an outage) it is an outage.
        let mut outage = !server_reachable || self.in_outage;
        match outcome {
            ProbeOutcome::Alive => {
                self.publish.record_probe(idle, true);
                if self.keeps(slot) {
                    self.slots[slot].state = SlotState::Idle(Box::new(conn));
                    self.scheduler_probed(slot, idle, true, now);
                } else {
                    self.release(slot, conn, false);
                }
            }
            ProbeOutcome::ClosedWhileIdle { end } => {
                let idle_at_death = conn.idle_at_death(end.at);
                let cause = end.cause.clone().unwrap_or(DeathCause::Error);
                outage |= !cause.can_be_idle_expiry();
                self.record_death(
                    role,
                    &cause,
                    idle_at_death,
                    "while_idle",
                    end.detail.as_deref(),
                    outage,
                );
                if !outage {
                    self.publish.record_probe(idle_at_death, false);
                }
                if self.is_guard(slot) {
                    if let Some(guard) = &mut self.guard {
                        guard.on_closed_while_idle();
                    }
                    if !outage {
                        if let Some(scheduler) = self.scheduler() {
                            scheduler.observe(idle_at_death, false);
                        }
                    }
                } else if !outage {
                    if let Some(scheduler) = self.scheduler() {
                        scheduler.on_closed_while_idle(slot, idle_at_death, now);
                    }
                }
                self.release(slot, conn, true);
            }
            ProbeOutcome::Died {
                cause,
                query_error,
                time_to_failure,
            } => {
                self.publish.time_to_failure(cause.kind(), time_to_failure);
                outage |= !cause.can_be_idle_expiry();
                self.record_death(role, &cause, idle, "on_use", Some(&query_error), outage);
                if outage {
                    if let Some(guard) = self.guard.as_mut().filter(|g| g.slot() == slot) {
                        guard.on_probe(false, now);
                    }
                } else {
                    self.publish.record_probe(idle, false);
                    self.scheduler_probed(slot, idle, false, now);
                }
                self.release(slot, conn, true);
            }
        }
        if outage {
            self.enter_outage();
        }
    }

    /// A probe's result, to the guard or the scheduler whose slot it was; the guard's is also
    /// evidence for the scheduler.
    fn scheduler_probed(&mut self, slot: usize, idle: Duration, survived: bool, now: Duration) {
        if self.is_guard(slot) {
            if let Some(guard) = &mut self.guard {
                guard.on_probe(survived, now);
            }
            if let Some(scheduler) = self.scheduler() {
                scheduler.observe(idle, survived);
            }
        } else if let Some(scheduler) = self.scheduler() {
            scheduler.on_probe(slot, idle, survived, now);
        }
    }

    fn scheduler_opened(&mut self, slot: usize, now: Duration, ok: bool) {
        if self.is_guard(slot) {
            if let Some(guard) = &mut self.guard {
                if ok {
                    guard.on_opened(now);
                } else {
                    guard.on_empty();
                }
            }
            return;
        }
        match self.scheduler() {
            Some(scheduler) if ok => scheduler.on_opened(slot, now),
            Some(scheduler) => scheduler.on_open_failed(slot, now),
            None => {}
        }
    }

    /// A connection died: count it, and decide whether it should have survived (what pages).
    /// A death in an `outage` (server unreachable, or killed for a reason idling cannot be) is
    /// the outage's: it never counts as unexpected.
    fn record_death(
        &mut self,
        role: Role,
        cause: &DeathCause,
        idle: Duration,
        detected: &'static str,
        detail: Option<&str>,
        outage: bool,
    ) {
        // Idle times carry scheduling jitter; a death inside the precision band below the lower
        // bound is measurement noise, not a connection that should have lived.
        let tolerance = 1.0 - self.target.precision;
        let below_lower = self
            .bracket
            .lower
            .is_some_and(|lower| idle < lower.mul_f64(tolerance));
        let unexpected = !outage
            && match role {
                Role::Guard | Role::SentinelLow => true,
                Role::Discovery | Role::SentinelHigh | Role::Keepalive => below_lower,
            };
        if unexpected {
            tracing::warn!(target_name = %self.target.name, role = role.label(), kind = %cause, idle = ?idle, detail, "connection closed although it should have survived");
        } else {
            tracing::debug!(target_name = %self.target.name, role = role.label(), kind = %cause, idle = ?idle, detail, "probe connection closed");
        }
        self.publish
            .record_death(role, cause, idle, detected, unexpected);
    }

    fn rung(&self, idle: Duration) -> &str {
        self.rungs
            .iter()
            .rev()
            .find(|(d, _)| *d <= idle)
            .map_or("0s", |(_, label)| label.as_str())
    }

    // ---- phases ----------------------------------------------------------------------------

    /// After every event: publish the bracket, and move between phases when one is done.
    fn after_event(&mut self) {
        let bracket = self.scheduler_ref().map_or(self.bracket, |s| s.bracket());
        if bracket != self.bracket {
            self.set_bracket(bracket);
        }
        match &mut self.phase {
            Phase::Discovering { discovery, started } => {
                let verdict = discovery.verdict();
                if verdict != Verdict::Searching {
                    let took = started.elapsed();
                    self.publish.discovery_finished(took);
                    let state = match verdict {
                        Verdict::NoDropUpToMax => "no_drop",
                        Verdict::BelowRange => "below_range",
                        _ => "watching",
                    };
                    tracing::info!(
                        target_name = %self.target.name,
                        lower = ?bracket.lower, upper = ?bracket.upper, took = ?took, state,
                        "discovery finished"
                    );
                    self.publish.set_state(state);
                    self.remember();
                    let bracket_found = verdict == Verdict::Converged;
                    self.drain(match self.mode {
                        RunMode::Continuous => Next::Watch(bracket),
                        RunMode::DiscoverOnce
                            if bracket_found && self.target.keepalive_probe.is_some() =>
                        {
                            Next::CheckKeepalives(bracket)
                        }
                        RunMode::DiscoverOnce => Next::Stop,
                    });
                }
            }
            Phase::Watching(watch) => {
                let confirmed = watch.confirmed();
                if let Some(rescued) = watch.take_keepalive_result() {
                    self.publish.keepalive_rescue(rescued);
                    if self.mode == RunMode::DiscoverOnce {
                        self.drain(Next::Stop);
                        return;
                    }
                    self.remember();
                }
                let Phase::Watching(watch) = &mut self.phase else {
                    return;
                };
                if let Some(change) = watch.take_change() {
                    self.confirming = None;
                    self.publish.threshold_changed(change.direction.label());
                    tracing::warn!(
                        target_name = %self.target.name, direction = change.direction.label(),
                        old_lower = ?bracket.lower, old_upper = ?bracket.upper,
                        "the idle-drop threshold moved; rediscovering"
                    );
                    self.set_bracket(change.seed);
                    self.publish.set_state("discovering");
                    self.drain(Next::Discover(change.seed));
                } else if let Some(since) = self.confirming.filter(|_| confirmed) {
                    self.confirming = None;
                    let took = since.elapsed();
                    tracing::info!(
                        target_name = %self.target.name, took = %humantime::format_duration(Duration::from_millis(took.as_millis() as u64)),
                        "the stored measurement still holds"
                    );
                    self.publish.set_state(settled_state(bracket));
                    self.publish.confirmed(took);
                    self.remember();
                }
            }
            Phase::Draining { .. } => {}
        }
    }

    fn enter_outage(&mut self) {
        let next = match &self.phase {
            Phase::Discovering { .. } => Next::Discover(self.bracket),
            Phase::Watching(_) if self.mode == RunMode::DiscoverOnce => {
                Next::CheckKeepalives(self.bracket)
            }
            Phase::Watching(_) if self.confirming.is_some() => Next::Confirm(self.bracket),
            Phase::Watching(_) => Next::Watch(self.bracket),
            Phase::Draining { next } => *next,
        };
        if matches!(next, Next::Stop) {
            return;
        }
        tracing::warn!(target_name = %self.target.name, "target unreachable; probes paused");
        if !self.in_outage {
            self.in_outage = true;
            self.publish.outage();
        }
        self.publish.set_state("unreachable");
        self.drain(next);
    }

    /// Closes the schedulers' connections before `next` starts; the guard's too when the
    /// run stops or the server is unreachable.
    fn drain(&mut self, next: Next) {
        self.phase = Phase::Draining { next };
        for slot in 0..self.slots.len() {
            if !self.is_guard(slot) || !self.guard_runs() {
                self.discard(slot);
            }
        }
    }

    /// Starts the next phase once draining is done; returns what was started.
    fn maybe_start_next_phase(&mut self) -> Option<Next> {
        let Phase::Draining { next } = self.phase else {
            return None;
        };
        let drained = |engine: &Self, with_guard: bool| {
            engine
                .slots
                .iter()
                .enumerate()
                .filter(|(slot, _)| with_guard || !engine.is_guard(*slot))
                .all(|(_, s)| matches!(s.state, SlotState::Empty))
        };
        if matches!(next, Next::Stop) {
            return drained(self, true).then_some(next);
        }
        let drained = drained(self, false);
        if !drained || !self.control.is_up() {
            return None;
        }
        let now = self.now();
        self.in_outage = false;
        if let Some(guard) = self.replanned_guard.take() {
            self.guard = guard;
        }
        let t = &self.target;
        self.phase = match next {
            Next::Stop => return Some(next),
            Next::Discover(seed) => {
                self.publish.set_state("discovering");
                self.publish.discovery_started();
                let space = search_space(t);
                Phase::Discovering {
                    discovery: Discovery::new(
                        space,
                        self.scheduler_slots(),
                        t.discovery_policy,
                        seed,
                        now,
                    ),
                    started: Instant::now(),
                }
            }
            Next::Watch(bracket) => {
                self.confirming = None;
                self.publish.set_state(settled_state(bracket));
                Phase::Watching(Watch::new(
                    bracket,
                    t.precision,
                    t.keepalive_probe.is_some(),
                    self.scheduler_slots(),
                ))
            }
            Next::Confirm(bracket) => {
                self.confirming = Some(Instant::now());
                self.publish.set_state("confirming");
                Phase::Watching(
                    Watch::new(
                        bracket,
                        t.precision,
                        t.keepalive_probe.is_some(),
                        self.scheduler_slots(),
                    )
                    .confirming(),
                )
            }
            Next::CheckKeepalives(bracket) => Phase::Watching(Watch::keepalive_check(bracket)),
        };
        let guard_slot = self.guard.as_ref().map(Guard::slot);
        for (slot, s) in self.slots.iter_mut().enumerate() {
            if Some(slot) != guard_slot {
                s.role = None;
            }
        }
        Some(next)
    }

    // ---- reloads -----------------------------------------------------------------------------

    /// Applies a reload's live settings to the running target: the bracket, the counters and
    /// every idle clock that still means the same stay.
    fn apply_settings(&mut self, new: Arc<TargetConfig>) {
        let old = std::mem::replace(&mut self.target, new);
        let t = self.target.clone();
        tracing::info!(target_name = %t.name, "settings applied; the measurement is kept");
        self.rungs = rungs(&t);
        self.publish.settings(&t);
        // Margin and socket timeout change the recommendation, not the bracket.
        self.set_bracket(self.bracket);

        let guard = plan_guard(&t, self.slots.len());
        let guard_moved = guard.is_some() != self.guard.is_some();
        if let (Some(running), Some(wanted)) = (&mut self.guard, &guard) {
            running.set_lifetime(wanted.lifetime());
        }
        let next = match &mut self.phase {
            Phase::Discovering { discovery, .. } => {
                discovery.retune(search_space(&t), t.discovery_policy);
                Next::Discover(discovery.bracket())
            }
            Phase::Watching(watch) if self.confirming.is_some() => Next::Confirm(watch.bracket()),
            Phase::Watching(watch) => Next::Watch(watch.bracket()),
            Phase::Draining { next } => *next,
        };
        let replan_watch = matches!(self.phase, Phase::Watching(_)) && old.precision != t.precision;
        if guard_moved {
            // The guard's slot comes from, or goes back to, the scheduler: start the phase
            // again over all slots, from what is known.
            self.guard = None;
            self.replanned_guard = Some(guard);
            self.drain(next);
        } else if replan_watch {
            // The sentinels idle relative to the precision.
            self.drain(next);
        }
    }

    // ---- publishing ------------------------------------------------------------------------

    /// The bracket, to the metrics, the page and the control connection (which pings less
    /// often once the lower bound is known), with the pool settings recommended from it.
    fn set_bracket(&mut self, bracket: Bracket) {
        self.bracket = bracket;
        self.control.set_lower_bound(bracket.lower);
        let t = &self.target;
        let recommendation = recommend::recommend(
            &bracket,
            t.recommendation_margin,
            t.recommended_socket_timeout,
        );
        self.publish.set_bracket(bracket, recommendation);
    }

    fn publish_sessions(&self) {
        self.publish
            .sessions(probe_sessions(&self.slots) + self.control.sessions());
    }

    // ---- shutdown --------------------------------------------------------------------------

    /// Closes idle connections (the server sees them go), stops in-flight work, then asks the
    /// server to terminate any of our sessions it still lists.
    async fn close_all(&mut self) {
        let mut leftovers = Vec::new();
        let mut closing = JoinSet::new();
        for slot in &mut self.slots {
            if let Some(backend) = slot.backend.take() {
                leftovers.push(backend);
            }
            if let SlotState::Idle(conn) = std::mem::take(&mut slot.state) {
                closing.spawn(conn.close());
            }
        }
        while closing.join_next().await.is_some() {}
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        if leftovers.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let control = &self.control;
        let sweep = async move {
            let mut reaped = 0;
            for (backend, last_used) in leftovers {
                if control.ghost(backend, last_used).await == GhostVerdict::Reaped {
                    reaped += 1;
                }
            }
            reaped
        };
        // Bounded: an unreachable server must not hold up the process's exit.
        match tokio::time::timeout(SWEEP_LIMIT, sweep).await {
            Ok(reaped) => {
                tracing::info!(target_name = %self.target.name, reaped, "probe connections closed")
            }
            Err(_) => {
                tracing::warn!(target_name = %self.target.name, "could not confirm every probe session closed")
            }
        }
    }
}

/// The state of a watched bracket.
fn settled_state(bracket: Bracket) -> &'static str {
    match (bracket.lower, bracket.upper) {
        (_, None) => "no_drop",
        (None, _) => "below_range",
        _ => "watching",
    }
}

fn format_bound(bound: Option<Duration>) -> String {
    bound.map_or_else(
        || "none".to_string(),
        |d| humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string(),
    )
}

fn search_space(target: &TargetConfig) -> SearchSpace {
    SearchSpace {
        min: target.idle_min,
        max: target.idle_max,
        precision: target.precision,
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
/// connection being opened is an attempt, not a session (a server with 3 free slots showed 42).
fn probe_sessions<C>(slots: &[Slot<C>]) -> usize {
    slots
        .iter()
        .filter(|s| {
            matches!(
                s.state,
                SlotState::Idle(_) | SlotState::InUse | SlotState::Releasing
            )
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

#[cfg(test)]
mod tests;
