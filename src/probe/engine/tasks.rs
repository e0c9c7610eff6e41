//! The network work of the engine, spawned as tasks that report back as [`Event`]s: opening
//! a connection (behind one backoff gate shared by all slots), a probe, noticing a death while
//! idle, closing a connection and waiting for the server to stop listing its session (the ghost
//! check), and the shutdown sweep. The engine loop itself never waits on the network; only
//! [`Engine::close_all`], once the loop is over, does.

use std::sync::Mutex;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Engine, LeftoverSessions, Phase, SlotState};
use crate::postgres::connection::{BackendIdentity, ConnectError, ConnectionEnd, ProbeOutcome};
use crate::probe::control::GhostVerdict;
use crate::probe::network::{Conn, Connect, Control};
use crate::probe::watch::{self, Role};

/// How long a closed connection's session may take to disappear before we call it a ghost.
const GHOST_GRACE: Duration = Duration::from_secs(1);
/// How often an unreaped ghost is checked again.
const GHOST_RECHECK: Duration = Duration::from_secs(30);
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
pub(super) struct Use<C> {
    pub conn: Box<C>,
    pub idle: Duration,
    pub outcome: ProbeOutcome,
    /// False for a death noticed while idle (no probe query was sent).
    pub probed: bool,
    /// Whether the control connection still answered right after the death.
    pub server_reachable: bool,
}

impl<N: Connect, K: Control> Engine<N, K> {
    /// Opens a connection into `slot`, for the role its scheduler (or the guard) gives it.
    pub(super) fn open(&mut self, slot: usize) {
        if !matches!(self.slots[slot].state, SlotState::Empty) {
            // A session the previous run left still holds this slot; the scheduler keeps it
            // busy until the slot is released.
            return;
        }
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

    /// Sends the probe query on `slot`'s idle connection.
    pub(super) fn probe(&mut self, slot: usize) {
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

    /// Closes a connection and frees its slot once the server no longer lists the session.
    /// `died`: the connection died, so the check also tells whether the server keeps ghosts.
    pub(super) fn release(&mut self, slot: usize, conn: N::Conn, died: bool) {
        let s = &mut self.slots[slot];
        s.state = SlotState::Releasing;
        let generation = s.generation;
        let backend = conn.backend().clone();
        // When we last sent anything: a probe's query may have reached the server even if its
        // answer never came back.
        let last_used = s.backend.as_ref().map_or(conn.last_active(), |(_, at)| *at);
        self.tasks.spawn(conn.close());
        self.watch_until_gone(slot, generation, backend, last_used, died);
    }

    /// Frees `slot` (a `Released` event) once the server no longer lists `backend`, reaping it
    /// if allowed; a session still listed is checked again every `GHOST_RECHECK`.
    pub(super) fn watch_until_gone(
        &mut self,
        slot: usize,
        generation: u64,
        backend: BackendIdentity,
        last_used: Instant,
        died: bool,
    ) {
        let events = self.events.clone();
        let control = self.control.clone();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            let work = async {
                tokio::time::sleep(GHOST_GRACE).await;
                let mut seen = false;
                let mut counted_alive = false;
                loop {
                    match control.ghost(backend.clone(), last_used).await {
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
            if let SlotState::Idle(conn) = std::mem::take(&mut slot.state) {
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
