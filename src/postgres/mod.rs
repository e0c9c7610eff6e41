//! Everything that talks to PostgreSQL: DSN parsing, TLS, the watched startup that never sends
//! a password in clear text without TLS (`startup`), probe connections that remember how they
//! died, and the classification of driver errors into metric label values; what the client's
//! kernel says of a probe's socket (`tcp_state`) and whether a use sent on it reached the
//! server (`arrival`).

pub mod arrival;
pub mod classify;
pub mod connection;
pub mod dsn;
pub mod startup;
pub mod tcp_state;
pub mod tls;

/// Every session the exporter opens carries an `application_name` that starts with this (then
/// `/` and a nonce per connection attempt, see [`connection::Attempt`]), so operators (and our
/// own ghost reaper) can tell them apart in `pg_stat_activity`
/// (`application_name LIKE 'idle_drop_exporter/%'`).
pub const APPLICATION_NAME: &str = "idle_drop_exporter";

/// `text` as an SQL string literal, for the simple protocol (which takes no parameters): quotes
/// doubled, and an `E''` literal with backslashes doubled when there are any, so the result
/// means `text` whatever `standard_conforming_strings` says.
pub fn sql_literal(text: &str) -> String {
    let quoted = text.replace('\'', "''");
    if quoted.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

#[cfg(test)]
mod literal_tests {
    use super::sql_literal;

    #[test]
    fn literals_quote_what_would_end_or_escape_them() {
        assert_eq!(
            sql_literal("2026-12-03 13:00:00.1+00"),
            "'2026-12-03 13:00:00.1+00'"
        );
        assert_eq!(sql_literal("it's"), "'it''s'");
        assert_eq!(sql_literal(r"a\'b"), r"E'a\\''b'");
        assert_eq!(sql_literal(""), "''");
    }
}
