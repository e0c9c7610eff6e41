//! A simulated network path and server for the engine's paused-time tests: the other side of
//! the [`network`](super::network) seam.
//!
//! The server's idle clock for a connection starts when it answers a query; the answer reaches
//! the client `answer_delay` later (a loaded machine). A query that arrives after the path's
//! threshold finds the flow forgotten: a silent drop hangs until the query timeout, a reset
//! fails at once; a closing box ends the connection at the threshold while it is still idle.
//! The server keeps a silently dropped connection's session (a ghost) until it is reaped.
//! A box that counts packets (conntrack, a NAT) never forgets a flow whose TCP keepalives
//! leave more often than its threshold; by default the box counts requests (a proxy).
//! Tests change the threshold and take the server away while the engine runs.
//!
//! The confirmation of a silent death ([`arrival`]) is modelled on its two witnesses: the
//! server remembers the last use each session received (the `/* use N */` marker), which the
//! control connection's `activity` shows; the client's kernel is taken to have retransmitted
//! twice, unacknowledged, [`CONFIRM_AFTER`] after a send that vanished (as measured behind the
//! lab's silent box). The engine's real verdict ([`arrival::verdict`]) then decides.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::network::{Conn, Connect, ControlLink};
use crate::model::DeathCause;
use crate::postgres::arrival::{self, Arrival, SocketEvidence};
use crate::postgres::classify::ConnectErrorKind;
use crate::postgres::connection::{
    query_tag, Attempt, BackendIdentity, ConnectError, ConnectionEnd, ProbeOutcome, UseMarker,
};
use crate::postgres::tcp_state::TcpState;

mod control;
pub use control::SimulatedControl;

/// How the path treats a flow it forgot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// Conntrack or a NAT gateway: the next query vanishes.
    Silent,
    /// A box that answers the next packet with a reset.
    Reset,
    /// A proxy or the server closes the idle connection itself.
    Close,
}

/// A one-way delay for everything the simulated server sends.
const ROUND_TRIP: Duration = Duration::from_millis(2);
/// When, after a send into a flow the box forgot, the kernel's evidence is there (the second
/// unacknowledged retransmission; measured 1.06–1.17 s behind the lab's silent box).
pub const CONFIRM_AFTER: Duration = Duration::from_millis(1100);
/// How long a connection attempt to a stalled server waits before it is given up.
const STALLED_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

struct State {
    threshold: Option<Duration>,
    drop: Drop,
    answer_delay: Duration,
    /// Sessions the server lists, by pid.
    sessions: BTreeSet<i32>,
    /// Sessions of attempts the client gave up on that the stalled server finished later, by
    /// their `application_name` (their pid was never learnt).
    abandoned: BTreeSet<String>,
    /// The server takes connections but does not answer them (a stalled postmaster).
    stalled: bool,
    peak_sessions: usize,
    /// Whether a ghost check may terminate a session (`reap_ghosts`).
    reaping: bool,
    next_pid: i32,
    /// The lower bound the engine last gave the control connection to pace its pings by.
    control_lower_bound: Option<Duration>,
    /// TCP keepalives keep a flow alive (the box counts packets, not requests).
    counts_packets: bool,
    /// Each connection opened with TCP keepalives: when, and their interval.
    keepalive_opens: Vec<(Instant, Duration)>,
    /// The flows of those connections, by pid, for [`SimulatedPath::reset_keepalive_flows`].
    keepalive_flows: Vec<(i32, Weak<Mutex<Flow>>)>,
    /// The last use each listed session received (0: none since the identity query).
    received: BTreeMap<i32, u64>,
    /// New connections get a pooler's backend (not ours alone: never confirmed).
    pooled: bool,
    /// How many activity rows the control connection was asked for.
    activity_queries: usize,
    /// The control connection sees no row for any probe session (no evidence either way).
    rows_hidden: bool,
}

/// The path and its server; clones share them.
#[derive(Clone)]
pub struct SimulatedPath {
    state: Arc<Mutex<State>>,
    up: Arc<watch::Sender<bool>>,
    control_sessions: Arc<watch::Sender<usize>>,
}

impl SimulatedPath {
    pub fn new(threshold: Option<Duration>, drop: Drop) -> Self {
        SimulatedPath {
            state: Arc::new(Mutex::new(State {
                threshold,
                drop,
                answer_delay: Duration::ZERO,
                sessions: BTreeSet::new(),
                abandoned: BTreeSet::new(),
                stalled: false,
                peak_sessions: 0,
                reaping: true,
                next_pid: 1000,
                control_lower_bound: None,
                counts_packets: false,
                keepalive_opens: Vec::new(),
                keepalive_flows: Vec::new(),
                received: BTreeMap::new(),
                pooled: false,
                activity_queries: 0,
                rows_hidden: false,
            })),
            up: Arc::new(watch::channel(true).0),
            control_sessions: Arc::new(watch::channel(1).0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The box now forgets flows idle for `threshold` (`None`: never).
    pub fn set_threshold(&self, threshold: Option<Duration>) {
        self.state().threshold = threshold;
    }

    /// How late every answer reaches the client.
    pub fn set_answer_delay(&self, delay: Duration) {
        self.state().answer_delay = delay;
    }

    /// The box counts packets: TCP keepalives more often than the threshold keep a flow alive.
    pub fn set_counts_packets(&self, counts_packets: bool) {
        self.state().counts_packets = counts_packets;
    }

    /// Each connection opened with TCP keepalives: when, and their interval.
    pub fn keepalive_opens(&self) -> Vec<(Instant, Duration)> {
        self.state().keepalive_opens.clone()
    }

    /// Whether the box forgets a flow idle `idle` whose keepalives leave every `keepalive`.
    fn forgets(&self, idle: Duration, keepalive: Option<Duration>) -> bool {
        let s = self.state();
        let Some(threshold) = s.threshold else {
            return false;
        };
        let kept_alive = s.counts_packets && keepalive.is_some_and(|k| k < threshold);
        idle >= threshold && !kept_alive
    }

    /// A fault on the path resets every open connection that has TCP keepalives, at once, and
    /// the server's end of each goes with it: a death idling did not cause.
    pub fn reset_keepalive_flows(&self) {
        let flows: Vec<(i32, Weak<Mutex<Flow>>)> =
            std::mem::take(&mut self.state().keepalive_flows);
        for (pid, flow) in flows {
            let Some(flow) = flow.upgrade() else { continue };
            self.state().sessions.remove(&pid);
            let f = flow.lock().unwrap_or_else(|e| e.into_inner());
            if f.ended.borrow().is_none() {
                f.ended.send_replace(Some(ConnectionEnd {
                    at: Instant::now(),
                    cause: Some(DeathCause::Reset),
                    detail: Some("reset by a fault on the path (simulated)".into()),
                }));
            }
        }
    }

    /// Takes the server away (an outage: nothing connects, nothing answers) or brings it back.
    pub fn set_server_up(&self, up: bool) {
        if !up {
            // A restart ends every session.
            let mut s = self.state();
            s.sessions.clear();
            s.abandoned.clear();
        }
        self.up.send_replace(up);
    }

    /// Stalls the server (connections are accepted but never answered; each one the client
    /// gives up on becomes a session once the stall ends) or ends the stall.
    pub fn set_stalled(&self, stalled: bool) {
        self.state().stalled = stalled;
    }

    /// Sessions the server lists now: the connections' and the given-up attempts'.
    pub fn listed(&self) -> usize {
        let s = self.state();
        s.sessions.len() + s.abandoned.len()
    }

    fn server_up(&self) -> bool {
        *self.up.borrow()
    }

    /// The lower bound the control connection paces its pings by (`None`: the range minimum).
    pub fn control_lower_bound(&self) -> Option<Duration> {
        self.state().control_lower_bound
    }

    /// Connections opened from now get a pooler's backend: not ours alone, so a silent death
    /// is never confirmed and waits for the timeout.
    pub fn set_pooled(&self, pooled: bool) {
        self.state().pooled = pooled;
    }

    /// How many activity rows (the confirmation's control query) were read.
    pub fn activity_queries(&self) -> usize {
        self.state().activity_queries
    }

    /// The control connection sees no probe session's row (as for a session it may not see):
    /// the confirmation has no evidence, and a silent death waits for the timeout.
    pub fn set_rows_hidden(&self, hidden: bool) {
        self.state().rows_hidden = hidden;
    }

    /// `reap_ghosts: false`: ghost checks only look.
    pub fn set_reaping(&self, reaping: bool) {
        self.state().reaping = reaping;
    }

    /// The server lets go of every session it still lists for dead connections (its own TCP
    /// keepalive found them out), and the peak count starts again from now.
    pub fn forget_ghosts(&self) {
        let mut s = self.state();
        s.sessions.clear();
        s.peak_sessions = 0;
    }

    /// Starts the peak count again from the sessions listed now.
    pub fn reset_peak(&self) {
        let mut s = self.state();
        s.peak_sessions = s.sessions.len();
    }

    /// Probe sessions the server lists now, and the most it ever listed at once.
    pub fn sessions(&self) -> (usize, usize) {
        let s = self.state();
        (s.sessions.len(), s.peak_sessions)
    }

    pub fn connector(&self) -> SimulatedConnector {
        SimulatedConnector { path: self.clone() }
    }

    pub fn control(&self) -> SimulatedControl {
        SimulatedControl { path: self.clone() }
    }
}

pub struct SimulatedConnector {
    path: SimulatedPath,
}

/// What the connection and its watcher share: when the server last answered.
struct Flow {
    server_answered: Instant,
    ended: watch::Sender<Option<ConnectionEnd>>,
}

pub struct SimulatedConn {
    path: SimulatedPath,
    backend: BackendIdentity,
    keepalive: Option<Duration>,
    flow: Arc<Mutex<Flow>>,
    last_sent: Instant,
    last_active: Instant,
    /// Uses sent (the last one's marker).
    uses: u64,
    ended: watch::Receiver<Option<ConnectionEnd>>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Connect for SimulatedConnector {
    type Conn = SimulatedConn;

    async fn open(
        &self,
        attempt: Attempt,
        keepalive: Option<Duration>,
        on_end: impl FnOnce(ConnectionEnd) + Send + 'static,
    ) -> Result<SimulatedConn, ConnectError> {
        tokio::time::sleep(ROUND_TRIP).await;
        if !self.path.server_up() {
            return Err(ConnectError {
                kind: ConnectErrorKind::Refused,
                detail: "connection refused (simulated)".into(),
                lingers: false,
            });
        }
        if self.path.state().stalled {
            // The startup waits in the server's queue; the client gives up, and its goodbye
            // is lost on a box that forgot the flow: the session appears once the stall ends.
            tokio::time::sleep(STALLED_CONNECT_TIMEOUT).await;
            let mut s = self.path.state();
            s.abandoned.insert(attempt.application_name);
            s.peak_sessions = s.peak_sessions.max(s.sessions.len() + s.abandoned.len());
            return Err(ConnectError {
                kind: ConnectErrorKind::Timeout,
                detail: "timed out during connect, TLS or startup (simulated)".into(),
                lingers: true,
            });
        }
        let sent = Instant::now();
        let (pid, pooled) = {
            let mut s = self.path.state();
            s.next_pid += 1;
            let pid = s.next_pid;
            s.sessions.insert(pid);
            s.received.insert(pid, 0);
            s.peak_sessions = s.peak_sessions.max(s.sessions.len() + s.abandoned.len());
            if let Some(interval) = keepalive {
                s.keepalive_opens.push((sent, interval));
            }
            (pid, s.pooled)
        };
        let (ended_tx, ended) = watch::channel(None);
        let flow = Arc::new(Mutex::new(Flow {
            server_answered: sent,
            ended: ended_tx,
        }));
        if keepalive.is_some() {
            let mut s = self.path.state();
            s.keepalive_flows.push((pid, Arc::downgrade(&flow)));
        }
        let watcher = tokio::spawn(watch_flow(
            self.path.clone(),
            (pid, keepalive),
            flow.clone(),
            on_end,
        ));
        let delay = self.path.state().answer_delay;
        tokio::time::sleep(delay).await;
        Ok(SimulatedConn {
            path: self.path.clone(),
            keepalive,
            backend: BackendIdentity {
                pid,
                backend_start: format!("{pid}"),
                exclusive: !pooled,
                application_name: attempt.application_name,
            },
            flow,
            last_sent: sent,
            last_active: Instant::now(),
            uses: 0,
            ended,
            watcher,
        })
    }
}

/// Ends the connection when the box closes it while idle, and calls `on_end` once it ended
/// however it ended.
async fn watch_flow(
    path: SimulatedPath,
    (pid, keepalive): (i32, Option<Duration>),
    flow: Arc<Mutex<Flow>>,
    on_end: impl FnOnce(ConnectionEnd) + Send + 'static,
) {
    let mut ended = flow
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .ended
        .subscribe();
    loop {
        let due = {
            let f = flow.lock().unwrap_or_else(|e| e.into_inner());
            let kept_alive = !path.forgets(Duration::MAX, keepalive);
            let s = path.state();
            match (s.drop, s.threshold) {
                (Drop::Close, Some(t)) if !kept_alive => Some(f.server_answered + t),
                _ => None,
            }
        };
        let close_due = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                // The threshold may be set later; look again now and then.
                None => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        };
        tokio::select! {
            _ = ended.wait_for(|e| e.is_some()) => break,
            _ = close_due => {
                let f = flow.lock().unwrap_or_else(|e| e.into_inner());
                let idle = Instant::now().saturating_duration_since(f.server_answered);
                let forgotten = path.forgets(idle, keepalive);
                let mut s = path.state();
                let expired = s.drop == Drop::Close && forgotten;
                if expired {
                    s.sessions.remove(&pid);
                    f.ended.send_replace(Some(ConnectionEnd {
                        at: Instant::now(),
                        cause: Some(DeathCause::Eof),
                        detail: Some("closed by the path (simulated)".into()),
                    }));
                }
            }
        }
    }
    let end = ended.borrow().clone();
    if let Some(end) = end {
        on_end(end);
    }
}

impl SimulatedConn {
    fn end(&self, cause: Option<DeathCause>) -> ConnectionEnd {
        let end = ConnectionEnd {
            at: Instant::now(),
            cause,
            detail: None,
        };
        let f = self.flow.lock().unwrap_or_else(|e| e.into_inner());
        if f.ended.borrow().is_none() {
            f.ended.send_replace(Some(end.clone()));
        }
        end
    }
}

impl SimulatedConn {
    /// The confirmation of a use sent at `sent` that vanished: once the kernel's evidence is
    /// there ([`CONFIRM_AFTER`]), the control connection's row and the real verdict decide.
    /// A pooler's backend costs nothing; no verdict before `timeout` leaves the timeout.
    async fn confirm<K: ControlLink>(&self, sent: Instant, timeout: Duration, control: &K) -> bool {
        if !self.backend.exclusive || CONFIRM_AFTER >= timeout {
            return false;
        }
        tokio::time::sleep_until(sent + CONFIRM_AFTER).await;
        let asked = Instant::now();
        let server = control.activity(self.backend.clone()).await;
        let retransmitted = TcpState {
            unacked_bytes: 40,
            retransmits: arrival::MIN_RETRANSMITS,
            rto: Duration::from_millis(800),
        };
        let evidence = SocketEvidence {
            at_answer: TcpState {
                retransmits: arrival::MIN_RETRANSMITS - 1,
                ..retransmitted
            },
            now: retransmitted,
            retransmitted_for: asked.elapsed() + arrival::ACK_SLACK,
            control_round_trip: asked.elapsed(),
        };
        let tag = query_tag(&self.backend.application_name);
        arrival::verdict(UseMarker(self.uses), &tag, &server, Some(&evidence))
            == Arrival::NeverArrived
    }
}

impl Conn for SimulatedConn {
    fn backend(&self) -> &BackendIdentity {
        &self.backend
    }
    fn connect_duration(&self) -> Duration {
        ROUND_TRIP
    }
    fn last_active(&self) -> Instant {
        self.last_active
    }
    fn idle_survived(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.last_active)
    }
    fn idle_at_death(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.last_sent)
    }
    fn ended(&self) -> Option<ConnectionEnd> {
        self.ended.borrow().clone()
    }

    async fn probe<K: ControlLink>(
        &mut self,
        _query: &str,
        timeout: Duration,
        control: &K,
    ) -> ProbeOutcome {
        if let Some(end) = self.ended() {
            return ProbeOutcome::ClosedWhileIdle { end };
        }
        let sent = Instant::now();
        self.last_sent = sent;
        self.uses += 1;
        tokio::time::sleep(ROUND_TRIP / 2).await;
        let arrived = Instant::now();
        let answered = self
            .flow
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .server_answered;
        let idle = arrived.saturating_duration_since(answered);
        let (drop, delay) = {
            let s = self.path.state();
            (s.drop, s.answer_delay)
        };
        let forgotten = self.path.forgets(idle, self.keepalive);
        if !self.path.server_up() || (forgotten && drop == Drop::Silent) {
            let never_arrived = self.confirm(sent, timeout, control).await;
            if !never_arrived {
                tokio::time::sleep_until(arrived + timeout).await;
            }
            self.end(Some(DeathCause::Timeout));
            return ProbeOutcome::Died {
                cause: DeathCause::Timeout,
                query_error: "Error { kind: Closed, cause: None }".into(),
                time_to_failure: sent.elapsed(),
                never_arrived,
            };
        }
        if forgotten {
            let cause = if drop == Drop::Reset {
                DeathCause::Reset
            } else {
                DeathCause::Eof
            };
            // The server saw its session go (reset or closed): no ghost.
            self.path.state().sessions.remove(&self.backend.pid);
            self.end(Some(cause.clone()));
            return ProbeOutcome::Died {
                cause,
                query_error: "Error { kind: Closed, cause: None }".into(),
                time_to_failure: sent.elapsed(),
                never_arrived: false,
            };
        }
        self.path
            .state()
            .received
            .insert(self.backend.pid, self.uses);
        self.flow
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .server_answered = arrived;
        tokio::time::sleep(ROUND_TRIP / 2 + delay).await;
        self.last_active = Instant::now();
        ProbeOutcome::Alive
    }

    async fn close(self) {
        let alive = self.ended().is_none();
        let closed_by_path = self
            .ended()
            .is_some_and(|e| matches!(e.cause, Some(DeathCause::Eof)));
        if alive || closed_by_path {
            // A live connection says goodbye; a closed one was closed at the server too.
            self.path.state().sessions.remove(&self.backend.pid);
        }
        self.end(None);
        let _ = self.watcher.await;
    }
}
