//! Signals: SIGTERM/SIGINT stop the daemon (once, logged), SIGHUP asks for a reload.

use tokio::signal::unix::{signal, SignalKind};

/// Waits for SIGTERM or SIGINT and says which arrived.
pub async fn terminated() -> &'static str {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// A stream of SIGHUPs.
pub fn hangups() -> tokio::signal::unix::Signal {
    signal(SignalKind::hangup()).expect("SIGHUP handler")
}
