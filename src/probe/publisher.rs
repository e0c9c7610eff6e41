//! Where one target tells the world what it is and what it found: the only writer of a
//! target's Prometheus series and of its status snapshot (the landing page), which it writes
//! together so the two never disagree. Nothing here decides anything.
//!
//! A target's life as it shows:
//! - [`Publisher::start`]: a run's first publication, whole, with the stored measurement it
//!   resumes from if any (a scrape never sees `discovering` or an empty bracket first: every
//!   write holds the scrape lock, see `Metrics::encode`). A later run of the same target keeps
//!   the counters and `target_up`, and a fact the new run does not know takes its series away.
//! - one method per fact while the run goes (the engine's decisions, the control
//!   connection's reports);
//! - [`Publisher::retire`] when the run is over: nothing the old run still sends can land after
//!   the next run's first publication;
//! - [`Publisher::remove`] when the target is no longer configured.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::status::{self, EventRecord, ProbeRecord, StatusBoard, TargetStatus, RECENT_EVENTS};
use crate::config::TargetConfig;
use crate::discovery::Bracket;
use crate::metrics::{Metrics, TargetMetrics};
use crate::model::{DeathCause, Detected, Role, TargetState, ThresholdMove};
use crate::postgres::classify::ConnectErrorKind;
use crate::postgres::connection::ProbeOutcome;
use crate::recommend::{self, Recommendation};
use crate::storage::StoredMeasurement;

/// How many probe results the status page's chart keeps.
const RECENT_PROBES: usize = 200;

/// One run's writer of a target's metrics and status snapshot; clones share it (the engine's
/// and the control connection's).
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    metrics: TargetMetrics,
    board: StatusBoard,
    /// Cleared by [`Publisher::retire`]; read and cleared under the scrape lock.
    live: AtomicBool,
    /// The last recommendation published (its changes are logged).
    recommendation: Mutex<Option<Recommendation>>,
}

/// The stored measurement a run resumes from: one with a bound (an entry without one has
/// nothing to resume).
pub fn resumable(stored: Option<StoredMeasurement>) -> Option<StoredMeasurement> {
    stored.filter(|m| m.lower.is_some() || m.upper.is_some())
}

impl Publisher {
    /// A run's first publication: the target's series and status as they stand before it
    /// measures anything, from `resume` (a stored measurement, see [`resumable`]: its bracket,
    /// state `confirming`, nothing recommended yet) or from nothing (`discovering`, an empty
    /// bracket). A target already shown (a restarted run) keeps its counters and `target_up`.
    pub fn start(
        metrics: &Arc<Metrics>,
        board: &StatusBoard,
        target: &TargetConfig,
        resume: Option<&StoredMeasurement>,
    ) -> Publisher {
        let series = metrics.series(&target.name);
        let mut status = TargetStatus::new(target);
        {
            let _scrape = series.exclusive();
            let mut board = board.write().unwrap_or_else(|e| e.into_inner());
            let shown_up = board.get(&target.name).map(|s| s.up);
            series.appear(shown_up.is_none());
            status.up = shown_up.unwrap_or(false);
            series.set_labels(&target.labels);
            series.set_app_lifetime(target.app_max_idle_lifetime, target.app_lifetime_source);
            let bracket = resume.map_or_else(Bracket::default, |m| Bracket {
                lower: m.lower,
                upper: m.upper,
            });
            series.set_bracket(bracket.lower, bracket.upper);
            status.bracket = bracket;
            if let Some(stored) = resume {
                status.recommendation = Some(recommend::recommend(
                    &bracket,
                    target.recommendation_margin,
                    target.recommended_socket_timeout,
                ));
                status.recommendation_unconfirmed = true;
                status.state = TargetState::Confirming;
                status.keepalive_rescue = stored.keepalive_rescue;
                status.stored_drop = stored.drop_kind.clone();
                status.resumed_from = Some(stored.measured_at);
            }
            // A stored lifetime is not advice until the sentinels confirm it.
            series.set_recommendation(None, target.recommended_socket_timeout);
            series.set_keepalive_rescue(status.keepalive_rescue);
            series.set_state(status.state);
            board.insert(target.name.clone(), status);
        }
        Publisher {
            inner: Arc::new(Inner {
                name: target.name.clone(),
                metrics: series,
                board: board.clone(),
                live: AtomicBool::new(true),
                recommendation: Mutex::new(None),
            }),
        }
    }

    /// The run is over: whatever it still sends (a control task finishing its sweep) is
    /// dropped, so it cannot land after the next run's first publication or the removal.
    pub fn retire(&self) {
        let _scrape = self.inner.metrics.exclusive();
        self.inner.live.store(false, Ordering::Relaxed);
    }

    /// Deletes the series and status of the target named `name` (no longer configured); its
    /// last run has retired.
    pub fn remove(metrics: &Arc<Metrics>, board: &StatusBoard, name: &str) {
        let series = metrics.series(name);
        let _scrape = series.exclusive();
        series.remove();
        board
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// Writes one fact to the series and the status, whole for a scrape, unless the run is
    /// over.
    fn publish(&self, series: impl FnOnce(&TargetMetrics), change: impl FnOnce(&mut TargetStatus)) {
        let inner = &*self.inner;
        let _scrape = inner.metrics.exclusive();
        if !inner.live.load(Ordering::Relaxed) {
            return;
        }
        series(&inner.metrics);
        status::update(&inner.board, &inner.name, change);
    }

    fn series(&self, write: impl FnOnce(&TargetMetrics)) {
        self.publish(write, |_| {});
    }

    fn status(&self, change: impl FnOnce(&mut TargetStatus)) {
        self.publish(|_| {}, change);
    }

    /// One line with the recommendation once it is final (a discovery finished, a stored
    /// measurement was confirmed, a reload changed the margin): not at every step of a search.
    pub fn log_recommendation(&self) {
        let recommendation = *lock(&self.inner.recommendation);
        if let Some(recommendation) = recommendation {
            if let Some(lifetime) = recommendation.max_idle_lifetime {
                tracing::info!(
                    target_name = %self.inner.name,
                    max_idle_lifetime = %crate::format::duration(lifetime),
                    socket_timeout = %crate::format::duration(recommendation.socket_timeout),
                    "recommended pool settings"
                );
            }
        }
    }

    pub fn set_state(&self, state: TargetState) {
        self.publish(|m| m.set_state(state), |s| s.state = state);
    }

    /// The bracket and the pool settings recommended from it. `confirmed` false: the bracket
    /// is a stored one the sentinels have not confirmed; its lifetime is not published as a
    /// recommendation (no `idle_drop_recommended_max_idle_lifetime_seconds`, no log line, no
    /// recipes), and the page shows it as "stored, confirming".
    pub fn set_bracket(&self, bracket: Bracket, recommendation: Recommendation, confirmed: bool) {
        *lock(&self.inner.recommendation) = confirmed.then_some(recommendation);
        self.publish(
            |m| {
                m.set_bracket(bracket.lower, bracket.upper);
                m.set_recommendation(
                    recommendation.max_idle_lifetime.filter(|_| confirmed),
                    recommendation.socket_timeout,
                );
            },
            |s| {
                s.bracket = bracket;
                s.recommendation = Some(recommendation);
                s.recommendation_unconfirmed = !confirmed;
            },
        );
    }

    /// A reload's settings that the page and the metrics show (the target's labels, the app's
    /// lifetime); a setting that went away takes its series along.
    pub fn settings(&self, target: &TargetConfig) {
        self.publish(
            |m| {
                m.set_labels(&target.labels);
                m.set_app_lifetime(target.app_max_idle_lifetime, target.app_lifetime_source);
            },
            |s| s.show_settings(target),
        );
    }

    /// What the status knows of how the drop looks (this run's deaths, else the stored
    /// measurement's) and of the keepalive probe: what a settled measurement keeps.
    pub fn drop_and_rescue(&self) -> (Option<DeathCause>, Option<bool>) {
        let board = self.inner.board.read().unwrap_or_else(|e| e.into_inner());
        board.get(&self.inner.name).map_or((None, None), |s| {
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
        self.publish(
            |m| m.discovery_finished(took),
            |s| s.discovery_took = Some(took),
        );
    }

    /// A resumed measurement was confirmed by the sentinels, `took` after the watch started.
    pub fn confirmed(&self, took: Duration) {
        self.status(|s| s.discovery_took = Some(took));
    }

    pub fn keepalive_rescue(&self, rescued: bool) {
        self.publish(
            |m| m.set_keepalive_rescue(Some(rescued)),
            |s| s.keepalive_rescue = Some(rescued),
        );
    }

    pub fn threshold_changed(&self, direction: ThresholdMove) {
        self.series(|m| m.threshold_changed(direction));
    }

    pub fn outage(&self) {
        self.series(TargetMetrics::outage);
    }

    /// A connection (a probe's or the control connection's) opened in `took`.
    pub fn connected(&self, took: Duration) {
        self.series(|m| m.connected(took));
    }

    /// A probe connection could not be opened (or the run could not set up TLS).
    pub fn connect_failed(&self, kind: ConnectErrorKind, message: String) {
        self.publish(|m| m.connect_error(kind), |s| s.last_error = Some(message));
    }

    /// A probe query was sent after `rung` of idle.
    pub fn probe_use(&self, rung: &str, outcome: &ProbeOutcome) {
        self.series(|m| m.probe_use(rung, outcome));
    }

    pub fn time_to_failure(&self, cause: &DeathCause, took: Duration) {
        self.series(|m| m.time_to_failure(cause, took));
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
        let record = EventRecord {
            at: SystemTime::now(),
            role,
            cause: cause.clone(),
            idle,
            detected,
            unexpected,
        };
        self.publish(
            |m| m.closed(role, cause, detected, unexpected),
            |s| {
                s.recent_events.push_front(record);
                s.recent_events.truncate(RECENT_EVENTS);
                *s.deaths.entry(cause.clone()).or_default() += 1;
            },
        );
    }

    /// Sessions we hold on the server: the probes' and the control connection's.
    pub fn sessions(&self, sessions: usize) {
        self.publish(
            |m| m.set_sessions(sessions),
            |s| {
                s.sessions = sessions;
                s.sessions_peak = s.sessions_peak.max(sessions);
            },
        );
    }

    /// A dead probe's session the server still listed.
    pub fn ghost_seen(&self) {
        self.publish(TargetMetrics::ghost_seen, |s| s.ghosts_seen += 1);
    }

    pub fn ghosts_alive(&self, alive: usize) {
        self.publish(|m| m.set_ghosts_alive(alive), |s| s.ghosts_alive = alive);
    }

    /// A dead probe's ghost check reached an answer.
    pub fn ghost_checked(&self) {
        self.status(|s| s.ghosts_checked += 1);
    }

    pub fn ghost_reaped(&self) {
        self.publish(TargetMetrics::ghost_reaped, |s| s.ghosts_reaped += 1);
    }

    // ---- the control connection's reports ------------------------------------------------------

    /// Whether the control connection answers (`target_up`); `error`: why it does not.
    pub fn control_up(&self, up: bool, error: Option<String>) {
        self.publish(
            |m| m.set_up(up),
            |s| {
                s.up = up;
                if error.is_some() || up {
                    s.last_error = error;
                }
            },
        );
    }

    /// The control connection could not connect (`kind`), and why.
    pub fn control_connect_failed(&self, kind: ConnectErrorKind, message: String) {
        self.publish(
            |m| {
                m.connect_error(kind);
                m.set_up(false);
            },
            |s| {
                s.up = false;
                s.last_error = Some(message);
            },
        );
    }

    /// The control connection died (counted as closed; never unexpected: it is ours).
    pub fn control_lost(&self, cause: &DeathCause) {
        self.series(|m| m.closed(Role::Control, cause, Detected::OnUse, false));
    }

    /// The path dropped the control connection (the server answered again at once).
    pub fn control_dropped(&self, cause: &DeathCause) {
        self.series(|m| m.control_drop(cause));
    }

    /// The server settings the control connection read at connect.
    pub fn server_settings(&self, values: &[(&str, String)]) {
        let shown = values
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        self.publish(
            |m| m.set_server_settings(values),
            |s| s.server_settings = shown,
        );
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn target(extra: &str) -> TargetConfig {
        let text = format!(
            "targets:\n  - name: x\n    dsn: postgres://probe@127.0.0.1:5432/postgres\n{extra}"
        );
        let config = crate::config::parse(Path::new("test.yaml"), &text).expect("test config");
        config.targets.into_iter().next().expect("one target")
    }

    fn stored(keepalive_rescue: Option<bool>) -> StoredMeasurement {
        StoredMeasurement {
            lower: Some(Duration::from_secs(100)),
            upper: Some(Duration::from_secs(105)),
            drop_kind: Some(DeathCause::Timeout),
            keepalive_rescue,
            measured_at: SystemTime::now(),
        }
    }

    fn shown(board: &StatusBoard) -> TargetStatus {
        board.read().unwrap()["x"].clone()
    }

    #[test]
    fn fresh_target_exports_an_open_bracket_and_one_state() {
        let metrics = Arc::new(Metrics::new());
        let board = StatusBoard::default();
        Publisher::start(&metrics, &board, &target(""), None);
        let text = metrics.encode();
        assert!(
            text.contains("idle_drop_threshold_upper_bound_seconds{target=\"x\"} +Inf"),
            "{text}"
        );
        assert!(
            text.contains("idle_drop_discovery_state{state=\"discovering\",target=\"x\"} 1"),
            "{text}"
        );
        assert!(text.contains("idle_drop_discovery_state{state=\"watching\",target=\"x\"} 0"));
        assert!(
            text.contains("idle_drop_target_up{target=\"x\"} 0"),
            "{text}"
        );
        assert_eq!(shown(&board).state, TargetState::Discovering);
    }

    #[test]
    fn a_resumed_run_is_confirming_its_stored_bracket_from_its_first_publication() {
        let metrics = Arc::new(Metrics::new());
        let board = StatusBoard::default();
        Publisher::start(&metrics, &board, &target(""), Some(&stored(Some(true))));
        let text = metrics.encode();
        assert!(
            text.contains("idle_drop_discovery_state{state=\"confirming\",target=\"x\"} 1"),
            "{text}"
        );
        assert!(text.contains("idle_drop_threshold_lower_bound_seconds{target=\"x\"} 100"));
        assert!(text.contains("idle_drop_threshold_upper_bound_seconds{target=\"x\"} 105"));
        assert!(
            text.contains("idle_drop_keepalive_rescue{target=\"x\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("idle_drop_recommended_max_idle_lifetime_seconds{"),
            "a stored lifetime is no advice before it is confirmed:\n{text}"
        );
        let status = shown(&board);
        assert_eq!(status.state, TargetState::Confirming);
        assert!(status.recommendation_unconfirmed && status.resumed_from.is_some());
        assert_eq!(status.stored_drop, Some(DeathCause::Timeout));
    }

    /// A restarted exporter's scrape must never see a resuming target as `discovering` or
    /// without its stored bracket: the first publication is atomic for a scrape. (A scrape
    /// that gathered the families while the daemon created them saw `discovering` and an
    /// empty bracket in about half the warm starts of `lab_never_blind`.)
    #[test]
    fn a_scrape_sees_a_resuming_target_whole_or_not_at_all() {
        let (lower, upper) = (Duration::from_millis(28_750), Duration::from_millis(30_500));
        let stored = StoredMeasurement {
            lower: Some(lower),
            upper: Some(upper),
            ..stored(None)
        };
        for round in 0..200 {
            let metrics = Arc::new(Metrics::new());
            let board = StatusBoard::default();
            let stop = Arc::new(AtomicBool::new(false));
            let scraper = {
                let (metrics, stop) = (metrics.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        seen.push(metrics.encode());
                    }
                    seen
                })
            };
            std::thread::sleep(Duration::from_micros(50 * (round % 20)));
            Publisher::start(&metrics, &board, &target(""), Some(&stored));
            stop.store(true, Ordering::Relaxed);
            for text in scraper.join().unwrap() {
                if !text.contains("idle_drop_discovery_state{") {
                    continue;
                }
                assert!(
                    text.contains("idle_drop_discovery_state{state=\"confirming\",target=\"x\"} 1")
                        && text.contains(
                            "idle_drop_threshold_lower_bound_seconds{target=\"x\"} 28.75\n"
                        )
                        && text.contains(
                            "idle_drop_threshold_upper_bound_seconds{target=\"x\"} 30.5\n"
                        )
                        && text.contains("idle_drop_target_up{target=\"x\"} 0"),
                    "round {round}: a partial first publication:\n{text}"
                );
            }
        }
    }

    /// A restarted run keeps `target_up` and the counters; what it does not know (the stored
    /// keepalive result of a path it no longer measures) is no longer shown.
    #[test]
    fn a_later_run_keeps_up_and_counters_and_drops_what_it_does_not_know() {
        let metrics = Arc::new(Metrics::new());
        let board = StatusBoard::default();
        let first = Publisher::start(&metrics, &board, &target(""), Some(&stored(Some(true))));
        first.control_up(true, None);
        first.outage();
        first.retire();
        let second = Publisher::start(&metrics, &board, &target(""), None);
        let text = metrics.encode();
        assert!(
            text.contains("idle_drop_target_up{target=\"x\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("idle_drop_outages_total{target=\"x\"} 1"),
            "{text}"
        );
        assert!(!text.contains("idle_drop_keepalive_rescue{"), "{text}");
        assert!(
            text.contains("idle_drop_discovery_state{state=\"discovering\",target=\"x\"} 1"),
            "{text}"
        );
        let status = shown(&board);
        assert!(status.up && status.keepalive_rescue.is_none() && status.resumed_from.is_none());
        second.control_up(false, Some("refused".into()));
        assert!(metrics
            .encode()
            .contains("idle_drop_target_up{target=\"x\"} 0"));
    }

    #[test]
    fn a_retired_run_writes_nothing_and_a_removed_target_shows_nothing() {
        let metrics = Arc::new(Metrics::new());
        let board = StatusBoard::default();
        let old = Publisher::start(&metrics, &board, &target(""), None);
        old.retire();
        let new = Publisher::start(&metrics, &board, &target(""), None);
        // The old run's control task still finishing: it must not overwrite the new run.
        old.control_up(true, None);
        old.set_state(TargetState::Watching);
        let text = metrics.encode();
        assert!(
            text.contains("idle_drop_target_up{target=\"x\"} 0"),
            "{text}"
        );
        assert!(text.contains("idle_drop_discovery_state{state=\"discovering\",target=\"x\"} 1"));
        assert!(!shown(&board).up);
        new.retire();
        Publisher::remove(&metrics, &board, "x");
        assert!(!metrics.encode().contains("target=\"x\""));
        assert!(board.read().unwrap().is_empty());
    }
}
