//! What merging reads of each target file ([`Candidate`]) and what it decides for it
//! ([`Decision`]): shared by the merge (`merge.rs`), the label names' cap (`label_cap.rs`) and
//! the refresh that builds the one and applies the other (`mod.rs`), so that neither of the two
//! steps names the other.

use std::collections::BTreeSet;
use std::path::Path;

use super::super::ConfigError;

/// What merging needs of one file.
pub(super) struct Candidate<'a> {
    pub path: &'a Path,
    /// The names its new content gives, with the line of each name (`None` when its content is
    /// refused or not to be taken, e.g. the file is gone).
    pub new: Option<Vec<(&'a str, Option<usize>)>>,
    /// The label names of each target of its new content (empty when `new` is `None`).
    pub new_labels: Vec<Vec<&'a str>>,
    /// The names of its last good targets, in force now.
    pub running: Vec<&'a str>,
    /// The label names of its last good targets.
    pub running_labels: BTreeSet<&'a str>,
    /// Why its content is not taken, found before merging (invalid, gone).
    pub refusal: Option<ConfigError>,
}

/// The decision for one file.
#[derive(Debug, Default)]
pub(super) struct Decision {
    /// Its new content is in force (else its last good targets, less `dropped`).
    pub take_new: bool,
    /// Names of its last good targets another source took.
    pub dropped: BTreeSet<String>,
    /// Why its content is not (wholly) in force; the first reason found.
    pub refusal: Option<ConfigError>,
}
