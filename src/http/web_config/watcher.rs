//! Which web configuration serves a new connection: the file is read again for each one and
//! reloaded when any of its input files changed (see the module doc of [`super`]).
//!
//! The reading runs on a thread of its own ([`crate::offload`]) under [`DEADLINE`], never on the
//! task serving connections: a file that hangs (a stuck mount) or a flood of connections costs
//! at most a few threads ([`MAX_THREADS`]). While those are all busy, or past the deadline, a
//! connection is served with the last valid configuration (refused if there is none yet).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{load, WebConfig};
use crate::offload::{Lane, Outcome};

/// How long a connection waits for the web configuration to be read.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// The most threads reading the web configuration at once (stuck ones included).
pub const MAX_THREADS: usize = 4;

/// The web configuration in force, read again for each new connection (see the module doc).
pub struct Watcher {
    path: PathBuf,
    current: Mutex<Option<Arc<WebConfig>>>,
    /// The error last logged, so a broken file is logged once, not per connection.
    last_error: Mutex<Option<String>>,
    lane: Lane,
}

impl Watcher {
    /// Reads nothing yet: the first connection does (it was checked at start).
    pub fn new(path: &Path) -> Watcher {
        Watcher {
            path: path.to_path_buf(),
            current: Mutex::new(None),
            last_error: Mutex::new(None),
            lane: Lane::new("web-config", MAX_THREADS),
        }
    }

    /// The configuration to serve a new connection with: the last one if no input file changed,
    /// a fresh one if they did and it is valid, else the last valid one. Read off this task.
    pub async fn current(self: Arc<Self>) -> Option<Arc<WebConfig>> {
        let watcher = self.clone();
        match self.lane.run(DEADLINE, move || watcher.read()).await {
            Outcome::Done(config) => config,
            Outcome::Overdue(_) => {
                self.failed(format!(
                    "{}: reading the web configuration took longer than {}",
                    self.path.display(),
                    crate::format::duration(DEADLINE)
                ));
                self.last()
            }
            Outcome::Busy => self.last(),
        }
    }

    fn last(&self) -> Option<Arc<WebConfig>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Logs `message` unless it is the error last logged.
    fn failed(&self, message: String) {
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() != Some(message.as_str()) {
            tracing::error!(error = %message, "invalid web configuration; keeping the last valid one");
            *last = Some(message);
        }
    }

    /// [`Watcher::current`]'s work, on the reading thread.
    fn read(&self) -> Option<Arc<WebConfig>> {
        let previous = self.last();
        if let Some(previous) = &previous {
            let unchanged = previous.inputs.iter().all(|(path, bytes)| {
                crate::config::read_file(path, crate::config::MAX_FILE_BYTES)
                    .is_ok_and(|now| now == *bytes)
            });
            if unchanged {
                return Some(previous.clone());
            }
        }
        match load(&self.path) {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                if previous.is_some() {
                    tracing::info!(file = %self.path.display(), "web configuration reloaded");
                }
                for warning in &fresh.warnings {
                    tracing::warn!("{warning}");
                }
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
                Some(fresh)
            }
            Err(e) => {
                self.failed(e.to_string());
                previous
            }
        }
    }
}
