//! What the engine does with the tasks' reports: each connection opened, used or released
//! goes to the scheduler or the guard whose slot it was, and each death is classified
//! (idle expiry or outage; expected or not) before it is published.

use std::time::Duration;

use super::slots::{End, Holding, Used};
use super::tasks::{Event, Use};
use super::Engine;
use crate::model::{DeathCause, Detected, Role};
use crate::postgres::connection::{ConnectError, ProbeOutcome};
use crate::probe::network::{Conn, Connect, ControlLink};

/// What a use learned of its connection's death.
struct Death<'a> {
    cause: DeathCause,
    /// How long the connection had idled when it died.
    idle: Duration,
    detected: Detected,
    /// The error as the connection or the query reported it.
    detail: Option<&'a str>,
}

impl<N: Connect, K: ControlLink> Engine<N, K> {
    pub(super) fn handle(&mut self, event: Event<N::Conn>) {
        let now = self.now();
        let (slot, generation) = event.slot();
        if self.slots[slot].generation != generation {
            // The slot was reused since: a stale report.
            return;
        }
        match event {
            Event::Opened { result, .. } => self.on_opened(slot, generation, result, now),
            Event::OpenDropped { .. } => {
                let s = &mut self.slots[slot];
                s.holding = Holding::Empty;
                s.attempt = None;
                self.opened(slot, now, false);
            }
            Event::Ended { clean, .. } => self.on_ended(slot, generation, clean),
            Event::Used { used, .. } => self.on_used(slot, used, now),
            Event::GhostAlive { .. } => {
                self.ghosts_alive += 1;
                self.publish.ghost_seen();
                self.publish.ghosts_alive(self.ghosts_alive);
            }
            Event::Released {
                seen,
                reaped,
                counted_alive,
                died,
                ..
            } => {
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
                self.on_released(slot, now);
            }
        }
        self.after_event();
    }

    fn on_opened(
        &mut self,
        slot: usize,
        generation: u64,
        result: Result<N::Conn, ConnectError>,
        now: Duration,
    ) {
        let attempt = self.slots[slot].attempt.take().map(|(attempt, _)| attempt);
        match result {
            Ok(conn) => {
                if let Some(attempt) = &attempt {
                    let mut newest = self
                        .newest_connected
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    *newest = (*newest).max(Some(attempt.started));
                }
                self.publish.connected(conn.connect_duration());
                self.slots[slot].backend = Some((conn.backend().clone(), conn.last_active()));
                if self.keeps(slot) {
                    self.slots[slot].holding = Holding::Idle(Box::new(conn));
                    self.opened(slot, now, true);
                } else {
                    self.release(slot, conn, End::Closed);
                }
            }
            Err(e) => {
                tracing::debug!(target_name = %self.target.name, error = %e, lingers = e.lingers, "probe connection failed");
                self.publish.connect_failed(e.kind, e.to_string());
                match attempt.filter(|_| e.lingers) {
                    // Given up on, but the server may still finish it: the slot stays taken
                    // until the server is seen without the attempt's session (then the
                    // scheduler or the guard gets it back, as after any release).
                    Some(attempt) => self.watch_attempt(slot, generation, attempt),
                    None => {
                        self.slots[slot].holding = Holding::Empty;
                        self.opened(slot, now, false);
                    }
                }
            }
        }
    }

    /// A connection's task ended: a death while idle, or the end of a close we asked for.
    fn on_ended(&mut self, slot: usize, generation: u64, clean: bool) {
        let s = &mut self.slots[slot];
        match std::mem::take(&mut s.holding) {
            Holding::Idle(conn) => match conn.ended() {
                Some(end) => {
                    s.holding = Holding::InUse;
                    self.report_idle_death(slot, generation, conn, end);
                }
                None => s.holding = Holding::Idle(conn),
            },
            // We closed it: the server was told it goes.
            Holding::Releasing => {
                s.closed |= clean;
                s.holding = Holding::Releasing;
            }
            // In use (the probe's task sees the end), or opening (the attempt failed after its
            // connection began: its `Opened` says so).
            other => s.holding = other,
        }
    }

    /// The server no longer lists the slot's session: the slot is free again.
    fn on_released(&mut self, slot: usize, now: Duration) {
        let s = &mut self.slots[slot];
        s.holding = Holding::Empty;
        s.backend = None;
        s.closed = false;
        s.inherited = false;
        if let Some(owner) = self.owner(slot) {
            owner.on_released(slot, now);
        }
    }

    fn on_used(&mut self, slot: usize, used: Use<N::Conn>, now: Duration) {
        let Use {
            conn,
            idle,
            outcome,
            probed,
            server_reachable,
        } = used;
        if probed {
            let rung = self.rung(idle).to_string();
            self.publish.probe_use(&rung, &outcome);
        }
        // A death tells us about idle time only if the server is still there and the death is
        // one idling can cause; otherwise (a restart's 57P01, an outage) it is an outage.
        let mut outage = !server_reachable || self.phase.is_outage();
        let mut how = Used {
            now,
            closed_while_idle: false,
            outage,
        };
        match outcome {
            ProbeOutcome::Alive => {
                self.publish.record_probe(idle, true);
                if self.keeps(slot) {
                    self.slots[slot].holding = Holding::Idle(conn);
                    self.used(slot, idle, true, how);
                } else {
                    self.release(slot, *conn, End::Closed);
                }
            }
            ProbeOutcome::ClosedWhileIdle { end } => {
                let death = Death {
                    cause: end.cause.clone().unwrap_or(DeathCause::Error),
                    idle: conn.idle_at_death(end.at),
                    detected: Detected::WhileIdle,
                    detail: end.detail.as_deref(),
                };
                how.closed_while_idle = true;
                outage = self.died(slot, *conn, death, how, End::Died);
            }
            ProbeOutcome::Died {
                cause,
                query_error,
                time_to_failure,
                never_arrived,
            } => {
                self.publish.time_to_failure(&cause, time_to_failure);
                let death = Death {
                    cause,
                    idle,
                    detected: Detected::OnUse,
                    detail: Some(&query_error),
                };
                let end = if never_arrived {
                    End::ConfirmedDead
                } else {
                    End::Died
                };
                outage = self.died(slot, *conn, death, how, end);
            }
        }
        if outage {
            self.enter_outage();
        }
    }

    /// A use found its connection dead: count the death, tell the search what idle time it
    /// proves (unless `how` or the cause makes it an outage's), and release the slot as `end`.
    /// Whether it was an outage's.
    fn died(
        &mut self,
        slot: usize,
        conn: N::Conn,
        death: Death<'_>,
        mut how: Used,
        end: End,
    ) -> bool {
        let outage = how.outage || !death.cause.can_be_idle_expiry();
        let role = self.role(slot);
        self.record_death(
            role,
            &death.cause,
            death.idle,
            death.detected,
            death.detail,
            outage,
        );
        if !outage {
            self.publish.record_probe(death.idle, false);
        }
        how.outage = outage;
        self.used(slot, death.idle, false, how);
        self.release(slot, conn, end);
        outage
    }

    /// A connection died: count it, and decide whether it should have survived (what pages).
    /// A death in an `outage` (server unreachable, or killed for a reason idling cannot be) is
    /// the outage's: it never counts as unexpected.
    fn record_death(
        &mut self,
        role: Role,
        cause: &DeathCause,
        idle: Duration,
        detected: Detected,
        detail: Option<&str>,
        outage: bool,
    ) {
        // A death inside the precision band below the lower bound is scheduling jitter, not a
        // connection that should have lived.
        let below_lower = self
            .bracket
            .died_younger_than_survivors(idle, self.target.precision);
        let unexpected = !outage
            && match role {
                Role::Guard | Role::SentinelLow => true,
                Role::Discovery | Role::SentinelHigh | Role::Keepalive => below_lower,
                Role::Control => false,
            };
        if unexpected {
            tracing::warn!(target_name = %self.target.name, role = role.label(), kind = %cause, idle = %crate::format::duration(idle), detail, "connection closed although it should have survived");
        } else {
            tracing::debug!(target_name = %self.target.name, role = role.label(), kind = %cause, idle = %crate::format::duration(idle), detail, "probe connection closed");
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
}
