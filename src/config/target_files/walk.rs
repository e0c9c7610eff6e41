//! Listing what the `target_files` globs match, without the `glob` crate's walk: that one
//! follows directory symlinks as often as they appear, so a `**` over two links to `.` walked
//! exponentially (and forever with a loop). Here each directory is read at most once per
//! pattern component (keyed by device and inode, so a symlink to a directory already seen is
//! not entered again), at most [`MAX_DEPTH`] levels below the glob's literal folder, and at
//! most [`MAX_ENTRIES`] directory entries are examined per listing; past either bound the walk
//! stops and says so. Components are matched with `glob::Pattern` and the options of
//! [`super::MATCH`], so what matches is what the glob crate would list, duplicates through
//! links aside.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::MATCH;

/// The most directory levels a `**` descends below the glob's literal folder.
pub const MAX_DEPTH: usize = 32;
/// The most directory entries one listing examines (all globs together).
pub const MAX_ENTRIES: usize = 100_000;

/// One component of a glob: a literal name, a pattern, or `**`.
enum Component {
    Literal(String),
    Pattern(glob::Pattern),
    AnyDirs,
}

fn components(pattern: &str) -> Option<Vec<Component>> {
    pattern
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(|c| {
            if c == "**" {
                Some(Component::AnyDirs)
            } else if c.contains(['*', '?', '[']) {
                glob::Pattern::new(c).ok().map(Component::Pattern)
            } else {
                Some(Component::Literal(c.to_string()))
            }
        })
        .collect()
}

/// What one listing found.
#[derive(Debug, Default)]
pub(super) struct Walked {
    /// Matching paths that are not directories (a broken symlink included: its read says so).
    pub files: Vec<PathBuf>,
    /// Folders that could not be read, and a bound that stopped the walk.
    pub problems: Vec<String>,
    /// False when a bound stopped the walk: what was not seen may still exist.
    pub complete: bool,
}

/// Walks the file system for one listing (every glob), within the bounds above.
pub(super) struct Walker {
    entries: usize,
    /// The entry budget is spent: nothing more is read.
    exhausted: bool,
    /// (device, inode, component index) of every directory entered for the current glob.
    seen: HashSet<(u64, u64, usize)>,
    out: Walked,
    /// Stop once this many files matched (the caller's cap, with room to tell it was passed).
    enough: usize,
}

impl Walker {
    pub fn new(enough: usize) -> Walker {
        Walker {
            entries: 0,
            exhausted: false,
            seen: HashSet::new(),
            out: Walked {
                complete: true,
                ..Walked::default()
            },
            enough,
        }
    }

    /// The paths `pattern` matches (also added to the listing), in no particular order.
    pub fn walk(&mut self, pattern: &str) -> Vec<PathBuf> {
        let Some(parts) = components(pattern) else {
            return Vec::new();
        };
        self.seen.clear();
        let root = if pattern.starts_with('/') {
            PathBuf::from("/")
        } else {
            PathBuf::new()
        };
        let mut found = Vec::new();
        // Depth-first, with an explicit stack: (folder, next component, depth below the root).
        let mut todo = vec![(root, 0usize, 0usize)];
        while let Some((dir, index, depth)) = todo.pop() {
            if self.exhausted || self.out.files.len() > self.enough {
                break;
            }
            let Some(part) = parts.get(index) else {
                continue;
            };
            let last = index + 1 == parts.len();
            match part {
                Component::Literal(name) => {
                    let path = dir.join(name);
                    if last {
                        self.found(&path, &mut found);
                    } else if self.enter(&path, index + 1) {
                        todo.push((path, index + 1, depth));
                    }
                }
                Component::AnyDirs => {
                    // Zero folders: the next component here; one more: this one again below.
                    if last {
                        continue;
                    }
                    todo.push((dir.clone(), index + 1, depth));
                    if depth >= MAX_DEPTH {
                        self.stop(format!(
                            "`**` goes deeper than {MAX_DEPTH} folders below {}; not walked further",
                            shown(&dir)
                        ));
                        continue;
                    }
                    for child in self.children(&dir) {
                        if self.enter(&child, index) {
                            todo.push((child, index, depth + 1));
                        }
                    }
                }
                Component::Pattern(pattern) => {
                    for child in self.children(&dir) {
                        let name = child.file_name().and_then(|n| n.to_str()).unwrap_or("");
                        if !pattern.matches_with(name, MATCH) {
                            continue;
                        }
                        if last {
                            self.found(&child, &mut found);
                        } else if self.enter(&child, index + 1) {
                            todo.push((child, index + 1, depth));
                        }
                    }
                }
            }
        }
        found
    }

    pub fn finish(self) -> Walked {
        self.out
    }

    /// A path matched by the last component: listed unless it is a folder.
    fn found(&mut self, path: &Path, found: &mut Vec<PathBuf>) {
        let exists = fs::symlink_metadata(path).is_ok();
        if exists && !fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            found.push(path.to_path_buf());
            self.out.files.push(path.to_path_buf());
        }
    }

    /// Whether to descend into `path` for component `index`: a folder (through a symlink too)
    /// not yet entered for that component.
    fn enter(&mut self, path: &Path, index: usize) -> bool {
        match fs::metadata(shown_path(path)) {
            Ok(meta) if meta.is_dir() => self.seen.insert((meta.dev(), meta.ino(), index)),
            _ => false,
        }
    }

    /// The entries of `dir` but hidden ones (the options say a leading dot is matched only
    /// literally), within the entry budget.
    fn children(&mut self, dir: &Path) -> Vec<PathBuf> {
        let entries = match fs::read_dir(shown_path(dir)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                self.out
                    .problems
                    .push(format!("cannot read the folder {}: {e}", shown(dir)));
                return Vec::new();
            }
        };
        let mut children = Vec::new();
        for entry in entries {
            self.entries += 1;
            if self.entries > MAX_ENTRIES {
                self.exhausted = true;
                self.stop(format!(
                    "the globs reach more than {MAX_ENTRIES} folder entries; stopped at {}",
                    shown(dir)
                ));
                break;
            }
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            if name.to_str().is_none_or(|n| n.starts_with('.')) {
                continue;
            }
            children.push(dir.join(name));
        }
        children
    }

    /// Marks the listing incomplete, telling why once.
    fn stop(&mut self, problem: String) {
        if self.out.complete {
            self.out.complete = false;
            self.out.problems.push(problem);
        }
    }
}

/// The folder a relative glob starts in is the working directory, written as no path at all
/// (so listed paths read `targets/a.yaml`, as the glob crate lists them).
fn shown_path(path: &Path) -> &Path {
    if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    }
}

fn shown(path: &Path) -> String {
    shown_path(path).display().to_string()
}
