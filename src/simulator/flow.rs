//! One flow through the simulator: connect upstream, copy bytes both ways while remembering when
//! the last byte passed, and when no byte has passed in either direction for the idle timeout,
//! forget the flow the way the configured middlebox would (see [`Mode`]).
//!
//! The copying ([`relay`]) is generic over the streams so its expiry logic can be tested with
//! in-memory pipes and paused time; what happens to the sockets afterwards ([`expire`]) needs
//! real TCP (FIN, RST) and is tested over loopback.
//!
//! Memory per flow is bounded: one fixed buffer per direction, nothing queued.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::labels::{ByteDirection, Fate};
use super::metrics::SimulatorMetrics;
use super::{Mode, Settings};

/// Bytes read at once per direction (the only buffer a flow has).
const BUFFER: usize = 16 * 1024;

/// After a FIN (mode `fin`), how long the simulator waits for both peers to close their side
/// before dropping the sockets anyway.
const FIN_LINGER: Duration = Duration::from_secs(5);

/// One end of the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

/// When the last byte passed, shared by both directions of one flow (an atomic so the flow's
/// future stays `Send`). Uses tokio's clock, so tests can pause time.
pub struct Activity {
    start: Instant,
    last_nanos: AtomicU64,
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_nanos: AtomicU64::new(0),
        }
    }

    /// A byte passed now.
    pub fn touch(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_nanos.fetch_max(nanos, Ordering::Relaxed);
    }

    /// When the last byte passed (the flow's start if none has).
    pub fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed))
    }

    /// Resolves once no byte has passed for `timeout`, with how long the flow had been idle then
    /// (equal to `timeout` unless the task was late to wake).
    pub async fn expired(&self, timeout: Duration) -> Duration {
        loop {
            // Flags bound the timeout; a deadline past the clock's range is never reached.
            let Some(deadline) = self.last().checked_add(timeout) else {
                return std::future::pending().await;
            };
            let now = Instant::now();
            if now >= deadline {
                return now - self.last();
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

/// Bytes forwarded by one flow, each way.
#[derive(Default)]
pub struct Traffic {
    pub client_to_upstream: AtomicU64,
    pub upstream_to_client: AtomicU64,
}

/// Why [`relay`] stopped copying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relayed {
    /// No byte either way for the idle timeout; `idle` is how long it had been at the check.
    Expired { idle: Duration },
    /// One side closed or failed (the first one to do so).
    ClosedBy(Side),
    /// The simulator is stopping.
    Shutdown,
}

/// How one direction's copy stopped.
enum PumpEnd {
    /// The reader sent a FIN; it was passed on (the writer was shut down).
    Eof,
    ReadFailed,
    WriteFailed,
}

/// Copies `reader` to `writer` until EOF or an error, touching `activity` and counting bytes.
async fn pump<R, W>(
    mut reader: R,
    mut writer: W,
    activity: &Activity,
    total: &AtomicU64,
    metric: &prometheus::IntCounter,
) -> PumpEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; BUFFER];
    loop {
        let n = match reader.read(&mut buffer).await {
            Ok(0) => {
                // Half-close: pass the FIN on and let the other direction finish.
                let _ = writer.shutdown().await;
                return PumpEnd::Eof;
            }
            Ok(n) => n,
            Err(_) => return PumpEnd::ReadFailed,
        };
        activity.touch();
        if writer.write_all(&buffer[..n]).await.is_err() {
            return PumpEnd::WriteFailed;
        }
        activity.touch();
        total.fetch_add(n as u64, Ordering::Relaxed);
        metric.inc_by(n as u64);
    }
}

/// Copies bytes both ways until the flow has been idle (no byte either way) for `idle_timeout`,
/// one side closes, or `shutdown`. A half-closed flow (one side sent a FIN) keeps forwarding
/// the other way; if it then idles for `idle_timeout` too it ends as closed by the side that
/// closed first, never as expired.
pub async fn relay<C, U>(
    client: &mut C,
    upstream: &mut U,
    idle_timeout: Duration,
    traffic: &Traffic,
    metrics: &SimulatorMetrics,
    shutdown: &CancellationToken,
) -> Relayed
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let (client_reader, client_writer) = tokio::io::split(client);
    let (upstream_reader, upstream_writer) = tokio::io::split(upstream);
    let to_upstream = metrics.forwarded(ByteDirection::ClientToUpstream);
    let to_client = metrics.forwarded(ByteDirection::UpstreamToClient);
    let mut c2u = std::pin::pin!(pump(
        client_reader,
        upstream_writer,
        &activity,
        &traffic.client_to_upstream,
        &to_upstream,
    ));
    let mut u2c = std::pin::pin!(pump(
        upstream_reader,
        client_writer,
        &activity,
        &traffic.upstream_to_client,
        &to_client,
    ));
    let mut c2u_done = false;
    let mut u2c_done = false;
    let mut first_closed: Option<Side> = None;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Relayed::Shutdown,
            end = &mut c2u, if !c2u_done => {
                c2u_done = true;
                match end {
                    PumpEnd::Eof => { first_closed.get_or_insert(Side::Client); }
                    PumpEnd::ReadFailed => return Relayed::ClosedBy(*first_closed.get_or_insert(Side::Client)),
                    PumpEnd::WriteFailed => return Relayed::ClosedBy(*first_closed.get_or_insert(Side::Upstream)),
                }
            }
            end = &mut u2c, if !u2c_done => {
                u2c_done = true;
                match end {
                    PumpEnd::Eof => { first_closed.get_or_insert(Side::Upstream); }
                    PumpEnd::ReadFailed => return Relayed::ClosedBy(*first_closed.get_or_insert(Side::Upstream)),
                    PumpEnd::WriteFailed => return Relayed::ClosedBy(*first_closed.get_or_insert(Side::Client)),
                }
            }
            idle = activity.expired(idle_timeout) => {
                return match first_closed {
                    Some(side) => Relayed::ClosedBy(side),
                    None => Relayed::Expired { idle },
                };
            }
        }
        if c2u_done && u2c_done {
            return Relayed::ClosedBy(first_closed.unwrap_or(Side::Client));
        }
    }
}

/// Applies the mode to an expired flow and returns once the flow is over.
///
/// - `silent`: nothing is forwarded any more; whatever either side sends is read and thrown
///   away. The upstream session stays open (a ghost, as on a real server) until the client
///   closes, then it is closed too.
/// - `reset`: the upstream is closed at once (FIN): the flow is forgotten. The client hears
///   nothing until it sends its next packet (data or FIN), which is answered with an RST. Like a
///   NAT gateway, the RST goes only to a side that sends; since the upstream is already closed,
///   a server that would have spoken first cannot warn the client.
/// - `fin`: both sides get a FIN at once; the simulator then waits up to 5 s for them to close.
pub async fn expire(
    mode: Mode,
    client: TcpStream,
    upstream: TcpStream,
    shutdown: &CancellationToken,
) -> Fate {
    match mode {
        Mode::Silent => {
            silent(client, upstream, shutdown).await;
            Fate::ExpiredSilent
        }
        Mode::Reset => {
            drop(upstream);
            reset_on_next_packet(client, shutdown).await;
            Fate::ExpiredReset
        }
        Mode::Fin => {
            fin_both(client, upstream, shutdown).await;
            Fate::ExpiredFin
        }
    }
}

async fn silent(mut client: TcpStream, upstream: TcpStream, shutdown: &CancellationToken) {
    let mut upstream = Some(upstream);
    let mut client_buffer = vec![0u8; BUFFER];
    let mut upstream_buffer = vec![0u8; BUFFER];
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            read = client.read(&mut client_buffer) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // discarded: the client waits for an answer that never comes
            },
            read = async { upstream.as_mut().expect("guarded").read(&mut upstream_buffer).await },
                if upstream.is_some() => match read {
                // The server ended the ghost (e.g. tcp_keepalives, idle_session_timeout): a
                // real middlebox would drop its FIN too, so the client is not told.
                Ok(0) | Err(_) => upstream = None,
                Ok(_) => {}
            },
        }
    }
}

async fn reset_on_next_packet(mut client: TcpStream, shutdown: &CancellationToken) {
    let mut buffer = [0u8; 512];
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = client.read(&mut buffer) => {
            // Data, a FIN or an error: whatever arrives gets an RST. SO_LINGER 0 makes close()
            // send one (without blocking the thread, unlike a non-zero linger).
            if let Err(e) = client.set_zero_linger() {
                tracing::warn!(error = %e, "cannot set SO_LINGER 0; the client gets a FIN");
            }
        }
    }
    drop(client);
}

async fn fin_both(mut client: TcpStream, mut upstream: TcpStream, shutdown: &CancellationToken) {
    let _ = client.shutdown().await;
    let _ = upstream.shutdown().await;
    // Wait for both peers to close their side (discarding anything they still send), bounded.
    let drain = async {
        let mut c_buffer = vec![0u8; BUFFER];
        let mut u_buffer = vec![0u8; BUFFER];
        let client_done =
            async { while matches!(client.read(&mut c_buffer).await, Ok(n) if n > 0) {} };
        let upstream_done =
            async { while matches!(upstream.read(&mut u_buffer).await, Ok(n) if n > 0) {} };
        tokio::join!(client_done, upstream_done);
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::timeout(FIN_LINGER, drain) => {}
    }
}

/// Everything a flow needs from the accept loop.
pub struct Context {
    pub id: u64,
    pub client_address: SocketAddr,
    pub settings: Arc<Settings>,
    pub metrics: Arc<SimulatorMetrics>,
    pub shutdown: CancellationToken,
    /// Holds one of `--max-flows` until the flow ends.
    pub permit: OwnedSemaphorePermit,
}

/// Runs one flow from accept to end and logs its end line.
pub async fn run(context: Context, mut client: TcpStream) {
    let Context {
        id,
        client_address,
        settings,
        metrics,
        shutdown,
        permit,
    } = context;
    let opened = Instant::now();
    metrics.flows_active.inc();
    let traffic = Traffic::default();
    let mut idle_at_expiry = None;

    let fate = match connect(&settings).await {
        Err(e) => {
            tracing::warn!(flow = id, client = %client_address, upstream = %settings.upstream, error = %e, "upstream connect failed");
            Fate::UpstreamConnectFailed
        }
        Ok(mut upstream) => {
            let _ = client.set_nodelay(true);
            match relay(
                &mut client,
                &mut upstream,
                settings.idle_timeout,
                &traffic,
                &metrics,
                &shutdown,
            )
            .await
            {
                Relayed::ClosedBy(Side::Client) => Fate::ClosedByClient,
                Relayed::ClosedBy(Side::Upstream) => Fate::ClosedByUpstream,
                Relayed::Shutdown => Fate::Shutdown,
                Relayed::Expired { idle } => {
                    idle_at_expiry = Some(idle);
                    metrics.flows_expired.inc();
                    tracing::debug!(flow = id, client = %client_address, idle_seconds = idle.as_secs_f64(), mode = settings.mode.as_str(), "flow expired");
                    expire(settings.mode, client, upstream, &shutdown).await
                }
            }
        }
    };
    // Graceful shutdown: whatever state the flow was in, its sockets are dropped (closed) here.
    metrics.ended(fate);
    metrics.flows_active.dec();
    drop(permit);
    tracing::info!(
        flow = id,
        client = %client_address,
        fate = fate.as_str(),
        client_to_upstream_bytes = traffic.client_to_upstream.load(Ordering::Relaxed),
        upstream_to_client_bytes = traffic.upstream_to_client.load(Ordering::Relaxed),
        lifetime_seconds = millis(opened.elapsed()),
        idle_at_expiry_seconds = idle_at_expiry.map(millis),
        "flow ended"
    );
}

/// Seconds, rounded to the millisecond (for log fields).
fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

async fn connect(settings: &Settings) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(
        settings.connect_timeout,
        TcpStream::connect(settings.upstream.as_str()),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "upstream connect timed out"))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
