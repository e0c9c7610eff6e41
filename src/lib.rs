//! idle_drop_exporter: finds after how long the network path to a PostgreSQL server silently
//! drops idle connections, keeps watching for changes, and exports it all to Prometheus.
//!
//! Layout (one module per concept):
//! - [`config`]: the YAML file, checked into typed settings (types in `mod.rs`, checks in
//!   `validate/`, what a target takes from files in `validate/files.rs`, its `labels` in
//!   `validate/labels.rs`; errors, built in `error.rs`, name file, line, field; the nesting
//!   pre-check in `nesting.rs`; a target's sections, one function each, in
//!   `validate/target.rs`), and the target
//!   files it names (`target_files/`: listing in `walk.rs`, reading in `scan.rs`, which targets
//!   are in force in `merge.rs`, the label names' cap in `label_cap.rs`, what both read and decide
//!   per file in `candidate.rs`).
//! - [`model`]: the words the layers share, below all of them: [`TargetState`](model::TargetState),
//!   [`Role`](model::Role), [`DeathCause`](model::DeathCause), [`Detected`](model::Detected),
//!   [`ThresholdMove`](model::ThresholdMove), each with the label text metrics and page show.
//! - [`postgres`]: DSNs, TLS, the watched startup that never sends a password in clear text
//!   without TLS (`startup/`), probe connections that remember how they died (opened from a
//!   [`ConnectSpec`](postgres::connection::ConnectSpec), not the configuration), error classes,
//!   what the client's kernel says of a probe's socket (`tcp_state.rs`) and whether a use sent
//!   on it reached the server (`arrival.rs`: a silent death confirmed in about a second).
//! - [`discovery`]: the pure bracket-narrowing policy (and its simulator); no I/O, no clock. Its
//!   [`Scheduler`](discovery::Scheduler) trait is what the engine asks of discovery, watch and
//!   guard (each keeps a [`SlotClock`](discovery::SlotClock) per slot, `clock.rs`; the guard's
//!   one-slot plan is [`Guard`](discovery::Guard), `guard.rs`, which the simulator runs too), and
//!   [`Estimator`](discovery::Estimator) what it asks of a phase's scheduler.
//! - [`probe`]: per target, the probe engine (`engine/`, by the state each file owns: the
//!   engine and its loop in `mod.rs`, the phase machine in `phases.rs` (discovering,
//!   confirming, watching, draining, outage), the slots in `slots.rs`, the spawned network
//!   work in `tasks.rs`, what their reports do in `results.rs`), the watch, `discover`'s
//!   keepalive check beside the discovery in a slot of its own (`keepalive_check.rs`), the
//!   control connection (outage detection; ghost reaping in `control/ghost.rs`), the
//!   [`Publisher`](probe::publisher::Publisher), the only writer of a target's series and
//!   status (first publication, changes, removal, each with the [`model`] words it is given),
//!   and the status snapshot.
//! - [`metrics`]: the Prometheus families (`idle_drop_target_info`, whose label names differ
//!   per target, from a collector of its own in `metrics/target_info.rs`); [`http`]:
//!   `/metrics`, `/`, `/-/*` (routes in `mod.rs`, the server both endpoints use in `server.rs`,
//!   the status page in `landing/` split by what each part renders, TLS and basic auth in
//!   `web_config/`).
//! - [`daemon`]: runs targets and the HTTP server, applies reloads and target-file refreshes
//!   (read off its loop: `files.rs`), shuts down gracefully.
//! - [`storage`]: each target's last measurement, kept in a file across restarts
//!   (`--storage.path`, locked by one exporter).
//! - [`discover`]: the `discover` command, one measurement with the same engine and a report.
//! - [`simulator`]: the `simulate` command, a TCP proxy that forgets idle flows like a NAT (its
//!   `/metrics` on [`http::server`]).
//! - [`recommend`]: the safe lifetime from a bracket; [`recipes`]: it as each library's settings,
//!   derived from a model of each pool and spelt as that library takes them (one file per
//!   library in `libraries/`, sharing `spelling.rs`), labelled with the versions the model holds
//!   for and with what the pool matrix (`lab/pools/`) proved (`proof.rs`).
//! - [`offload`]: file work (configuration, target files, web configuration) on threads of its
//!   own under a deadline, off the daemon's loop.
//! - [`build_info`]: what the binary was built from (`build.rs` fills it in), for
//!   `--version`, `idle_drop_build_info` and the start log line.
//! - [`listener`]: the listen address forms (`:PORT`, `HOST:PORT`, `[IPv6]:PORT`) and the
//!   accept step; [`logging`]: the non-blocking log writer and the text, logfmt and JSON formats.
//! - [`backoff`], [`secret`], [`shutdown`] (signals), [`reload`] (asking the daemon to
//!   reload), [`format`] (durations): small helpers.
//!
//! Layers, from the bottom (no module names one above it; `scripts/test-all.sh` checks for
//! circles): `model`, `format`, `discovery` and the small helpers; `recommend`; `recipes`;
//! `postgres`; `config`; `storage`, `logging`, `metrics`; `probe`; `http`; `daemon`,
//! `discover`, `simulator`.
//!
//! `main.rs` only parses flags, loads the config and calls [`daemon::run`] (or a command's
//! `main`); the integration tests call the same functions.

pub mod backoff;
pub mod build_info;
pub mod config;
pub mod daemon;
pub mod discover;
pub mod discovery;
pub mod format;
pub mod http;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod offload;
pub mod postgres;
pub mod probe;
pub mod recipes;
pub mod recommend;
pub mod reload;
pub mod secret;
pub mod shutdown;
pub mod simulator;
pub mod storage;
