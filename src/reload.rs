//! Asking the running daemon to reload its configuration: SIGHUP (through `main`), the
//! `/-/reload` endpoint and the tests hold a [`ReloadTrigger`]; the daemon holds the
//! [`ReloadInbox`] and answers each request. Below both `daemon` and `http`, so the endpoint
//! needs nothing of the daemon but this.

use std::fmt;

use tokio::sync::{mpsc, oneshot};

/// Why a reload did not take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadError {
    /// The new configuration was refused (the reason names file, line and field); the running
    /// one stays.
    Refused(String),
    /// The daemon is stopping and takes no more requests.
    ShuttingDown,
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Refused(reason) => f.write_str(reason),
            ReloadError::ShuttingDown => f.write_str("the daemon is shutting down"),
        }
    }
}

impl std::error::Error for ReloadError {}

/// Where the daemon sends its answer to one request.
pub type ReloadReply = oneshot::Sender<Result<(), ReloadError>>;

/// Asks the daemon to reload its configuration file.
#[derive(Clone)]
pub struct ReloadTrigger(mpsc::Sender<ReloadReply>);

impl ReloadTrigger {
    /// Reloads and waits for the result.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let (reply, answer) = oneshot::channel();
        self.0
            .send(reply)
            .await
            .map_err(|_| ReloadError::ShuttingDown)?;
        answer.await.map_err(|_| ReloadError::ShuttingDown)?
    }
}

/// The receiving end of [`ReloadTrigger`]s, handed to the daemon.
pub struct ReloadInbox(mpsc::Receiver<ReloadReply>);

impl ReloadInbox {
    /// The next request; `None` once every trigger is gone.
    pub async fn next(&mut self) -> Option<ReloadReply> {
        self.0.recv().await
    }
}

/// A trigger and the inbox it sends to.
pub fn channel() -> (ReloadTrigger, ReloadInbox) {
    let (tx, rx) = mpsc::channel(4);
    (ReloadTrigger(tx), ReloadInbox(rx))
}
