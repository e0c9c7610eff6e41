//! The words the simulator's flows and its metrics share: how a flow ended and which way bytes
//! went, each with its label value. Below both `flow` and `metrics`, so neither names the other
//! for them.

/// How a flow ended: the `fate` label and the log field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Idle too long in mode `silent`; ends when the client finally closes.
    ExpiredSilent,
    /// Idle too long in mode `reset`; the client got an RST at its next packet.
    ExpiredReset,
    /// Idle too long in mode `fin`; both sides were sent a FIN.
    ExpiredFin,
    /// The client closed (or reset) the connection before the timeout.
    ClosedByClient,
    /// The upstream closed (or reset) the connection before the timeout.
    ClosedByUpstream,
    /// The upstream refused, timed out (`--upstream-connect-timeout`) or failed to resolve.
    UpstreamConnectFailed,
    /// `--max-flows` flows were open already; the connection was closed at once.
    RefusedMaxFlows,
    /// The simulator was stopped (SIGINT/SIGTERM) and closed the flow.
    Shutdown,
}

impl Fate {
    /// Every fate, in label order.
    pub const ALL: [Fate; 8] = [
        Fate::ExpiredSilent,
        Fate::ExpiredReset,
        Fate::ExpiredFin,
        Fate::ClosedByClient,
        Fate::ClosedByUpstream,
        Fate::UpstreamConnectFailed,
        Fate::RefusedMaxFlows,
        Fate::Shutdown,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Fate::ExpiredSilent => "expired_silent",
            Fate::ExpiredReset => "expired_reset",
            Fate::ExpiredFin => "expired_fin",
            Fate::ClosedByClient => "closed_by_client",
            Fate::ClosedByUpstream => "closed_by_upstream",
            Fate::UpstreamConnectFailed => "upstream_connect_failed",
            Fate::RefusedMaxFlows => "refused_max_flows",
            Fate::Shutdown => "shutdown",
        }
    }
}

/// Which way bytes travel: the `direction` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteDirection {
    ClientToUpstream,
    UpstreamToClient,
}

impl ByteDirection {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ByteDirection::ClientToUpstream => "client_to_upstream",
            ByteDirection::UpstreamToClient => "upstream_to_client",
        }
    }
}
