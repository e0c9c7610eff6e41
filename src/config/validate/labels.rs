//! A target's `labels:` (`labels: {team: payments, service: checkout}`): what the owner of a
//! target wants on its `idle_drop_target_info` series, for joins in alerts and for routing.
//!
//! Bounded like every label the exporter exports (see `docs/metrics.md`, "Target labels"):
//! - a name is a Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`) of at most
//!   [`MAX_LABEL_NAME_LEN`] bytes, not `__`-prefixed (Prometheus' own), and none of
//!   [`RESERVED_LABELS`];
//! - a value is a non-empty string (a number or boolean is taken as written) of at most
//!   [`MAX_LABEL_VALUE_LEN`] bytes, without control characters;
//! - at most [`MAX_LABELS_PER_TARGET`] labels on a target, and [`MAX_LABEL_NAMES`] distinct
//!   names over all targets (the configuration's and every target file's: `merge.rs` checks
//!   across files), since each name is a column of every joined alert.
//!
//! A refusal names the field (`targets[2].labels.team`) but never quotes a value: what a file
//! holds is not repeated in errors, which reach the log and the status page. A name is shown
//! only when it is printable ASCII within the length cap (a name is schema, like a field name).

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::{Mapping, Value};

use super::super::locate::Step::{Index, Key};
use super::{Checked, Validator};

/// A target's labels, by name.
pub type Labels = BTreeMap<String, String>;

/// The most labels one target may carry.
pub const MAX_LABELS_PER_TARGET: usize = 16;
/// The longest label name, in bytes.
pub const MAX_LABEL_NAME_LEN: usize = 64;
/// The longest label value, in bytes.
pub const MAX_LABEL_VALUE_LEN: usize = 256;
/// The most distinct label names over all targets.
pub const MAX_LABEL_NAMES: usize = 32;
/// Names the series already carry: `target` is ours, `job` and `instance` Prometheus adds to
/// everything it scrapes (a target's own would be renamed `exported_job`, or win over the
/// scrape's with `honor_labels`, and break every join).
pub const RESERVED_LABELS: [&str; 3] = ["target", "job", "instance"];

impl Validator<'_> {
    /// Checks target `i`'s `labels`.
    pub(super) fn labels(&self, i: usize, raw: Option<&Mapping>) -> Checked<Labels> {
        let whole = [Key("targets"), Index(i), Key("labels")];
        let Some(raw) = raw else {
            return Ok(Labels::new());
        };
        if raw.len() > MAX_LABELS_PER_TARGET {
            return Err(self.error(
                &whole,
                format!(
                    "{} labels, more than {MAX_LABELS_PER_TARGET} (the most a target may carry)",
                    raw.len()
                ),
            ));
        }
        let mut labels = Labels::new();
        for (key, value) in raw {
            let name = self.label_name(i, key)?;
            let at = [Key("targets"), Index(i), Key("labels"), Key(name)];
            let value = label_value(value).map_err(|reason| self.error(&at, reason))?;
            labels.insert(name.to_string(), value);
        }
        Ok(labels)
    }

    /// A label's name, checked; refusals name it only when it is safe to show.
    fn label_name<'k>(&self, i: usize, key: &'k Value) -> Checked<&'k str> {
        let whole = [Key("targets"), Index(i), Key("labels")];
        let Value::String(name) = key else {
            return Err(self.error(&whole, "a label name must be a string"));
        };
        if name.is_empty() {
            return Err(self.error(&whole, "a label name is empty"));
        }
        if name.len() > MAX_LABEL_NAME_LEN {
            return Err(self.error(
                &whole,
                format!(
                    "a label name is {} bytes long, more than {MAX_LABEL_NAME_LEN}",
                    name.len()
                ),
            ));
        }
        let shown = name.bytes().all(|b| b.is_ascii_graphic());
        let at = [Key("targets"), Index(i), Key("labels"), Key(name)];
        let reason = if !valid_name(name) {
            Some("a label name is letters, digits and _, not starting with a digit ([a-zA-Z_][a-zA-Z0-9_]*)".to_string())
        } else if name.starts_with("__") {
            Some("names starting with __ are Prometheus' own".to_string())
        } else if RESERVED_LABELS.contains(&name.as_str()) {
            Some(format!(
                "{name} is already on the series ({}: `target` is the exporter's, `job` and `instance` Prometheus adds)",
                RESERVED_LABELS.join(", ")
            ))
        } else {
            None
        };
        match reason {
            None => Ok(name),
            Some(reason) if shown => Err(self.error(&at, reason)),
            Some(reason) => Err(self.error(&whole, reason)),
        }
    }

    /// Refuses the first label name that makes more than [`MAX_LABEL_NAMES`] distinct ones in
    /// this file's targets (`names` holds those seen before target `i`).
    pub(super) fn label_names_cap<'n>(
        &self,
        i: usize,
        labels: &'n Labels,
        names: &mut BTreeSet<&'n str>,
    ) -> Checked<()> {
        for name in labels.keys() {
            if names.insert(name) && names.len() > MAX_LABEL_NAMES {
                return Err(self.error(
                    &[Key("targets"), Index(i), Key("labels"), Key(name)],
                    too_many_names(),
                ));
            }
        }
        Ok(())
    }
}

/// Why a name past [`MAX_LABEL_NAMES`] is refused.
pub(crate) fn too_many_names() -> String {
    format!(
        "a label name past the {MAX_LABEL_NAMES} distinct ones allowed over all targets (the configuration's and every target file's; each is a column of every joined alert)"
    )
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`.
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A label's value as text, or why not (the reason never quotes it).
fn label_value(value: &Value) -> Result<String, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => {
            return Err(
                "the value is empty; an empty label is no label in Prometheus: remove it".into(),
            )
        }
        _ => return Err("the value must be a string (or a number, or true/false)".into()),
    };
    if text.is_empty() {
        return Err(
            "the value is empty; an empty label is no label in Prometheus: remove it".into(),
        );
    }
    if text.len() > MAX_LABEL_VALUE_LEN {
        return Err(format!(
            "the value is {} bytes long, more than {MAX_LABEL_VALUE_LEN}",
            text.len()
        ));
    }
    if text.chars().any(char::is_control) {
        return Err("the value holds a control character (a line break, a tab...)".into());
    }
    Ok(text)
}

#[cfg(test)]
mod tests;
