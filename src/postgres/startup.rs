//! Opening a probe connection with its startup watched, so that a password is never sent in
//! clear text over a connection that is not TLS (unless the target allows it, as libpq's
//! `require_auth=password` would).
//!
//! tokio-postgres answers whatever authentication the server asks for (its `authenticate`
//! matches every request and sends the password for `AuthenticationCleartextPassword`) and
//! offers no hook to refuse one; its `channel_binding=require` would refuse MD5 and plain
//! SCRAM as well, so no server without TLS could be reached. What it does offer is
//! [`Config::connect_raw`] over any stream. So the socket is opened here, as the driver's own
//! `connect` opens it (every host and address in turn, shuffled with `load_balance_hosts=random`,
//! the connect timeout, TCP_NODELAY, TCP_USER_TIMEOUT, keepalives, `target_session_attrs`), and handed over inside a [`Watched`]
//! stream that reads the server's messages until authentication is over. The read that
//! carries a cleartext-password request on a connection that did not turn to TLS fails before
//! the driver sees it: the driver never answers it, so the password never leaves.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::{Host, LoadBalanceHosts, TargetSessionAttrs};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Connection, SimpleQueryMessage};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tcp_state::SocketId;

mod guard;

pub use guard::{AuthGuard, Verdict};

/// A connection opened by [`connect`].
pub type WatchedConnection =
    Connection<Watched, <MakeRustlsConnect as MakeTlsConnect<Watched>>::Stream>;

/// What [`connect`] opens: the driver's client and connection, and the TCP socket under them
/// (`None` over a Unix socket), to read its kernel state later.
pub type Opened = (Client, WatchedConnection, Option<SocketId>);

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The host's name could not be resolved.
    #[error("cannot look up {host}: {error}")]
    Lookup { host: String, error: io::Error },
    /// The TCP (or Unix socket) connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    /// No TLS session can be set up for this host name.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The driver's startup failed (TLS, authentication, the server's refusal).
    #[error(transparent)]
    Driver(#[from] tokio_postgres::Error),
    /// The server asked for the password in clear text over a connection without TLS.
    #[error("the server asked for the password in clear text on a connection without TLS: refused, nothing sent (allow it with allow_cleartext_password: true, or use sslmode: require)")]
    Cleartext,
    /// `target_session_attrs` was not met.
    #[error("{0}")]
    SessionAttrs(&'static str),
}

/// Connects as `config` says (its password included), over `tls` when it negotiates TLS; with
/// `allow_cleartext` false, a cleartext-password request on a connection without TLS is refused
/// before the password is sent. Tries every host, and every address of a host, in turn (as the
/// driver does), and returns the last failure.
pub async fn connect(
    config: &Config,
    tls: MakeRustlsConnect,
    allow_cleartext: bool,
) -> Result<Opened, StartupError> {
    let hosts = config.get_hosts();
    let ports = config.get_ports();
    let random = config.get_load_balance_hosts() == LoadBalanceHosts::Random;
    let mut order: Vec<usize> = (0..hosts.len()).collect();
    if random {
        shuffle(&mut order);
    }
    let mut last = StartupError::Connect(io::Error::new(
        io::ErrorKind::InvalidInput,
        "the DSN names no host",
    ));
    for i in order {
        let host = &hosts[i];
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let hostaddr = config.get_hostaddrs().get(i).copied();
        let targets = match (host, hostaddr) {
            (_, Some(ip)) => vec![Target::Tcp(std::net::SocketAddr::new(ip, port))],
            (Host::Tcp(name), None) => match tokio::net::lookup_host((name.as_str(), port)).await {
                Ok(addrs) => {
                    let mut addrs: Vec<Target> = addrs.map(Target::Tcp).collect();
                    if random {
                        shuffle(&mut addrs);
                    }
                    addrs
                }
                Err(error) => {
                    last = StartupError::Lookup {
                        host: name.clone(),
                        error,
                    };
                    continue;
                }
            },
            (Host::Unix(dir), None) => vec![Target::Unix(dir.join(format!(".s.PGSQL.{port}")))],
        };
        let hostname = match host {
            Host::Tcp(name) => Some(name.as_str()),
            Host::Unix(_) => None,
        };
        for target in targets {
            match connect_once(config, &tls, &target, hostname, allow_cleartext).await {
                Ok(pair) => return Ok(pair),
                Err(e) => last = e,
            }
        }
    }
    Err(last)
}

/// `load_balance_hosts=random`, as the driver does it (Fisher-Yates).
fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = (rand::random::<u64>() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

enum Target {
    Tcp(std::net::SocketAddr),
    Unix(std::path::PathBuf),
}

async fn connect_once(
    config: &Config,
    tls: &MakeRustlsConnect,
    target: &Target,
    hostname: Option<&str>,
    allow_cleartext: bool,
) -> Result<Opened, StartupError> {
    let socket = open(config, target).await.map_err(StartupError::Connect)?;
    let id = match &socket {
        // Only the evidence of an arrival check needs it: a socket the kernel will not name
        // leaves that check without it, never the connection.
        Socket::Tcp(stream) => SocketId::of(stream).ok(),
        Socket::Unix(_) => None,
    };
    let refused = Arc::new(AtomicBool::new(false));
    let stream = Watched {
        inner: socket,
        guard: AuthGuard::new(allow_cleartext),
        refused: refused.clone(),
    };
    let mut tls = tls.clone();
    let tls = MakeTlsConnect::<Watched>::make_tls_connect(&mut tls, hostname.unwrap_or(""))
        .map_err(|e| StartupError::Tls(e.to_string()))?;
    let (client, mut connection) = match config.connect_raw(stream, tls).await {
        Ok(pair) => pair,
        Err(_) if refused.load(Ordering::Acquire) => return Err(StartupError::Cleartext),
        Err(e) => return Err(e.into()),
    };
    if config.get_target_session_attrs() != TargetSessionAttrs::Any {
        let read_only = tokio::select! {
            rows = client.simple_query("SHOW transaction_read_only") => rows?,
            ended = &mut connection => {
                ended?;
                return Err(StartupError::SessionAttrs("the server closed the connection"));
            }
        };
        let read_only = read_only.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(|v| v == "on"),
            _ => None,
        });
        match (config.get_target_session_attrs(), read_only) {
            (TargetSessionAttrs::ReadWrite, Some(true)) => {
                return Err(StartupError::SessionAttrs("database does not allow writes"))
            }
            (TargetSessionAttrs::ReadOnly, Some(false)) => {
                return Err(StartupError::SessionAttrs("database is not read only"))
            }
            _ => {}
        }
    }
    Ok((client, connection, id))
}

/// The socket, set up as tokio-postgres sets up its own (`connect_socket.rs`).
async fn open(config: &Config, target: &Target) -> io::Result<Socket> {
    let connect = async {
        match target {
            Target::Unix(path) => UnixStream::connect(path).await.map(Socket::Unix),
            Target::Tcp(addr) => TcpStream::connect(addr).await.map(Socket::Tcp),
        }
    };
    let socket = match config.get_connect_timeout() {
        Some(limit) => tokio::time::timeout(*limit, connect)
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out",
                ))
            })?,
        None => connect.await?,
    };
    if let Socket::Tcp(stream) = &socket {
        stream.set_nodelay(true)?;
        let socket = SockRef::from(stream);
        if let Some(timeout) = config.get_tcp_user_timeout() {
            socket.set_tcp_user_timeout(Some(*timeout))?;
        }
        if config.get_keepalives() {
            socket.set_tcp_keepalive(&keepalive(config))?;
        }
    }
    Ok(socket)
}

fn keepalive(config: &Config) -> TcpKeepalive {
    let mut keepalive = TcpKeepalive::new().with_time(config.get_keepalives_idle());
    if let Some(interval) = config.get_keepalives_interval() {
        keepalive = keepalive.with_interval(interval);
    }
    if let Some(retries) = config.get_keepalives_retries() {
        keepalive = keepalive.with_retries(retries);
    }
    keepalive
}

/// A TCP or Unix-socket stream.
pub enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A socket whose startup an [`AuthGuard`] watches; see the module doc.
pub struct Watched {
    inner: Socket,
    guard: AuthGuard,
    /// Set when the guard refused: how [`connect`] tells its refusal from the driver's errors.
    refused: Arc<AtomicBool>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = match &mut this.inner {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = read {
            if this.guard.read(&buf.filled()[before..]) == Verdict::Refuse {
                this.refused.store(true, Ordering::Release);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "cleartext password request refused",
                )));
            }
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = match &mut this.inner {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, data),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, data),
        };
        if let Poll::Ready(Ok(n)) = written {
            this.guard.wrote(&data[..n]);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
