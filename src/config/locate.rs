//! Finds the line of a field in the YAML text, so a validation error (found after parsing, when
//! serde's positions are gone) can still say `config.yaml:14`.
//!
//! It understands the block style our config uses (`key:` lines and `- ` list items, indented);
//! where it cannot tell, it answers `None` and the error names the field path alone.

/// One step of a field path: a mapping key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(&'static str),
    Index(usize),
}

/// The 1-based line of `path` in `text`.
pub fn line_of(text: &str, path: &[Step]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    // The window of lines the current path prefix spans, and the indentation its children have
    // to exceed.
    let mut start = 0;
    let mut end = lines.len();
    let mut parent_indent: Option<usize> = None;
    let mut found = None;
    for step in path {
        let (line, indent) = match step {
            Step::Key(key) => find_key(&lines, start, end, parent_indent, key)?,
            Step::Index(index) => find_item(&lines, start, end, parent_indent, *index)?,
        };
        found = Some(line);
        start = line + 1;
        end = block_end(&lines, line, indent, matches!(step, Step::Index(_)));
        parent_indent = Some(indent);
        // A list item's first key sits on the item line itself (`- name: x`).
        if matches!(step, Step::Index(_)) {
            start = line;
        }
    }
    found.map(|l| l + 1)
}

fn content(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    Some((line.len() - trimmed.len(), trimmed))
}

fn find_key(
    lines: &[&str],
    start: usize,
    end: usize,
    parent: Option<usize>,
    key: &str,
) -> Option<(usize, usize)> {
    for (i, line) in lines.iter().enumerate().take(end).skip(start) {
        let Some((mut indent, mut rest)) = content(line) else {
            continue;
        };
        if let Some(after_dash) = rest.strip_prefix("- ") {
            let inner = after_dash.trim_start();
            indent += rest.len() - inner.len();
            rest = inner;
        }
        if parent.is_some_and(|p| indent <= p) && i != start {
            continue;
        }
        if rest
            .strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with(':'))
        {
            return Some((i, indent));
        }
    }
    None
}

fn find_item(
    lines: &[&str],
    start: usize,
    end: usize,
    parent: Option<usize>,
    index: usize,
) -> Option<(usize, usize)> {
    let mut seen = 0;
    let mut item_indent = None;
    for (i, line) in lines.iter().enumerate().take(end).skip(start) {
        let Some((indent, rest)) = content(line) else {
            continue;
        };
        if !(rest.starts_with("- ") || rest == "-") {
            continue;
        }
        if parent.is_some_and(|p| indent < p) {
            continue;
        }
        if *item_indent.get_or_insert(indent) != indent {
            continue;
        }
        if seen == index {
            return Some((i, indent));
        }
        seen += 1;
    }
    None
}

fn block_end(lines: &[&str], line: usize, indent: usize, is_item: bool) -> usize {
    for (i, l) in lines.iter().enumerate().skip(line + 1) {
        if let Some((other, rest)) = content(l) {
            // A key's children may be list items at the key's own indentation (`targets:\n- a`);
            // an item ends at the next item or sibling at its indentation.
            let ends_here =
                other < indent || (other == indent && (is_item || !rest.starts_with("- ")));
            if ends_here {
                return i;
            }
        }
    }
    lines.len()
}

#[cfg(test)]
mod tests {
    use super::Step::*;
    use super::*;

    const TEXT: &str = "\
listen_address: \":1\"
# comment
targets:
  - name: a
    dsn: x
    idle_range:
      min: 1s
      max: 1h
  - name: b
    max_connections: 100
    idle_range:
      max: 2h
";

    #[test]
    fn finds_nested_fields() {
        assert_eq!(line_of(TEXT, &[Key("listen_address")]), Some(1));
        assert_eq!(
            line_of(TEXT, &[Key("targets"), Index(0), Key("name")]),
            Some(4)
        );
        assert_eq!(
            line_of(TEXT, &[Key("targets"), Index(1), Key("name")]),
            Some(9)
        );
        assert_eq!(
            line_of(TEXT, &[Key("targets"), Index(1), Key("max_connections")]),
            Some(10)
        );
        assert_eq!(
            line_of(
                TEXT,
                &[Key("targets"), Index(0), Key("idle_range"), Key("max")]
            ),
            Some(8)
        );
        assert_eq!(
            line_of(
                TEXT,
                &[Key("targets"), Index(1), Key("idle_range"), Key("max")]
            ),
            Some(12)
        );
    }

    #[test]
    fn list_items_at_the_parent_indentation() {
        let text = "targets:\n- name: a\n  dsn: x\n- name: b\n  dsn: y\nlog:\n  level: info\n";
        assert_eq!(
            line_of(text, &[Key("targets"), Index(1), Key("dsn")]),
            Some(5)
        );
        assert_eq!(line_of(text, &[Key("log"), Key("level")]), Some(7));
    }

    #[test]
    fn missing_fields_fall_back_to_the_nearest_known_line() {
        assert_eq!(
            line_of(TEXT, &[Key("targets"), Index(0), Key("sslmode")]),
            None
        );
        assert_eq!(line_of(TEXT, &[Key("targets"), Index(5)]), None);
    }
}
