//! One place that turns driver errors into the bounded label values the metrics use.
//!
//! A query on a dead connection fails with `kind: Closed` whatever killed it; the cause lives in
//! the result of the connection task (see `connection.rs`). So deaths are classified from that
//! result, and the query's own error is kept only as supporting detail.

use std::error::Error as _;
use std::fmt;
use std::io;

use crate::model::DeathCause;

/// Classifies the result the connection task ended with. `None`: it ended cleanly because we
/// closed it.
pub fn connection_end(result: &Result<(), tokio_postgres::Error>) -> Option<DeathCause> {
    let error = result.as_ref().err()?;
    Some(death_cause(error))
}

/// Classifies a driver error as a cause of death.
pub fn death_cause(error: &tokio_postgres::Error) -> DeathCause {
    if let Some(db) = error.as_db_error() {
        return DeathCause::ServerTerminated {
            sqlstate: bounded_sqlstate(db.code().code()),
        };
    }
    if error.is_closed() {
        return DeathCause::Eof;
    }
    match io_kind(error) {
        Some(io::ErrorKind::ConnectionReset)
        | Some(io::ErrorKind::ConnectionAborted)
        | Some(io::ErrorKind::BrokenPipe) => DeathCause::Reset,
        Some(io::ErrorKind::TimedOut) => DeathCause::Timeout,
        Some(io::ErrorKind::UnexpectedEof) => DeathCause::Eof,
        _ => DeathCause::Error,
    }
}

/// The `kind` label of connect errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectErrorKind {
    Refused,
    Timeout,
    Dns,
    Tls,
    Auth,
    TooManyConnections,
    ServerError,
    Io,
    Other,
}

impl ConnectErrorKind {
    pub fn label(self) -> &'static str {
        match self {
            ConnectErrorKind::Refused => "refused",
            ConnectErrorKind::Timeout => "timeout",
            ConnectErrorKind::Dns => "dns",
            ConnectErrorKind::Tls => "tls",
            ConnectErrorKind::Auth => "auth",
            ConnectErrorKind::TooManyConnections => "too_many_connections",
            ConnectErrorKind::ServerError => "server_error",
            ConnectErrorKind::Io => "io",
            ConnectErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ConnectErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Classifies a failed connection attempt.
pub fn connect_error(error: &tokio_postgres::Error) -> ConnectErrorKind {
    if let Some(db) = error.as_db_error() {
        return match db.code().code() {
            "28P01" | "28000" => ConnectErrorKind::Auth,
            "53300" => ConnectErrorKind::TooManyConnections,
            _ => ConnectErrorKind::ServerError,
        };
    }
    let text = chain_text(error);
    if text.contains("TLS") || text.contains("tls") || text.contains("certificate") {
        return ConnectErrorKind::Tls;
    }
    if text.contains("authentication") || text.contains("password missing") {
        return ConnectErrorKind::Auth;
    }
    if text.contains("lookup address") || text.contains("Name or service not known") {
        return ConnectErrorKind::Dns;
    }
    match io_kind(error) {
        Some(io::ErrorKind::ConnectionRefused) => ConnectErrorKind::Refused,
        Some(io::ErrorKind::TimedOut) => ConnectErrorKind::Timeout,
        Some(_) => ConnectErrorKind::Io,
        None if text.contains("timeout") => ConnectErrorKind::Timeout,
        None => ConnectErrorKind::Other,
    }
}

/// Classifies a failed [`startup::connect`](super::startup::connect).
pub fn startup_error(error: &super::startup::StartupError) -> ConnectErrorKind {
    use super::startup::StartupError;
    match error {
        StartupError::Lookup { .. } => ConnectErrorKind::Dns,
        StartupError::Connect(e) => match e.kind() {
            io::ErrorKind::ConnectionRefused => ConnectErrorKind::Refused,
            io::ErrorKind::TimedOut => ConnectErrorKind::Timeout,
            _ => ConnectErrorKind::Io,
        },
        StartupError::Tls(_) => ConnectErrorKind::Tls,
        StartupError::Driver(e) => connect_error(e),
        StartupError::Cleartext => ConnectErrorKind::Auth,
        StartupError::SessionAttrs(_) => ConnectErrorKind::ServerError,
    }
}

/// The error and its causes as one line (for logs; drivers never put passwords in these).
pub fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn io_kind(error: &tokio_postgres::Error) -> Option<io::ErrorKind> {
    let mut source = error.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        source = s.source();
    }
    None
}

/// Keeps the `sqlstate` label bounded: codes of the classes that end sessions pass through,
/// anything else becomes `other`.
pub fn bounded_sqlstate(code: &str) -> String {
    let well_formed = code.len() == 5
        && code
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
    let session_class = ["08", "25", "28", "53", "57", "58", "XX"]
        .iter()
        .any(|class| code.starts_with(class));
    if well_formed && session_class {
        code.to_string()
    } else {
        "other".to_string()
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn sqlstate_labels_stay_bounded() {
        assert_eq!(bounded_sqlstate("57P05"), "57P05");
        assert_eq!(bounded_sqlstate("25P03"), "25P03");
        assert_eq!(bounded_sqlstate("42601"), "other");
        assert_eq!(bounded_sqlstate("57P05; drop table"), "other");
    }

    #[test]
    fn labels_are_the_documented_ones() {
        assert_eq!(
            ConnectErrorKind::TooManyConnections.label(),
            "too_many_connections"
        );
    }
}
