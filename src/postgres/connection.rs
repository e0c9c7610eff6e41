//! A probe connection: a tokio-postgres client whose connection task reports how and when it
//! ended, plus the server's identity of the session (pid and start time) for the ghost check.
//!
//! The query error on a dead connection only says `kind: Closed`; the connection task's result
//! says whether it was a timeout, a reset, an EOF or a FATAL from the server. A probe therefore
//! waits briefly for the task's result after a failed query and keeps both.
//!
//! Each attempt carries its own `application_name` ([`Attempt`]): an attempt we gave up on may
//! still become a session on the server (a stalled server finishes the startup after our
//! timeout, and a box that forgot the flow drops our FIN), and the nonce is how that session is
//! found and terminated although we never learnt its pid.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::{Client, SimpleQueryMessage};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::classify::{self, ConnectErrorKind};
use super::dsn::SslMode;
use super::tcp_state::SocketId;
use super::tls::CaBundle;
use super::{startup, tls};
use crate::model::DeathCause;

/// How long a failed query waits for the connection task to report its cause.
const CAUSE_WAIT: Duration = Duration::from_secs(2);

/// What this layer needs to know of a target to open its connections: the configuration's
/// target ([`crate::config::TargetConfig::connect_spec`]) reduced to the connection settings,
/// so that the driver layer sits below the configuration instead of reading it.
#[derive(Clone)]
pub struct ConnectSpec {
    /// Driver settings with the password filled in (never printed).
    pub driver: tokio_postgres::Config,
    pub sslmode: SslMode,
    /// Trusted CAs for `verify-ca` and `verify-full`.
    pub ca: Option<CaBundle>,
    pub connect_timeout: Duration,
    pub tcp_user_timeout: Duration,
    /// Send the password when the server asks for it in clear text on a connection without TLS.
    pub allow_cleartext_password: bool,
}

/// What the driver needs to open a target's connections, built once per target.
#[derive(Clone)]
pub struct Connector {
    driver: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    connect_timeout: Duration,
    /// `allow_cleartext_password`: else a cleartext-password request without TLS is refused.
    allow_cleartext: bool,
}

impl Connector {
    pub fn new(target: &ConnectSpec) -> Result<Self, tls::TlsSetupError> {
        let (tls, sslmode) = tls::connector(target.sslmode, target.ca.as_ref())?;
        let mut driver = target.driver.clone();
        driver
            .ssl_mode(sslmode)
            .application_name(super::APPLICATION_NAME)
            .connect_timeout(target.connect_timeout)
            .tcp_user_timeout(target.tcp_user_timeout)
            // Keepalives reset many middleboxes' idle timers and would hide the very drop we
            // measure; only the keepalive probe turns them on.
            .keepalives(false);
        Ok(Connector {
            driver,
            tls,
            connect_timeout: target.connect_timeout,
            allow_cleartext: target.allow_cleartext_password,
        })
    }

    /// Opens a connection as `attempt`. `keepalive`: TCP keepalive idle/interval for the
    /// keepalive probe. `on_end` runs once when the connection task finishes, however it
    /// finishes.
    pub async fn open(
        &self,
        attempt: &Attempt,
        keepalive: Option<Duration>,
        on_end: impl FnOnce(ConnectionEnd) + Send + 'static,
    ) -> Result<ProbeConnection, ConnectError> {
        let mut driver = self.driver.clone();
        driver.application_name(&attempt.application_name);
        if let Some(interval) = keepalive {
            driver
                .keepalives(true)
                .keepalives_idle(interval)
                .keepalives_interval(interval)
                .keepalives_retries(3);
        }
        let started = Instant::now();
        // The driver's connect_timeout covers only the TCP connect; bound TLS and startup too.
        // When this fires, the TCP connection was made (the driver's own timeout fires first
        // otherwise) and the startup may reach a stalled server that finishes it later: the
        // attempt may linger.
        let connected = tokio::time::timeout(
            self.connect_timeout + Duration::from_millis(500),
            startup::connect(&driver, self.tls.clone(), self.allow_cleartext),
        )
        .await;
        let (client, connection, socket) = match connected {
            Err(_) => {
                return Err(ConnectError {
                    kind: ConnectErrorKind::Timeout,
                    detail: "timed out during connect, TLS or startup".into(),
                    lingers: true,
                })
            }
            // The driver saw the attempt fail (no TCP connection within connect_timeout, a
            // reset, a refusal by the server): nothing of it is left to finish.
            Ok(Err(e)) => {
                return Err(ConnectError {
                    kind: classify::startup_error(&e),
                    detail: classify::chain_text(&e),
                    lingers: false,
                })
            }
            Ok(Ok(opened)) => opened,
        };
        let (ended_tx, ended_rx) = watch::channel(None);
        let task = tokio::spawn(async move {
            let result = connection.await;
            let end = ConnectionEnd {
                at: Instant::now(),
                cause: classify::connection_end(&result),
                detail: result.err().map(|e| classify::chain_text(&e)),
            };
            ended_tx.send_replace(Some(end.clone()));
            on_end(end);
        });
        let mut conn = ProbeConnection {
            client,
            tag: query_tag(&attempt.application_name),
            uses: 0,
            socket,
            fatal: std::sync::Mutex::new(None),
            ended: ended_rx,
            task,
            backend: BackendIdentity::default(),
            last_active: Instant::now(),
            last_sent: Instant::now(),
            connect_duration: started.elapsed(),
        };
        conn.read_identity(self.connect_timeout, started, attempt)
            .await?;
        Ok(conn)
    }
}

impl ProbeConnection {
    /// The first query: who the server says this session is ([`BackendIdentity`]). An error
    /// leaves a session behind that exists (dropping the connection says goodbye, but a box
    /// that forgot the flow drops that): the attempt may linger.
    async fn read_identity(
        &mut self,
        timeout: Duration,
        started: Instant,
        attempt: &Attempt,
    ) -> Result<(), ConnectError> {
        self.last_sent = Instant::now();
        let query = format!("{}{IDENTITY_QUERY}", self.tag);
        let rows = match tokio::time::timeout(timeout, self.client.simple_query(&query)).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                return Err(ConnectError {
                    kind: ConnectErrorKind::ServerError,
                    detail: format!("reading the session identity: {}", classify::chain_text(&e)),
                    lingers: true,
                })
            }
            Err(_) => {
                return Err(ConnectError {
                    kind: ConnectErrorKind::Timeout,
                    detail: "timed out reading the session identity".into(),
                    lingers: true,
                })
            }
        };
        if let Some(row) = first_row(&rows) {
            // A backend older than our connection was not started for us: a pooler
            // (PgBouncer, RDS Proxy) handed us one of its server connections.
            let age: f64 = row.get(2).and_then(|a| a.parse().ok()).unwrap_or(f64::MAX);
            let own_window = started.elapsed() + BACKEND_AGE_SLACK;
            self.backend = BackendIdentity {
                pid: row.get(0).and_then(|p| p.parse().ok()).unwrap_or(0),
                backend_start: row.get(1).unwrap_or_default().to_string(),
                exclusive: age <= own_window.as_secs_f64(),
                application_name: attempt.application_name.clone(),
            };
        }
        self.last_active = Instant::now();
        Ok(())
    }
}

/// The comment every query on a connection starts with: its `application_name`, nonce
/// included. `pg_stat_activity.query` shows the last query a session ran, so a session whose
/// last query starts with it was used by nobody after us, however late the server ran that
/// query (a stalled server runs our last ping when it resumes; by the clock, that looked like
/// someone else's use, and the session was left behind). At the start, so that the server's
/// truncation of long queries never cuts it.
pub fn query_tag(application_name: &str) -> String {
    format!("/* {application_name} */ ")
}

/// Which use of a probe connection a query is: the comment after the connection's
/// [`query_tag`] in the query of its `n`th use (from 1; the identity query carries none). The
/// server's `pg_stat_activity.query` then says which use it last received, without any clock:
/// the evidence [`super::arrival`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UseMarker(pub u64);

impl UseMarker {
    /// The comment, as it follows the tag.
    pub fn text(self) -> String {
        format!("/* use {} */ ", self.0)
    }

    /// Which of our queries `query` (a `pg_stat_activity.query`) is, on the connection whose
    /// queries start with `tag`.
    pub fn in_query(query: &str, tag: &str) -> LastQuery {
        let Some(rest) = query.strip_prefix(tag) else {
            return LastQuery::NotOurs;
        };
        let Some(rest) = rest.strip_prefix("/* use ") else {
            return LastQuery::BeforeAnyUse;
        };
        match rest.split_once(" */").map(|(n, _)| n.parse()) {
            Some(Ok(n)) => LastQuery::Use(UseMarker(n)),
            _ => LastQuery::NotOurs,
        }
    }
}

/// What a session's last query text says about whose it is ([`UseMarker::in_query`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LastQuery {
    /// Ours, sent before any use (the identity query).
    BeforeAnyUse,
    /// Ours: this use.
    Use(UseMarker),
    /// Not ours (no tag: another client's, or `<insufficient privilege>`), or garbled.
    NotOurs,
}

/// The first query of every connection: its pid, start and age (see [`BackendIdentity`]).
pub const IDENTITY_QUERY: &str = "SELECT pg_backend_pid()::text, backend_start::text, \
     extract(epoch FROM now() - backend_start)::text \
     FROM pg_stat_activity WHERE pid = pg_backend_pid()";

/// How much older than our connection attempt a backend may look and still have been started
/// for it (clock granularity between the server's `backend_start` and `now()`).
pub const BACKEND_AGE_SLACK: Duration = Duration::from_secs(1);

/// One connection attempt: the `application_name` it connects with (ours, `/`, a random
/// nonce) and when it started. Its session, if the attempt is given up but the server still
/// finishes it, is found by that name alone (see [`Attempt::identity`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub application_name: String,
    pub started: Instant,
}

impl Attempt {
    pub fn new() -> Attempt {
        Attempt {
            application_name: format!("{}/{:016x}", super::APPLICATION_NAME, rand::random::<u64>()),
            started: Instant::now(),
        }
    }

    /// The session this attempt may have left, as the ghost check takes it: no pid (never
    /// learnt), only the name; checked against sessions started since the attempt began.
    pub fn identity(&self) -> BackendIdentity {
        BackendIdentity {
            pid: 0,
            backend_start: String::new(),
            exclusive: true,
            application_name: self.application_name.clone(),
        }
    }
}

impl Default for Attempt {
    fn default() -> Self {
        Attempt::new()
    }
}

/// The server's name for a session: pid alone is reused, pid + start time is not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendIdentity {
    /// 0: an [`Attempt`]'s session, whose pid we never learnt.
    pub pid: i32,
    pub backend_start: String,
    /// The server started this backend for our connection, so it is ours alone. False behind a
    /// pooler that handed us an older server connection: that session is the pooler's, and
    /// the exporter never terminates it.
    pub exclusive: bool,
    /// The attempt's `application_name` (with its nonce).
    pub application_name: String,
}

impl BackendIdentity {
    /// An [`Attempt`]'s session: known by its name only.
    pub fn is_attempt(&self) -> bool {
        self.pid == 0 && !self.application_name.is_empty()
    }
}

/// How the connection task ended.
#[derive(Clone, Debug)]
pub struct ConnectionEnd {
    pub at: Instant,
    /// `None`: a clean close we asked for.
    pub cause: Option<DeathCause>,
    /// The driver's error chain (no secrets: the driver never prints the password).
    pub detail: Option<String>,
}

/// A failed connection attempt, classified.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct ConnectError {
    pub kind: ConnectErrorKind,
    pub detail: String,
    /// The attempt may have left a session the server lists (see [`Attempt`]): it counts
    /// against the budget until the server is seen without it.
    pub lingers: bool,
}

/// An open probe connection.
pub struct ProbeConnection {
    client: Client,
    /// What every query on it starts with (see [`query_tag`]).
    tag: String,
    /// How many uses ([`ProbeConnection::probe`]) were sent: the last one's [`UseMarker`].
    uses: u64,
    /// Its TCP socket (`None` over a Unix socket, or if the kernel would not say).
    socket: Option<SocketId>,
    /// A FATAL one of our queries received (see [`ProbeConnection::death_cause`]).
    fatal: std::sync::Mutex<Option<DeathCause>>,
    ended: watch::Receiver<Option<ConnectionEnd>>,
    task: JoinHandle<()>,
    pub backend: BackendIdentity,
    /// When the last answer arrived. The path's idle clock started between `last_sent` and
    /// this; on a loaded machine the answer can reach us a good fraction of a second after
    /// the server sent it, so each observation is bounded on its safe side (see
    /// [`ProbeConnection::idle_survived`] and [`ProbeConnection::idle_at_death`]).
    pub last_active: Instant,
    /// When the last query was sent.
    pub last_sent: Instant,
    pub connect_duration: Duration,
}

/// What one use of a probe connection found.
#[derive(Clone, Debug)]
pub enum ProbeOutcome {
    /// Answered; the connection is alive and idle again from now.
    Alive,
    /// The connection had already ended before the probe was sent: the death happened while
    /// idle, at `end.at`.
    ClosedWhileIdle { end: ConnectionEnd },
    /// The probe found it dead. `cause` comes from the connection task when it reported in time,
    /// else from the query error; `query_error` is what an application would have seen, or,
    /// for a death the server confirmed ([`super::arrival::probe_confirmed`]), what showed it.
    Died {
        cause: DeathCause,
        query_error: String,
        time_to_failure: Duration,
        /// The server confirmed the query never arrived (a silent death, known before any
        /// timeout): its session is idle and nobody's, so the ghost check need not wait.
        never_arrived: bool,
    },
}

impl ProbeOutcome {
    /// The `outcome` label of probe uses.
    pub fn label(&self) -> &'static str {
        match self {
            ProbeOutcome::Alive => "ok",
            ProbeOutcome::ClosedWhileIdle { .. } => "closed_while_idle",
            ProbeOutcome::Died { cause, .. } => cause.kind(),
        }
    }
}

impl ProbeConnection {
    /// How the connection ended, if it has.
    pub fn ended(&self) -> Option<ConnectionEnd> {
        self.ended.borrow().clone()
    }

    /// The idle time a survival at `at` proves the path tolerates: counted from the answer, the
    /// latest moment the path can have seen traffic.
    pub fn idle_survived(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.last_active)
    }

    /// The idle time a death at `at` proves is enough to kill: counted from the query, the
    /// earliest moment the path can have seen traffic. (Counting from the answer, a 0.35 s
    /// scheduling delay once put a 3 s threshold's upper bound at 2.65 s.)
    pub fn idle_at_death(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.last_sent)
    }

    /// Sends the probe query and classifies what happens. Never takes longer than
    /// `query_timeout` + a short wait for the cause.
    pub async fn probe(&mut self, query: &str, query_timeout: Duration) -> ProbeOutcome {
        if let Some(end) = self.ended() {
            return ProbeOutcome::ClosedWhileIdle { end };
        }
        let sent = Instant::now();
        self.last_sent = sent;
        self.uses += 1;
        let query = format!("{}{}{query}", self.tag, UseMarker(self.uses).text());
        match tokio::time::timeout(query_timeout, self.client.simple_query(&query)).await {
            Ok(Ok(_)) => {
                self.last_active = Instant::now();
                ProbeOutcome::Alive
            }
            Ok(Err(query_error)) => {
                let end = self.wait_for_end(CAUSE_WAIT).await;
                if let Some(end) = end.as_ref().filter(|e| e.at < sent) {
                    return ProbeOutcome::ClosedWhileIdle { end: end.clone() };
                }
                // A FATAL that arrives as the answer to our query is the most precise cause
                // (the task then only sees the EOF that follows); otherwise trust the task.
                let cause = if query_error.as_db_error().is_some() {
                    classify::death_cause(&query_error)
                } else {
                    end.and_then(|e| e.cause)
                        .unwrap_or_else(|| classify::death_cause(&query_error))
                };
                ProbeOutcome::Died {
                    cause,
                    query_error: format!("{query_error:?}"),
                    time_to_failure: sent.elapsed(),
                    never_arrived: false,
                }
            }
            Err(_) => {
                // Still retransmitting into a black hole: that is the silent drop.
                self.task.abort();
                ProbeOutcome::Died {
                    cause: DeathCause::Timeout,
                    query_error: format!("no answer within {query_timeout:?}"),
                    time_to_failure: sent.elapsed(),
                    never_arrived: false,
                }
            }
        }
    }

    /// A round trip (`SELECT 1`) on the control connection; on failure, why the connection
    /// died ([`ProbeConnection::death_cause`], the task's result waited for briefly): a FATAL
    /// that answered this or an earlier query of ours (an administrator's termination that
    /// lands on a query in flight reaches the task only as EOF), else the task's result, else
    /// [`DeathCause::Error`]. Never a guessed timeout: only a query that got no answer is one.
    pub async fn ping(&self, query_timeout: Duration) -> Result<(), DeathCause> {
        if self.ended().is_some() {
            return Err(self.death_cause());
        }
        let ping = format!("{}SELECT 1", self.tag);
        match tokio::time::timeout(query_timeout, self.client.simple_query(&ping)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                self.note_fatal(&e);
                let mut ended = self.ended.clone();
                let _ = tokio::time::timeout(CAUSE_WAIT, ended.wait_for(|e| e.is_some())).await;
                Err(self.death_cause())
            }
            Err(_) => Err(DeathCause::Timeout),
        }
    }

    /// Why the connection died: the FATAL a query of ours received, if one did (the
    /// connection task then only sees the EOF that follows), else the task's own result;
    /// `error` while neither says.
    pub fn death_cause(&self) -> DeathCause {
        let fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone();
        fatal
            .or_else(|| self.ended().and_then(|end| end.cause))
            .unwrap_or(DeathCause::Error)
    }

    /// Keeps a FATAL (the server ends the session) that answered one of our queries.
    fn note_fatal(&self, error: &tokio_postgres::Error) {
        let fatal = error.as_db_error().is_some_and(|db| {
            matches!(
                db.parsed_severity(),
                Some(
                    tokio_postgres::error::Severity::Fatal | tokio_postgres::error::Severity::Panic
                )
            )
        });
        if fatal {
            *self.fatal.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(classify::death_cause(error));
        }
    }

    /// The marker the next [`ProbeConnection::probe`] sends: take it before that use to ask,
    /// while it is in flight, whether it arrived ([`super::arrival`]).
    pub fn next_use(&self) -> UseMarker {
        UseMarker(self.uses + 1)
    }

    /// Stops the connection's task at once: a flow the server confirmed dead would only go on
    /// retransmitting (and a goodbye would be dropped like the rest).
    pub fn abort(&self) {
        self.task.abort();
    }

    /// Its TCP socket, to read the kernel's state of it ([`super::tcp_state`]).
    pub fn socket(&self) -> Option<SocketId> {
        self.socket
    }

    /// What every query on it starts with (see [`query_tag`]).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The driver client, for the control connection's parameterised queries.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs a statement on this connection (the control connection's work), bounded.
    pub async fn simple_query(
        &self,
        sql: &str,
        timeout: Duration,
    ) -> Result<Vec<Vec<Option<String>>>, String> {
        let sql = format!("{}{sql}", self.tag);
        match tokio::time::timeout(timeout, self.client.simple_query(&sql)).await {
            Ok(Ok(messages)) => Ok(messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()),
            Ok(Err(e)) => {
                self.note_fatal(&e);
                Err(classify::chain_text(&e))
            }
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    /// Closes the connection: a live one sends Terminate so the server sees it go; a dead one
    /// is simply dropped (the ghost check deals with what the server still holds).
    pub async fn close(self) {
        let ProbeConnection { client, task, .. } = self;
        drop(client);
        let abort = task.abort_handle();
        if tokio::time::timeout(Duration::from_millis(500), task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    async fn wait_for_end(&mut self, limit: Duration) -> Option<ConnectionEnd> {
        let ended = &mut self.ended;
        let _ = tokio::time::timeout(limit, ended.wait_for(|e| e.is_some())).await;
        let end = ended.borrow().clone();
        end
    }
}

fn first_row(messages: &[SimpleQueryMessage]) -> Option<&tokio_postgres::SimpleQueryRow> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    })
}

/// Shared handle type for targets' connectors.
pub type SharedConnector = Arc<Connector>;
