//! The matcher: duplicate detection, then the ordered cascade of passes, each
//! over the records earlier passes left free.
//!
//! Candidates come from blocking, never all pairs: the free records of one
//! side are sorted by `(block, day, amount, row)` where `block` hashes the
//! currency and (when the pass has a reference gate) the reference key, and
//! `day` is the date when the pass blocks on a short date window instead of a
//! reference. Each record of the other side then binary-searches its block,
//! its days and its amount range, and checks the remaining gates on the few
//! entries found. Keys are computed once per side into one buffer (no
//! allocation per record) and hashed with a stable hash, verified on use.
//!
//! One-to-one passes collect every candidate pair (at most
//! [`MAX_CANDIDATES_PER_RECORD`] best per record) in parallel, sort them by
//! rank (score desc, |amount diff|, |date diff|, left row, right row) and take
//! them greedily. When a record's best remaining candidates are tied on score
//! and both differences, the tied records form an `ambiguous` group instead.
//! Aggregate passes search bounded subsets (2..=`max_group` of at most
//! `max_candidates` candidates). Every sort key ends with row numbers, so the
//! result is the same whatever the thread count.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use crate::money::Currency;
use crate::outcome::{
    Assignment, Outcome, ReconError, RunInfo, SideName, Status, Summary, Timings,
};
use crate::rules::{
    Cardinality, Metric, Pass, PassKind, ReferenceRule, Role, RoleSet, Rules, Similarity,
};
use crate::side::{Side, TextColumn};
use crate::text;

/// Most candidates kept per record in a one-to-one pass (the best by rank).
pub const MAX_CANDIDATES_PER_RECORD: usize = 64;

/// Date windows up to this many days (before + after + 1) are searched day
/// by day inside a block; wider windows are checked per candidate.
const DAY_BLOCKING_LIMIT: u32 = 31;

/// Rows per parallel work item.
const CHUNK: usize = 8192;

/// Queries per range of blocks that a one-to-one pass builds at once (1M
/// queries take 8 ranges).
const QUERY_GROUP_ROWS: usize = 16 * CHUNK;

/// Chunks of queries per thread whose candidate edges a one-to-one pass
/// gathers before appending them to the whole.
const EDGE_GROUP_CHUNKS: usize = 4;

/// Receives progress while a run goes, and may stop it.
pub trait Progress: Sync {
    /// Reports that `done` of `total` records (both sides) have their final
    /// status. Called from the thread that called `run`, a few times per pass.
    fn update(&self, done: u64, total: u64);

    /// Whether the run should stop now (a deadline passed, a user asked).
    /// Polled from any of the run's threads: between passes, and while a pass
    /// works every 16k candidates checked (on each thread), so a pathological pass
    /// (every record with one amount, an aggregate pass at its limits) stops
    /// within milliseconds too. Once it answers `true` the run ends with
    /// [`ReconError::Cancelled`] and none of its work is kept, even if a later
    /// call answers `false`. The default never stops.
    fn cancelled(&self) -> bool {
        false
    }
}

/// Candidates checked (or aggregate subsets summed) between two polls of
/// [`Progress::cancelled`].
const POLL_WORK: u64 = 1 << 14;

/// A run's view of [`Progress::cancelled`] that stays `true` once seen.
struct Stop<'a> {
    progress: &'a dyn Progress,
    seen: AtomicBool,
}

impl<'a> Stop<'a> {
    fn new(progress: &'a dyn Progress) -> Self {
        Self {
            progress,
            seen: AtomicBool::new(false),
        }
    }

    /// Polls the run's [`Progress`]; `true` from then on once it said stop.
    fn now(&self) -> bool {
        if self.seen.load(Ordering::Relaxed) {
            return true;
        }
        let stop = self.progress.cancelled();
        if stop {
            self.seen.store(true, Ordering::Relaxed);
        }
        stop
    }

    /// Counts `work` done since the last poll into `since`, polling once it
    /// reaches [`POLL_WORK`]: cheap enough for the hot loops.
    fn after(&self, since: &mut u64, work: u64) -> bool {
        *since += work;
        if *since < POLL_WORK {
            return false;
        }
        *since = 0;
        self.now()
    }

    /// Whether a poll has said stop: checked after each step of the run, so a
    /// pass cut short is never reported as finished.
    fn seen(&self) -> bool {
        self.seen.load(Ordering::Relaxed)
    }
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn update(&self, _done: u64, _total: u64) {}
}

/// Runs a rule set over two sides. Cheap to share: build once, run many times.
#[derive(Debug, Clone)]
pub struct Reconciler {
    rules: Rules,
    prefixes: Vec<String>,
    /// [`QUERY_GROUP_ROWS`]; smaller in a test that wants many ranges.
    query_group_rows: usize,
}

/// Normalized per-record keys of one side and role: per chunk of [`CHUNK`]
/// rows one buffer and its key ends (kept apart rather than copied into one
/// big buffer), and for keys that blocks and duplicate keys are built from a
/// stable hash per record (0 = missing). Similarity keys are only read in
/// pairs, so they carry no hash: missing there means empty.
#[derive(Debug, Default)]
struct Keys {
    chunks: Vec<(String, Ends)>,
    /// Empty for keys built by [`Keys::build_unhashed`].
    hash: Vec<u64>,
}

/// Where each key of a chunk ends in its buffer: 4 bytes a key while the
/// buffer stays below 4 GiB (always, in practice), 8 beyond.
#[derive(Debug)]
enum Ends {
    Short(Vec<u32>),
    Long(Vec<usize>),
}

impl Ends {
    fn get(&self, j: usize) -> usize {
        match self {
            Ends::Short(e) => e[j] as usize,
            Ends::Long(e) => e[j],
        }
    }

    fn push(&mut self, end: usize) {
        match self {
            Ends::Short(e) => match u32::try_from(end) {
                Ok(end) => e.push(end),
                Err(_) => {
                    let mut long: Vec<usize> = Vec::with_capacity(e.capacity());
                    long.extend(e.iter().map(|&x| x as usize));
                    long.push(end);
                    *self = Ends::Long(long);
                }
            },
            Ends::Long(e) => e.push(end),
        }
    }
}

impl Keys {
    fn get(&self, i: usize) -> &str {
        let (data, ends) = &self.chunks[i / CHUNK];
        let j = i % CHUNK;
        let start = if j == 0 { 0 } else { ends.get(j - 1) };
        &data[start..ends.get(j)]
    }

    fn present(&self, i: usize) -> bool {
        match self.hash.get(i) {
            Some(&h) => h != 0,
            None => !self.get(i).is_empty(),
        }
    }

    /// Builds keys for `n` rows of `col` with `f` (raw text, output buffer), in
    /// parallel chunks, each with its hash. Rows where `keep` is false get no key.
    fn build(
        col: &TextColumn,
        n: usize,
        keep: impl Fn(usize) -> bool + Sync,
        f: impl Fn(&str, &mut String) + Sync,
    ) -> Keys {
        // The hashes go straight into their place in one vector.
        let mut hash = vec![0u64; n];
        let chunks = hash
            .par_chunks_mut(CHUNK)
            .enumerate()
            .map(|(c, hash)| {
                key_chunk(col, c, hash.len(), &keep, &f, |j, key| {
                    hash[j] = if key.is_empty() {
                        0
                    } else {
                        text::hash_key(key).max(1)
                    };
                })
            })
            .collect();
        Keys { chunks, hash }
    }

    /// As [`Keys::build`], without hashes: 8 bytes a record fewer, and no
    /// hashing, for keys only ever compared with each other.
    fn build_unhashed(
        col: &TextColumn,
        n: usize,
        keep: impl Fn(usize) -> bool + Sync,
        f: impl Fn(&str, &mut String) + Sync,
    ) -> Keys {
        let chunks = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| key_chunk(col, c, CHUNK.min(n - c * CHUNK), &keep, &f, |_, _| {}))
            .collect();
        Keys {
            chunks,
            hash: Vec::new(),
        }
    }
}

/// The keys of chunk `c` (its `len` rows) of `col`, made by `f` where `keep`,
/// each handed to `each` with its place in the chunk.
fn key_chunk(
    col: &TextColumn,
    c: usize,
    len: usize,
    keep: impl Fn(usize) -> bool,
    f: impl Fn(&str, &mut String),
    mut each: impl FnMut(usize, &str),
) -> (String, Ends) {
    let mut data = String::with_capacity(len * 12);
    let mut ends = Ends::Short(Vec::with_capacity(len));
    for j in 0..len {
        let i = c * CHUNK + j;
        let start = data.len();
        if keep(i)
            && let Some(raw) = text_at(col, i)
        {
            f(raw, &mut data);
        }
        each(j, &data[start..]);
        ends.push(data.len());
    }
    (data, ends)
}

fn text_at(col: &TextColumn, i: usize) -> Option<&str> {
    if i < col.len() { col.get(i) } else { None }
}

/// Everything precomputed about one side for one run.
#[derive(Debug, Default)]
struct Prepared {
    exact: Option<Keys>,
    normalized: Option<Keys>,
    counterparty: Option<Keys>,
    description: Option<Keys>,
}

impl Prepared {
    fn reference(&self, rule: ReferenceRule) -> Option<&Keys> {
        match rule {
            ReferenceRule::Exact => self.exact.as_ref(),
            ReferenceRule::Normalized => self.normalized.as_ref(),
            ReferenceRule::Ignore => None,
        }
    }
}

/// Mutable state of a run: assignments and which records are still free.
struct State {
    assigned: [Vec<Assignment>; 2],
    free: [Vec<bool>; 2],
    next_id: u32,
}

impl State {
    fn new_id(&mut self) -> Option<NonZeroU32> {
        self.next_id += 1;
        NonZeroU32::new(self.next_id)
    }

    fn settled(&self) -> u64 {
        self.free
            .iter()
            .map(|f| f.iter().filter(|x| !**x).count() as u64)
            .sum()
    }
}

/// Read-only inputs of a pass.
struct Ctx<'a> {
    sides: [&'a Side; 2],
    prep: [&'a Prepared; 2],
    /// Queries per range of blocks in a one-to-one pass.
    query_group_rows: usize,
    /// Polled while a pass works.
    stop: &'a Stop<'a>,
}

/// One index entry: a free record of one side. Sorted by the first four
/// fields (`row` is unique, so the rest never decides the order); the rest
/// carries what the gates check, so checking a candidate touches no other
/// memory unless a reference key is longer than 16 bytes or text is compared.
/// 48 bytes: the amount is stored once (it is both a sort key and what the
/// gates compare), and the date and key length are packed so the 16-byte key
/// head fits.
///
/// Every index is sorted by amount inside a `(block, day)` run, also where a
/// pass does not search by amount: such a search takes the whole run, which
/// stays one contiguous slice, and its results never depend on the order
/// inside the run (a one-to-one pass ranks its edges by a total order, an
/// aggregate pass sorts each record's parts by row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    block: u64,
    day: i32,
    /// The record's amount.
    amount: i64,
    row: u32,
    /// The record's date, [`NO_DATE`] when it has none (see [`Entry::date`]).
    date_or: i32,
    cur: Currency,
    /// The reference key's length in bytes, saturating at `u8::MAX`.
    key_len: u8,
    /// The reference key's first (up to) 16 bytes, zero-padded: keys of up to
    /// 16 bytes are compared whole here.
    key_head: [u64; 2],
}

/// [`Entry::date_or`] of a record without a date: the date parsers never
/// give a day this far from 1970 (a `Side` built by hand with it would read
/// as undated in a pass).
const NO_DATE: i32 = i32::MIN;

// The index is sorted and copied as whole entries: keep them this small.
const _: () = assert!(std::mem::size_of::<Entry>() == 48);

impl Entry {
    fn date(&self) -> Option<i32> {
        (self.date_or != NO_DATE).then_some(self.date_or)
    }
}

/// A candidate pair of a one-to-one pass; the derived order is the rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    /// `u64::MAX - score.to_bits()`: higher scores first.
    score_key: u64,
    /// `|right - left|` amount.
    adiff: u64,
    /// `|right - left|` days, `u32::MAX` when a date is missing.
    ddiff: u32,
    l: u32,
    r: u32,
    /// Signs of the differences ([`Edge::AMOUNT_BELOW`], [`Edge::DATE_BEFORE`]),
    /// carried so a chosen pair's result needs no second look at the sides.
    /// Never decides the order (`l`, `r` are unique) and fits the padding.
    signs: u8,
}

// Sorted as whole values: keep them this small.
const _: () = assert!(std::mem::size_of::<Edge>() == 32);

impl Edge {
    fn rank(&self) -> (u64, u64, u32) {
        (self.score_key, self.adiff, self.ddiff)
    }

    fn score(&self) -> f64 {
        f64::from_bits(u64::MAX - self.score_key)
    }

    /// The right amount is below the left one.
    const AMOUNT_BELOW: u8 = 1;
    /// The right date is before the left one.
    const DATE_BEFORE: u8 = 2;

    /// `right - left` amount, as `i64` (candidates whose difference does not
    /// fit are never edges).
    fn amount_diff(&self) -> Option<i64> {
        let d = i128::from(self.adiff);
        let d = if self.signs & Self::AMOUNT_BELOW != 0 {
            -d
        } else {
            d
        };
        i64::try_from(d).ok()
    }

    /// `right - left` days, `None` when a date is missing.
    fn date_diff(&self) -> Option<i32> {
        if self.ddiff == u32::MAX {
            return None;
        }
        let d = i64::from(self.ddiff);
        let d = if self.signs & Self::DATE_BEFORE != 0 {
            -d
        } else {
            d
        };
        i32::try_from(d).ok()
    }
}

/// The currency's three letters as one number (the letters' bytes in order).
/// Read from the bytes: `as_str` would check UTF-8 on every call, and blocks
/// are worked out for every row of every index.
#[inline]
fn currency_bits(c: Currency) -> u64 {
    let [a, b, d] = *c.as_bytes();
    (u64::from(a) << 16) | (u64::from(b) << 8) | u64::from(d)
}

/// Mixes currency and reference hash into a block id.
fn block_of(c: Currency, ref_hash: u64) -> u64 {
    mix64(ref_hash ^ currency_bits(c).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// The SplitMix64 finalizer: a stable, well-spread 64-bit mix.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// How a pass searches its index.
#[derive(Clone, Copy)]
struct Plan {
    reference: ReferenceRule,
    day_blocking: bool,
    /// Searches narrow each day to the query's amount tolerance (otherwise
    /// they take every amount of the day).
    amount_range: bool,
}

impl Plan {
    fn of(pass: &Pass) -> Self {
        // Aggregate searches do not narrow by amount, so a whole day range is
        // one contiguous slice there: block on days whatever the window.
        let day_blocking = pass.reference == ReferenceRule::Ignore
            && pass.date.is_some_and(|w| {
                w.before + w.after < DAY_BLOCKING_LIMIT || pass.cardinality != Cardinality::OneToOne
            });
        Self {
            reference: pass.reference,
            day_blocking,
            amount_range: pass.cardinality == Cardinality::OneToOne && pass.amount.is_some(),
        }
    }
}

/// Whether record `i` of side `s` can take part in `pass` at all.
fn eligible(ctx: &Ctx<'_>, state: &State, s: usize, i: usize, pass: &Pass) -> bool {
    state.free[s][i]
        && (pass.date.is_none() || ctx.sides[s].date[i].is_some())
        && ctx.prep[s]
            .reference(pass.reference)
            .is_none_or(|k| k.present(i))
}

fn block_for(ctx: &Ctx<'_>, s: usize, i: usize, plan: Plan) -> u64 {
    let h = ctx.prep[s]
        .reference(plan.reference)
        .map_or(0, |k| k.hash[i]);
    block_of(ctx.sides[s].currency[i], h)
}

/// The free records of side `s` that can take part in `pass`, sorted (see
/// [`Entry`]).
fn build_index(ctx: &Ctx<'_>, state: &State, s: usize, pass: &Pass, plan: Plan) -> Vec<Entry> {
    let mut index = Vec::new();
    index_of(
        ctx,
        s,
        plan,
        ctx.sides[s].len(),
        |i| i,
        |i| eligible(ctx, state, s, i, pass),
        |i| top_bucket(block_for(ctx, s, i, plan)),
        &mut index,
    );
    index
}

/// The records `row(j)` for `j` in `0..n` that `keep(j)` takes, of side
/// `s`, sorted (see [`Entry`]) into `out` (cleared first); `top(j)` must be
/// the [`top_bucket`] of record `row(j)`'s block.
#[expect(
    clippy::too_many_arguments,
    reason = "the closures say which rows, in what order"
)]
fn index_of(
    ctx: &Ctx<'_>,
    s: usize,
    plan: Plan,
    n: usize,
    row: impl Fn(usize) -> usize + Sync,
    keep: impl Fn(usize) -> bool + Sync,
    top: impl Fn(usize) -> usize + Sync,
    out: &mut Vec<Entry>,
) {
    let side = ctx.sides[s];
    let Some(&cur) = side.currency.first() else {
        out.clear();
        return;
    };
    // Only fills the vector before every slot is written.
    let blank = Entry {
        block: 0,
        day: 0,
        amount: 0,
        row: 0,
        date_or: NO_DATE,
        cur,
        key_len: 0,
        key_head: [0; 2],
    };
    sorted_rows(
        n,
        blank,
        keep,
        top,
        |j| {
            let i = row(j);
            let key = ctx.prep[s]
                .reference(plan.reference)
                .map_or("", |k| k.get(i));
            let mut head = [0u8; 16];
            let n = key.len().min(16);
            head[..n].copy_from_slice(&key.as_bytes()[..n]);
            let (h0, h1) = head.split_at(8);
            let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            Entry {
                block: block_for(ctx, s, i, plan),
                day: if plan.day_blocking {
                    side.date[i].unwrap_or(0)
                } else {
                    0
                },
                amount: side.amount[i],
                // Sides are checked to fit u32 before any pass runs.
                row: i as u32,
                date_or: side.date[i].unwrap_or(NO_DATE),
                cur: side.currency[i],
                key_len: u8::try_from(key.len()).unwrap_or(u8::MAX),
                key_head: [word(h0), word(h1)],
            }
        },
        |e| e.block,
        out,
    );
}

/// Bits of the leading `u64` key that pick a bucket in [`sorted_rows`]: at
/// least this many...
const MIN_BUCKET_BITS: u32 = 8;
/// ... at most this many ...
const MAX_BUCKET_BITS: u32 = 16;
/// ... aiming at this many items per bucket, few enough for a bucket to sort
/// by insertion in a handful of cache lines.
const BUCKET_ITEMS: usize = 32;
/// The leading bits [`sorted_rows`] places items by as it writes them; the
/// rest of the bucket bits are sorted out inside each of these buckets.
const TOP_BITS: u32 = 8;
const _: () = assert!(TOP_BITS <= MIN_BUCKET_BITS);
/// How many buckets [`TOP_BITS`] make.
const TOP_BUCKETS: usize = 1 << TOP_BITS;
/// A record's tag of no [`top_bucket`] (it takes no part): above them all.
const NO_TAG: u16 = u16::MAX;
const _: () = assert!(TOP_BUCKETS <= NO_TAG as usize);

/// The bucket of [`TOP_BITS`] that [`sorted_rows`] first places `lead` in.
fn top_bucket(lead: u64) -> usize {
    (lead >> (64 - TOP_BITS)) as usize
}

/// `make(i)` for every row `i` in `0..n` where `keep(i)`, sorted exactly as
/// `sort_unstable` would sort them (`Ord` must be total, e.g. end with a
/// unique row), in `out` (cleared first; a caller building one sorted
/// vector after another reuses its pages): no part is copied into a whole
/// and no second vector is sorted into.
///
/// `lead` must be the first field of the order, and `top(i)` the
/// [`top_bucket`] of `lead(&make(i))` (`keep` must answer the same twice;
/// `top` is called once a row kept, `make` once, and it should be cheaper
/// than `make`). Parallel chunks of [`CHUNK`] rows first count their items
/// per top bucket, which
/// gives every
/// chunk its own slots in every bucket; then each chunk writes its items
/// straight into them. Each bucket is then split in place by the next bits
/// of `lead` ([`permute`]) and those small buckets sorted, in parallel.
/// Hashed keys spread evenly, so buckets are small and sort in cache; one
/// large bucket (e.g. a key that only hashes the currency) just sorts like
/// the whole.
fn sorted_rows<T: Ord + Copy + Send + Sync>(
    n: usize,
    blank: T,
    keep: impl Fn(usize) -> bool + Sync,
    top: impl Fn(usize) -> usize + Sync,
    make: impl Fn(usize) -> T + Sync,
    lead: impl Fn(&T) -> u64 + Sync,
    out: &mut Vec<T>,
) {
    const TOP: usize = TOP_BUCKETS;
    let rows = |c: usize| (c * CHUNK..((c + 1) * CHUNK).min(n)).filter(|&i| keep(i));
    let counts: Vec<[usize; TOP]> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut count = [0; TOP];
            for i in rows(c) {
                count[top(i)] += 1;
            }
            count
        })
        .collect();
    let mut sizes = [0usize; TOP];
    for count in &counts {
        for (size, k) in sizes.iter_mut().zip(count) {
            *size += k;
        }
    }
    let total: usize = sizes.iter().sum();
    // Filled in parallel: a sequential fill of a large index (48 bytes a
    // record) faulted its pages in on one thread while the other idled.
    out.clear();
    out.par_extend(rayon::iter::repeat_n(blank, total));
    // Bucket by bucket, chunk by chunk: each chunk's slots in each bucket.
    let mut slots: Vec<Vec<&mut [T]>> = counts.iter().map(|_| Vec::with_capacity(TOP)).collect();
    let mut rest: &mut [T] = out;
    for b in 0..TOP {
        for (c, count) in counts.iter().enumerate() {
            let (head, tail) = rest.split_at_mut(count[b]);
            slots[c].push(head);
            rest = tail;
        }
    }
    slots
        .into_par_iter()
        .enumerate()
        .for_each(|(c, mut slots)| {
            for i in rows(c) {
                let t = make(i);
                let slot = &mut slots[top_bucket(lead(&t))];
                // Counted above for this very row, so the slot is there
                // (`top` and `lead` agree: a caller's contract, checked in
                // tests; a row without its slot would leave a blank item).
                match std::mem::take(slot).split_first_mut() {
                    Some((first, after)) => {
                        *first = t;
                        *slot = after;
                    }
                    None => debug_assert!(false, "top and lead disagree on row {i}"),
                }
            }
        });
    let bits = (total / BUCKET_ITEMS)
        .max(1)
        .ilog2()
        .clamp(MIN_BUCKET_BITS, MAX_BUCKET_BITS);
    let inner = bits - TOP_BITS;
    let mut buckets: Vec<&mut [T]> = Vec::with_capacity(TOP);
    let mut rest: &mut [T] = out;
    for size in sizes {
        let (head, tail) = rest.split_at_mut(size);
        if head.len() > 1 {
            buckets.push(head);
        }
        rest = tail;
    }
    let sort = |b: &mut [T]| {
        if b.len() > 1 << 16 {
            b.par_sort_unstable();
        } else {
            b.sort_unstable();
        }
    };
    buckets.into_par_iter().for_each(|bucket| {
        if inner == 0 || bucket.len() <= BUCKET_ITEMS {
            sort(bucket);
            return;
        }
        // Bits `TOP_BITS..TOP_BITS + inner` from the top (the ones above
        // are equal here).
        let sub = |t: &T| ((lead(t) << TOP_BITS) >> (64 - inner)) as usize;
        for b in permute(bucket, sub, inner) {
            sort(b);
        }
    });
}

/// Moves `items` in place into `2^bits` buckets by `bucket` (a value below
/// `2^bits`), in bucket order, and returns the buckets of more than one item.
/// One counting pass, then an American-flag permutation: the item in the
/// first unsettled slot of a bucket is carried to its own bucket's next slot,
/// the item found there on to its bucket, and so on until one belongs to the
/// first bucket. Each step settles one slot, and a settled slot is never
/// touched again, so the walk ends after at most `items.len()` steps.
fn permute<T: Copy>(items: &mut [T], bucket: impl Fn(&T) -> usize, bits: u32) -> Vec<&mut [T]> {
    let count = 1usize << bits;
    let mut starts = vec![0usize; count + 1];
    for t in items.iter() {
        starts[bucket(t) + 1] += 1;
    }
    for b in 0..count {
        starts[b + 1] += starts[b];
    }
    // `next[b]`: the first slot of bucket `b` not yet known to hold one of
    // its items; every slot of `b` before it does.
    let mut next = starts[..count].to_vec();
    for b in 0..count {
        while next[b] < starts[b + 1] {
            let mut t = items[next[b]];
            let mut tb = bucket(&t);
            while tb != b {
                let slot = next[tb];
                next[tb] += 1;
                std::mem::swap(&mut t, &mut items[slot]);
                tb = bucket(&t);
            }
            items[next[b]] = t;
            next[b] += 1;
        }
    }
    let mut buckets = Vec::new();
    let mut rest = items;
    for b in 0..count {
        let (head, tail) = rest.split_at_mut(starts[b + 1] - starts[b]);
        if head.len() > 1 {
            buckets.push(head);
        }
        rest = tail;
    }
    buckets
}

/// Entries of `block`, `day` with amounts in `lo..=hi`. `hint` is where the
/// previous search of this kind started: queries run in index key order, so
/// the next range is usually close by and a galloping search from there
/// takes a few steps instead of a full binary search over the index. The
/// result does not depend on the hint; `hint` is set to the range's start.
fn lookup<'e>(
    entries: &'e [Entry],
    hint: &mut usize,
    block: u64,
    day: i32,
    lo: i64,
    hi: i64,
) -> &'e [Entry] {
    let start = gallop(entries, *hint, |e| {
        (e.block, e.day, e.amount) < (block, day, lo)
    });
    *hint = start;
    let end = gallop(entries, start, |e| {
        (e.block, e.day, e.amount) <= (block, day, hi)
    });
    entries.get(start..end.max(start)).unwrap_or(&[])
}

/// `entries.partition_point(pred)` (for `pred` true on a prefix, false on the
/// rest), searched outwards from `from` in doubling steps, then by bisection
/// inside the last step.
fn gallop(entries: &[Entry], from: usize, pred: impl Fn(&Entry) -> bool) -> usize {
    let n = entries.len();
    let from = from.min(n);
    let (mut lo, mut hi);
    if from < n && pred(&entries[from]) {
        // The boundary is after `from`.
        lo = from + 1;
        let mut step = 1;
        loop {
            let probe = from + step;
            if probe >= n {
                hi = n;
                break;
            }
            if !pred(&entries[probe]) {
                hi = probe;
                break;
            }
            lo = probe + 1;
            step *= 2;
        }
    } else {
        // The boundary is at or before `from`.
        hi = from;
        let mut step = 1;
        loop {
            if step > from {
                lo = 0;
                break;
            }
            let probe = from - step;
            if pred(&entries[probe]) {
                lo = probe + 1;
                break;
            }
            hi = probe;
            step *= 2;
        }
    }
    lo + entries[lo..hi].partition_point(pred)
}

/// Days to search for a query record with date `d` whose candidates must lie
/// in `d + lo ..= d + hi`.
fn day_range(plan: Plan, d: Option<i32>, lo: i64, hi: i64) -> std::ops::RangeInclusive<i64> {
    match (plan.day_blocking, d) {
        (true, Some(d)) => i64::from(d) + lo..=i64::from(d) + hi,
        _ => 0..=0,
    }
}

/// The similarity of left row `a` and right row `b`; `None` when either has
/// no text to compare (empty, or nothing left once folded), which no
/// threshold lets through, not even `min = 0`.
fn similarity(
    keys: Option<&Keys>,
    other: Option<&Keys>,
    a: usize,
    b: usize,
    sim: Similarity,
) -> Option<f64> {
    let (ka, kb) = (keys?, other?);
    if !ka.present(a) || !kb.present(b) {
        return None;
    }
    Some(settled(match sim.similarity {
        Metric::JaroWinkler => text::jaro_winkler(ka.get(a), kb.get(b)),
        Metric::TokenSet => text::token_set_ratio(ka.get(a), kb.get(b)),
    }))
}

/// `score` rounded to 12 decimal places ([`SCORE_SCALE`]), as every score is
/// compared: floating point leaves a score a unit in its last place off the
/// value it stands for (Jaro-Winkler's exact 0.9 computes as
/// 0.8999999999999999, and two candidates both at 29/30 as
/// 0.9666666666666667 and 0.9666666666666666), which would drop a pair
/// exactly at `min` and pick one of two equal candidates instead of calling
/// them ambiguous.
fn settled(score: f64) -> f64 {
    (score * SCORE_SCALE).round() / SCORE_SCALE
}

/// Scores are compared in units of 10^-12 (see [`settled`]).
const SCORE_SCALE: f64 = 1e12;

/// Checks the identity gates (currency, reference, date window, similarity
/// thresholds) between left row `l` and right row `r`; the score when passed.
fn identity(ctx: &Ctx<'_>, pass: &Pass, l: usize, r: usize) -> Option<f64> {
    let (ls, rs) = (ctx.sides[0], ctx.sides[1]);
    if ls.currency[l] != rs.currency[r] {
        return None;
    }
    if let (Some(kl), Some(kr)) = (
        ctx.prep[0].reference(pass.reference),
        ctx.prep[1].reference(pass.reference),
    ) && (kl.hash[l] != kr.hash[r] || kl.get(l) != kr.get(r))
    {
        return None;
    }
    if let Some(w) = pass.date {
        let (Some(dl), Some(dr)) = (ls.date[l], rs.date[r]) else {
            return None;
        };
        if !w.accepts(i64::from(dr) - i64::from(dl)) {
            return None;
        }
    }
    score(ctx, pass, l, r)
}

/// The similarity score of left row `l` and right row `r`, `None` below a
/// threshold; 1 when the pass compares no text.
fn score(ctx: &Ctx<'_>, pass: &Pass, l: usize, r: usize) -> Option<f64> {
    let mut sum = 0.0;
    let mut n = 0u32;
    for (sim, pick) in [(pass.counterparty, 0usize), (pass.description, 1usize)] {
        let Some(sim) = sim else { continue };
        let (a, b) = if pick == 0 {
            (
                ctx.prep[0].counterparty.as_ref(),
                ctx.prep[1].counterparty.as_ref(),
            )
        } else {
            (
                ctx.prep[0].description.as_ref(),
                ctx.prep[1].description.as_ref(),
            )
        };
        let s = similarity(a, b, l, r, sim).filter(|&s| s >= sim.min)?;
        sum += s;
        n += 1;
    }
    Some(if n == 0 {
        1.0
    } else {
        settled(sum / f64::from(n))
    })
}

/// [`identity`] on index entries `le` (left) and `re` (right) of the same
/// plan, found in the same block.
fn identity_entries(ctx: &Ctx<'_>, pass: &Pass, le: &Entry, re: &Entry) -> Option<f64> {
    if le.cur != re.cur {
        return None;
    }
    if pass.reference != ReferenceRule::Ignore {
        // Equal blocks and currencies mean equal key hashes (the block mix is
        // a bijection); the key itself is verified inline or in the buffers.
        if le.block != re.block || le.key_len != re.key_len || le.key_head != re.key_head {
            return None;
        }
        if le.key_len > 16
            && let (Some(kl), Some(kr)) = (
                ctx.prep[0].reference(pass.reference),
                ctx.prep[1].reference(pass.reference),
            )
            && kl.get(le.row as usize) != kr.get(re.row as usize)
        {
            return None;
        }
    }
    if let Some(w) = pass.date {
        let (Some(dl), Some(dr)) = (le.date(), re.date()) else {
            return None;
        };
        if !w.accepts(i64::from(dr) - i64::from(dl)) {
            return None;
        }
    }
    if pass.counterparty.is_none() && pass.description.is_none() {
        return Some(1.0);
    }
    score(ctx, pass, le.row as usize, re.row as usize)
}

fn entry_date_diff(le: &Entry, re: &Entry) -> Option<i32> {
    match (le.date(), re.date()) {
        (Some(a), Some(b)) => i32::try_from(i64::from(b) - i64::from(a)).ok(),
        _ => None,
    }
}

fn date_diff(ctx: &Ctx<'_>, l: usize, r: usize) -> Option<i32> {
    match (ctx.sides[0].date[l], ctx.sides[1].date[r]) {
        (Some(a), Some(b)) => i32::try_from(i64::from(b) - i64::from(a)).ok(),
        _ => None,
    }
}

/// Candidate edges of left row `l` into `edges`; returns how many index
/// entries it checked.
fn candidates_1to1(
    ctx: &Ctx<'_>,
    pass: &Pass,
    plan: Plan,
    index: &[Entry],
    q: &Entry,
    hints: &mut [usize],
    edges: &mut Vec<Edge>,
) -> u64 {
    let (cur, amount) = (q.cur, q.amount);
    // The tolerance depends only on the query's amount and currency (every
    // candidate shares the currency): work it out once per query.
    let allowed = pass.amount.map(|t| t.allowed(amount, cur));
    let (lo, hi) = match (plan.amount_range, allowed) {
        (true, Some((below, above))) => {
            (amount.saturating_sub(below), amount.saturating_add(above))
        }
        _ => (i64::MIN, i64::MAX),
    };
    let (dlo, dhi) = pass
        .date
        .map_or((0, 0), |w| (-i64::from(w.before), i64::from(w.after)));
    let start = edges.len();
    let mut checked = 0;
    // Without text to score, a pass blocking on days ranks the candidates of
    // one (day, amount) run of the index by row alone (one score, amount
    // difference and date difference), and the run lists its rows in order.
    // So once this record holds MAX_CANDIDATES_PER_RECORD candidates and a
    // run's next entry would rank after all of them, so would the rest of the
    // run: it is skipped. The same candidates are kept as when every entry is
    // checked; a pass letting thousands of records of one amount and day
    // through for each costs a few hundred checks a record instead of
    // thousands.
    let by_row = plan.day_blocking && pass.counterparty.is_none() && pass.description.is_none();
    let mut worst: Option<Edge> = None;
    for (k, day) in day_range(plan, q.date(), dlo, dhi).enumerate() {
        let Ok(day) = i32::try_from(day) else {
            continue;
        };
        // One hint per day offset (the last one is shared by any beyond).
        let hint = &mut hints[k.min(hints.len() - 1)];
        let found = lookup(index, hint, q.block, day, lo, hi);
        let mut at = 0;
        while let Some(e) = found.get(at) {
            at += 1;
            checked += 1;
            // Fits in an i64: amounts are within `MAX_MINOR` (`check_side`).
            let diff = i128::from(e.amount) - i128::from(amount);
            let dd = entry_date_diff(q, e);
            let mut signs = 0;
            if diff < 0 {
                signs |= Edge::AMOUNT_BELOW;
            }
            if dd.is_some_and(|d| d < 0) {
                signs |= Edge::DATE_BEFORE;
            }
            let edge = |score: f64| Edge {
                score_key: u64::MAX - score.to_bits(),
                adiff: diff.unsigned_abs() as u64,
                ddiff: dd.map_or(u32::MAX, i32::unsigned_abs),
                l: q.row,
                r: e.row,
                signs,
            };
            if let Some(w) = worst
                && edge(1.0) >= w
            {
                // By row, the rest of this amount's run ranks after it too.
                at += gallop(&found[at..], 0, |x| x.amount <= e.amount);
                continue;
            }
            let Some(score) = identity_entries(ctx, pass, q, e) else {
                continue;
            };
            // As `AmountTolerance::accepts(diff, amount, cur)`.
            if let Some((below, above)) = allowed
                && (diff < -i128::from(below) || diff > i128::from(above))
            {
                continue;
            }
            edges.push(edge(score));
            if by_row && edges.len() - start >= 2 * MAX_CANDIDATES_PER_RECORD {
                keep_best(edges, start);
                worst = edges.last().copied();
            }
        }
    }
    if edges.len() - start > MAX_CANDIDATES_PER_RECORD {
        keep_best(edges, start);
    }
    checked
}

/// Keeps the best [`MAX_CANDIDATES_PER_RECORD`] of one record's edges, those
/// from `start` on, in rank order.
fn keep_best(edges: &mut Vec<Edge>, start: usize) {
    edges[start..].sort_unstable();
    edges.truncate(start + MAX_CANDIDATES_PER_RECORD);
}

/// The rows with a tag (not [`NO_TAG`]) grouped by range of tags (range `k`
/// holds tags `k * TOP_BUCKETS / ranges..(k + 1) * TOP_BUCKETS / ranges`),
/// in row order within a range (so a range's records are read in one sweep),
/// and where each range's rows start (`starts[k]..starts[k + 1]`).
fn rows_by_range(tags: &[u16], ranges: usize) -> (Vec<usize>, Vec<u32>) {
    let mut range_of = [0usize; TOP_BUCKETS];
    for k in 0..ranges {
        for r in &mut range_of[k * TOP_BUCKETS / ranges..(k + 1) * TOP_BUCKETS / ranges] {
            *r = k;
        }
    }
    let mut starts = vec![0usize; ranges + 1];
    for &t in tags.iter().filter(|&&t| t != NO_TAG) {
        starts[range_of[usize::from(t)] + 1] += 1;
    }
    for k in 0..ranges {
        starts[k + 1] += starts[k];
    }
    let mut next = starts.clone();
    let mut rows = vec![0u32; starts[ranges]];
    for (i, &t) in tags.iter().enumerate().filter(|&(_, &t)| t != NO_TAG) {
        let slot = &mut next[range_of[usize::from(t)]];
        // Sides are checked to fit u32 before any pass runs.
        rows[*slot] = i as u32;
        *slot += 1;
    }
    (starts, rows)
}

/// [`EdgeCount`] of a node with exactly one edge.
const ONE_EDGE: u8 = 1;

/// How many edges each node has, as far as [`take_alone`] asks: 0, one
/// ([`ONE_EDGE`]) or more (any other value). Counted by all threads at once:
/// the first edge at a node sets bit 0, any later one bit 1, so no count can
/// overflow however many edges a node has.
struct EdgeCount(Vec<AtomicU8>);

impl EdgeCount {
    fn of(n: usize, edges: &[Edge], node: impl Fn(&Edge) -> u32 + Sync) -> Self {
        let counts = made(n, || AtomicU8::new(0));
        edges.par_iter().with_min_len(CHUNK).for_each(|e| {
            let at = &counts[node(e) as usize];
            if at.fetch_or(1, Ordering::Relaxed) & 1 != 0 {
                at.fetch_or(2, Ordering::Relaxed);
            }
        });
        Self(counts)
    }

    fn one(&self, node: u32) -> bool {
        self.0[node as usize].load(Ordering::Relaxed) == ONE_EDGE
    }
}

/// No edge, or no partner (in [`take_alone`]'s per-record slots).
const NONE: u32 = u32::MAX;

/// Takes every alone edge of a one-to-one pass (the only edge of both its
/// records) as a group of its own, ids numbered in its left records' order.
/// Done by all threads: each alone edge is listed under its left record and
/// its left record under its right one (no two alone edges share a record,
/// so each slot is written at most once), the left records then take ids
/// chunk by chunk from a running count, and each right record copies its
/// left partner's assignment.
fn take_alone(edges: &[Edge], status: Status, rule: u16, state: &mut State) {
    let [n_left, n_right] = [state.free[0].len(), state.free[1].len()];
    let (count_l, count_r) = rayon::join(
        || EdgeCount::of(n_left, edges, |e| e.l),
        || EdgeCount::of(n_right, edges, |e| e.r),
    );
    let empty = |n: usize| made(n, || AtomicU32::new(NONE));
    // The alone edge of each left record and the left partner of each right
    // one (edge indices fit u32, as in `Adjacency`).
    let (edge_of_l, left_of_r) = rayon::join(|| empty(n_left), || empty(n_right));
    edges
        .par_iter()
        .enumerate()
        .with_min_len(CHUNK)
        .for_each(|(k, e)| {
            if count_l.one(e.l) && count_r.one(e.r) {
                edge_of_l[e.l as usize].store(k as u32, Ordering::Relaxed);
                left_of_r[e.r as usize].store(e.l, Ordering::Relaxed);
            }
        });
    drop((count_l, count_r));
    let occupied = |slot: &AtomicU32| {
        let v = slot.load(Ordering::Relaxed);
        (v != NONE).then_some(v as usize)
    };
    // Each chunk's first id: the ids before it plus those its records take.
    let taken: Vec<u32> = edge_of_l
        .par_chunks(CHUNK)
        .map(|c| c.iter().filter_map(occupied).count() as u32)
        .collect();
    let mut firsts = Vec::with_capacity(taken.len());
    for t in taken {
        firsts.push(state.next_id);
        state.next_id += t;
    }
    let [assigned_l, assigned_r] = &mut state.assigned;
    let [free_l, free_r] = &mut state.free;
    assigned_l
        .par_chunks_mut(CHUNK)
        .zip(free_l.par_chunks_mut(CHUNK))
        .zip(edge_of_l.par_chunks(CHUNK))
        .zip(firsts)
        .for_each(|(((assigned, free), slots), mut last_id)| {
            for (i, slot) in slots.iter().enumerate() {
                if let Some(k) = occupied(slot) {
                    let e = edges[k];
                    last_id += 1;
                    assigned[i] = Assignment::grouped(
                        NonZeroU32::new(last_id),
                        status,
                        Some(rule),
                        Some(e.score()),
                        e.amount_diff(),
                        e.date_diff(),
                    );
                    free[i] = false;
                }
            }
        });
    let assigned_l: &[Assignment] = assigned_l;
    assigned_r
        .par_chunks_mut(CHUNK)
        .zip(free_r.par_chunks_mut(CHUNK))
        .zip(left_of_r.par_chunks(CHUNK))
        .for_each(|((assigned, free), slots)| {
            for (i, slot) in slots.iter().enumerate() {
                if let Some(l) = occupied(slot) {
                    assigned[i] = assigned_l[l];
                    free[i] = false;
                }
            }
        });
}

/// Compressed adjacency: for each node, indices of its edges in rank order.
struct Adjacency {
    starts: Vec<u32>,
    edges: Vec<u32>,
}

impl Adjacency {
    fn build(n: usize, edges: &[Edge], node: impl Fn(&Edge) -> u32) -> Self {
        let mut starts = vec![0u32; n + 1];
        for e in edges {
            starts[node(e) as usize + 1] += 1;
        }
        for i in 0..n {
            starts[i + 1] += starts[i];
        }
        let mut fill = starts.clone();
        let mut out = vec![0u32; edges.len()];
        for (k, e) in edges.iter().enumerate() {
            let slot = &mut fill[node(e) as usize];
            out[*slot as usize] = k as u32;
            *slot += 1;
        }
        Self { starts, edges: out }
    }

    fn of(&self, node: usize) -> &[u32] {
        &self.edges[self.starts[node] as usize..self.starts[node + 1] as usize]
    }
}

fn one_to_one(ctx: &Ctx<'_>, pass: &Pass, rule: u16, state: &mut State) {
    let plan = Plan::of(pass);
    // Queries run in the index's own key order: consecutive binary searches
    // then land next to each other and stay in cache (in row order, each one
    // missed cache on most of its ~20 steps at 1M records). A query only
    // ever looks in its own block, so the work goes one range of blocks at
    // a time: that range's queries against that range's index. Only one
    // range of each is held besides the edges, in two vectors reused range
    // after range: at 1M records a side the reference pass touches ~6 MB of
    // index instead of 48 MB of fresh pages. Each record's top bucket is
    // worked out once ([`NO_TAG`] when it takes no part), for both sides at
    // once.
    let st: &State = state;
    let tags_of = |s: usize| -> Vec<u16> {
        (0..ctx.sides[s].len())
            .into_par_iter()
            .with_min_len(CHUNK)
            .map(|i| {
                if eligible(ctx, st, s, i, pass) {
                    top_bucket(block_for(ctx, s, i, plan)) as u16
                } else {
                    NO_TAG
                }
            })
            .collect()
    };
    let (tags_l, tags_r) = rayon::join(|| tags_of(0), || tags_of(1));
    // Each range's rows are listed once: scanning every record's tag once
    // per range (8 ranges at 1M) cost ~30 ms.
    let n_queries = tags_l.par_iter().filter(|&&t| t != NO_TAG).count();
    let ranges = n_queries
        .div_ceil(ctx.query_group_rows.max(1))
        .clamp(1, TOP_BUCKETS);
    let ((starts_l, rows_l), (starts_r, rows_r)) = rayon::join(
        || rows_by_range(&tags_l, ranges),
        || rows_by_range(&tags_r, ranges),
    );
    // Appended a few chunks per thread at a time rather than collected whole
    // and then concatenated: only one group's parts are ever held besides the
    // edges (a large vector grows in place, by remapping its pages).
    let group = CHUNK * EDGE_GROUP_CHUNKS * rayon::current_num_threads();
    let mut edges: Vec<Edge> = Vec::new();
    let (mut index, mut queries) = (Vec::new(), Vec::new());
    for k in 0..ranges {
        let left = &rows_l[starts_l[k]..starts_l[k + 1]];
        let right = &rows_r[starts_r[k]..starts_r[k + 1]];
        if left.is_empty() || right.is_empty() {
            continue;
        }
        let range_of = |s: usize, rows: &[u32], tags: &[u16], out: &mut Vec<Entry>| {
            index_of(
                ctx,
                s,
                plan,
                rows.len(),
                |j| rows[j] as usize,
                |_| true,
                |j| usize::from(tags[rows[j] as usize]),
                out,
            );
        };
        rayon::join(
            || range_of(1, right, &tags_r, &mut index),
            || range_of(0, left, &tags_l, &mut queries),
        );
        for queries in queries.chunks(group) {
            let parts: Vec<Vec<Edge>> = queries
                .par_chunks(CHUNK)
                .map(|chunk| {
                    let mut out = Vec::new();
                    let mut hints = [0usize; DAY_BLOCKING_LIMIT as usize];
                    let mut work = 0;
                    for q in chunk {
                        let checked =
                            candidates_1to1(ctx, pass, plan, &index, q, &mut hints, &mut out);
                        if ctx.stop.after(&mut work, 1 + checked) {
                            break;
                        }
                    }
                    out
                })
                .collect();
            if ctx.stop.seen() {
                // Cut short: the run is dropped, nothing more to work out.
                return;
            }
            edges.reserve(parts.iter().map(Vec::len).sum());
            for part in parts {
                edges.extend_from_slice(&part);
            }
        }
    }
    drop((index, queries, tags_l, tags_r, rows_l, rows_r));
    let status = match pass.kind {
        PassKind::Match => Status::Matched,
        PassKind::Break => Status::Break,
    };
    // Most edges are alone: neither of their records has another candidate
    // in this pass, so nothing competes for them and each is a group of its
    // own whatever the rank of the others. They take the first ids of the
    // pass, in their left records' order (the output lists groups by id, and
    // records read in input order stay in cache as it gathers them); only
    // the other edges are sorted by rank and taken greedily (in the
    // generated 1M case, none of the reference pass's 715k edges).
    take_alone(&edges, status, rule, state);
    // A taken edge's records are no longer free; an edge not taken has both
    // its records still free (a record taken with an uncontested edge has no
    // other edge).
    edges.retain(|e| state.free[0][e.l as usize]);
    if edges.is_empty() {
        // Every edge was alone (the usual case of a reference pass): no
        // per-record adjacency is worth building.
        return;
    }
    edges.par_sort_unstable();
    let (by_l, by_r) = rayon::join(
        || Adjacency::build(ctx.sides[0].len(), &edges, |e| e.l),
        || Adjacency::build(ctx.sides[1].len(), &edges, |e| e.r),
    );
    let mut cluster: Vec<(usize, usize, usize)> = Vec::new();
    let mut work = 0;
    for k in 0..edges.len() {
        let e = edges[k];
        let (l, r) = (e.l as usize, e.r as usize);
        if !state.free[0][l] || !state.free[1][r] {
            continue;
        }
        if ctx.stop.after(&mut work, 1) {
            return;
        }
        // Collect the tie cluster: records reachable through free edges of
        // exactly this rank. Size 2 means an unambiguous pair. A record is
        // taken (no longer free) as it joins: the cluster is never searched
        // for it, which made a large tie (thousands of records of one amount
        // and day) quadratic in its size.
        cluster.clear();
        cluster.push((0, l, k));
        cluster.push((1, r, k));
        state.free[0][l] = false;
        state.free[1][r] = false;
        let mut next = 0;
        while next < cluster.len() {
            let (s, node, _) = cluster[next];
            next += 1;
            let adj = if s == 0 { by_l.of(node) } else { by_r.of(node) };
            if ctx.stop.after(&mut work, adj.len() as u64) {
                return;
            }
            for &ei in adj {
                let o = edges[ei as usize];
                if o.rank() != e.rank() {
                    continue;
                }
                let (os, other) = if s == 0 {
                    (1, o.r as usize)
                } else {
                    (0, o.l as usize)
                };
                if state.free[os][other] {
                    state.free[os][other] = false;
                    cluster.push((os, other, ei as usize));
                }
            }
        }
        let id = state.new_id();
        let st = if cluster.len() == 2 {
            status
        } else {
            Status::Ambiguous
        };
        for &(s, node, ei) in &cluster {
            let via = edges[ei];
            state.assigned[s][node] = Assignment::grouped(
                id,
                st,
                Some(rule),
                Some(via.score()),
                via.amount_diff(),
                via.date_diff(),
            );
        }
    }
}

/// The best subset found for one record of an aggregate pass.
#[derive(Debug, Clone, Copy)]
struct Found {
    parts: [u32; crate::rules::MAX_GROUP_LIMIT],
    n: usize,
    diff: i64,
}

/// Per chunk of single records: `(row, parts start, parts len, best subset)`
/// and the chunk's candidate parts, flattened.
type SpeculativeChunk = (Vec<(u32, usize, usize, Option<Found>)>, Vec<Part>);

/// A candidate part of an aggregate group.
#[derive(Debug, Clone, Copy)]
struct Part {
    row: u32,
    ddiff: u32,
}

struct Aggregate<'a> {
    ctx: &'a Ctx<'a>,
    pass: &'a Pass,
    plan: Plan,
    /// The side of the single record.
    one: usize,
}

impl Aggregate<'_> {
    /// `(left row, right row)` for a single record `o` and a part `m`.
    fn pair(&self, o: usize, m: usize) -> (usize, usize) {
        if self.one == 0 { (o, m) } else { (m, o) }
    }

    /// Candidate parts of single record `o` (free at the start of the pass),
    /// the nearest `max_candidates` by date distance then row, sorted by row;
    /// returns how many index entries it checked. `hint` as in [`lookup`].
    fn candidates(&self, index: &[Entry], q: &Entry, hint: &mut usize, out: &mut Vec<Part>) -> u64 {
        out.clear();
        let ctx = self.ctx;
        let block = q.block;
        let (dlo, dhi) = self.pass.date.map_or((0, 0), |w| {
            if self.one == 0 {
                (-i64::from(w.before), i64::from(w.after))
            } else {
                (-i64::from(w.after), i64::from(w.before))
            }
        });
        // Entries of one block are sorted by (day, amount, row): the whole
        // day range is one slice, and the parts are put in row order below
        // whatever the order inside it.
        let days = day_range(self.plan, q.date(), dlo, dhi);
        let clamp = |d: i64| i32::try_from(d).unwrap_or(if d < 0 { i32::MIN } else { i32::MAX });
        let (first, last) = (clamp(*days.start()), clamp(*days.end()));
        let start = gallop(index, *hint, |e| (e.block, e.day) < (block, first));
        *hint = start;
        let end = gallop(index, start, |e| (e.block, e.day) <= (block, last));
        let found = index.get(start..end.max(start)).unwrap_or(&[]);
        for e in found {
            let (le, re) = if self.one == 0 { (q, e) } else { (e, q) };
            if identity_entries(ctx, self.pass, le, re).is_none() {
                continue;
            }
            let ddiff = entry_date_diff(le, re).map_or(u32::MAX, i32::unsigned_abs);
            out.push(Part { row: e.row, ddiff });
        }
        if out.len() > self.pass.max_candidates {
            out.sort_unstable_by_key(|p| (p.ddiff, p.row));
            out.truncate(self.pass.max_candidates);
        }
        out.sort_unstable_by_key(|p| p.row);
        found.len() as u64
    }

    /// The best subset of the free `parts` for `o`: smallest |amount diff|,
    /// then fewest records, then smallest total date distance, then first in
    /// row order. Each subset summed counts as one unit of `work` (see
    /// [`Stop::after`]); `None` as soon as the run is to stop.
    fn search(
        &self,
        o: usize,
        parts: &[Part],
        free: &[bool],
        usable: &mut Vec<Part>,
        work: &mut u64,
    ) -> Option<Found> {
        let ctx = self.ctx;
        let cur = ctx.sides[self.one].currency[o];
        let target = ctx.sides[self.one].amount[o];
        let tol = self.pass.amount.unwrap_or_default();
        let many = ctx.sides[1 - self.one];
        usable.clear();
        usable.extend(parts.iter().copied().filter(|p| free[p.row as usize]));
        let mut best: Option<(u128, usize, u64, Found)> = None;
        let mut pick = [0usize; crate::rules::MAX_GROUP_LIMIT];
        for size in 2..=self.pass.max_group.min(usable.len()) {
            // Enumerate index combinations of `size` in lexicographic order.
            for (i, p) in pick.iter_mut().enumerate().take(size) {
                *p = i;
            }
            loop {
                if ctx.stop.after(work, 1) {
                    return None;
                }
                let mut sum: i128 = 0;
                let mut dd: u64 = 0;
                for &p in &pick[..size] {
                    sum += i128::from(many.amount[usable[p].row as usize]);
                    dd += u64::from(usable[p].ddiff);
                }
                let diff = if self.one == 0 {
                    sum - i128::from(target)
                } else {
                    i128::from(target) - sum
                };
                if let Ok(d64) = i64::try_from(diff)
                    && tol.accepts(diff, target, cur)
                {
                    let key = (diff.unsigned_abs(), size, dd);
                    if best.as_ref().is_none_or(|b| key < (b.0, b.1, b.2)) {
                        let mut f = Found {
                            parts: [0; crate::rules::MAX_GROUP_LIMIT],
                            n: size,
                            diff: d64,
                        };
                        for (slot, &p) in f.parts.iter_mut().zip(&pick[..size]) {
                            *slot = usable[p].row;
                        }
                        best = Some((key.0, key.1, key.2, f));
                    }
                }
                // Advance to the next combination: bump the rightmost index
                // that can move, reset the ones after it.
                let mut advanced = false;
                let mut i = size;
                while i > 0 {
                    i -= 1;
                    if pick[i] < usable.len() - size + i {
                        pick[i] += 1;
                        for j in i + 1..size {
                            pick[j] = pick[j - 1] + 1;
                        }
                        advanced = true;
                        break;
                    }
                }
                if !advanced {
                    break;
                }
            }
            if best.as_ref().is_some_and(|b| b.0 == 0) {
                // Exact sums with fewer records beat any larger group.
                break;
            }
        }
        best.map(|b| b.3)
    }
}

fn aggregate(ctx: &Ctx<'_>, pass: &Pass, rule: u16, state: &mut State) {
    let one = match pass.cardinality {
        Cardinality::ManyToOne => 1,
        _ => 0,
    };
    let agg = Aggregate {
        ctx,
        pass,
        plan: Plan::of(pass),
        one,
    };
    let st: &State = state;
    // Queries in key order for cache locality (see `one_to_one`); the two
    // indexes are independent, so they are built at once.
    let (index, queries) = rayon::join(
        || build_index(ctx, st, 1 - one, pass, agg.plan),
        || build_index(ctx, st, one, pass, agg.plan),
    );
    // Speculative parallel search with every part free; committing in row
    // order below re-searches only where a part was taken meanwhile, which
    // gives exactly the sequential result.
    let chunks: Vec<SpeculativeChunk> = queries
        .par_chunks(CHUNK)
        .map(|chunk| {
            let (mut scratch, mut usable) = (Vec::new(), Vec::new());
            let (mut found, mut parts) = (Vec::new(), Vec::new());
            let mut hint = 0;
            let mut work = 0;
            for q in chunk {
                let o = q.row as usize;
                let checked = agg.candidates(&index, q, &mut hint, &mut scratch);
                if ctx.stop.after(&mut work, 1 + checked) {
                    break;
                }
                if scratch.len() < 2 {
                    continue;
                }
                let f = agg.search(o, &scratch, &st.free[1 - one], &mut usable, &mut work);
                found.push((q.row, parts.len(), scratch.len(), f));
                parts.extend_from_slice(&scratch);
            }
            (found, parts)
        })
        .collect();
    drop(index);
    drop(queries);
    if ctx.stop.seen() {
        return;
    }
    let mut order: Vec<(u32, usize, usize)> = chunks
        .iter()
        .enumerate()
        .flat_map(|(c, (found, _))| (0..found.len()).map(move |k| (found[k].0, c, k)))
        .collect();
    order.par_sort_unstable();
    let status = Status::Matched;
    let mut usable = Vec::new();
    let mut work = 0;
    for &(_, c, k) in &order {
        let (found, all_parts) = &chunks[c];
        let (o, start, len, spec) = found[k];
        let o = o as usize;
        let parts = &all_parts[start..start + len];
        let f = match spec {
            Some(f)
                if f.parts[..f.n]
                    .iter()
                    .all(|&p| state.free[1 - one][p as usize]) =>
            {
                Some(f)
            }
            _ => agg.search(o, parts, &state.free[1 - one], &mut usable, &mut work),
        };
        if ctx.stop.seen() {
            return;
        }
        commit(ctx, pass, rule, &agg, state, o, f, status);
    }
}

/// Records an aggregate group found for single record `o`.
#[allow(clippy::too_many_arguments)]
fn commit(
    ctx: &Ctx<'_>,
    pass: &Pass,
    rule: u16,
    agg: &Aggregate<'_>,
    state: &mut State,
    o: usize,
    f: Option<Found>,
    status: Status,
) {
    let one = agg.one;
    {
        let Some(f) = f else { return };
        let id = state.new_id();
        let mut worst: Option<i32> = None;
        let mut min_score = 1.0f64;
        for &p in &f.parts[..f.n] {
            let (l, r) = agg.pair(o, p as usize);
            let dd = date_diff(ctx, l, r);
            let score = identity(ctx, pass, l, r).unwrap_or(0.0);
            min_score = min_score.min(score);
            if let Some(d) = dd
                && worst.is_none_or(|w| d.unsigned_abs() > w.unsigned_abs())
            {
                worst = Some(d);
            }
            state.free[1 - one][p as usize] = false;
            state.assigned[1 - one][p as usize] =
                Assignment::grouped(id, status, Some(rule), Some(score), Some(f.diff), dd);
        }
        state.free[one][o] = false;
        state.assigned[one][o] =
            Assignment::grouped(id, status, Some(rule), Some(min_score), Some(f.diff), worst);
    }
}

/// Whether record `i` has every text role of the duplicate key: a record
/// missing its id, reference, counterparty or description is never a duplicate.
fn key_complete(side: &Side, prep: &Prepared, roles: &[Role], i: usize) -> bool {
    roles.iter().all(|role| match role {
        Role::Id => text_at(&side.id, i).is_some(),
        Role::Reference => prep.normalized.as_ref().is_some_and(|k| k.present(i)),
        Role::Counterparty => text_at(&side.counterparty, i).is_some(),
        Role::Description => text_at(&side.description, i).is_some(),
        Role::Amount | Role::Currency | Role::Date => true,
    })
}

/// Hash of record `i`'s duplicate key.
fn dup_hash(side: &Side, prep: &Prepared, roles: &[Role], i: usize) -> u64 {
    let mut h: u64 = 0x51_7cc1_b727_220a;
    let mut mix = |v: u64| {
        h = mix64(h.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ v);
    };
    for role in roles {
        match role {
            Role::Id => mix(text_at(&side.id, i).map_or(1, text::hash_key)),
            Role::Reference => mix(prep.normalized.as_ref().map_or(1, |k| k.hash[i])),
            // An amount is money: minor units of one currency (JPY 1000 and
            // USD 10.00 are both 1000 units, and not equal).
            Role::Amount => {
                mix(side.amount[i] as u64);
                mix(currency_bits(side.currency[i]));
            }
            Role::Currency => mix(currency_bits(side.currency[i])),
            Role::Date => mix(side.date[i].map_or(u64::MAX, |d| d as u64)),
            Role::Counterparty => mix(text_at(&side.counterparty, i).map_or(1, text::hash_key)),
            Role::Description => mix(text_at(&side.description, i).map_or(1, text::hash_key)),
        }
    }
    h
}

fn dup_equal(side: &Side, prep: &Prepared, roles: &[Role], a: usize, b: usize) -> bool {
    roles.iter().all(|role| match role {
        Role::Id => text_at(&side.id, a) == text_at(&side.id, b),
        Role::Reference => prep
            .normalized
            .as_ref()
            .is_none_or(|k| k.get(a) == k.get(b)),
        Role::Amount => side.amount[a] == side.amount[b] && side.currency[a] == side.currency[b],
        Role::Currency => side.currency[a] == side.currency[b],
        Role::Date => side.date[a] == side.date[b],
        Role::Counterparty => text_at(&side.counterparty, a) == text_at(&side.counterparty, b),
        Role::Description => text_at(&side.description, a) == text_at(&side.description, b),
    })
}

/// Bits per record of each filter [`duplicates`] keeps. With 8, a record
/// whose key is unique shares its filter bit with another record about once
/// in 8, so about 12 % of the unique records go on to the sort; the filter
/// of a side of 1M records (1 MiB) stays in a core's L2 cache, which the
/// 2 MiB of 16 bits a record did not (their filter pass took twice as long,
/// for half the sorting).
const DUP_FILTER_BITS: usize = 8;

/// Flags later copies of a duplicate key; the first occurrence stays free.
/// `free` and `assigned` are the side's entries of the run state.
///
/// Nearly every key is unique, so sorting every record by its key's hash
/// (to find equal ones next to each other) mostly sorts records that have no
/// copy. Instead each key's hash is worked out once (in parallel) and set in
/// a bit filter of [`DUP_FILTER_BITS`] bits a record, noting a bit set twice
/// in a second filter. Copies of a key share a hash and so a bit: only the
/// records whose bit was set twice can be copies, and only they are sorted by
/// hash and row, and compared key against key, first occurrence first.
fn duplicates(
    side: &Side,
    prep: &Prepared,
    roles: &[Role],
    free: &mut [bool],
    assigned: &mut [Assignment],
) {
    if roles.is_empty() {
        return;
    }
    // 0: the key is incomplete (such a record is never a duplicate).
    let hashes: Vec<u64> = (0..side.len())
        .into_par_iter()
        .with_min_len(CHUNK)
        .map(|i| {
            if key_complete(side, prep, roles, i) {
                dup_hash(side, prep, roles, i).max(1)
            } else {
                0
            }
        })
        .collect();
    let bits = (hashes.len() * DUP_FILTER_BITS).next_power_of_two().max(64);
    let shift = 64 - bits.trailing_zeros();
    let bit = |h: u64| {
        let b = (h >> shift) as usize;
        (b / 64, 1u64 << (b % 64))
    };
    let (mut once, mut twice) = (vec![0u64; bits / 64], vec![0u64; bits / 64]);
    for &h in hashes.iter().filter(|&&h| h != 0) {
        let (w, m) = bit(h);
        if once[w] & m != 0 {
            twice[w] |= m;
        }
        once[w] |= m;
    }
    drop(once);
    let mut keyed: Vec<(u64, u32)> = hashes
        .par_iter()
        .enumerate()
        .with_min_len(CHUNK)
        .filter(|&(_, &h)| {
            let (w, m) = bit(h);
            h != 0 && twice[w] & m != 0
        })
        // Sides are checked to fit u32 before any pass runs.
        .map(|(i, &h)| (h, i as u32))
        .collect();
    keyed.par_sort_unstable();
    let mut reps: Vec<usize> = Vec::new();
    for same in keyed.chunk_by(|a, b| a.0 == b.0) {
        reps.clear();
        for &(_, i) in same {
            let i = i as usize;
            if reps.iter().any(|&r| dup_equal(side, prep, roles, r, i)) {
                free[i] = false;
                assigned[i] = Assignment::DUPLICATE;
            } else {
                reps.push(i);
            }
        }
    }
}

/// Builds the similarity keys `pass` compares that `prep` lacks yet, for the
/// records `free` now (no pass ever scores a record that is not free).
fn similarity_keys(pass: &Pass, side: &Side, free: &[bool], prep: &mut Prepared) {
    let n = side.len();
    let keep = |i: usize| free[i];
    if pass.counterparty.is_some() && prep.counterparty.is_none() {
        prep.counterparty = Some(Keys::build_unhashed(
            &side.counterparty,
            n,
            keep,
            text::fold_for_similarity_into,
        ));
    }
    if pass.description.is_some() && prep.description.is_none() {
        prep.description = Some(Keys::build_unhashed(
            &side.description,
            n,
            keep,
            text::fold_for_similarity_into,
        ));
    }
}

/// `n` values of `make` (e.g. atomics, which are not `Copy`), made by all threads.
fn made<T: Send>(n: usize, make: impl Fn() -> T + Sync + Send) -> Vec<T> {
    (0..n)
        .into_par_iter()
        .with_min_len(CHUNK)
        .map(|_| make())
        .collect()
}

/// `n` copies of `value`, written by all threads.
fn filled<T: Copy + Send + Sync>(n: usize, value: T) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    out.par_extend(rayon::iter::repeat_n(value, n));
    out
}

/// Checks that every column of `side` has one entry per record, the text
/// roles in `needs` (what the rules compare) included: a role the side lacks
/// (an empty column, as when it is not mapped) would match nothing.
fn check_side(side: &Side, needs: RoleSet) -> Result<(), ReconError> {
    let n = side.len();
    if u32::try_from(n).is_err() {
        return Err(ReconError::TooManyRecords {
            source_name: side.source.clone(),
            records: n,
        });
    }
    let fixed = [
        ("currency", side.currency.len()),
        ("date", side.date.len()),
        ("line", side.line.len()),
    ];
    let text = [
        ("id", side.id.len(), false),
        (
            "reference",
            side.reference.len(),
            needs.contains(Role::Reference),
        ),
        (
            "counterparty",
            side.counterparty.len(),
            needs.contains(Role::Counterparty),
        ),
        (
            "description",
            side.description.len(),
            needs.contains(Role::Description),
        ),
    ];
    let extra = side.extra.iter().map(|(_, col)| ("extra", col.len()));
    // Any two amounts' difference must fit in an i64 (see `MAX_MINOR`).
    if let Some(i) = side
        .amount
        .iter()
        .position(|a| a.unsigned_abs() > crate::money::MAX_MINOR.unsigned_abs())
    {
        return Err(ReconError::AmountOutOfRange {
            source_name: side.source.clone(),
            line: side.line.get(i).copied().unwrap_or(i as u64 + 1),
            amount: side.amount[i],
        });
    }
    let present = text
        .into_iter()
        .filter(|&(_, found, needed)| found != 0 || (needed && n != 0))
        .map(|(column, found, _)| (column, found));
    for (column, found) in fixed.into_iter().chain(present).chain(extra) {
        if found != n {
            return Err(ReconError::MalformedSide {
                source_name: side.source.clone(),
                column,
                expected: n,
                found,
            });
        }
    }
    Ok(())
}

impl Reconciler {
    /// A reconciler for `rules`.
    pub fn new(rules: Rules) -> Self {
        let prefixes = text::normalize_prefixes(&rules.normalize.strip_prefixes);
        Self {
            rules,
            prefixes,
            query_group_rows: QUERY_GROUP_ROWS,
        }
    }

    /// The rules it runs.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Reconciles `left` against `right` with an empty [`RunInfo`].
    ///
    /// # Errors
    /// As [`Reconciler::run_with`].
    pub fn run(
        &self,
        left: &Side,
        right: &Side,
        progress: &dyn Progress,
    ) -> Result<Outcome, ReconError> {
        self.run_with(left, right, &RunInfo::default(), progress)
    }

    /// Reconciles `left` against `right`: duplicates first, then each pass in
    /// order over the records still free. `info` fills the audit block.
    ///
    /// # Errors
    /// [`ReconError::InvalidRules`] when rules built or changed in code break
    /// what a rules file guarantees (`max_group` past its limit, a match pass
    /// without an amount tolerance...), [`ReconError::MalformedSide`] when a
    /// side's columns (extra columns included) differ in length or a side
    /// lacks a text column the rules compare (as when loaded without that
    /// role), [`ReconError::AmountOutOfRange`] for an amount past
    /// [`crate::money::MAX_MINOR`], [`ReconError::TooManyRecords`] beyond
    /// `u32::MAX` records, [`ReconError::Cancelled`] once
    /// `progress` says stop ([`Progress::cancelled`]), and
    /// [`ReconError::Conservation`] if the results do not account for every
    /// record and amount exactly once.
    pub fn run_with(
        &self,
        left: &Side,
        right: &Side,
        info: &RunInfo,
        progress: &dyn Progress,
    ) -> Result<Outcome, ReconError> {
        let started = Instant::now();
        let span = tracing::info_span!("reconcile", left = left.len(), right = right.len());
        let _guard = span.enter();
        if let Some((at, reason)) = self.rules.broken_invariant() {
            return Err(ReconError::InvalidRules { at, reason });
        }
        check_side(left, self.rules.roles(SideName::Left))?;
        check_side(right, self.rules.roles(SideName::Right))?;
        // Polled before any work too: a run whose deadline has passed
        // prepares no keys.
        let stop = Stop::new(progress);
        if stop.now() {
            return Err(ReconError::Cancelled);
        }
        let total = (left.len() + right.len()) as u64;
        progress.update(0, total);

        let rules = &self.rules;
        let uses = |f: &dyn Fn(&Pass) -> bool| rules.passes.iter().any(f);
        let need_exact = uses(&|p| p.reference == ReferenceRule::Exact);
        let need_norm = uses(&|p| p.reference == ReferenceRule::Normalized);
        let prefixes = &self.prefixes;
        // Similarity keys are built when the first pass that compares them
        // runs, for the records still free then (later passes see a subset).
        let prepare = |side: &Side, dup_roles: &[Role]| -> Prepared {
            let n = side.len();
            let norm = need_norm || dup_roles.contains(&Role::Reference);
            let all = |_: usize| true;
            Prepared {
                exact: need_exact.then(|| {
                    Keys::build(&side.reference, n, all, |raw, out| out.push_str(raw.trim()))
                }),
                normalized: norm.then(|| {
                    Keys::build(&side.reference, n, all, |raw, out| {
                        text::normalize_reference_into(raw, prefixes, out)
                    })
                }),
                counterparty: None,
                description: None,
            }
        };
        let (pl, pr) = rayon::join(
            || prepare(left, &rules.duplicates.left),
            || prepare(right, &rules.duplicates.right),
        );
        // 64 MB of fresh pages at 1M records a side: written in parallel.
        let (al, ar) = rayon::join(
            || filled(left.len(), Assignment::UNMATCHED),
            || filled(right.len(), Assignment::UNMATCHED),
        );
        let mut state = State {
            assigned: [al, ar],
            free: [vec![true; left.len()], vec![true; right.len()]],
            next_id: 0,
        };
        {
            // The two sides' duplicates are independent: detect them at once.
            let [fl, fr] = &mut state.free;
            let [al, ar] = &mut state.assigned;
            rayon::join(
                || duplicates(left, &pl, &rules.duplicates.left, fl, al),
                || duplicates(right, &pr, &rules.duplicates.right, fr, ar),
            );
        }
        let mut timings = Timings {
            prepare_ms: started.elapsed().as_secs_f64() * 1e3,
            ..Timings::default()
        };
        progress.update(state.settled(), total);

        let (mut pl, mut pr) = (pl, pr);
        for (k, pass) in rules.passes.iter().enumerate() {
            if stop.now() {
                return Err(ReconError::Cancelled);
            }
            let t = Instant::now();
            let _pass = tracing::info_span!("pass", name = %pass.name).entered();
            let [fl, fr] = &state.free;
            rayon::join(
                || similarity_keys(pass, left, fl, &mut pl),
                || similarity_keys(pass, right, fr, &mut pr),
            );
            let ctx = Ctx {
                sides: [left, right],
                prep: [&pl, &pr],
                query_group_rows: self.query_group_rows,
                stop: &stop,
            };
            let rule = u16::try_from(k).unwrap_or(u16::MAX);
            match pass.cardinality {
                Cardinality::OneToOne => one_to_one(&ctx, pass, rule, &mut state),
                Cardinality::OneToMany | Cardinality::ManyToOne => {
                    aggregate(&ctx, pass, rule, &mut state)
                }
            }
            if stop.seen() {
                tracing::debug!("pass cut short: the run was cancelled");
                return Err(ReconError::Cancelled);
            }
            let settled = state.settled();
            tracing::debug!(settled, "pass done");
            timings.passes_ms.push(t.elapsed().as_secs_f64() * 1e3);
            progress.update(settled, total);
        }
        if stop.now() {
            return Err(ReconError::Cancelled);
        }
        let [la, ra] = state.assigned;
        timings.total_ms = started.elapsed().as_secs_f64() * 1e3;
        let summary = Summary::build(rules, left, right, (&la, &ra), info, timings)?;
        progress.update(total, total);
        Ok(Outcome {
            left: la,
            right: ra,
            rule_names: rules.passes.iter().map(|p| p.name.clone()).collect(),
            summary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded items `(lead, row, noise)` for rows `0..n`, the lead drawn from
    /// `leads` values spread over the whole `u64` range (so they land in many
    /// buckets), or from a few values sharing their top bits (one big bucket).
    fn item(seed: u64, leads: u64, one_bucket: bool) -> impl Fn(usize) -> (u64, u32, u8) + Sync {
        move |i| {
            let r = mix64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let l = r % leads;
            let lead = if one_bucket { l } else { mix64(l) };
            (lead, u32::MAX - i as u32, (r >> 56) as u8)
        }
    }

    /// [`sorted_rows`] gives what filtering then `sort_unstable` give.
    fn check(
        n: usize,
        keep: impl Fn(usize) -> bool + Sync,
        make: impl Fn(usize) -> (u64, u32, u8) + Sync,
    ) {
        let mut want: Vec<_> = (0..n).filter(|&i| keep(i)).map(&make).collect();
        want.sort_unstable();
        let top = |i: usize| top_bucket(make(i).0);
        // Into a vector that held something before, as a pass reuses one.
        let mut got = vec![(1, 2, 3); 7];
        sorted_rows(n, (0, 0, 0), &keep, top, &make, |t| t.0, &mut got);
        assert_eq!(got, want);
    }

    #[test]
    fn sorted_rows_is_sort_unstable() {
        let some = |i: usize| !mix64(i as u64).is_multiple_of(3);
        for (seed, n) in [
            (1, 2),
            (2, 3),
            (3, 100),
            (4, 5_000),
            (5, 3 * CHUNK + 5),
            (6, 70_000),
        ] {
            for leads in [1, 7, 1 << 40] {
                check(n, |_| true, item(seed, leads, false));
                check(n, some, item(seed, leads, false));
            }
        }
    }

    /// A one-to-one pass gives the same outcome however many ranges of
    /// blocks it works in: a query only ever looks in its own block, so each
    /// range's queries need only that range's index. A generated case (every
    /// pass kind, breaks, duplicates, ambiguous pairs) in one range against
    /// the same in dozens.
    #[test]
    fn one_to_one_results_do_not_depend_on_the_range_count() {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::synth::GenOptions {
            records: 6000,
            seed: 3,
            ..Default::default()
        };
        let (_, paths) = crate::synth::write_case(&options, dir.path()).unwrap();
        let rules = Rules::from_path(&paths.rules).unwrap();
        let left = crate::input::load_side(&paths.left, &rules.left).unwrap();
        let right = crate::input::load_side(&paths.right, &rules.right).unwrap();
        let whole = Reconciler::new(rules);
        let ranged = Reconciler {
            query_group_rows: 64,
            ..whole.clone()
        };
        let (a, b) = (
            whole.run(&left, &right, &NoProgress).unwrap(),
            ranged.run(&left, &right, &NoProgress).unwrap(),
        );
        assert!(a.left == b.left && a.right == b.right);
        let matched = |o: &Outcome| o.summary.rules.iter().map(|r| r.groups).collect::<Vec<_>>();
        assert_eq!(matched(&a), matched(&b));
        assert!(matched(&a).iter().all(|&g| g > 0), "{:?}", matched(&a));
    }

    /// Every tagged row lands in the range of its tag, once, in row order.
    #[test]
    fn rows_by_range_partitions_tagged_rows() {
        let tags: Vec<u16> = (0..5000u64)
            .map(|i| match mix64(i) % 300 {
                t if t >= TOP_BUCKETS as u64 => NO_TAG,
                t => t as u16,
            })
            .collect();
        for ranges in [1, 2, 3, 7, 8, TOP_BUCKETS] {
            let (starts, rows) = rows_by_range(&tags, ranges);
            let tagged = tags.iter().filter(|&&t| t != NO_TAG).count();
            assert_eq!(rows.len(), tagged);
            assert_eq!((starts[0], starts[ranges]), (0, tagged));
            for k in 0..ranges {
                let part = &rows[starts[k]..starts[k + 1]];
                let tops = k * TOP_BUCKETS / ranges..(k + 1) * TOP_BUCKETS / ranges;
                assert!(
                    part.windows(2).all(|w| w[0] < w[1]),
                    "range {k} of {ranges}"
                );
                assert!(
                    part.iter()
                        .all(|&i| tops.contains(&usize::from(tags[i as usize])))
                );
            }
        }
    }

    #[test]
    fn sorted_rows_small_inputs() {
        check(0, |_| true, item(1, 10, false));
        check(CHUNK + 1, |_| false, item(1, 10, false));
        check(1, |_| true, |_| (u64::MAX, 0, 0));
        check(
            3,
            |_| true,
            |i| ([u64::MAX, 0, u64::MAX][i], [1, 0, 0][i], 0),
        );
    }

    #[test]
    fn key_ends_past_4_gib_widen() {
        let mut ends = Ends::Short(vec![3]);
        ends.push(u32::MAX as usize);
        ends.push(u32::MAX as usize + 2);
        assert!(matches!(ends, Ends::Long(_)));
        let got: Vec<usize> = (0..3).map(|j| ends.get(j)).collect();
        assert_eq!(got, [3, u32::MAX as usize, u32::MAX as usize + 2]);
    }

    #[test]
    fn sorted_rows_one_big_bucket() {
        // Past the size where a bucket sorts in parallel.
        check(100_000, |_| true, item(7, 1000, true));
        check(100_000, |_| true, item(8, 1, true));
    }
}
