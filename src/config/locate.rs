//! Finds the line of a field in the YAML text, so a validation error (found after parsing, when
//! serde's positions are gone) can still say `config.yaml:14`.
//!
//! It understands the block style our config uses (`key:` lines and `- ` list items, indented);
//! where it cannot tell, it answers `None` and the error names the field path alone.

/// One step of a field path: a mapping key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<'a> {
    /// A key; a label's name (`labels.team`) is one the file chose, hence not `'static`.
    Key(&'a str),
    Index(usize),
}

/// The 1-based line of `path` in `text`.
pub fn line_of(text: &str, path: &[Step<'_>]) -> Option<usize> {
    // JSON (and YAML written in flow style): the whole document in brackets.
    let first = text
        .lines()
        .filter_map(content)
        .map(|(_, rest)| rest)
        .next();
    if first.is_some_and(|rest| rest.starts_with('[') || rest.starts_with('{')) {
        return flow::line_of(text, path);
    }
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

/// The 1-based line of `key` in each of the first `count` items of a top-level list (a target
/// file's `[i].name`), in one pass over the text: asking [`line_of`] for each item reads the
/// text once per item, which made a file of 16,000 targets take 87 s to check.
pub fn item_key_lines(text: &str, key: &str, count: usize) -> Vec<Option<usize>> {
    let first = text
        .lines()
        .filter_map(content)
        .map(|(_, rest)| rest)
        .next();
    let mut lines = if first.is_some_and(|rest| rest.starts_with('[')) {
        flow::item_key_lines(text, key)
    } else if first.is_some_and(|rest| rest.starts_with('{')) {
        Vec::new()
    } else {
        block_item_key_lines(text, key)
    };
    lines.resize(count, None);
    lines
}

/// [`item_key_lines`] for the block style: items are `- ` lines at the first item's
/// indentation, and an item's keys sit at the indentation of its first key.
fn block_item_key_lines(text: &str, key: &str) -> Vec<Option<usize>> {
    let mut out: Vec<Option<usize>> = Vec::new();
    let mut item_indent = None;
    // `None` after a bare `-`: the item's first key line sets it.
    let mut key_indent = None;
    let is_key = |rest: &str| {
        rest.strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with(':'))
    };
    for (number, line) in text.lines().enumerate() {
        let Some((indent, rest)) = content(line) else {
            continue;
        };
        if let Some(after_dash) = rest.strip_prefix("- ").or((rest == "-").then_some("")) {
            if *item_indent.get_or_insert(indent) == indent {
                let inner = after_dash.trim_start();
                key_indent = (!inner.is_empty()).then_some(indent + (rest.len() - inner.len()));
                out.push(is_key(inner).then_some(number + 1));
                continue;
            }
        }
        if item_indent.is_some_and(|item| indent <= item) {
            continue;
        }
        if let Some(slot) = out.last_mut() {
            if *key_indent.get_or_insert(indent) == indent && slot.is_none() && is_key(rest) {
                *slot = Some(number + 1);
            }
        }
    }
    out
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

/// The line finder for a document in flow style (JSON is one): `[...]` and `{key: value}`,
/// quoted or plain scalars. Target files generated by a program are often JSON.
mod flow {
    use super::Step;

    #[derive(Debug, PartialEq)]
    enum Token {
        Open(char),
        Close,
        Comma,
        Colon,
        Scalar(String),
    }

    /// The tokens of `text`, each with its 1-based line; `None` where the text is not the flow
    /// style this understands.
    fn tokens(text: &str) -> Option<Vec<(Token, usize)>> {
        let mut out = Vec::new();
        let mut line = 1;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\n' => line += 1,
                c if c.is_whitespace() => {}
                '#' => {
                    while chars.peek().is_some_and(|c| *c != '\n') {
                        chars.next();
                    }
                }
                '[' | '{' => out.push((Token::Open(c), line)),
                ']' | '}' => out.push((Token::Close, line)),
                ',' => out.push((Token::Comma, line)),
                ':' => out.push((Token::Colon, line)),
                '"' | '\'' => {
                    let start = line;
                    let mut value = String::new();
                    loop {
                        let next = chars.next()?;
                        match next {
                            '\\' if c == '"' => {
                                value.push(chars.next()?);
                            }
                            '\'' if c == '\'' && chars.peek() == Some(&'\'') => {
                                chars.next();
                                value.push('\'');
                            }
                            q if q == c => break,
                            '\n' => {
                                line += 1;
                                value.push(' ');
                            }
                            other => value.push(other),
                        }
                    }
                    out.push((Token::Scalar(value), start));
                }
                first => {
                    let mut value = first.to_string();
                    while let Some(&next) = chars.peek() {
                        let ends = matches!(next, ',' | '[' | ']' | '{' | '}' | '\n')
                            || (next == ':' && {
                                let mut ahead = chars.clone();
                                ahead.next();
                                ahead.peek().is_none_or(|c| c.is_whitespace())
                            });
                        if ends {
                            break;
                        }
                        value.push(next);
                        chars.next();
                    }
                    out.push((Token::Scalar(value.trim_end().to_string()), line));
                }
            }
        }
        Some(out)
    }

    /// The index just past the value starting at `at`.
    fn skip(tokens: &[(Token, usize)], at: usize) -> Option<usize> {
        match tokens.get(at)?.0 {
            Token::Open(_) => {
                let mut depth = 0usize;
                for (i, (token, _)) in tokens.iter().enumerate().skip(at) {
                    match token {
                        Token::Open(_) => depth += 1,
                        Token::Close => {
                            depth -= 1;
                            if depth == 0 {
                                return Some(i + 1);
                            }
                        }
                        _ => {}
                    }
                }
                None
            }
            Token::Scalar(_) => Some(at + 1),
            _ => None,
        }
    }

    /// The line of the value at `at` reached by `path`: a key's line for a key, an item's first
    /// line for an item.
    fn find(tokens: &[(Token, usize)], at: usize, path: &[Step<'_>]) -> Option<usize> {
        let Some((step, rest)) = path.split_first() else {
            return tokens.get(at).map(|(_, line)| *line);
        };
        let mut i = at + 1;
        match (step, &tokens.get(at)?.0) {
            (Step::Index(index), Token::Open('[')) => {
                for n in 0.. {
                    if tokens.get(i)?.0 == Token::Close {
                        return None;
                    }
                    if n == *index {
                        return find(tokens, i, rest);
                    }
                    i = skip(tokens, i)?;
                    if tokens.get(i)?.0 == Token::Comma {
                        i += 1;
                    }
                }
                None
            }
            (Step::Key(key), Token::Open('{')) => loop {
                let (Token::Scalar(name), line) = tokens.get(i)? else {
                    return None;
                };
                if tokens.get(i + 1)?.0 != Token::Colon {
                    return None;
                }
                if name == key {
                    return if rest.is_empty() {
                        Some(*line)
                    } else {
                        find(tokens, i + 2, rest)
                    };
                }
                i = skip(tokens, i + 2)?;
                if tokens.get(i)?.0 == Token::Comma {
                    i += 1;
                }
            },
            _ => None,
        }
    }

    /// The line of `key` in each item of the top-level list, in one pass over the tokens.
    pub(super) fn item_key_lines(text: &str, key: &str) -> Vec<Option<usize>> {
        let Some(tokens) = tokens(text) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if tokens.first().map(|t| &t.0) != Some(&Token::Open('[')) {
            return out;
        }
        let mut i = 1;
        while let Some((token, _)) = tokens.get(i) {
            if *token == Token::Close {
                break;
            }
            let Some(end) = skip(&tokens, i) else { break };
            out.push(key_in(&tokens[i..end], key));
            i = end;
            if tokens.get(i).map(|t| &t.0) == Some(&Token::Comma) {
                i += 1;
            }
        }
        out
    }

    /// The line of `key` among the keys of the mapping `tokens` (one whole value).
    fn key_in(tokens: &[(Token, usize)], key: &str) -> Option<usize> {
        if tokens.first()?.0 != Token::Open('{') {
            return None;
        }
        let mut i = 1;
        loop {
            let (Token::Scalar(name), line) = tokens.get(i)? else {
                return None;
            };
            if tokens.get(i + 1)?.0 != Token::Colon {
                return None;
            }
            if name == key {
                return Some(*line);
            }
            i = skip(tokens, i + 2)?;
            if tokens.get(i)?.0 == Token::Comma {
                i += 1;
            }
        }
    }

    pub(super) fn line_of(text: &str, path: &[Step<'_>]) -> Option<usize> {
        let tokens = tokens(text)?;
        if path.is_empty() {
            return None;
        }
        find(&tokens, 0, path)
    }
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
    fn finds_fields_in_json_and_flow_style() {
        let json = "[\n  {\"name\": \"a\", \"dsn\": \"postgres://h/x\"},\n  {\n    \"name\": \"b\",\n    \"idle_range\": {\"min\": \"1s\",\n      \"max\": \"2h\"},\n    \"precision\": \"lots\"\n  }\n]\n";
        assert_eq!(line_of(json, &[Index(0), Key("dsn")]), Some(2));
        assert_eq!(line_of(json, &[Index(1), Key("name")]), Some(4));
        assert_eq!(line_of(json, &[Index(1), Key("precision")]), Some(7));
        assert_eq!(
            line_of(json, &[Index(1), Key("idle_range"), Key("max")]),
            Some(6)
        );
        assert_eq!(line_of(json, &[Index(1), Key("sslmode")]), None);
        assert_eq!(line_of(json, &[Index(2)]), None);
        let flow =
            "# generated\n[{name: a, dsn: 'postgres://h/x'},\n {name: b, max_connections: 500}]\n";
        assert_eq!(line_of(flow, &[Index(1), Key("max_connections")]), Some(3));
        let unclosed = "[{\"name\": \"a\", \"dsn\": \"x";
        assert_eq!(line_of(unclosed, &[Index(0), Key("dsn")]), None);
    }

    /// One pass gives what asking for each item gives.
    #[test]
    fn item_key_lines_agree_with_line_of() {
        let block = "# targets\n- name: a\n  dsn: x\n-\n  dsn: y\n  name: b\n- dsn: z\n  idle_range:\n    name: nested\n- name: d\n";
        let json = "[\n  {\"name\": \"a\", \"dsn\": \"x\"},\n  {\"dsn\": \"y\",\n   \"name\": \"b\"},\n  {\"dsn\": \"z\", \"idle_range\": {\"name\": 1}},\n  {\"name\": \"d\"}\n]\n";
        for text in [block, json] {
            let each: Vec<Option<usize>> = (0..5)
                .map(|i| line_of(text, &[Index(i), Key("name")]))
                .collect();
            let mut one_pass = item_key_lines(text, "name", 5);
            // `line_of` takes a key of any depth in a block item; a nested `name` is not the
            // item's.
            if text == block {
                assert_eq!(one_pass[2], None);
                one_pass[2] = Some(9);
            }
            assert_eq!(one_pass, each, "{text}");
        }
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
