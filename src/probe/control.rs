//! The control connection: one session per target kept busy so the middlebox never forgets it.
//!
//! It answers four questions for the engine:
//! - *Is the server reachable at all?* A probe that dies while the control connection also
//!   fails is an outage, not an idle drop, and must not move the bracket.
//! - *Does the server still list a dead probe's session?* (a ghost), and terminates it: only
//!   sessions matching pid + backend_start + our application_name, so never anyone else's.
//! - *Did a probe's query reach its session?* The row the confirmation of a silent death reads
//!   ([`arrival`]): a flow the box forgot is known dead in about a second.
//! - *What does the server say about keepalives and idle timeouts?* (an info metric).
//!
//! It is the exporter's connection, not the application's: its deaths never page. One the path
//! dropped (the server answers again at once) counts in
//! `idle_drop_control_connection_drops_total`; an administrator's termination (57P01) or a
//! restart is a termination, not a drop; an unreachable server is an outage.
//!
//! It counts against the target's connection budget like any probe, and so do its earlier
//! sessions that died silently (the server may still list them) until the server lets go of
//! them: they are checked at every reconnect and again regularly, terminated under the same
//! guards as a probe's ghost, and swept at shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::TargetConfig;
use crate::model::DeathCause;
use crate::postgres::arrival::{self, ServerView};
use crate::postgres::connection::{Attempt, BackendIdentity, Connector, ProbeConnection};
use crate::probe::publisher::Publisher;

mod ghost;
pub use ghost::GhostVerdict;

enum Request {
    Ping(oneshot::Sender<bool>),
    Ghost {
        backend: BackendIdentity,
        idle_since: Instant,
        reply: oneshot::Sender<GhostVerdict>,
    },
    /// A probe's session row, for the confirmation of a silent death ([`arrival::fetch`]).
    Activity {
        backend: BackendIdentity,
        reply: oneshot::Sender<ServerView>,
    },
}

/// The engine's handle on its target's control connection.
#[derive(Clone)]
pub struct ControlHandle {
    requests: mpsc::Sender<Request>,
    up: watch::Receiver<bool>,
    connected_since: watch::Receiver<Option<Instant>>,
    lower_bound: Arc<watch::Sender<Option<Duration>>>,
    sessions: watch::Receiver<usize>,
}

impl ControlHandle {
    /// A fresh round trip on the control connection: false when the server is unreachable.
    pub async fn healthy(&self) -> bool {
        let (reply, answer) = oneshot::channel();
        if self.requests.send(Request::Ping(reply)).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }

    /// Checks (and, if configured, reaps) a dead probe's session; `idle_since` is when we last
    /// used it (a session someone used after that is not terminated).
    pub async fn ghost(&self, backend: BackendIdentity, idle_since: Instant) -> GhostVerdict {
        let (reply, answer) = oneshot::channel();
        if self
            .requests
            .send(Request::Ghost {
                backend,
                idle_since,
                reply,
            })
            .await
            .is_err()
        {
            return GhostVerdict::Unknown;
        }
        answer.await.unwrap_or(GhostVerdict::Unknown)
    }

    /// What the server shows of a probe's session (state and last query), for the confirmation
    /// of a silent death; `Unanswered` while the control connection is down.
    pub async fn activity(&self, backend: BackendIdentity) -> ServerView {
        let (reply, answer) = oneshot::channel();
        if self
            .requests
            .send(Request::Activity { backend, reply })
            .await
            .is_err()
        {
            return ServerView::Unanswered;
        }
        answer.await.unwrap_or(ServerView::Unanswered)
    }

    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Changes of reachability.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.up.clone()
    }

    /// How many sessions the control connection may hold on the server: the live one, plus
    /// earlier ones the server may still list.
    pub fn sessions(&self) -> usize {
        *self.sessions.borrow()
    }

    /// Changes of [`ControlHandle::sessions`].
    pub fn subscribe_sessions(&self) -> watch::Receiver<usize> {
        self.sessions.clone()
    }

    /// When the attempt behind the live control connection started; `None` while down.
    pub fn connected_since(&self) -> Option<Instant> {
        *self.connected_since.borrow()
    }

    /// Lets the control connection ping less often once we know how long idle flows survive.
    pub fn set_lower_bound(&self, lower: Option<Duration>) {
        self.lower_bound.send_replace(lower);
    }
}

/// Starts the control connection task of a target.
pub fn spawn(
    target: Arc<TargetConfig>,
    connector: Arc<Connector>,
    publish: Publisher,
    shutdown: CancellationToken,
) -> (ControlHandle, tokio::task::JoinHandle<()>) {
    let (requests, inbox) = mpsc::channel(64);
    let (up_tx, up) = watch::channel(false);
    let (lower_tx, lower_rx) = watch::channel(None);
    let (sessions_tx, sessions) = watch::channel(0);
    let (connected_tx, connected_since) = watch::channel(None);
    let handle = ControlHandle {
        requests,
        up,
        connected_since,
        lower_bound: Arc::new(lower_tx),
        sessions,
    };
    let control = ControlTask {
        target,
        connector,
        publish,
        inbox,
        up: up_tx,
        lower_bound: lower_rx,
        shutdown,
        current: None,
        leftovers: Vec::new(),
        sessions: sessions_tx,
        connected_since: connected_tx,
        lost: None,
        failure: None,
    };
    (handle, tokio::spawn(control.run()))
}

/// The task that owns the control connection (the engine holds its [`ControlHandle`]).
struct ControlTask {
    target: Arc<TargetConfig>,
    connector: Arc<Connector>,
    /// What the control connection finds goes to the run's publisher (`target_up`, drops,
    /// server settings).
    publish: Publisher,
    inbox: mpsc::Receiver<Request>,
    up: watch::Sender<bool>,
    lower_bound: watch::Receiver<Option<Duration>>,
    shutdown: CancellationToken,
    /// The live control session and when we last sent it anything (the termination guard
    /// compares the server's idle time with ours).
    current: Option<(BackendIdentity, Instant)>,
    /// Our earlier control sessions the server may still list (they died silently), each with
    /// when we last sent it anything; dropped once the server no longer lists them.
    leftovers: Vec<(BackendIdentity, Instant)>,
    sessions: watch::Sender<usize>,
    connected_since: watch::Sender<Option<Instant>>,
    /// How the last control connection died, until a reconnect tells whether that was a drop
    /// (the server answered again at once) or an outage (it did not).
    lost: Option<DeathCause>,
    /// Why the last failed ping failed (what [`ControlTask::lost`] reports).
    failure: Option<DeathCause>,
}

/// Whether a control connection's death, with the server answering again at once, was the
/// path dropping it: a cause idling can have, known for sure. An administrator's termination
/// (57P01), a restart or a cause the driver did not tell (`error`) is not a drop.
fn is_drop(cause: &DeathCause) -> bool {
    cause.can_be_idle_expiry() && *cause != DeathCause::Error
}

const QUERY_TIMEOUT_CAP: Duration = Duration::from_secs(5);
/// How often earlier control sessions the server still lists are checked again.
const LEFTOVER_RECHECK: Duration = Duration::from_secs(10);
/// How long shutdown may spend terminating earlier control sessions the server still lists.
const SWEEP_LIMIT: Duration = Duration::from_secs(6);
/// How long shutdown waits for a connection to sweep with: a server that does not answer by
/// then will not be swept, and the exit must not wait for it.
const SWEEP_CONNECT_LIMIT: Duration = Duration::from_secs(3);

impl ControlTask {
    async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut last_error_kind = None;
        // A health question asked while the connection was failing: answered by the reconnect.
        let mut pending_ping: Option<oneshot::Sender<bool>> = None;
        while !self.shutdown.is_cancelled() {
            let attempt = Attempt::new();
            let opened = tokio::select! {
                // Not even a long connect_timeout holds up shutdown (`discover --time-limit 20s
                // --connect-timeout 1h` ended at 35 s): the attempt is abandoned, and swept.
                _ = self.shutdown.cancelled() => {
                    self.leftovers.push((attempt.identity(), attempt.started));
                    break;
                }
                opened = self.connector.open(&attempt, None, |_| {}) => opened,
            };
            match opened {
                Ok(conn) => {
                    if let Some(cause) = self.lost.take() {
                        if is_drop(&cause) {
                            self.publish.control_dropped(&cause);
                        }
                    }
                    backoff.reset();
                    last_error_kind = None;
                    self.publish.connected(conn.connect_duration);
                    self.connected_since.send_replace(Some(attempt.started));
                    self.on_connected(&conn).await;
                    if let Some(reply) = pending_ping.take() {
                        let _ = reply.send(true);
                    }
                    // On return the connection is lost; reconnect at once before declaring the
                    // target down: the control flow itself may just have been idle-dropped.
                    pending_ping = self.serve(conn).await;
                }
                Err(e) => {
                    if e.lingers {
                        // The server may still finish it: counted, checked at the reconnect.
                        self.leftovers.push((attempt.identity(), attempt.started));
                        self.publish_sessions();
                    }
                    // The control connection died with the server out of reach: an outage.
                    self.lost = None;
                    if let Some(reply) = pending_ping.take() {
                        let _ = reply.send(false);
                    }
                    if last_error_kind != Some(e.kind) {
                        tracing::warn!(target_name = %self.target.name, error = %e, "cannot connect to target");
                        last_error_kind = Some(e.kind);
                    }
                    self.set_up(false);
                    self.publish.control_connect_failed(e.kind, e.to_string());
                    let wait = backoff.next_delay();
                    self.answer_while_down(wait).await;
                }
            }
        }
        // Shut down while disconnected: earlier sessions may still be listed.
        if !self.leftovers.is_empty() {
            self.sweep(None).await;
        }
    }

    fn query_timeout(&self) -> Duration {
        self.target.query_timeout.min(QUERY_TIMEOUT_CAP)
    }

    /// How often to touch the control connection: well inside the shortest idle that could
    /// kill it (the range minimum until a lower bound is known).
    fn ping_interval(&self) -> Duration {
        let known = self.lower_bound.borrow().unwrap_or(self.target.idle_min);
        (known.max(self.target.idle_min) / 2)
            .clamp(Duration::from_millis(250), Duration::from_secs(30))
    }

    async fn on_connected(&mut self, conn: &ProbeConnection) {
        self.failure = None;
        self.current = Some((conn.backend.clone(), Instant::now()));
        self.publish_sessions();
        // Earlier sessions first: while one is still listed we hold a session too many.
        self.check_leftovers(conn).await;
        self.sending();
        let settings = conn
            .simple_query(
                "SELECT current_setting('server_version'), current_setting('tcp_keepalives_idle'), \
                 current_setting('tcp_keepalives_interval'), current_setting('tcp_keepalives_count'), \
                 coalesce(current_setting('idle_session_timeout', true), 'unsupported'), \
                 current_setting('idle_in_transaction_session_timeout')",
                self.query_timeout(),
            )
            .await;
        if let Ok(rows) = settings {
            if let Some(row) = rows.first() {
                let names = [
                    "server_version",
                    "tcp_keepalives_idle",
                    "tcp_keepalives_interval",
                    "tcp_keepalives_count",
                    "idle_session_timeout",
                    "idle_in_transaction_session_timeout",
                ];
                let values: Vec<(&str, String)> = names
                    .iter()
                    .zip(row.iter())
                    .map(|(n, v)| (*n, v.clone().unwrap_or_default()))
                    .collect();
                let shown: Vec<String> = values.iter().map(|(n, v)| format!("{n}={v}")).collect();
                tracing::info!(target_name = %self.target.name, settings = %shown.join(" "), "server settings");
                self.publish.server_settings(&values);
            }
        }
        self.set_up(true);
        self.publish.control_up(true, None);
    }

    /// Checks (and reaps) the earlier control sessions the server may still list; keeps those
    /// still listed. False when the control connection failed meanwhile.
    async fn check_leftovers(&mut self, conn: &ProbeConnection) -> bool {
        let mut connected = true;
        let mut kept = Vec::new();
        for (backend, last_sent) in std::mem::take(&mut self.leftovers) {
            if !connected {
                kept.push((backend, last_sent));
                continue;
            }
            self.sending();
            let verdict = self.check_ghost(conn, &backend, last_sent).await;
            tracing::debug!(target_name = %self.target.name, pid = backend.pid, verdict = verdict.as_str(), "previous control session");
            match verdict {
                GhostVerdict::Gone | GhostVerdict::Reaped | GhostVerdict::Reused => {}
                GhostVerdict::Alive => kept.push((backend, last_sent)),
                GhostVerdict::Unknown => {
                    connected = self.ping(conn).await;
                    kept.push((backend, last_sent));
                }
            }
        }
        self.leftovers = kept;
        self.publish_sessions();
        connected
    }

    /// At shutdown: terminate the earlier control sessions the server still lists, and make
    /// sure the live one is not silently dead (closing a dead connection would leave its
    /// session behind), then close. Bounded: an unreachable server must not hold up the exit.
    async fn sweep(&mut self, conn: Option<ProbeConnection>) {
        let mut conn = conn;
        let work = async {
            for _ in 0..3 {
                let alive = match &conn {
                    Some(c) => self.ping(c).await,
                    None => false,
                };
                let c = match conn.take() {
                    Some(c) if alive => c,
                    dead => {
                        if let Some(dead) = dead {
                            self.retire_current();
                            dead.close().await;
                        }
                        if self.leftovers.is_empty() {
                            break;
                        }
                        let attempt = Attempt::new();
                        let opened = tokio::time::timeout(
                            SWEEP_CONNECT_LIMIT,
                            self.connector.open(&attempt, None, |_| {}),
                        )
                        .await;
                        match opened {
                            Ok(Ok(c)) => {
                                self.current = Some((c.backend.clone(), Instant::now()));
                                c
                            }
                            _ => break,
                        }
                    }
                };
                let connected = self.check_leftovers(&c).await;
                conn = Some(c);
                if connected {
                    break;
                }
            }
        };
        let finished = tokio::time::timeout(SWEEP_LIMIT, work).await.is_ok();
        if let Some(conn) = conn {
            conn.close().await;
        }
        if !finished || !self.leftovers.is_empty() {
            tracing::warn!(target_name = %self.target.name, sessions = self.leftovers.len(), "could not confirm every earlier control session closed");
        }
        self.current = None;
        self.leftovers.clear();
        self.publish_sessions();
    }

    /// Serves requests until the connection fails (returns a health question still to answer)
    /// or shutdown.
    async fn serve(&mut self, conn: ProbeConnection) -> Option<oneshot::Sender<bool>> {
        let mut next_ping = Instant::now() + self.ping_interval();
        let mut next_recheck = Instant::now() + LEFTOVER_RECHECK;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    self.sweep(Some(conn)).await;
                    return None;
                }
                request = self.inbox.recv() => {
                    let Some(request) = request else {
                        self.sweep(Some(conn)).await;
                        return None;
                    };
                    match request {
                        Request::Ping(reply) => {
                            if !self.ping(&conn).await {
                                self.lost(conn).await;
                                return Some(reply);
                            }
                            let _ = reply.send(true);
                        }
                        Request::Ghost { backend, idle_since, reply } => {
                            self.sending();
                            let verdict = self.check_ghost(&conn, &backend, idle_since).await;
                            let _ = reply.send(verdict);
                            // A check that got no verdict is a lost connection only if a ping
                            // fails too: a refused query is not a dead connection.
                            if verdict == GhostVerdict::Unknown && !self.ping(&conn).await {
                                self.lost(conn).await;
                                return None;
                            }
                        }
                        Request::Activity { backend, reply } => {
                            self.sending();
                            let view = arrival::fetch(&conn, &backend, self.query_timeout()).await;
                            let unanswered = view == ServerView::Unanswered;
                            let _ = reply.send(view);
                            if unanswered && !self.ping(&conn).await {
                                self.lost(conn).await;
                                return None;
                            }
                        }
                    }
                    next_ping = Instant::now() + self.ping_interval();
                }
                _ = tokio::time::sleep_until(next_ping) => {
                    if !self.ping(&conn).await {
                        self.lost(conn).await;
                        return None;
                    }
                    next_ping = Instant::now() + self.ping_interval();
                }
                _ = tokio::time::sleep_until(next_recheck), if !self.leftovers.is_empty() => {
                    if !self.check_leftovers(&conn).await {
                        self.lost(conn).await;
                        return None;
                    }
                    next_recheck = Instant::now() + LEFTOVER_RECHECK;
                    next_ping = Instant::now() + self.ping_interval();
                }
            }
        }
    }

    /// The control connection died although it was never idle long: count it as closed; the
    /// reconnect tells whether it was a drop (the server answers at once) or an outage. The
    /// cause is what the failed ping found, else what the connection task reported, else
    /// `error`: never a guessed timeout (an administrator's termination that raced a ping
    /// once counted as one).
    async fn lost(&mut self, conn: ProbeConnection) {
        let cause = self.failure.take().unwrap_or_else(|| conn.death_cause());
        tracing::warn!(target_name = %self.target.name, kind = %cause, "control connection lost; reconnecting");
        self.publish.control_lost(&cause);
        self.lost = Some(cause);
        self.retire_current();
        conn.close().await;
    }

    /// The live control connection is gone, but the server may still list its session.
    fn retire_current(&mut self) {
        self.connected_since.send_replace(None);
        if let Some(current) = self.current.take() {
            self.leftovers.push(current);
        }
        self.publish_sessions();
    }

    /// About to send a query on the control connection: if its session dies later, this is
    /// when we last used it (the query may reach the server even if its answer never comes).
    fn sending(&mut self) {
        if let Some((_, last)) = &mut self.current {
            *last = Instant::now();
        }
    }

    fn publish_sessions(&self) {
        let sessions = usize::from(self.current.is_some()) + self.leftovers.len();
        self.sessions
            .send_if_modified(|n| std::mem::replace(n, sessions) != sessions);
    }

    /// A round trip; false (with why, for [`ControlTask::lost`]) when the connection is dead.
    async fn ping(&mut self, conn: &ProbeConnection) -> bool {
        if conn.ended().is_none() {
            self.sending();
        }
        match conn.ping(self.query_timeout()).await {
            Ok(()) => true,
            Err(cause) => {
                self.failure = Some(cause);
                false
            }
        }
    }

    /// Whether the server still lists a dead session of ours, reaping it if configured (see
    /// [`ghost::check`]).
    async fn check_ghost(
        &self,
        conn: &ProbeConnection,
        backend: &BackendIdentity,
        idle_since: Instant,
    ) -> GhostVerdict {
        ghost::check(
            conn,
            backend,
            idle_since,
            self.target.reap_ghosts,
            self.query_timeout(),
            &self.target.name,
        )
        .await
    }

    /// While disconnected, answer requests at once (unreachable) instead of letting them wait.
    async fn answer_while_down(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(until) => return,
                request = self.inbox.recv() => match request {
                    Some(Request::Ping(reply)) => { let _ = reply.send(false); }
                    Some(Request::Ghost { reply, .. }) => { let _ = reply.send(GhostVerdict::Unknown); }
                    Some(Request::Activity { reply, .. }) => { let _ = reply.send(ServerView::Unanswered); }
                    None => return,
                }
            }
        }
    }

    /// Tells the engine (what it shows goes through the publisher).
    fn set_up(&self, up: bool) {
        self.up.send_if_modified(|current| {
            let changed = *current != up;
            *current = up;
            changed
        });
    }
}
