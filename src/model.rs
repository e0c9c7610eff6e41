//! The words the layers share: where a target's measurement stands ([`TargetState`]), what a
//! connection is for ([`Role`]), why one died ([`DeathCause`]) and how that was noticed
//! ([`Detected`]), which way the threshold moved ([`ThresholdMove`]). Plain values with their
//! label texts and no dependencies, so that the driver layer (`postgres`), the probe engine, the
//! metrics, the page and the state file all name them from below instead of from each other;
//! they turn into text only at the edges (a metric label, the page, a log line, the state file).

use std::fmt;

/// Where a target's measurement stands: the `state` label of `idle_drop_discovery_state`
/// (exported one-hot), the page's state column and what the `discover` command ends with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetState {
    Discovering,
    /// Watching a bracket resumed from a stored measurement until its low sentinel survived.
    Confirming,
    Watching,
    /// Nothing dropped within the idle range.
    NoDrop,
    /// Connections died at or below the idle range's min.
    BelowRange,
    Unreachable,
}

impl TargetState {
    /// Every state, in the order the metric exports them.
    pub const ALL: [TargetState; 6] = [
        TargetState::Discovering,
        TargetState::Confirming,
        TargetState::Watching,
        TargetState::NoDrop,
        TargetState::BelowRange,
        TargetState::Unreachable,
    ];

    /// The label value, as the metric, the page and the report show it.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Discovering => "discovering",
            TargetState::Confirming => "confirming",
            TargetState::Watching => "watching",
            TargetState::NoDrop => "no_drop",
            TargetState::BelowRange => "below_range",
            TargetState::Unreachable => "unreachable",
        }
    }
}

/// What a connection is for; the `role` label of closed-connection events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Discovery,
    SentinelLow,
    SentinelHigh,
    Guard,
    Keepalive,
    /// The control connection (outage detection, ghost checks): the exporter's own, never a
    /// probe of the application's path, so its deaths never page.
    Control,
}

impl Role {
    /// The roles whose deaths can be unexpected (`docs/metrics.md`): the label set of
    /// `idle_drop_unexpected_closed_connections_total`, exported at 0 from a target's start.
    /// Not the high sentinel (it idles above the upper bound) nor the control connection (it
    /// is ours, not the application's; its deaths count in
    /// `idle_drop_control_connection_drops_total`).
    pub const UNEXPECTED: [Role; 4] = [
        Role::Guard,
        Role::SentinelLow,
        Role::Discovery,
        Role::Keepalive,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Role::Discovery => "discovery",
            Role::SentinelLow => "sentinel_low",
            Role::SentinelHigh => "sentinel_high",
            Role::Guard => "guard",
            Role::Keepalive => "keepalive",
            Role::Control => "control",
        }
    }
}

/// How a death was noticed: the `detected` label of closed-connection events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    /// The connection task ended on its own while the connection idled: the exact time of death.
    WhileIdle,
    /// The probe's query found the connection dead.
    OnUse,
}

impl Detected {
    pub fn label(self) -> &'static str {
        match self {
            Detected::WhileIdle => "while_idle",
            Detected::OnUse => "on_use",
        }
    }
}

/// Which way a watch found the threshold moved: the `direction` label of
/// `idle_drop_threshold_changes_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdMove {
    Up,
    Down,
}

impl ThresholdMove {
    pub fn label(self) -> &'static str {
        match self {
            ThresholdMove::Up => "up",
            ThresholdMove::Down => "down",
        }
    }
}

/// Why a probe connection died: the `kind` label of closed-connection events. Its text
/// ([`Display`](fmt::Display)) is how the page, the report and the state file show it;
/// causes sort as their texts do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeathCause {
    /// No answer: the kernel gave up (TCP_USER_TIMEOUT, ETIMEDOUT), our query timeout fired, or
    /// the server confirmed the query never arrived (`postgres::arrival`: its session idle after
    /// an earlier query, the bytes unacknowledged). This is what a silent drop looks like.
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

    /// Every `kind` label value, one per variant: the label set the metrics export at 0 from a
    /// target's start.
    pub fn kinds() -> [&'static str; 5] {
        [
            DeathCause::Timeout,
            DeathCause::Reset,
            DeathCause::Eof,
            DeathCause::ServerTerminated {
                sqlstate: String::new(),
            },
            DeathCause::Error,
        ]
        .map(|cause| cause.kind())
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

#[cfg(test)]
mod tests {
    use super::*;

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
            DeathCause::kinds(),
            ["timeout", "reset", "eof", "server_terminated", "error"]
        );
        assert_eq!(
            Role::UNEXPECTED.map(Role::label),
            ["guard", "sentinel_low", "discovery", "keepalive"]
        );
        assert_eq!(Role::Control.label(), "control");
        assert_eq!(Detected::WhileIdle.label(), "while_idle");
        assert_eq!(Detected::OnUse.label(), "on_use");
    }
}
