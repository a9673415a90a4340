//! Writing results: `results.csv`, `results.parquet`, NDJSON rows and
//! `summary.json`.
//!
//! Every writer emits the same rows in the same order, one per input record:
//! first the match groups by ascending `match_id` (within a group, left
//! records then right records, each in input order), then the records without
//! a group (unmatched, duplicate): all left ones in input order, then all right
//! ones. Nothing depends on thread count or hashing, so the same inputs and
//! rules give byte-identical files.
//!
//! Columns: `match_id, side, record_id, line, status, rule, score, amount,
//! currency, amount_diff, date_diff_days`. Amounts are exact decimals in major
//! units of the record's currency (strings in CSV/NDJSON, `Decimal128(38, s)`
//! in Parquet with `s` the largest minor-unit count among the currencies
//! present); `score` has 4 decimals in CSV. The mappings' `extra` columns
//! follow, carried through unchanged: `left_<name>` for each left extra (empty
//! on right rows), then `right_<name>` for each right extra (in NDJSON: an
//! `extra` object with the record's own extra columns).

use std::io::{self, BufWriter, Write};
use std::str::FromStr;
use std::sync::Arc;

use arrow_array::builder::{
    Decimal128Builder, Float64Builder, Int32Builder, StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema};
use rayon::prelude::*;
use serde::Serialize;

use crate::money::{Currency, Minor};
use crate::outcome::{Assignment, Outcome, SideName, Status, Summary};
use crate::side::Side;

/// Rows per Parquet record batch.
const BATCH_ROWS: usize = 65_536;

/// The column names, in order.
pub const COLUMNS: [&str; 11] = [
    "match_id",
    "side",
    "record_id",
    "line",
    "status",
    "rule",
    "score",
    "amount",
    "currency",
    "amount_diff",
    "date_diff_days",
];

/// Why writing results failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The writer failed.
    #[error("writing results: {0}")]
    Io(#[from] io::Error),
    /// Building Arrow arrays failed.
    #[error("building Arrow results: {0}")]
    Arrow(#[from] ArrowError),
    /// The Parquet writer failed.
    #[error("writing Parquet results: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// JSON serialization failed.
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The outcome does not belong to these sides.
    #[error("the outcome has {outcome} {side} results but the side has {records} records")]
    Mismatch {
        /// Which side.
        side: SideName,
        /// Results in the outcome.
        outcome: usize,
        /// Records in the side.
        records: usize,
    },
}

/// Which statuses to write. Parses from a comma-separated list such as
/// `"matched,break"`; `"all"` or an empty string means every status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusFilter {
    mask: u8,
}

/// An unknown status name in a [`StatusFilter`] list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}; expected matched, break, ambiguous, unmatched or duplicate")]
pub struct UnknownStatus(pub String);

impl StatusFilter {
    /// Every status.
    pub const ALL: StatusFilter = StatusFilter { mask: 0b1_1111 };

    /// Only the given statuses.
    pub fn only(statuses: &[Status]) -> Self {
        Self {
            mask: statuses.iter().fold(0, |m, s| m | Self::bit(*s)),
        }
    }

    fn bit(s: Status) -> u8 {
        1 << (s as u8)
    }

    /// Whether rows of status `s` are written.
    pub fn contains(&self, s: Status) -> bool {
        self.mask & Self::bit(s) != 0
    }
}

impl Default for StatusFilter {
    fn default() -> Self {
        Self::ALL
    }
}

impl FromStr for StatusFilter {
    type Err = UnknownStatus;

    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let list = list.trim();
        if list.is_empty() || list.eq_ignore_ascii_case("all") {
            return Ok(Self::ALL);
        }
        let mut mask = 0;
        for name in list.split(',') {
            let name = name.trim().to_ascii_lowercase();
            let s = Status::parse(&name).ok_or(UnknownStatus(name))?;
            mask |= Self::bit(s);
        }
        Ok(Self { mask })
    }
}

/// One output row, borrowed.
struct Row<'a> {
    side: SideName,
    /// The record's side and row, for its extra columns.
    source: &'a Side,
    index: usize,
    a: &'a Assignment,
    record_id: &'a str,
    line: u64,
    rule: Option<&'a str>,
    amount: i64,
    currency: Currency,
}

/// `(side, row)` of every record in output order (see the module docs).
/// Match ids are small and dense, so groups are placed by a counting sort:
/// left rows then right rows, each in input order, land in their group's
/// slots in that order.
fn order(outcome: &Outcome) -> Vec<(SideName, u32)> {
    let all = || outcome.left.iter().chain(&outcome.right);
    let max_id = all()
        .filter_map(|a| a.match_id)
        .map(|m| m.get() as usize)
        .max()
        .unwrap_or(0);
    // `slot[id]`: where group `id`'s next record goes.
    let mut slot = vec![0usize; max_id + 2];
    for a in all() {
        if let Some(id) = a.match_id {
            slot[id.get() as usize + 1] += 1;
        }
    }
    for k in 1..slot.len() {
        slot[k] += slot[k - 1];
    }
    let grouped = slot[max_id + 1];
    let mut out = vec![(SideName::Left, 0u32); grouped];
    for (s, list) in [
        (SideName::Left, &outcome.left),
        (SideName::Right, &outcome.right),
    ] {
        for (i, a) in list.iter().enumerate() {
            if let Some(id) = a.match_id {
                let at = &mut slot[id.get() as usize];
                out[*at] = (s, i as u32);
                *at += 1;
            }
        }
    }
    for (s, list) in [
        (SideName::Left, &outcome.left),
        (SideName::Right, &outcome.right),
    ] {
        out.extend(
            list.iter()
                .enumerate()
                .filter(|(_, a)| a.match_id.is_none())
                .map(|(i, _)| (s, i as u32)),
        );
    }
    out
}

fn check(outcome: &Outcome, left: &Side, right: &Side) -> Result<(), OutputError> {
    for (side, n, records) in [
        (SideName::Left, outcome.left.len(), left.len()),
        (SideName::Right, outcome.right.len(), right.len()),
    ] {
        if n != records {
            return Err(OutputError::Mismatch {
                side,
                outcome: n,
                records,
            });
        }
    }
    Ok(())
}

/// The output row of record `i` of `side`.
fn row_at<'a>(
    outcome: &'a Outcome,
    left: &'a Side,
    right: &'a Side,
    side: SideName,
    i: usize,
) -> Row<'a> {
    let (s, a) = match side {
        SideName::Left => (left, &outcome.left[i]),
        SideName::Right => (right, &outcome.right[i]),
    };
    let record_id = if i < s.id.len() {
        s.id.get(i).unwrap_or("")
    } else {
        ""
    };
    Row {
        side,
        source: s,
        index: i,
        a,
        record_id,
        line: s.line[i],
        rule: outcome.rule_name(a),
        amount: s.amount[i],
        currency: s.currency[i],
    }
}

/// Calls `f` on every row that passes `filter`, in output order.
fn for_each_row<'a>(
    outcome: &'a Outcome,
    left: &'a Side,
    right: &'a Side,
    filter: &StatusFilter,
    mut f: impl FnMut(&Row<'a>) -> Result<(), OutputError>,
) -> Result<(), OutputError> {
    check(outcome, left, right)?;
    for (side, i) in order(outcome) {
        let r = row_at(outcome, left, right, side, i as usize);
        if !filter.contains(r.a.status) {
            continue;
        }
        f(&r)?;
    }
    Ok(())
}

/// Appends a score in `[0, 1]` with exactly 4 decimals, rounded half up.
/// Integer formatting: `{:.4}` on `f64` takes an exact (and slow) path.
fn push_score(buf: &mut Vec<u8>, score: f64) {
    let scaled = (score.clamp(0.0, 1.0) * 10_000.0).round() as u32;
    push_u64(buf, u64::from(scaled / 10_000));
    buf.push(b'.');
    push_padded(buf, u64::from(scaled % 10_000), 4);
}

/// Appends `v` in decimal, the bytes of `{v}`, without `core::fmt`.
fn push_u64(buf: &mut Vec<u8>, v: u64) {
    push_padded(buf, v, 1);
}

/// Appends `v` in decimal with at least `width` (>= 1) digits, zero-padded:
/// the bytes of `{v:0width$}`. Digits go to a stack buffer first and are
/// appended with one copy.
fn push_padded(buf: &mut Vec<u8>, mut v: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut k = digits.len();
    loop {
        k -= 1;
        digits[k] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 && digits.len() - k >= width {
            break;
        }
    }
    buf.extend_from_slice(&digits[k..]);
}

/// Appends `v` in decimal, the bytes of `{v}`.
fn push_i64(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    push_u64(buf, v.unsigned_abs());
}

/// Appends an amount exactly as `Minor`'s `Display` writes it: sign, major
/// units, and for currencies with minor units a dot and that many digits.
fn push_minor(buf: &mut Vec<u8>, units: i64, currency: Currency) {
    let scale = u32::from(currency.minor_units());
    if units < 0 {
        buf.push(b'-');
    }
    let magnitude = units.unsigned_abs();
    if scale == 0 {
        push_u64(buf, magnitude);
        return;
    }
    let pow = 10u64.pow(scale);
    push_u64(buf, magnitude / pow);
    buf.push(b'.');
    push_padded(buf, magnitude % pow, scale as usize);
}

/// Whether a CSV field needs quotes.
fn needs_quotes(value: &str) -> bool {
    value
        .bytes()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
}

/// Appends `value` as a CSV field; `quote` is [`needs_quotes`] of it.
fn push_csv_text(buf: &mut Vec<u8>, value: &str, quote: bool) {
    if quote {
        buf.push(b'"');
        for part in value.split_inclusive('"') {
            buf.extend_from_slice(part.as_bytes());
            if part.ends_with('"') {
                buf.push(b'"');
            }
        }
        buf.push(b'"');
    } else {
        buf.extend_from_slice(value.as_bytes());
    }
}

fn push_csv_field(buf: &mut Vec<u8>, value: &str) {
    push_csv_text(buf, value, needs_quotes(value));
}

/// Writes `results.csv` (header and one row per record passing `filter`).
///
/// # Errors
/// [`OutputError::Io`] when the writer fails, [`OutputError::Mismatch`] when
/// `outcome` was not produced from these sides.
pub fn write_results_csv(
    outcome: &Outcome,
    left: &Side,
    right: &Side,
    writer: impl Write,
    filter: &StatusFilter,
) -> Result<(), OutputError> {
    check(outcome, left, right)?;
    let mut w = BufWriter::with_capacity(1 << 16, writer);
    let mut head = COLUMNS.join(",").into_bytes();
    for (prefix, side) in [("left_", left), ("right_", right)] {
        for (name, _) in &side.extra {
            head.push(b',');
            push_csv_field(&mut head, &format!("{prefix}{name}"));
        }
    }
    head.push(b'\n');
    w.write_all(&head)?;
    let order = order(outcome);
    write_in_order(&order, &mut w, |rows, buf| {
        push_csv_rows(buf, rows, outcome, left, right, filter);
        Ok(())
    })?;
    w.flush()?;
    Ok(())
}

/// Rows per parallel formatting chunk.
const ROW_CHUNK: usize = 4096;

/// Chunks formatted per window: the text of one window is written while the
/// next one is formatted, so at most two windows are in memory.
const WINDOW_CHUNKS: usize = 16;

/// Output rows gathered before any of them is formatted. Output order visits
/// records at random; loading a batch's scattered fields in one short loop
/// lets the CPU overlap those cache misses, where formatting each row as it
/// is loaded waited on each miss in turn.
const GATHER: usize = 32;

/// Formats `order` with `format` (rows, output buffer) in parallel chunks of
/// [`ROW_CHUNK`] rows and writes the chunks in order: the bytes do not
/// depend on the thread count. Chunk buffers are reused from window to
/// window, and the next window is formatted while this thread writes the
/// last one.
fn write_in_order(
    order: &[(SideName, u32)],
    w: &mut impl Write,
    format: impl Fn(&[(SideName, u32)], &mut Vec<u8>) -> Result<(), OutputError> + Sync,
) -> Result<(), OutputError> {
    let format_window =
        |window: &[(SideName, u32)], bufs: &mut Vec<Vec<u8>>| -> Result<(), OutputError> {
            let n = window.len().div_ceil(ROW_CHUNK);
            bufs.resize_with(n.max(bufs.len()), Vec::new);
            window
                .par_chunks(ROW_CHUNK)
                .zip(bufs[..n].par_iter_mut())
                .map(|(rows, buf)| {
                    buf.clear();
                    format(rows, buf)
                })
                .collect::<Vec<_>>()
                .into_iter()
                .collect()
        };
    let windows: Vec<&[(SideName, u32)]> = order.chunks(ROW_CHUNK * WINDOW_CHUNKS).collect();
    let (mut ready, mut spare) = (Vec::new(), Vec::new());
    if let Some(first) = windows.first() {
        format_window(first, &mut ready)?;
    }
    for (k, window) in windows.iter().enumerate() {
        let n = window.len().div_ceil(ROW_CHUNK);
        let (mut formatted, mut written) = (Ok(()), Ok(()));
        rayon::in_place_scope(|scope| {
            if let Some(next) = windows.get(k + 1) {
                let (spare, formatted) = (&mut spare, &mut formatted);
                scope.spawn(move |_| *formatted = format_window(next, spare));
            }
            written = ready[..n].iter().try_for_each(|b| w.write_all(b));
        });
        written?;
        formatted?;
        std::mem::swap(&mut ready, &mut spare);
    }
    Ok(())
}

/// One output row's fields, loaded ahead of formatting (see [`GATHER`]).
struct Gathered<'a> {
    side: SideName,
    index: usize,
    a: Assignment,
    record_id: &'a str,
    quote_id: bool,
    line: u64,
    amount: i64,
    currency: Currency,
}

/// Appends the `results.csv` rows of `rows` (those passing `filter`).
fn push_csv_rows(
    buf: &mut Vec<u8>,
    rows: &[(SideName, u32)],
    outcome: &Outcome,
    left: &Side,
    right: &Side,
    filter: &StatusFilter,
) {
    let mut batch: Vec<Gathered<'_>> = Vec::with_capacity(GATHER);
    for group in rows.chunks(GATHER) {
        batch.clear();
        batch.extend(group.iter().map(|&(side, i)| {
            let r = row_at(outcome, left, right, side, i as usize);
            Gathered {
                side,
                index: r.index,
                a: *r.a,
                record_id: r.record_id,
                quote_id: needs_quotes(r.record_id),
                line: r.line,
                amount: r.amount,
                currency: r.currency,
            }
        }));
        for g in &batch {
            if filter.contains(g.a.status) {
                push_csv_row(buf, g, outcome, left, right);
            }
        }
    }
}

/// Appends row `r` of `results.csv`, with its line break.
fn push_csv_row(buf: &mut Vec<u8>, r: &Gathered<'_>, outcome: &Outcome, left: &Side, right: &Side) {
    if let Some(id) = r.a.match_id {
        push_u64(buf, u64::from(id.get()));
    }
    buf.push(b',');
    buf.extend_from_slice(r.side.as_str().as_bytes());
    buf.push(b',');
    push_csv_text(buf, r.record_id, r.quote_id);
    buf.push(b',');
    push_u64(buf, r.line);
    buf.push(b',');
    buf.extend_from_slice(r.a.status.as_str().as_bytes());
    buf.push(b',');
    if let Some(rule) = outcome.rule_name(&r.a) {
        push_csv_field(buf, rule);
    }
    buf.push(b',');
    if let Some(score) = r.a.score {
        push_score(buf, score);
    }
    buf.push(b',');
    push_minor(buf, r.amount, r.currency);
    buf.push(b',');
    buf.extend_from_slice(r.currency.as_str().as_bytes());
    buf.push(b',');
    if let Some(d) = r.a.amount_diff {
        push_minor(buf, d, r.currency);
    }
    buf.push(b',');
    if let Some(d) = r.a.date_diff_days {
        push_i64(buf, i64::from(d));
    }
    for (side, other) in [(SideName::Left, left), (SideName::Right, right)] {
        for (_, col) in &other.extra {
            buf.push(b',');
            if side == r.side
                && let Some(v) = extra_value(col, r.index)
            {
                push_csv_field(buf, v);
            }
        }
    }
    buf.push(b'\n');
}

fn extra_value(col: &crate::side::TextColumn, i: usize) -> Option<&str> {
    if i < col.len() { col.get(i) } else { None }
}

/// A record's extra columns as a JSON object.
struct Extras<'a> {
    side: &'a Side,
    index: usize,
}

impl Serialize for Extras<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.side.extra.len()))?;
        for (name, col) in &self.side.extra {
            map.serialize_entry(name, &extra_value(col, self.index))?;
        }
        map.end()
    }
}

/// An amount serialized as an exact decimal string without allocating.
struct Dec(Minor);

impl Serialize for Dec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

#[derive(Serialize)]
struct JsonRow<'a> {
    match_id: Option<u32>,
    side: SideName,
    record_id: &'a str,
    line: u64,
    status: Status,
    rule: Option<&'a str>,
    score: Option<f64>,
    amount: Dec,
    currency: &'a str,
    amount_diff: Option<Dec>,
    date_diff_days: Option<i32>,
    extra: Extras<'a>,
}

/// Writes one JSON object per line per record passing `filter`, with the
/// CSV's columns as keys (amounts as decimal strings, absent values `null`).
///
/// # Errors
/// [`OutputError::Io`] / [`OutputError::Json`] when writing fails,
/// [`OutputError::Mismatch`] when `outcome` was not produced from these sides.
pub fn write_results_ndjson(
    outcome: &Outcome,
    left: &Side,
    right: &Side,
    writer: impl Write,
    filter: &StatusFilter,
) -> Result<(), OutputError> {
    check(outcome, left, right)?;
    let mut w = BufWriter::with_capacity(1 << 16, writer);
    let order = order(outcome);
    // Rows are serialized in parallel chunks like the CSV's (same bytes
    // whatever the thread count).
    write_in_order(&order, &mut w, |rows, buf| {
        for &(side, i) in rows {
            let r = row_at(outcome, left, right, side, i as usize);
            if filter.contains(r.a.status) {
                push_json_row(buf, &r)?;
            }
        }
        Ok(())
    })?;
    w.flush()?;
    Ok(())
}

/// Appends row `r` as one JSON object and a line break.
fn push_json_row(buf: &mut Vec<u8>, r: &Row<'_>) -> Result<(), OutputError> {
    let cur = r.currency;
    serde_json::to_writer(
        &mut *buf,
        &JsonRow {
            match_id: r.a.match_id.map(|m| m.get()),
            side: r.side,
            record_id: r.record_id,
            line: r.line,
            status: r.a.status,
            rule: r.rule,
            score: r.a.score,
            amount: Dec(Minor {
                units: r.amount,
                currency: cur,
            }),
            currency: cur.as_str(),
            amount_diff: r.a.amount_diff.map(|units| {
                Dec(Minor {
                    units,
                    currency: cur,
                })
            }),
            date_diff_days: r.a.date_diff_days,
            extra: Extras {
                side: r.source,
                index: r.index,
            },
        },
    )?;
    buf.push(b'\n');
    Ok(())
}

/// The Arrow schema of `results.parquet` for amounts with `scale` decimals
/// and the two sides' extra columns.
pub fn results_schema(scale: i8, left: &Side, right: &Side) -> Schema {
    let extras = [("left_", left), ("right_", right)]
        .into_iter()
        .flat_map(|(prefix, side)| {
            side.extra
                .iter()
                .map(move |(name, _)| Field::new(format!("{prefix}{name}"), DataType::Utf8, true))
        });
    Schema::new(
        vec![
            Field::new("match_id", DataType::UInt32, true),
            Field::new("side", DataType::Utf8, false),
            Field::new("record_id", DataType::Utf8, false),
            Field::new("line", DataType::UInt64, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("rule", DataType::Utf8, true),
            Field::new("score", DataType::Float64, true),
            Field::new("amount", DataType::Decimal128(38, scale), false),
            Field::new("currency", DataType::Utf8, false),
            Field::new("amount_diff", DataType::Decimal128(38, scale), true),
            Field::new("date_diff_days", DataType::Int32, true),
        ]
        .into_iter()
        .chain(extras)
        .collect::<Vec<_>>(),
    )
}

struct Builders {
    match_id: UInt32Builder,
    side: StringBuilder,
    record_id: StringBuilder,
    line: UInt64Builder,
    status: StringBuilder,
    rule: StringBuilder,
    score: Float64Builder,
    amount: Decimal128Builder,
    currency: StringBuilder,
    amount_diff: Decimal128Builder,
    date_diff: Int32Builder,
    extras: Vec<StringBuilder>,
    rows: usize,
}

impl Builders {
    fn new(scale: i8, extras: usize) -> Result<Self, ArrowError> {
        Ok(Self {
            match_id: UInt32Builder::new(),
            side: StringBuilder::new(),
            record_id: StringBuilder::new(),
            line: UInt64Builder::new(),
            status: StringBuilder::new(),
            rule: StringBuilder::new(),
            score: Float64Builder::new(),
            amount: Decimal128Builder::new().with_precision_and_scale(38, scale)?,
            currency: StringBuilder::new(),
            amount_diff: Decimal128Builder::new().with_precision_and_scale(38, scale)?,
            date_diff: Int32Builder::new(),
            extras: (0..extras).map(|_| StringBuilder::new()).collect(),
            rows: 0,
        })
    }

    fn finish(&mut self, schema: &Arc<Schema>) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.match_id.finish()),
            Arc::new(self.side.finish()),
            Arc::new(self.record_id.finish()),
            Arc::new(self.line.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.rule.finish()),
            Arc::new(self.score.finish()),
            Arc::new(
                self.amount
                    .finish()
                    .with_precision_and_scale(38, decimal_scale(schema))?,
            ),
            Arc::new(self.currency.finish()),
            Arc::new(
                self.amount_diff
                    .finish()
                    .with_precision_and_scale(38, decimal_scale(schema))?,
            ),
            Arc::new(self.date_diff.finish()),
        ];
        for b in &mut self.extras {
            cols.push(Arc::new(b.finish()));
        }
        RecordBatch::try_new(schema.clone(), cols)
    }
}

fn decimal_scale(schema: &Schema) -> i8 {
    match schema.field(7).data_type() {
        DataType::Decimal128(_, s) => *s,
        _ => 0,
    }
}

/// Writes `results.parquet` (one row group per 65,536 rows, zstd).
///
/// # Errors
/// [`OutputError::Parquet`] / [`OutputError::Arrow`] when encoding or writing
/// fails, [`OutputError::Mismatch`] when `outcome` was not produced from these
/// sides.
pub fn write_results_parquet(
    outcome: &Outcome,
    left: &Side,
    right: &Side,
    writer: impl Write + Send,
    filter: &StatusFilter,
) -> Result<(), OutputError> {
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::WriterProperties;

    let scale = left
        .currency
        .iter()
        .chain(&right.currency)
        .map(|c| c.minor_units())
        .max()
        .unwrap_or(2);
    let scale = i8::try_from(scale).unwrap_or(4);
    let schema = Arc::new(results_schema(scale, left, right));
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(BATCH_ROWS))
        .build();
    let mut pw = ArrowWriter::try_new(writer, schema.clone(), Some(props))?;
    let mut b = Builders::new(scale, left.extra.len() + right.extra.len())?;
    let widen = |units: i64, c: Currency| -> i128 {
        let up = u32::from(scale.unsigned_abs()).saturating_sub(u32::from(c.minor_units()));
        i128::from(units) * 10i128.pow(up)
    };
    for_each_row(outcome, left, right, filter, |r| {
        b.match_id.append_option(r.a.match_id.map(|m| m.get()));
        b.side.append_value(r.side.as_str());
        b.record_id.append_value(r.record_id);
        b.line.append_value(r.line);
        b.status.append_value(r.a.status.as_str());
        b.rule.append_option(r.rule);
        b.score.append_option(r.a.score);
        b.amount.append_value(widen(r.amount, r.currency));
        b.currency.append_value(r.currency.as_str());
        b.amount_diff
            .append_option(r.a.amount_diff.map(|d| widen(d, r.currency)));
        b.date_diff.append_option(r.a.date_diff_days);
        let mut k = 0;
        for (side, other) in [(SideName::Left, left), (SideName::Right, right)] {
            for (_, col) in &other.extra {
                let v = if side == r.side {
                    extra_value(col, r.index)
                } else {
                    None
                };
                b.extras[k].append_option(v);
                k += 1;
            }
        }
        b.rows += 1;
        if b.rows == BATCH_ROWS {
            pw.write(&b.finish(&schema)?)?;
        }
        Ok(())
    })?;
    if b.rows > 0 {
        pw.write(&b.finish(&schema)?)?;
    }
    pw.close()?;
    Ok(())
}

/// Writes `summary.json`, pretty-printed with a final newline. Only
/// `audit.run_id` and `audit.timings` differ between runs of the same inputs.
///
/// # Errors
/// [`OutputError::Json`] / [`OutputError::Io`] when writing fails.
pub fn write_summary_json(summary: &Summary, writer: impl Write) -> Result<(), OutputError> {
    let mut w = BufWriter::new(writer);
    serde_json::to_writer_pretty(&mut w, summary)?;
    w.write_all(b"\n")?;
    w.flush()?;
    Ok(())
}
