//! The engine's phase machine, and the state it owns: discovery, then watch (or confirming a
//! stored measurement first), with draining in between and an outage while the server is out
//! of reach; what ends a phase (a verdict, a detected change, a confirmation, an outage, a
//! reload that moves the guard) and what starts the next one. A reload that moves the guard
//! carries the new guard in the transition; it is installed when the next phase starts.
//!
//! `discover`'s keepalive check runs beside the phases in a slot of its own when the budget
//! can spare one (`keepalive_check.rs`): the discovery then ends in a drain towards the end of
//! the run that waits for the check's verdict, read as soon as the bracket is known. Without
//! the slot, the check is a phase of its own after the bracket ([`Next::CheckKeepalives`]).
//!
//! Room for more: a phase is one variant with its scheduler, so another way to end one (a
//! server-side verdict on a silent death) is one more arm of [`Engine::after_event`] or one
//! more [`Next`].

use crate::format;
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{plan_guard, rungs, Engine, Holding, RunMode};
use crate::config::TargetConfig;
use crate::discovery::Guard;
use crate::discovery::{Bracket, Discovery, Estimator, SearchSpace, Verdict};
use crate::model::TargetState;
use crate::probe::network::{Connect, ControlLink};
use crate::probe::watch::{Change, Watch};

pub(super) enum Phase {
    Discovering {
        discovery: Discovery,
        started: Instant,
    },
    /// Watching a bracket from an earlier run (the state file, or a restart that kept the
    /// path) until its sentinels confirm it: nothing is recommended from it meanwhile, and the
    /// control connection does not trust its lower bound.
    Confirming {
        watch: Watch,
        since: Instant,
    },
    Watching(Watch),
    /// Closing the phase's slots before the next phase starts (after a verdict, a detected
    /// change or a reload); it starts once they are empty and the server answers.
    Draining(Transition),
    /// The server is unreachable: draining, the guard rests too, and deaths are the outage's,
    /// never unexpected idle deaths; the next phase starts once the server answers.
    Outage(Transition),
}

/// What starts once a phase is drained.
pub(super) struct Transition {
    pub next: Next,
    pub guard: GuardPlan,
}

/// Whether the next phase starts with another guard.
pub(super) enum GuardPlan {
    Keep,
    /// A reload added or removed the guard: its slot comes from, or goes back to, the
    /// scheduler, so the new plan is installed once every slot is empty.
    Install(Option<Guard>),
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Next {
    Discover(Bracket),
    Watch(Bracket),
    /// A bracket from an earlier run: watch it, and call it confirmed once the low sentinel
    /// survived just below its lower bound.
    Confirm(Bracket),
    /// `discover` without a slot to spare for the check beside the discovery: the bracket is
    /// known; one keepalive probe tells what kind of box it is.
    CheckKeepalives(Bracket),
    /// Discovery is over and the run was for one measurement only (`discover`).
    Stop,
}

impl Phase {
    /// Draining towards `next`, before anything ran.
    pub(super) fn towards(next: Next) -> Phase {
        Phase::Draining(Transition {
            next,
            guard: GuardPlan::Keep,
        })
    }

    /// The active phase's scheduler; `None` while draining or in an outage.
    pub(super) fn estimator(&mut self) -> Option<&mut dyn Estimator> {
        match self {
            Phase::Discovering { discovery, .. } => Some(discovery),
            Phase::Confirming { watch, .. } | Phase::Watching(watch) => Some(watch),
            Phase::Draining(_) | Phase::Outage(_) => None,
        }
    }

    pub(super) fn estimator_ref(&self) -> Option<&dyn Estimator> {
        match self {
            Phase::Discovering { discovery, .. } => Some(discovery),
            Phase::Confirming { watch, .. } | Phase::Watching(watch) => Some(watch),
            Phase::Draining(_) | Phase::Outage(_) => None,
        }
    }

    pub(super) fn watch(&self) -> Option<&Watch> {
        match self {
            Phase::Confirming { watch, .. } | Phase::Watching(watch) => Some(watch),
            _ => None,
        }
    }

    fn watch_mut(&mut self) -> Option<&mut Watch> {
        match self {
            Phase::Confirming { watch, .. } | Phase::Watching(watch) => Some(watch),
            _ => None,
        }
    }

    pub(super) fn transition(&self) -> Option<&Transition> {
        match self {
            Phase::Draining(t) | Phase::Outage(t) => Some(t),
            _ => None,
        }
    }

    pub(super) fn is_outage(&self) -> bool {
        matches!(self, Phase::Outage(_))
    }

    /// The bracket is a stored one the sentinels have not confirmed yet (being confirmed, or
    /// about to be).
    pub(super) fn unconfirmed(&self) -> bool {
        match self {
            Phase::Confirming { .. } => true,
            Phase::Draining(t) | Phase::Outage(t) => matches!(t.next, Next::Confirm(_)),
            _ => false,
        }
    }

    /// The phase to resume after an outage, or the one a reload restarts.
    fn again(&self, bracket: Bracket, mode: RunMode) -> Next {
        match self {
            Phase::Discovering { .. } => Next::Discover(bracket),
            Phase::Watching(_) if mode == RunMode::DiscoverOnce => Next::CheckKeepalives(bracket),
            Phase::Confirming { .. } => Next::Confirm(bracket),
            Phase::Watching(_) => Next::Watch(bracket),
            Phase::Draining(t) | Phase::Outage(t) => t.next,
        }
    }
}

impl<N: Connect, K: ControlLink> Engine<N, K> {
    /// After every event: publish the bracket, and move between phases when one is done.
    pub(super) fn after_event(&mut self) {
        let bracket = self
            .phase
            .estimator_ref()
            .map_or(self.bracket, |s| s.bracket());
        if bracket != self.bracket {
            self.set_bracket(bracket);
        }
        self.log_keepalive_deaths_set_aside(bracket);
        if let Some((rescued, idle)) = self.keepalive_check.as_mut().and_then(|k| k.take_verdict())
        {
            self.keepalive_verdict(rescued, idle);
        }
        match &self.phase {
            Phase::Discovering { discovery, started } => {
                let verdict = discovery.verdict();
                if verdict != Verdict::Searching {
                    let took = started.elapsed();
                    self.discovery_over(verdict, bracket, took);
                }
            }
            Phase::Confirming { .. } | Phase::Watching(_) => self.after_watch_step(bracket),
            Phase::Draining(_) | Phase::Outage(_) => {}
        }
    }

    /// Discovery reached a verdict: publish it, keep it, and drain towards the watch (or the
    /// keepalive check, or the end of a `discover` run).
    fn discovery_over(&mut self, verdict: Verdict, bracket: Bracket, took: std::time::Duration) {
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
        let check = self.keepalive_check.as_mut();
        let next = match self.mode {
            RunMode::Continuous => Next::Watch(bracket),
            // The check beside the discovery is read now (or once it idled long enough); the
            // run ends once its verdict is in and its slot is released.
            RunMode::DiscoverOnce if bracket_found => match check {
                Some(check) => {
                    check.bracket_known(bracket);
                    Next::Stop
                }
                None if self.target.keepalive_probe.is_some() => Next::CheckKeepalives(bracket),
                None => Next::Stop,
            },
            RunMode::DiscoverOnce => {
                if let Some(check) = check {
                    check.abandon();
                }
                Next::Stop
            }
        };
        self.drain(next);
    }

    /// The keepalive check's connection died younger than connections without keepalives
    /// lived: a fault, not the box's verdict, so the check idles a new one.
    fn log_keepalive_deaths_set_aside(&mut self, bracket: Bracket) {
        let Some(check) = self.keepalive_check.as_mut() else {
            return;
        };
        for idle in check.take_too_young() {
            tracing::warn!(
                target_name = %self.target.name, idle = %format::duration(idle),
                lower = %format::bound(bracket.lower),
                "keepalive check: its connection died younger than connections without keepalives lived, so not by the box's idle timeout; checking again with a new connection"
            );
        }
    }

    /// The keepalive check beside the discovery has its verdict: publish it, and give its
    /// slot back (the run ends once every slot is released).
    fn keepalive_verdict(&mut self, rescued: bool, idle: std::time::Duration) {
        tracing::info!(
            target_name = %self.target.name, rescued, idle = %format::duration(idle),
            "keepalive check: {}",
            if rescued { "the box counts packets" } else { "the box counts requests" }
        );
        self.publish.keepalive_rescue(rescued);
        if let Some(slot) = self.keepalive_check.as_ref().map(|k| k.slot()) {
            self.discard(slot);
        }
    }

    /// The watch's news: the keepalive probe's result, a detected change, a confirmation.
    fn after_watch_step(&mut self, bracket: Bracket) {
        let Some(watch) = self.phase.watch_mut() else {
            return;
        };
        if let Some(rescued) = watch.take_keepalive_result() {
            self.publish.keepalive_rescue(rescued);
            if self.mode == RunMode::DiscoverOnce {
                self.drain(Next::Stop);
                return;
            }
            self.remember();
        }
        let Some(watch) = self.phase.watch_mut() else {
            return;
        };
        if let Some(change) = watch.take_change() {
            self.threshold_moved(change, bracket);
        } else if let Phase::Confirming { watch, since } = &self.phase {
            if watch.confirmed() {
                let took = since.elapsed();
                self.confirmed(bracket, took);
            }
        }
    }

    /// A sentinel (or the guard) contradicted the bracket: discover again from the
    /// observation (a stored bracket being confirmed is dropped: the seed holds only what this
    /// run observed).
    fn threshold_moved(&mut self, change: Change, bracket: Bracket) {
        self.publish.threshold_changed(change.direction);
        tracing::warn!(
            target_name = %self.target.name, direction = change.direction.label(),
            old_lower = %format::bound(bracket.lower), old_upper = %format::bound(bracket.upper),
            "the idle-drop threshold moved; rediscovering"
        );
        // Drained first: the seed is no stored bracket to confirm.
        self.drain(Next::Discover(change.seed));
        self.set_bracket(change.seed);
        self.publish.set_state(TargetState::Discovering);
    }

    /// The stored bracket's sentinels gave their expected results: it is this run's own now,
    /// and the watch goes on.
    fn confirmed(&mut self, bracket: Bracket, took: std::time::Duration) {
        let phase = std::mem::replace(&mut self.phase, Phase::towards(Next::Stop));
        let Phase::Confirming { watch, .. } = phase else {
            self.phase = phase;
            return;
        };
        self.phase = Phase::Watching(watch);
        tracing::info!(
            target_name = %self.target.name, took = %format::duration(took),
            "the stored measurement still holds"
        );
        self.set_bracket(bracket);
        self.publish.log_recommendation();
        self.publish.set_state(settled_state(bracket));
        self.publish.confirmed(took);
        self.remember();
    }

    pub(super) fn enter_outage(&mut self) {
        let next = self.phase.again(self.bracket, self.mode);
        if matches!(next, Next::Stop) {
            return;
        }
        tracing::warn!(target_name = %self.target.name, "target unreachable; probes paused");
        if !self.phase.is_outage() {
            self.publish.outage();
        }
        self.publish.set_state(TargetState::Unreachable);
        self.end_phase(next, true, GuardPlan::Keep);
    }

    /// Closes the schedulers' connections before `next` starts; the guard's too when the
    /// run stops or the server is unreachable, the keepalive check's once it is over or the
    /// server is unreachable.
    pub(super) fn drain(&mut self, next: Next) {
        self.end_phase(next, false, GuardPlan::Keep);
    }

    /// Ends the active phase (or changes where a drain leads): an outage lasts until the next
    /// phase starts, and a guard still to install stays planned unless `guard` replaces it.
    fn end_phase(&mut self, next: Next, outage: bool, guard: GuardPlan) {
        let (outage, pending) = match &mut self.phase {
            Phase::Outage(t) => (true, std::mem::replace(&mut t.guard, GuardPlan::Keep)),
            Phase::Draining(t) => (outage, std::mem::replace(&mut t.guard, GuardPlan::Keep)),
            _ => (outage, GuardPlan::Keep),
        };
        let guard = match guard {
            GuardPlan::Keep => pending,
            install => install,
        };
        let transition = Transition { next, guard };
        self.phase = if outage {
            Phase::Outage(transition)
        } else {
            Phase::Draining(transition)
        };
        // Opens still queued are not wanted any more.
        std::mem::replace(&mut self.phase_stop, CancellationToken::new()).cancel();
        if !self.guard_runs() {
            std::mem::replace(&mut self.guard_stop, CancellationToken::new()).cancel();
        }
        if !self.check_runs() {
            std::mem::replace(&mut self.check_stop, CancellationToken::new()).cancel();
        }
        for slot in 0..self.slots.len() {
            if !self.is_side(slot) || !self.side_runs(slot) {
                self.discard(slot);
            }
        }
    }

    /// Starts the next phase once draining is done; returns what was started.
    pub(super) fn maybe_start_next_phase(&mut self) -> Option<Next> {
        let next = self.phase.transition()?.next;
        let drained = |engine: &Self, with_guard: bool| {
            engine
                .slots
                .iter()
                .enumerate()
                .filter(|(slot, _)| with_guard || !engine.is_side(*slot))
                .all(|(_, s)| s.inherited || matches!(s.holding, Holding::Empty))
        };
        if matches!(next, Next::Stop) {
            return drained(self, true).then_some(next);
        }
        if !drained(self, false) || !self.control.is_up() {
            return None;
        }
        if let Phase::Draining(t) | Phase::Outage(t) = &mut self.phase {
            if let GuardPlan::Install(guard) = std::mem::replace(&mut t.guard, GuardPlan::Keep) {
                self.guard = guard;
            }
        }
        self.phase = self.start(next);
        for slot in 0..self.slots.len() {
            if !self.is_side(slot) {
                self.slots[slot].role = None;
            }
        }
        Some(next)
    }

    /// The phase `next` names, published.
    fn start(&self, next: Next) -> Phase {
        let t = self.target.clone();
        let watch = |bracket| {
            Watch::new(
                bracket,
                t.precision,
                t.keepalive_probe.is_some(),
                self.scheduler_slots(),
            )
        };
        match next {
            Next::Discover(seed) => {
                self.publish.set_state(TargetState::Discovering);
                self.publish.discovery_started();
                let slots = self.scheduler_slots();
                let discovery = Discovery::new(
                    search_space(&t),
                    slots,
                    t.discovery_policy,
                    seed,
                    self.now(),
                );
                Phase::Discovering {
                    discovery,
                    started: Instant::now(),
                }
            }
            Next::Watch(bracket) => {
                let phase = Phase::Watching(watch(bracket));
                self.publish.set_state(settled_state(bracket));
                phase
            }
            Next::Confirm(bracket) => {
                let phase = Phase::Confirming {
                    watch: watch(bracket).confirming(),
                    since: Instant::now(),
                };
                self.publish.set_state(TargetState::Confirming);
                phase
            }
            Next::CheckKeepalives(bracket) => {
                Phase::Watching(Watch::keepalive_check(bracket, self.target.precision))
            }
            Next::Stop => Phase::towards(Next::Stop),
        }
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
        if matches!(self.phase, Phase::Watching(_))
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
        if let Phase::Discovering { discovery, .. } = &mut self.phase {
            discovery.retune(search_space(&t), t.discovery_policy);
        }
        let bracket = self
            .phase
            .estimator_ref()
            .map_or(self.bracket, |s| s.bracket());
        let next = self.phase.again(bracket, self.mode);
        if guard_moved {
            // The guard's slot comes from, or goes back to, the scheduler: start the phase
            // again over all slots, from what is known.
            self.guard = None;
            self.end_phase(next, false, GuardPlan::Install(guard));
        } else if self.phase.watch().is_some() && old.precision != t.precision {
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
