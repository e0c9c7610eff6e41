//! A string that must never reach a log line, a metric, a page or an error message.
//!
//! Passwords are read from `password_file` / `password_env` (or, discouraged, the DSN) into a
//! [`Secret`]. Its `Debug` and `Display` print a fixed placeholder, so a `{:?}` of a config or a
//! connection setting cannot leak it by accident.

use std::fmt;

/// Holds a secret value; only [`Secret::expose`] reveals it, at the single place it is handed to the
/// PostgreSQL driver.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value. Call it only where the secret leaves the process for its intended peer.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret::new("hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(!format!("{secret}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
    }
}
