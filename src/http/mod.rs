//! The HTTP endpoint, in the layout Prometheus' own exporters use:
//!
//! | path | method | what |
//! |---|---|---|
//! | `/metrics` | GET, HEAD | Prometheus text exposition (gzip when the scraper accepts it) |
//! | `/` | GET, HEAD | landing page: targets, brackets, recommendations (no secrets) |
//! | `/-/healthy` | GET, HEAD | 200 while the process serves |
//! | `/-/ready` | GET, HEAD | 200 once the configuration is loaded and targets are started |
//! | `/-/reload` | POST, PUT | reload the configuration file; 200, or 500 with the reason |
//!
//! Served by [`server`] (hyper 1.x, HTTP/1.1; each connection shuts down gracefully with the
//! process), which the simulator's `/metrics` shares. With `--web.config.file` ([`web_config`]),
//! connections are TLS and every path but `/-/healthy` and `/-/ready` needs basic auth (those
//! two answer probes that carry no credentials, and say nothing else). HEAD answers as GET
//! without the body (hyper leaves it out).
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
use tokio_util::sync::CancellationToken;

use crate::listener::Listeners;
use crate::metrics::Metrics;
use crate::probe::status::StatusBoard;
use crate::reload::ReloadTrigger;
use server::{respond, text};

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

/// Serves on every listener until `shutdown`, then lets open requests finish (up to 5 s).
pub async fn serve(listeners: Listeners, state: Arc<AppState>, shutdown: CancellationToken) {
    let web = state.web.clone();
    let handler = move |request| {
        let state = state.clone();
        async move { route(&state, request).await }
    };
    let mut servers = tokio::task::JoinSet::new();
    for listener in listeners.0 {
        let server = server::serve(listener, web.clone(), handler.clone(), shutdown.clone());
        servers.spawn(server);
    }
    while servers.join_next().await.is_some() {}
}

async fn route(state: &AppState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path();
    if path == state.telemetry_path {
        return match method {
            Method::GET | Method::HEAD => {
                server::metrics_response(request.headers(), state.metrics.encode())
            }
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.\n"),
        };
    }
    match (path, method) {
        ("/", Method::GET | Method::HEAD) => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            landing::render(&state.board, &state.files, &state.telemetry_path),
        ),
        ("/-/healthy", Method::GET | Method::HEAD) => text(StatusCode::OK, "Healthy.\n"),
        ("/-/ready", Method::GET | Method::HEAD) => {
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
