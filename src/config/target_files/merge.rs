//! Which targets of each file are in force: the total cap, then every name clash settled, in
//! O(N log N) for N targets (the earlier version recomputed every holder of every name once per
//! clash, quadratic in a fleet whose files clash).
//!
//! The rules (see the module doc of [`super`]): a file's new content is taken when it is valid,
//! fits under [`MAX_TARGETS`] with the inline targets and the files before it, and clashes with
//! no name of another source; otherwise its last good targets stay. Inline targets keep their
//! names; then the file that already ran the target; then the first file in path order. A file
//! that loses a clash with its new content goes back to its last good targets; one that loses
//! with its last good targets loses that one name. The label names' cap is applied the same
//! way, in `label_cap.rs`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use super::super::ConfigError;
use super::candidate::{Candidate, Decision};
use super::MAX_TARGETS;

/// Where a target name comes from; inline first, then files in path order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Source {
    Inline,
    File(usize),
}

/// Decides, for each file, what is in force; `inline_labels` are the inline targets' label
/// names.
pub(super) fn merge(
    inline: &[&str],
    inline_labels: &BTreeSet<&str>,
    main_file: &Path,
    files: &[Candidate<'_>],
) -> Vec<Decision> {
    let mut decisions: Vec<Decision> = files
        .iter()
        .map(|f| Decision {
            take_new: f.new.is_some(),
            dropped: BTreeSet::new(),
            refusal: f.refusal.clone(),
        })
        .collect();
    cap(inline.len(), files, &mut decisions);
    super::label_cap::cap(inline_labels, files, &mut decisions);
    let running: Vec<HashSet<&str>> = files
        .iter()
        .map(|f| f.running.iter().copied().collect())
        .collect();
    // Per file, where each name of its new content is (built for a file's first clash).
    let mut positions: HashMap<usize, HashMap<&str, usize>> = HashMap::new();
    let mut holders = Holders::default();
    for name in inline {
        holders.add(name, Source::Inline);
    }
    for (i, decision) in decisions.iter().enumerate() {
        for name in in_force(&files[i], decision) {
            holders.add(name, Source::File(i));
        }
    }
    while let Some((name, sources)) = holders.first_clash() {
        let winner = if sources.contains(&Source::Inline) {
            Source::Inline
        } else {
            sources
                .iter()
                .copied()
                .find(|s| matches!(s, Source::File(i) if running[*i].contains(name)))
                .unwrap_or(sources[0])
        };
        let Some(Source::File(loser)) = sources.iter().copied().find(|s| *s != winner) else {
            break;
        };
        let holder = match winner {
            Source::Inline => main_file.display().to_string(),
            Source::File(i) => files[i].path.display().to_string(),
        };
        let position = positions
            .entry(loser)
            .or_insert_with(|| {
                let new = files[loser].new.iter().flatten();
                new.enumerate().map(|(i, (name, _))| (*name, i)).collect()
            })
            .get(name)
            .copied();
        let error = clash_error(&files[loser], position, name, &holder);
        let decision = &mut decisions[loser];
        if decision.take_new {
            for name in in_force(&files[loser], decision) {
                holders.remove(name, Source::File(loser));
            }
            decision.take_new = false;
            for name in in_force(&files[loser], decision) {
                holders.add(name, Source::File(loser));
            }
        } else {
            decision.dropped.insert(name.to_string());
            holders.remove(name, Source::File(loser));
        }
        // The first reason is the one to fix (an invalid file's own error before a clash).
        decision.refusal.get_or_insert(error);
    }
    decisions
}

/// The names file `file` has in force under `decision`.
fn in_force<'a>(file: &Candidate<'a>, decision: &Decision) -> Vec<&'a str> {
    match (&file.new, decision.take_new) {
        (Some(new), true) => new.iter().map(|(name, _)| *name).collect(),
        (None, true) => Vec::new(),
        (_, false) => file
            .running
            .iter()
            .copied()
            .filter(|name| !decision.dropped.contains(*name))
            .collect(),
    }
}

/// Applies [`MAX_TARGETS`] in path order, before any clash: a file whose new content would pass
/// it keeps its last good targets, and one whose last good targets would too has none in force.
/// A file counts the larger of its new and its last good targets, so settling a clash later
/// (which may send it back to the last good ones) cannot pass the cap either.
fn cap(inline: usize, files: &[Candidate<'_>], decisions: &mut [Decision]) {
    let mut room = MAX_TARGETS.saturating_sub(inline);
    for (file, decision) in files.iter().zip(decisions.iter_mut()) {
        let new = file.new.as_ref().map_or(0, Vec::len);
        let running = file.running.len();
        let need = if decision.take_new {
            new.max(running)
        } else {
            running
        };
        if need <= room {
            room -= need;
            continue;
        }
        let reason = format!(
            "its {} targets would make more than {MAX_TARGETS} targets in all (the configuration's and every target file's); {}",
            if decision.take_new { new } else { running },
            if running <= room { "its last good targets stay" } else { "none of its targets run" }
        );
        decision.refusal.get_or_insert(ConfigError {
            file: file.path.to_path_buf(),
            line: None,
            field: String::new(),
            reason,
        });
        decision.take_new = false;
        if running <= room {
            room -= running;
        } else {
            decision.dropped = file.running.iter().map(|n| n.to_string()).collect();
        }
    }
}

/// The refusal of `file` for bringing `name`, at `position` in its new content if it is there.
fn clash_error(
    file: &Candidate<'_>,
    position: Option<usize>,
    name: &str,
    holder: &str,
) -> ConfigError {
    let clashing = file
        .new
        .as_ref()
        .zip(position)
        .map(|(new, i)| (i, new[i].1));
    ConfigError {
        file: file.path.to_path_buf(),
        line: clashing.and_then(|(_, line)| line),
        field: clashing.map_or(String::new(), |(i, _)| format!("[{i}].name")),
        reason: format!(
            "`{name}` is already a target of {holder}; names must be unique across targets and every target file"
        ),
    }
}

/// Every name's sources, and the names held by more than one, ordered as the clashes are
/// settled: by their second source, then by name.
#[derive(Default)]
struct Holders<'a> {
    sources: HashMap<&'a str, BTreeSet<Source>>,
    clashes: BTreeSet<(Source, &'a str)>,
}

impl<'a> Holders<'a> {
    fn add(&mut self, name: &'a str, source: Source) {
        let sources = self.sources.entry(name).or_default();
        if let Some(second) = sources.iter().nth(1) {
            self.clashes.remove(&(*second, name));
        }
        sources.insert(source);
        if let Some(second) = sources.iter().nth(1) {
            self.clashes.insert((*second, name));
        }
    }

    fn remove(&mut self, name: &'a str, source: Source) {
        let Some(sources) = self.sources.get_mut(name) else {
            return;
        };
        if let Some(second) = sources.iter().nth(1) {
            self.clashes.remove(&(*second, name));
        }
        sources.remove(&source);
        if let Some(second) = sources.iter().nth(1) {
            self.clashes.insert((*second, name));
        }
    }

    fn first_clash(&self) -> Option<(&'a str, Vec<Source>)> {
        let (_, name) = self.clashes.first()?;
        let sources = self.sources.get(name)?.iter().copied().collect();
        Some((*name, sources))
    }
}
