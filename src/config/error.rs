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
        at: &[Step<'_>],
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
        reason: without_values(&reason),
    }
}

/// A serde message without the value it quotes: `invalid type: string "TOPSECRET", expected a
/// sequence` becomes `invalid type: a string, expected a sequence`. The file may not be what it
/// was meant to be (a target file that is a symlink to a one-line secret parses as a string),
/// and the message goes to the log, the status page and `--config.check`. Field names
/// (`unknown field `x``) are kept: they are the schema's, or a typo of it.
fn without_values(reason: &str) -> String {
    for kind in ["invalid type: ", "invalid value: "] {
        let Some(start) = reason.find(kind).map(|at| at + kind.len()) else {
            continue;
        };
        // The expected part is ours (a type's name): the last ", expected" ends the value.
        let end = reason[start..]
            .rfind(", expected")
            .map_or(reason.len(), |at| start + at);
        let unexpected = &reason[start..end];
        let shown = match unexpected.split_once(' ') {
            Some(("string", _)) => "a string",
            Some(("integer", _)) => "an integer",
            Some(("floating", _)) => "a number",
            Some(("boolean", _)) => "a boolean",
            Some(("character", _)) => "a character",
            _ if unexpected.contains(['`', '"']) => "a value",
            _ => unexpected,
        };
        return format!("{}{shown}{}", &reason[..start], &reason[end..]);
    }
    reason.to_string()
}

/// `targets[0].idle_range.min`: keys joined with dots, list indexes in brackets.
fn field_name(path: &[Step<'_>]) -> String {
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

#[cfg(test)]
mod tests {
    use super::without_values;

    #[test]
    fn serde_messages_lose_the_values_they_quote() {
        for (message, expected) in [
            (
                "invalid type: string \"TOPSECRET-1\", expected a sequence",
                "invalid type: a string, expected a sequence",
            ),
            (
                "invalid type: string \"a, expected b\", expected struct RawLog",
                "invalid type: a string, expected struct RawLog",
            ),
            (
                "invalid value: integer `31337`, expected u16",
                "invalid value: an integer, expected u16",
            ),
            (
                "invalid type: floating point `1.5`, expected a string",
                "invalid type: a number, expected a string",
            ),
            (
                "invalid type: map, expected a sequence",
                "invalid type: map, expected a sequence",
            ),
            (
                "unknown field `dns`, expected one of `name`, `dsn`",
                "unknown field `dns`, expected one of `name`, `dsn`",
            ),
        ] {
            assert_eq!(without_values(message), expected);
        }
    }
}
