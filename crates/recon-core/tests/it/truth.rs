//! Generated cases against their ground truth: the files `recon gen` writes
//! load back exactly, and the matcher, run with the generated rules, finds
//! the true match groups (pair-level precision and recall >= 0.98).

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::path::Path;

use recon_core::input::load_side;
use recon_core::rules::Rules;
use recon_core::synth::{self, BankAmountStyle, Case, CasePaths, GenOptions};

fn write(
    records: usize,
    seed: u64,
    bank_amounts: BankAmountStyle,
    dir: &Path,
) -> (Case, CasePaths) {
    synth::write_case(
        &GenOptions {
            records,
            seed,
            bank_amounts,
        },
        dir,
    )
    .unwrap()
}

#[test]
fn generated_files_load_back_exactly_in_both_bank_styles() {
    for (seed, style) in [
        (1, BankAmountStyle::Parenthesized),
        (2, BankAmountStyle::DebitCredit),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (case, paths) = write(3_000, seed, style, dir.path());
        let rules = Rules::from_path(&paths.rules).unwrap();
        let left = load_side(&paths.left, &rules.left).unwrap();
        let right = load_side(&paths.right, &rules.right).unwrap();
        assert!(left.rejects.is_empty() && right.rejects.is_empty());
        assert_eq!(left.len(), case.left.len());
        assert_eq!(right.len(), case.right.len());
        for (side, records) in [(&left, &case.left), (&right, &case.right)] {
            for (i, r) in records.iter().enumerate() {
                assert_eq!(side.amount[i], r.amount, "{} row {i}", side.source);
                assert_eq!(side.currency[i], r.currency, "{} row {i}", side.source);
                assert_eq!(side.date[i], Some(r.date), "{} row {i}", side.source);
            }
        }
        assert_eq!(left.id.get(0), Some("L0000001"));
        assert_eq!(right.id.get(0), Some("B0000001"));
    }
}

/// What a generated true group is, for the report on a failed bar.
fn kind_of(case: &Case, left: &[u32], right: &[u32]) -> &'static str {
    use recon_core::synth::RefKind;
    let l = &case.left[left[0] as usize];
    let r = &case.right[right[0] as usize];
    if left.len() > 1 {
        "split"
    } else if l.reference.kind == RefKind::Missing || r.reference.kind == RefKind::Missing {
        "missing reference"
    } else if (l.amount - r.amount).abs() > 1 {
        "fee (break)"
    } else if l.amount != r.amount {
        "cent off"
    } else if l.amount < 0 {
        "refund"
    } else {
        "plain"
    }
}

/// Pair-level score of a run against the truth.
///
/// A pair is a (left id, right id) inside one group. Predicted pairs come
/// from groups the engine reports as `matched` or `break` (a break pairs the
/// right records, only their amounts or dates differ); `ambiguous` groups are
/// suggestions for a person, so they predict nothing. True pairs come from
/// `truth.csv`. Precision = found true pairs / predicted pairs, recall =
/// found true pairs / true pairs.
struct Score {
    precision: f64,
    recall: f64,
    report: String,
}

fn score(case: &Case, paths: &CasePaths) -> Score {
    use std::collections::{BTreeMap, BTreeSet};

    use recon_core::matcher::{NoProgress, Reconciler};
    use recon_core::outcome::Status;

    let rules = Rules::from_path(&paths.rules).unwrap();
    let left = load_side(&paths.left, &rules.left).unwrap();
    let right = load_side(&paths.right, &rules.right).unwrap();
    let outcome = Reconciler::new(rules)
        .run(&left, &right, &NoProgress)
        .unwrap();
    // Every record exactly once.
    assert_eq!(outcome.left.len(), left.len());
    assert_eq!(outcome.right.len(), right.len());

    // Truth, read back from truth.csv (ids are row positions + 1).
    let parse_index = |id: &str| id[1..].parse::<u32>().unwrap() - 1;
    let mut true_groups: BTreeMap<u32, (Vec<u32>, Vec<u32>)> = BTreeMap::new();
    let truth = std::fs::read_to_string(&paths.truth).unwrap();
    for line in truth.lines().skip(1) {
        let mut f = line.split(',');
        let (g, side, id) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        let e = true_groups.entry(g.parse().unwrap()).or_default();
        match side {
            "left" => e.0.push(parse_index(id)),
            "right" => e.1.push(parse_index(id)),
            other => panic!("side {other}"),
        }
    }
    let mut true_pairs = BTreeSet::new();
    for (l, r) in true_groups.values() {
        for &a in l {
            for &b in r {
                true_pairs.insert((a, b));
            }
        }
    }

    let mut predicted: BTreeMap<u32, (Vec<u32>, Vec<u32>)> = BTreeMap::new();
    for (side, list) in [(0, &outcome.left), (1, &outcome.right)] {
        for (i, a) in list.iter().enumerate() {
            if let (Some(id), Status::Matched | Status::Break) = (a.match_id(), a.status()) {
                let e = predicted.entry(id.get()).or_default();
                if side == 0 { &mut e.0 } else { &mut e.1 }.push(i as u32);
            }
        }
    }
    let mut predicted_pairs = BTreeSet::new();
    for (l, r) in predicted.values() {
        for &a in l {
            for &b in r {
                predicted_pairs.insert((a, b));
            }
        }
    }
    let found = predicted_pairs.intersection(&true_pairs).count();

    // Which kinds of true group were missed, and which statuses the false
    // pairs came from: the report when a bar is not met.
    let mut missed: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (l, r) in true_groups.values() {
        let e = missed.entry(kind_of(case, l, r)).or_default();
        e.1 += 1;
        if l.iter()
            .any(|&a| r.iter().any(|&b| !predicted_pairs.contains(&(a, b))))
        {
            e.0 += 1;
        }
    }
    let mut false_by_rule: BTreeMap<String, usize> = BTreeMap::new();
    for &(a, b) in predicted_pairs.difference(&true_pairs) {
        let la = &outcome.left[a as usize];
        let rb = &outcome.right[b as usize];
        let rule = outcome.rule_name(la).unwrap_or("?").to_string();
        *false_by_rule
            .entry(format!("{rule} ({} / {})", la.status(), rb.status()))
            .or_default() += 1;
    }
    let report = format!(
        "true pairs {}, predicted {}, found {}\nmissed groups by kind (missed/total): {missed:?}\nfalse pairs by rule: {false_by_rule:?}",
        true_pairs.len(),
        predicted_pairs.len(),
        found
    );
    Score {
        precision: found as f64 / predicted_pairs.len().max(1) as f64,
        recall: found as f64 / true_pairs.len().max(1) as f64,
        report,
    }
}

fn assert_scores(records: usize, seeds: &[u64], style: BankAmountStyle) {
    for &seed in seeds {
        let dir = tempfile::tempdir().unwrap();
        let (case, paths) = write(records, seed, style, dir.path());
        let s = score(&case, &paths);
        eprintln!(
            "{records} records, seed {seed}, {style:?}: precision {:.4}, recall {:.4}\n{}",
            s.precision, s.recall, s.report
        );
        assert!(
            s.precision >= 0.98 && s.recall >= 0.98,
            "{records} records, seed {seed}, {style:?}: precision {:.4}, recall {:.4}\n{}",
            s.precision,
            s.recall,
            s.report
        );
    }
}

#[test]
fn matcher_finds_the_truth_on_2k_cases() {
    assert_scores(2_000, &[1, 2, 3], BankAmountStyle::Parenthesized);
    assert_scores(2_000, &[4], BankAmountStyle::DebitCredit);
}

#[test]
fn matcher_finds_the_truth_on_20k_cases() {
    assert_scores(20_000, &[5], BankAmountStyle::Parenthesized);
    if std::env::var_os("RECON_SLOW_TESTS").is_some_and(|v| v == "1") {
        assert_scores(20_000, &[6, 7], BankAmountStyle::DebitCredit);
    }
}
