//! The seam between the probe engine and the network: what the engine asks of a probe
//! connection, of whatever opens them, and of the control connection.
//!
//! Production uses the real driver ([`Connector`], [`ProbeConnection`], [`ControlHandle`]);
//! the engine's paused-time tests (`engine/tests.rs`) use a simulated path whose threshold,
//! kind of drop and outages they set, so the engine's behaviour is tested without root, a
//! server or real time. The lab tests stay the proof against the real network.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::control::{ControlHandle, GhostVerdict};
use crate::postgres::arrival::{self, ServerView};
use crate::postgres::connection::{
    Attempt, BackendIdentity, ConnectError, ConnectionEnd, Connector, ProbeConnection, ProbeOutcome,
};

/// One open probe connection, as the engine uses it.
pub trait Conn: Send + 'static {
    /// The server session it holds.
    fn backend(&self) -> &BackendIdentity;
    fn connect_duration(&self) -> Duration;
    /// When the last answer arrived.
    fn last_active(&self) -> Instant;
    /// The idle time a survival observed at `at` proves the path tolerates.
    fn idle_survived(&self, at: Instant) -> Duration;
    /// The idle time a death observed at `at` proves is enough to kill.
    fn idle_at_death(&self, at: Instant) -> Duration;
    /// How the connection ended, if it has.
    fn ended(&self) -> Option<ConnectionEnd>;
    /// Sends the probe query; never takes much longer than `timeout`. While it is in flight,
    /// the server may confirm through `control` that it never arrived (a silent death, known in
    /// about a second: [`arrival::probe_confirmed`]); a backend not ours alone (a pooler's) costs
    /// `control` nothing.
    fn probe<K: ControlLink>(
        &mut self,
        query: &str,
        timeout: Duration,
        control: &K,
    ) -> impl Future<Output = ProbeOutcome> + Send;
    /// Closes it (a live connection says goodbye so the server sees it go).
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Opens probe connections to one target.
pub trait Connect: Send + Sync + 'static {
    type Conn: Conn;
    /// Opens as `attempt` (its `application_name`). `keepalive`: TCP keepalive idle and
    /// interval (the keepalive probe only). `on_end` runs once when the connection ends,
    /// however it ends.
    fn open(
        &self,
        attempt: Attempt,
        keepalive: Option<Duration>,
        on_end: impl FnOnce(ConnectionEnd) + Send + 'static,
    ) -> impl Future<Output = Result<Self::Conn, ConnectError>> + Send;
}

/// The engine's handle on its target's control connection.
pub trait ControlLink: Clone + Send + Sync + 'static {
    /// A fresh round trip: false when the server is unreachable.
    fn healthy(&self) -> impl Future<Output = bool> + Send;
    /// Whether the server still lists a closed probe's session (and reaps it if configured);
    /// `idle_since`: when we last used it.
    fn ghost(
        &self,
        backend: BackendIdentity,
        idle_since: Instant,
    ) -> impl Future<Output = GhostVerdict> + Send;
    /// What the server shows of a probe's session (its state and last query), for the
    /// confirmation of a silent death.
    fn activity(&self, backend: BackendIdentity) -> impl Future<Output = ServerView> + Send;
    fn is_up(&self) -> bool;
    /// Changes of reachability.
    fn subscribe(&self) -> watch::Receiver<bool>;
    /// Sessions the control connection may hold on the server.
    fn sessions(&self) -> usize;
    /// Changes of [`ControlLink::sessions`].
    fn subscribe_sessions(&self) -> watch::Receiver<usize>;
    /// What is known of the lower bound (the control connection pings less often).
    fn set_lower_bound(&self, lower: Option<Duration>);
    /// When the attempt behind the live control connection started (`None` while down): an
    /// attempt that started later and connected shows the server takes connections again.
    fn connected_since(&self) -> Option<Instant>;
}

impl Conn for ProbeConnection {
    fn backend(&self) -> &BackendIdentity {
        &self.backend
    }
    fn connect_duration(&self) -> Duration {
        self.connect_duration
    }
    fn last_active(&self) -> Instant {
        self.last_active
    }
    fn idle_survived(&self, at: Instant) -> Duration {
        ProbeConnection::idle_survived(self, at)
    }
    fn idle_at_death(&self, at: Instant) -> Duration {
        ProbeConnection::idle_at_death(self, at)
    }
    fn ended(&self) -> Option<ConnectionEnd> {
        ProbeConnection::ended(self)
    }
    fn probe<K: ControlLink>(
        &mut self,
        query: &str,
        timeout: Duration,
        control: &K,
    ) -> impl Future<Output = ProbeOutcome> + Send {
        arrival::probe_confirmed(self, query, timeout, |backend| control.activity(backend))
    }
    fn close(self) -> impl Future<Output = ()> + Send {
        ProbeConnection::close(self)
    }
}

impl Connect for Connector {
    type Conn = ProbeConnection;
    async fn open(
        &self,
        attempt: Attempt,
        keepalive: Option<Duration>,
        on_end: impl FnOnce(ConnectionEnd) + Send + 'static,
    ) -> Result<ProbeConnection, ConnectError> {
        Connector::open(self, &attempt, keepalive, on_end).await
    }
}

impl ControlLink for ControlHandle {
    fn healthy(&self) -> impl Future<Output = bool> + Send {
        ControlHandle::healthy(self)
    }
    fn ghost(
        &self,
        backend: BackendIdentity,
        idle_since: Instant,
    ) -> impl Future<Output = GhostVerdict> + Send {
        ControlHandle::ghost(self, backend, idle_since)
    }
    fn activity(&self, backend: BackendIdentity) -> impl Future<Output = ServerView> + Send {
        ControlHandle::activity(self, backend)
    }
    fn is_up(&self) -> bool {
        ControlHandle::is_up(self)
    }
    fn subscribe(&self) -> watch::Receiver<bool> {
        ControlHandle::subscribe(self)
    }
    fn sessions(&self) -> usize {
        ControlHandle::sessions(self)
    }
    fn subscribe_sessions(&self) -> watch::Receiver<usize> {
        ControlHandle::subscribe_sessions(self)
    }
    fn set_lower_bound(&self, lower: Option<Duration>) {
        ControlHandle::set_lower_bound(self, lower)
    }
    fn connected_since(&self) -> Option<Instant> {
        ControlHandle::connected_since(self)
    }
}
