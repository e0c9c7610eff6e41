//! Recipes: the settings to paste into each pool, derived from what was measured on the path.
//!
//! A recipe is not a string table. Each library has a model of what its settings really do
//! ([`pools`]: idle time or age, whether connections kept at the minimum size are exempt,
//! whether its health check is bounded, where a socket-level bound goes), and the recipe is
//! derived from the measurement ([`Measurement`]): the threshold, how the drop looks, and
//! whether TCP keepalives keep the flow alive (a box that counts packets) or not (a proxy that
//! counts requests). [`Timings`] scales every number to the threshold.
//!
//! Every recipe says whether the pool matrix (`lab/pools/`) proved it: run against the real
//! library, behind a real dropping box of each kind ([`proof`]). One that was not proven says
//! why, and is never shown as a fix.

pub mod command;
mod libraries;
pub mod pools;
pub mod proof;
mod spelling;

use std::fmt;
use std::time::Duration;

use serde::Serialize;

pub use pools::Library;

use crate::model::DeathCause;
pub use proof::Proof;

/// How a dropped connection looks to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum DropKind {
    /// No packet: the next query hangs until a socket-level bound (NLB, Azure LB, conntrack).
    Silent,
    /// The next packet is answered with a reset: the query fails at once (NAT gateway).
    Reset,
    /// The box closed the flow (FIN) while it was idle (a proxy, a NAT instance).
    Fin,
    /// PostgreSQL ended the session itself (`idle_session_timeout`).
    ServerTerminated,
}

impl DropKind {
    /// The drop a death cause shows; `None` for causes that say nothing about the path.
    pub fn of_death(cause: &DeathCause) -> Option<DropKind> {
        match cause {
            DeathCause::Timeout => Some(DropKind::Silent),
            DeathCause::Reset => Some(DropKind::Reset),
            DeathCause::Eof => Some(DropKind::Fin),
            DeathCause::ServerTerminated { .. } => Some(DropKind::ServerTerminated),
            DeathCause::Error => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DropKind::Silent => "silent",
            DropKind::Reset => "reset",
            DropKind::Fin => "fin",
            DropKind::ServerTerminated => "server_terminated",
        }
    }
}

/// Whether TCP keepalives keep an idle flow alive on this path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BoxCounts {
    /// Keepalives rescued a connection idle past the threshold: the box forgets flows that
    /// carry no packet (conntrack, NAT gateway, NLB).
    Packets,
    /// Keepalives did not rescue it: the box forgets flows that carry no request (a proxy,
    /// PgBouncer, RDS Proxy, Envoy), or PostgreSQL ends idle sessions itself.
    Requests,
    /// Not measured: recipes must work either way.
    Unknown,
}

impl BoxCounts {
    pub fn from_keepalive_rescue(rescued: Option<bool>) -> Self {
        match rescued {
            Some(true) => BoxCounts::Packets,
            Some(false) => BoxCounts::Requests,
            None => BoxCounts::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BoxCounts::Packets => "packets",
            BoxCounts::Requests => "requests",
            BoxCounts::Unknown => "unknown",
        }
    }

    /// What a person reads.
    pub fn describe(self) -> &'static str {
        match self {
            BoxCounts::Packets => {
                "the box counts packets: TCP keepalives kept a connection alive past the threshold"
            }
            BoxCounts::Requests => {
                "the box counts requests: TCP keepalives did not keep a connection alive past the threshold (a proxy, or the server itself)"
            }
            BoxCounts::Unknown => "not measured whether TCP keepalives keep a flow alive",
        }
    }
}

/// What a recipe is derived from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measurement {
    /// The longest idle that survived.
    pub lower: Duration,
    /// The shortest idle that killed a connection, if any did.
    pub upper: Option<Duration>,
    pub drop: Option<DropKind>,
    pub box_counts: BoxCounts,
}

/// The user's say in the recipe: how much below the threshold to stay, and the longest a
/// request may wait on a connection that died anyway.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Knobs {
    /// Lifetime = lower bound × (1 − margin).
    pub margin: f64,
    /// Upper limit for the dead-connection bound (socket-level timeouts).
    pub socket_timeout: Duration,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            margin: 0.2,
            socket_timeout: Duration::from_secs(10),
        }
    }
}

/// Every number a recipe uses, scaled to the measured threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Timings {
    /// Retire connections idle (or old) this long: strictly below the lower bound.
    #[serde(serialize_with = "seconds")]
    pub lifetime: Duration,
    /// TCP keepalive: first probe after this much idle, then again each time it is answered.
    /// Half the lifetime, so the box sees a packet well before it forgets the flow.
    #[serde(serialize_with = "seconds")]
    pub keepalive_idle: Duration,
    /// Between unanswered keepalive probes.
    #[serde(serialize_with = "seconds")]
    pub keepalive_interval: Duration,
    /// Unanswered probes before the kernel gives up: idle + interval × count stays within the
    /// lifetime, so a flow the box forgot anyway is found before a pool would hand it out.
    pub keepalive_count: u32,
    /// How long a request may wait on a connection that died anyway (TCP_USER_TIMEOUT, a
    /// client-side read timeout): half the lower bound, 2 s at least, at most the
    /// configured socket timeout.
    #[serde(serialize_with = "seconds")]
    pub dead_bound: Duration,
    /// How long a pool's health check (a `SELECT 1` on a live connection answers in
    /// milliseconds) may take before the connection is thrown away and replaced.
    #[serde(serialize_with = "seconds")]
    pub check_timeout: Duration,
    /// A client-side read timeout (JDBC socketTimeout, quaint socket_timeout, a context
    /// deadline). Unlike TCP_USER_TIMEOUT it also ends a slow query on a live connection, so it
    /// is the user's figure (`--socket-timeout`), not scaled down with the threshold.
    #[serde(serialize_with = "seconds")]
    pub read_timeout: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Unanswered keepalive probes before the kernel gives up.
const KEEPALIVE_COUNT: u32 = 3;
const MIN_DEAD_BOUND: Duration = Duration::from_secs(2);
const MAX_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Timings {
    /// `None` when the lower bound leaves no room for a lifetime of at least a second.
    pub fn new(m: &Measurement, knobs: &Knobs) -> Option<Timings> {
        let lifetime = crate::recommend::lifetime_below(m.lower, knobs.margin)?;
        if lifetime < Duration::from_secs(1) {
            return None;
        }
        // Kernel keepalive settings are whole seconds, 1 s at least.
        let keepalive_idle = whole_seconds_down(lifetime / 2).max(Duration::from_secs(1));
        let keepalive_interval =
            whole_seconds_down((lifetime - keepalive_idle.min(lifetime)) / KEEPALIVE_COUNT)
                .max(Duration::from_secs(1));
        let dead_bound = whole_seconds_up(m.lower / 2)
            .max(MIN_DEAD_BOUND)
            .min(knobs.socket_timeout.max(Duration::from_secs(1)));
        let check_timeout = dead_bound.min(MAX_CHECK_TIMEOUT);
        Some(Timings {
            lifetime,
            keepalive_idle,
            keepalive_interval,
            keepalive_count: KEEPALIVE_COUNT,
            dead_bound,
            check_timeout,
            read_timeout: knobs.socket_timeout,
        })
    }
}

fn whole_seconds_down(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

fn whole_seconds_up(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// Which mechanism a recipe relies on.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Retire connections before the box forgets them (no exempt minimum), check them with a
    /// bound, and bound every read: works whatever the box counts.
    Eviction,
    /// Keep the flow alive with TCP keepalives scaled to the threshold: for boxes that count
    /// packets; connections stay warm.
    Keepalive,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Eviction => "eviction",
            Variant::Keepalive => "keepalive",
        }
    }
}

/// One setting in the library's own name and unit, as the pool matrix applies it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Setting {
    pub key: &'static str,
    pub value: serde_json::Value,
}

/// The settings for one library on this path.
#[derive(Clone, Debug, Serialize)]
pub struct Recipe {
    pub library: Library,
    /// What a person recognises: "asyncpg (create_pool)".
    pub title: &'static str,
    pub variant: Variant,
    /// The settings, in the library's names and units (what the matrix runs).
    pub settings: Vec<Setting>,
    /// The same settings as the line to paste.
    pub text: String,
    /// One sentence: why these settings end the failures on this path.
    pub why: String,
    /// The longest the first request after an idle may take, where a dead connection must
    /// first be detected and replaced (what the matrix checks).
    #[serde(serialize_with = "seconds")]
    pub first_request_bound: Duration,
    /// Whether the pool matrix proved this recipe, and where.
    pub proof: Proof,
    /// The library releases the model, and so this recipe, holds for.
    pub versions: &'static str,
    /// Where the setting names and semantics come from.
    pub source: &'static str,
}

impl Recipe {
    /// Shown as a fix only when proven for a box of the measured kind.
    pub fn is_proven(&self) -> bool {
        matches!(self.proof, Proof::Verified { .. })
    }
}

/// The recipes for every library we model, for this measurement. Empty when the lower bound
/// leaves no room for a lifetime.
pub fn for_path(m: &Measurement, knobs: &Knobs) -> Vec<Recipe> {
    let Some(t) = Timings::new(m, knobs) else {
        return Vec::new();
    };
    let variant_for = |library: Library| {
        let model = library.model();
        if !model.can_evict || (m.box_counts == BoxCounts::Packets && model.keepalive_recipe) {
            Variant::Keepalive
        } else {
            Variant::Eviction
        }
    };
    Library::ALL
        .iter()
        .map(|&library| {
            let variant = variant_for(library);
            libraries::recipe(library, variant, m, &t)
        })
        .collect()
}

/// A duration as a library takes it: whole seconds, rounded down (a lifetime must not grow).
pub(crate) fn secs_down(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// A duration as a library takes it: whole seconds, rounded up (a timeout must not shrink
/// below the check it bounds).
pub(crate) fn secs_up(d: Duration) -> u64 {
    whole_seconds_up(d).as_secs().max(1)
}

pub(crate) fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.title)?;
        writeln!(f, "    for {}", self.versions)?;
        for line in self.text.lines() {
            writeln!(f, "    {line}")?;
        }
        writeln!(f, "    why: {}", self.why)?;
        write!(f, "    {}", self.proof)
    }
}

/// The recipes as people read them: the proven ones as fixes, the rest apart, each with its
/// reason.
pub fn render_text(recipes: &[Recipe]) -> String {
    use fmt::Write;
    let (proven, unproven): (Vec<&Recipe>, Vec<&Recipe>) =
        recipes.iter().partition(|r| r.is_proven());
    let mut out = String::new();
    if !proven.is_empty() {
        let _ = writeln!(
            out,
            "Settings for your pool, each run against the real library behind a box like yours:\n"
        );
        for r in &proven {
            let _ = writeln!(out, "  {}\n", indent(&r.to_string()));
        }
    }
    if !unproven.is_empty() {
        let _ = writeln!(
            out,
            "Not verified for this path (derived from the library's source; try them behind \
             `idle_drop_exporter simulate` before you rely on them):\n"
        );
        for r in &unproven {
            let _ = writeln!(out, "  {}\n", indent(&r.to_string()));
        }
    }
    out
}

fn indent(text: &str) -> String {
    text.replace('\n', "\n  ")
}

#[cfg(test)]
mod tests;
