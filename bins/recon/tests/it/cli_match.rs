//! `recon match` and `recon gen` as a user runs them: the real binary on the
//! bundled examples and on generated cases; exit codes, files written,
//! summaries that balance, and error messages that name file, line, column
//! and value.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::within;

/// Every test here finishes well within this on a debug build.
const LIMIT: Duration = Duration::from_secs(120);

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn recon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_recon"))
        .args(args)
        .output()
        .expect("recon runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run_match(left: &Path, right: &Path, rules: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "match",
        "--left",
        left.to_str().unwrap(),
        "--right",
        right.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    recon(&args)
}

fn gen_case(dir: &Path, records: &str, seed: &str) {
    let out = recon(&[
        "gen",
        "--records",
        records,
        "--seed",
        seed,
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "gen failed: {}", text(&out.stderr));
}

/// An exact decimal string as an integer of 10^-6 units.
fn micro(amount: &str) -> i128 {
    let (neg, digits) = match amount.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, amount),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(frac.len() <= 6, "{amount}");
    let v: i128 = format!("{int}{frac:0<6}").parse().unwrap();
    if neg { -v } else { v }
}

/// Checks that `summary.json` accounts for every record of both sides: per
/// currency, counts and totals over all statuses equal the input's.
fn assert_balanced(summary: &serde_json::Value, left: u64, right: u64) {
    for (side, records) in [("left", left), ("right", right)] {
        let s = &summary[side];
        assert_eq!(s["records"].as_u64(), Some(records), "{side} records");
        let mut per_ccy: BTreeMap<String, (u64, i128)> = BTreeMap::new();
        for (_, by_ccy) in s["by_status"].as_object().unwrap() {
            for (ccy, t) in by_ccy.as_object().unwrap() {
                let e = per_ccy.entry(ccy.clone()).or_default();
                e.0 += t["count"].as_u64().unwrap();
                e.1 += micro(t["amount"].as_str().unwrap());
            }
        }
        let mut input: BTreeMap<String, (u64, i128)> = BTreeMap::new();
        for (ccy, t) in s["totals"].as_object().unwrap() {
            input.insert(
                ccy.clone(),
                (
                    t["count"].as_u64().unwrap(),
                    micro(t["amount"].as_str().unwrap()),
                ),
            );
        }
        assert_eq!(per_ccy, input, "{side} does not balance");
        assert_eq!(input.values().map(|v| v.0).sum::<u64>(), records);
    }
}

/// results.csv as (record_id, side) -> (match_id, status).
fn results(dir: &Path) -> BTreeMap<(String, String), (String, String)> {
    let body = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    let mut lines = body.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (m, s, r, st) = (
        col("match_id"),
        col("side"),
        col("record_id"),
        col("status"),
    );
    let mut map = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let key = (f[r].to_string(), f[s].to_string());
        let prev = map.insert(key.clone(), (f[m].to_string(), f[st].to_string()));
        assert!(prev.is_none(), "{key:?} appears twice");
    }
    map
}

#[test]
fn examples_reconcile_as_a_person_would() {
    within(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let ex = examples();
        let out = run_match(
            &ex.join("ledger.csv"),
            &ex.join("bank.csv"),
            &ex.join("rules.toml"),
            dir.path(),
            &[],
        );
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "stderr: {}", text(&out.stderr));
        assert!(stdout.contains("match rate"), "{stdout}");
        assert!(stdout.contains("split-payment"), "{stdout}");
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap())
                .unwrap();
        assert_balanced(&summary, 17, 16);
        assert!(!dir.path().join("results.parquet").exists());
        // The audit block names the inputs by their SHA-256 (`sha256sum`'s).
        for (key, file) in [("left_sha256", "ledger.csv"), ("right_sha256", "bank.csv")] {
            let bytes = std::fs::read(ex.join(file)).unwrap();
            assert_eq!(
                summary["audit"][key].as_str(),
                Some(recon_core::sha256_hex(&bytes).as_str()),
                "{key}"
            );
        }

        let r = results(dir.path());
        assert_eq!(r.len(), 17 + 16);
        let get = |id: &str, side: &str| r[&(id.to_string(), side.to_string())].clone();
        let status = |id: &str, side: &str| get(id, side).1;
        let group = |id: &str, side: &str| get(id, side).0;
        // Reference noise, a shifted date, a refund, a cent off, another currency.
        for (l, b) in [
            ("GL-1001", "BK-5001"),
            ("GL-1002", "BK-5002"),
            ("GL-1003", "BK-5003"),
            ("GL-1008", "BK-5007"),
            ("GL-1009", "BK-5008"),
            ("GL-1012", "BK-5010"),
            ("GL-1015", "BK-5012"),
            ("GL-1017", "BK-5016"),
            // No references: amount, date and name.
            ("GL-1013", "BK-5011"),
            ("GL-1016", "BK-5013"),
        ] {
            assert_eq!(status(l, "left"), "matched", "{l}");
            assert_eq!(status(b, "right"), "matched", "{b}");
            assert_eq!(group(l, "left"), group(b, "right"), "{l} with {b}");
        }
        // One bank line paying two ledger lines.
        assert_eq!(status("BK-5004", "right"), "matched");
        assert_eq!(group("GL-1004", "left"), group("BK-5004", "right"));
        assert_eq!(group("GL-1005", "left"), group("BK-5004", "right"));
        // A deducted charge is a break, not a match.
        assert_eq!(status("GL-1006", "left"), "break");
        assert_eq!(group("GL-1006", "left"), group("BK-5005", "right"));
        // Posted twice: the later copy is the duplicate; the first matches.
        assert_eq!(status("GL-1011", "left"), "duplicate");
        assert_eq!(status("GL-1010", "left"), "matched");
        // Not paid, unknown remitter, and a decoy with another name.
        assert_eq!(status("GL-1014", "left"), "unmatched");
        assert_eq!(status("BK-5014", "right"), "unmatched");
        assert_eq!(status("BK-5015", "right"), "unmatched");
    });
}

#[test]
fn gen_is_deterministic_and_match_writes_everything_whatever_the_threads() {
    within(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        gen_case(&a, "4000", "11");
        gen_case(&b, "4000", "11");
        for f in ["left.csv", "right.csv", "rules.toml", "truth.csv"] {
            assert_eq!(
                std::fs::read(a.join(f)).unwrap(),
                std::fs::read(b.join(f)).unwrap(),
                "{f} differs between two runs with one seed"
            );
        }
        let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count() as u64 - 1;
        let (nl, nr) = (lines(&a.join("left.csv")), lines(&a.join("right.csv")));

        let mut outputs = Vec::new();
        for threads in ["1", "2"] {
            let out_dir = dir.path().join(format!("out-{threads}"));
            let out = run_match(
                &a.join("left.csv"),
                &a.join("right.csv"),
                &a.join("rules.toml"),
                &out_dir,
                &["--parquet", "--threads", threads],
            );
            assert!(out.status.success(), "stderr: {}", text(&out.stderr));
            assert!(out_dir.join("results.parquet").metadata().unwrap().len() > 0);
            let summary: serde_json::Value =
                serde_json::from_slice(&std::fs::read(out_dir.join("summary.json")).unwrap())
                    .unwrap();
            assert_balanced(&summary, nl, nr);
            assert_eq!(results(&out_dir).len() as u64, nl + nr);
            assert!(!out_dir.join("rejects_left.csv").exists());
            outputs.push(std::fs::read(out_dir.join("results.csv")).unwrap());
        }
        assert!(
            outputs[0] == outputs[1],
            "results.csv differs between 1 and 2 threads"
        );
    });
}

/// A copy of the examples in a temporary directory, with `edit` applied to
/// the ledger's text.
fn edited_examples(edit: impl FnOnce(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ex = examples();
    for f in ["ledger.csv", "bank.csv", "rules.toml"] {
        std::fs::copy(ex.join(f), dir.path().join(f)).unwrap();
    }
    let ledger = std::fs::read_to_string(dir.path().join("ledger.csv")).unwrap();
    std::fs::write(dir.path().join("ledger.csv"), edit(ledger)).unwrap();
    dir
}

#[test]
fn a_bad_amount_names_file_line_column_and_value_and_exits_3() {
    within(LIMIT, || {
        let dir = edited_examples(|s| s.replacen("4310.25", "43l0.25", 1));
        let d = dir.path();
        let out = run_match(
            &d.join("ledger.csv"),
            &d.join("bank.csv"),
            &d.join("rules.toml"),
            &d.join("out"),
            &[],
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "stderr: {err}");
        for part in ["ledger.csv", "line 4", "amount", "43l0.25"] {
            assert!(err.contains(part), "{part:?} not in {err}");
        }
        assert!(!d.join("out").join("results.csv").exists());
    });
}

#[test]
fn quarantined_rows_go_to_a_rejects_file_and_are_counted() {
    within(LIMIT, || {
        let dir = edited_examples(|s| s.replacen("2026-03-10,5600.00", "2026-13-10,5600.00", 1));
        let d = dir.path();
        let rules = std::fs::read_to_string(d.join("rules.toml")).unwrap();
        let rules = rules.replacen(
            "description = \"memo\"",
            "description = \"memo\"\non_error = \"quarantine\"",
            1,
        );
        std::fs::write(d.join("rules.toml"), rules).unwrap();
        let out = run_match(
            &d.join("ledger.csv"),
            &d.join("bank.csv"),
            &d.join("rules.toml"),
            &d.join("out"),
            &[],
        );
        assert!(out.status.success(), "stderr: {}", text(&out.stderr));
        let rejects = std::fs::read_to_string(d.join("out").join("rejects_left.csv")).unwrap();
        assert_eq!(rejects.lines().count(), 2, "{rejects}");
        assert!(rejects.contains("2026-13-10"), "{rejects}");
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("out").join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["left"]["rejects"].as_u64(), Some(1));
        assert_balanced(&summary, 16, 16);
        assert!(text(&out.stdout).contains("1 left rows quarantined"));

        // A later run with no bad rows (and --parquet, then without) leaves
        // no rejects file, nor a results.parquet it did not write.
        std::fs::copy(examples().join("ledger.csv"), d.join("ledger.csv")).unwrap();
        let again = |extra: &[&str]| {
            let out = run_match(
                &d.join("ledger.csv"),
                &d.join("bank.csv"),
                &d.join("rules.toml"),
                &d.join("out"),
                extra,
            );
            assert!(out.status.success(), "stderr: {}", text(&out.stderr));
            let mut names: Vec<String> = std::fs::read_dir(d.join("out"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            again(&["--parquet"]),
            ["results.csv", "results.parquet", "summary.json"]
        );
        assert_eq!(again(&[]), ["results.csv", "summary.json"]);
    });
}

#[test]
fn a_missing_input_file_exits_3_naming_it() {
    within(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let ex = examples();
        let missing = dir.path().join("no-such-ledger.csv");
        let out = run_match(
            &missing,
            &ex.join("bank.csv"),
            &ex.join("rules.toml"),
            &dir.path().join("out"),
            &[],
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "stderr: {err}");
        assert!(err.contains("no-such-ledger.csv"), "{err}");
        // The reason once, not again as the error's source.
        assert_eq!(err.matches("os error").count(), 1, "{err}");
    });
}

#[test]
fn an_out_that_is_a_file_fails_before_the_inputs_are_read() {
    within(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let ex = examples();
        let file = dir.path().join("results");
        std::fs::write(&file, "kept\n").unwrap();
        // The left file is missing too: the --out error comes first.
        let out = run_match(
            &dir.path().join("no-such-ledger.csv"),
            &ex.join("bank.csv"),
            &ex.join("rules.toml"),
            &file,
            &[],
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "stderr: {err}");
        assert!(err.contains("exists and is not a directory"), "{err}");
        assert!(err.contains(file.to_str().unwrap()), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept\n");
    });
}

/// An input that is also one of the files a run writes or removes in
/// `--out` (an export saved as `results.csv`, a rules file called
/// `summary.json`, a hard link) is refused before anything is written, so
/// the run never replaces or deletes its own input.
#[test]
fn an_input_among_the_outputs_is_refused_and_kept() {
    within(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let ex = examples();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let bank = std::fs::read(ex.join("bank.csv")).unwrap();
        for (name, linked) in [("results.csv", false), ("rejects_right.csv", true)] {
            let kept = out.join(name);
            let right = if linked {
                // Under another name, the same file.
                let right = dir.path().join("bank.csv");
                std::fs::write(&right, &bank).unwrap();
                std::fs::hard_link(&right, &kept).unwrap();
                right
            } else {
                std::fs::write(&kept, &bank).unwrap();
                kept.clone()
            };
            let res = run_match(
                &ex.join("ledger.csv"),
                &right,
                &ex.join("rules.toml"),
                &out,
                &[],
            );
            let err = text(&res.stderr);
            assert_eq!(res.status.code(), Some(2), "stderr: {err}");
            assert!(
                err.contains(&format!("holds the input {} as {name}", right.display())),
                "{err}"
            );
            assert_eq!(std::fs::read(&kept).unwrap(), bank);
            assert!(!out.join("summary.json").exists());
            std::fs::remove_file(&kept).unwrap();
        }
        // Elsewhere in the same directory, an input is no output.
        let right = out.join("bank.csv");
        std::fs::write(&right, &bank).unwrap();
        let res = run_match(
            &ex.join("ledger.csv"),
            &right,
            &ex.join("rules.toml"),
            &out,
            &[],
        );
        assert_eq!(res.status.code(), Some(0), "stderr: {}", text(&res.stderr));
        assert_eq!(std::fs::read(&right).unwrap(), bank);
    });
}

#[test]
fn a_bad_rules_file_exits_2_naming_line_and_value() {
    within(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let ex = examples();
        let rules = std::fs::read_to_string(ex.join("rules.toml"))
            .unwrap()
            .replacen("abs = \"0.01\"", "abs = \"-0.01\"", 1);
        let line = rules
            .lines()
            .position(|l| l.contains("-0.01"))
            .map(|i| i + 1)
            .unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, rules).unwrap();
        let out = run_match(
            &ex.join("ledger.csv"),
            &ex.join("bank.csv"),
            &path,
            &dir.path().join("out"),
            &[],
        );
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "stderr: {err}");
        assert!(err.contains("rules.toml"), "{err}");
        assert!(
            err.contains(&format!(":{line}:")),
            "line {line} not in {err}"
        );
        assert!(err.contains("-0.01"), "{err}");
    });
}

#[test]
fn help_documents_the_exit_codes() {
    let out = recon(&["match", "--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.contains("Exit codes"), "{help}");
    assert!(
        help.contains("--parquet") && help.contains("--threads"),
        "{help}"
    );
    // Every column results.csv has, in its order.
    let columns = "match_id, side, record_id, line, status, rule, score, amount, currency, amount_diff, date_diff_days";
    assert!(
        help.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains(columns),
        "{help}"
    );
}

/// `--threads` is bounded: a typo of 100000 would start as many threads.
#[test]
fn threads_out_of_range_exit_2() {
    for n in ["0", "1025", "100000"] {
        let out = recon(&[
            "match",
            "--left",
            "l",
            "--right",
            "r",
            "--rules",
            "x",
            "--out",
            "o",
            "--threads",
            n,
        ]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{n}: {err}");
        assert!(
            err.contains("--threads") && err.contains("1..=1024"),
            "{n}: {err}"
        );
    }
}

#[test]
fn gen_into_an_unwritable_place_fails_naming_it() {
    within(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"not a directory").unwrap();
        let target = file.join("case");
        let out = recon(&["gen", "--records", "10", "--out", target.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "stderr: {err}");
        assert!(err.contains("a-file"), "{err}");
        // An --out that is itself a file is a usage error, as for `match`.
        let out = recon(&["gen", "--records", "10", "--out", file.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "stderr: {err}");
        assert!(err.contains("exists and is not a directory"), "{err}");
        let help = text(&recon(&["gen", "--help"]).stdout);
        assert!(help.contains("Exit codes"), "{help}");
    });
}

/// A record count out of range is a usage error (exit 2) naming the range,
/// before anything is allocated or written; `_` may group digits.
#[test]
fn gen_refuses_a_record_count_out_of_range() {
    within(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("case");
        for count in ["0", "5000000000", "18446744073709551615"] {
            let out = recon(&["gen", "--records", count, "--out", target.to_str().unwrap()]);
            let err = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{count}: {err}");
            assert!(err.contains("is not in 1..=20000000"), "{count}: {err}");
        }
        assert!(!target.exists(), "nothing written");
        let out = recon(&["gen", "--records", "1_0", "--out", target.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    });
}

/// Output files are written whole or not at all: a run replaces the earlier
/// files (a new file renamed into place, not the old one rewritten) and
/// leaves no partial file behind; a run that cannot put results.csv in place
/// fails naming it, removes its partial file and leaves the other outputs of
/// the earlier run as they were.
#[test]
fn outputs_replace_earlier_ones_whole_or_not_at_all() {
    within(LIMIT, || {
        let dir = tempfile::tempdir().unwrap();
        let ex = examples();
        let run = |out: &Path| {
            run_match(
                &ex.join("ledger.csv"),
                &ex.join("bank.csv"),
                &ex.join("rules.toml"),
                out,
                &[],
            )
        };
        let listing = |out: &Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(out)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };

        // The earlier results.csv is also reachable as kept.csv (a hard
        // link): a file rewritten in place would change both names, a file
        // replaced whole leaves the earlier one as it was.
        std::fs::write(dir.path().join("kept.csv"), "earlier\n").unwrap();
        std::fs::hard_link(dir.path().join("kept.csv"), dir.path().join("results.csv")).unwrap();
        let out = run(dir.path());
        assert!(out.status.success(), "stderr: {}", text(&out.stderr));
        assert_eq!(
            listing(dir.path()),
            ["kept.csv", "results.csv", "summary.json"]
        );
        let csv = std::fs::read_to_string(dir.path().join("results.csv")).unwrap();
        assert!(csv.starts_with("match_id,"), "{csv}");
        assert_eq!(csv.lines().count(), 1 + 17 + 16);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("kept.csv")).unwrap(),
            "earlier\n"
        );

        // results.csv cannot be replaced (a directory stands in its place).
        let blocked = tempfile::tempdir().unwrap();
        std::fs::create_dir(blocked.path().join("results.csv")).unwrap();
        std::fs::write(blocked.path().join("summary.json"), "earlier\n").unwrap();
        let out = run(blocked.path());
        assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains("results.csv"), "{err}");
        assert_eq!(listing(blocked.path()), ["results.csv", "summary.json"]);
        assert_eq!(
            std::fs::read_to_string(blocked.path().join("summary.json")).unwrap(),
            "earlier\n"
        );
    });
}
