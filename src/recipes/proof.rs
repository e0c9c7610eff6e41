//! What the pool matrix proved: for each library and recipe variant, the library version it ran
//! and the boxes behind which the recipe ended the failures (0 failed, 0 hung, first request
//! within its bound).
//!
//! `proven.json` beside this file is written by `lab/pools/matrix.py --record` from a passing
//! run, and checked by every later run: a claim the matrix cannot reproduce fails CI. The
//! binary reads it at compile time, so what it prints is what the committed run proved.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::{BoxCounts, DropKind, Library, Measurement, Variant};

/// The boxes of the matrix (`lab/pools/README.md`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum MatrixBox {
    /// Linux conntrack dropping packets of forgotten flows.
    Silent,
    /// Linux conntrack answering them with a reset.
    Reset,
    /// `simulate --mode fin`: a proxy that closes idle flows.
    Fin,
    /// `simulate --mode silent`: a proxy that stops answering; keepalives do not help.
    Proxy,
    /// PostgreSQL's own `idle_session_timeout`.
    Server,
}

impl MatrixBox {
    pub const ALL: [MatrixBox; 5] = [
        MatrixBox::Silent,
        MatrixBox::Reset,
        MatrixBox::Fin,
        MatrixBox::Proxy,
        MatrixBox::Server,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MatrixBox::Silent => "silent",
            MatrixBox::Reset => "reset",
            MatrixBox::Fin => "fin",
            MatrixBox::Proxy => "proxy",
            MatrixBox::Server => "server",
        }
    }
}

/// The matrix boxes a measured path could be: a recipe is proven for the path only if it was
/// proven behind each of them. Empty when no box of the matrix looks like the path.
pub fn boxes_like(m: &Measurement) -> Vec<MatrixBox> {
    use MatrixBox::*;
    match (m.drop, m.box_counts) {
        (Some(DropKind::Silent), BoxCounts::Packets) => vec![Silent],
        (Some(DropKind::Silent), BoxCounts::Requests) => vec![Proxy],
        (Some(DropKind::Silent), BoxCounts::Unknown) => vec![Silent, Proxy],
        // The matrix's reset box is conntrack; a proxy that resets is not in it.
        (Some(DropKind::Reset), BoxCounts::Packets | BoxCounts::Unknown) => vec![Reset],
        (Some(DropKind::Fin), _) => vec![Fin],
        (Some(DropKind::ServerTerminated), _) => vec![Server],
        _ => Vec::new(),
    }
}

/// Whether a recipe was proven for the measured path.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Proof {
    /// Run against the real library behind every box the path could be.
    Verified {
        version: String,
        boxes: Vec<MatrixBox>,
        threshold_seconds: f64,
        /// Boxes of the proof that also ran at other thresholds, and passed there too.
        also_at: Vec<AlsoAt>,
    },
    /// Proven behind some boxes, but not behind one the path could be.
    NotForThisPath {
        version: String,
        boxes: Vec<MatrixBox>,
        missing: Vec<MatrixBox>,
    },
    /// Never run by the matrix, and why.
    NotVerified { reason: String },
}

impl fmt::Display for Proof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |boxes: &[MatrixBox]| {
            boxes
                .iter()
                .map(|b| b.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Proof::Verified {
                version,
                boxes,
                threshold_seconds,
                also_at,
            } => {
                write!(
                    f,
                    "verified against {version} behind {} (T = {threshold_seconds} s",
                    names(boxes)
                )?;
                for run in also_at {
                    write!(
                        f,
                        "; T = {} s behind {}",
                        run.threshold_seconds,
                        names(&run.boxes)
                    )?;
                }
                write!(f, ")")
            }
            Proof::NotForThisPath {
                version,
                boxes,
                missing,
            } => write!(
                f,
                "not verified for this path: proven against {version} behind {} only, not behind {}",
                names(boxes),
                names(missing)
            ),
            Proof::NotVerified { reason } => write!(f, "not verified: {reason}"),
        }
    }
}

/// A further threshold some boxes ran at: a proof behind those boxes holds at both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlsoAt {
    pub threshold_seconds: f64,
    pub boxes: Vec<MatrixBox>,
}

/// `proven.json` as the matrix writes it.
#[derive(Debug, Deserialize)]
struct ProvenFile {
    threshold_seconds: f64,
    #[serde(default)]
    also_at: Vec<AlsoAt>,
    recipes: Vec<ProvenRecipe>,
}

#[derive(Debug, Deserialize)]
struct ProvenRecipe {
    library: Library,
    variant: Variant,
    version: String,
    boxes: Vec<MatrixBox>,
}

struct Proven {
    threshold_seconds: f64,
    also_at: Vec<AlsoAt>,
    by_recipe: BTreeMap<(Library, Variant), (String, Vec<MatrixBox>)>,
}

const PROVEN_JSON: &str = include_str!("proven.json");

fn proven() -> &'static Proven {
    static PROVEN: OnceLock<Proven> = OnceLock::new();
    PROVEN.get_or_init(|| {
        // A broken file is caught by this module's tests; a binary built from one proves
        // nothing rather than crash.
        let file: ProvenFile = serde_json::from_str(PROVEN_JSON).unwrap_or(ProvenFile {
            threshold_seconds: 0.0,
            also_at: Vec::new(),
            recipes: Vec::new(),
        });
        Proven {
            threshold_seconds: file.threshold_seconds,
            also_at: file.also_at,
            by_recipe: file
                .recipes
                .into_iter()
                .map(|r| ((r.library, r.variant), (r.version, r.boxes)))
                .collect(),
        }
    })
}

/// The proof of one recipe for one measured path; `unprovable` is the library's reason when
/// the matrix cannot run it at all.
pub fn proof_of(
    library: Library,
    variant: Variant,
    m: &Measurement,
    unprovable: Option<&'static str>,
) -> Proof {
    if let Some(reason) = unprovable {
        return Proof::NotVerified {
            reason: reason.to_string(),
        };
    }
    let proven = proven();
    let Some((version, boxes)) = proven.by_recipe.get(&(library, variant)) else {
        return Proof::NotVerified {
            reason: "the pool matrix has not proved it".to_string(),
        };
    };
    let needed = boxes_like(m);
    if needed.is_empty() {
        return Proof::NotVerified {
            reason: "no box of the pool matrix drops connections the way this path does"
                .to_string(),
        };
    }
    let missing: Vec<MatrixBox> = needed
        .iter()
        .filter(|b| !boxes.contains(b))
        .copied()
        .collect();
    if missing.is_empty() {
        let also_at = proven
            .also_at
            .iter()
            .map(|run| AlsoAt {
                threshold_seconds: run.threshold_seconds,
                boxes: run
                    .boxes
                    .iter()
                    .filter(|b| boxes.contains(b))
                    .copied()
                    .collect(),
            })
            .filter(|run| !run.boxes.is_empty())
            .collect();
        Proof::Verified {
            version: version.clone(),
            boxes: boxes.clone(),
            threshold_seconds: proven.threshold_seconds,
            also_at,
        }
    } else {
        Proof::NotForThisPath {
            version: version.clone(),
            boxes: boxes.clone(),
            missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_proof_file_parses_and_names_known_libraries() {
        let file: ProvenFile = serde_json::from_str(PROVEN_JSON).expect("proven.json parses");
        assert!(file.threshold_seconds >= 0.0);
        for r in &file.recipes {
            assert!(!r.version.is_empty(), "{r:?}");
            assert!(!r.boxes.is_empty(), "{r:?}");
        }
    }

    #[test]
    fn an_unknown_box_needs_proof_behind_both_kinds_it_could_be() {
        let m = Measurement {
            lower: std::time::Duration::from_secs(300),
            upper: None,
            drop: Some(DropKind::Silent),
            box_counts: BoxCounts::Unknown,
        };
        assert_eq!(boxes_like(&m), vec![MatrixBox::Silent, MatrixBox::Proxy]);
        let packets = Measurement {
            box_counts: BoxCounts::Packets,
            ..m
        };
        assert_eq!(boxes_like(&packets), vec![MatrixBox::Silent]);
    }
}
