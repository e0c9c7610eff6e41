//! How a refusal is told: [`ConfigError`] (`FILE:LINE: FIELD: reason`), built from a serde_yaml
//! error, or from the path of a field found wrong after parsing ([`ConfigError::at`], which both
//! this configuration's validator and the web configuration's checker use).

use std::fmt;
use std::path::{Path, PathBuf};

use super::locate::{line_of, Step};

/// A refused configuration: which file, where, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl ConfigError {
    /// The file itself could not be read.
    pub fn unreadable(path: &Path, error: std::io::Error) -> ConfigError {
        ConfigError {
            file: path.to_path_buf(),
            line: None,
            field: String::new(),
            reason: format!("cannot read the file: {error}"),
        }
    }
}

impl ConfigError {
    /// The field at `at` in `file` (whose text is `text`) is refused for `reason`. The line is
    /// the field's, or the closest enclosing field's that is written in the text; none if
    /// nothing is.
    pub(crate) fn at(
        file: &Path,
        text: &str,
        at: &[Step],
        reason: impl Into<String>,
    ) -> ConfigError {
        let line = (1..=at.len()).rev().find_map(|n| line_of(text, &at[..n]));
        ConfigError {
            file: file.to_path_buf(),
            line,
            field: field_name(at),
            reason: reason.into(),
        }
    }
}

/// A serde_yaml error as a [`ConfigError`]: its line, and the field path serde_yaml puts in
/// front of the message (`targets[0]: unknown field ...`) as the field.
pub(crate) fn yaml_error(path: &Path, e: serde_yaml::Error) -> ConfigError {
    let line = e.location().map(|l| l.line());
    let mut reason = e.to_string();
    if let Some(pos) = reason.rfind(" at line ") {
        reason.truncate(pos);
    }
    let (field, reason) = match reason.split_once(": ") {
        Some((field, rest)) if !field.contains(' ') => (field.to_string(), rest.to_string()),
        _ => (String::new(), reason),
    };
    ConfigError {
        file: path.to_path_buf(),
        line,
        field,
        reason,
    }
}

/// `targets[0].idle_range.min`: keys joined with dots, list indexes in brackets.
fn field_name(path: &[Step]) -> String {
    use Step::{Index, Key};
    let mut out = String::new();
    for step in path {
        match step {
            Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}
