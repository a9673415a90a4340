//! What a run produces: one [`Assignment`] per input record of both sides, and a
//! serializable [`Summary`] with counts, exact totals, per-rule counts and an
//! audit block. [`Summary::build`] also checks conservation: every record is
//! accounted for once and, per side and currency, the totals over all statuses
//! equal the input totals.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;

use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::money::Currency;
use crate::rules::{PassKind, Rules};
use crate::side::Side;

/// How a record ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Paired within every gate of a match pass.
    Matched,
    /// Paired by identity in a break pass; amount and/or date differ.
    Break,
    /// Equally good candidates: a suggestion for a person, not a match.
    Ambiguous,
    /// No pass paired it.
    Unmatched,
    /// A later copy of an earlier record of the same side (same duplicate key).
    Duplicate,
}

impl Status {
    /// Every status, in report order.
    pub const ALL: [Status; 5] = [
        Status::Matched,
        Status::Break,
        Status::Ambiguous,
        Status::Unmatched,
        Status::Duplicate,
    ];

    /// The lowercase name used in every output.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Matched => "matched",
            Status::Break => "break",
            Status::Ambiguous => "ambiguous",
            Status::Unmatched => "unmatched",
            Status::Duplicate => "duplicate",
        }
    }

    /// Parses a lowercase status name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl std::str::FromStr for Status {
    type Err = UnknownStatus;

    /// As [`Status::parse`].
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::parse(name).ok_or_else(|| UnknownStatus(name.to_owned()))
    }
}

/// A name that is no [`Status`] (they are lowercase: `matched`, `break`,
/// `ambiguous`, `unmatched`, `duplicate`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}; expected matched, break, ambiguous, unmatched or duplicate")]
pub struct UnknownStatus(pub String);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which side a record is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SideName {
    /// The left file (e.g. the ledger).
    Left,
    /// The right file (e.g. the bank statement).
    Right,
}

impl SideName {
    /// `"left"` or `"right"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SideName::Left => "left",
            SideName::Right => "right",
        }
    }
}

impl fmt::Display for SideName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result for one input record: its status and, for a grouped record,
/// the group's id, rule, score and differences.
///
/// 32 bytes (a run keeps one per input record of both sides): the optional
/// numbers are stored plainly and a bit says whether each is there, where
/// `Option<f64>` and `Option<i64>` would take 16 bytes each. Read it through
/// its accessors.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    /// The score's `f64` bits; 0 when absent.
    score_bits: u64,
    /// 0 when absent.
    amount_diff: i64,
    match_id: Option<NonZeroU32>,
    /// 0 when absent.
    date_diff_days: i32,
    /// 0 when absent.
    rule: u16,
    status: Status,
    /// Which of the optional fields are there ([`Assignment::HAS_RULE`], ...).
    present: u8,
}

// One per input record of both sides: keep it this small.
const _: () = assert!(std::mem::size_of::<Assignment>() == 32);

impl Assignment {
    const HAS_RULE: u8 = 1;
    const HAS_SCORE: u8 = 2;
    const HAS_AMOUNT_DIFF: u8 = 4;
    const HAS_DATE_DIFF: u8 = 8;

    /// An unmatched record.
    pub const UNMATCHED: Assignment = Assignment::ungrouped(Status::Unmatched);

    /// A record flagged as a duplicate within its side.
    pub const DUPLICATE: Assignment = Assignment::ungrouped(Status::Duplicate);

    const fn ungrouped(status: Status) -> Self {
        Self {
            score_bits: 0,
            amount_diff: 0,
            match_id: None,
            date_diff_days: 0,
            rule: 0,
            status,
            present: 0,
        }
    }

    /// A record of match group `match_id`, grouped by pass `rule` with
    /// `status`, the group's `score`, amount difference (`right total - left
    /// total`, minor units) and date difference in days (`right - left`).
    pub const fn grouped(
        match_id: Option<NonZeroU32>,
        status: Status,
        rule: Option<u16>,
        score: Option<f64>,
        amount_diff: Option<i64>,
        date_diff_days: Option<i32>,
    ) -> Self {
        let mut a = Self::ungrouped(status);
        a.match_id = match_id;
        if let Some(r) = rule {
            a.rule = r;
            a.present |= Self::HAS_RULE;
        }
        if let Some(s) = score {
            a.score_bits = s.to_bits();
            a.present |= Self::HAS_SCORE;
        }
        if let Some(d) = amount_diff {
            a.amount_diff = d;
            a.present |= Self::HAS_AMOUNT_DIFF;
        }
        if let Some(d) = date_diff_days {
            a.date_diff_days = d;
            a.present |= Self::HAS_DATE_DIFF;
        }
        a
    }

    /// The match group (shared by every record of the group); `None` for
    /// unmatched and duplicate records.
    pub const fn match_id(&self) -> Option<NonZeroU32> {
        self.match_id
    }

    /// The record's status.
    pub const fn status(&self) -> Status {
        self.status
    }

    /// Index into [`Rules::passes`] of the pass that grouped it.
    pub const fn rule(&self) -> Option<u16> {
        if self.present & Self::HAS_RULE != 0 {
            Some(self.rule)
        } else {
            None
        }
    }

    /// Similarity score in `[0, 1]` of the group (1 when the pass scores nothing).
    pub const fn score(&self) -> Option<f64> {
        if self.present & Self::HAS_SCORE != 0 {
            Some(f64::from_bits(self.score_bits))
        } else {
            None
        }
    }

    /// Group amount difference `right total - left total`, minor units.
    pub const fn amount_diff(&self) -> Option<i64> {
        if self.present & Self::HAS_AMOUNT_DIFF != 0 {
            Some(self.amount_diff)
        } else {
            None
        }
    }

    /// Date difference `right - left` in days (for the single record of an
    /// aggregate group: the largest in magnitude among its parts).
    pub const fn date_diff_days(&self) -> Option<i32> {
        if self.present & Self::HAS_DATE_DIFF != 0 {
            Some(self.date_diff_days)
        } else {
            None
        }
    }
}

impl fmt::Debug for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assignment")
            .field("match_id", &self.match_id())
            .field("status", &self.status())
            .field("rule", &self.rule())
            .field("score", &self.score())
            .field("amount_diff", &self.amount_diff())
            .field("date_diff_days", &self.date_diff_days())
            .finish()
    }
}

/// Facts about a run that the caller knows: ids and input digests for the audit block.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// Identifier of this run (e.g. a UUID or job id).
    pub run_id: String,
    /// Lowercase hex SHA-256 of the left input file, when known.
    pub left_sha256: Option<String>,
    /// Lowercase hex SHA-256 of the right input file, when known.
    pub right_sha256: Option<String>,
}

/// Lowercase hex SHA-256 of `bytes`, for [`RunInfo`].
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lowercase hex SHA-256 of everything `reader` yields.
///
/// # Errors
/// Any I/O error of `reader`.
pub fn sha256_reader(mut reader: impl std::io::Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A count and an exact total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Total {
    /// Records.
    pub count: u64,
    /// Sum of their amounts as an exact decimal string in major units.
    pub amount: String,
}

/// Counts and totals of one side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SideSummary {
    /// The side's source (file name).
    pub source: String,
    /// Accepted input records.
    pub records: u64,
    /// Rows refused by the input layer under `on_error = "quarantine"`.
    pub rejects: u64,
    /// Matched records / records (0 when the side is empty).
    pub match_rate: f64,
    /// Input totals per currency.
    pub totals: BTreeMap<String, Total>,
    /// Totals per status, then per currency; every status is present.
    pub by_status: BTreeMap<Status, BTreeMap<String, Total>>,
}

/// What one pass of the cascade did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSummary {
    /// The pass name.
    pub name: String,
    /// `match` or `break`.
    pub kind: &'static str,
    /// Match groups it formed with status `matched` or `break`.
    pub groups: u64,
    /// Groups it reported as `ambiguous`.
    pub ambiguous_groups: u64,
    /// Left records it grouped (any status).
    pub left: u64,
    /// Right records it grouped (any status).
    pub right: u64,
}

/// Wall-clock time spent per stage, in milliseconds.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Timings {
    /// Preparing keys and detecting duplicates.
    pub prepare_ms: f64,
    /// Per pass, in cascade order.
    pub passes_ms: Vec<f64>,
    /// The whole `run`.
    pub total_ms: f64,
}

/// The audit block: the only part of the summary that differs between two
/// runs of the same inputs and rules.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Audit {
    /// The caller's run id.
    pub run_id: String,
    /// recon-core's version.
    pub engine_version: &'static str,
    /// SHA-256 of the rules text.
    pub rules_sha256: String,
    /// SHA-256 of the left input, when the caller gave it.
    pub left_sha256: Option<String>,
    /// SHA-256 of the right input, when the caller gave it.
    pub right_sha256: Option<String>,
    /// Time per stage.
    pub timings: Timings,
}

/// The run's summary, written as `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The rule set's name.
    pub name: Option<String>,
    /// Left side counts and totals.
    pub left: SideSummary,
    /// Right side counts and totals.
    pub right: SideSummary,
    /// Matched records of both sides / records of both sides.
    pub match_rate: f64,
    /// Per pass, in cascade order.
    pub rules: Vec<RuleSummary>,
    /// Run id, versions, digests, timings.
    pub audit: Audit,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconError {
    /// A side's columns do not all have one entry per record.
    #[error("{source_name}: column `{column}` has {found} entries, expected {expected}")]
    MalformedSide {
        /// The side's source.
        source_name: String,
        /// The short column.
        column: &'static str,
        /// Records (length of `amount`).
        expected: usize,
        /// Entries in `column`.
        found: usize,
    },
    /// Rules built or changed in code break what matching relies on (what
    /// [`crate::Rules::from_toml_str`] checks of a file).
    #[error("invalid rules: {at}: {reason}")]
    InvalidRules {
        /// Where: `pass "name"` or `rules`.
        at: String,
        /// What must hold.
        reason: String,
    },
    /// A side has more records than the matcher indexes (u32).
    #[error("{source_name}: {records} records is more than the matcher supports")]
    TooManyRecords {
        /// The side's source.
        source_name: String,
        /// How many it has.
        records: usize,
    },
    /// A record's amount is beyond [`crate::money::MAX_MINOR`] either way (a
    /// side built by hand: loading never yields one).
    #[error(
        "{source_name} line {line}: amount {amount} (minor units) is out of the amount range (at most {} either way)",
        crate::money::MAX_MINOR
    )]
    AmountOutOfRange {
        /// The side's source.
        source_name: String,
        /// The record's line.
        line: u64,
        /// Its amount, in minor units.
        amount: i64,
    },
    /// The run's [`crate::matcher::Progress::cancelled`] answered `true`: the
    /// run stopped where it was and nothing of it is kept.
    #[error("the reconciliation was cancelled before it finished")]
    Cancelled,
    /// The results do not account for the inputs: a bug, reported instead of a
    /// quietly wrong result.
    #[error("conservation violated on the {side} side ({currency}): {detail}")]
    Conservation {
        /// Which side.
        side: SideName,
        /// Which currency (`"*"` when not currency-specific).
        currency: String,
        /// What did not add up.
        detail: String,
    },
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// One entry per left record, in input order.
    pub left: Vec<Assignment>,
    /// One entry per right record, in input order.
    pub right: Vec<Assignment>,
    /// Pass names, indexed by [`Assignment::rule`].
    pub rule_names: Vec<String>,
    /// Counts, totals and audit.
    pub summary: Summary,
}

impl Outcome {
    /// The assignments of `side`.
    pub fn side(&self, side: SideName) -> &[Assignment] {
        match side {
            SideName::Left => &self.left,
            SideName::Right => &self.right,
        }
    }

    /// The pass name of an assignment's rule.
    pub fn rule_name(&self, a: &Assignment) -> Option<&str> {
        a.rule()
            .and_then(|r| self.rule_names.get(usize::from(r)))
            .map(String::as_str)
    }
}

/// Formats an `i128` of minor units as an exact decimal.
pub(crate) fn format_total(units: i128, currency: Currency) -> String {
    let scale = u32::from(currency.minor_units());
    let sign = if units < 0 { "-" } else { "" };
    let m = units.unsigned_abs();
    if scale == 0 {
        return format!("{sign}{m}");
    }
    let p = 10u128.pow(scale);
    format!("{sign}{}.{:0w$}", m / p, m % p, w = scale as usize)
}

type Sums = BTreeMap<Currency, (u64, i128)>;

fn totals(sums: &Sums) -> BTreeMap<String, Total> {
    sums.iter()
        .map(|(c, (n, s))| {
            (
                c.as_str().to_string(),
                Total {
                    count: *n,
                    amount: format_total(*s, *c),
                },
            )
        })
        .collect()
}

/// Records a parallel piece of [`side_summary`] adds up.
const TALLY_ROWS: usize = 1 << 16;

/// One currency's records of a [`Tally`]: (count, sum) of the input and
/// per status (by `Status as usize`).
#[derive(Debug, Clone)]
struct CurrencyTally {
    currency: Currency,
    input: (u64, i128),
    by_status: [(u64, i128); 5],
}

/// What some records of a side add up to (see [`side_summary`]).
#[derive(Debug, Clone, Default)]
struct Tally {
    /// Currencies in order of first appearance (a short list with a linear
    /// scan beats a map lookup per record: files hold a few currencies).
    currencies: Vec<CurrencyTally>,
    matched: u64,
    /// Records per pass, by rule index.
    per_rule: Vec<u64>,
}

impl Tally {
    fn new(rules: usize) -> Self {
        Self {
            per_rule: vec![0; rules],
            ..Self::default()
        }
    }

    fn slot(&mut self, currency: Currency) -> &mut CurrencyTally {
        let k = match self.currencies.iter().position(|c| c.currency == currency) {
            Some(k) => k,
            None => {
                self.currencies.push(CurrencyTally {
                    currency,
                    input: (0, 0),
                    by_status: [(0, 0); 5],
                });
                self.currencies.len() - 1
            }
        };
        &mut self.currencies[k]
    }

    fn add(&mut self, currency: Currency, amount: i64, a: &Assignment) {
        let status = a.status();
        if status == Status::Matched {
            self.matched += 1;
        }
        if let Some(n) = a.rule().and_then(|r| self.per_rule.get_mut(usize::from(r))) {
            *n += 1;
        }
        let amount = i128::from(amount);
        let slot = self.slot(currency);
        slot.input.0 += 1;
        slot.input.1 += amount;
        let e = &mut slot.by_status[status as usize];
        e.0 += 1;
        e.1 += amount;
    }

    fn merge(&mut self, other: &Tally) {
        self.matched += other.matched;
        for (n, m) in self.per_rule.iter_mut().zip(&other.per_rule) {
            *n += m;
        }
        for theirs in &other.currencies {
            let mine = self.slot(theirs.currency);
            mine.input.0 += theirs.input.0;
            mine.input.1 += theirs.input.1;
            for (e, o) in mine.by_status.iter_mut().zip(&theirs.by_status) {
                e.0 += o.0;
                e.1 += o.1;
            }
        }
    }
}

/// A side's summary, with its records per pass (by rule index, `rules`
/// passes) and its matched records. Pieces of [`TALLY_ROWS`] records add up
/// in parallel; the first record (in input order) whose status and match id
/// disagree is the one reported.
fn side_summary(
    which: SideName,
    side: &Side,
    assigned: &[Assignment],
    rules: usize,
) -> Result<(SideSummary, Vec<u64>, u64), ReconError> {
    if assigned.len() != side.len() {
        return Err(ReconError::Conservation {
            side: which,
            currency: "*".into(),
            detail: format!("{} results for {} records", assigned.len(), side.len()),
        });
    }
    let pieces: Vec<Result<Tally, ReconError>> = assigned
        .par_chunks(TALLY_ROWS)
        .enumerate()
        .map(|(c, piece)| {
            let mut tally = Tally::new(rules);
            for (j, a) in piece.iter().enumerate() {
                let i = c * TALLY_ROWS + j;
                let grouped = matches!(
                    a.status(),
                    Status::Matched | Status::Break | Status::Ambiguous
                );
                if grouped != a.match_id().is_some() {
                    return Err(ReconError::Conservation {
                        side: which,
                        currency: "*".into(),
                        detail: format!(
                            "record {} has status {} and match id {:?}",
                            i,
                            a.status(),
                            a.match_id()
                        ),
                    });
                }
                tally.add(side.currency[i], side.amount[i], a);
            }
            Ok(tally)
        })
        .collect();
    let mut tally = Tally::new(rules);
    for piece in pieces {
        tally.merge(&piece?);
    }
    let input: Sums = tally
        .currencies
        .iter()
        .map(|c| (c.currency, c.input))
        .collect();
    let mut per: BTreeMap<Status, Sums> = Status::ALL.iter().map(|&s| (s, Sums::new())).collect();
    for c in &tally.currencies {
        for (st, &(n, sum)) in Status::ALL.iter().zip(&c.by_status) {
            if n > 0
                && let Some(m) = per.get_mut(st)
            {
                m.insert(c.currency, (n, sum));
            }
        }
    }
    let mut folded: Sums = BTreeMap::new();
    for sums in per.values() {
        for (c, (n, s)) in sums {
            let e = folded.entry(*c).or_default();
            e.0 += n;
            e.1 += s;
        }
    }
    if folded != input {
        let currency = input
            .iter()
            .find(|(c, v)| folded.get(c) != Some(v))
            .map_or_else(|| "*".to_string(), |(c, _)| c.to_string());
        return Err(ReconError::Conservation {
            side: which,
            currency,
            detail: format!("input {input:?} but results {folded:?}"),
        });
    }
    let records = side.len() as u64;
    let summary = SideSummary {
        source: side.source.clone(),
        records,
        rejects: side.rejects.len() as u64,
        match_rate: if records == 0 {
            0.0
        } else {
            tally.matched as f64 / records as f64
        },
        totals: totals(&input),
        by_status: per.iter().map(|(s, sums)| (*s, totals(sums))).collect(),
    };
    Ok((summary, tally.per_rule, tally.matched))
}

/// The largest match id either side was given (0 when none was).
fn max_match_id(left: &[Assignment], right: &[Assignment]) -> usize {
    let max = |list: &[Assignment]| {
        list.par_iter()
            .with_min_len(TALLY_ROWS)
            .filter_map(|a| a.match_id())
            .map(|m| m.get() as usize)
            .max()
            .unwrap_or(0)
    };
    let (l, r) = rayon::join(|| max(left), || max(right));
    l.max(r)
}

/// Match id ranges [`check_groups`] checks in parallel. Fixed, so which
/// error is reported does not depend on the thread count; each range scans
/// every record but keeps a table of only its own groups (records reach the
/// groups in random order, and a smaller table misses cache less). Two: each
/// more range is one more pass over every assignment, and at 1M records a
/// side four took the summary from 24 to 31 ms.
const GROUP_RANGES: usize = 2;

/// Groups and ambiguous groups per pass, by rule index.
type GroupCounts = Vec<(u64, u64)>;

/// Checks every group: it has records on both sides, one status and one
/// rule, and (for `matched` and `break`) the `amount_diff` its records carry
/// is the right total minus the left total of the group. Counts each pass's
/// groups (`rules` passes) on the way.
fn check_groups(
    left: &Side,
    right: &Side,
    assigned: (&[Assignment], &[Assignment]),
    rules: usize,
) -> Result<GroupCounts, ReconError> {
    let max = max_match_id(assigned.0, assigned.1);
    let width = (max + 1).div_ceil(GROUP_RANGES).max(1);
    let checked: Vec<Result<GroupCounts, ReconError>> = (0..GROUP_RANGES)
        .into_par_iter()
        .map(|k| {
            check_group_range(
                left,
                right,
                assigned,
                k * width..((k + 1) * width).min(max + 1),
                rules,
            )
        })
        .collect();
    let mut counts = vec![(0, 0); rules];
    for range in checked {
        for (n, m) in counts.iter_mut().zip(range?) {
            n.0 += m.0;
            n.1 += m.1;
        }
    }
    Ok(counts)
}

/// One group's records so far, in 32 bytes: the table of a range of groups
/// is read and written at random, so the smaller it is the less it misses
/// cache (with `i128` and `Option` fields it took 64).
#[derive(Clone, Copy, Default)]
struct GroupAcc {
    /// The group's right total minus its left total, as the two halves of
    /// an `i128` (kept apart so the struct needs no 16-byte alignment).
    sum_lo: u64,
    sum_hi: u64,
    /// The first record's `amount_diff` (see `has_diff`).
    diff: i64,
    /// Records seen per side, saturating (only "none" matters).
    left: u8,
    right: u8,
    /// The first record's status plus one; 0 before any record.
    status: u8,
    /// Whether the first record has a rule and an `amount_diff`.
    has_rule: bool,
    has_diff: bool,
    rule: u16,
}

const _: () = assert!(std::mem::size_of::<GroupAcc>() == 32);

impl GroupAcc {
    fn add_amount(&mut self, amount: i128) {
        let sum = (i128::from(self.sum_hi as i64) << 64) + i128::from(self.sum_lo) + amount;
        self.sum_lo = sum as u64;
        self.sum_hi = (sum >> 64) as u64;
    }

    fn sum(&self) -> i128 {
        (i128::from(self.sum_hi as i64) << 64) + i128::from(self.sum_lo)
    }
}

/// [`check_groups`] for the groups with ids in `ids`.
fn check_group_range(
    left: &Side,
    right: &Side,
    assigned: (&[Assignment], &[Assignment]),
    ids: std::ops::Range<usize>,
    rules: usize,
) -> Result<GroupCounts, ReconError> {
    let mut groups = vec![GroupAcc::default(); ids.len()];
    let broken = |side: SideName, id: usize, detail: &str| ReconError::Conservation {
        side,
        currency: "*".into(),
        detail: format!("match group {id}: {detail}"),
    };
    for (which, side, list) in [
        (SideName::Left, left, assigned.0),
        (SideName::Right, right, assigned.1),
    ] {
        for (i, a) in list.iter().enumerate() {
            let Some(m) = a.match_id() else { continue };
            let id = m.get() as usize;
            if !ids.contains(&id) {
                continue;
            }
            let g = &mut groups[id - ids.start];
            let amount = i128::from(side.amount[i]);
            match which {
                SideName::Left => {
                    g.left = g.left.saturating_add(1);
                    g.add_amount(-amount);
                }
                SideName::Right => {
                    g.right = g.right.saturating_add(1);
                    g.add_amount(amount);
                }
            }
            let (status, rule, diff) = (a.status(), a.rule(), a.amount_diff());
            if g.status == 0 {
                g.status = status as u8 + 1;
                g.has_rule = rule.is_some();
                g.rule = rule.unwrap_or(0);
                g.has_diff = diff.is_some();
                g.diff = diff.unwrap_or(0);
                continue;
            }
            let first_rule = g.has_rule.then_some(g.rule);
            if g.status != status as u8 + 1 || first_rule != rule {
                return Err(broken(which, id, "records disagree on status or rule"));
            }
            if status != Status::Ambiguous && g.has_diff.then_some(g.diff) != diff {
                return Err(broken(which, id, "records disagree on amount_diff"));
            }
        }
    }
    let mut counts = vec![(0, 0); rules];
    for (id, g) in ids.zip(&groups) {
        if g.status == 0 {
            continue;
        }
        if g.left == 0 || g.right == 0 {
            return Err(broken(SideName::Left, id, "a group needs both sides"));
        }
        let ambiguous = g.status == Status::Ambiguous as u8 + 1;
        let diff = g.has_diff.then_some(g.diff);
        if !ambiguous && diff.map(i128::from) != Some(g.sum()) {
            return Err(broken(
                SideName::Left,
                id,
                &format!("amount_diff {diff:?} but the records differ by {}", g.sum()),
            ));
        }
        if let Some(n) = g
            .has_rule
            .then(|| counts.get_mut(usize::from(g.rule)))
            .flatten()
        {
            if ambiguous {
                n.1 += 1;
            } else {
                n.0 += 1;
            }
        }
    }
    Ok(counts)
}

impl Summary {
    /// Builds the summary of a finished run and checks conservation.
    ///
    /// # Errors
    /// [`ReconError::Conservation`] when a side's results do not cover each
    /// record exactly once, a grouped status lacks a match id (or the reverse),
    /// or per-currency totals over all statuses differ from the input totals.
    pub fn build(
        rules: &Rules,
        left: &Side,
        right: &Side,
        assigned: (&[Assignment], &[Assignment]),
        info: &RunInfo,
        timings: Timings,
    ) -> Result<Self, ReconError> {
        // Both sides' totals and the group checks run at once.
        let n_rules = rules.passes.len();
        let ((l, r), groups) = rayon::join(
            || {
                rayon::join(
                    || side_summary(SideName::Left, left, assigned.0, n_rules),
                    || side_summary(SideName::Right, right, assigned.1, n_rules),
                )
            },
            || check_groups(left, right, assigned, n_rules),
        );
        let ((l, l_rules, l_matched), (r, r_rules, r_matched)) = (l?, r?);
        let groups = groups?;
        let per_rule: Vec<RuleSummary> = rules
            .passes
            .iter()
            .enumerate()
            .map(|(k, p)| RuleSummary {
                name: p.name.clone(),
                kind: match p.kind {
                    PassKind::Match => "match",
                    PassKind::Break => "break",
                },
                groups: groups[k].0,
                ambiguous_groups: groups[k].1,
                left: l_rules[k],
                right: r_rules[k],
            })
            .collect();
        let total = l.records + r.records;
        let matched = l_matched + r_matched;
        Ok(Self {
            name: rules.name.clone(),
            left: l,
            right: r,
            match_rate: if total == 0 {
                0.0
            } else {
                matched as f64 / total as f64
            },
            rules: per_rule,
            audit: Audit {
                run_id: info.run_id.clone(),
                engine_version: env!("CARGO_PKG_VERSION"),
                rules_sha256: rules.sha256.clone(),
                left_sha256: info.left_sha256.clone(),
                right_sha256: info.right_sha256.clone(),
                timings,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn statuses_parse_with_from_str() {
        assert_eq!("break".parse::<super::Status>(), Ok(super::Status::Break));
        assert_eq!(
            "Matched".parse::<super::Status>().unwrap_err().to_string(),
            "unknown status \"Matched\"; expected matched, break, ambiguous, unmatched or duplicate"
        );
    }

    use super::*;

    #[test]
    fn totals_format_exactly() {
        let usd = Currency::parse("USD").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(format_total(-1234, usd), "-12.34");
        assert_eq!(format_total(5, usd), "0.05");
        assert_eq!(
            format_total(i128::from(i64::MAX) * 4, jpy),
            "36893488147419103228"
        );
    }

    fn one_record(amount: i64) -> Side {
        let mut s = Side {
            source: "s.csv".into(),
            ..Side::default()
        };
        s.amount.push(amount);
        s.currency.push(Currency::parse("USD").unwrap());
        s.date.push(None);
        s.line.push(2);
        s
    }

    /// The summary of `assigned` over `sides`, with an empty run info.
    fn summarize(
        rules: &Rules,
        (l, r): (&Side, &Side),
        assigned: (&[Assignment], &[Assignment]),
    ) -> Result<Summary, ReconError> {
        Summary::build(
            rules,
            l,
            r,
            assigned,
            &RunInfo::default(),
            Timings::default(),
        )
    }

    /// The least two sides a rules file may map: an amount column and a fixed
    /// currency each.
    const SIDES: &str = "[left]\namount = \"a\"\ncurrency_value = \"USD\"\n\
        [right]\namount = \"a\"\ncurrency_value = \"USD\"\n";

    #[test]
    fn conservation_violations_are_errors() {
        let rules =
            Rules::from_toml_str(&format!("{SIDES}[[pass]]\nname = \"p\"\n"), "r.toml").unwrap();
        let (l, r) = (one_record(100), one_record(90));
        let pair = |diff| {
            Assignment::grouped(
                NonZeroU32::new(1),
                Status::Matched,
                Some(0),
                Some(1.0),
                Some(diff),
                None,
            )
        };
        let build = |a: &[Assignment], b: &[Assignment]| summarize(&rules, (&l, &r), (a, b));
        assert!(build(&[pair(-10)], &[pair(-10)]).is_ok());
        // A wrong difference, a one-sided group, a missing or extra result.
        assert!(matches!(
            build(&[pair(0)], &[pair(0)]),
            Err(ReconError::Conservation { .. })
        ));
        assert!(build(&[pair(-10)], &[Assignment::UNMATCHED]).is_err());
        assert!(build(&[], &[Assignment::UNMATCHED]).is_err());
        let no_id = Assignment::grouped(None, Status::Matched, Some(0), Some(1.0), Some(-10), None);
        assert!(build(&[no_id], &[Assignment::UNMATCHED]).is_err());
    }

    fn records(amounts: &[i64]) -> Side {
        let mut s = one_record(amounts[0]);
        for &a in &amounts[1..] {
            s.amount.push(a);
            s.currency.push(s.currency[0]);
            s.date.push(None);
            s.line.push(s.line.len() as u64 + 2);
        }
        s
    }

    /// Group sums run past `i64` on the way (two left records of
    /// `i64::MAX`) and are still exact; per-pass counts come out of the
    /// group checks; records of one group that disagree on status are an
    /// error.
    #[test]
    fn group_checks_are_exact_and_count_each_pass() {
        let rules = Rules::from_toml_str(
            &format!("{SIDES}[[pass]]\nname = \"a\"\n[[pass]]\nname = \"b\"\n"),
            "r.toml",
        )
        .unwrap();
        let (l, r) = (
            records(&[i64::MAX, i64::MAX, 5, 6]),
            records(&[i64::MAX, 7]),
        );
        let g = |id, status, rule, diff| {
            Assignment::grouped(NonZeroU32::new(id), status, Some(rule), None, diff, None)
        };
        let big = g(1, Status::Matched, 0, Some(-i64::MAX));
        let amb = g(2, Status::Ambiguous, 1, None);
        let build = |a: &[Assignment], b: &[Assignment]| summarize(&rules, (&l, &r), (a, b));
        let summary = build(&[big, big, amb, amb], &[big, amb]).unwrap();
        let counts: Vec<_> = summary
            .rules
            .iter()
            .map(|p| (p.groups, p.ambiguous_groups, p.left, p.right))
            .collect();
        assert_eq!(counts, [(1, 0, 2, 1), (0, 1, 2, 1)]);
        assert_eq!(summary.left.match_rate, 0.5);

        let off_by_one = g(1, Status::Matched, 0, Some(1 - i64::MAX));
        assert!(build(&[off_by_one, off_by_one, amb, amb], &[off_by_one, amb]).is_err());
        let brk = g(1, Status::Break, 0, Some(-i64::MAX));
        assert!(build(&[big, brk, amb, amb], &[big, amb]).is_err());
    }

    #[test]
    fn assignments_read_back_what_they_were_built_with() {
        let id = NonZeroU32::new(7);
        for (rule, score, amount_diff, date_diff) in [
            (None, None, None, None),
            (Some(0), Some(0.0), Some(0), Some(0)),
            (Some(u16::MAX), Some(1.0), Some(i64::MIN), Some(i32::MIN)),
            (Some(3), Some(0.8125), Some(-1), Some(-3)),
            (Some(1), Some(-0.0), Some(i64::MAX), Some(i32::MAX)),
        ] {
            for status in Status::ALL {
                let a = Assignment::grouped(id, status, rule, score, amount_diff, date_diff);
                assert_eq!(a.match_id(), id);
                assert_eq!(a.status(), status);
                assert_eq!(a.rule(), rule);
                assert_eq!(a.score().map(f64::to_bits), score.map(f64::to_bits));
                assert_eq!(a.amount_diff(), amount_diff);
                assert_eq!(a.date_diff_days(), date_diff);
            }
        }
        // A present zero is not an absent value.
        let zero = Assignment::grouped(None, Status::Matched, Some(0), None, Some(0), None);
        let none = Assignment::grouped(None, Status::Matched, None, None, None, None);
        assert_ne!(zero, none);
        assert_eq!(Assignment::UNMATCHED.status(), Status::Unmatched);
        assert_eq!(Assignment::DUPLICATE.status(), Status::Duplicate);
        assert_eq!(Assignment::DUPLICATE.match_id(), None);
        assert_eq!(Assignment::UNMATCHED.score(), None);
    }

    #[test]
    fn statuses_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
    }
}
