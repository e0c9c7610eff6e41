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
use hyper::header::{
    HeaderMap, HeaderValue, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE,
    RETRY_AFTER, VARY, WWW_AUTHENTICATE,
};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{self, GracefulShutdown};
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

/// Paths answered without basic auth: the orchestrator's liveness and readiness probes, which
/// carry no credentials (a Kubernetes httpGet probe cannot), and whose answers say nothing but
/// "Healthy." or "(Not) ready.". TLS still applies: they are served on the same connections.
pub const OPEN_PATHS: [&str; 2] = ["/-/healthy", "/-/ready"];

/// The content type of the Prometheus text exposition.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves connections accepted on `listener` with `handler` until `shutdown`, then lets open
/// requests finish (up to 5 s).
///
/// With `web` (`--web.config.file`), each connection is served with the web configuration in
/// force when it opened: TLS if it says so, basic auth in front of every request but the
/// [`OPEN_PATHS`], and its extra
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
                Some(w) => match w.clone().current().await {
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
    let open = OPEN_PATHS.contains(&request.uri().path());
    let access = if open {
        Access::Allowed
    } else {
        web.authorize(request.headers().get(AUTHORIZATION), peer.ip())
            .await
    };
    let mut response = match access {
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

/// The text exposition as the scraper asked for it: gzip-compressed when its `Accept-Encoding`
/// allows gzip (Prometheus asks on every scrape; at 1,000 targets the text is ~6.5 MB), as is
/// otherwise; `Vary: Accept-Encoding` either way, for caches in between.
pub fn metrics_response(request: &HeaderMap, body: String) -> Response<Full<Bytes>> {
    let mut response = if accepts_gzip(request) {
        let mut response = Response::new(Full::new(Bytes::from(gzip(body.as_bytes()))));
        response
            .headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    } else {
        Response::new(Full::new(Bytes::from(body)))
    };
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
    headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    response
}

/// The compression level: flate2's fast level, 1 (docs/benchmarks.md, "Compressed scrapes":
/// the 6.5 MB exposition of 1,000 targets became 0.37 MB in 4.4 ms; the default level 6 made
/// 0.29 MB in 41 ms).
const GZIP_LEVEL: u32 = 1;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 8),
        flate2::Compression::new(GZIP_LEVEL),
    );
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .expect("compressing into a Vec cannot fail")
}

/// Whether `Accept-Encoding` allows gzip (RFC 9110 12.5.3): `gzip` or `x-gzip`, or `*` when
/// gzip is not named, with a weight above 0.
fn accepts_gzip(request: &HeaderMap) -> bool {
    let mut star = false;
    for value in request.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let weight = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
                .map(|q| q.trim().parse::<f32>().unwrap_or(0.0))
                .next()
                .unwrap_or(1.0);
            match coding.as_str() {
                "gzip" | "x-gzip" => return weight > 0.0,
                "*" => star = weight > 0.0,
                _ => {}
            }
        }
    }
    star
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn gzip_is_chosen_only_when_the_client_accepts_it() {
        for accepted in [
            "gzip",
            "GZIP",
            "x-gzip",
            "deflate, gzip;q=0.5",
            "identity;q=0.5, *",
            // Prometheus 2.x and 3.x
            "gzip",
            "br, gzip ;q=1.0",
        ] {
            assert!(accepts_gzip(&headers(&[accepted])), "{accepted}");
        }
        assert!(accepts_gzip(&headers(&["identity", "gzip"])), "two headers");
        for refused in [
            "",
            "identity",
            "deflate, br",
            "gzip;q=0",
            "gzip; q=0.0, *",
            "*;q=0",
            "gzip;q=nonsense",
        ] {
            assert!(!accepts_gzip(&headers(&[refused])), "{refused}");
        }
        assert!(!accepts_gzip(&HeaderMap::new()), "no header");
    }

    async fn body(response: Response<Full<Bytes>>) -> Vec<u8> {
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn the_exposition_is_compressed_when_asked_and_decodes_to_the_same_text() {
        let text: String = (0..5000)
            .map(|i| {
                format!("idle_drop_probe_deaths_total{{target=\"db-{i}\",kind=\"timeout\"}} {i}\n")
            })
            .collect();
        let plain = metrics_response(&HeaderMap::new(), text.clone());
        assert_eq!(plain.headers().get(CONTENT_ENCODING), None);
        assert_eq!(plain.headers()[VARY], "Accept-Encoding");
        assert_eq!(plain.headers()[CONTENT_TYPE], METRICS_CONTENT_TYPE);
        assert_eq!(body(plain).await, text.as_bytes());

        let compressed = metrics_response(&headers(&["gzip"]), text.clone());
        assert_eq!(compressed.headers()[CONTENT_ENCODING], "gzip");
        assert_eq!(compressed.headers()[VARY], "Accept-Encoding");
        assert_eq!(compressed.headers()[CONTENT_TYPE], METRICS_CONTENT_TYPE);
        let bytes = body(compressed).await;
        assert!(
            bytes.len() * 5 < text.len(),
            "{} of {}",
            bytes.len(),
            text.len()
        );
        let mut decoded = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut decoded)
            .unwrap();
        assert_eq!(decoded, text);
    }
}
