//! Loading only the roles a run's rules read ([`Rules::roles`] with
//! [`SideLoad::roles`]): the roles left out are still checked to exist in the
//! file, are never built, and the results are byte for byte those of a full load.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::fs;
use std::path::{Path, PathBuf};

use recon_core::error::InputError;
use recon_core::input::{Format, ReadOptions, SideLoad, convert_to_ipc, load_side};
use recon_core::mapping::SideMapping;
use recon_core::matcher::{NoProgress, Reconciler};
use recon_core::outcome::{Outcome, SideName};
use recon_core::output::{StatusFilter, write_results_csv};
use recon_core::rules::{Role, RoleSet, Rules};
use recon_core::side::{Side, TextColumn};
use recon_core::synth::{self, BankAmountStyle, GenOptions};

/// Both sides' mappings, shared by the hand-written cases: every text role mapped.
const SIDES: &str = r#"
[left]
id = "id"
amount = "amount"
currency_value = "EUR"
date = "date"
reference = "ref"
counterparty = "name"
description = "memo"
on_error = "quarantine"

[right]
id = "id"
amount = "amount"
currency_value = "EUR"
date = "date"
reference = "ref"
counterparty = "name"
description = "memo"
"#;

/// Records with look-alike names and memos, a repeated memo (a duplicate key
/// on description finds it) and, on the left, a bad amount to quarantine.
const LEFT: &str = "id,date,amount,ref,name,memo\n\
L1,2026-03-01,100.00,INV-1,Acme Ltd,rent march\n\
L2,2026-03-02,50.00,,Globex,fees\n\
L3,2026-03-02,50.00,,Globex,fees\n\
L4,2026-03-03,x,INV-4,Initech,bad amount\n\
L5,2026-03-04,75.00,INV-5,Umbrella,consulting april\n";

const RIGHT: &str = "id,date,amount,ref,name,memo\n\
R1,2026-03-02,100.00,inv 1,ACME LTD,march rent\n\
R2,2026-03-03,50.00,,GLOBEX,fees\n\
R3,2026-03-05,75.00,,Umbrela,april consulting\n\
R4,2026-03-05,75.00,,Other,april consulting\n";

/// `(left, right)` CSV files in a fresh directory.
fn files(left: &str, right: &str) -> (tempfile::TempDir, [PathBuf; 2]) {
    let dir = tempfile::tempdir().unwrap();
    let paths = [dir.path().join("left.csv"), dir.path().join("right.csv")];
    fs::write(&paths[0], left).unwrap();
    fs::write(&paths[1], right).unwrap();
    (dir, paths)
}

/// Loads one side building `roles`: as `recon match` does, or as the service does.
type Loader = fn(&Path, &SideMapping, RoleSet) -> Result<Side, InputError>;

fn load_csv(path: &Path, map: &SideMapping, roles: RoleSet) -> Result<Side, InputError> {
    SideLoad::new(path, map).roles(roles).load()
}

/// Through a stored Arrow IPC file, as the service loads a dataset (no
/// projection: the skipped columns are read, then not built).
fn load_stored(path: &Path, map: &SideMapping, roles: RoleSet) -> Result<Side, InputError> {
    let stored = path.with_extension("arrow");
    convert_to_ipc(
        path,
        Format::Csv,
        &ReadOptions::from_mapping(map).unwrap(),
        &stored,
    )?;
    let opts = ReadOptions {
        source: Some("stored".to_owned()),
        ..ReadOptions::default()
    };
    SideLoad::new(&stored, map)
        .format(Format::Arrow)
        .options(opts)
        .roles(roles)
        .load()
}

fn results_csv(rules: &Rules, left: &Side, right: &Side) -> (Vec<u8>, Outcome) {
    let outcome = Reconciler::new(rules.clone())
        .run(left, right, &NoProgress)
        .unwrap();
    let mut csv = Vec::new();
    write_results_csv(&outcome, left, right, &mut csv, &StatusFilter::ALL).unwrap();
    (csv, outcome)
}

/// Loads both sides with `load`, fully and with the rules' roles, checks
/// that the roles outside the set are empty and everything else is as a full
/// load builds it, and that the results and summary counts are the same.
/// Returns the sides loaded with roles.
fn check(rules: &Rules, paths: &[PathBuf; 2], load: Loader) -> [Side; 2] {
    let sides = [SideName::Left, SideName::Right];
    let full = [0, 1].map(|i| load(&paths[i], rules.mapping(sides[i]), RoleSet::ALL).unwrap());
    let some = [0, 1].map(|i| {
        let side = sides[i];
        load(&paths[i], rules.mapping(side), rules.roles(side)).unwrap()
    });
    for ((full, some), name) in full.iter().zip(&some).zip(sides) {
        let roles = rules.roles(name);
        let texts = [
            (Role::Reference, &full.reference, &some.reference),
            (Role::Counterparty, &full.counterparty, &some.counterparty),
            (Role::Description, &full.description, &some.description),
        ];
        for (role, full, some) in texts {
            if roles.contains(role) {
                assert_eq!(some, full, "{name:?} {role:?} is loaded as in full");
            } else {
                assert_eq!(some, &TextColumn::default(), "{name:?} {role:?} not built");
            }
        }
        assert_eq!(some.source, full.source);
        assert_eq!(some.id, full.id);
        assert_eq!(some.amount, full.amount);
        assert_eq!(some.currency, full.currency);
        assert_eq!(some.date, full.date);
        assert_eq!(some.line, full.line);
        assert_eq!(some.extra, full.extra);
        assert_eq!(some.rejects, full.rejects);
    }
    let (full_csv, full_out) = results_csv(rules, &full[0], &full[1]);
    let (some_csv, some_out) = results_csv(rules, &some[0], &some[1]);
    assert_eq!(
        String::from_utf8(some_csv).unwrap(),
        String::from_utf8(full_csv).unwrap()
    );
    assert_eq!(some_out.left, full_out.left);
    assert_eq!(some_out.right, full_out.right);
    assert_eq!(some_out.summary.left, full_out.summary.left);
    assert_eq!(some_out.summary.right, full_out.summary.right);
    assert_eq!(some_out.summary.rules, full_out.summary.rules);
    some
}

fn rules(passes: &str) -> Rules {
    Rules::from_toml_str(&format!("{SIDES}{passes}"), "rules.toml").unwrap()
}

#[test]
fn a_generated_case_leaves_description_unbuilt_with_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let (_, paths) = synth::write_case(
        &GenOptions {
            records: 5_000,
            seed: 11,
            bank_amounts: BankAmountStyle::Parenthesized,
        },
        dir.path(),
    )
    .unwrap();
    let rules = Rules::from_path(&paths.rules).unwrap();
    for side in [SideName::Left, SideName::Right] {
        let roles = rules.roles(side);
        assert!(roles.contains(Role::Reference) && roles.contains(Role::Counterparty));
        assert!(!roles.contains(Role::Description), "{roles:?}");
    }
    let paths = [paths.left, paths.right];
    for load in [load_csv as Loader, load_stored] {
        let [left, right] = check(&rules, &paths, load);
        assert!(left.len() > 4_000 && right.len() > 4_000);
        assert_eq!((left.description.len(), right.description.len()), (0, 0));
        assert_eq!(left.counterparty.len(), left.len());
    }
}

#[test]
fn roles_no_rule_reads_are_not_built() {
    let (_dir, paths) = files(LEFT, RIGHT);
    let rules = rules("[[pass]]\nname = \"amount\"\namount = { abs = \"0\" }\n");
    assert_eq!(rules.roles(SideName::Left), RoleSet::ALWAYS);
    for load in [load_csv as Loader, load_stored] {
        let [left, _] = check(&rules, &paths, load);
        assert_eq!(left.len(), 4, "L4 is quarantined");
        assert_eq!(left.rejects.len(), 1);
        assert_eq!(
            (left.reference.len(), left.counterparty.len()),
            (0, 0),
            "nothing reads them"
        );
    }
}

#[test]
fn roles_a_rule_reads_are_built() {
    let (_dir, paths) = files(LEFT, RIGHT);
    // Description similarity: both sides load it.
    let rules = rules(
        "[[pass]]\nname = \"memo\"\namount = { abs = \"0\" }\ndate = { window_days = 2 }\n\
         description = { similarity = \"token_set\", min = 0.9 }\n",
    );
    for load in [load_csv as Loader, load_stored] {
        let [left, right] = check(&rules, &paths, load);
        assert_eq!(left.description.get(3), Some("consulting april"));
        assert_eq!(right.description.len(), right.len());
        assert_eq!(left.counterparty.len(), 0);
    }
    // A duplicate key on the left only: the left loads description (and finds
    // L3 a copy of L2), the right does not.
    let rules = self::rules(
        "[duplicates]\nleft = [\"description\", \"amount\"]\n\
         [[pass]]\nname = \"name\"\namount = { abs = \"0\" }\ndate = { window_days = 2 }\n\
         counterparty = { similarity = \"jaro_winkler\", min = 0.8 }\n",
    );
    let [left, right] = check(&rules, &paths, load_csv);
    assert_eq!(left.description.len(), left.len());
    assert_eq!(right.description.len(), 0);
    assert_eq!(right.counterparty.get(2), Some("Umbrela"));
    let (csv, _) = results_csv(&rules, &left, &right);
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.contains("\n,left,L3,4,duplicate,"), "{csv}");
}

#[test]
fn an_unloaded_role_naming_a_missing_column_is_the_same_error() {
    // The right file has no `memo` column, and no rule reads the description.
    let right = "id,date,amount,ref,name\nR1,2026-03-02,100.00,inv 1,ACME LTD\n";
    let (_dir, paths) = files(LEFT, right);
    let rules = rules("[[pass]]\nname = \"amount\"\namount = { abs = \"0\" }\n");
    assert!(!rules.roles(SideName::Right).contains(Role::Description));

    let full = load_side(&paths[1], &rules.right).unwrap_err();
    assert!(
        matches!(&full, InputError::MissingColumn { column, .. } if column == "memo"),
        "{full}"
    );
    let expected = full.to_string();
    assert!(
        expected.contains("right.csv") && expected.contains("memo"),
        "{expected}"
    );
    for roles in [rules.roles(SideName::Right), RoleSet::EMPTY] {
        let err = SideLoad::new(&paths[1], &rules.right)
            .roles(roles)
            .load()
            .unwrap_err();
        assert_eq!(err.to_string(), expected, "{roles:?}");
        assert!(matches!(err, InputError::MissingColumn { .. }));
    }
    // Stored as the service stores it: the same error, naming the dataset.
    let roles = rules.roles(SideName::Right);
    let err = load_stored(&paths[1], &rules.right, roles).unwrap_err();
    assert!(
        matches!(&err, InputError::MissingColumn { column, file, .. }
        if column == "memo" && file == "stored"),
        "{err}"
    );
}

#[test]
fn an_unmapped_role_in_the_set_is_still_nulls() {
    let (_dir, paths) = files(LEFT, RIGHT);
    let mut rules = rules(
        "[[pass]]\nname = \"memo\"\namount = { abs = \"0\" }\n\
         description = { similarity = \"token_set\" }\n",
    );
    rules.left.description = None;
    let [left, _] = check(&rules, &paths, load_csv);
    assert_eq!(left.description.len(), left.len());
    assert!((0..left.len()).all(|i| left.description.get(i).is_none()));
}
