//! Where one target's engine tells the world what it found: every fact goes to the Prometheus
//! metrics and to the status snapshot the landing page reads, together, so the two never
//! disagree. The engine calls one method per fact; nothing here decides anything.

use std::time::{Duration, SystemTime};

use super::status::{self, EventRecord, ProbeRecord, StatusBoard, TargetStatus, RECENT_EVENTS};
use crate::config::TargetConfig;
use crate::discovery::Bracket;
use crate::metrics::TargetMetrics;
use crate::model::{DeathCause, Detected, Role, TargetState, ThresholdMove};
use crate::postgres::classify::ConnectErrorKind;
use crate::postgres::connection::ProbeOutcome;
use crate::recommend::Recommendation;

/// How many probe results the status page's chart keeps.
const RECENT_PROBES: usize = 200;

/// One target's metrics and status snapshot, written together.
pub struct Publisher {
    name: String,
    metrics: TargetMetrics,
    board: StatusBoard,
    /// The last recommendation published (its changes are logged).
    recommendation: Option<Recommendation>,
}

impl Publisher {
    /// Publishes what is known before anything is measured: the target's labels, the app's
    /// lifetime and no recommended lifetime yet.
    pub fn new(target: &TargetConfig, metrics: TargetMetrics, board: StatusBoard) -> Self {
        metrics.set_labels(&target.labels);
        metrics.set_app_lifetime(target.app_max_idle_lifetime, target.app_lifetime_source);
        metrics.set_recommendation(None, target.recommended_socket_timeout);
        Publisher {
            name: target.name.clone(),
            metrics,
            board,
            recommendation: None,
        }
    }

    fn status(&self, change: impl FnOnce(&mut TargetStatus)) {
        status::update(&self.board, &self.name, change);
    }

    /// Nothing measured yet: discovering, with an empty bracket.
    pub fn start_measuring(&self) {
        self.metrics.start_measuring();
    }

    /// One line with the recommendation once it is final (a discovery finished, a stored
    /// measurement was confirmed, a reload changed the margin): not at every step of a search.
    pub fn log_recommendation(&self) {
        if let Some(recommendation) = self.recommendation {
            if let Some(lifetime) = recommendation.max_idle_lifetime {
                tracing::info!(
                    target_name = %self.name,
                    max_idle_lifetime = %crate::format::duration(lifetime),
                    socket_timeout = %crate::format::duration(recommendation.socket_timeout),
                    "recommended pool settings"
                );
            }
        }
    }

    pub fn set_state(&self, state: TargetState) {
        self.metrics.set_state(state);
        self.status(|s| s.state = state);
    }

    /// The bracket and the pool settings recommended from it. `confirmed` false: the bracket
    /// is a stored one the sentinels have not confirmed; its lifetime is not published as a
    /// recommendation (no `idle_drop_recommended_max_idle_lifetime_seconds`, no log line, no
    /// recipes), and the page shows it as "stored, confirming".
    pub fn set_bracket(
        &mut self,
        bracket: Bracket,
        recommendation: Recommendation,
        confirmed: bool,
    ) {
        self.metrics.set_bracket(bracket.lower, bracket.upper);
        self.metrics.set_recommendation(
            recommendation.max_idle_lifetime.filter(|_| confirmed),
            recommendation.socket_timeout,
        );
        self.recommendation = confirmed.then_some(recommendation);
        self.status(|s| {
            s.bracket = bracket;
            s.recommendation = Some(recommendation);
            s.recommendation_unconfirmed = !confirmed;
        });
    }

    /// A reload's settings that the page and the metrics show.
    pub fn settings(&self, target: &TargetConfig) {
        self.metrics.set_labels(&target.labels);
        self.metrics
            .set_app_lifetime(target.app_max_idle_lifetime, target.app_lifetime_source);
        self.status(|s| s.show_settings(target));
    }

    /// This run resumed from a stored measurement (its bracket is published separately).
    pub fn resumed(
        &self,
        keepalive_rescue: Option<bool>,
        drop_kind: Option<DeathCause>,
        measured_at: SystemTime,
    ) {
        if let Some(rescued) = keepalive_rescue {
            self.metrics.set_keepalive_rescue(rescued);
        }
        self.status(|s| {
            s.keepalive_rescue = keepalive_rescue;
            s.stored_drop = drop_kind;
            s.resumed_from = Some(measured_at);
        });
    }

    /// What the status knows of how the drop looks (this run's deaths, else the stored
    /// measurement's) and of the keepalive probe: what a settled measurement keeps.
    pub fn drop_and_rescue(&self) -> (Option<DeathCause>, Option<bool>) {
        let board = self.board.read().unwrap_or_else(|e| e.into_inner());
        board.get(&self.name).map_or((None, None), |s| {
            let kind = status::dominant_death(&s.deaths)
                .cloned()
                .or_else(|| s.stored_drop.clone());
            (kind, s.keepalive_rescue)
        })
    }

    pub fn discovery_started(&self) {
        self.status(|s| {
            s.discovery_started = Some(SystemTime::now());
            s.discovery_took = None;
        });
    }

    pub fn discovery_finished(&self, took: Duration) {
        self.metrics.discovery_finished(took);
        self.status(|s| s.discovery_took = Some(took));
    }

    /// A resumed measurement was confirmed by the sentinels, `took` after the watch started.
    pub fn confirmed(&self, took: Duration) {
        self.status(|s| s.discovery_took = Some(took));
    }

    pub fn keepalive_rescue(&self, rescued: bool) {
        self.metrics.set_keepalive_rescue(rescued);
        self.status(|s| s.keepalive_rescue = Some(rescued));
    }

    pub fn threshold_changed(&self, direction: ThresholdMove) {
        self.metrics.threshold_changed(direction);
    }

    pub fn outage(&self) {
        self.metrics.outage();
    }

    pub fn connected(&self, took: Duration) {
        self.metrics.connected(took);
    }

    pub fn connect_failed(&self, kind: ConnectErrorKind, message: String) {
        self.metrics.connect_error(kind);
        self.status(|s| s.last_error = Some(message));
    }

    /// A probe query was sent after `rung` of idle.
    pub fn probe_use(&self, rung: &str, outcome: &ProbeOutcome) {
        self.metrics.probe_use(rung, outcome);
    }

    pub fn time_to_failure(&self, cause: &DeathCause, took: Duration) {
        self.metrics.time_to_failure(cause, took);
    }

    /// An idle time that survived or killed, for the survival chart.
    pub fn record_probe(&self, idle: Duration, survived: bool) {
        self.status(|s| {
            s.recent_probes.push_front(ProbeRecord { idle, survived });
            s.recent_probes.truncate(RECENT_PROBES);
        });
    }

    /// A connection died; `unexpected`: it should have survived (what pages).
    pub fn record_death(
        &self,
        role: Role,
        cause: &DeathCause,
        idle: Duration,
        detected: Detected,
        unexpected: bool,
    ) {
        self.metrics.closed(role, cause, detected, unexpected);
        let record = EventRecord {
            at: SystemTime::now(),
            role,
            cause: cause.clone(),
            idle,
            detected,
            unexpected,
        };
        let cause = cause.clone();
        self.status(|s| {
            s.recent_events.push_front(record);
            s.recent_events.truncate(RECENT_EVENTS);
            *s.deaths.entry(cause).or_default() += 1;
        });
    }

    /// Sessions we hold on the server: the probes' and the control connection's.
    pub fn sessions(&self, sessions: usize) {
        self.metrics.set_sessions(sessions);
        self.status(|s| {
            s.sessions = sessions;
            s.sessions_peak = s.sessions_peak.max(sessions);
        });
    }

    /// A dead probe's session the server still listed.
    pub fn ghost_seen(&self) {
        self.metrics.ghost_seen();
        self.status(|s| s.ghosts_seen += 1);
    }

    pub fn ghosts_alive(&self, alive: usize) {
        self.metrics.set_ghosts_alive(alive);
        self.status(|s| s.ghosts_alive = alive);
    }

    /// A dead probe's ghost check reached an answer.
    pub fn ghost_checked(&self) {
        self.status(|s| s.ghosts_checked += 1);
    }

    pub fn ghost_reaped(&self) {
        self.metrics.ghost_reaped();
        self.status(|s| s.ghosts_reaped += 1);
    }
}
