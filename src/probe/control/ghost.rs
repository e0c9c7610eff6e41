//! The ghost check: whether the server still lists a dead session of ours (a probe's, an
//! earlier control connection's, or an attempt we gave up on), and terminating it when it is
//! ours beyond doubt.

use std::time::Duration;

use tokio::time::Instant;

use crate::postgres::connection::{query_tag, BackendIdentity, ProbeConnection, BACKEND_AGE_SLACK};
use crate::postgres::sql_literal;

/// What the server says about a dead probe's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GhostVerdict {
    /// The server no longer lists it.
    Gone,
    /// It was still listed (a ghost) and we terminated it.
    Reaped,
    /// Still listed and not terminated (reaping off, or refused).
    Alive,
    /// Still listed, but busy or its last query is someone else's: a pooler's server
    /// connection now serving another client. Not ours any more; never terminated.
    Reused,
    /// The control connection is down: ask again later.
    Unknown,
}

impl GhostVerdict {
    /// The verdict in a log line.
    pub fn as_str(self) -> &'static str {
        match self {
            GhostVerdict::Gone => "gone",
            GhostVerdict::Reaped => "reaped",
            GhostVerdict::Alive => "alive",
            GhostVerdict::Reused => "reused by a pooler",
            GhostVerdict::Unknown => "unknown",
        }
    }
}

/// Whether the server still lists a dead session of ours, and if so (and reaping is on)
/// terminates it. Two guards keep this from ever ending someone else's session: a backend
/// the server did not start for our connection (a pooler's) is not ours to judge; and a
/// session the server shows busy, or whose last query is not one of ours, is not our ghost but
/// a pooler's server connection serving another client (a pool that grew while we connected
/// started it for us): [`GhostVerdict::Reused`], never terminated.
///
/// Both queries use the simple protocol with the values as literals: behind a pooler in
/// transaction mode a prepared statement's parse and execute can reach different server
/// connections ("prepared statement does not exist"), which would look like a lost control
/// connection.
pub(super) async fn check(
    conn: &ProbeConnection,
    backend: &BackendIdentity,
    idle_since: Instant,
    reap: bool,
    query_timeout: Duration,
    target_name: &str,
) -> GhostVerdict {
    let Some((filter, unused_since_us)) = ghost_filter(backend, idle_since) else {
        return GhostVerdict::Gone;
    };
    let listed = conn
        .simple_query(
            &format!("SELECT ({unused_since_us})::text {filter}"),
            query_timeout,
        )
        .await;
    let rows = match listed {
        Ok(rows) => rows,
        Err(_) => return GhostVerdict::Unknown,
    };
    match rows.first().and_then(|row| row.first()) {
        None => return GhostVerdict::Gone,
        Some(Some(unused)) if unused == "true" => {}
        Some(_) => return GhostVerdict::Reused,
    }
    if !reap {
        return GhostVerdict::Alive;
    }
    let reaped = conn
        .simple_query(
            &format!("SELECT pg_terminate_backend(pid)::text {filter} AND {unused_since_us}"),
            query_timeout,
        )
        .await;
    match reaped {
        Ok(rows)
            if rows
                .iter()
                .any(|r| r.first() == Some(&Some("true".to_string()))) =>
        {
            GhostVerdict::Reaped
        }
        // Listed a moment ago, but now gone or busy (or used after us): not terminated.
        Ok(_) => GhostVerdict::Alive,
        Err(e) if conn.ended().is_none() => {
            tracing::warn!(target_name = %target_name, pid = backend.pid, error = %e, "cannot terminate ghost session");
            GhostVerdict::Alive
        }
        Err(_) => GhostVerdict::Unknown,
    }
}

/// Which rows of `pg_stat_activity` are `backend`'s session, and which of those nobody used
/// after us; `None` for a session never ours to judge (a pooler's backend, or no name at all).
///
/// A session we learnt the identity of is matched by pid + backend_start + its name. An
/// abandoned [`Attempt`](crate::postgres::connection::Attempt)'s is matched by its name (the
/// nonce is ours alone) and only if the server started it after the attempt began
/// (`idle_since`; never a pooler's older server connection). Unused: idle, and the last query it
/// ran is one of ours (each starts with the connection's [`query_tag`]), or it ran none.
fn ghost_filter(backend: &BackendIdentity, idle_since: Instant) -> Option<(String, String)> {
    let name = backend.application_name.as_str();
    if name.is_empty() || !backend.exclusive {
        return None;
    }
    let tag = query_tag(name);
    let unused = format!(
        "state = 'idle' AND (query_start IS NULL OR left(query, {}) = {})",
        tag.chars().count(),
        sql_literal(&tag)
    );
    let filter = if backend.is_attempt() {
        let started_before = idle_since.elapsed() + BACKEND_AGE_SLACK;
        format!(
            "FROM pg_stat_activity WHERE application_name = {} \
             AND backend_start >= now() - make_interval(secs => {:.3})",
            sql_literal(name),
            started_before.as_secs_f64(),
        )
    } else {
        format!(
            "FROM pg_stat_activity WHERE pid = {} AND backend_start::text = {} \
             AND application_name = {}",
            backend.pid,
            sql_literal(&backend.backend_start),
            sql_literal(name),
        )
    };
    Some((filter, unused))
}
