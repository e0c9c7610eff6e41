//! The engine's slots, and the state they own: the connection (or session) each holds, its
//! role, and which scheduler it reports to (the guard's own slot to the guard, `discover`'s
//! keepalive check's to the check, every other to the phase's scheduler).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::phases::Phase;
use super::Engine;
use crate::discovery::{Bracket, Scheduler};
use crate::model::Role;
use crate::postgres::connection::{Attempt, BackendIdentity};
use crate::probe::network::{Connect, ControlLink};
use crate::probe::watch;

/// How the session a slot releases ended, as the ghost check takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum End {
    /// Closed by us (or an attempt given up on): the server should let it go.
    Closed,
    /// The connection died: whether the server keeps its session says whether it keeps ghosts.
    Died,
    /// Died, and the server confirmed its last query never arrived: the session was just seen
    /// idle and nothing can reach it, so the check needs no grace.
    ConfirmedDead,
}

/// What a slot holds.
#[derive(Default)]
pub(super) enum Holding<C> {
    #[default]
    Empty,
    Opening,
    Idle(Box<C>),
    /// A probe (or a passive death check) is in flight; the connection is in that task.
    InUse,
    /// Closed or dead; waiting for the server to stop listing the session.
    Releasing,
}

pub(super) struct Slot<C> {
    pub generation: u64,
    pub holding: Holding<C>,
    pub role: Option<Role>,
    /// The session this slot holds on the server, and when we last used it (what the
    /// shutdown sweep needs for slots whose connection is in flight). For an attempt given up
    /// on that may linger, the attempt's identity (its name) and when it started.
    pub backend: Option<(BackendIdentity, Instant)>,
    /// The attempt being opened, and whether it got past the queue (only then can it reach
    /// the server, and the shutdown sweep looks for it).
    pub attempt: Option<(Attempt, Arc<AtomicBool>)>,
    /// Releasing, and we closed it ourselves (the server was told it goes): no session any
    /// more, though the slot stays taken until the ghost check frees it.
    pub closed: bool,
    /// Holds a session the previous run left (releasing until the server lets go of it):
    /// counted in the budget, but no phase waits for it to start.
    pub inherited: bool,
}

impl<C> Default for Slot<C> {
    fn default() -> Self {
        Slot {
            generation: 0,
            holding: Holding::Empty,
            role: None,
            backend: None,
            attempt: None,
            closed: false,
            inherited: false,
        }
    }
}

impl<N: Connect, K: ControlLink> Engine<N, K> {
    pub(super) fn role(&self, slot: usize) -> Role {
        self.slots[slot].role.unwrap_or(Role::Discovery)
    }

    /// The role a connection opened into `slot` now gets.
    pub(super) fn role_to_open(&self, slot: usize) -> Role {
        match self.phase.watch() {
            _ if self.is_guard(slot) => Role::Guard,
            _ if self.is_keepalive_check(slot) => Role::Keepalive,
            Some(watch) => watch.role(slot),
            None => Role::Discovery,
        }
    }

    pub(super) fn is_guard(&self, slot: usize) -> bool {
        self.guard.as_ref().is_some_and(|g| g.slot() == slot)
    }

    pub(super) fn is_keepalive_check(&self, slot: usize) -> bool {
        self.keepalive_check
            .as_ref()
            .is_some_and(|k| k.slot() == slot)
    }

    /// A slot outside the phases (the guard's, the keepalive check's): its connection lives
    /// across phase changes, and no phase waits for it to start.
    pub(super) fn is_side(&self, slot: usize) -> bool {
        self.is_guard(slot) || self.is_keepalive_check(slot)
    }

    /// Whether a side slot's scheduler still runs (its connection is kept through a drain).
    pub(super) fn side_runs(&self, slot: usize) -> bool {
        if self.is_guard(slot) {
            self.guard_runs()
        } else {
            self.is_keepalive_check(slot) && self.check_runs()
        }
    }

    /// How many slots the discovery or the watch gets: all but the guard's and the keepalive
    /// check's.
    pub(super) fn scheduler_slots(&self) -> usize {
        self.slots.len()
            - usize::from(self.guard.is_some())
            - usize::from(self.keepalive_check.is_some())
    }

    /// The TCP keepalive interval of a connection opened into `slot` for `role` (`None`: no
    /// keepalives). The check beside the discovery opens before any bound is known: its
    /// keepalives leave often enough for any threshold in the range.
    pub(super) fn keepalive_for(&self, slot: usize, role: Role) -> Option<Duration> {
        let configured = self
            .target
            .keepalive_probe
            .filter(|_| role == Role::Keepalive)?;
        let below = if self.is_keepalive_check(slot) {
            Bracket {
                lower: Some(self.target.idle_min),
                upper: None,
            }
        } else {
            self.bracket
        };
        Some(watch::keepalive_interval(configured.interval, below))
    }

    /// Whether a connection that just answered in `slot` is kept for its next use.
    pub(super) fn keeps(&self, slot: usize) -> bool {
        if self.is_side(slot) {
            self.side_runs(slot)
        } else {
            !matches!(self.phase, Phase::Draining(_) | Phase::Outage(_))
        }
    }

    /// The scheduler `slot` reports to: the guard or the keepalive check for its own slot,
    /// else the phase's (none while draining or in an outage).
    pub(super) fn owner(&mut self, slot: usize) -> Option<&mut dyn Scheduler> {
        if let Some(check) = self.keepalive_check.as_mut().filter(|k| k.slot() == slot) {
            return Some(check);
        }
        match &mut self.guard {
            Some(guard) if guard.slot() == slot => Some(guard),
            _ => self
                .phase
                .estimator()
                .map(|estimator| estimator as &mut dyn Scheduler),
        }
    }

    /// A use of `slot`'s connection found it alive or dead after `idle` (`closed_while_idle`:
    /// it died before its probe was due): its scheduler is told, and the guard's result is
    /// evidence for the phase's too (the keepalive check's is not: keepalives change the
    /// test). In an `outage` it tells nothing about idle time: the phase's scheduler, ended at
    /// once (`enter_outage` follows), hears nothing, the guard only that its slot is busy, and
    /// the keepalive check starts its idle time again.
    pub(super) fn used(&mut self, slot: usize, idle: Duration, survived: bool, how: Used) {
        let guard = self.is_guard(slot);
        if how.outage && !guard {
            if let Some(check) = self.keepalive_check.as_mut().filter(|k| k.slot() == slot) {
                check.interrupted();
            }
            return;
        }
        if let Some(owner) = self.owner(slot) {
            if how.closed_while_idle {
                owner.on_closed_while_idle(slot, idle, how.now);
            } else {
                owner.on_probe(slot, idle, survived, how.now);
            }
        }
        if guard && !how.outage {
            if let Some(phase) = self.phase.estimator() {
                phase.observe(idle, survived);
            }
        }
    }

    pub(super) fn opened(&mut self, slot: usize, now: Duration, ok: bool) {
        match self.owner(slot) {
            Some(owner) if ok => owner.on_opened(slot, now),
            Some(owner) => owner.on_open_failed(slot, now),
            None => {}
        }
    }

    pub(super) fn discard(&mut self, slot: usize) {
        match std::mem::take(&mut self.slots[slot].holding) {
            Holding::Idle(conn) => self.release(slot, *conn, End::Closed),
            other => {
                self.slots[slot].holding = other;
            }
        }
    }
}

/// How a use of a connection ended, for [`Engine::used`].
#[derive(Clone, Copy)]
pub(super) struct Used {
    pub now: Duration,
    pub closed_while_idle: bool,
    pub outage: bool,
}

/// Probe sessions that exist on the server (or may, until it stops listing them): a
/// connection being opened is an attempt, not a session (a server with 3 free slots showed 42),
/// and one we closed ourselves is gone (`discover` once reported 10 "at most" while the
/// server listed 3: closed connections waiting for their check). An attempt given up on that
/// may linger is counted until the server is seen without it.
pub(super) fn probe_sessions<C>(slots: &[Slot<C>]) -> usize {
    slots
        .iter()
        .filter(|s| match s.holding {
            Holding::Idle(_) | Holding::InUse => true,
            Holding::Releasing => !s.closed,
            Holding::Empty | Holding::Opening => false,
        })
        .count()
}
