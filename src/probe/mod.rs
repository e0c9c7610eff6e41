//! One target's probing: the control connection, the probe engine with its discovery and watch
//! schedulers, and the status snapshot the landing page reads.

pub mod control;
pub mod engine;
pub mod keepalive_check;
pub mod network;
pub mod publisher;
#[cfg(test)]
pub(crate) mod simulated_path;
pub mod status;
pub mod watch;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::TargetConfig;
use crate::postgres::classify::ConnectErrorKind;
use crate::postgres::connection::Connector;
pub use engine::{keepalive_check_timing, LeftoverSessions, RunMode};
use publisher::Publisher;

/// What a run of a target starts with besides its settings (the daemon's runs; `discover`
/// uses none of it).
#[derive(Default)]
pub struct RunContext {
    /// Later settings of the same path (a reload's live changes, see `config/change.rs`).
    pub updates: Option<tokio::sync::watch::Receiver<Arc<TargetConfig>>>,
    /// Where settled measurements are kept.
    pub memory: Option<crate::storage::Store>,
    /// The stored measurement this run resumes from, as its first publication showed it (see
    /// [`publisher::resumable`]).
    pub resume: Option<crate::storage::StoredMeasurement>,
    /// Sessions the previous run of this target left on the server (ghosts it was not allowed
    /// to terminate): they count against the budget until the server lets go of them.
    pub inherited: LeftoverSessions,
}

/// Probes one target until `shutdown` (or, with [`RunMode::DiscoverOnce`], until its first
/// discovery is over); returns after its sessions are closed, with those the server still
/// lists (see [`RunContext::inherited`]). Everything it shows goes through `publish`, whose
/// first publication ([`Publisher::start`]) is done.
pub async fn run(
    target: Arc<TargetConfig>,
    context: RunContext,
    publish: Publisher,
    mode: RunMode,
    shutdown: CancellationToken,
) -> LeftoverSessions {
    let connector = match Connector::new(&target.connect_spec()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(target_name = %target.name, error = %e, "cannot set up TLS; target not probed");
            publish.connect_failed(ConnectErrorKind::Tls, e.to_string());
            shutdown.cancelled().await;
            return context.inherited;
        }
    };
    // The control connection outlives the engine's shutdown: the engine needs it to terminate
    // leftover sessions after closing its probes.
    let control_shutdown = CancellationToken::new();
    // If this run is aborted (it overran the daemon's grace), the control task stops too.
    let _stop_control = control_shutdown.clone().drop_guard();
    let (control, control_task) = control::spawn(
        target.clone(),
        connector.clone(),
        publish.clone(),
        control_shutdown.clone(),
    );
    let mut engine =
        engine::Engine::new(target, publish.clone(), connector, control, mode, shutdown);
    if let Some(updates) = context.updates {
        engine = engine.with_updates(updates);
    }
    if let Some(store) = context.memory {
        engine = engine.with_memory(store);
    }
    engine = engine.resuming(context.resume);
    let leftovers = engine.with_inherited(context.inherited).run().await;
    control_shutdown.cancel();
    let _ = control_task.await;
    // `target_up` is left as it was: a restarted target's next run takes over the series (a
    // restart is no outage), and a removed target's series are deleted.
    publish.sessions(0);
    leftovers
}
