//! The HTTP endpoint, in the layout Prometheus' own exporters use:
//!
//! | path | method | what |
//! |---|---|---|
//! | `/metrics` | GET | Prometheus text exposition |
//! | `/` | GET | landing page: targets, brackets, recommendations (no secrets) |
//! | `/-/healthy` | GET | 200 while the process serves |
//! | `/-/ready` | GET | 200 once the configuration is loaded and targets are started |
//! | `/-/reload` | POST, PUT | reload the configuration file; 200, or 500 with the reason |
//!
//! Served by [`server`] (hyper 1.x, HTTP/1.1; each connection shuts down gracefully with the
//! process), which the simulator's `/metrics` shares. With `--web.config.file` ([`web_config`]),
//! connections are TLS and every path needs basic auth, as in Prometheus' exporter-toolkit.
//! This file holds the routes; `landing.rs` renders `/`.

mod landing;
pub mod server;
pub mod web_config;

pub use landing::{TargetFileBoard, TargetFileRow};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::probe::status::StatusBoard;
use crate::reload::ReloadTrigger;
use server::{respond, text, METRICS_CONTENT_TYPE};

/// What the handlers need.
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub board: StatusBoard,
    /// The target files and whether each is in force, for the status page.
    pub files: TargetFileBoard,
    pub reload: ReloadTrigger,
    pub ready: AtomicBool,
    /// Where metrics are served (`--web.telemetry-path`).
    pub telemetry_path: String,
    /// TLS and basic auth (`--web.config.file`); `None`: plain HTTP, no auth.
    pub web: Option<Arc<web_config::Watcher>>,
}

/// Serves until `shutdown`, then lets open requests finish (up to 5 s).
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: CancellationToken) {
    let web = state.web.clone();
    let handler = move |request| {
        let state = state.clone();
        async move { route(&state, request).await }
    };
    server::serve(listener, web, handler, shutdown).await;
}

async fn route(state: &AppState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path();
    if path == state.telemetry_path {
        return match method {
            Method::GET => respond(StatusCode::OK, METRICS_CONTENT_TYPE, state.metrics.encode()),
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.\n"),
        };
    }
    match (path, method) {
        ("/", Method::GET) => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            landing::render(&state.board, &state.files, &state.telemetry_path),
        ),
        ("/-/healthy", Method::GET) => text(StatusCode::OK, "Healthy.\n"),
        ("/-/ready", Method::GET) => {
            if state.ready.load(Ordering::Relaxed) {
                text(StatusCode::OK, "Ready.\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "Not ready.\n")
            }
        }
        ("/-/reload", Method::POST | Method::PUT) => match state.reload.reload().await {
            Ok(()) => text(StatusCode::OK, "Configuration reloaded.\n"),
            Err(reason) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("failed to reload config: {reason}\n"),
            ),
        },
        ("/" | "/-/healthy" | "/-/ready", _) | ("/-/reload", _) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.\n")
        }
        _ => text(StatusCode::NOT_FOUND, "Not found.\n"),
    }
}
