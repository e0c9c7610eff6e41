//! One place that turns driver errors into the bounded label values the metrics use.
//!
//! A query on a dead connection fails with `kind: Closed` whatever killed it; the cause lives in
//! the result of the connection task (see `connection.rs`). So deaths are classified from that
//! result, and the query's own error is kept only as supporting detail.

use std::error::Error as _;
use std::fmt;
use std::io;

/// Why a probe connection died: the `kind` label of closed-connection events. Its text
/// ([`Display`](fmt::Display)) is how the page, the report and the state file show it;
/// causes sort as their texts do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeathCause {
    /// No answer: the kernel gave up (TCP_USER_TIMEOUT, ETIMEDOUT) or our query timeout fired.
    /// This is what a silent drop looks like.
    Timeout,
    /// ECONNRESET / EPIPE: a middlebox or the peer reset the flow.
    Reset,
    /// The peer closed the stream without a message (a FIN).
    Eof,
    /// The server said why before closing (FATAL with an SQLSTATE, e.g. 57P05).
    ServerTerminated { sqlstate: String },
    /// Anything else (protocol errors, TLS alerts, ...).
    Error,
}

impl DeathCause {
    /// The `kind` label value.
    pub fn kind(&self) -> &'static str {
        match self {
            DeathCause::Timeout => "timeout",
            DeathCause::Reset => "reset",
            DeathCause::Eof => "eof",
            DeathCause::ServerTerminated { .. } => "server_terminated",
            DeathCause::Error => "error",
        }
    }

    /// Whether this death can be what idling does to a connection: anything the path does
    /// (timeout, reset, EOF), or the server's own idle limits (57P05 idle_session_timeout,
    /// 25P03 idle_in_transaction_session_timeout, 25P04 transaction_timeout). A server that
    /// shuts down, restarts or has a session terminated by an administrator (57P01, 57P02,
    /// 57P03, ...) says nothing about idle time: such a death must not move the bracket.
    pub fn can_be_idle_expiry(&self) -> bool {
        match self {
            DeathCause::ServerTerminated { sqlstate } => {
                matches!(sqlstate.as_str(), "57P05" | "25P03" | "25P04")
            }
            _ => true,
        }
    }

    /// The `sqlstate` label value (empty unless the server said why).
    pub fn sqlstate(&self) -> &str {
        match self {
            DeathCause::ServerTerminated { sqlstate } => sqlstate,
            _ => "",
        }
    }
}

impl DeathCause {
    /// The cause a text written by [`Display`](fmt::Display) names (`timeout`,
    /// `server_terminated (57P05)`, ...); `None` for any other text.
    pub fn parse(text: &str) -> Option<DeathCause> {
        match text {
            "timeout" => Some(DeathCause::Timeout),
            "reset" => Some(DeathCause::Reset),
            "eof" => Some(DeathCause::Eof),
            "error" => Some(DeathCause::Error),
            _ => {
                let sqlstate = text
                    .strip_prefix("server_terminated (")?
                    .strip_suffix(')')?;
                Some(DeathCause::ServerTerminated {
                    sqlstate: sqlstate.to_string(),
                })
            }
        }
    }
}

/// As the texts sort: by kind, then SQLSTATE (no kind's text is a prefix of another's).
impl Ord for DeathCause {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.kind(), self.sqlstate()).cmp(&(other.kind(), other.sqlstate()))
    }
}

impl PartialOrd for DeathCause {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for DeathCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeathCause::ServerTerminated { sqlstate } => {
                write!(f, "server_terminated ({sqlstate})")
            }
            other => f.write_str(other.kind()),
        }
    }
}

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

    #[test]
    fn causes_read_back_from_their_text_and_sort_as_their_texts_do() {
        let causes = [
            DeathCause::Timeout,
            DeathCause::ServerTerminated {
                sqlstate: "57P05".to_string(),
            },
            DeathCause::Reset,
            DeathCause::ServerTerminated {
                sqlstate: "25P03".to_string(),
            },
            DeathCause::Error,
            DeathCause::Eof,
        ];
        for cause in &causes {
            assert_eq!(DeathCause::parse(&cause.to_string()).as_ref(), Some(cause));
        }
        assert_eq!(DeathCause::parse("server_terminated"), None);
        assert_eq!(DeathCause::parse("something else"), None);
        let mut by_cause = causes.to_vec();
        by_cause.sort();
        let mut by_text: Vec<String> = causes.iter().map(|c| c.to_string()).collect();
        by_text.sort();
        let by_cause: Vec<String> = by_cause.iter().map(|c| c.to_string()).collect();
        assert_eq!(by_cause, by_text);
    }

    #[test]
    fn only_idle_limits_and_the_path_count_as_idle_expiry() {
        let server = |code: &str| DeathCause::ServerTerminated {
            sqlstate: code.to_string(),
        };
        for idle in [
            server("57P05"),
            server("25P03"),
            DeathCause::Timeout,
            DeathCause::Reset,
            DeathCause::Eof,
        ] {
            assert!(idle.can_be_idle_expiry(), "{idle}");
        }
        for not_idle in [server("57P01"), server("57P02"), server("57P03")] {
            assert!(!not_idle.can_be_idle_expiry(), "{not_idle}");
        }
    }

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
        assert_eq!(DeathCause::Timeout.kind(), "timeout");
        assert_eq!(
            DeathCause::ServerTerminated {
                sqlstate: "57P05".into()
            }
            .sqlstate(),
            "57P05"
        );
        assert_eq!(DeathCause::Reset.sqlstate(), "");
        assert_eq!(
            ConnectErrorKind::TooManyConnections.label(),
            "too_many_connections"
        );
    }
}
