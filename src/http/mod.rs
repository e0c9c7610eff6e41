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
//! Served with hyper 1.x, HTTP/1.1; each connection shuts down gracefully with the process.

mod landing;

pub use landing::human;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::daemon::ReloadTrigger;
use crate::metrics::Metrics;
use crate::target::status::StatusBoard;

/// What the handlers need.
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub board: StatusBoard,
    pub reload: ReloadTrigger,
    pub ready: AtomicBool,
}

/// Serves until `shutdown`, then lets open requests finish (up to 5 s).
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: CancellationToken) {
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually EMFILE: log and keep serving rather than die.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(route(&state, request).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after 5s; closing them");
    }
}

async fn route(state: &AppState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    match (request.uri().path(), method) {
        ("/metrics", Method::GET) => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics.encode(),
        ),
        ("/", Method::GET) => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            landing::render(&state.board),
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
        ("/metrics" | "/" | "/-/healthy" | "/-/ready", _) | ("/-/reload", _) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.\n")
        }
        _ => text(StatusCode::NOT_FOUND, "Not found.\n"),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body.to_string())
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
