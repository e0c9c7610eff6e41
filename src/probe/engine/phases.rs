//! The engine's phase machine: discovery, then watch (or confirming a stored measurement),
//! with draining in between; what ends a phase (a verdict, a detected change, an outage, a
//! reload that moves the guard) and what starts the next one.

use crate::format;
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{plan_guard, rungs, Engine, Next, Phase, RunMode, SlotState};
use crate::config::TargetConfig;
use crate::discovery::{Bracket, Discovery, Scheduler, SearchSpace, Verdict};
use crate::model::TargetState;
use crate::probe::guard::Guard;
use crate::probe::network::{Connect, Control};
use crate::probe::watch::Watch;

impl<N: Connect, K: Control> Engine<N, K> {
    /// After every event: publish the bracket, and move between phases when one is done.
    pub(super) fn after_event(&mut self) {
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
                        Verdict::NoDropUpToMax => TargetState::NoDrop,
                        Verdict::BelowRange => TargetState::BelowRange,
                        _ => TargetState::Watching,
                    };
                    tracing::info!(
                        target_name = %self.target.name,
                        lower = %format::bound(bracket.lower), upper = %format::bound(bracket.upper),
                        took = %format::duration(took), state = state.as_str(),
                        "discovery finished"
                    );
                    self.publish.log_recommendation();
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
                    // The seed holds only what this run observed.
                    self.unconfirmed = false;
                    self.publish.threshold_changed(change.direction);
                    tracing::warn!(
                        target_name = %self.target.name, direction = change.direction.label(),
                        old_lower = %format::bound(bracket.lower), old_upper = %format::bound(bracket.upper),
                        "the idle-drop threshold moved; rediscovering"
                    );
                    self.set_bracket(change.seed);
                    self.publish.set_state(TargetState::Discovering);
                    self.drain(Next::Discover(change.seed));
                } else if let Some(since) = self.confirming.filter(|_| confirmed) {
                    self.confirming = None;
                    let took = since.elapsed();
                    tracing::info!(
                        target_name = %self.target.name, took = %format::duration(took),
                        "the stored measurement still holds"
                    );
                    self.unconfirmed = false;
                    self.set_bracket(bracket);
                    self.publish.log_recommendation();
                    self.publish.set_state(settled_state(bracket));
                    self.publish.confirmed(took);
                    self.remember();
                }
            }
            Phase::Draining { .. } => {}
        }
    }

    pub(super) fn enter_outage(&mut self) {
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
        self.publish.set_state(TargetState::Unreachable);
        self.drain(next);
    }

    /// Closes the schedulers' connections before `next` starts; the guard's too when the
    /// run stops or the server is unreachable.
    pub(super) fn drain(&mut self, next: Next) {
        self.phase = Phase::Draining { next };
        // Opens still queued are not wanted any more.
        std::mem::replace(&mut self.phase_stop, CancellationToken::new()).cancel();
        if !self.guard_runs() {
            std::mem::replace(&mut self.guard_stop, CancellationToken::new()).cancel();
        }
        for slot in 0..self.slots.len() {
            if !self.is_guard(slot) || !self.guard_runs() {
                self.discard(slot);
            }
        }
    }

    /// Starts the next phase once draining is done; returns what was started.
    pub(super) fn maybe_start_next_phase(&mut self) -> Option<Next> {
        let Phase::Draining { next } = self.phase else {
            return None;
        };
        let drained = |engine: &Self, with_guard: bool| {
            engine
                .slots
                .iter()
                .enumerate()
                .filter(|(slot, _)| with_guard || !engine.is_guard(*slot))
                .all(|(_, s)| s.inherited || matches!(s.state, SlotState::Empty))
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
                self.publish.set_state(TargetState::Discovering);
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
                self.publish.set_state(TargetState::Confirming);
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
    pub(super) fn apply_settings(&mut self, new: Arc<TargetConfig>) {
        let old = std::mem::replace(&mut self.target, new);
        let t = self.target.clone();
        tracing::info!(target_name = %t.name, "settings applied; the measurement is kept");
        self.rungs = rungs(&t);
        self.publish.settings(&t);
        // Margin and socket timeout change the recommendation, not the bracket.
        self.set_bracket(self.bracket);
        let settled = matches!(self.phase, Phase::Watching(_)) && self.confirming.is_none();
        if settled
            && (old.recommendation_margin != t.recommendation_margin
                || old.recommended_socket_timeout != t.recommended_socket_timeout)
        {
            self.publish.log_recommendation();
        }

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
}

/// The state of a watched bracket.
fn settled_state(bracket: Bracket) -> TargetState {
    match (bracket.lower, bracket.upper) {
        (_, None) => TargetState::NoDrop,
        (None, _) => TargetState::BelowRange,
        _ => TargetState::Watching,
    }
}

fn search_space(target: &TargetConfig) -> SearchSpace {
    SearchSpace {
        min: target.idle_min,
        max: target.idle_max,
        precision: target.precision,
    }
}
