//! Everything that talks to PostgreSQL: DSN parsing, TLS, probe connections that remember how
//! they died, and the classification of driver errors into metric label values.

pub mod classify;
pub mod connection;
pub mod dsn;
pub mod tls;

/// Every session the exporter opens carries this `application_name`, so operators (and our own
/// ghost reaper) can tell them apart in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "idle_drop_exporter";
