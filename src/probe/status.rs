//! What the landing page shows about each target: a snapshot the engine updates after every
//! event and the HTTP server reads. Holds no secrets: the DSN is the redacted one.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::discovery::Bracket;
use crate::model::{DeathCause, Detected, Role, TargetState};
use crate::recipes::{BoxCounts, DropKind, Knobs, Measurement};
use crate::recommend::Recommendation;

/// How many recent closed-connection events a target keeps for the page.
pub const RECENT_EVENTS: usize = 20;

/// One closed-connection event, as the page lists it.
#[derive(Clone, Debug)]
pub struct EventRecord {
    pub at: SystemTime,
    pub role: Role,
    pub cause: DeathCause,
    pub idle: Duration,
    pub detected: Detected,
    pub unexpected: bool,
}

/// One probe use, for the survival chart.
#[derive(Clone, Copy, Debug)]
pub struct ProbeRecord {
    pub idle: Duration,
    pub survived: bool,
}

/// A target as the page shows it.
#[derive(Clone, Debug)]
pub struct TargetStatus {
    pub name: String,
    pub display_dsn: String,
    pub state: TargetState,
    pub up: bool,
    pub bracket: Bracket,
    pub recommendation: Option<Recommendation>,
    /// The recommendation comes from a stored measurement the sentinels have not confirmed:
    /// the page shows it as "stored, confirming", never as advice (no recipes).
    pub recommendation_unconfirmed: bool,
    pub app_max_idle_lifetime: Option<Duration>,
    /// Where the app lifetime came from (the config, the URL, quaint's default).
    pub app_lifetime_source: Option<crate::config::LifetimeSource>,
    pub idle_min: Duration,
    pub idle_max: Duration,
    pub keepalive_rescue: Option<bool>,
    /// How the drop looked in the stored measurement this run resumed from (until this run
    /// sees deaths of its own).
    pub stored_drop: Option<DeathCause>,
    /// When the stored measurement this run resumed from was taken.
    pub resumed_from: Option<SystemTime>,
    pub recommendation_margin: f64,
    /// The target's `labels` (a reload changes them in place).
    pub labels: crate::config::Labels,
    pub ghosts_alive: usize,
    /// Dead probe sessions the server still listed (silent on both ends), and how many of
    /// those we terminated.
    pub ghosts_seen: u64,
    pub ghosts_reaped: u64,
    /// Dead probe sessions whose ghost check reached an answer (the server was asked and said
    /// gone, or we terminated it); 0 means nobody could ask.
    pub ghosts_checked: u64,
    /// Every connection death so far by cause (`timeout`, `reset`, `eof`,
    /// `server_terminated (57P05)`, ...): how the drop looks on this path.
    pub deaths: BTreeMap<DeathCause, u64>,
    /// The server's settings that change what a probe sees (keepalives, idle timeouts).
    pub server_settings: Vec<(String, String)>,
    /// When discovery last started and, once it ended, how long it took.
    pub discovery_started: Option<SystemTime>,
    pub discovery_took: Option<Duration>,
    pub sessions: usize,
    /// The most sessions that existed at once.
    pub sessions_peak: usize,
    pub last_error: Option<String>,
    pub recent_events: VecDeque<EventRecord>,
    pub recent_probes: VecDeque<ProbeRecord>,
}

impl TargetStatus {
    pub fn new(target: &crate::config::TargetConfig) -> Self {
        let mut status = TargetStatus {
            name: target.name.clone(),
            display_dsn: target.display_dsn.clone(),
            state: TargetState::Discovering,
            up: false,
            bracket: Bracket::default(),
            recommendation: None,
            recommendation_unconfirmed: false,
            app_max_idle_lifetime: None,
            app_lifetime_source: None,
            idle_min: target.idle_min,
            idle_max: target.idle_max,
            keepalive_rescue: None,
            stored_drop: None,
            resumed_from: None,
            recommendation_margin: 0.0,
            labels: crate::config::Labels::new(),
            ghosts_alive: 0,
            ghosts_seen: 0,
            ghosts_reaped: 0,
            ghosts_checked: 0,
            deaths: BTreeMap::new(),
            server_settings: Vec::new(),
            discovery_started: None,
            discovery_took: None,
            sessions: 0,
            sessions_peak: 0,
            last_error: None,
            recent_events: VecDeque::new(),
            recent_probes: VecDeque::new(),
        };
        status.show_settings(target);
        status
    }

    /// The settings the page shows beside the measurement (a reload changes them in place).
    pub fn show_settings(&mut self, target: &crate::config::TargetConfig) {
        self.app_max_idle_lifetime = target.app_max_idle_lifetime;
        self.app_lifetime_source = target.app_lifetime_source;
        self.idle_min = target.idle_min;
        self.idle_max = target.idle_max;
        self.recommendation_margin = target.recommendation_margin;
        self.labels = target.labels.clone();
    }
}

impl TargetStatus {
    /// What the recipes are derived from; `None` until some idle survived.
    pub fn measurement(&self) -> Option<Measurement> {
        Some(Measurement {
            lower: self.bracket.lower?,
            upper: self.bracket.upper,
            drop: dominant_death(&self.deaths)
                .or(self.stored_drop.as_ref())
                .and_then(DropKind::of_death),
            box_counts: BoxCounts::from_keepalive_rescue(self.keepalive_rescue),
        })
    }

    /// The user's say in the recipes, from the target's settings.
    pub fn knobs(&self) -> Option<Knobs> {
        self.recommendation.map(|r| Knobs {
            margin: self.recommendation_margin,
            socket_timeout: r.socket_timeout,
        })
    }
}

/// The most frequent cause of death, `error` aside: how the drop looks on this path.
pub fn dominant_death(deaths: &BTreeMap<DeathCause, u64>) -> Option<&DeathCause> {
    deaths
        .iter()
        .filter(|(cause, _)| DropKind::of_death(cause).is_some())
        .max_by_key(|(_, n)| **n)
        .map(|(cause, _)| cause)
}

/// All targets' snapshots, keyed by name (sorted for the page).
pub type StatusBoard = Arc<RwLock<BTreeMap<String, TargetStatus>>>;

/// Applies `change` to one target's snapshot, if it is still on the board.
pub(super) fn update(board: &StatusBoard, name: &str, change: impl FnOnce(&mut TargetStatus)) {
    let mut board = board.write().unwrap_or_else(|e| e.into_inner());
    if let Some(status) = board.get_mut(name) {
        change(status);
    }
}
