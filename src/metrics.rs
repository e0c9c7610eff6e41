//! The exporter's metrics: one registry, the families documented in `docs/metrics.md`, and a
//! per-target handle the probe engine records through.
//!
//! Label values are bounded by construction: idle durations enter only as a ladder rung, kinds
//! and roles are fixed sets, SQLSTATEs are filtered in `postgres::classify`, a target's own
//! labels (`idle_drop_target_info`, `target_info.rs`) are capped by the config. Removing a target
//! (on reload) deletes every series that carries its `target` label.

mod target_info;

use std::collections::HashMap;
use std::time::Duration;

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::config::{Labels, LifetimeSource};
use crate::model::{DeathCause, Detected, Role, TargetState, ThresholdMove};
use crate::postgres::classify::ConnectErrorKind;
use crate::postgres::connection::ProbeOutcome;

/// All metric families, registered once for the life of the process.
pub struct Metrics {
    registry: Registry,
    /// Read by a scrape while it gathers (scrapes run side by side), written by the target
    /// publisher for each of its writes (see `probe::publisher`): a scrape sees a write of
    /// several series whole or not at all (a first publication never shows `discovering`
    /// beside a stored bracket).
    writing: std::sync::RwLock<()>,
    lower: GaugeVec,
    upper: GaugeVec,
    recommended_lifetime: GaugeVec,
    recommended_socket_timeout: GaugeVec,
    app_lifetime: GaugeVec,
    app_lifetime_source: IntGaugeVec,
    state: IntGaugeVec,
    discovery_duration: GaugeVec,
    discovery_runs: IntCounterVec,
    threshold_changes: IntCounterVec,
    probe_uses: IntCounterVec,
    closed: IntCounterVec,
    unexpected_closed: IntCounterVec,
    control_drops: IntCounterVec,
    outages: IntCounterVec,
    time_to_failure: HistogramVec,
    connect_duration: HistogramVec,
    connect_errors: IntCounterVec,
    sessions: IntGaugeVec,
    up: IntGaugeVec,
    keepalive_rescue: IntGaugeVec,
    ghosts: IntGaugeVec,
    ghosts_seen: IntCounterVec,
    ghosts_reaped: IntCounterVec,
    server_settings: IntGaugeVec,
    /// `idle_drop_target_info`: each target's `labels` (a collector of its own: see the file).
    target_info: target_info::TargetInfo,
    pub reload_successful: IntGauge,
    pub reload_timestamp: Gauge,
    pub reloads: IntCounterVec,
    pub targets: IntGauge,
    /// `--shard=I/N`: N, and I as a label (only when sharded).
    pub shards: IntGauge,
    pub shard_info: IntGaugeVec,
    /// Per target file (`file` label, bounded by `MAX_TARGET_FILES`): whether its content is in
    /// force, and how many targets it gives.
    pub target_file_ok: IntGaugeVec,
    pub target_file_targets: IntGaugeVec,
}

macro_rules! register {
    ($registry:expr, $metric:expr) => {{
        let metric = $metric.expect("metric definition is valid");
        $registry
            .register(Box::new(metric.clone()))
            .expect("metric names are unique");
        metric
    }};
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let t = &["target"];
        let gauge = |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), t);
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels)
        };

        let metrics = Metrics {
            lower: register!(r, gauge("idle_drop_threshold_lower_bound_seconds", "Longest idle time a probe connection survived.")),
            upper: register!(r, gauge("idle_drop_threshold_upper_bound_seconds", "Shortest idle time that killed a probe connection (+Inf while none did).")),
            recommended_lifetime: register!(r, gauge("idle_drop_recommended_max_idle_lifetime_seconds", "Safe pool max idle lifetime: the lower bound minus the configured margin.")),
            recommended_socket_timeout: register!(r, gauge("idle_drop_recommended_socket_timeout_seconds", "Socket timeout to set so a dead pooled connection fails fast.")),
            app_lifetime: register!(r, gauge("idle_drop_app_max_idle_lifetime_seconds", "The application's pool idle lifetime the guard probe protects.")),
            // Its own family: a `source` label on the lifetime would break the alerts that join
            // it `on (job, instance, target)`.
            app_lifetime_source: register!(r, int_gauge("idle_drop_app_lifetime_source", "1 for where the guarded app lifetime came from: config, url (the URL's max_idle_connection_lifetime) or library_default (quaint's default).", &["target", "source"])),
            state: register!(r, int_gauge("idle_drop_discovery_state", "1 for the target's current discovery state.", &["target", "state"])),
            discovery_duration: register!(r, gauge("idle_drop_discovery_duration_seconds", "Wall time the last completed discovery took.")),
            discovery_runs: register!(r, counter("idle_drop_discovery_runs_total", "Completed discoveries.", t)),
            threshold_changes: register!(r, counter("idle_drop_threshold_changes_total", "Watch sentinels that contradicted the bracket.", &["target", "direction"])),
            probe_uses: register!(r, counter("idle_drop_probe_uses_total", "Probe connection uses after an idle period, by ladder rung and outcome.", &["target", "rung", "outcome"])),
            closed: register!(r, counter("idle_drop_closed_connections_total", "Probe connections that died.", &["target", "role", "kind", "sqlstate", "detected"])),
            unexpected_closed: register!(r, counter("idle_drop_unexpected_closed_connections_total", "Probe connections that died although they should have survived (what pages).", &["target", "role", "kind"])),
            control_drops: register!(r, counter("idle_drop_control_connection_drops_total", "The control connection died of something idling can cause (timeout, reset, EOF, an idle timeout of the server) and the server answered again at once: the path dropped it between two pings. Ours, not the application's: never pages.", &["target", "kind"])),
            outages: register!(r, counter("idle_drop_outages_total", "Times the target became unreachable (link down, server restart): deaths then are outages, never unexpected idle deaths.", t)),
            time_to_failure: register!(r, HistogramVec::new(
                HistogramOpts::new("idle_drop_time_to_failure_seconds", "From sending a probe to learning the connection is dead.")
                    .buckets(vec![0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0]),
                &["target", "kind"],
            )),
            connect_duration: register!(r, HistogramVec::new(
                HistogramOpts::new("idle_drop_connect_duration_seconds", "Time to open a probe connection (TCP, TLS, startup).")
                    .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                t,
            )),
            connect_errors: register!(r, counter("idle_drop_connect_errors_total", "Failed connection attempts by kind.", &["target", "kind"])),
            sessions: register!(r, int_gauge("idle_drop_probe_connections", "Sessions the exporter holds on the target, including unreaped ghosts.", t)),
            up: register!(r, int_gauge("idle_drop_target_up", "1 when the control connection answers.", t)),
            keepalive_rescue: register!(r, int_gauge("idle_drop_keepalive_rescue", "1: keepalives kept a connection alive past the threshold (packet-counting box); 0: they did not (a proxy).", t)),
            ghosts: register!(r, int_gauge("idle_drop_ghost_backends", "The exporter's dead sessions the server still lists.", t)),
            ghosts_seen: register!(r, counter("idle_drop_ghost_backends_seen_total", "Dead probe connections the server still listed.", t)),
            ghosts_reaped: register!(r, counter("idle_drop_ghost_backends_reaped_total", "Ghost sessions terminated by the exporter.", t)),
            server_settings: register!(r, int_gauge(
                "idle_drop_server_settings_info",
                "Server settings that change what the probe sees, as reported at connect.",
                &["target", "server_version", "tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "idle_session_timeout", "idle_in_transaction_session_timeout"],
            )),
            target_info: {
                let info = target_info::TargetInfo::new();
                r.register(Box::new(info.clone())).expect("metric names are unique");
                info
            },
            reload_successful: register!(r, IntGauge::new("idle_drop_config_last_reload_successful", "1 if the last configuration load succeeded.")),
            reload_timestamp: register!(r, Gauge::new("idle_drop_config_last_reload_success_timestamp_seconds", "Unix time of the last successful configuration load.")),
            reloads: register!(r, counter("idle_drop_config_reloads_total", "Configuration loads by result.", &["result"])),
            targets: register!(r, IntGauge::new("idle_drop_targets", "Configured targets this replica probes (its shard's, with --shard).")),
            shards: register!(r, IntGauge::new("idle_drop_shards", "With --shard=I/N: N, the number of replicas the targets are split among; 0 without --shard.")),
            shard_info: register!(r, int_gauge("idle_drop_shard_info", "With --shard=I/N: 1, with this replica's shard I as a label.", &["shard"])),
            target_file_ok: register!(r, int_gauge("idle_drop_target_file_last_load_successful", "1 if the target file's current content is in force; 0 if it is refused (its last good targets keep running).", &["file"])),
            target_file_targets: register!(r, int_gauge("idle_drop_target_file_targets", "Targets the target file gives (its last good ones while refused), before --shard.", &["file"])),
            registry: r,
            writing: std::sync::RwLock::new(()),
        };
        register_build_info(&metrics.registry);
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            let _ = metrics.registry.register(Box::new(process));
        }
        for result in ["success", "failure"] {
            metrics.reloads.with_label_values(&[result]);
        }
        metrics
    }

    /// The text exposition of every metric; never in the middle of a target's write.
    pub fn encode(&self) -> String {
        let _whole = self.writing.read().unwrap_or_else(|e| e.into_inner());
        exposition(&self.registry)
    }

    /// The handle that records one target's series: only its publisher
    /// (`probe::publisher::Publisher`) holds one.
    pub(crate) fn series(self: &std::sync::Arc<Self>, name: &str) -> TargetMetrics {
        TargetMetrics {
            name: name.to_string(),
            metrics: self.clone(),
        }
    }

    /// Deletes every series of a target that is no longer configured.
    pub(crate) fn remove_target(&self, name: &str) {
        remove_where_target(&self.lower, name);
        remove_where_target(&self.upper, name);
        remove_where_target(&self.recommended_lifetime, name);
        remove_where_target(&self.recommended_socket_timeout, name);
        remove_where_target(&self.app_lifetime, name);
        remove_where_target(&self.app_lifetime_source, name);
        remove_where_target(&self.state, name);
        remove_where_target(&self.discovery_duration, name);
        remove_where_target(&self.discovery_runs, name);
        remove_where_target(&self.threshold_changes, name);
        remove_where_target(&self.probe_uses, name);
        remove_where_target(&self.closed, name);
        remove_where_target(&self.unexpected_closed, name);
        remove_where_target(&self.control_drops, name);
        remove_where_target(&self.outages, name);
        remove_where_target(&self.time_to_failure, name);
        remove_where_target(&self.connect_duration, name);
        remove_where_target(&self.connect_errors, name);
        remove_where_target(&self.sessions, name);
        remove_where_target(&self.up, name);
        remove_where_target(&self.keepalive_rescue, name);
        remove_where_target(&self.ghosts, name);
        remove_where_target(&self.ghosts_seen, name);
        remove_where_target(&self.ghosts_reaped, name);
        remove_where_target(&self.server_settings, name);
        self.target_info.remove(name);
    }
}

/// `idle_drop_build_info`: 1, with what this binary was built from as labels.
fn register_build_info(registry: &Registry) {
    let build = register!(
        registry,
        IntGaugeVec::new(
            Opts::new(
                "idle_drop_build_info",
                "1, with what this binary was built from as labels (as --version prints it)."
            ),
            &[
                "version",
                "revision",
                "branch",
                "build_date",
                "rustc_version",
                "platform"
            ]
        )
    );
    let info = crate::build_info::get();
    build
        .with_label_values(&[
            info.version,
            info.revision,
            info.branch,
            &info.build_date,
            info.rustc_version,
            info.platform,
        ])
        .set(1);
}

fn remove_where_target<T: MetricVecBuilder>(vec: &MetricVec<T>, name: &str) {
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: HashMap<&str, &str> = metric
                .get_label()
                .iter()
                .map(|pair| (pair.name(), pair.value()))
                .collect();
            if labels.get("target") == Some(&name) {
                let _ = vec.remove(&labels);
            }
        }
    }
}

/// Records one target's metrics.
#[derive(Clone)]
pub struct TargetMetrics {
    name: String,
    metrics: std::sync::Arc<Metrics>,
}

impl TargetMetrics {
    /// Holds off scrapes (and other targets' writes) until the guard is dropped.
    pub(crate) fn exclusive(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.metrics
            .writing
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Deletes every series of this target.
    pub(crate) fn remove(&self) {
        self.metrics.remove_target(&self.name);
    }

    /// The series a target has from its first publication on, at 0 (`target_up`, sessions and
    /// ghosts too when `first`; a later run keeps what the last one left: a restart is no
    /// outage, and `target_up` keeps its value until the new control connection knows better).
    pub fn appear(&self, first: bool) {
        let (m, name) = (&self.metrics, self.name.as_str());
        if first {
            m.up.with_label_values(&[name]).set(0);
            m.sessions.with_label_values(&[name]).set(0);
            m.ghosts.with_label_values(&[name]).set(0);
        }
        m.ghosts_seen.with_label_values(&[name]);
        m.ghosts_reaped.with_label_values(&[name]);
        m.discovery_runs.with_label_values(&[name]);
        m.outages.with_label_values(&[name]);
        // What pages is `increase(...[5m]) > 0`: a series that first appears at 1 has no
        // earlier sample, so Prometheus sees no increase and the first death (of each role and
        // kind) would never page. Every series the alert can need starts at 0.
        for role in Role::UNEXPECTED {
            for kind in DeathCause::kinds() {
                m.unexpected_closed
                    .with_label_values(&[name, role.label(), kind]);
            }
        }
        for kind in DeathCause::kinds() {
            m.control_drops.with_label_values(&[name, kind]);
        }
    }

    pub fn set_bracket(&self, lower: Option<Duration>, upper: Option<Duration>) {
        let m = &self.metrics;
        m.lower
            .with_label_values(&[&self.name])
            .set(lower.map_or(0.0, |d| d.as_secs_f64()));
        m.upper
            .with_label_values(&[&self.name])
            .set(upper.map_or(f64::INFINITY, |d| d.as_secs_f64()));
    }

    pub fn set_recommendation(&self, lifetime: Option<Duration>, socket_timeout: Duration) {
        let m = &self.metrics;
        match lifetime {
            Some(d) => m
                .recommended_lifetime
                .with_label_values(&[&self.name])
                .set(d.as_secs_f64()),
            None => {
                let _ = m.recommended_lifetime.remove_label_values(&[&self.name]);
            }
        }
        m.recommended_socket_timeout
            .with_label_values(&[&self.name])
            .set(socket_timeout.as_secs_f64());
    }

    /// The guarded application lifetime and where it came from; a lifetime that went away (a
    /// reload dropped it) takes its series along, or the unsafe-lifetime alert would keep
    /// firing on a value nobody configures any more.
    pub fn set_app_lifetime(&self, lifetime: Option<Duration>, source: Option<LifetimeSource>) {
        match lifetime {
            Some(d) => self
                .metrics
                .app_lifetime
                .with_label_values(&[&self.name])
                .set(d.as_secs_f64()),
            None => {
                let _ = self.metrics.app_lifetime.remove_label_values(&[&self.name]);
            }
        }
        remove_where_target(&self.metrics.app_lifetime_source, &self.name);
        if let Some(source) = source {
            self.metrics
                .app_lifetime_source
                .with_label_values(&[&self.name, source.label()])
                .set(1);
        }
    }

    /// The target's state, one-hot over [`TargetState::ALL`].
    pub fn set_state(&self, state: TargetState) {
        for s in TargetState::ALL {
            self.metrics
                .state
                .with_label_values(&[&self.name, s.as_str()])
                .set(i64::from(s == state));
        }
    }

    pub fn discovery_finished(&self, took: Duration) {
        self.metrics
            .discovery_duration
            .with_label_values(&[&self.name])
            .set(took.as_secs_f64());
        self.metrics
            .discovery_runs
            .with_label_values(&[&self.name])
            .inc();
    }

    pub fn threshold_changed(&self, direction: ThresholdMove) {
        self.metrics
            .threshold_changes
            .with_label_values(&[&self.name, direction.label()])
            .inc();
    }

    pub fn probe_use(&self, rung: &str, outcome: &ProbeOutcome) {
        self.metrics
            .probe_uses
            .with_label_values(&[&self.name, rung, outcome.label()])
            .inc();
    }

    pub fn closed(&self, role: Role, cause: &DeathCause, detected: Detected, unexpected: bool) {
        let (role_label, kind, sqlstate) = (role.label(), cause.kind(), cause.sqlstate());
        self.metrics
            .closed
            .with_label_values(&[&self.name, role_label, kind, sqlstate, detected.label()])
            .inc();
        if unexpected {
            self.unexpected(role, cause);
        }
    }

    /// A connection already counted as closed turned out to be one that should have survived.
    pub fn unexpected(&self, role: Role, cause: &DeathCause) {
        self.metrics
            .unexpected_closed
            .with_label_values(&[&self.name, role.label(), cause.kind()])
            .inc();
    }

    /// The control connection died of something idling can cause while the server stayed
    /// reachable (see `probe::control`).
    pub fn control_drop(&self, cause: &DeathCause) {
        self.metrics
            .control_drops
            .with_label_values(&[&self.name, cause.kind()])
            .inc();
    }

    pub fn outage(&self) {
        self.metrics.outages.with_label_values(&[&self.name]).inc();
    }

    pub fn time_to_failure(&self, cause: &DeathCause, took: Duration) {
        self.metrics
            .time_to_failure
            .with_label_values(&[&self.name, cause.kind()])
            .observe(took.as_secs_f64());
    }

    pub fn connected(&self, took: Duration) {
        self.metrics
            .connect_duration
            .with_label_values(&[&self.name])
            .observe(took.as_secs_f64());
    }

    pub fn connect_error(&self, kind: ConnectErrorKind) {
        self.metrics
            .connect_errors
            .with_label_values(&[&self.name, kind.label()])
            .inc();
    }

    pub fn set_sessions(&self, n: usize) {
        self.metrics
            .sessions
            .with_label_values(&[&self.name])
            .set(n as i64);
    }

    pub fn set_up(&self, up: bool) {
        self.metrics
            .up
            .with_label_values(&[&self.name])
            .set(i64::from(up));
    }

    /// What the keepalive probe found; `None` (not known on this path) takes the series away.
    pub fn set_keepalive_rescue(&self, rescued: Option<bool>) {
        match rescued {
            Some(rescued) => self
                .metrics
                .keepalive_rescue
                .with_label_values(&[&self.name])
                .set(i64::from(rescued)),
            None => {
                let _ = self
                    .metrics
                    .keepalive_rescue
                    .remove_label_values(&[&self.name]);
            }
        }
    }

    pub fn set_ghosts_alive(&self, n: usize) {
        self.metrics
            .ghosts
            .with_label_values(&[&self.name])
            .set(n as i64);
    }

    pub fn ghost_seen(&self) {
        self.metrics
            .ghosts_seen
            .with_label_values(&[&self.name])
            .inc();
    }

    pub fn ghost_reaped(&self) {
        self.metrics
            .ghosts_reaped
            .with_label_values(&[&self.name])
            .inc();
    }

    /// The target's `labels`, on its one `idle_drop_target_info` series (replacing the last).
    pub fn set_labels(&self, labels: &Labels) {
        self.metrics.target_info.set(&self.name, labels);
    }

    pub fn set_server_settings(&self, settings: &[(&str, String)]) {
        remove_where_target(&self.metrics.server_settings, &self.name);
        let mut values: Vec<&str> = vec![&self.name];
        values.extend(settings.iter().map(|(_, v)| v.as_str()));
        if let Ok(gauge) = self
            .metrics
            .server_settings
            .get_metric_with_label_values(&values)
        {
            gauge.set(1);
        }
    }
}

/// The Prometheus text exposition of every family in `registry` (served as
/// [`crate::http::server::METRICS_CONTENT_TYPE`]).
pub fn exposition(registry: &Registry) -> String {
    let mut buffer = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buffer)
        .expect("text encoding into a Vec cannot fail");
    let text = String::from_utf8(buffer).expect("the text format is UTF-8");
    // The encoder prints Rust's `inf`; the exposition format spells it `+Inf`.
    text.replace(" inf\n", " +Inf\n")
        .replace(" -inf\n", " -Inf\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn removing_a_target_drops_all_its_series_and_keeps_others() {
        let metrics = Arc::new(Metrics::new());
        let a = metrics.series("a");
        let b = metrics.series("b");
        a.appear(true);
        b.appear(true);
        a.probe_use("30s", &ProbeOutcome::Alive);
        a.closed(Role::Guard, &DeathCause::Timeout, Detected::OnUse, true);
        b.probe_use("30s", &ProbeOutcome::Alive);
        metrics.remove_target("a");
        let text = metrics.encode();
        assert!(!text.contains("target=\"a\""), "{text}");
        assert!(text.contains("target=\"b\""));
    }

    #[test]
    fn the_lifetime_source_is_one_series_that_follows_the_setting() {
        let metrics = Arc::new(Metrics::new());
        let t = metrics.series("x");
        t.set_app_lifetime(
            Some(Duration::from_secs(300)),
            Some(LifetimeSource::LibraryDefault),
        );
        t.set_app_lifetime(Some(Duration::from_secs(60)), Some(LifetimeSource::Url));
        let text = metrics.encode();
        assert!(
            text.contains("idle_drop_app_lifetime_source{source=\"url\",target=\"x\"} 1"),
            "{text}"
        );
        assert!(!text.contains("source=\"library_default\""), "{text}");
        assert!(text.contains("idle_drop_app_max_idle_lifetime_seconds{target=\"x\"} 60"));
        // A reload that drops the lifetime drops both series; one that brings it back, both back.
        t.set_app_lifetime(None, None);
        let text = metrics.encode();
        assert!(
            !text.contains("idle_drop_app_max_idle_lifetime_seconds{"),
            "{text}"
        );
        assert!(!text.contains("idle_drop_app_lifetime_source{"), "{text}");
        t.set_app_lifetime(Some(Duration::from_secs(45)), Some(LifetimeSource::Config));
        let text = metrics.encode();
        assert!(text.contains("idle_drop_app_max_idle_lifetime_seconds{target=\"x\"} 45"));
        assert!(text.contains("idle_drop_app_lifetime_source{source=\"config\",target=\"x\"} 1"));
        metrics.remove_target("x");
        assert!(!metrics.encode().contains("target=\"x\""));
    }
}
