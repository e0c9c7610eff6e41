//! The one HTTP/1.1 server both endpoints run on (the exporter's, and the simulator's
//! `/metrics`), each with its own handler: the accept loop, the per-connection limits, the
//! web configuration's TLS and basic auth when one is given, and the graceful shutdown.
//!
//! Limits: a client has 10 s to finish the TLS handshake and 10 s to send a request's headers;
//! at shutdown, open requests get 5 s to finish before their connections are closed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{self, GracefulShutdown};
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::web_config::{Access, Watcher, WebConfig};

/// How long a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client has to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open requests may take to finish once the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The content type of the Prometheus text exposition.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves connections accepted on `listener` with `handler` until `shutdown`, then lets open
/// requests finish (up to 5 s).
///
/// With `web` (`--web.config.file`), each connection is served with the web configuration in
/// force when it opened: TLS if it says so, basic auth in front of every request, and its extra
/// headers on every response, as exporter-toolkit does. While no valid one can be read,
/// connections are closed unanswered rather than served open.
pub async fn serve<H, F>(
    listener: TcpListener,
    web: Option<Arc<Watcher>>,
    handler: H,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    loop {
        let Some((stream, peer)) = crate::listener::accept(&listener, &shutdown).await else {
            break;
        };
        let web = web.clone();
        let handler = handler.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // The web config is read per connection (see web_config), off the accept loop.
            let web = match &web {
                None => None,
                Some(w) => match w.current() {
                    Some(web) => Some(web),
                    None => return, // no valid web config yet: refuse rather than serve open
                },
            };
            match web.as_ref().and_then(|w| w.tls.clone()) {
                None => connection(TokioIo::new(stream), web, handler, watcher, peer).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => {
                            connection(TokioIo::new(tls), web, handler, watcher, peer).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after 5s; closing them");
    }
}

async fn connection<I, H, F>(
    io: TokioIo<I>,
    web: Option<Arc<WebConfig>>,
    handler: H,
    watcher: graceful::Watcher,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let service = service_fn(move |request| {
        let web = web.clone();
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(guarded(web.as_deref(), &handler, request, peer).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(io, service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// Basic auth (when configured) in front of the handler, and the configured extra headers on
/// every response.
async fn guarded<H, F>(
    web: Option<&WebConfig>,
    handler: &H,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>>
where
    H: Fn(Request<Incoming>) -> F,
    F: Future<Output = Response<Full<Bytes>>>,
{
    let Some(web) = web else {
        return handler(request).await;
    };
    let mut response = match web
        .authorize(request.headers().get(AUTHORIZATION), peer.ip())
        .await
    {
        Access::Allowed => handler(request).await,
        Access::Denied => {
            let mut response = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            response
        }
        Access::Busy => {
            let mut response = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many password checks under way; retry\n",
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    };
    for (name, value) in &web.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body.to_string())
}

/// A response with `body` as `content_type`.
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The Prometheus text exposition of every family in `registry` (served as
/// [`METRICS_CONTENT_TYPE`]).
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
