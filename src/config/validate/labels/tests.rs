//! `labels:` of inline targets: what is taken, and each refusal with its file, line and field
//! (the target files' are in `target_files/tests.rs`).

use std::path::Path;

use crate::config::{parse, ConfigError, MAX_LABELS_PER_TARGET, MAX_LABEL_NAMES};

const TARGET: &str = "targets:\n  - name: db\n    dsn: postgres://probe@127.0.0.1:5432/postgres\n";

fn err(text: &str) -> ConfigError {
    parse(Path::new("test.yaml"), text).expect_err("config should be refused")
}

/// A config whose one target has `labels` written as a block under line 4.
fn with_labels(block: &str) -> String {
    format!("{TARGET}    labels:\n{block}")
}

#[test]
fn labels_are_taken_as_written_in_either_style() {
    for text in [
        format!(
            "{TARGET}    labels: {{team: payments, service: checkout, tier: 1, paging: true}}\n"
        ),
        with_labels(
            "      team: payments\n      service: checkout\n      tier: 1\n      paging: true\n",
        ),
    ] {
        let config = parse(Path::new("test.yaml"), &text).unwrap();
        let labels = &config.targets[0].labels;
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("paging", "true"),
                ("service", "checkout"),
                ("team", "payments"),
                ("tier", "1")
            ],
            "{text}"
        );
    }
    let none = parse(Path::new("test.yaml"), TARGET).unwrap();
    assert!(none.targets[0].labels.is_empty());
}

#[test]
fn each_bad_label_is_refused_with_its_line_and_field() {
    let long_value = "v".repeat(257);
    let cases: Vec<(String, usize, &str, &str)> = vec![
        (
            "      team: payments\n      Team-x: a\n".into(),
            6,
            "targets[0].labels.Team-x",
            "[a-zA-Z_][a-zA-Z0-9_]*",
        ),
        (
            "      9team: a\n".into(),
            5,
            "targets[0].labels.9team",
            "not starting with a digit",
        ),
        (
            "      __name__: a\n".into(),
            5,
            "targets[0].labels.__name__",
            "Prometheus' own",
        ),
        (
            "      target: a\n".into(),
            5,
            "targets[0].labels.target",
            "already on the series",
        ),
        (
            "      job: a\n".into(),
            5,
            "targets[0].labels.job",
            "already on the series",
        ),
        (
            "      instance: a\n".into(),
            5,
            "targets[0].labels.instance",
            "already on the series",
        ),
        (
            format!("      team: {long_value}\n"),
            5,
            "targets[0].labels.team",
            "257 bytes long, more than 256",
        ),
        (
            "      team: ''\n".into(),
            5,
            "targets[0].labels.team",
            "empty",
        ),
        ("      team:\n".into(), 5, "targets[0].labels.team", "empty"),
        (
            "      team: [a, b]\n".into(),
            5,
            "targets[0].labels.team",
            "must be a string",
        ),
        (
            "      team: \"pay\\nments\"\n".into(),
            5,
            "targets[0].labels.team",
            "control character",
        ),
        (
            format!("      {}: a\n", "n".repeat(65)),
            4,
            "targets[0].labels",
            "65 bytes long, more than 64",
        ),
        (
            "      1: a\n".into(),
            4,
            "targets[0].labels",
            "must be a string",
        ),
        // Not printable ASCII: not repeated in the error, the field stops at `labels`.
        (
            "      \"t\\u00e9am\": a\n".into(),
            4,
            "targets[0].labels",
            "[a-zA-Z_][a-zA-Z0-9_]*",
        ),
    ];
    for (block, line, field, reason) in cases {
        let e = err(&with_labels(&block));
        assert_eq!(
            (e.line, e.field.as_str()),
            (Some(line), field),
            "{block}: {e}"
        );
        assert!(e.reason.contains(reason), "{block}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("test.yaml:{line}: {field}: ")),
            "{e}"
        );
    }
}

#[test]
fn refusals_never_quote_a_value() {
    for value in [
        "\"TOPSECRET\\nx\"",
        "[TOPSECRET]",
        "{a: TOPSECRET}",
        &format!("TOPSECRET{}", "x".repeat(300)),
    ] {
        let e = err(&with_labels(&format!("      team: {value}\n")));
        assert!(!e.to_string().contains("TOPSECRET"), "{e}");
    }
}

#[test]
fn too_many_labels_on_a_target_and_names_in_all_are_refused() {
    let block: String = (0..=MAX_LABELS_PER_TARGET)
        .map(|n| format!("      l{n}: a\n"))
        .collect();
    let e = err(&with_labels(&block));
    assert_eq!(
        (e.line, e.field.as_str()),
        (Some(4), "targets[0].labels"),
        "{e}"
    );
    assert!(e.reason.contains("17 labels, more than 16"), "{e}");

    // Two targets of 16 names each, 32 distinct; a third's first name is the 33rd.
    let mut text = String::from("targets:\n");
    for (t, names) in [(0, 0..16), (1, 16..32), (2, 31..33)] {
        text.push_str(&format!(
            "  - name: db{t}\n    dsn: postgres://probe@127.0.0.1:5432/postgres\n    labels:\n"
        ));
        text.extend(names.map(|n| format!("      l{n:02}: a\n")));
    }
    const { assert!(MAX_LABEL_NAMES == 32) };
    let e = err(&text);
    assert_eq!(e.field, "targets[2].labels.l32", "{e}");
    assert_eq!(
        e.line,
        text.lines().position(|l| l.contains("l32:")).map(|n| n + 1),
        "{e}"
    );
    assert!(e.reason.contains("past the 32 distinct ones"), "{e}");
    parse(Path::new("test.yaml"), &text.replace("      l32: a\n", "")).unwrap();
}

#[test]
fn labels_must_be_a_mapping() {
    let e = err(&format!("{TARGET}    labels: [team]\n"));
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.field.starts_with("targets[0].labels"), "{e}");
}
