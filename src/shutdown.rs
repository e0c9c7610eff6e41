//! Signals: SIGTERM/SIGINT stop the daemon (once, logged), SIGHUP asks for a reload.
//!
//! The listeners are created once, before anything runs, and live until the process ends: a
//! signal that arrives while no listener exists is lost (tokio's handler is installed, so the
//! default action does not run either), which is how a SIGTERM right after a SIGHUP used to be
//! ignored.

use std::future::Future;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// What arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// SIGTERM or SIGINT, by name.
    Terminate(&'static str),
    /// SIGHUP.
    Hangup,
}

/// The process's signal listeners, created once.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    /// Starts listening for SIGTERM, SIGINT and SIGHUP (from now on none of them is lost).
    pub fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal; termination first when several are pending.
    pub async fn recv(&mut self) -> Received {
        tokio::select! {
            biased;
            _ = self.term.recv() => Received::Terminate("SIGTERM"),
            _ = self.int.recv() => Received::Terminate("SIGINT"),
            _ = self.hup.recv() => Received::Hangup,
        }
    }

    /// Until SIGTERM or SIGINT: each SIGHUP runs `reload` (one at a time; SIGHUPs during a
    /// reload are folded into one more reload after it). Termination is heard while a reload
    /// runs: `stop` is cancelled at once and the reload is abandoned.
    pub async fn relay<F, Fut>(mut self, stop: CancellationToken, mut reload: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut pending = false;
        loop {
            if !pending {
                match self.recv().await {
                    Received::Terminate(which) => return terminate(which, &stop),
                    Received::Hangup => {}
                }
            }
            pending = false;
            tracing::info!(signal = "SIGHUP", "reloading configuration");
            let reloading = reload();
            tokio::pin!(reloading);
            loop {
                tokio::select! {
                    _ = &mut reloading => break,
                    received = self.recv() => match received {
                        Received::Terminate(which) => return terminate(which, &stop),
                        Received::Hangup => pending = true,
                    },
                }
            }
        }
    }
}

fn terminate(which: &'static str, stop: &CancellationToken) {
    tracing::info!(signal = which, "received signal");
    stop.cancel();
}

/// Waits for SIGTERM or SIGINT and says which arrived (for the one-shot commands, which call it
/// once at start).
pub async fn terminated() -> &'static str {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
