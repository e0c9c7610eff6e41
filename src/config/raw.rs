//! The configuration file exactly as written: serde types that reject unknown fields and keep
//! every value in the form the user typed it, so `validate` can name the field it refuses.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen_address: Option<String>,
    pub log: Option<RawLog>,
    #[serde(default)]
    pub targets: Vec<RawTarget>,
    /// Globs of files that each hold a list of targets (see `target_files.rs`).
    pub target_files: Option<Vec<String>>,
    pub target_files_refresh_interval: Option<String>,
    /// Folders (besides its own) whose files a target file may name.
    pub target_files_allowed_dirs: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub name: Option<String>,
    pub dsn: Option<String>,
    pub dsn_env: Option<String>,
    pub dsn_file: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    pub sslmode: Option<String>,
    pub ca_file: Option<String>,
    pub connect_timeout: Option<String>,
    pub probe_query: Option<String>,
    pub query_timeout: Option<String>,
    pub tcp_user_timeout: Option<String>,
    pub max_connections: Option<i64>,
    pub idle_range: Option<RawRange>,
    pub precision: Option<RawFraction>,
    pub watch_ladder: Option<Vec<String>>,
    pub app_max_idle_lifetime: Option<String>,
    pub recommendation_margin: Option<RawFraction>,
    pub recommended_socket_timeout: Option<String>,
    pub keepalive_probe: Option<RawKeepaliveProbe>,
    pub reap_ghosts: Option<bool>,
    pub discovery_policy: Option<String>,
    pub allow_cleartext_password: Option<bool>,
    /// `labels: {team: payments}`: a mapping as written (order kept, keys and values of any
    /// YAML type), so `validate/labels.rs` can name what it refuses.
    pub labels: Option<serde_yaml::Mapping>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawRange {
    pub min: Option<String>,
    pub max: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawKeepaliveProbe {
    pub enabled: Option<bool>,
    pub interval: Option<String>,
}

/// `5%` or `0.05`: people write both.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RawFraction {
    Number(f64),
    Text(String),
}
