//! The daemon: starts one probe engine per target and the HTTP server, applies reloads, and
//! shuts everything down on one signal.
//!
//! A reload (SIGHUP or `POST /-/reload`) reads the file again; if it is invalid, the running
//! configuration stays, the error is logged and `idle_drop_config_last_reload_successful` drops
//! to 0. If it is valid, each target's change is classified (`config/change.rs`): settings the
//! engine applies in place reach the running target and keep its measurement; a target whose
//! connections must change is restarted; removed targets are stopped (their sessions closed),
//! their series deleted and their stored measurement marked removed (kept a day, for the target
//! to resume if it comes back: see [`crate::storage`]).
//! Runs of one target name never overlap: a
//! restarted target's new run waits for the old one (see [`Chain`]).
//!
//! Target files (`target_files`, see `config/target_files.rs`) are read at start, on every
//! reload and every `target_files_refresh_interval`; what they give joins the inline targets
//! through the same [`Daemon::apply`], so the same rules hold for their targets. A refused file
//! keeps its last good targets and exports `idle_drop_target_file_last_load_successful` 0.
//!
//! Reading files never happens on the loop: a reload's configuration file and every refresh of
//! the target files are read on threads of their own under a deadline (`files.rs`), and the
//! loop waits for them while still watching for the shutdown signal; `/-/ready` is served by
//! the HTTP server's own tasks throughout.

mod files;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, TargetChange, TargetConfig, TargetFiles, TargetFilesConfig};
use crate::http::{self, AppState, TargetFileBoard};
use crate::metrics::Metrics;
use crate::probe::publisher::{resumable, Publisher};
use crate::probe::{self, status::StatusBoard};
use crate::reload::{ReloadInbox, ReloadTrigger};
use crate::storage::{Store, StoredMeasurement};

/// How long targets get to close their sessions at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

struct RunningTarget {
    config: Arc<TargetConfig>,
    /// Live settings for the running engine.
    updates: watch::Sender<Arc<TargetConfig>>,
    stop: CancellationToken,
}

/// Per target name, the last step started for it (a run, or a removal); cancelled once that
/// step is over. Each step waits for the one before, so a target's old run has closed its
/// sessions and its publisher is retired before a new run of the same name publishes and starts
/// (never more than `max_connections` sessions; nothing the old run still sends, such as its
/// control task's `target_up`, can land after the new run's first publication), and a
/// removal's clean-up cannot delete a name that came back.
type Chain = HashMap<String, CancellationToken>;

/// See [`Daemon::handover`].
type Handover = Arc<Mutex<HashMap<String, probe::LeftoverSessions>>>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the exporter until `shutdown` is cancelled. `config` was loaded from `config_path`
/// (which reloads read again); `listeners` are already bound (tests bind port 0), one per
/// `--web.listen-address`.
pub async fn run(
    config_path: PathBuf,
    config: Config,
    listeners: impl Into<crate::listener::Listeners>,
    reloads: (ReloadTrigger, ReloadInbox),
    shutdown: CancellationToken,
) {
    let metrics = Arc::new(Metrics::new());
    let board: StatusBoard = Default::default();
    let files: TargetFileBoard = Default::default();
    let (trigger, mut inbox) = reloads;
    let state = Arc::new(AppState {
        metrics: metrics.clone(),
        board: board.clone(),
        files: files.clone(),
        reload: trigger,
        ready: false.into(),
        telemetry_path: config.telemetry_path.clone(),
        web: config
            .web_config_file
            .as_deref()
            .map(|path| Arc::new(http::web_config::Watcher::new(path))),
    });
    let http_shutdown = CancellationToken::new();
    let server = tokio::spawn(http::serve(
        listeners.into(),
        state.clone(),
        http_shutdown.clone(),
    ));

    let store = open_store(config.storage_path.as_deref());
    let shard = config.shard;
    if let Some(shard) = shard {
        metrics.shards.set(i64::from(shard.count));
        metrics
            .shard_info
            .with_label_values(&[&shard.index.to_string()])
            .set(1);
        tracing::info!(shard = %shard, "probing this replica's shard of the targets");
    }

    let mut daemon = Daemon {
        config_path,
        running: HashMap::new(),
        chain: HashMap::new(),
        removals: HashMap::new(),
        metrics,
        board,
        files,
        listen_address: config.listen_address.clone(),
        log: config.log.clone(),
        store,
        handover: Default::default(),
        shard,
        inline: Vec::new(),
        target_files_config: Default::default(),
        target_files: TargetFiles::default(),
        work: Default::default(),
    };
    // The target files are read off this loop, under a deadline; a signal meanwhile stops it.
    let started = tokio::select! {
        _ = daemon.take(config) => true,
        _ = shutdown.cancelled() => false,
    };
    if started {
        daemon.start(shard);
        state.ready.store(true, Ordering::Relaxed);
        daemon.serve(&mut inbox, &shutdown).await;
    }

    tracing::info!("shutting down: closing probe connections");
    state.ready.store(false, Ordering::Relaxed);
    daemon.stop_all().await;
    http_shutdown.cancel();
    let _ = server.await;
    tracing::info!("stopped");
}

impl Daemon {
    /// Starts the targets of the first configuration, once its target files are read.
    fn start(&mut self, shard: Option<crate::config::Shard>) {
        // Targets removed from the configuration while the exporter was down (a reload's removals
        // are forgotten in `remove_after_stop`). A refused target file's names are unknown: its
        // stored measurements stay, for when it is fixed.
        let ours = |name: &str| shard.is_none_or(|shard| shard.owns(name));
        let names_unknown = !self.target_files.all_known();
        let known: HashSet<&str> = self
            .inline
            .iter()
            .chain(self.target_files.targets())
            .map(|t| t.name.as_str())
            .collect();
        self.store
            .retain(|name| ours(name) && (names_unknown || known.contains(name)));
        self.apply_all();
    }

    /// Answers reloads and refreshes the target files until `shutdown`; file work runs off
    /// this loop, and a signal during it ends the loop at once.
    async fn serve(&mut self, inbox: &mut ReloadInbox, shutdown: &CancellationToken) {
        let mut refresh = refresh_timer(self.target_files_config.refresh_interval);
        loop {
            let watching = !self.target_files_config.patterns.is_empty();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                request = inbox.next() => {
                    let Some(reply) = request else { break };
                    let result = tokio::select! {
                        result = self.reload() => result,
                        _ = shutdown.cancelled() => break,
                    };
                    let _ = reply.send(result);
                    // A reload read the files just now, and may have changed the interval.
                    refresh = refresh_timer(self.target_files_config.refresh_interval);
                }
                _ = refresh.tick(), if watching => {
                    let changed = tokio::select! {
                        changed = self.refresh_target_files(false) => changed,
                        _ = shutdown.cancelled() => break,
                    };
                    if changed {
                        self.apply_all();
                    }
                }
            }
        }
    }
}

struct Daemon {
    config_path: PathBuf,
    running: HashMap<String, RunningTarget>,
    chain: Chain,
    /// Removals still waiting for their run to end; cancelling one keeps the target's series
    /// and status entry (the name came back).
    removals: HashMap<String, CancellationToken>,
    metrics: Arc<Metrics>,
    board: StatusBoard,
    /// The target files as the status page shows them.
    files: TargetFileBoard,
    listen_address: crate::listener::ListenAddress,
    log: config::LogConfig,
    /// Each target's last measurement, across reloads and (with `--storage.path`) restarts.
    store: Store,
    /// Per target name, the sessions its last run left on the server (ghosts it was not
    /// allowed to terminate: `reap_ghosts: false`), for the next run to count.
    handover: Handover,
    /// This replica's share of the targets (`--shard`); a reload keeps it.
    shard: Option<crate::config::Shard>,
    /// The targets written in the configuration file (its last good load).
    inline: Vec<TargetConfig>,
    /// `target_files` of that load, and what the files give.
    target_files_config: TargetFilesConfig,
    target_files: TargetFiles,
    /// File work in flight off the loop (see `files.rs`).
    work: files::FileWork,
}

/// The state file in `dir` (`--storage.path`), else memory only.
fn open_store(dir: Option<&std::path::Path>) -> Store {
    match dir {
        Some(dir) => Store::open(dir).unwrap_or_else(|e| {
            // `main` refuses a bad directory at start, so it changed since (or a test skipped
            // that check); measuring works without the file.
            tracing::error!(error = %e, "cannot open the state file; measurements are kept in memory only");
            Store::memory()
        }),
        None => Store::memory(),
    }
}

/// The first tick one period from now: the files were just read.
fn refresh_timer(period: Duration) -> tokio::time::Interval {
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer
}

impl Daemon {
    /// Applies the inline targets and those the target files give.
    fn apply_all(&mut self) {
        let targets = self
            .inline
            .iter()
            .chain(self.target_files.targets())
            .cloned()
            .collect();
        self.apply(targets);
    }

    /// Whether this replica probes the target named `name` (all of them without `--shard`).
    fn owns(&self, name: &str) -> bool {
        self.shard.is_none_or(|shard| shard.owns(name))
    }

    /// Starts new targets, applies live changes, restarts targets whose connections change,
    /// stops removed ones. `targets`: every target wanted now (their names are unique).
    fn apply(&mut self, targets: Vec<TargetConfig>) {
        let wanted: BTreeMap<String, TargetConfig> = targets
            .into_iter()
            .filter(|t| self.owns(&t.name))
            .map(|t| (t.name.clone(), t))
            .collect();
        self.metrics.targets.set(wanted.len() as i64);
        let mut stale = Vec::new();
        for (name, running) in &mut self.running {
            let Some(new) = wanted.get(name) else {
                stale.push(name.clone());
                continue;
            };
            match running.config.change_to(new) {
                TargetChange::Unchanged => {}
                TargetChange::Live => {
                    let new = Arc::new(new.clone());
                    running.updates.send_replace(new.clone());
                    running.config = new;
                }
                change @ (TargetChange::Reconnect | TargetChange::NewPath) => {
                    tracing::info!(target_name = %name, measured_again = change == TargetChange::NewPath, "target reconnects with new settings");
                    stale.push(name.clone());
                }
            }
        }
        for name in stale {
            let running = self.running.remove(&name).expect("listed above");
            running.stop.cancel();
            let removed = !wanted.contains_key(&name);
            tracing::info!(target_name = %name, removed, "target stopped");
            if removed {
                self.remove_after_stop(name);
            }
        }
        for (name, target) in wanted {
            if self.running.contains_key(&name) {
                continue;
            }
            if let Some(keep) = self.removals.remove(&name) {
                keep.cancel();
            }
            // Back within a day of its removal: its stored measurement is its own again.
            self.store.revive(&name);
            let target = Arc::new(target);
            let (updates, updates_rx) = watch::channel(target.clone());
            let stop = CancellationToken::new();
            let done = CancellationToken::new();
            let previous = self.chain.insert(name.clone(), done.clone());
            let step = RunStep {
                target: target.clone(),
                updates: updates_rx,
                store: self.store.clone(),
                handover: self.handover.clone(),
                metrics: self.metrics.clone(),
                board: self.board.clone(),
            };
            // A target's first run is published at once (a scrape from now on shows it); a
            // later one only after its predecessor has retired.
            let start = match previous {
                None => Start::Published(step.publish()),
                Some(previous) => Start::After(previous),
            };
            tokio::spawn(run_after(start, step, stop.clone(), done));
            tracing::info!(target_name = %name, dsn = %target.display_dsn, "target started");
            self.running.insert(
                name,
                RunningTarget {
                    config: target,
                    updates,
                    stop,
                },
            );
        }
        self.chain.retain(|_, done| !done.is_cancelled());
    }

    /// Deletes a removed target's series and status entry, and marks its stored measurement
    /// removed (kept a day), once its run has ended (so a last `remember` cannot undo the
    /// mark), unless the name is configured again by then.
    fn remove_after_stop(&mut self, name: String) {
        let keep = CancellationToken::new();
        let done = CancellationToken::new();
        let previous = self.chain.insert(name.clone(), done.clone());
        self.removals.insert(name.clone(), keep.clone());
        let metrics = self.metrics.clone();
        let board = self.board.clone();
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Some(previous) = previous {
                previous.cancelled().await;
            }
            if !keep.is_cancelled() {
                Publisher::remove(&metrics, &board, &name);
                store.forget(&name);
            }
            done.cancel();
        });
        self.removals.retain(|_, keep| !keep.is_cancelled());
    }

    async fn stop_all(&mut self) {
        for running in self.running.values() {
            running.stop.cancel();
        }
        self.running.clear();
        // Each run gives up after SHUTDOWN_GRACE itself; the margin covers a predecessor's.
        let all = async {
            for done in self.chain.values() {
                done.cancelled().await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE * 2 + Duration::from_secs(1), all)
            .await
            .is_err()
        {
            tracing::warn!(grace = %crate::format::duration(SHUTDOWN_GRACE), "some targets did not close their sessions within the grace period");
        }
    }
}

/// What one run of a target starts with.
struct RunStep {
    target: Arc<TargetConfig>,
    updates: watch::Receiver<Arc<TargetConfig>>,
    store: Store,
    handover: Handover,
    metrics: Arc<Metrics>,
    board: StatusBoard,
}

impl RunStep {
    /// The run's first publication, from the measurement stored for its path if any (read
    /// once: what is shown is what the engine resumes from).
    fn publish(&self) -> (Publisher, Option<StoredMeasurement>) {
        let target = &self.target;
        let resume = resumable(self.store.recall(&target.name, &target.fingerprint()));
        let publish = Publisher::start(&self.metrics, &self.board, target, resume.as_ref());
        (publish, resume)
    }
}

/// How a run starts: published already (a target's first run), or after the previous step of
/// the same name has ended.
enum Start {
    Published((Publisher, Option<StoredMeasurement>)),
    After(CancellationToken),
}

/// One run of a target: waits for the previous step of the same name, then probes until
/// `stop`; gives its sessions [`SHUTDOWN_GRACE`] to close, then is aborted and its publisher
/// retired (so nothing it does can land after `done`).
async fn run_after(start: Start, step: RunStep, stop: CancellationToken, done: CancellationToken) {
    let (publish, resume) = match start {
        Start::Published(published) => published,
        Start::After(previous) => {
            previous.cancelled().await;
            // What the old run showed last is replaced by this run's first publication.
            step.publish()
        }
    };
    let RunStep {
        target,
        updates,
        store,
        handover,
        ..
    } = step;
    if !stop.is_cancelled() {
        let name = target.name.clone();
        let context = probe::RunContext {
            updates: Some(updates),
            memory: Some(store),
            resume,
            inherited: lock(&handover).remove(&name).unwrap_or_default(),
        };
        let mut task = tokio::spawn(probe::run(
            target,
            context,
            publish.clone(),
            probe::RunMode::Continuous,
            stop.clone(),
        ));
        let left = tokio::select! {
            left = &mut task => left.ok(),
            _ = stop.cancelled() => match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
                Ok(left) => left.ok(),
                Err(_) => {
                    tracing::warn!(target_name = %name, grace = %crate::format::duration(SHUTDOWN_GRACE), "target did not close its sessions within the grace period; abandoned");
                    task.abort();
                    let _ = task.await;
                    None
                }
            },
        };
        if let Some(left) = left.filter(|l| !l.is_empty()) {
            lock(&handover).insert(name, left);
        }
    }
    publish.retire();
    done.cancel();
}
