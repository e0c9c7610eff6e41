//! The simulator's own counters, in a registry of its own (the simulator is a separate tool: its
//! `/metrics` must not mix with the exporter's families), and the routes that serve them on
//! `--web.listen-address` (with the exporter's own server, [`crate::http::server`]).
//!
//! Every label value comes from a fixed set (fates, two directions, three modes), so the series
//! count is bounded whatever the traffic.

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::server::{self, text};

use super::labels::{ByteDirection, Fate};
use super::Settings;

/// The simulator's metric families (its own registry, apart from the exporter's
/// [`crate::metrics::Metrics`]).
pub struct SimulatorMetrics {
    registry: Registry,
    /// Client connections accepted (refused and failed ones included).
    pub flows_opened: IntCounter,
    flows_ended: IntCounterVec,
    /// Flows that reached the idle timeout (counted at that moment; a silent flow ends later).
    pub flows_expired: IntCounter,
    /// Flows forwarding or lingering right now (each holds one of `--max-flows`).
    pub flows_active: IntGauge,
    forwarded: IntCounterVec,
}

impl SimulatorMetrics {
    /// Registers every family; the settings fill the constant gauges.
    pub fn new(settings: &Settings) -> SimulatorMetrics {
        let registry = Registry::new();
        let flows_opened = IntCounter::new(
            "idle_drop_simulator_flows_opened_total",
            "Client connections accepted by the simulator (refused ones included).",
        )
        .expect("valid metric");
        let flows_ended = IntCounterVec::new(
            Opts::new(
                "idle_drop_simulator_flows_ended_total",
                "Flows that ended, by fate (expired_silent, expired_reset, expired_fin, \
                 closed_by_client, closed_by_upstream, upstream_connect_failed, \
                 refused_max_flows, shutdown).",
            ),
            &["fate"],
        )
        .expect("valid metric");
        let flows_expired = IntCounter::new(
            "idle_drop_simulator_flows_expired_total",
            "Flows that stayed idle for the idle timeout and were forgotten (counted at expiry).",
        )
        .expect("valid metric");
        let flows_active = IntGauge::new(
            "idle_drop_simulator_flows_active",
            "Flows open right now, expired silent flows waiting for their client included.",
        )
        .expect("valid metric");
        let forwarded = IntCounterVec::new(
            Opts::new(
                "idle_drop_simulator_forwarded_bytes_total",
                "Bytes forwarded, by direction (client_to_upstream, upstream_to_client).",
            ),
            &["direction"],
        )
        .expect("valid metric");
        for fate in Fate::ALL {
            flows_ended.with_label_values(&[fate.as_str()]);
        }
        for direction in [
            ByteDirection::ClientToUpstream,
            ByteDirection::UpstreamToClient,
        ] {
            forwarded.with_label_values(&[direction.as_str()]);
        }
        for collector in [
            Box::new(flows_opened.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(flows_ended.clone()),
            Box::new(flows_expired.clone()),
            Box::new(flows_active.clone()),
            Box::new(forwarded.clone()),
        ]
        .into_iter()
        .chain(settings_gauges(settings))
        {
            registry.register(collector).expect("unique metric names");
        }
        SimulatorMetrics {
            registry,
            flows_opened,
            flows_ended,
            flows_expired,
            flows_active,
            forwarded,
        }
    }

    /// Counts a flow's end.
    pub fn ended(&self, fate: Fate) {
        self.flows_ended.with_label_values(&[fate.as_str()]).inc();
    }

    /// The counter of bytes forwarded in one direction.
    pub fn forwarded(&self, direction: ByteDirection) -> IntCounter {
        self.forwarded.with_label_values(&[direction.as_str()])
    }

    /// The Prometheus text exposition of every family.
    pub fn encode(&self) -> String {
        crate::metrics::exposition(&self.registry)
    }
}

/// The gauges that show the simulator's settings (`--idle-timeout`, `--max-flows`, `--mode`),
/// set once.
fn settings_gauges(settings: &Settings) -> [Box<dyn prometheus::core::Collector>; 3] {
    let idle_timeout = Gauge::new(
        "idle_drop_simulator_idle_timeout_seconds",
        "Idle time after which the simulator forgets a flow (--idle-timeout).",
    )
    .expect("valid metric");
    let max_flows = IntGauge::new(
        "idle_drop_simulator_max_flows",
        "Flows the simulator holds at most (--max-flows); more are refused.",
    )
    .expect("valid metric");
    let mode = IntGaugeVec::new(
        Opts::new(
            "idle_drop_simulator_mode_info",
            "What the simulator does to an expired flow (--mode); always 1.",
        ),
        &["mode"],
    )
    .expect("valid metric");

    idle_timeout.set(settings.idle_timeout.as_secs_f64());
    max_flows.set(i64::try_from(settings.max_flows).unwrap_or(i64::MAX));
    mode.with_label_values(&[settings.mode.as_str()]).set(1);
    [Box::new(idle_timeout), Box::new(max_flows), Box::new(mode)]
}

/// Serves `/metrics` (and a one-line `/`) until `shutdown`; open requests get 5 s to finish.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<SimulatorMetrics>,
    shutdown: CancellationToken,
) {
    let handler = move |request| {
        let metrics = metrics.clone();
        async move { route(&metrics, &request) }
    };
    server::serve(listener, None, handler, shutdown).await;
}

fn route<B>(metrics: &SimulatorMetrics, request: &Request<B>) -> Response<Full<Bytes>> {
    match (request.uri().path(), request.method()) {
        ("/metrics", &Method::GET) => server::metrics_response(request.headers(), metrics.encode()),
        ("/", &Method::GET) => text(
            StatusCode::OK,
            "idle_drop_exporter simulate: metrics at /metrics\n",
        ),
        ("/metrics" | "/", _) => text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.\n"),
        _ => text(StatusCode::NOT_FOUND, "Not found.\n"),
    }
}
