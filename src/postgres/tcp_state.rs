//! What the client's kernel says about a probe connection's TCP socket: how many bytes it sent
//! that the server's host has not acknowledged, how many times in a row the retransmission
//! timer fired, and the retransmission timeout. Part
//! of the evidence that a query sent on a silently dropped flow never arrived (see
//! [`super::arrival`]).
//!
//! These are the kernel's fields `TCP_INFO` reports (`tcpi_retransmits` is `icsk_retransmits`,
//! `tcpi_rto` is `icsk_rto`), read from `/proc/self/net/tcp` (or `tcp6`), which prints them for
//! every socket of the process's network namespace: this crate forbids `unsafe`, and neither
//! rustix nor socket2 offers `TCP_INFO`, so `getsockopt` is out of reach. The line is found by
//! the socket's inode (and its ports), never by a file descriptor, so a read after the socket
//! closed finds nothing rather than another socket.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

/// `/proc/net/tcp` prints times in clock ticks of `USER_HZ`, 100 per second on every Linux ABI.
const TICK: Duration = Duration::from_millis(10);

/// A TCP socket, named as `/proc/net/tcp` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketId {
    pub inode: u64,
    pub local: SocketAddr,
    pub peer: SocketAddr,
}

impl SocketId {
    /// The socket `stream` is.
    pub fn of(stream: &TcpStream) -> io::Result<SocketId> {
        Ok(SocketId {
            inode: rustix::fs::fstat(stream)?.st_ino,
            local: stream.local_addr()?,
            peer: stream.peer_addr()?,
        })
    }
}

/// One reading of a socket's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpState {
    /// Bytes written and not yet acknowledged by the peer (`write_seq - snd_una`).
    pub unacked_bytes: u32,
    /// How many times in a row the retransmission timer fired for the oldest unacknowledged
    /// data (`tcpi_retransmits`); back to 0 when an acknowledgement of new data arrives.
    pub retransmits: u32,
    /// The current retransmission timeout, backed off (`tcpi_rto`; 10 ms granularity).
    pub rto: Duration,
}

/// The state of socket `id` now; `Ok(None)` when the kernel no longer lists it (closed).
/// Reads `/proc` (blocking, but in memory, one line per socket of the namespace).
pub fn read(id: &SocketId) -> io::Result<Option<TcpState>> {
    let path = if id.local.is_ipv4() {
        "/proc/self/net/tcp"
    } else {
        "/proc/self/net/tcp6"
    };
    let file = BufReader::new(std::fs::File::open(path)?);
    for line in file.lines().skip(1) {
        if let Some(state) = parse_line(&line?, id) {
            return Ok(Some(state));
        }
    }
    Ok(None)
}

/// `id`'s state from one line of `/proc/net/tcp{,6}`, or `None` if the line is another
/// socket's (or not one the kernel's format explains). The kernel prints
/// `sl local rem st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode refcnt ptr rto ...`,
/// hex except uid, timeout, inode and rto (`net/ipv4/tcp_ipv4.c`, `get_tcp4_sock`).
fn parse_line(line: &str, id: &SocketId) -> Option<TcpState> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 13 || fields[9].parse::<u64>().ok()? != id.inode {
        return None;
    }
    let port = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
    if port(fields[1])? != id.local.port() || port(fields[2])? != id.peer.port() {
        return None;
    }
    let (tx_queue, _) = fields[4].split_once(':')?;
    Some(TcpState {
        unacked_bytes: u32::from_str_radix(tx_queue, 16).ok()?,
        retransmits: u32::from_str_radix(fields[6], 16).ok()?,
        rto: TICK * fields[12].parse::<u32>().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(inode: u64, local: u16, peer: u16) -> SocketId {
        SocketId {
            inode,
            local: SocketAddr::from(([198, 51, 100, 1], local)),
            peer: SocketAddr::from(([198, 51, 100, 2], peer)),
        }
    }

    /// A line as the kernel prints it for a probe's socket behind a silent box: 0x29 bytes
    /// unacknowledged, retransmission timer armed, 2 retransmissions, RTO 82 ticks.
    const DEAD: &str = "   7: 0164A8C6:9C40 0264A8C6:1538 01 00000029:00000000 01:0000002D 00000002     0        0 4242 2 00000000b5a3c1d2 82 4 0 10 -1";

    #[test]
    fn parses_the_kernels_line_for_the_socket() {
        let state = parse_line(DEAD, &id(4242, 0x9C40, 0x1538)).expect("the line is ours");
        assert_eq!(
            state,
            TcpState {
                unacked_bytes: 0x29,
                retransmits: 2,
                rto: Duration::from_millis(820),
            }
        );
    }

    #[test]
    fn another_sockets_line_is_not_read() {
        assert_eq!(parse_line(DEAD, &id(4243, 0x9C40, 0x1538)), None);
        assert_eq!(parse_line(DEAD, &id(4242, 0x9C41, 0x1538)), None);
        assert_eq!(parse_line(DEAD, &id(4242, 0x9C40, 5432 + 1)), None);
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
        assert_eq!(parse_line(header, &id(4242, 0x9C40, 0x1538)), None);
    }

    /// The real kernel, over loopback: a connected socket is found, with nothing unacknowledged
    /// once its bytes were read; after it closes, it is not found (never someone else's).
    #[tokio::test]
    async fn reads_a_real_socket_and_loses_it_when_closed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0; 4];
        server.read_exact(&mut buf).await.unwrap();
        let socket = SocketId::of(&client).unwrap();
        let mut state = read(&socket).unwrap().expect("listed while open");
        for _ in 0..100 {
            if state.unacked_bytes == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            state = read(&socket).unwrap().expect("listed while open");
        }
        assert_eq!((state.unacked_bytes, state.retransmits), (0, 0));
        assert!(state.rto >= Duration::from_millis(200), "{state:?}");
        drop(client);
        drop(server);
        // A closed client socket may linger in FIN_WAIT/TIME_WAIT, but no longer as this inode.
        assert_eq!(read(&socket).unwrap(), None);
    }
}
