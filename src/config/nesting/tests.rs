//! The nesting scanner against hand-made traps and, on generated flow collections, against
//! the parser itself: the depth it finds is the depth serde_yaml builds.

use super::*;
use proptest::prelude::*;

fn refused(text: &str) -> Option<usize> {
    check_nesting(Path::new("t.yaml"), text)
        .err()
        .and_then(|e| e.line)
}

/// The case: `"]"` is a string, so each `[` opens a level. Counting brackets alone
/// saw depth 1 and let the parser spend 13.6 s on it.
#[test]
fn brackets_inside_strings_do_not_close_anything() {
    let text = format!("{}\n", "[\"]\",".repeat(60_000));
    let start = std::time::Instant::now();
    assert_eq!(refused(&text), Some(1));
    assert!(start.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(max_depth(&"['a]', ".repeat(70)), 70);
    assert_eq!(max_depth(&"[\"a\\\"]\", ".repeat(70)), 70);
    assert_eq!(max_depth(&"[# ]]]\n".repeat(70)), 70);
}

#[test]
fn brackets_that_libyaml_reads_as_text_are_not_counted() {
    let fine = [
        // Strings, comments and block scalars.
        "targets:\n  - name: \"[[[[\"\n    probe_query: 'SELECT ''[['''\n",
        "# [[[[[[[\nlog: {level: info} # {{{{{{{\n",
        "probe_query: |\n  SELECT '[[[[[[\n  \"{{{{{{\nlog: {}\n",
        "probe_query: >-\n    [[[[[[[[\n\n    ]\nnext: []\n",
        // Plain scalars in block context: brackets after the first character are text, and
        // so is a continuation line.
        "probe_query: SELECT a[1] FROM t\n",
        "probe_query: SELECT\n  [[[[[[\n  x\n",
        "- name: a\n  dsn: b[[[[\n",
    ];
    for text in fine {
        assert!(max_depth(text) <= 1, "{text:?}: {}", max_depth(text));
    }
}

/// Where libyaml does nest, so must the count: a quote inside a plain scalar is text, and in
/// a flow collection a plain scalar ends at `[`.
#[test]
fn what_libyaml_nests_is_counted() {
    let deep = |unit: &str| max_depth(&unit.repeat(80));
    assert_eq!(deep("[a'"), 80);
    assert_eq!(deep("[a:\""), 80);
    assert_eq!(deep("[a \"x"), 80);
    assert_eq!(deep("{a: "), 80);
    // A plain scalar that only looks continued: the next line is less indented.
    let text = format!("- q: abc\n   'x\n  k: {}\n  z: '\n", "[".repeat(80));
    assert_eq!(max_depth(&text), 80);
    // A block scalar ends at the first line indented less than its content.
    let text = format!("- q: |\n    \"\n  k: {}\n  z: \"\n", "[".repeat(80));
    assert_eq!(max_depth(&text), 80);
    // Line separators are line breaks to libyaml.
    let text = format!("q: abc\u{2028}k: {}\n", "[".repeat(80));
    assert_eq!(max_depth(&text), 80);
}

/// A flow sequence's depth as the parser builds it.
fn value_depth(v: &serde_yaml::Value) -> usize {
    match v {
        serde_yaml::Value::Sequence(items) => 1 + items.iter().map(value_depth).max().unwrap_or(0),
        serde_yaml::Value::Mapping(m) => 1 + m.values().map(value_depth).max().unwrap_or(0),
        serde_yaml::Value::Tagged(t) => value_depth(&t.value),
        _ => 0,
    }
}

/// Flow sequences (no `:`, `{` or `?` outside quotes, so every collection is a sequence):
/// brackets, commas, quoted scalars holding anything, plain scalars with quotes and `#` inside,
/// comments, line breaks.
fn flow_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => Just("[".to_string()),
        2 => Just("]".to_string()),
        2 => Just(",".to_string()),
        1 => Just(" ".to_string()),
        1 => Just("\n".to_string()),
        1 => Just("\n  ".to_string()),
        1 => Just("# c]]\n".to_string()),
        2 => "[a-c]{1,3}".prop_map(|s| s),
        1 => Just("a'b".to_string()),
        1 => Just("a\"b".to_string()),
        1 => Just("a#b".to_string()),
        2 => "[\\[\\]{}#,:'\" a\n]{0,6}".prop_map(|s| format!("\"{}\"", s.replace('\\', "").replace('"', "\\\""))),
        2 => "[\\[\\]{}#,:\" a\n]{0,6}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
    ];
    prop::collection::vec(piece, 1..40).prop_map(|pieces| format!("[{}", pieces.concat()))
}

/// A well-formed flow sequence, nested at random, its items separated by commas with blanks,
/// line breaks and comments around them: most of these parse.
fn flow_tree() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        "[a-c]{1,3}",
        Just("a'b".to_string()),
        Just("a\"b[".to_string()),
        Just("a#b".to_string()),
        "[\\[\\]{}#,:' a\n]{0,6}".prop_map(|s| format!("\"{s}\"")),
        "[\\[\\]{}#,:\" a\n]{0,6}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
    ];
    let gap = prop::sample::select(vec!["", " ", "\n", " # x]\n", "\n  "]);
    scalar.prop_recursive(8, 64, 6, move |inner| {
        (
            prop::collection::vec((inner, gap.clone()), 0..6),
            gap.clone(),
        )
            .prop_map(|(items, end)| {
                let items: Vec<String> = items
                    .into_iter()
                    .map(|(item, gap)| format!("{item}{gap}"))
                    .collect();
                format!("[{}{end}]", items.join(","))
            })
    })
}

proptest! {
    #![proptest_config(crate::postgres::dsn::fuzz::budget(2048))]

    #[test]
    fn the_depth_is_the_parsers(text in prop_oneof![flow_text(), flow_tree()]) {
        if let Ok(value) = serde_yaml::from_str::<serde_yaml::Value>(&text) {
            prop_assert_eq!(max_depth(&text), value_depth(&value), "{:?}", text);
        }
    }
}
