//! The rules file as a parser of untrusted input: whatever a value is replaced
//! with, or whatever text is given, the answer is rules or an error naming
//! the file and the place, never a panic.

use proptest::prelude::*;
use recon_core::rules::{Rules, RulesError};

const EXAMPLE: &str = include_str!("../../../../examples/rules.toml");
const RULES_DOC: &str = include_str!("../../../../docs/rules.md");

/// Values that are wrong in some way for most keys: other types, signs,
/// sizes, empty text, odd formats.
const ODD_VALUES: &[&str] = &[
    "\"\"",
    "\"-0.01\"",
    "\"1e999\"",
    "\"0.0000000000000000000000000000000000000001\"",
    "\"99999999999999999999999999999999999999\"",
    "\"NaN\"",
    "\"%\"",
    "\"%Y-%m-%d%\"",
    "\"%Q\"",
    "\"é\"",
    "-1",
    "0",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "1.5",
    "-0.0",
    "inf",
    "nan",
    "true",
    "[]",
    "[\"reference\", \"reference\"]",
    "{}",
    "{ abs = \"0.01\", pct = \"1e3\" }",
    "{ before = -5, after = 400 }",
    "{ similarity = \"jaro_winkler\", min = 1.5 }",
    "{ similarity = \"soundex\" }",
    "\"normalized\"",
    "\"one_to_many\"",
    "\"break\"",
    "\"\\n\"",
    "'\"'",
    "[\"D\", \" d \"]",
    "{ window_days = 2, before = 1 }",
    "{ abs = \"1\", below = \"2\" }",
    "[\"memo\", \" MEMO \"]",
    "[\"\", \"-\"]",
    "\"92233720368547758.07\"",
];

/// The example with the value of its `line`-th `key = value` line replaced.
fn with_value(line: usize, value: &str) -> String {
    let assignments: Vec<usize> = EXAMPLE
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with('#') && l.contains(" = "))
        .map(|(i, _)| i)
        .collect();
    let target = assignments[line % assignments.len()];
    EXAMPLE
        .lines()
        .enumerate()
        .map(|(i, l)| match l.split_once(" = ") {
            Some((key, _)) if i == target => format!("{key} = {value}"),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn names_the_place(err: &RulesError) -> bool {
    let text = err.to_string();
    match err {
        RulesError::Parse { line, .. } | RulesError::Invalid { line, .. } => {
            text.starts_with(&format!("rules.toml:{line}:")) && *line > 0
        }
        _ => false,
    }
}

#[test]
fn the_example_reads() {
    Rules::from_toml_str(EXAMPLE, "rules.toml").unwrap();
}

/// The complete example of docs/rules.md is a rules file that reads.
#[test]
fn the_documented_example_reads() {
    let example = RULES_DOC
        .split_once("## A complete example")
        .and_then(|(_, rest)| rest.split_once("```toml\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(toml, _)| toml)
        .expect("docs/rules.md has a complete example in a toml block");
    let rules = Rules::from_toml_str(example, "rules.md").unwrap();
    assert_eq!(rules.passes.len(), 4);
}

/// A key written twice is named; a byte that is not UTF-8 is placed at its
/// line and column.
#[test]
fn duplicate_keys_and_bad_bytes_are_named_where_they_are() {
    let twice = EXAMPLE.replacen("[left]\n", "[left]\nid = \"a\"\nid = \"b\"\n", 1);
    let err = Rules::from_toml_str(&twice, "rules.toml").unwrap_err();
    assert!(names_the_place(&err), "{err}");
    assert!(err.to_string().ends_with("duplicate key `id`"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, b"[left]\nid = \"\xFFx\"\n").unwrap();
    let err = Rules::from_path(&path).unwrap_err();
    assert!(
        matches!(
            err,
            RulesError::Parse {
                line: 2,
                column: 7,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .ends_with("byte 0xFF is not UTF-8; a rules file is UTF-8 text"),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any one value replaced by an odd one: rules, or an error at a line.
    #[test]
    fn an_odd_value_anywhere_is_read_or_refused_at_its_line(
        line in 0usize..200,
        value in prop::sample::select(ODD_VALUES),
    ) {
        let text = with_value(line, value);
        if let Err(err) = Rules::from_toml_str(&text, "rules.toml") {
            prop_assert!(names_the_place(&err), "{err}");
        }
    }

    /// Any text at all: rules or an error, never a panic.
    #[test]
    fn any_text_is_read_or_refused(text in "\\PC{0,300}") {
        let _ = Rules::from_toml_str(&text, "rules.toml");
    }
}
