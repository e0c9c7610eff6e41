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
//! With `--web.config.file` ([`web_config`]), connections are TLS and every path needs basic
//! auth, as in Prometheus' exporter-toolkit.

mod landing;
pub mod web_config;

pub use landing::human;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::daemon::ReloadTrigger;
use crate::metrics::Metrics;
use crate::probe::status::StatusBoard;
use web_config::{Access, WebConfig};

/// What the handlers need.
pub struct AppState {
    pub metrics: Arc<Metrics>,
    pub board: StatusBoard,
    pub reload: ReloadTrigger,
    pub ready: AtomicBool,
    /// TLS and basic auth (`--web.config.file`); `None`: plain HTTP, no auth.
    pub web: Option<web_config::Watcher>,
}

/// How long a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown`, then lets open requests finish (up to 5 s).
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: CancellationToken) {
    let graceful = GracefulShutdown::new();
    loop {
        let Some((stream, peer)) = crate::listener::accept(&listener, &shutdown).await else {
            break;
        };
        let state = state.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // The web config is read per connection (see web_config), off the accept loop.
            let web = match &state.web {
                None => None,
                Some(w) => match w.current() {
                    Some(web) => Some(web),
                    None => return, // no valid web config yet: refuse rather than serve open
                },
            };
            match web.as_ref().and_then(|w| w.tls.clone()) {
                None => connection(TokioIo::new(stream), state, web, watcher, peer).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => {
                            connection(TokioIo::new(tls), state, web, watcher, peer).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
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

async fn connection<I>(
    io: TokioIo<I>,
    state: Arc<AppState>,
    web: Option<Arc<WebConfig>>,
    watcher: hyper_util::server::graceful::Watcher,
    peer: std::net::SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let state = state.clone();
        let web = web.clone();
        async move { Ok::<_, Infallible>(guarded(&state, web.as_deref(), request, peer).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(io, service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// Basic auth (when configured) in front of every path, and the configured extra headers on
/// every response, as exporter-toolkit does.
async fn guarded(
    state: &AppState,
    web: Option<&WebConfig>,
    request: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Response<Full<Bytes>> {
    let Some(web) = web else {
        return route(state, request).await;
    };
    let mut response = match web
        .authorize(request.headers().get(AUTHORIZATION), peer.ip())
        .await
    {
        Access::Allowed => route(state, request).await,
        Access::Denied => {
            let mut response = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            response
        }
    };
    for (name, value) in &web.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
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
