//! [`MAX_LABEL_NAMES`] across sources: each file's validation caps the distinct label names of
//! its own targets, this caps them over the inline targets and every file together, the way
//! `merge.rs` caps the number of targets.
//!
//! Files count in path order after the inline targets (which are always in force). A file
//! whose new content would pass the cap is refused and keeps its last good targets; one whose
//! last good targets would pass it too has none in force. Like the target cap, a file counts
//! the names of its new and of its last good targets, so settling a name clash later (which
//! may send it back to the last good ones) cannot pass the cap either.

use std::collections::BTreeSet;

use super::super::{validate::too_many_names, ConfigError, MAX_LABEL_NAMES};
use super::candidate::{Candidate, Decision};

/// Applies the cap; `inline` holds the inline targets' label names.
pub(super) fn cap(inline: &BTreeSet<&str>, files: &[Candidate<'_>], decisions: &mut [Decision]) {
    let mut seen: BTreeSet<&str> = inline.clone();
    for (file, decision) in files.iter().zip(decisions.iter_mut()) {
        if decision.take_new {
            let mut trial = seen.clone();
            match first_past_cap(&mut trial, file) {
                None => {
                    seen = trial;
                    continue;
                }
                Some(error) => {
                    decision.refusal.get_or_insert(error);
                    decision.take_new = false;
                }
            }
        }
        let mut trial = seen.clone();
        trial.extend(file.running_labels.iter().copied());
        if trial.len() <= MAX_LABEL_NAMES {
            seen = trial;
            continue;
        }
        decision.refusal.get_or_insert(ConfigError {
            file: file.path.to_path_buf(),
            line: None,
            field: String::new(),
            reason: format!(
                "its last good targets' labels: {}; none of its targets run",
                too_many_names()
            ),
        });
        decision.dropped = file.running.iter().map(|n| n.to_string()).collect();
    }
}

/// Adds the names of `file`'s new and last good targets to `names`; the refusal of the first
/// new name past the cap, if one is (at its target's name line), or of the last good targets'.
fn first_past_cap<'a>(names: &mut BTreeSet<&'a str>, file: &Candidate<'a>) -> Option<ConfigError> {
    let new = file.new.iter().flatten().zip(&file.new_labels);
    for (i, ((_, line), labels)) in new.enumerate() {
        for name in labels {
            if names.insert(name) && names.len() > MAX_LABEL_NAMES {
                return Some(ConfigError {
                    file: file.path.to_path_buf(),
                    line: *line,
                    field: format!("[{i}].labels.{name}"),
                    reason: too_many_names(),
                });
            }
        }
    }
    names.extend(file.running_labels.iter().copied());
    (names.len() > MAX_LABEL_NAMES).then(|| ConfigError {
        file: file.path.to_path_buf(),
        line: None,
        field: String::new(),
        reason: format!(
            "its new targets' labels with its last good ones' (until the new ones are in force, both count): {}",
            too_many_names()
        ),
    })
}
