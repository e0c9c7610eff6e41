//! The network work of the engine, spawned as tasks that report back as [`Event`]s: opening
//! a connection (behind one backoff gate shared by all slots), a probe, noticing a death while
//! idle, closing a connection and waiting for the server to stop listing its session (the ghost
//! check), and the shutdown sweep. The engine loop itself never waits on the network; only
//! [`Engine::close_all`], once the loop is over, does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::slots::{End, Holding};
use super::{Engine, LeftoverSessions};
use crate::backoff::Backoff;
use crate::postgres::connection::{
    Attempt, BackendIdentity, ConnectError, ConnectionEnd, ProbeOutcome,
};
use crate::probe::control::GhostVerdict;
use crate::probe::network::{Conn, Connect, ControlLink};

/// How long a closed connection's session may take to disappear before we call it a ghost.
const GHOST_GRACE: Duration = Duration::from_secs(1);
/// How often an unreaped ghost is checked again.
const GHOST_RECHECK: Duration = Duration::from_secs(30);
/// How long an attempt given up on that the server does not list keeps its slot while the
/// server takes no newer connection (see [`Engine::watch_until_gone`]).
const ATTEMPT_PROOF_LIMIT: Duration = Duration::from_secs(60);
/// How long shutdown may spend terminating sessions the server still lists.
const SWEEP_LIMIT: Duration = Duration::from_secs(8);

/// What a task reports back to the engine loop; `generation` tells a stale report (its slot
/// was reused since) from a current one.
pub(super) enum Event<C> {
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
        /// It ended because we closed it (the server was told).
        clean: bool,
    },
    /// An open still queued when its phase ended: it never reached the server.
    OpenDropped {
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

impl<C> Event<C> {
    /// The slot it is about, and the slot's generation when the task started.
    pub(super) fn slot(&self) -> (usize, u64) {
        match self {
            Event::Opened {
                slot, generation, ..
            }
            | Event::Used {
                slot, generation, ..
            }
            | Event::Ended {
                slot, generation, ..
            }
            | Event::Released {
                slot, generation, ..
            } => (*slot, *generation),
            Event::OpenDropped { slot, generation } | Event::GhostAlive { slot, generation } => {
                (*slot, *generation)
            }
        }
    }
}

/// What one use of a connection found: a probe's answer, or a death noticed while idle.
pub(super) struct Use<C> {
    pub conn: Box<C>,
    pub idle: Duration,
    pub outcome: ProbeOutcome,
    /// False for a death noticed while idle (no probe query was sent).
    pub probed: bool,
    /// Whether the control connection still answered right after the death.
    pub server_reachable: bool,
}

impl<N: Connect, K: ControlLink> Engine<N, K> {
    /// Opens a connection into `slot`, for the role its scheduler (or the guard) gives it.
    pub(super) fn open(&mut self, slot: usize) {
        if !matches!(self.slots[slot].holding, Holding::Empty) {
            // A session the previous run left still holds this slot; the scheduler keeps it
            // busy until the slot is released.
            return;
        }
        let role = self.role_to_open(slot);
        let keepalive = self.keepalive_for(slot, role);
        let s = &mut self.slots[slot];
        s.generation += 1;
        s.holding = Holding::Opening;
        s.role = Some(role);
        let generation = s.generation;
        let attempt = Attempt::new();
        let connecting = Arc::new(AtomicBool::new(false));
        s.attempt = Some((attempt.clone(), connecting.clone()));
        let job = OpenJob {
            slot,
            generation,
            attempt,
            connecting,
            keepalive,
            events: self.events.clone(),
            gate: self.open_gate.clone(),
            permits: self.open_permits.clone(),
            shutdown: self.shutdown.clone(),
            unwanted: if self.is_guard(slot) {
                self.guard_stop.clone()
            } else if self.is_keepalive_check(slot) {
                self.check_stop.clone()
            } else {
                self.phase_stop.clone()
            },
        };
        self.tasks.spawn(job.run(self.connector.clone()));
    }

    /// Sends the probe query on `slot`'s idle connection.
    pub(super) fn probe(&mut self, slot: usize) {
        let Holding::Idle(mut conn) =
            std::mem::replace(&mut self.slots[slot].holding, Holding::InUse)
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
            let outcome = conn.probe(&query, query_timeout, &control).await;
            let idle = match outcome {
                ProbeOutcome::Alive => if_alive,
                _ => if_dead,
            };
            // A death the server confirmed came with the control connection's answer.
            let server_reachable = matches!(
                outcome,
                ProbeOutcome::Alive
                    | ProbeOutcome::Died {
                        never_arrived: true,
                        ..
                    }
            ) || control.healthy().await;
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

    /// Closes a connection and frees its slot once the server no longer lists the session;
    /// `end` says how the ghost check takes it (a death tells whether the server keeps ghosts;
    /// one the server confirmed needs no grace).
    pub(super) fn release(&mut self, slot: usize, conn: N::Conn, end: End) {
        let s = &mut self.slots[slot];
        s.holding = Holding::Releasing;
        let generation = s.generation;
        let backend = conn.backend().clone();
        // When we last sent anything: a probe's query may have reached the server even if its
        // answer never came back.
        let last_used = s.backend.as_ref().map_or(conn.last_active(), |(_, at)| *at);
        self.tasks.spawn(conn.close());
        self.watch_until_gone(slot, generation, backend, last_used, end);
    }

    /// An attempt given up on that the server may still finish: `slot` stays taken (counted as
    /// a session) until the server is seen without it, reaping it if allowed.
    pub(super) fn watch_attempt(&mut self, slot: usize, generation: u64, attempt: Attempt) {
        let s = &mut self.slots[slot];
        s.holding = Holding::Releasing;
        let identity = attempt.identity();
        s.backend = Some((identity.clone(), attempt.started));
        self.watch_until_gone(slot, generation, identity, attempt.started, End::Closed);
    }

    /// Frees `slot` (a `Released` event) once the server no longer lists `backend`, reaping it
    /// if allowed; the first check after `GHOST_GRACE` (time for a closed session to go; none
    /// for [`End::ConfirmedDead`]), a session still listed is checked again every
    /// `GHOST_RECHECK`.
    ///
    /// An attempt given up on is only gone once the server is seen without it *after* it took
    /// a newer connection (one whose attempt started after this one: the probes' or the
    /// control connection's): a server that was not listing it may just not have got to it yet
    /// (a stalled postmaster finishes the startups in its queue, in order, when it resumes).
    /// Without such a connection within `ATTEMPT_PROOF_LIMIT`, not being listed is enough.
    pub(super) fn watch_until_gone(
        &mut self,
        slot: usize,
        generation: u64,
        backend: BackendIdentity,
        last_used: Instant,
        end: End,
    ) {
        let died = end != End::Closed;
        let grace = if end == End::ConfirmedDead {
            Duration::ZERO
        } else {
            GHOST_GRACE
        };
        let events = self.events.clone();
        let control = self.control.clone();
        let shutdown = self.shutdown.clone();
        let newest_connected = self.newest_connected.clone();
        let since = Instant::now();
        // For an attempt, `last_used` is when it started: a connection that started later
        // reached the server after it, and a server takes them in order.
        let taking_connections = move || {
            let newest = *newest_connected.lock().unwrap_or_else(|e| e.into_inner());
            newest.max(control.connected_since()) > Some(last_used)
                || since.elapsed() >= ATTEMPT_PROOF_LIMIT
        };
        let control = self.control.clone();
        self.tasks.spawn(async move {
            let work = async {
                tokio::time::sleep(grace).await;
                let mut seen = false;
                let mut counted_alive = false;
                loop {
                    match control.ghost(backend.clone(), last_used).await {
                        GhostVerdict::Gone if backend.is_attempt() && !taking_connections() => {
                            tokio::time::sleep(Duration::from_secs(2)).await
                        }
                        // A pooler's server connection serving someone else is not ours.
                        GhostVerdict::Gone | GhostVerdict::Reused => {
                            break (seen, false, counted_alive)
                        }
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

    /// A connection died while idle: asks the control connection whether the server is still
    /// there, then reports the death as a use of the connection.
    pub(super) fn report_idle_death(
        &mut self,
        slot: usize,
        generation: u64,
        conn: Box<N::Conn>,
        end: ConnectionEnd,
    ) {
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

    /// Closes idle connections (the server sees them go), stops in-flight work, then asks the
    /// server to terminate any of our sessions it still lists.
    pub(super) async fn close_all(&mut self) -> LeftoverSessions {
        let mut leftovers = Vec::new();
        let mut closing = JoinSet::new();
        for slot in &mut self.slots {
            if let Some(backend) = slot.backend.take() {
                leftovers.push(backend);
            }
            // An attempt under way is abandoned: the server may still finish it.
            if let (Holding::Opening, Some((attempt, connecting))) =
                (&slot.holding, slot.attempt.take())
            {
                if connecting.load(Ordering::Relaxed) {
                    leftovers.push((attempt.identity(), attempt.started));
                }
            }
            if let Holding::Idle(conn) = std::mem::take(&mut slot.holding) {
                closing.spawn(conn.close());
            }
        }
        while closing.join_next().await.is_some() {}
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        if leftovers.is_empty() {
            return leftovers;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let control = &self.control;
        // What the server still lists (or could not be asked about) is handed to the next run.
        let still_listed = Mutex::new(leftovers.clone());
        let sweep = async {
            let mut reaped = 0;
            for (backend, last_used) in leftovers {
                let verdict = control.ghost(backend.clone(), last_used).await;
                if verdict == GhostVerdict::Reaped {
                    reaped += 1;
                }
                if matches!(
                    verdict,
                    GhostVerdict::Reaped | GhostVerdict::Gone | GhostVerdict::Reused
                ) {
                    still_listed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .retain(|(b, _)| *b != backend);
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
        let left = std::mem::take(&mut *still_listed.lock().unwrap_or_else(|e| e.into_inner()));
        if !left.is_empty() {
            tracing::info!(target_name = %self.target.name, sessions = left.len(), "the server still lists sessions of this target; the next run counts them");
        }
        left
    }
}

/// One open, spawned: waits its turn (the permits and the backoff gate shared by all slots),
/// then connects and reports [`Event::Opened`].
struct OpenJob<C> {
    slot: usize,
    generation: u64,
    attempt: Attempt,
    /// Set once the turn came: from then on the attempt may reach the server.
    connecting: Arc<AtomicBool>,
    keepalive: Option<Duration>,
    events: mpsc::UnboundedSender<Event<C>>,
    gate: Arc<Mutex<(Backoff, Instant)>>,
    permits: Arc<Semaphore>,
    shutdown: CancellationToken,
    /// The phase (or the guard) no longer wants it: dropped if still waiting its turn.
    unwanted: CancellationToken,
}

impl<C: Conn> OpenJob<C> {
    async fn run<N: Connect<Conn = C>>(self, connector: Arc<N>) {
        let OpenJob {
            slot, generation, ..
        } = self;
        let queued = async {
            let permit = self.permits.clone().acquire_owned().await;
            // One gate for all slots: after a failure every slot waits, so a down server sees
            // one attempt per backoff step, not a storm.
            loop {
                let not_before = self.gate.lock().unwrap_or_else(|e| e.into_inner()).1;
                if Instant::now() >= not_before {
                    break;
                }
                tokio::time::sleep_until(not_before).await;
            }
            permit
        };
        let _permit = tokio::select! {
            _ = self.shutdown.cancelled() => return,
            _ = self.unwanted.cancelled() => {
                let _ = self.events.send(Event::OpenDropped { slot, generation });
                return;
            }
            permit = queued => permit,
        };
        self.connecting.store(true, Ordering::Relaxed);
        let ended_events = self.events.clone();
        let on_end = move |end: ConnectionEnd| {
            let clean = end.cause.is_none();
            let _ = ended_events.send(Event::Ended {
                slot,
                generation,
                clean,
            });
        };
        let opening = async {
            let result = connector
                .open(self.attempt.clone(), self.keepalive, on_end)
                .await;
            let mut gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
            match &result {
                Ok(_) => gate.0.reset(),
                Err(_) => gate.1 = Instant::now() + gate.0.next_delay(),
            }
            result
        };
        // Shutdown abandons an attempt under way: the sweep looks for its session.
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            result = opening => {
                let _ = self.events.send(Event::Opened { slot, generation, result });
            }
        }
    }
}
