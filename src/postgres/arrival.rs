//! Whether a use sent on a probe connection reached the server: the way to learn, about a
//! second after the send, that a silent box forgot the flow, instead of waiting a whole
//! `tcp_user_timeout` for the kernel to give up (issue 18, part 1).
//!
//! A death is declared only on positive evidence, from two witnesses that share no clock:
//! - **the server**: its row in `pg_stat_activity` (read on the control connection, matched by
//!   pid + `backend_start` + `application_name` as the ghost check does) is `idle` and its last
//!   query is one of our earlier ones (each use carries a [`UseMarker`] after the connection's
//!   tag), so the use never reached the backend;
//! - **the client's kernel** ([`super::tcp_state`]): the use's bytes are still unacknowledged
//!   after at least [`MIN_RETRANSMITS`] retransmissions, one of them sent after the control
//!   connection's answer proved the path to the server working, and not acknowledged for a
//!   round trip plus the longest delayed ACK since. A lost packet that a retransmission
//!   delivers is acknowledged within that.
//!
//! Either alone can be wrong: a stopped backend (SIGSTOP) shows idle with the previous query
//! while its kernel acknowledges the bytes; a path that loses everything for a second leaves
//! the bytes unacknowledged on a flow that lives. So anything else is never a death: `active`,
//! the sent use's text (that is [`Arrival::Arrived`]), a newer or foreign query, no row, no
//! answer, a pooler's backend ([`BackendIdentity::exclusive`] false: its row is not our flow's),
//! too few retransmissions, bytes acknowledged, or a socket the kernel no longer lists are
//! [`Arrival::Unknown`]: the caller keeps today's timeout path. No timestamp of the server is
//! read (not `state_change`, not `now()`), and the client's clock only measures its own
//! intervals, so skew between the hosts cannot move a verdict.
//!
//! What it cannot tell: a box that drops this flow's packets only for a while (longer than the
//! wait, about a second) from one that forgot the flow; both are, at that moment, a working path
//! and a flow that carries nothing (measured in `docs/benchmarks.md`).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::connection::{BackendIdentity, LastQuery, ProbeConnection, ProbeOutcome, UseMarker};
use super::sql_literal;
use super::tcp_state::{self, SocketId, TcpState};
use crate::model::DeathCause;

/// Retransmissions of the use's bytes, all unacknowledged, before the kernel's side counts as
/// evidence (measured behind the lab's silent box: the second about 1 s after the send).
///
/// Why 2 and not more: no count closes the known limit (module doc), a live flow whose packets
/// alone are dropped for longer than the wait; each more retransmission only moves it, by an
/// RTO that doubles (3 would wait about 2.6 s and still misjudge a 3 s gap), while a silent
/// death costs that much longer every time. Such a gap must also spare the control connection
/// through the same box and the same server, or its answer is missing and the verdict
/// `Unknown`. Fewer is not possible: the control connection is asked after the first, and a
/// retransmission after its answer is required, so 2 is the least the rule allows.
pub const MIN_RETRANSMITS: u32 = 2;

/// How long after the last retransmission it may take the server's kernel to acknowledge it
/// beyond the control round trip: Linux delays an ACK at most 200 ms (`TCP_DELACK_MAX`), and a
/// stopped backend sends no answer the ACK could ride on.
pub const ACK_SLACK: Duration = Duration::from_millis(200);

/// How often [`confirm`] reads the probe's socket.
const POLL: Duration = Duration::from_millis(20);

/// What the evidence says about a use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The use never reached the server: the flow is dead.
    NeverArrived,
    /// The server has it (running, or ran it).
    Arrived,
    /// No positive evidence either way: wait for the answer or the timeout.
    Unknown,
}

/// The probe session's row in `pg_stat_activity`, as [`fetch`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivityRow {
    /// `state` (`idle`, `active`, ...; empty when NULL).
    pub state: String,
    /// The start of `query`: the last query the session received.
    pub query: String,
}

/// What the control connection learnt of the probe's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerView {
    /// Not asked: the backend is not ours alone (a pooler's), so its row says nothing of our
    /// flow.
    NotOurs,
    /// No answer (error or timeout on the control connection).
    Unanswered,
    /// No such session any more.
    Missing,
    Row(ActivityRow),
}

/// The client kernel's side, read twice on the probe's socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketEvidence {
    /// Read right after the control connection's answer arrived.
    pub at_answer: TcpState,
    /// Read last.
    pub now: TcpState,
    /// How long `now.retransmits` has been above `at_answer.retransmits`, from the first
    /// reading that showed it to `now`'s (the client's monotonic clock): no longer than the
    /// time since that retransmission went out.
    pub retransmitted_for: Duration,
    /// The control query's round trip (the client's monotonic clock).
    pub control_round_trip: Duration,
}

/// The verdict on use `sent` of the connection whose queries start with `tag`, from what the
/// server showed and the socket's evidence (module doc: positive evidence only).
pub fn verdict(
    sent: UseMarker,
    tag: &str,
    server: &ServerView,
    socket: Option<&SocketEvidence>,
) -> Arrival {
    match server_says(sent, tag, server) {
        Arrival::NeverArrived => {}
        other => return other,
    }
    let Some(socket) = socket else {
        return Arrival::Unknown;
    };
    let unacked = socket.at_answer.unacked_bytes > 0 && socket.now.unacked_bytes > 0;
    let retransmitted_since_answer = socket.now.retransmits > socket.at_answer.retransmits;
    let long_enough = socket.retransmitted_for >= socket.control_round_trip + ACK_SLACK;
    if unacked
        && socket.now.retransmits >= MIN_RETRANSMITS
        && retransmitted_since_answer
        && long_enough
    {
        Arrival::NeverArrived
    } else {
        Arrival::Unknown
    }
}

/// The server's side alone: `NeverArrived` when its row says the use never reached the backend
/// (idle, last query one of ours from before `sent`), `Arrived` when it shows `sent`.
fn server_says(sent: UseMarker, tag: &str, server: &ServerView) -> Arrival {
    let ServerView::Row(row) = server else {
        return Arrival::Unknown;
    };
    let earlier = match UseMarker::in_query(&row.query, tag) {
        LastQuery::Use(used) if used == sent => return Arrival::Arrived,
        LastQuery::Use(used) => used < sent,
        LastQuery::BeforeAnyUse => true,
        LastQuery::NotOurs => false,
    };
    if earlier && row.state == "idle" {
        Arrival::NeverArrived
    } else {
        Arrival::Unknown
    }
}

/// The control query that reads `backend`'s row: state and the start of its last query, and
/// nothing of the server's clock. `None` for a backend that is not ours alone (or unnamed).
/// Simple protocol with literals, as the ghost check's (a pooler in transaction mode may run a
/// prepared statement's parts on different server connections).
pub fn activity_query(backend: &BackendIdentity) -> Option<String> {
    if !backend.exclusive || backend.pid == 0 {
        return None;
    }
    Some(format!(
        "SELECT coalesce(state, ''), left(query, 256) FROM pg_stat_activity \
         WHERE pid = {} AND backend_start::text = {} AND application_name = {}",
        backend.pid,
        sql_literal(&backend.backend_start),
        sql_literal(&backend.application_name),
    ))
}

/// Reads `backend`'s row on `control`.
pub async fn fetch(
    control: &ProbeConnection,
    backend: &BackendIdentity,
    timeout: Duration,
) -> ServerView {
    let Some(sql) = activity_query(backend) else {
        return ServerView::NotOurs;
    };
    match control.simple_query(&sql, timeout).await {
        Err(_) => ServerView::Unanswered,
        Ok(rows) => match rows.first() {
            None => ServerView::Missing,
            Some(row) => {
                let column = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
                ServerView::Row(ActivityRow {
                    state: column(0),
                    query: column(1),
                })
            }
        },
    }
}

/// A use about to be sent, and what [`confirm`] needs to judge it: take it with [`Sent::next`]
/// before [`ProbeConnection::probe`], and confirm while that use is in flight.
#[derive(Clone, Debug)]
pub struct Sent {
    pub marker: UseMarker,
    pub socket: SocketId,
    pub tag: String,
    pub backend: BackendIdentity,
}

impl Sent {
    /// The next use of `probe`; `None` when its socket is not a TCP one the kernel named.
    pub fn next(probe: &ProbeConnection) -> Option<Sent> {
        Some(Sent {
            marker: probe.next_use(),
            socket: probe.socket()?,
            tag: probe.tag().to_string(),
            backend: probe.backend.clone(),
        })
    }
}

/// What [`confirm`] found, with what it saw (for logs and the lab's measurements).
#[derive(Clone, Debug)]
pub struct Confirmation {
    pub arrival: Arrival,
    /// `None` when the control connection was not asked.
    pub server: Option<ServerView>,
    pub socket: Option<SocketEvidence>,
}

/// [`confirm_with`], reading the session's row on `control` ([`fetch`]).
pub async fn confirm(
    sent: &Sent,
    control: &ProbeConnection,
    limit: Duration,
    query_timeout: Duration,
) -> Confirmation {
    confirm_with(
        sent,
        |backend| async move { fetch(control, &backend, query_timeout).await },
        limit,
    )
    .await
}

/// Watches use `sent` (already sent, or about to be) for at most `limit`: once its bytes were
/// retransmitted unacknowledged, asks `fetch_row` for the session's row (the engine's goes
/// through the control connection's task); if that says the use never reached the backend,
/// waits for a retransmission after the answer and decides. Healthy flows cost no control
/// query, nor does a pooler's backend. Returns as soon as the verdict is known, `Unknown` at
/// `limit`.
pub async fn confirm_with<F, R>(sent: &Sent, fetch_row: F, limit: Duration) -> Confirmation
where
    F: FnOnce(BackendIdentity) -> R,
    R: Future<Output = ServerView>,
{
    let deadline = Instant::now() + limit;
    let mut found = Confirmation {
        arrival: Arrival::Unknown,
        server: None,
        socket: None,
    };
    if !sent.backend.exclusive {
        found.server = Some(ServerView::NotOurs);
        return found;
    }
    if wait_for(sent, deadline, |s| s.retransmits >= 1)
        .await
        .is_none()
    {
        return found;
    }
    let asked = Instant::now();
    let server = fetch_row(sent.backend.clone()).await;
    let control_round_trip = asked.elapsed();
    found.server = Some(server.clone());
    if server_says(sent.marker, &sent.tag, &server) != Arrival::NeverArrived {
        found.arrival = verdict(sent.marker, &sent.tag, &server, None);
        return found;
    }
    let Some(at_answer) = read(&sent.socket).await else {
        return found;
    };
    let Some((mut now, first)) =
        wait_for(sent, deadline, |s| s.retransmits > at_answer.retransmits).await
    else {
        return found;
    };
    loop {
        let evidence = SocketEvidence {
            at_answer,
            now,
            retransmitted_for: first.elapsed(),
            control_round_trip,
        };
        found.socket = Some(evidence);
        found.arrival = verdict(sent.marker, &sent.tag, &server, Some(&evidence));
        if found.arrival != Arrival::Unknown || now.unacked_bytes == 0 || Instant::now() >= deadline
        {
            return found;
        }
        tokio::time::sleep(POLL).await;
        match read(&sent.socket).await {
            Some(state) => now = state,
            None => return found,
        }
    }
}

/// Sends `query` as the next use of `probe` ([`ProbeConnection::probe`]) with [`confirm_with`]
/// racing it: if the server confirms the use never arrived before the answer or the timeout,
/// the connection is aborted and the death reported at once, as the silent drop it is
/// ([`DeathCause::Timeout`], `never_arrived`), with the real time to the verdict. `Arrived` and
/// `Unknown` leave the use to its answer or its timeout, as without the confirmation. A
/// pooler's backend, or a socket the kernel does not name, is probed alone: nothing read,
/// no control query.
pub async fn probe_confirmed<F, R>(
    probe: &mut ProbeConnection,
    query: &str,
    query_timeout: Duration,
    fetch_row: F,
) -> ProbeOutcome
where
    F: FnOnce(BackendIdentity) -> R,
    R: Future<Output = ServerView>,
{
    let Some(sent) = Sent::next(probe).filter(|s| s.backend.exclusive) else {
        return probe.probe(query, query_timeout).await;
    };
    let never_arrived = async {
        let found = confirm_with(&sent, fetch_row, query_timeout).await;
        if found.arrival != Arrival::NeverArrived {
            // No positive evidence: the use keeps its answer or its timeout.
            std::future::pending::<()>().await;
        }
        found
    };
    let found = tokio::select! {
        // An answer that is there wins over a verdict that is too.
        biased;
        outcome = probe.probe(query, query_timeout) => return outcome,
        found = never_arrived => found,
    };
    probe.abort();
    let retransmits = found.socket.map_or(0, |s| s.now.retransmits);
    ProbeOutcome::Died {
        cause: DeathCause::Timeout,
        query_error: format!(
            "the server confirmed the query never arrived: its session stayed idle after an \
             earlier query while the query's bytes went unacknowledged through {retransmits} \
             retransmissions; connection aborted"
        ),
        time_to_failure: probe.last_sent.elapsed(),
        never_arrived: true,
    }
}

/// Polls the socket until `ready` holds with bytes still unacknowledged: that reading and when
/// it was taken. `None` at `deadline` or when the socket cannot be read. (Acknowledged bytes do
/// not end the wait: the use may not be written yet.)
async fn wait_for(
    sent: &Sent,
    deadline: Instant,
    ready: impl Fn(&TcpState) -> bool,
) -> Option<(TcpState, Instant)> {
    loop {
        let state = read(&sent.socket).await?;
        let at = Instant::now();
        if state.unacked_bytes > 0 && ready(&state) {
            return Some((state, at));
        }
        if at >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The socket's state, read off the async threads; `None` if it cannot be read or is gone.
async fn read(socket: &SocketId) -> Option<TcpState> {
    let socket = *socket;
    tokio::task::spawn_blocking(move || tcp_state::read(&socket))
        .await
        .ok()?
        .ok()?
}

#[cfg(test)]
mod tests;
