//! What a reload changes for a running target, and the fingerprint of the path a measurement
//! belongs to.
//!
//! A measurement is a fact about the network path as the probes see it, so only settings that
//! change that path or the probe's view of it make it stale. The table (kept in step with
//! `README.md`, "What a reload keeps"):
//!
//! | settings | on reload | measurement |
//! |---|---|---|
//! | `app_max_idle_lifetime`, the URL's pool settings (`max_idle_connection_lifetime`, `socket_timeout`, ... and libpq's `keepalives*`, `tcp_user_timeout`: the application's, stripped before connecting), `recommendation_margin`, `recommended_socket_timeout`, `watch_ladder`, `precision`, `idle_range`, `discovery_policy`, `labels` | applied to the running target | kept, counters too |
//! | the password (in `dsn`, `dsn_env`, `dsn_file`, `password_file`, `password_env`), `reap_ghosts`, `allow_cleartext_password` | the target reconnects | kept, confirmed by the sentinels |
//! | the DSN's other parts (host, port, database, user, options), `sslmode`, the CA file, `connect_timeout`, `query_timeout`, `tcp_user_timeout`, `probe_query`, `max_connections`, `keepalive_probe` | the target reconnects | measured again |

use ring::digest;

use super::TargetConfig;

/// How a target's new settings differ from the running ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetChange {
    Unchanged,
    /// Only settings the running engine applies in place.
    Live,
    /// The connections must be reopened, but the path is the same: keep the measurement.
    Reconnect,
    /// The path or the probe's view of it changed: measure again.
    NewPath,
}

impl TargetConfig {
    /// What applying `new` over `self` takes.
    pub fn change_to(&self, new: &TargetConfig) -> TargetChange {
        if self == new {
            return TargetChange::Unchanged;
        }
        let mut only_live = new.clone();
        only_live.copy_live_settings_from(self);
        if only_live == *self {
            TargetChange::Live
        } else if self.fingerprint() == new.fingerprint() {
            TargetChange::Reconnect
        } else {
            TargetChange::NewPath
        }
    }

    /// Takes the settings a running engine applies in place from `other`.
    pub fn copy_live_settings_from(&mut self, other: &TargetConfig) {
        self.app_max_idle_lifetime = other.app_max_idle_lifetime;
        self.app_lifetime_source = other.app_lifetime_source;
        self.app_params = other.app_params.clone();
        self.recommendation_margin = other.recommendation_margin;
        self.recommended_socket_timeout = other.recommended_socket_timeout;
        self.watch_ladder = other.watch_ladder.clone();
        self.precision = other.precision;
        self.idle_min = other.idle_min;
        self.idle_max = other.idle_max;
        self.discovery_policy = other.discovery_policy;
        self.labels = other.labels.clone();
    }

    /// A digest of everything that decides what the probes measure: equal fingerprints mean a
    /// stored measurement still applies. Leaves out the password (rotating it changes no path,
    /// and a digest of a secret must not land in a file) and every live setting, the URL's
    /// pool settings among them (they describe the application's sockets, not the probe's).
    pub fn fingerprint(&self) -> String {
        let path = [
            format!("dsn={}", self.display_dsn),
            format!("sslmode={:?}", self.sslmode),
            format!(
                "ca={}",
                self.ca_pem
                    .as_ref()
                    .map(|ca| hex(digest::digest(&digest::SHA256, &ca.pem).as_ref()))
                    .unwrap_or_default()
            ),
            format!("connect_timeout={:?}", self.connect_timeout),
            format!("query_timeout={:?}", self.query_timeout),
            format!("tcp_user_timeout={:?}", self.tcp_user_timeout),
            format!("probe_query={}", self.probe_query),
            format!("max_connections={}", self.max_connections),
            format!("keepalive_probe={:?}", self.keepalive_probe),
        ]
        .join("\n");
        let digest = digest::digest(&digest::SHA256, path.as_bytes());
        hex(&digest.as_ref()[..16])
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
