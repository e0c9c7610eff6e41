//! Which web configuration serves a new connection: the file is read again for each one and
//! reloaded when any of its input files changed (see the module doc of [`super`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{load, WebConfig};

/// The web configuration in force, read again for each new connection (see the module doc).
pub struct Watcher {
    path: PathBuf,
    current: Mutex<Option<Arc<WebConfig>>>,
    /// The error last logged, so a broken file is logged once, not per connection.
    last_error: Mutex<Option<String>>,
}

impl Watcher {
    /// Loads the file; if it cannot be loaded now (it was checked at start, so only a race),
    /// connections are refused until it can.
    pub fn new(path: &Path) -> Watcher {
        let watcher = Watcher {
            path: path.to_path_buf(),
            current: Mutex::new(None),
            last_error: Mutex::new(None),
        };
        if let Some(config) = watcher.current() {
            for warning in &config.warnings {
                tracing::warn!("{warning}");
            }
        }
        watcher
    }

    /// The configuration to serve a new connection with: the last one if no input file changed,
    /// a fresh one if they did and it is valid, else the last valid one.
    pub fn current(&self) -> Option<Arc<WebConfig>> {
        let previous = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
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
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
                Some(fresh)
            }
            Err(e) => {
                let message = e.to_string();
                let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
                if last.as_deref() != Some(message.as_str()) {
                    tracing::error!(error = %message, "invalid web configuration; keeping the last valid one");
                    *last = Some(message);
                }
                previous
            }
        }
    }
}
