//! How deep a YAML text nests flow collections (`[`, `{`), found in one linear pass before the
//! parser sees the text.
//!
//! Why: libyaml (under serde_yaml) checks every pending simple key at every token, one per flow
//! level, so its time grows with depth × tokens: `["]",` 60,000 times (each `"]"` a string, so
//! 60,000 levels) took 13.6 s, and about 3.5 min at the 1 MiB cap. Counting brackets alone is
//! not enough: there the `]` inside each string made the count stay at 1.
//!
//! So this is a small YAML scanner that finds where libyaml's tokens start, as libyaml 0.2.5
//! (unsafe-libyaml) does: comments (`#` where a token could start), single- and double-quoted
//! scalars (which may span lines), plain scalars (which in a flow collection end at `,[]{}`
//! and `: `, and in block context continue on more-indented lines), block scalars (`|`, `>`,
//! whose lines are content), and the block indentation that decides both. Where libyaml would
//! stop with an error, nothing after it costs anything, so the scanner may stop too.

use std::path::Path;

use super::{ConfigError, MAX_YAML_NESTING};

/// Refuses YAML nested deeper than [`MAX_YAML_NESTING`] flow collections, naming the line
/// where that depth is passed.
pub(crate) fn check_nesting(path: &Path, text: &str) -> Result<(), ConfigError> {
    let mut scanner = Scanner::new(text.as_bytes());
    scanner.run(Some(MAX_YAML_NESTING));
    match scanner.too_deep {
        None => Ok(()),
        Some(line) => Err(ConfigError {
            file: path.to_path_buf(),
            line: Some(line),
            field: String::new(),
            reason: format!(
                "nested more than {MAX_YAML_NESTING} levels deep (`[` and `{{`); refused before parsing"
            ),
        }),
    }
}

/// The deepest flow nesting of `text` (for tests).
#[cfg(test)]
pub(crate) fn max_depth(text: &str) -> usize {
    let mut scanner = Scanner::new(text.as_bytes());
    scanner.run(None);
    scanner.max_depth
}

struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
    line: usize,
    /// Column of `i` in characters (UTF-8 continuation bytes do not count).
    col: usize,
    /// Flow level: `[`/`{` open.
    depth: usize,
    max_depth: usize,
    /// libyaml's block indentation stack (`parser->indent` is its top; -1 at the top level).
    indents: Vec<isize>,
    /// Column where the last token at flow level 0 started on this line (a simple key's column,
    /// for the `:` after it).
    key_col: Option<usize>,
    too_deep: Option<usize>,
}

impl<'a> Scanner<'a> {
    fn new(s: &'a [u8]) -> Self {
        Scanner {
            s,
            i: 0,
            line: 1,
            col: 0,
            depth: 0,
            max_depth: 0,
            indents: vec![-1],
            key_col: None,
            too_deep: None,
        }
    }

    fn at(&self, offset: usize) -> Option<u8> {
        self.s.get(self.i + offset).copied()
    }

    /// Length of the line break at `i + offset` (libyaml's: CR, LF, CRLF, NEL, LS, PS), or 0.
    fn brk(&self, offset: usize) -> usize {
        match &self.s[(self.i + offset).min(self.s.len())..] {
            [b'\r', b'\n', ..] => 2,
            [b'\r' | b'\n', ..] => 1,
            [0xC2, 0x85, ..] => 2,
            [0xE2, 0x80, 0xA8 | 0xA9, ..] => 3,
            _ => 0,
        }
    }

    fn blank(&self, offset: usize) -> bool {
        matches!(self.at(offset), Some(b' ' | b'\t'))
    }

    /// Blank, break or the end (libyaml's IS_BLANKZ).
    fn blankz(&self, offset: usize) -> bool {
        self.at(offset).is_none() || self.blank(offset) || self.brk(offset) > 0
    }

    fn advance(&mut self) {
        let n = self.brk(0);
        if n > 0 {
            self.i += n;
            self.line += 1;
            self.col = 0;
        } else if let Some(b) = self.at(0) {
            self.i += 1;
            if b & 0xC0 != 0x80 {
                self.col += 1;
            }
        }
    }

    fn top(&self) -> isize {
        self.indents.last().copied().unwrap_or(-1)
    }

    /// libyaml's roll_indent: a block collection starts at `col`.
    fn roll(&mut self, col: usize) {
        if self.depth == 0 && self.top() < col as isize {
            self.indents.push(col as isize);
        }
    }

    /// Runs to the end, or until the depth passes `limit`.
    fn run(&mut self, limit: Option<usize>) {
        let mut line = 0;
        while self.skip_to_token() {
            if self.line != line {
                line = self.line;
                self.key_col = None;
            }
            let col = self.col;
            if self.depth == 0 {
                while self.top() > col as isize {
                    self.indents.pop();
                }
            }
            let document_marker = col == 0
                && (self.s[self.i..].starts_with(b"---") || self.s[self.i..].starts_with(b"..."))
                && self.blankz(3);
            if document_marker {
                self.indents.truncate(1);
                (0..3).for_each(|_| self.advance());
            } else if col == 0 && self.at(0) == Some(b'%') {
                self.skip_line();
            } else if !self.token(col, limit) {
                return;
            }
        }
    }

    /// The token starting here, at column `col`; false where scanning stops (too deep, or
    /// where libyaml stops with an error).
    fn token(&mut self, col: usize, limit: Option<usize>) -> bool {
        let c = self.at(0).unwrap_or(0);
        let flow = self.depth > 0;
        // A simple key's column is its first token's (an anchor or tag before a key).
        let starts_key = !flow && self.key_col.is_none();
        match c {
            b'[' | b'{' => {
                if starts_key {
                    self.key_col = Some(col);
                }
                self.depth += 1;
                self.max_depth = self.max_depth.max(self.depth);
                if limit.is_some_and(|limit| self.depth > limit) {
                    self.too_deep = Some(self.line);
                    return false;
                }
                self.advance();
            }
            b']' | b'}' => {
                self.depth = self.depth.saturating_sub(1);
                self.advance();
            }
            b',' => self.advance(),
            b'-' if self.blankz(1) => {
                self.roll(col);
                self.advance();
            }
            b'?' if flow || self.blankz(1) => {
                self.roll(col);
                self.advance();
            }
            b':' if flow || self.blankz(1) => {
                let key = self.key_col.take().unwrap_or(col);
                self.roll(key);
                self.advance();
            }
            b'|' | b'>' if !flow => return self.block_scalar(),
            _ => {
                if starts_key {
                    self.key_col = Some(col);
                }
                return match c {
                    b'*' | b'&' => self.anchor(),
                    b'!' => self.tag(),
                    b'\'' => self.single_quoted(),
                    b'"' => self.double_quoted(),
                    _ => self.plain(),
                };
            }
        }
        true
    }

    /// libyaml's scan_to_next_token: blanks, breaks and comments; false at the end.
    fn skip_to_token(&mut self) -> bool {
        loop {
            if self.col == 0 && self.s[self.i..].starts_with(b"\xEF\xBB\xBF") {
                self.i += 3;
            }
            while self.blank(0) {
                self.advance();
            }
            if self.at(0) == Some(b'#') {
                self.skip_line();
            }
            if self.brk(0) > 0 {
                self.advance();
                continue;
            }
            return self.at(0).is_some();
        }
    }

    /// To the line break (not past it).
    fn skip_line(&mut self) {
        while self.at(0).is_some() && self.brk(0) == 0 {
            self.advance();
        }
    }

    /// `&name` / `*name`: libyaml takes letters, digits, `-` and `_`.
    fn anchor(&mut self) -> bool {
        self.advance();
        while self
            .at(0)
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            self.advance();
        }
        true
    }

    /// `!tag`: up to a blank, or anything that could end it in a flow collection (a bracket
    /// taken for the tag's own is then counted: never fewer levels than libyaml's).
    fn tag(&mut self) -> bool {
        while !self.blankz(0) && !matches!(self.at(0), Some(b',' | b'[' | b']' | b'{' | b'}')) {
            self.advance();
        }
        true
    }

    fn single_quoted(&mut self) -> bool {
        self.advance();
        loop {
            match self.at(0) {
                None => return false,
                Some(b'\'') if self.at(1) == Some(b'\'') => {
                    self.advance();
                    self.advance();
                }
                Some(b'\'') => {
                    self.advance();
                    return true;
                }
                _ => self.advance(),
            }
        }
    }

    fn double_quoted(&mut self) -> bool {
        self.advance();
        loop {
            match self.at(0) {
                None => return false,
                Some(b'\\') => {
                    self.advance();
                    self.advance();
                }
                Some(b'"') => {
                    self.advance();
                    return true;
                }
                _ => self.advance(),
            }
        }
    }

    /// libyaml's scan_plain_scalar: stops before what ends it; false where libyaml errors.
    fn plain(&mut self) -> bool {
        let flow = self.depth > 0;
        let indent = self.top() + 1;
        loop {
            if self.col == 0
                && (self.s[self.i..].starts_with(b"---") || self.s[self.i..].starts_with(b"..."))
                && self.blankz(3)
            {
                return true;
            }
            if self.at(0) == Some(b'#') {
                return true;
            }
            while !self.blankz(0) {
                let c = self.at(0).unwrap_or(0);
                if flow
                    && c == b':'
                    && matches!(self.at(1), Some(b',' | b'?' | b'[' | b']' | b'{' | b'}'))
                {
                    return false;
                }
                if (c == b':' && self.blankz(1))
                    || (flow && matches!(c, b',' | b'[' | b']' | b'{' | b'}'))
                {
                    return true;
                }
                self.advance();
            }
            if self.at(0).is_none() {
                return true;
            }
            while self.blank(0) || self.brk(0) > 0 {
                self.advance();
            }
            if !flow && (self.col as isize) < indent {
                return true;
            }
        }
    }

    /// libyaml's scan_block_scalar: the header, then every line that is empty or indented at
    /// least as the content. False where libyaml errors (no break after the header).
    fn block_scalar(&mut self) -> bool {
        self.advance();
        let mut increment = 0;
        for _ in 0..2 {
            match self.at(0) {
                Some(b'+' | b'-') => self.advance(),
                Some(d @ b'1'..=b'9') => {
                    increment = isize::from(d - b'0');
                    self.advance();
                }
                _ => {}
            }
        }
        while self.blank(0) {
            self.advance();
        }
        if self.at(0) == Some(b'#') {
            self.skip_line();
        }
        if self.at(0).is_some() && self.brk(0) == 0 {
            return false;
        }
        self.advance();
        let parent = self.top();
        let mut indent = match increment {
            0 => 0,
            n if parent >= 0 => parent + n,
            n => n,
        };
        self.block_breaks(&mut indent, parent);
        while self.col as isize == indent && self.at(0).is_some() {
            self.skip_line();
            self.block_breaks(&mut indent, parent);
        }
        true
    }

    /// libyaml's scan_block_scalar_breaks: empty lines and indentation up to `indent`; sets
    /// `indent` from the first content line when it is not known yet.
    fn block_breaks(&mut self, indent: &mut isize, parent: isize) {
        let mut max_indent = 0;
        loop {
            while (*indent == 0 || (self.col as isize) < *indent) && self.at(0) == Some(b' ') {
                self.advance();
            }
            max_indent = max_indent.max(self.col as isize);
            if self.brk(0) == 0 {
                break;
            }
            self.advance();
        }
        if *indent == 0 {
            *indent = max_indent.max(parent + 1).max(1);
        }
    }
}

#[cfg(test)]
mod tests;
