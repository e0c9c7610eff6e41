//! The numbers of a printed Rust text, found the same way at build time (build.rs, which
//! compiles the texts) and at run time (printed.rs, which matches a job's text to them).
//!
//! A number is a plain literal outside string literals, not part of a word or a field access
//! (`Tokio1`, `f64`, `x.0` are not numbers): digits, then optionally `.` and digits.

/// Rewrites `text`, handing each number (its index and its text) to `number` and putting what
/// that returns in its place.
pub fn rewrite(text: &str, mut number: impl FnMut(usize, &str) -> String) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut count = 0;
    let mut in_string = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            out.push(c);
            if c == '\\' && i + 1 < chars.len() {
                out.push(chars[i + 1]);
                i += 1;
            } else if c == '"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        let after_word =
            i > 0 && (chars[i - 1].is_alphanumeric() || matches!(chars[i - 1], '_' | '.'));
        if c.is_ascii_digit() && !after_word {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let literal: String = chars[start..i].iter().collect();
            out.push_str(&number(count, &literal));
            count += 1;
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The text with every number masked as `#`: two texts with the same skeleton are the same code.
pub fn skeleton(text: &str) -> String {
    rewrite(text, |_, _| "#".to_string())
}

/// The numbers of the text, in order.
#[allow(dead_code)] // used by the harness, not by build.rs
pub fn numbers(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    rewrite(text, |_, n| {
        found.push(n.to_string());
        String::new()
    });
    found
}
