//! Reading a job's `recipe`: typed getters that consume keys, so a key no library module took
//! (a typo, a setting this library does not have) fails the job instead of being ignored.
//! Also the tokio-postgres configuration shared by deadpool and bb8.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::job::Job;
use crate::rounds::error_text;

/// tokio-postgres connection-string keys a recipe may set. They are handed to tokio-postgres'
/// own parser (`Config::from_str`, tokio-postgres/src/config.rs `Config::param`), so units are
/// the library's: keepalives_idle, keepalives_interval, tcp_user_timeout and connect_timeout in
/// whole seconds (libpq reads tcp_user_timeout in milliseconds; tokio-postgres does not).
const CONN_KEYS: &[&str] = &[
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "tcp_user_timeout",
    "connect_timeout",
];

pub struct Recipe {
    rest: Map<String, Value>,
}

impl Recipe {
    /// No settings: the DSN alone (the printed code sets the rest).
    pub fn none() -> Self {
        Recipe { rest: Map::new() }
    }

    pub fn of(job: &Job) -> Self {
        Recipe {
            rest: job.recipe.clone().unwrap_or_default(),
        }
    }

    /// A duration in seconds (fractions allowed). `None`: absent; `Some(None)`: JSON null, which
    /// turns the setting off where the library allows that.
    pub fn duration(&mut self, key: &str) -> Result<Option<Option<Duration>>, String> {
        match self.rest.remove(key) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(v) => match v.as_f64() {
                Some(s) if s >= 0.0 && s.is_finite() => Ok(Some(Some(Duration::from_secs_f64(s)))),
                _ => Err(format!(
                    "recipe {key}: expected seconds (a number >= 0) or null, got {v}"
                )),
            },
        }
    }

    /// A duration that cannot be turned off.
    pub fn required_duration(&mut self, key: &str) -> Result<Option<Duration>, String> {
        match self.duration(key)? {
            Some(None) => Err(format!("recipe {key}: cannot be null")),
            Some(Some(d)) => Ok(Some(d)),
            None => Ok(None),
        }
    }

    pub fn uint(&mut self, key: &str) -> Result<Option<u32>, String> {
        self.typed(
            key,
            |v| v.as_u64().and_then(|n| u32::try_from(n).ok()),
            "a whole number",
        )
    }

    pub fn boolean(&mut self, key: &str) -> Result<Option<bool>, String> {
        self.typed(key, Value::as_bool, "true or false")
    }

    pub fn string(&mut self, key: &str) -> Result<Option<String>, String> {
        self.typed(key, |v| v.as_str().map(str::to_owned), "a string")
    }

    fn typed<T>(
        &mut self,
        key: &str,
        get: impl Fn(&Value) -> Option<T>,
        what: &str,
    ) -> Result<Option<T>, String> {
        match self.rest.remove(key) {
            None => Ok(None),
            Some(v) => get(&v)
                .map(Some)
                .ok_or_else(|| format!("recipe {key}: expected {what}, got {v}")),
        }
    }

    /// The tokio-postgres configuration: the job's DSN plus the recipe's connection-string keys,
    /// all parsed by tokio-postgres itself.
    pub fn tokio_postgres_config(&mut self, job: &Job) -> Result<tokio_postgres::Config, String> {
        let d = &job.dsn;
        let mut conn = format!(
            "host={} port={} user={} password={} dbname={} application_name={}",
            quote(&d.host),
            d.port,
            quote(&d.user),
            quote(&d.password),
            quote(&d.dbname),
            quote(&application_name(job))
        );
        for key in CONN_KEYS {
            if let Some(v) = self.rest.remove(*key) {
                // Numbers go in as JSON writes them: `3.5` reaches the parser as `3.5`, which
                // tokio-postgres rejects for whole-second keys, as it would in a user's string.
                let text = match &v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                conn.push_str(&format!(" {key}={}", quote(&text)));
            }
        }
        // The error names the bad key but never echoes the string (it holds the password).
        conn.parse()
            .map_err(|e: tokio_postgres::Error| format!("connection string: {}", error_text(&e)))
    }

    /// Fails on any key no getter consumed.
    pub fn finish(self) -> Result<(), String> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            let keys: Vec<_> = self.rest.keys().cloned().collect();
            Err(format!(
                "recipe keys this library's harness does not know: {}",
                keys.join(", ")
            ))
        }
    }
}

/// Sessions are labelled per library, so a driver can count what each one left on the server.
pub fn application_name(job: &Job) -> String {
    format!("pool-harness-{}", job.library)
}

/// A connection-string value in single quotes, with `\` and `'` escaped (tokio-postgres
/// config.rs `Parser::quoted_value`).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}
