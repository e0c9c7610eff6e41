//! The spelling the Rust libraries' recipes share: real Rust that compiles as printed (the pool
//! matrix's Rust harness compiles these very texts, `lab/pools/rust/build.rs`).
//!
//! Two rules keep a text checkable for any threshold: every number is a plain literal outside
//! string literals (no suffix, no tuple index next to it), and a number in a given place is always
//! of one kind (a whole number, or an `f64` written with its decimal point). The harness then
//! compares a printed text with the one it compiled, numbers masked, and runs the compiled code
//! with the printed numbers.

use std::time::Duration;

use super::super::{secs_down, secs_up, Timings};

/// Seconds as an `f64` literal that always has its decimal point ("6.4", "6.0"), to the
/// millisecond: what `Duration::from_secs_f64` takes.
pub(crate) fn f64_secs(d: Duration) -> String {
    format!("{:?}", d.as_millis() as f64 / 1000.0)
}

/// `Duration::from_secs_f64(6.4)`.
pub(crate) fn duration_f64(d: Duration) -> String {
    format!("Duration::from_secs_f64({})", f64_secs(d))
}

/// tokio-postgres `Config` calls: TCP keepalives scaled to the threshold, and TCP_USER_TIMEOUT
/// (tokio-postgres 0.7 config.rs: `keepalives`, `keepalives_idle`, `keepalives_interval`,
/// `tcp_user_timeout`). No `keepalives_retries`: with TCP_USER_TIMEOUT set, Linux never reads
/// the probe count (see `spelling::keepalive_keys`).
pub(crate) fn tokio_postgres_keepalives(t: &Timings) -> String {
    format!(
        "config\n    .keepalives(true)\n    .keepalives_idle(Duration::from_secs({}))\n    \
         .keepalives_interval(Duration::from_secs({}))\n    \
         .tcp_user_timeout(Duration::from_secs({}));",
        secs_down(t.keepalive_idle),
        secs_down(t.keepalive_interval),
        secs_up(t.dead_bound)
    )
}

/// The first lines of a text that sets TCP_USER_TIMEOUT on the user's tokio-postgres `Config`.
pub(crate) fn tokio_postgres_user_timeout(t: &Timings) -> String {
    format!(
        "// config: your tokio_postgres::Config\nconfig.tcp_user_timeout(Duration::from_secs({}));",
        secs_up(t.dead_bound)
    )
}
