//! idle_drop_exporter: finds after how long the network path to a PostgreSQL server silently
//! drops idle connections, keeps watching for changes, and exports it all to Prometheus.
//!
//! Layout (one module per concept):
//! - [`config`]: the YAML file, checked into typed settings (errors name file, line, field).
//! - [`postgres`]: DSNs, TLS, probe connections that remember how they died, error classes.
//! - [`discovery`]: the pure bracket-narrowing policy (and its simulator); no I/O, no clock.
//! - [`target`]: per target, the probe engine (slots, discovery then watch), the control
//!   connection (outage detection, ghost reaping) and the status snapshot.
//! - [`metrics`]: the Prometheus families; [`http`]: `/metrics`, `/`, `/-/*`.
//! - [`daemon`]: runs targets and the HTTP server, applies reloads, shuts down gracefully.
//! - [`recommend`]: pool settings from a bracket; [`backoff`], [`secret`], [`shutdown`],
//!   [`logging`]: small helpers.
//!
//! `main.rs` only parses flags, loads the config and calls [`daemon::run`]; the integration
//! tests call the same function.

#![forbid(unsafe_code)]

pub mod backoff;
pub mod config;
pub mod daemon;
pub mod discovery;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod postgres;
pub mod recommend;
pub mod secret;
pub mod shutdown;
pub mod target;
