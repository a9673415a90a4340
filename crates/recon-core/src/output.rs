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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use arrow_array::builder::{
    Decimal128Builder, Float64Builder, Int32Builder, StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema};
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

/// An unknown status name in a [`StatusFilter`] list (as `Status`'s own
/// `FromStr` refuses it).
pub use crate::outcome::UnknownStatus;

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
            let s: Status = name.trim().to_ascii_lowercase().parse()?;
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
/// slots in that order, and records without a group go after the groups in
/// the same scan. Two passes over the assignments: one counts, one places.
/// The output vector (one row per record) is set up on another thread while
/// the first pass counts.
fn order(outcome: &Outcome) -> Vec<(SideName, u32)> {
    let sides = [
        (SideName::Left, &outcome.left),
        (SideName::Right, &outcome.right),
    ];
    let count = || {
        // `slot[id + 1]`: records of group `id`; after the prefix sum,
        // `slot[id]` is where group `id`'s next record goes.
        let mut slot: Vec<usize> =
            Vec::with_capacity(outcome.left.len().min(outcome.right.len()) + 2);
        for (_, list) in sides {
            for a in list.iter() {
                if let Some(id) = a.match_id() {
                    let k = id.get() as usize + 1;
                    if k >= slot.len() {
                        slot.resize(k + 1, 0);
                    }
                    slot[k] += 1;
                }
            }
        }
        for k in 1..slot.len() {
            slot[k] += slot[k - 1];
        }
        slot
    };
    let rows = outcome.left.len() + outcome.right.len();
    let (mut slot, mut out) = rayon::join(count, || vec![(SideName::Left, 0u32); rows]);
    let grouped = slot.last().copied().unwrap_or(0);
    let mut tail = grouped;
    for (s, list) in sides {
        for (i, a) in list.iter().enumerate() {
            let at = match a.match_id() {
                Some(id) => {
                    let next = &mut slot[id.get() as usize];
                    *next += 1;
                    *next - 1
                }
                None => {
                    tail += 1;
                    tail - 1
                }
            };
            out[at] = (s, i as u32);
        }
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

/// Record `i` of `side`: its side, its assignment and its id ("" if none).
fn record_at<'a>(
    outcome: &'a Outcome,
    left: &'a Side,
    right: &'a Side,
    side: SideName,
    i: usize,
) -> (&'a Side, &'a Assignment, &'a str) {
    let (s, a) = match side {
        SideName::Left => (left, &outcome.left[i]),
        SideName::Right => (right, &outcome.right[i]),
    };
    let record_id = if i < s.id.len() {
        s.id.get(i).unwrap_or("")
    } else {
        ""
    };
    (s, a, record_id)
}

/// The output row of record `i` of `side`.
fn row_at<'a>(
    outcome: &'a Outcome,
    left: &'a Side,
    right: &'a Side,
    side: SideName,
    i: usize,
) -> Row<'a> {
    let (s, a, record_id) = record_at(outcome, left, right, side, i);
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
        if !filter.contains(r.a.status()) {
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
    if scaled == 10_000 {
        // Every exact pass's score.
        buf.extend_from_slice(b"1.0000");
        return;
    }
    push_u64(buf, u64::from(scaled / 10_000));
    buf.push(b'.');
    push_padded(buf, u64::from(scaled % 10_000), 4);
}

/// Appends `v` in decimal, the bytes of `{v}`, without `core::fmt`.
fn push_u64(buf: &mut Vec<u8>, v: u64) {
    push_padded(buf, v, 1);
}

/// `"00"`, `"01"`, ... `"99"`: two digits per division.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `v` in decimal with at least `width` (1 to 20) digits,
/// zero-padded: the bytes of `{v:0width$}`. Digits go to a stack buffer
/// first, two per division, and are appended with one copy.
fn push_padded(buf: &mut Vec<u8>, mut v: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut k = digits.len();
    while v >= 100 {
        let d = (v % 100) as usize * 2;
        v /= 100;
        k -= 2;
        digits[k..k + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    }
    if v >= 10 {
        let d = v as usize * 2;
        k -= 2;
        digits[k..k + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    } else {
        k -= 1;
        digits[k] = b'0' + v as u8;
    }
    // The buffer is pre-filled with zeros: padding only moves the start.
    k = k.min(digits.len() - width.clamp(1, digits.len()));
    buf.extend_from_slice(&digits[k..]);
}

/// Appends `v` in decimal, the bytes of `{v}`.
fn push_i64(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    push_u64(buf, v.unsigned_abs());
}

/// A currency's minor units and `10^units`, looked up once per currency
/// run instead of once per amount.
#[derive(Clone, Copy)]
struct Scale {
    digits: u8,
    pow: u64,
}

impl Scale {
    fn of(currency: Currency) -> Self {
        let digits = currency.minor_units();
        Self {
            digits,
            pow: 10u64.pow(u32::from(digits)),
        }
    }
}

/// The [`Scale`] of the last currency asked for: records of one file mostly
/// share a currency.
struct ScaleCache(Option<(Currency, Scale)>);

impl ScaleCache {
    fn get(&mut self, currency: Currency) -> Scale {
        match self.0 {
            Some((c, s)) if c == currency => s,
            _ => {
                let s = Scale::of(currency);
                self.0 = Some((currency, s));
                s
            }
        }
    }
}

/// Appends an amount exactly as `Minor`'s `Display` writes it: sign, major
/// units, and for currencies with minor units a dot and that many digits.
fn push_scaled(buf: &mut Vec<u8>, units: i64, scale: Scale) {
    if units < 0 {
        buf.push(b'-');
    }
    let magnitude = units.unsigned_abs();
    if scale.digits == 0 {
        push_u64(buf, magnitude);
        return;
    }
    push_u64(buf, magnitude / scale.pow);
    buf.push(b'.');
    push_padded(buf, magnitude % scale.pow, usize::from(scale.digits));
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
/// The text goes to `writer` in large vectored writes (a window of
/// formatted chunks at a time), so a `BufWriter` around it passes them
/// straight through instead of copying them into its buffer.
///
/// # Errors
/// [`OutputError::Io`] when the writer fails, [`OutputError::Mismatch`] when
/// `outcome` was not produced from these sides.
pub fn write_results_csv(
    outcome: &Outcome,
    left: &Side,
    right: &Side,
    mut writer: impl Write,
    filter: &StatusFilter,
) -> Result<(), OutputError> {
    check(outcome, left, right)?;
    let mut head = COLUMNS.join(",").into_bytes();
    for (prefix, side) in [("left_", left), ("right_", right)] {
        for (name, _) in &side.extra {
            head.push(b',');
            push_csv_field(&mut head, &format!("{prefix}{name}"));
        }
    }
    head.push(b'\n');
    let order = order(outcome);
    let ctx = CsvRows::new(outcome, left, right, filter);
    write_in_order(&head, &order, &mut writer, |rows, buf| {
        ctx.push(buf, rows);
        Ok(())
    })?;
    writer.flush()?;
    Ok(())
}

/// Rows per formatting chunk: the unit a formatting thread takes and the
/// writer writes.
const ROW_CHUNK: usize = 4096;

/// Formatted chunks that may wait for the writer: formatting runs at most
/// this far ahead, which bounds the text held (a chunk is about
/// `ROW_CHUNK` rows of text).
const LOOKAHEAD: usize = 32;

/// Bytes per row reserved up front in an empty chunk buffer. Pages never
/// written are never touched, so a generous guess costs address space only
/// and spares the doublings (and their copies) of a growing buffer.
const ROW_BYTES_HINT: usize = 256;

/// Output rows gathered before any of them is formatted. Output order visits
/// records at random; loading a batch's scattered fields in one short loop
/// lets the CPU overlap those cache misses, where formatting each row as it
/// is loaded waited on each miss in turn.
const GATHER: usize = 32;

/// Writes every slice of `bufs` (`Write::write_all_vectored` is unstable).
fn write_all_vectored(w: &mut impl Write, mut bufs: &mut [io::IoSlice<'_>]) -> io::Result<()> {
    io::IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A formatting thread's result: a chunk's index and its text.
type Formatted = (usize, Result<Vec<u8>, OutputError>);

/// Writes `head`, then `order` formatted by `format` (rows, output buffer)
/// in chunks of [`ROW_CHUNK`] rows, in order: the bytes do not depend on the
/// thread count.
///
/// With more than one chunk, as many threads as the rayon pool has (spawned
/// for the call, so a caller inside the pool cannot starve them) take
/// chunks in order and format them while this thread writes the finished
/// ones as soon as they are next. Nothing waits for a batch of chunks to
/// finish, so neither side idles at batch ends; formatting runs at most
/// [`LOOKAHEAD`] chunks ahead of the writer, and chunk buffers are reused.
/// A failed write or format stops the formatting threads.
fn write_in_order(
    head: &[u8],
    order: &[(SideName, u32)],
    w: &mut impl Write,
    format: impl Fn(&[(SideName, u32)], &mut Vec<u8>) -> Result<(), OutputError> + Sync,
) -> Result<(), OutputError> {
    w.write_all(head)?;
    let chunks: Vec<&[(SideName, u32)]> = order.chunks(ROW_CHUNK).collect();
    if chunks.len() <= 1 {
        let mut buf = Vec::new();
        for rows in &chunks {
            format(rows, &mut buf)?;
        }
        w.write_all(&buf)?;
        return Ok(());
    }
    let threads = rayon::current_num_threads().clamp(1, chunks.len());
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let spare: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let take_spare = || {
        spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    };
    std::thread::scope(|scope| {
        let (done, finished) = mpsc::sync_channel::<Formatted>(LOOKAHEAD);
        for _ in 0..threads {
            let done = done.clone();
            let (chunks, next, stop, format) = (&chunks, &next, &stop, &format);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(rows) = chunks.get(i) else { break };
                    let mut buf = take_spare();
                    buf.clear();
                    buf.reserve(rows.len() * ROW_BYTES_HINT);
                    let formatted = format(rows, &mut buf).map(|()| buf);
                    if done.send((i, formatted)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done);
        let written = write_formatted(w, chunks.len(), &finished, &spare);
        if written.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        // Unblocks any thread still sending, so the scope can end.
        drop(finished);
        written
    })
}

/// The writing half of [`write_in_order`]: receives `count` formatted chunks
/// in any order and writes them in chunk order, each run of consecutive
/// chunks in one vectored write, handing their buffers back to `spare`.
fn write_formatted(
    w: &mut impl Write,
    count: usize,
    finished: &mpsc::Receiver<Formatted>,
    spare: &Mutex<Vec<Vec<u8>>>,
) -> Result<(), OutputError> {
    // Chunks received ahead of the next one to write (a few: chunks are
    // taken in order, so only those in flight on other threads overtake).
    let mut early: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut ready: Vec<Vec<u8>> = Vec::new();
    let mut next = 0;
    while next < count {
        let (i, formatted) = finished.recv().map_err(|_| {
            OutputError::Io(io::Error::other("a results formatting thread stopped"))
        })?;
        early.push((i, formatted?));
        while let Some(at) = early.iter().position(|&(i, _)| i == next + ready.len()) {
            ready.push(early.swap_remove(at).1);
        }
        if ready.is_empty() {
            continue;
        }
        let mut slices: Vec<io::IoSlice<'_>> = ready.iter().map(|b| io::IoSlice::new(b)).collect();
        write_all_vectored(w, &mut slices)?;
        next += ready.len();
        spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .append(&mut ready);
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

/// What every `results.csv` row of one call shares: the sides, the filter
/// and each rule's field, escaped once.
struct CsvRows<'a> {
    outcome: &'a Outcome,
    left: &'a Side,
    right: &'a Side,
    filter: &'a StatusFilter,
    /// `,status,rule,` for every status and rule (or none), at
    /// [`CsvRows::middle_at`]: the row's middle in one copy.
    middles: Vec<Vec<u8>>,
    /// Rules, plus one for "no rule".
    rule_slots: usize,
}

impl<'a> CsvRows<'a> {
    fn new(
        outcome: &'a Outcome,
        left: &'a Side,
        right: &'a Side,
        filter: &'a StatusFilter,
    ) -> Self {
        let rule_slots = outcome.rule_names.len() + 1;
        let mut middles = vec![Vec::new(); Status::ALL.len() * rule_slots];
        for status in Status::ALL {
            let names = std::iter::once(None).chain(outcome.rule_names.iter().map(Some));
            for (slot, rule) in names.enumerate() {
                let middle = &mut middles[status as usize * rule_slots + slot];
                middle.push(b',');
                middle.extend_from_slice(status.as_str().as_bytes());
                middle.push(b',');
                if let Some(rule) = rule {
                    push_csv_field(middle, rule);
                }
                middle.push(b',');
            }
        }
        Self {
            outcome,
            left,
            right,
            filter,
            middles,
            rule_slots,
        }
    }

    /// `,status,rule,` of an assignment; a rule the outcome does not name
    /// reads as none (an empty field), as [`Outcome::rule_name`] has it.
    fn middle_at(&self, a: &Assignment) -> &[u8] {
        let rule = a
            .rule()
            .map(|k| usize::from(k) + 1)
            .filter(|&slot| slot < self.rule_slots)
            .unwrap_or(0);
        let at = a.status() as usize * self.rule_slots + rule;
        self.middles.get(at).map_or(b",,,", Vec::as_slice)
    }

    /// Appends the `results.csv` rows of `rows` (those passing the filter).
    fn push(&self, buf: &mut Vec<u8>, rows: &[(SideName, u32)]) {
        let mut batch: Vec<Gathered<'_>> = Vec::with_capacity(GATHER);
        let mut scales = ScaleCache(None);
        for group in rows.chunks(GATHER) {
            batch.clear();
            batch.extend(group.iter().map(|&(side, i)| {
                let i = i as usize;
                let (s, a, record_id) = record_at(self.outcome, self.left, self.right, side, i);
                Gathered {
                    side,
                    index: i,
                    a: *a,
                    record_id,
                    quote_id: needs_quotes(record_id),
                    line: s.line[i],
                    amount: s.amount[i],
                    currency: s.currency[i],
                }
            }));
            for g in &batch {
                if self.filter.contains(g.a.status()) {
                    let scale = scales.get(g.currency);
                    self.push_row(buf, g, scale);
                }
            }
        }
    }

    /// Appends row `r` of `results.csv`, with its line break.
    fn push_row(&self, buf: &mut Vec<u8>, r: &Gathered<'_>, scale: Scale) {
        if let Some(id) = r.a.match_id() {
            push_u64(buf, u64::from(id.get()));
        }
        // Fixed-size copies where the text is known: no call per field.
        match r.side {
            SideName::Left => buf.extend_from_slice(b",left,"),
            SideName::Right => buf.extend_from_slice(b",right,"),
        }
        push_csv_text(buf, r.record_id, r.quote_id);
        buf.push(b',');
        push_u64(buf, r.line);
        buf.extend_from_slice(self.middle_at(&r.a));
        if let Some(score) = r.a.score() {
            push_score(buf, score);
        }
        buf.push(b',');
        push_scaled(buf, r.amount, scale);
        buf.push(b',');
        buf.extend_from_slice(r.currency.as_bytes());
        buf.push(b',');
        if let Some(d) = r.a.amount_diff() {
            push_scaled(buf, d, scale);
        }
        buf.push(b',');
        if let Some(d) = r.a.date_diff_days() {
            push_i64(buf, i64::from(d));
        }
        // Extra columns: the record's own side's values, empty fields for
        // the other side's.
        let (own, before, after) = match r.side {
            SideName::Left => (self.left, 0, self.right.extra.len()),
            SideName::Right => (self.right, self.left.extra.len(), 0),
        };
        buf.resize(buf.len() + before, b',');
        for (_, col) in &own.extra {
            buf.push(b',');
            if let Some(v) = extra_value(col, r.index) {
                push_csv_field(buf, v);
            }
        }
        buf.resize(buf.len() + after, b',');
        buf.push(b'\n');
    }
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
    mut writer: impl Write,
    filter: &StatusFilter,
) -> Result<(), OutputError> {
    check(outcome, left, right)?;
    let order = order(outcome);
    // Rows are serialized in parallel chunks like the CSV's (same bytes
    // whatever the thread count).
    write_in_order(&[], &order, &mut writer, |rows, buf| {
        for &(side, i) in rows {
            let r = row_at(outcome, left, right, side, i as usize);
            if filter.contains(r.a.status()) {
                push_json_row(buf, &r)?;
            }
        }
        Ok(())
    })?;
    writer.flush()?;
    Ok(())
}

/// Appends row `r` as one JSON object and a line break.
fn push_json_row(buf: &mut Vec<u8>, r: &Row<'_>) -> Result<(), OutputError> {
    let cur = r.currency;
    serde_json::to_writer(
        &mut *buf,
        &JsonRow {
            match_id: r.a.match_id().map(|m| m.get()),
            side: r.side,
            record_id: r.record_id,
            line: r.line,
            status: r.a.status(),
            rule: r.rule,
            score: r.a.score(),
            amount: Dec(Minor {
                units: r.amount,
                currency: cur,
            }),
            currency: cur.as_str(),
            amount_diff: r.a.amount_diff().map(|units| {
                Dec(Minor {
                    units,
                    currency: cur,
                })
            }),
            date_diff_days: r.a.date_diff_days(),
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
        b.match_id.append_option(r.a.match_id().map(|m| m.get()));
        b.side.append_value(r.side.as_str());
        b.record_id.append_value(r.record_id);
        b.line.append_value(r.line);
        b.status.append_value(r.a.status().as_str());
        b.rule.append_option(r.rule);
        b.score.append_option(r.a.score());
        b.amount.append_value(widen(r.amount, r.currency));
        b.currency.append_value(r.currency.as_str());
        b.amount_diff
            .append_option(r.a.amount_diff().map(|d| widen(d, r.currency)));
        b.date_diff.append_option(r.a.date_diff_days());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_match_core_fmt() {
        let mut values = vec![0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 12_345, u64::MAX];
        values.extend((0..64).map(|k| 1u64 << k));
        values.extend((1..20).map(|k| 10u64.pow(k) - 1));
        values.extend((1..20).map(|k| 10u64.pow(k)));
        for v in values {
            for width in 1..=20 {
                let mut buf = Vec::new();
                push_padded(&mut buf, v, width);
                assert_eq!(buf, format!("{v:0width$}").into_bytes(), "{v} {width}");
            }
            let mut buf = Vec::new();
            push_i64(&mut buf, -((v >> 1) as i64));
            assert_eq!(buf, format!("{}", -((v >> 1) as i64)).into_bytes());
        }
        let mut buf = Vec::new();
        push_i64(&mut buf, i64::MIN);
        assert_eq!(buf, i64::MIN.to_string().into_bytes());
    }

    #[test]
    fn amounts_match_minor_display() {
        let mut cache = ScaleCache(None);
        for code in ["USD", "JPY", "BHD", "CLF", "EUR", "JPY"] {
            let currency = Currency::parse(code).unwrap();
            for units in [
                0,
                1,
                -1,
                5,
                -5,
                99,
                100,
                -100,
                12_345,
                -12_345,
                i64::MAX,
                i64::MIN,
            ] {
                let mut buf = Vec::new();
                push_scaled(&mut buf, units, cache.get(currency));
                let shown = Minor { units, currency }.to_string();
                assert_eq!(String::from_utf8(buf).unwrap(), shown, "{code} {units}");
            }
        }
    }

    #[test]
    fn scores_have_four_decimals() {
        for (score, text) in [
            (0.0, "0.0000"),
            (1.0, "1.0000"),
            (0.5, "0.5000"),
            (0.123_45, "0.1235"),
            (0.999_99, "1.0000"),
            (-1.0, "0.0000"),
            (2.0, "1.0000"),
        ] {
            let mut buf = Vec::new();
            push_score(&mut buf, score);
            assert_eq!(buf, text.as_bytes(), "{score}");
        }
    }

    /// A writer that takes at most `max` bytes per call and only the first
    /// slice of a vectored write, as `Write`'s default does.
    struct Dribble {
        out: Vec<u8>,
        max: usize,
    }

    impl Write for Dribble {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.max);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A writer that fails once it has taken `max` bytes.
    struct Failing {
        taken: usize,
        max: usize,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.taken >= self.max {
                return Err(io::Error::other("disk full"));
            }
            let n = buf.len().min(self.max - self.taken);
            self.taken += n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A failing writer or a failing chunk ends the call with that error
    /// (the formatting threads stop rather than wait on a writer that is
    /// gone), wherever in the output it happens.
    #[test]
    fn failures_stop_the_formatting_threads() {
        let order: Vec<(SideName, u32)> = (0..ROW_CHUNK as u32 * (LOOKAHEAD as u32 * 3))
            .map(|i| (SideName::Left, i))
            .collect();
        let format = |rows: &[(SideName, u32)], buf: &mut Vec<u8>| -> Result<(), OutputError> {
            for &(_, i) in rows {
                push_u64(buf, u64::from(i));
                buf.push(b'\n');
            }
            Ok(())
        };
        for max in [0, 10, 1 << 20, 2 << 20] {
            let mut w = Failing { taken: 0, max };
            let e = write_in_order(b"head\n", &order, &mut w, format).unwrap_err();
            assert!(e.to_string().contains("disk full"), "{max}: {e}");
        }
        let bad_chunk = |rows: &[(SideName, u32)], buf: &mut Vec<u8>| -> Result<(), OutputError> {
            if rows[0].1 as usize == ROW_CHUNK * 50 {
                return Err(OutputError::Io(io::Error::other("bad chunk")));
            }
            format(rows, buf)
        };
        let mut w = Vec::new();
        let e = write_in_order(b"", &order, &mut w, bad_chunk).unwrap_err();
        assert!(e.to_string().contains("bad chunk"), "{e}");
        // What went out is whole chunks from the start, none past the bad one.
        let mut before = Vec::new();
        format(&order[..ROW_CHUNK * 50], &mut before).unwrap();
        assert!(before.starts_with(&w), "{} bytes written", w.len());
        assert!(w.is_empty() || w.ends_with(b"\n"));
    }

    #[test]
    fn chunks_survive_short_writes() {
        let order: Vec<(SideName, u32)> = (0..ROW_CHUNK as u32 * (LOOKAHEAD as u32 + 9) + 7)
            .map(|i| {
                (
                    if i % 3 == 0 {
                        SideName::Right
                    } else {
                        SideName::Left
                    },
                    i,
                )
            })
            .collect();
        let format = |rows: &[(SideName, u32)], buf: &mut Vec<u8>| -> Result<(), OutputError> {
            for &(side, i) in rows {
                buf.extend_from_slice(side.as_str().as_bytes());
                push_u64(buf, u64::from(i));
                buf.push(b'\n');
            }
            Ok(())
        };
        let mut expected = b"head\n".to_vec();
        format(&order, &mut expected).unwrap();
        for max in [1 << 20, 4093, 1] {
            let mut w = Dribble {
                out: Vec::new(),
                max,
            };
            write_in_order(b"head\n", &order, &mut w, format).unwrap();
            assert!(w.out == expected, "max {max}");
        }
        let mut w = Vec::new();
        write_in_order(b"head\n", &[], &mut w, format).unwrap();
        assert_eq!(w, b"head\n");
    }
}
