//! The job and result objects of the matrix contract (../README.md, "The job").

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Deserialize)]
pub struct Job {
    pub library: String,
    pub dsn: Dsn,
    /// The application's own sizing; `None` = the library's bare defaults.
    pub pool: Option<Sizing>,
    /// Settings in the library's own names (see README.md); `None` = defaults.
    pub recipe: Option<Map<String, Value>>,
    /// The text idle_drop_exporter printed for the recipe: where a library's module can run it
    /// (src/printed.rs), it runs that instead of `recipe`.
    #[serde(default)]
    pub recipe_text: Option<String>,
    pub rounds: Vec<Round>,
    pub hang_seconds: f64,
}

#[derive(Deserialize)]
pub struct Dsn {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dbname: String,
}

#[derive(Deserialize, Clone, Copy)]
pub struct Sizing {
    pub min: u32,
    pub max: u32,
}

#[derive(Deserialize)]
pub struct Round {
    pub idle_seconds: f64,
    pub queries: usize,
}

impl Job {
    /// How many connections the warm-up opens at once: `pool.min`, or 1 for bare defaults.
    pub fn warm_count(&self) -> u32 {
        self.pool.map_or(1, |p| p.min.max(1))
    }
}

#[derive(Serialize)]
pub struct RoundResult {
    pub idle_seconds: f64,
    pub ok: usize,
    pub failed: usize,
    pub hung: usize,
    pub max_latency_seconds: Option<f64>,
    pub errors: Vec<String>,
}

#[derive(Serialize)]
pub struct Outcome {
    pub library: String,
    pub version: String,
    pub rounds: Vec<RoundResult>,
    /// Set when the pool could not even be built or warmed (bad recipe, database down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Outcome {
    pub fn new(job: &Job, version: String, result: Result<Vec<RoundResult>, String>) -> Self {
        let (rounds, error) = match result {
            Ok(rounds) => (rounds, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        Outcome {
            library: job.library.clone(),
            version,
            rounds,
            error,
        }
    }
}
