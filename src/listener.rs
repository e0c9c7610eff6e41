//! Listening: the addresses the exporter's endpoint takes ([`ListenAddress`], the forms
//! Prometheus users type), and the accept step every server here shares (the HTTP endpoint,
//! the simulator's proxy and its metrics endpoint): stop on shutdown, and survive accept errors
//! (usually EMFILE under load) with a short pause instead of dying or spinning.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The next connection, or `None` once `shutdown` is cancelled.
pub async fn accept(
    listener: &TcpListener,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(pair) => return Some(pair),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Where to listen, as Prometheus' exporters take `--web.listen-address` (Go's `net.Listen`):
/// `:PORT` (every interface), `HOST:PORT`, `IP:PORT` or `[IPv6]:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddress {
    /// `:PORT`: every interface, IPv6 and IPv4 (one dual-stack socket; `0.0.0.0` on a host
    /// without IPv6).
    AnyHost(u16),
    /// `IP:PORT` or `[IPv6]:PORT`.
    Ip(SocketAddr),
    /// `HOST:PORT`, resolved when bound; like Go, the first IPv4 address it resolves to, else
    /// the first IPv6 one.
    Host(String, u16),
}

impl ListenAddress {
    /// Parses the forms above; the refusal says which forms are accepted.
    pub fn parse(text: &str) -> Result<ListenAddress, String> {
        let refused = |why: &str| {
            format!("`{text}` {why}: use :PORT, HOST:PORT, IP:PORT or [IPv6]:PORT (e.g. :10187)")
        };
        if let Ok(address) = text.parse::<SocketAddr>() {
            return Ok(ListenAddress::Ip(address));
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(refused("has no port"));
        };
        // u16's parser takes a leading '+'; a port is digits only.
        let port = match port.parse::<u16>() {
            Ok(number) if port.bytes().all(|b| b.is_ascii_digit()) => number,
            _ => return Err(refused("has no port number (0-65535) after the last colon")),
        };
        if host.is_empty() {
            return Ok(ListenAddress::AnyHost(port));
        }
        if host.contains([':', '[', ']']) {
            return Err(refused(
                "is not an address (an IPv6 address goes in brackets)",
            ));
        }
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if host.len() > 253 || !host.trim_end_matches('.').split('.').all(label_ok) {
            return Err(refused("does not name a host"));
        }
        Ok(ListenAddress::Host(host.to_string(), port))
    }

    /// A listener on this address.
    pub async fn bind(&self) -> std::io::Result<TcpListener> {
        match self {
            ListenAddress::Ip(address) => TcpListener::bind(address).await,
            ListenAddress::AnyHost(port) => bind_any(*port),
            ListenAddress::Host(host, port) => {
                let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
                    .await?
                    .collect();
                let chosen = resolved
                    .iter()
                    .find(|a| a.is_ipv4())
                    .or_else(|| resolved.first())
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!("{host} resolves to no address"),
                        )
                    })?;
                TcpListener::bind(chosen).await
            }
        }
    }
}

impl ListenAddress {
    /// The port it names.
    pub fn port(&self) -> u16 {
        match self {
            ListenAddress::AnyHost(port) | ListenAddress::Host(_, port) => *port,
            ListenAddress::Ip(address) => address.port(),
        }
    }
}

/// The bound listeners the exporter's endpoint serves on (one per `--web.listen-address`);
/// from one listener too, as the tests bind port 0.
pub struct Listeners(pub Vec<TcpListener>);

impl From<TcpListener> for Listeners {
    fn from(listener: TcpListener) -> Listeners {
        Listeners(vec![listener])
    }
}

impl From<Vec<TcpListener>> for Listeners {
    fn from(listeners: Vec<TcpListener>) -> Listeners {
        Listeners(listeners)
    }
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddress::AnyHost(port) => write!(f, ":{port}"),
            ListenAddress::Ip(address) => write!(f, "{address}"),
            ListenAddress::Host(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

/// `:PORT`: one socket for IPv6 and IPv4 (`IPV6_V6ONLY` off, whatever the host's default), as
/// Go listens for `:PORT`; `0.0.0.0` when the host has no IPv6 at all.
fn bind_any(port: u16) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let (socket, address) = match Socket::new(Domain::IPV6, Type::STREAM, None) {
        Ok(socket) => {
            socket.set_only_v6(false)?;
            (socket, SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))
        }
        // No IPv6 socket at all (a kernel without IPv6: EAFNOSUPPORT); any other reason
        // would stop an IPv4 socket as well, and is reported from there.
        Err(_) => (
            Socket::new(Domain::IPV4, Type::STREAM, None)?,
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        ),
    };
    // As tokio's and Go's listeners do: a restart can bind while old connections linger.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_prometheus_users_type_is_read() {
        let ok = |text: &str| ListenAddress::parse(text).unwrap();
        assert_eq!(ok(":10187"), ListenAddress::AnyHost(10187));
        assert_eq!(
            ok("0.0.0.0:10187"),
            ListenAddress::Ip("0.0.0.0:10187".parse().unwrap())
        );
        assert_eq!(
            ok("[::1]:10187"),
            ListenAddress::Ip("[::1]:10187".parse().unwrap())
        );
        assert_eq!(ok("[::]:0"), ListenAddress::Ip("[::]:0".parse().unwrap()));
        assert_eq!(
            ok("localhost:10187"),
            ListenAddress::Host("localhost".into(), 10187)
        );
        assert_eq!(
            ok("exporter-1.pods.svc.:80"),
            ListenAddress::Host("exporter-1.pods.svc.".into(), 80)
        );
        for text in [":10187", "[::1]:10187", "localhost:10187", "10.0.0.1:9"] {
            assert_eq!(ok(text).to_string(), text, "shown as typed");
        }
        assert_eq!(ok("localhost:10187").port(), 10187);
    }

    #[test]
    fn anything_else_is_refused_naming_the_forms() {
        for text in [
            "",
            "10187",
            "localhost",
            ":",
            ":+80",
            ":65536",
            "host:port",
            "::1:10187",
            "[::1:10187",
            "[fe80::1%eth0]:80",
            "a b:80",
            "-host:80",
            "under_score:80",
            "ünï:80",
        ] {
            let e = ListenAddress::parse(text).unwrap_err();
            assert!(
                e.contains(":PORT, HOST:PORT, IP:PORT or [IPv6]:PORT"),
                "{text}: {e}"
            );
            assert!(e.starts_with(&format!("`{text}`")), "{e}");
        }
    }

    /// Whether this machine can bind IPv6 loopback (containers may have no IPv6).
    fn has_ipv6() -> bool {
        std::net::TcpListener::bind("[::1]:0").is_ok()
    }

    #[tokio::test]
    async fn any_host_listens_on_ipv4_and_ipv6_with_one_socket() {
        let listener = ListenAddress::AnyHost(0).bind().await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepting = tokio::spawn(async move {
            for _ in 0..2 {
                listener.accept().await.unwrap();
            }
        });
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        if has_ipv6() {
            tokio::net::TcpStream::connect(("::1", port)).await.unwrap();
        } else {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
        }
        accepting.await.unwrap();
    }

    #[tokio::test]
    async fn a_host_name_binds_its_first_ipv4_address_as_go_does() {
        let listener = ListenAddress::Host("localhost".into(), 0)
            .bind()
            .await
            .unwrap();
        assert!(listener.local_addr().unwrap().ip().is_loopback());
        // (localhost comes from /etc/hosts: no name server is asked.)
        assert!(listener.local_addr().unwrap().is_ipv4());
    }
}
