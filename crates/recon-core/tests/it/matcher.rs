//! The matcher's behaviour, data-driven: each case builds two small sides in
//! memory, runs a rules file and compares a one-line rendering of every
//! record's status and group. A differential test checks the blocking
//! matcher against a naive all-pairs reference on seeded random data, and a
//! determinism test compares output bytes across rayon thread counts.
#![allow(clippy::unwrap_used)] // Test helpers fail loudly on purpose.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recon_core::{
    Currency, NoProgress, Outcome, Reconciler, Rules, Side, StatusFilter, TextColumn, text,
    write_results_csv, write_results_ndjson, write_results_parquet, write_summary_json,
};

/// The rules' side tables: the sides here are built in memory, but a rules
/// file maps every role its passes compare.
const SIDES: &str = "[left]\namount = \"amount\"\ncurrency_value = \"USD\"\n\
                     id = \"id\"\ndate = \"date\"\nreference = \"ref\"\n\
                     counterparty = \"name\"\ndescription = \"memo\"\n\
                     [right]\namount = \"amount\"\ncurrency_value = \"USD\"\n\
                     id = \"id\"\ndate = \"date\"\nreference = \"ref\"\n\
                     counterparty = \"name\"\ndescription = \"memo\"\n";

/// Builds a side from lines `id amount currency day reference counterparty`
/// (amount in minor units, `-` for a missing value, `_` for a space in text).
fn side(name: &str, rows: &str) -> Side {
    let mut s = Side {
        source: name.to_string(),
        ..Side::default()
    };
    let (mut id, mut reference, mut cp, mut desc) = (
        TextColumn::default(),
        TextColumn::default(),
        TextColumn::default(),
        TextColumn::default(),
    );
    for (n, line) in rows
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let text = |k: usize| -> Option<String> {
            f.get(k).filter(|v| **v != "-").map(|v| v.replace('_', " "))
        };
        id.push(Some(f[0]));
        s.amount.push(f[1].parse().unwrap());
        s.currency
            .push(Currency::parse(f.get(2).copied().unwrap_or("USD")).unwrap());
        s.date.push(text(3).map(|d| d.parse().unwrap()));
        reference.push(text(4).as_deref());
        cp.push(text(5).as_deref());
        desc.push(None);
        s.line.push(n as u64 + 2);
    }
    s.id = id;
    s.reference = reference;
    s.counterparty = cp;
    s.description = desc;
    s
}

/// Rules and sides built or changed in code are checked before matching
/// against what a rules file and loading guarantee: a typed error, never a
/// panic or a quietly wrong result.
#[test]
fn hand_built_rules_and_sides_are_checked_before_matching() {
    let base = format!(
        "{SIDES}[[pass]]\nname = \"ref\"\nreference = \"exact\"\n\
         [[pass]]\nname = \"split\"\ncardinality = \"one_to_many\"\nreference = \"exact\"\n"
    );
    let l = side("l.csv", "a 1000 USD 0 R1 Acme\nb 500 USD 0 R2 Acme");
    let r = side(
        "r.csv",
        "x 1000 USD 0 R1 Acme\ny 250 USD 0 R2 Acme\nz 250 USD 0 R2 Acme",
    );
    let run = |edit: &dyn Fn(&mut Rules), l: &Side, r: &Side| {
        let mut rules = Rules::from_toml_str(&base, "rules.toml").unwrap();
        edit(&mut rules);
        Reconciler::new(rules)
            .run(l, r, &NoProgress)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert_eq!(run(&|_| {}, &l, &r), Ok(()));
    for (edit, message) in [
        (
            (&|r: &mut Rules| r.passes[1].max_group = 9) as &dyn Fn(&mut Rules),
            "invalid rules: pass \"split\": aggregate passes have 2 <= max_group (9) <= \
             max_candidates (12), max_group at most 8, max_candidates at most 16",
        ),
        (
            &|r: &mut Rules| r.passes[0].amount = None,
            "invalid rules: pass \"ref\": a match pass compares amounts (`amount` is set)",
        ),
        (
            &|r: &mut Rules| {
                if let Some(a) = &mut r.passes[0].amount {
                    a.pct = recon_core::rules::Decimal {
                        mantissa: 1,
                        scale: 60,
                    };
                }
            },
            "invalid rules: pass \"ref\": amount tolerance Decimal { mantissa: 1, scale: 60 }: \
             a decimal is at least 0 with at most 18 digits",
        ),
        (
            &|r: &mut Rules| r.passes[1].name = " ref ".to_owned(),
            "invalid rules: pass \" ref \": pass names are unique and not blank",
        ),
        (
            &|r: &mut Rules| {
                let p = r.passes[0].clone();
                r.passes = vec![p; recon_core::rules::MAX_PASSES + 1];
            },
            "invalid rules: rules: 1 to 1000 passes, not 1001",
        ),
    ] {
        assert_eq!(run(edit, &l, &r), Err(message.to_owned()));
    }
    // A side without a column the rules compare (as loaded without that
    // role) would match nothing: refused.
    let bare = Side {
        reference: TextColumn::default(),
        ..l.clone()
    };
    assert_eq!(
        run(&|_| {}, &bare, &r),
        Err("l.csv: column `reference` has 0 entries, expected 2".to_owned())
    );
    // Extra columns have one entry per record too.
    let mut short = l.clone();
    short.extra.push((
        "cost_centre".to_owned(),
        [Some("CC1")].into_iter().collect(),
    ));
    assert_eq!(
        run(&|_| {}, &short, &r),
        Err("l.csv: column `extra` has 1 entries, expected 2".to_owned())
    );
}

/// `id=status/group` per record, groups renumbered in order of appearance,
/// left then right: `a=matched/1 b=unmatched | x=matched/1`.
fn render(outcome: &Outcome, left: &Side, right: &Side) -> String {
    let mut groups = BTreeMap::new();
    let mut parts = Vec::new();
    for (side, list) in [(left, &outcome.left), (right, &outcome.right)] {
        let mut cells = Vec::new();
        for (i, a) in list.iter().enumerate() {
            let id = side.id.get(i).unwrap();
            match a.match_id() {
                Some(m) => {
                    let n = groups.len() + 1;
                    let g = *groups.entry(m).or_insert(n);
                    cells.push(format!("{id}={}/{g}", a.status()));
                }
                None => cells.push(format!("{id}={}", a.status())),
            }
        }
        parts.push(cells.join(" "));
    }
    parts.join(" | ")
}

fn run(left: &Side, right: &Side, rules: &str) -> Outcome {
    let rules = Rules::from_toml_str(&format!("{SIDES}{rules}"), "rules.toml").unwrap();
    Reconciler::new(rules)
        .run(left, right, &NoProgress)
        .unwrap()
}

/// The one helper: run `rules` over the two sides and compare the rendering.
#[track_caller]
fn check(left: &str, right: &str, rules: &str, expect: &str) {
    let (l, r) = (side("left.csv", left), side("right.csv", right));
    let outcome = run(&l, &r, rules);
    assert_eq!(render(&outcome, &l, &r), expect);
}

const EXACT_REF: &str = "[[pass]]\nname = \"ref\"\nreference = \"exact\"\n";

#[test]
fn exact_reference_pairs_equal_amounts() {
    check(
        "a 100 USD 1 R1\nb 200 USD 1 R2\nc 300 USD 1 R3",
        "x 200 USD 1 R2\ny 100 USD 1 R1\nz 301 USD 1 R3",
        EXACT_REF,
        "a=matched/1 b=matched/2 c=unmatched | x=matched/2 y=matched/1 z=unmatched",
    );
}

#[test]
fn normalized_reference_ignores_case_punctuation_and_prefixes() {
    check(
        "a 100 USD 1 INV-00123\nb 100 USD 1 ab-7",
        "x 100 USD 1 inv_123\ny 100 USD 1 AB7",
        "[normalize]\nstrip_prefixes = [\"INV\"]\n[[pass]]\nname = \"n\"\nreference = \"normalized\"\n",
        "a=matched/1 b=matched/2 | x=matched/1 y=matched/2",
    );
    // Exact does not normalize.
    check(
        "a 100 USD 1 INV-00123",
        "x 100 USD 1 inv_123",
        EXACT_REF,
        "a=unmatched | x=unmatched",
    );
}

#[test]
fn amount_tolerance_edges_are_inclusive() {
    let rules = "[[pass]]\nname = \"t\"\nreference = \"exact\"\namount = { abs = \"0.05\" }\n";
    check(
        "a 1000 USD 1 R1\nb 1000 USD 1 R2\nc 1000 USD 1 R3\nd 1000 USD 1 R4",
        "w 1005 USD 1 R1\nx 1006 USD 1 R2\ny 995 USD 1 R3\nz 994 USD 1 R4",
        rules,
        "a=matched/1 b=unmatched c=matched/2 d=unmatched | w=matched/1 x=unmatched y=matched/2 z=unmatched",
    );
}

#[test]
fn percentage_tolerance_uses_the_left_amount() {
    // 1% of 100.00 is 1.00: 101.00 matches, 101.01 does not; abs 0.50 is smaller.
    let rules =
        "[[pass]]\nname = \"p\"\nreference = \"exact\"\namount = { abs = \"0.50\", pct = \"1\" }\n";
    check(
        "a 10000 USD 1 R1\nb 10000 USD 1 R2",
        "x 10100 USD 1 R1\ny 10101 USD 1 R2",
        rules,
        "a=matched/1 b=unmatched | x=matched/1 y=unmatched",
    );
}

#[test]
fn asymmetric_amount_tolerance() {
    // The bank may be up to 0.10 below the ledger (fees), never above.
    let rules = "[[pass]]\nname = \"fee\"\nreference = \"exact\"\namount = { below = \"0.10\", above = \"0\" }\n";
    check(
        "a 1000 USD 1 R1\nb 1000 USD 1 R2\nc 1000 USD 1 R3",
        "x 990 USD 1 R1\ny 989 USD 1 R2\nz 1001 USD 1 R3",
        rules,
        "a=matched/1 b=unmatched c=unmatched | x=matched/1 y=unmatched z=unmatched",
    );
}

#[test]
fn asymmetric_date_window() {
    // Right may be 1 day before or 3 days after the left date.
    let rules = "[[pass]]\nname = \"d\"\ndate = { before = 1, after = 3 }\n";
    check(
        "a 100 USD 10\nb 200 USD 10\nc 300 USD 10\nd 400 USD 10\ne 500 USD -",
        "v 100 USD 9\nw 200 USD 8\nx 300 USD 13\ny 400 USD 14\nz 500 USD 10",
        rules,
        "a=matched/1 b=unmatched c=matched/2 d=unmatched e=unmatched | v=matched/1 w=unmatched x=matched/2 y=unmatched z=unmatched",
    );
    // The same window searched per candidate (with a reference gate).
    let rules = "[[pass]]\nname = \"d\"\nreference = \"exact\"\ndate = { before = 1, after = 3 }\n";
    check(
        "a 100 USD 10 R\nb 100 USD 10 S",
        "x 100 USD 8 R\ny 100 USD 13 S",
        rules,
        "a=unmatched b=matched/1 | x=unmatched y=matched/1",
    );
}

#[test]
fn currency_is_always_a_gate() {
    check(
        "a 100 USD 1 R1\nb 100 EUR 1 R1",
        "x 100 EUR 1 R1",
        EXACT_REF,
        "a=unmatched b=matched/1 | x=matched/1",
    );
}

#[test]
fn equal_candidates_are_ambiguous_not_picked() {
    check(
        "a 100 USD 5 R1\nb 100 USD 5 R9",
        "x 100 USD 5 R1\ny 100 USD 5 R1\nz 100 USD 5 R9",
        EXACT_REF,
        "a=ambiguous/1 b=matched/2 | x=ambiguous/1 y=ambiguous/1 z=matched/2",
    );
}

#[test]
fn ties_break_on_amount_then_date_then_score() {
    let tol = "[[pass]]\nname = \"t\"\nreference = \"exact\"\namount = { abs = \"1\" }\ndate = { window_days = 5 }\n";
    // Smaller amount difference wins.
    check(
        "a 1000 USD 5 R",
        "x 1010 USD 5 R\ny 1001 USD 5 R",
        tol,
        "a=matched/1 | x=unmatched y=matched/1",
    );
    // Equal amounts: the closer date wins.
    check(
        "a 1000 USD 5 R",
        "x 1000 USD 8 R\ny 1000 USD 6 R",
        tol,
        "a=matched/1 | x=unmatched y=matched/1",
    );
    // Same date distance on both sides of the date is still a tie.
    check(
        "a 1000 USD 5 R",
        "x 1000 USD 4 R\ny 1000 USD 6 R",
        tol,
        "a=ambiguous/1 | x=ambiguous/1 y=ambiguous/1",
    );
    // A better counterparty score beats everything else.
    let sim = "[[pass]]\nname = \"s\"\namount = { abs = \"1\" }\ndate = { window_days = 5 }\n\
               counterparty = { similarity = \"jaro_winkler\", min = 0.5 }\n";
    check(
        "a 1000 USD 5 - ACME_Corp",
        "x 1000 USD 5 - Zenith_Bank\ny 1000 USD 5 - ACME_Inc\nz 1001 USD 7 - acme_corp.",
        sim,
        "a=matched/1 | x=unmatched y=unmatched z=matched/1",
    );
}

/// Scores are compared rounded to 12 decimal places: a Jaro-Winkler of
/// exactly `min` passes (8/9 + 0.1 x 1/9 = 0.9 computes as
/// 0.8999999999999999), and two candidates of the same exact score (29/30,
/// computed one unit in the last place apart) are a tie, reported ambiguous;
/// so are two means of equal exact value.
#[test]
fn scores_equal_in_exact_arithmetic_compare_equal() {
    let jw = "[[pass]]\nname = \"s\"\namount = { abs = \"0\" }\n\
              counterparty = { similarity = \"jaro_winkler\", min = 0.9 }\n";
    check(
        "a 10000 USD 5 - ACME_CORP",
        "x 10000 USD 5 - AME_COCRP",
        jw,
        "a=matched/1 | x=matched/1",
    );
    check(
        "a 25000 USD 5 - ACME_CORP",
        "x 25000 USD 5 - AMCE_CORP\ny 25000 USD 5 - JACME_CORP",
        jw,
        "a=ambiguous/1 | x=ambiguous/1 y=ambiguous/1",
    );
}

/// A record with no text to compare never passes a similarity gate, not
/// even one whose `min` is 0.
#[test]
fn missing_text_never_passes_a_similarity_gate() {
    let rules = "[[pass]]\nname = \"s\"\namount = { abs = \"0\" }\n\
                 counterparty = { similarity = \"jaro_winkler\", min = 0 }\n";
    check(
        "a 1000 USD 5 - -\nb 2000 USD 5 - ACME\nc 3000 USD 5 - ...\nd 4000 USD 5 - ACME",
        "x 1000 USD 5 - ACME\ny 2000 USD 5 - -\nz 3000 USD 5 - ACME\nw 4000 USD 5 - Zenith",
        rules,
        "a=unmatched b=unmatched c=unmatched d=matched/1 | x=unmatched y=unmatched z=unmatched w=matched/1",
    );
}

#[test]
fn greedy_assignment_never_uses_a_record_twice() {
    // a's best is x; b's only candidate is x too, so b stays unmatched.
    check(
        "a 1000 USD 5 R\nb 1003 USD 5 R",
        "x 1000 USD 5 R",
        "[[pass]]\nname = \"t\"\nreference = \"exact\"\namount = { abs = \"0.05\" }\n",
        "a=matched/1 b=unmatched | x=matched/1",
    );
}

#[test]
fn one_to_many_splits() {
    let rules = "[[pass]]\nname = \"split\"\ncardinality = \"one_to_many\"\nreference = \"exact\"\nmax_group = 3\n";
    check(
        "a 1000 USD 1 R1\nb 900 USD 1 R2\nc 50 USD 1 R3",
        "x 400 USD 1 R1\ny 600 USD 1 R1\nz 100 USD 1 R2\nw 300 USD 1 R2\nv 500 USD 1 R2\nu 50 USD 1 R3",
        rules,
        "a=matched/1 b=matched/2 c=unmatched | x=matched/1 y=matched/1 z=matched/2 w=matched/2 v=matched/2 u=unmatched",
    );
    // A group larger than max_group is not formed.
    let small = "[[pass]]\nname = \"split\"\ncardinality = \"one_to_many\"\nreference = \"exact\"\nmax_group = 2\n";
    check(
        "b 900 USD 1 R2",
        "z 100 USD 1 R2\nw 300 USD 1 R2\nv 500 USD 1 R2",
        small,
        "b=unmatched | z=unmatched w=unmatched v=unmatched",
    );
}

#[test]
fn many_to_one_batches_with_date_window_and_tolerance() {
    let rules = "[[pass]]\nname = \"batch\"\ncardinality = \"many_to_one\"\ndate = { before = 0, after = 2 }\n\
                 amount = { abs = \"0.01\" }\n";
    check(
        "a 250 USD 10\nb 750 USD 11\nc 333 USD 30\nd 999 USD 10",
        "x 1001 USD 12\ny 5000 USD 10",
        rules,
        "a=matched/1 b=matched/1 c=unmatched d=unmatched | x=matched/1 y=unmatched",
    );
}

#[test]
fn break_pass_pairs_same_reference_with_differences() {
    let rules = "[[pass]]\nname = \"exact\"\nreference = \"exact\"\n\
                 [[pass]]\nname = \"fees\"\nkind = \"break\"\nreference = \"exact\"\namount = { abs = \"5.00\" }\n";
    let (l, r) = (
        side("l", "a 10000 USD 1 R1\nb 10000 USD 1 R2\nc 10000 USD 1 R3"),
        side("r", "x 10000 USD 1 R1\ny 9975 USD 3 R2\nz 9000 USD 1 R3"),
    );
    let o = run(&l, &r, rules);
    assert_eq!(
        render(&o, &l, &r),
        "a=matched/1 b=break/2 c=unmatched | x=matched/1 y=break/2 z=unmatched"
    );
    assert_eq!(o.left[1].amount_diff(), Some(-25));
    assert_eq!(o.right[1].date_diff_days(), Some(2));
    assert_eq!(o.rule_name(&o.left[1]), Some("fees"));
    assert_eq!(o.summary.rules[1].groups, 1);
}

/// Amounts span the whole range, and a break pass with no amount limit pairs
/// records at its two ends: no difference is too large to hold. A side
/// built by hand with an amount past the range is refused, naming its line.
#[test]
fn the_extremes_of_the_amount_range_still_pair() {
    let max = recon_core::money::MAX_MINOR;
    let rules = "[[pass]]\nname = \"brk\"\nkind = \"break\"\nreference = \"exact\"\n";
    let (l, r) = (
        side("l", &format!("a {} USD 1 R1", -max)),
        side("r", &format!("x {max} USD 1 R1")),
    );
    let o = run(&l, &r, rules);
    assert_eq!(render(&o, &l, &r), "a=break/1 | x=break/1");
    assert_eq!(o.left[0].amount_diff(), Some(2 * max));
    let past = side("r", &format!("x {} USD 1 R1\ny {} USD 1 R1", max, max + 1));
    let rules = Rules::from_toml_str(&format!("{SIDES}{rules}"), "rules.toml").unwrap();
    let err = Reconciler::new(rules)
        .run(&l, &past, &NoProgress)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "r line 3: amount 4611686018427387904 (minor units) is out of the amount range \
         (at most 4611686018427387903 either way)"
    );
}

#[test]
fn duplicates_keep_the_first_occurrence() {
    let rules = "[duplicates]\nleft = [\"reference\", \"amount\"]\nright = [\"id\"]\n\
                 [[pass]]\nname = \"ref\"\nreference = \"exact\"\n";
    check(
        "a 100 USD 1 R1\nb 100 USD 2 r-1\nc 200 USD 1 R1",
        "x 100 USD 1 R1\nx 200 USD 1 R1",
        rules,
        "a=matched/1 b=duplicate c=unmatched | x=matched/1 x=duplicate",
    );
}

/// An amount in a duplicate key is money: 1000 minor units of JPY, USD and
/// BHD are three amounts, not one.
#[test]
fn duplicate_amounts_compare_their_currencies() {
    let rules = "[duplicates]\nleft = [\"reference\", \"amount\", \"date\"]\nright = [\"amount\"]\n\
                 [[pass]]\nname = \"ref\"\nreference = \"exact\"\n";
    check(
        "a 1000 USD 1 A\nb 1000 JPY 1 A\nc 1000 BHD 1 A\nd 1000 USD 1 A",
        "x 1000 EUR 1 -\ny 1000 USD 1 -\nz 1000 EUR 1 -",
        rules,
        "a=unmatched b=unmatched c=unmatched d=duplicate | x=unmatched y=unmatched z=duplicate",
    );
}

#[test]
fn cascade_offers_only_free_records_to_later_passes() {
    // The strict pass takes a-x first; the loose pass cannot take x for b.
    let rules = "[[pass]]\nname = \"strict\"\nreference = \"exact\"\n\
                 [[pass]]\nname = \"loose\"\namount = { abs = \"1.00\" }\ndate = { window_days = 2 }\n";
    let (l, r) = (
        side("l", "b 1000 USD 5 -\na 1000 USD 5 R1"),
        side("r", "x 1000 USD 5 R1\ny 1050 USD 6 -"),
    );
    let o = run(&l, &r, rules);
    assert_eq!(
        render(&o, &l, &r),
        "b=matched/1 a=matched/2 | x=matched/2 y=matched/1"
    );
    assert_eq!(o.rule_name(&o.left[1]), Some("strict"));
    assert_eq!(o.rule_name(&o.left[0]), Some("loose"));
}

#[test]
fn summary_conserves_totals_per_currency_and_status() {
    let (l, r) = (
        side("l", "a 100 USD 1 R1\nb -250 USD 1 R2\nc 7 JPY 1 R3"),
        side("r", "x 100 USD 1 R1\ny 5 JPY 1 R9"),
    );
    let o = run(&l, &r, EXACT_REF);
    let s = &o.summary;
    assert_eq!(s.left.records, 3);
    assert_eq!(s.left.totals["USD"].amount, "-1.50");
    assert_eq!(s.left.totals["JPY"].amount, "7");
    let matched = &s.left.by_status[&recon_core::Status::Matched]["USD"];
    let unmatched = &s.left.by_status[&recon_core::Status::Unmatched]["USD"];
    assert_eq!((matched.count, matched.amount.as_str()), (1, "1.00"));
    assert_eq!((unmatched.count, unmatched.amount.as_str()), (1, "-2.50"));
    assert_eq!(
        s.right.by_status[&recon_core::Status::Unmatched]["JPY"].count,
        1
    );
    assert!((s.match_rate - 2.0 / 5.0).abs() < 1e-12);
    assert_eq!(s.audit.rules_sha256.len(), 64);
    assert_eq!(s.audit.engine_version, env!("CARGO_PKG_VERSION"));
}

#[test]
fn results_csv_orders_groups_then_unmatched() {
    let (l, r) = (
        side("l", "a 100 USD 1 R2\nb 250 USD 1 R1\nc,d 7 USD 1 -"),
        side("r", "x 250 USD 3 R1\ny 100 USD 1 R2\nz 9 USD 1 -"),
    );
    let o = run(&l, &r, EXACT_REF);
    let mut out = Vec::new();
    write_results_csv(&o, &l, &r, &mut out, &StatusFilter::ALL).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "match_id,side,record_id,line,status,rule,score,amount,currency,amount_diff,date_diff_days\n\
         1,left,a,2,matched,ref,1.0000,1.00,USD,0.00,0\n\
         1,right,y,3,matched,ref,1.0000,1.00,USD,0.00,0\n\
         2,left,b,3,matched,ref,1.0000,2.50,USD,0.00,2\n\
         2,right,x,2,matched,ref,1.0000,2.50,USD,0.00,2\n\
         ,left,\"c,d\",4,unmatched,,,0.07,USD,,\n\
         ,right,z,4,unmatched,,,0.09,USD,,\n"
    );
    let mut only = Vec::new();
    let filter: StatusFilter = "unmatched".parse().unwrap();
    write_results_csv(&o, &l, &r, &mut only, &filter).unwrap();
    assert_eq!(String::from_utf8(only).unwrap().lines().count(), 3);
    assert!("matched,nope".parse::<StatusFilter>().is_err());

    let mut nd = Vec::new();
    write_results_ndjson(&o, &l, &r, &mut nd, &StatusFilter::ALL).unwrap();
    let first: serde_json::Value =
        serde_json::from_slice(nd.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["amount"], "1.00");
    assert_eq!(first["match_id"], 1);
    assert_eq!(first["status"], "matched");
}

// ---- differential test against a naive reference matcher ----

/// All-pairs reference for one 1:1 pass with reference, amount and date
/// gates: rank every passing pair, take them greedily, and report records
/// whose best free candidates tie as ambiguous. Returns, per left record,
/// `Some(set of partners)` for matched/ambiguous and `None` otherwise.
fn naive(left: &Side, right: &Side, abs: i64, window: i64) -> (Vec<String>, Vec<String>) {
    naive_capped(left, right, abs, window, usize::MAX)
}

/// [`naive`] keeping only each left record's best `cap` candidates (by
/// amount difference, date difference, then right input order), as the
/// matcher does at `MAX_CANDIDATES_PER_RECORD`.
fn naive_capped(
    left: &Side,
    right: &Side,
    abs: i64,
    window: i64,
    cap: usize,
) -> (Vec<String>, Vec<String>) {
    let mut edges = Vec::new();
    for l in 0..left.len() {
        for r in 0..right.len() {
            let (Some(rl), Some(rr)) = (left.reference.get(l), right.reference.get(r)) else {
                continue;
            };
            let (Some(dl), Some(dr)) = (left.date[l], right.date[r]) else {
                continue;
            };
            let ad = right.amount[r] - left.amount[l];
            let dd = i64::from(dr - dl);
            if rl.trim() == rr.trim()
                && left.currency[l] == right.currency[r]
                && ad.abs() <= abs
                && dd.abs() <= window
            {
                edges.push((ad.unsigned_abs(), dd.unsigned_abs(), l, r));
            }
        }
    }
    let mut kept = vec![0usize; left.len()];
    edges.sort_by_key(|&(a, d, l, r)| (l, a, d, r));
    edges.retain(|&(_, _, l, _)| {
        kept[l] += 1;
        kept[l] <= cap
    });
    edges.sort();
    let mut ls = vec!["unmatched".to_string(); left.len()];
    let mut rs = vec!["unmatched".to_string(); right.len()];
    let (mut lf, mut rf) = (vec![true; left.len()], vec![true; right.len()]);
    for &(a, d, l, r) in &edges {
        if !lf[l] || !rf[r] {
            continue;
        }
        // Tie cluster by fixed-point closure over same-rank free edges.
        let (mut cl, mut cr) = (vec![l], vec![r]);
        loop {
            let before = cl.len() + cr.len();
            for &(a2, d2, l2, r2) in &edges {
                if (a2, d2) != (a, d) || !lf[l2] || !rf[r2] {
                    continue;
                }
                let has_l = cl.contains(&l2);
                let has_r = cr.contains(&r2);
                if has_l && !has_r {
                    cr.push(r2);
                } else if has_r && !has_l {
                    cl.push(l2);
                }
            }
            if cl.len() + cr.len() == before {
                break;
            }
        }
        let status = if cl.len() + cr.len() == 2 {
            "matched"
        } else {
            "ambiguous"
        };
        let mut members: Vec<String> = cl
            .iter()
            .map(|i| format!("L{i}"))
            .chain(cr.iter().map(|i| format!("R{i}")))
            .collect();
        members.sort();
        let tag = format!("{status}:{}", members.join("+"));
        for &i in &cl {
            lf[i] = false;
            ls[i] = tag.clone();
        }
        for &i in &cr {
            rf[i] = false;
            rs[i] = tag.clone();
        }
    }
    (ls, rs)
}

fn random_side(rng: &mut ChaCha8Rng, n: usize) -> Side {
    let mut rows = String::new();
    for i in 0..n {
        let cur = if rng.random_bool(0.8) { "USD" } else { "EUR" };
        let day = if rng.random_bool(0.95) {
            rng.random_range(0..6).to_string()
        } else {
            "-".into()
        };
        let reference = if rng.random_bool(0.9) {
            // Keys of up to 16 bytes are verified inline (in one or two
            // words), longer ones against the buffers.
            let long = match rng.random_range(0..3) {
                0 => "-LONG-REFERENCE",
                1 => "-MID-REF",
                _ => "",
            };
            format!("R{}{long}", rng.random_range(0..6))
        } else {
            "-".into()
        };
        let amount = 1000 + rng.random_range(-4..=4);
        rows.push_str(&format!("{i} {amount} {cur} {day} {reference}\n"));
    }
    side("random", &rows)
}

fn tags(o: &Outcome) -> (Vec<String>, Vec<String>) {
    let mut members: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (p, list) in [("L", &o.left), ("R", &o.right)] {
        for (i, a) in list.iter().enumerate() {
            if let Some(m) = a.match_id() {
                members.entry(m.get()).or_default().push(format!("{p}{i}"));
            }
        }
    }
    let tag = |a: &recon_core::Assignment| match a.match_id() {
        Some(m) => {
            let mut v = members[&m.get()].clone();
            v.sort();
            format!("{}:{}", a.status(), v.join("+"))
        }
        None => a.status().to_string(),
    };
    (
        o.left.iter().map(tag).collect(),
        o.right.iter().map(tag).collect(),
    )
}

#[test]
fn blocking_matcher_agrees_with_naive_all_pairs() {
    let rules = "[[pass]]\nname = \"p\"\nreference = \"exact\"\namount = { abs = \"0.02\" }\ndate = { window_days = 1 }\n";
    let rules = Rules::from_toml_str(&format!("{SIDES}{rules}"), "rules.toml").unwrap();
    let rec = Reconciler::new(rules);
    for seed in 0..200u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let nl = rng.random_range(0..25);
        let nr = rng.random_range(0..25);
        let (l, r) = (random_side(&mut rng, nl), random_side(&mut rng, nr));
        let o = rec.run(&l, &r, &NoProgress).unwrap();
        assert_eq!(tags(&o), naive(&l, &r, 2, 1), "seed {seed}");
        // Every record exactly once, and totals conserved (checked in run).
        assert_eq!(o.left.len() + o.right.len(), nl + nr);
    }
}

/// Busy days: a pass without references or text (so it blocks on days and
/// cuts a crowd of equal candidates short once it holds the best 64), and
/// amounts and days from a handful of values, so most left records have
/// more candidates than the matcher keeps (`MAX_CANDIDATES_PER_RECORD`).
/// The matcher keeps the same best 64 as an all-pairs reference with the
/// cap.
#[test]
fn candidates_past_the_cap_agree_with_naive_all_pairs() {
    let rules = "[[pass]]\nname = \"p\"\nreference = \"ignore\"\namount = { abs = \"0.02\" }\ndate = { window_days = 1 }\n";
    let rules = Rules::from_toml_str(&format!("{SIDES}{rules}"), "rules.toml").unwrap();
    let rec = Reconciler::new(rules);
    // Most records on one amount and day, the rest spread over a few
    // others: the few best candidates of a record away from the crowd sit
    // in small runs beside the crowd's large one.
    let busy = |rng: &mut ChaCha8Rng, n: usize, crowd: f64| -> Side {
        let mut rows = String::new();
        for i in 0..n {
            let (amount, day) = if rng.random_bool(crowd) {
                (1000, 0)
            } else {
                (1000 + rng.random_range(-2..=2), rng.random_range(0..3))
            };
            rows.push_str(&format!("{i} {amount} USD {day} R1\n"));
        }
        side("busy", &rows)
    };
    for seed in 0..12u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(500 + seed);
        let crowd = rng.random_range(0.0..0.9);
        let nl = rng.random_range(60..160);
        let nr = rng.random_range(100..600);
        let (l, r) = (busy(&mut rng, nl, crowd), busy(&mut rng, nr, crowd));
        let o = rec.run(&l, &r, &NoProgress).unwrap();
        assert_eq!(
            tags(&o),
            naive_capped(&l, &r, 2, 1, recon_core::matcher::MAX_CANDIDATES_PER_RECORD),
            "seed {seed}"
        );
    }
}

/// Past the candidate cap, a crowd of equal candidates is cut short, and
/// the better candidate listed after the crowd (a nearer amount, same day)
/// is still found.
#[test]
fn a_better_candidate_after_a_crowd_is_found() {
    let rules = "[[pass]]\nname = \"p\"\nreference = \"ignore\"\namount = { abs = \"0.02\" }\ndate = { window_days = 1 }\n";
    let mut right: String = (0..130).map(|i| format!("x{i} 1000 USD 0 R1\n")).collect();
    right.push_str("y 1001 USD 0 R1\n");
    let mut expect = "a=matched/1 |".to_owned();
    for i in 0..130 {
        expect.push_str(&format!(" x{i}=unmatched"));
    }
    expect.push_str(" y=matched/1");
    check("a 1001 USD 1 R1", &right, rules, &expect);
}

#[test]
fn output_bytes_do_not_depend_on_thread_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (l, r) = (random_side(&mut rng, 3000), random_side(&mut rng, 3000));
    let rules = "[duplicates]\nleft = [\"reference\", \"amount\", \"date\"]\n\
                 [[pass]]\nname = \"p\"\nreference = \"exact\"\namount = { abs = \"0.02\" }\ndate = { window_days = 1 }\n\
                 [[pass]]\nname = \"split\"\ncardinality = \"one_to_many\"\nreference = \"exact\"\namount = { abs = \"0.05\" }\n\
                 [[pass]]\nname = \"loose\"\namount = { abs = \"0.04\" }\ndate = { window_days = 2 }\n\
                 [[pass]]\nname = \"brk\"\nkind = \"break\"\nreference = \"exact\"\n";
    let rules = Rules::from_toml_str(&format!("{SIDES}{rules}"), "rules.toml").unwrap();
    let rec = Reconciler::new(rules);
    let mut outputs = Vec::new();
    for threads in [1, 2, 4] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let bytes = pool.install(|| {
            let o = rec.run(&l, &r, &NoProgress).unwrap();
            let mut csv = Vec::new();
            write_results_csv(&o, &l, &r, &mut csv, &StatusFilter::ALL).unwrap();
            let mut pq = Vec::new();
            write_results_parquet(&o, &l, &r, &mut pq, &StatusFilter::ALL).unwrap();
            let mut summary = o.summary.clone();
            summary.audit.timings = Default::default();
            let mut js = Vec::new();
            write_summary_json(&summary, &mut js).unwrap();
            (csv, pq, js)
        });
        outputs.push(bytes);
    }
    assert!(outputs[0].0.len() > 6000 * 20);
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
    let text = String::from_utf8(outputs[0].0.clone()).unwrap();
    for status in ["matched", "ambiguous", "unmatched", "duplicate", "break"] {
        assert!(text.contains(&format!(",{status},")), "no {status} rows");
    }
}

/// Sides large enough that the writers' output spans many parallel
/// formatting chunks (4,096 rows) and more than one window (16 chunks), with
/// record ids that need CSV quoting.
#[test]
fn large_outputs_do_not_depend_on_thread_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut wide = |n: usize| {
        let mut rows = String::new();
        for i in 0..n {
            let amount = 1000 + rng.random_range(-2..=2);
            let day = rng.random_range(0..4);
            let reference = rng.random_range(0..n / 3);
            let id = match i % 50 {
                0 => format!("a,{i}"),
                1 => format!("q\"{i}\""),
                _ => i.to_string(),
            };
            rows.push_str(&format!("{id} {amount} USD {day} R{reference}\n"));
        }
        side("wide", &rows)
    };
    let (l, r) = (wide(40_000), wide(40_000));
    let rules = "[[pass]]\nname = \"p\"\nreference = \"exact\"\namount = { abs = \"0.01\" }\ndate = { window_days = 1 }\n";
    let rules = Rules::from_toml_str(&format!("{SIDES}{rules}"), "rules.toml").unwrap();
    let rec = Reconciler::new(rules);
    let mut outputs = Vec::new();
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        outputs.push(pool.install(|| {
            let o = rec.run(&l, &r, &NoProgress).unwrap();
            let (mut csv, mut nd) = (Vec::new(), Vec::new());
            write_results_csv(&o, &l, &r, &mut csv, &StatusFilter::ALL).unwrap();
            write_results_ndjson(&o, &l, &r, &mut nd, &StatusFilter::ALL).unwrap();
            (csv, nd)
        }));
    }
    assert_eq!(outputs[0], outputs[1]);
    let text = String::from_utf8(outputs[0].0.clone()).unwrap();
    assert_eq!(text.lines().count(), 80_001);
    assert!(text.contains(",\"a,50\",") && text.contains(",\"q\"\"51\"\"\","));
    assert!(text.contains(",matched,") && text.contains(",unmatched,"));
    assert_eq!(
        String::from_utf8(outputs[0].1.clone())
            .unwrap()
            .lines()
            .count(),
        80_000
    );
}

#[test]
fn the_documented_example_rules_parse() {
    let doc = include_str!("../../../../docs/rules.md");
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let rules = Rules::from_toml_str(&doc[start..end], "docs/rules.md").unwrap();
    let names: Vec<&str> = rules.passes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["reference", "split", "amount-date-name", "fee-deducted"]
    );
    assert_eq!(rules.left.extra, ["cost_center"]);
}

#[test]
fn extra_columns_are_carried_through() {
    let (mut l, mut r) = (
        side("l", "a 100 USD 1 R1\nb 5 USD 1 -"),
        side("r", "x 100 USD 1 R1"),
    );
    l.extra = vec![("cc".into(), [Some("north"), None].into_iter().collect())];
    r.extra = vec![(
        "memo,x".into(),
        [Some("paid \"in\" full")].into_iter().collect(),
    )];
    let o = run(&l, &r, EXACT_REF);
    let mut out = Vec::new();
    write_results_csv(&o, &l, &r, &mut out, &StatusFilter::ALL).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].ends_with(",date_diff_days,left_cc,\"right_memo,x\""));
    assert!(lines[1].ends_with(",0,north,"), "{}", lines[1]);
    assert!(
        lines[2].ends_with(",0,,\"paid \"\"in\"\" full\""),
        "{}",
        lines[2]
    );
    assert!(lines[3].ends_with(",,,"), "{}", lines[3]);

    let mut nd = Vec::new();
    write_results_ndjson(&o, &l, &r, &mut nd, &StatusFilter::ALL).unwrap();
    let rows: Vec<serde_json::Value> = nd
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(rows[0]["extra"]["cc"], "north");
    assert_eq!(rows[1]["extra"]["memo,x"], "paid \"in\" full");
    assert!(rows[2]["extra"]["cc"].is_null());

    let mut pq = Vec::new();
    write_results_parquet(&o, &l, &r, &mut pq, &StatusFilter::ALL).unwrap();
    assert_eq!(&pq[..4], b"PAR1");
}

#[test]
fn records_missing_a_key_part_are_not_duplicates() {
    check(
        "a 100 USD 1 -\nb 100 USD 1 -",
        "x 100 USD 1 -",
        "[duplicates]\nleft = [\"reference\", \"amount\"]\n[[pass]]\nname = \"amt\"\n",
        "a=ambiguous/1 b=ambiguous/1 | x=ambiguous/1",
    );
}

/// A random case with 1:1 pairs, splits (one left, 2-3 right with its
/// reference) and batches (2-3 left without reference, one right), plus noise.
fn split_case(rng: &mut ChaCha8Rng, n: usize) -> (Side, Side) {
    let (mut l, mut r) = (String::new(), String::new());
    let (mut li, mut ri) = (0, 0);
    let row = |buf: &mut String, k: &mut usize, amount: i64, day: i32, reference: &str| {
        buf.push_str(&format!("{k} {amount} USD {day} {reference}\n"));
        *k += 1;
    };
    for g in 0..n {
        let day = rng.random_range(0..5);
        let reference = format!("G{}", rng.random_range(0..n));
        let amount = rng.random_range(100..2000);
        match rng.random_range(0..4) {
            0 => {
                row(&mut l, &mut li, amount, day, &reference);
                row(
                    &mut r,
                    &mut ri,
                    amount + rng.random_range(-1..=1),
                    day,
                    &reference,
                );
            }
            1 => {
                let parts = rng.random_range(2..=3);
                let mut left_over = amount;
                for p in 0..parts {
                    let a = if p + 1 == parts {
                        left_over
                    } else {
                        rng.random_range(1..amount / 3)
                    };
                    left_over -= a;
                    row(&mut r, &mut ri, a, day, &reference);
                }
                row(
                    &mut l,
                    &mut li,
                    amount + rng.random_range(-2..=2),
                    day,
                    &reference,
                );
            }
            2 => {
                let parts = rng.random_range(2..=3);
                let mut total = 0;
                for _ in 0..parts {
                    let a = rng.random_range(100..1000);
                    total += a;
                    row(&mut l, &mut li, a, day + rng.random_range(-1..=1), "-");
                }
                row(&mut r, &mut ri, total, day, &format!("B{g}"));
            }
            _ => row(&mut l, &mut li, amount, day, "-"),
        }
    }
    (side("left.csv", &l), side("right.csv", &r))
}

#[test]
fn random_groups_respect_their_pass_gates() {
    let rules = "[[pass]]\nname = \"one\"\nreference = \"exact\"\namount = { abs = \"0.01\" }\n\
                 [[pass]]\nname = \"split\"\ncardinality = \"one_to_many\"\nreference = \"exact\"\namount = { abs = \"0.02\" }\nmax_group = 3\n\
                 [[pass]]\nname = \"batch\"\ncardinality = \"many_to_one\"\ndate = { window_days = 1 }\nmax_group = 3\n";
    let rules = Rules::from_toml_str(&format!("{SIDES}{rules}"), "rules.toml").unwrap();
    let rec = Reconciler::new(rules);
    let mut per_rule: BTreeMap<String, usize> = BTreeMap::new();
    for seed in 0..100u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(1000 + seed);
        let (l, r) = split_case(&mut rng, 30);
        let o = rec.run(&l, &r, &NoProgress).unwrap();
        let mut groups: BTreeMap<u32, (Vec<usize>, Vec<usize>, &str)> = BTreeMap::new();
        let mut ambiguous = 0;
        for (s, list) in [(0, &o.left), (1, &o.right)] {
            for (i, a) in list.iter().enumerate() {
                if a.status() == recon_core::Status::Ambiguous {
                    ambiguous += 1;
                    continue;
                }
                if let Some(m) = a.match_id() {
                    let g = groups.entry(m.get()).or_default();
                    g.2 = o.rule_name(a).unwrap();
                    if s == 0 { g.0.push(i) } else { g.1.push(i) }
                }
            }
        }
        for (id, (ls, rs, rule)) in &groups {
            *per_rule.entry(rule.to_string()).or_default() += 1;
            let sum =
                |side: &Side, rows: &[usize]| rows.iter().map(|&i| side.amount[i]).sum::<i64>();
            let diff = sum(&r, rs) - sum(&l, ls);
            let cur = l.currency[ls[0]];
            assert!(
                ls.iter().all(|&i| l.currency[i] == cur)
                    && rs.iter().all(|&i| r.currency[i] == cur)
            );
            match *rule {
                "one" => assert!(
                    ls.len() == 1 && rs.len() == 1 && diff.abs() <= 1,
                    "group {id}"
                ),
                "split" => assert!(ls.len() == 1 && (2..=3).contains(&rs.len()) && diff.abs() <= 2),
                "batch" => {
                    assert!(rs.len() == 1 && (2..=3).contains(&ls.len()) && diff == 0);
                    let d = r.date[rs[0]].unwrap();
                    assert!(ls.iter().all(|&i| (l.date[i].unwrap() - d).abs() <= 1));
                }
                other => panic!("unexpected rule {other}"),
            }
        }
        assert!(groups.len() + ambiguous > 0, "seed {seed} formed nothing");
    }
    assert_eq!(per_rule.len(), 3, "{per_rule:?}");
    assert!(per_rule.values().all(|&n| n >= 20), "{per_rule:?}");
}

/// Duplicates against the definition: a record is a duplicate when an
/// earlier record of its side has the same complete key (a record whose
/// reference is missing has no complete key). Sides of up to 3,000 records
/// drawn from a few hundred keys, so most keys repeat and the matcher's
/// filter of key hashes is both hit and missed.
#[test]
fn duplicates_agree_with_first_occurrence_by_key() {
    let roles = ["reference", "amount", "date", "currency"];
    let rules = format!(
        "[duplicates]\nleft = {roles:?}\nright = [\"amount\", \"date\"]\n[[pass]]\nname = \"p\"\nreference = \"exact\"\n"
    );
    // The sides below are built with several currencies: the left one maps
    // a currency column (a fixed one could not be part of a key).
    let sides = SIDES.replacen("currency_value = \"USD\"", "currency = \"ccy\"", 1);
    let rules = Rules::from_toml_str(&format!("{sides}{rules}"), "rules.toml").unwrap();
    let prefixes = text::normalize_prefixes(&rules.normalize.strip_prefixes);
    let rec = Reconciler::new(rules);
    for seed in 0..20u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (nl, nr) = (rng.random_range(0..3000), rng.random_range(0..3000));
        let (l, r) = (random_side(&mut rng, nl), random_side(&mut rng, nr));
        let o = rec.run(&l, &r, &NoProgress).unwrap();
        let expect = |s: &Side, with_reference: bool| -> Vec<bool> {
            let mut seen = std::collections::HashSet::new();
            (0..s.len())
                .map(|i| {
                    let reference = s.reference.get(i).map(|raw| {
                        let mut key = String::new();
                        text::normalize_reference_into(raw, &prefixes, &mut key);
                        key
                    });
                    if with_reference && reference.as_deref().is_none_or(str::is_empty) {
                        return false;
                    }
                    // Both keys hold `amount`, which is money: its currency too.
                    let key = (
                        with_reference.then_some(reference),
                        s.amount[i],
                        s.date[i],
                        s.currency[i],
                    );
                    !seen.insert(key)
                })
                .collect()
        };
        let found = |list: &[recon_core::Assignment]| -> Vec<bool> {
            list.iter()
                .map(|a| a.status() == recon_core::Status::Duplicate)
                .collect()
        };
        assert_eq!(found(&o.left), expect(&l, true), "left, seed {seed}");
        assert_eq!(found(&o.right), expect(&r, false), "right, seed {seed}");
        assert!(found(&o.left).iter().any(|&d| d) || nl < 100, "seed {seed}");
    }
}

#[test]
fn uncontested_pairs_take_their_pass_ids_in_left_order() {
    // Enough records for the matcher to split them into several chunks. Each
    // left record l<i> has one candidate, r<i>, listed in reverse order; two
    // contested left records come first in the file and a pair for the
    // second pass last.
    let n = 20_000usize;
    let mut left = String::from("c1 50 USD 5 C\nc2 50 USD 5 C\n");
    let mut right = String::from("x 50 USD 5 C\n");
    for i in 0..n {
        left.push_str(&format!("l{i} {} USD 5 R{i}\n", 100 + i));
    }
    for i in (0..n).rev() {
        right.push_str(&format!("r{i} {} USD 5 R{i}\n", 100 + i));
    }
    left.push_str("u 7 USD 5 U1\n");
    right.push_str("v 7 USD 5 U2\n");
    let (l, r) = (side("l", &left), side("r", &right));
    let rules = "[[pass]]\nname = \"ref\"\nreference = \"exact\"\n\
                 [[pass]]\nname = \"amount\"\namount = { abs = \"0\" }\ndate = { window_days = 0 }\n";
    let o = run(&l, &r, rules);
    let id = |a: &recon_core::Assignment| a.match_id().map(std::num::NonZeroU32::get);
    let n32 = n as u32;
    for i in 0..n {
        // Left row 2 + i and right row n - i hold pair i.
        let (la, ra) = (&o.left[2 + i], &o.right[n - i]);
        assert_eq!(id(la), Some(i as u32 + 1), "l{i}");
        assert_eq!(la, ra, "r{i} carries l{i}'s assignment");
        assert_eq!(la.status(), recon_core::Status::Matched);
        assert_eq!(o.rule_name(la), Some("ref"));
    }
    // The contested records come after every uncontested pair of the pass.
    for a in [&o.left[0], &o.left[1], &o.right[0]] {
        assert_eq!(id(a), Some(n32 + 1));
        assert_eq!(a.status(), recon_core::Status::Ambiguous);
    }
    // The next pass goes on from there.
    let (u, v) = (&o.left[n + 2], &o.right[n + 1]);
    assert_eq!((id(u), id(v)), (Some(n32 + 2), Some(n32 + 2)));
    assert_eq!(o.rule_name(u), Some("amount"));
}

/// `results.csv`'s rows (the writer's own number and text formatting)
/// against the NDJSON rows of the same outcome (serde's), field by field:
/// ids that need quotes, short and long ones, amounts of currencies with 0,
/// 2 and 3 decimals, negative and large, breaks with differences, a long
/// rule name, and extra columns on one side.
#[test]
fn csv_rows_carry_what_the_ndjson_rows_carry() {
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let mut make = |name: &str, n: usize| {
        let mut rows = String::new();
        for i in 0..n {
            let mut amount: i64 = rng.random_range(-50_000..50_000);
            if i % 9 == 0 {
                amount *= 1_000_000_007;
            }
            let currency = ["USD", "JPY", "BHD"][i % 3];
            let day = rng.random_range(0..3);
            let reference = rng.random_range(0..n / 2);
            let id = match i % 30 {
                0 => format!("{name},{i}"),
                1 => format!("{name}\"{i}\""),
                2 => format!("{name}{}", "9".repeat(60 + i % 20)),
                k => format!("{name}{}{i}", "x".repeat(k)),
            };
            rows.push_str(&format!("{id} {amount} {currency} {day} R{reference}\n"));
        }
        rows
    };
    let left = make("L", 3000);
    // Every other right row pays a left row exactly (the long rule's).
    let right: String = make("R", 3000)
        .lines()
        .zip(left.lines())
        .enumerate()
        .map(|(i, (own, paid))| match i % 2 {
            0 => format!("P{i} {}\n", paid.split_once(' ').unwrap().1),
            _ => format!("{own}\n"),
        })
        .collect();
    let (mut l, r) = (side("L", &left), side("R", &right));
    let memo: TextColumn = (0..l.len())
        .map(|i| match i % 4 {
            0 => None,
            1 => Some("plain".to_owned()),
            2 => Some(format!("with, comma {i}")),
            _ => Some(format!("say \"{i}\"")),
        })
        .collect::<Vec<_>>()
        .iter()
        .map(Option::as_deref)
        .collect();
    l.extra = vec![("memo".into(), memo)];
    let long_rule = "a-rule-whose-name-is-long-enough-to-push-the-status-and-rule-past-64-bytes";
    let rules = format!(
        "{SIDES}[[pass]]\nname = \"{long_rule}\"\nreference = \"exact\"\namount = {{ abs = \"0.00\" }}\n\
         [[pass]]\nname = \"near\"\nreference = \"exact\"\namount = {{ abs = \"500\" }}\ndate = {{ window_days = 2 }}\n\
         [[pass]]\nname = \"brk\"\nkind = \"break\"\nreference = \"exact\"\n"
    );
    let o = Reconciler::new(Rules::from_toml_str(&rules, "rules.toml").unwrap())
        .run(&l, &r, &NoProgress)
        .unwrap();
    let (mut csv, mut nd) = (Vec::new(), Vec::new());
    write_results_csv(&o, &l, &r, &mut csv, &StatusFilter::ALL).unwrap();
    write_results_ndjson(&o, &l, &r, &mut nd, &StatusFilter::ALL).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().ends_with(",date_diff_days,left_memo"));

    let quote = |v: &str| {
        if v.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", v.replace('"', "\"\""))
        } else {
            v.to_owned()
        }
    };
    let field = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => quote(s),
        other => other.to_string(),
    };
    let mut seen = BTreeMap::new();
    let mut rows = 0;
    for (line, json) in lines.zip(nd.split(|b| *b == b'\n').filter(|l| !l.is_empty())) {
        let j: serde_json::Value = serde_json::from_slice(json).unwrap();
        let score = j["score"]
            .as_f64()
            .map_or(String::new(), |s| format!("{s:.4}"));
        let memo = match j["side"].as_str() {
            Some("left") => field(&j["extra"]["memo"]),
            _ => String::new(),
        };
        let expected = [
            field(&j["match_id"]),
            field(&j["side"]),
            field(&j["record_id"]),
            field(&j["line"]),
            field(&j["status"]),
            field(&j["rule"]),
            score,
            field(&j["amount"]),
            field(&j["currency"]),
            field(&j["amount_diff"]),
            field(&j["date_diff_days"]),
            memo,
        ]
        .join(",");
        assert_eq!(line, expected);
        *seen
            .entry(j["status"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
        rows += 1;
    }
    assert_eq!(rows, 6000);
    for status in ["matched", "break", "unmatched"] {
        assert!(seen.get(status).copied().unwrap_or(0) > 10, "{seen:?}");
    }
    assert!(csv.contains(long_rule) && csv.contains(",-") && csv.contains("\"L,0\""));
}

/// A [`recon_core::Progress`] that counts its `cancelled` polls and answers
/// `true` only on the poll numbered `stop_at` (1-based; 0 never).
struct Canceller {
    polls: std::sync::atomic::AtomicUsize,
    stop_at: usize,
}

impl recon_core::Progress for Canceller {
    fn update(&self, _done: u64, _total: u64) {}

    fn cancelled(&self) -> bool {
        let n = self
            .polls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        n == self.stop_at
    }
}

/// A pass that would run for hours at scale (every record of one amount and
/// day, one tie of them all; an aggregate pass at its limits, ~39k subsets a
/// record) polls `cancelled` while it works, not only between
/// passes, and a run told to stop once ends `Cancelled` even when later polls
/// say go on: a pass cut short is never reported as a result.
#[test]
fn long_passes_poll_for_cancellation_and_a_stop_keeps_nothing() {
    let rows = |prefix: &str, n: usize, amount: i64| -> String {
        (0..n)
            .map(|i| format!("{prefix}{i} {amount} USD 1 R1\n"))
            .collect()
    };
    let all_equal = "[[pass]]\nname = \"tie\"\nreference = \"ignore\"\n\
                     amount = { abs = \"0.00\" }\ndate = { before = 0, after = 0 }\n";
    // 16 candidate parts of 100 each and a target of 800: every subset of
    // 2..=8 parts is summed before the exact group of 8 is known best.
    let at_limits = "[[pass]]\nname = \"split\"\ncardinality = \"one_to_many\"\n\
                     reference = \"exact\"\nmax_group = 8\nmax_candidates = 16\n";
    for (rules, left, right) in [
        (all_equal, rows("a", 300, 500), rows("x", 300, 500)),
        (at_limits, rows("a", 4, 800), rows("x", 16, 100)),
    ] {
        let (l, r) = (side("left.csv", &left), side("right.csv", &right));
        let rules = Rules::from_toml_str(&format!("{SIDES}{rules}"), "rules.toml").unwrap();
        let reconciler = Reconciler::new(rules);
        let never = Canceller {
            polls: 0.into(),
            stop_at: 0,
        };
        let outcome = reconciler.run(&l, &r, &never).unwrap();
        let polls = never.polls.into_inner();
        // Three polls outside the pass (before any work, before the pass,
        // after it), at least two inside it.
        assert!(polls >= 5, "{polls} polls: the pass does not poll");
        assert!(outcome.left.iter().any(|a| a.match_id().is_some()));
        // Stopped by the first poll inside the pass (the third); every later
        // poll says go on.
        let once = Canceller {
            polls: 0.into(),
            stop_at: 3,
        };
        let err = match reconciler.run(&l, &r, &once) {
            Ok(o) => panic!(
                "a cut-short pass was reported: {:?}",
                o.summary.left.by_status
            ),
            Err(e) => e,
        };
        assert!(matches!(err, recon_core::ReconError::Cancelled), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the reconciliation was cancelled before it finished"
        );
    }
}
