//! The daemon's file work: a reload reads the configuration file, a refresh the target files;
//! both on threads of their own under [`FILE_WORK_DEADLINE`] ([`crate::offload`]), so the loop
//! that answers signals and reloads never waits on a file. A target-file refresh cut short by
//! the deadline refuses the file it was reading (its last good targets stay), applies what it
//! read before, and leaves the rest for the next refresh; the next ones skip that file until
//! the thread stuck on it ends.

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::Daemon;
use crate::config::target_files::{self, Refresh, Scan, Scanned};
use crate::config::{self, Config, ConfigError};
use crate::http::TargetFileRow;
use crate::offload::{Ended, Lane, Outcome, FILE_WORK_DEADLINE};
use crate::reload::ReloadError;

/// The file work in flight: its lanes, and the target files a refresh past its deadline was
/// stuck on.
pub(super) struct FileWork {
    /// Reading the configuration file (a reload); one running and one overdue at most.
    reloads: Lane,
    /// Refreshing the target files; one running and one overdue at most.
    refreshes: Lane,
    /// Each file an overdue refresh was reading, until that refresh's thread ends.
    stuck: Vec<(PathBuf, Ended)>,
}

impl Default for FileWork {
    fn default() -> Self {
        FileWork {
            reloads: Lane::new("reload", 2),
            refreshes: Lane::new("target-files", 2),
            stuck: Vec::new(),
        }
    }
}

impl Daemon {
    /// Reads the configuration file again (off the loop) and, if it is valid, takes it.
    pub(super) async fn reload(&mut self) -> Result<(), ReloadError> {
        let path = self.config_path.clone();
        let loaded = self
            .work
            .reloads
            .run(FILE_WORK_DEADLINE, move || config::load(&path))
            .await;
        let refused = match loaded {
            Outcome::Done(Ok(config)) => {
                if config.listen_address != self.listen_address {
                    tracing::warn!(new = %config.listen_address, "listen_address changes take effect after a restart");
                }
                if config.log != self.log {
                    tracing::warn!("log settings change take effect after a restart");
                }
                self.take(config).await;
                self.apply_all();
                tracing::info!("configuration reloaded");
                return Ok(());
            }
            Outcome::Done(Err(e)) => e.to_string(),
            Outcome::Overdue(_) => format!(
                "{}: reading and checking the file took longer than {}",
                self.config_path.display(),
                crate::format::duration(FILE_WORK_DEADLINE)
            ),
            Outcome::Busy => format!(
                "{}: an earlier reload is still reading the file (past its deadline)",
                self.config_path.display()
            ),
        };
        self.metrics.reload_successful.set(0);
        self.metrics.reloads.with_label_values(&["failure"]).inc();
        tracing::error!(error = %refused, "invalid configuration; keeping the running one");
        Err(ReloadError::Refused(refused))
    }

    /// Takes a configuration just loaded: its inline targets, and its target files read again
    /// (every one, as the files their targets name may have changed), are what `apply_all`
    /// applies next.
    pub(super) async fn take(&mut self, config: Config) {
        self.loaded(&config);
        self.inline = config.targets;
        self.target_files_config = config.target_files;
        self.refresh_target_files(true).await;
    }

    fn loaded(&self, config: &Config) {
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        self.metrics.reload_successful.set(1);
        self.metrics.reloads.with_label_values(&["success"]).inc();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.metrics.reload_timestamp.set(now);
    }

    /// Reads the target files again (every one when `force`, else those whose bytes changed),
    /// off the loop; logs and exports what happened; returns whether the targets they give
    /// changed.
    pub(super) async fn refresh_target_files(&mut self, force: bool) -> bool {
        let mut known = self.target_files.known(force);
        self.work.stuck.retain(|(_, ended)| !ended.is_set());
        known.skip = self
            .work
            .stuck
            .iter()
            .map(|(path, _)| path.clone())
            .collect();
        let config = self.target_files_config.clone();
        let main = self.config_path.clone();
        let mut found = Scan::default();
        let outcome = self
            .work
            .refreshes
            .stream(
                FILE_WORK_DEADLINE,
                move |emit| target_files::scan(&config, &main, &known, emit),
                |event| found.take(event),
            )
            .await;
        match outcome {
            Outcome::Done(()) => {}
            Outcome::Overdue(ended) => self.overdue(&mut found, ended),
            Outcome::Busy => {
                let stuck: Vec<String> = self
                    .work
                    .stuck
                    .iter()
                    .map(|(path, _)| path.display().to_string())
                    .collect();
                tracing::error!(stuck = %stuck.join(", "), "target files not read: earlier refreshes are still stuck past their deadline; the targets in force stay");
                return false;
            }
        }
        let refresh = self.target_files.apply(
            &self.target_files_config,
            &self.inline,
            &self.config_path,
            found,
            Instant::now(),
        );
        let changed = refresh.changed;
        self.report(refresh);
        changed
    }

    /// A refresh past its deadline: the file it was reading is refused (and skipped until the
    /// thread ends); a listing not even done is logged.
    fn overdue(&mut self, found: &mut Scan, ended: Ended) {
        let late = crate::format::duration(FILE_WORK_DEADLINE);
        match found.reading.take() {
            Some(path) => {
                let refusal = ConfigError {
                    file: path.clone(),
                    line: None,
                    field: String::new(),
                    reason: format!(
                        "reading and checking it took longer than {late}; its last good targets stay, and it is read again once that read ends"
                    ),
                };
                found.files.push((path.clone(), Scanned::Refused(refusal)));
                self.work.stuck.push((path, ended));
            }
            None if found.listing.is_none() => {
                tracing::error!(deadline = %late, "listing the target_files globs took longer than the deadline; the targets in force stay");
            }
            // Between two files: the next refresh goes on.
            None => {}
        }
    }

    /// Logs a refresh of the target files and sets their series.
    fn report(&self, refresh: Refresh) {
        for warning in &refresh.warnings {
            tracing::warn!("{warning}");
        }
        for refusal in &refresh.refused {
            tracing::error!(file = %refusal.file.display(), error = %refusal, "target file refused; the targets it gave before, if any, keep running");
        }
        for path in &refresh.recovered {
            tracing::info!(file = %path.display(), "target file accepted again");
        }
        for path in &refresh.gone {
            let file = path.display().to_string();
            let _ = self.metrics.target_file_ok.remove_label_values(&[&file]);
            let _ = self
                .metrics
                .target_file_targets
                .remove_label_values(&[&file]);
            tracing::info!(
                file,
                "target file no longer matched; its targets are removed"
            );
        }
        let mut rows = Vec::new();
        for file in self.target_files.files() {
            let label = file.path.display().to_string();
            rows.push(TargetFileRow {
                file: label.clone(),
                targets: file.targets,
                refusal: file.refusal.map(ToString::to_string),
            });
            self.metrics
                .target_file_ok
                .with_label_values(&[&label])
                .set(i64::from(file.ok));
            self.metrics
                .target_file_targets
                .with_label_values(&[&label])
                .set(file.targets as i64);
        }
        *self.files.write().unwrap_or_else(|e| e.into_inner()) = rows;
    }
}
