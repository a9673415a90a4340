//! Synthetic reconciliation cases with their ground truth (`recon gen`).
//!
//! [`generate`] builds a seeded, deterministic case: a ledger (left) and a
//! bank statement (right) in different styles, plus the true match groups.
//! [`Case::write`] writes `left.csv`, `right.csv`, `rules.toml` and
//! `truth.csv` into a directory.
//!
//! The perturbations a real pair of exports shows are all here: reference
//! noise (case, spaces, punctuation, a dropped `INV` prefix), missing
//! references, value dates 0-3 days after booking, amounts a minor unit off,
//! split payments (one bank line paying 2..4 ledger lines), deducted bank fees
//! (true pairs the engine should report as breaks), unmatched records on both
//! sides, duplicated records, decoys (same amount, close date, another
//! counterparty), four currencies (USD, EUR, GBP, JPY) and refunds (negative
//! amounts). The bank side writes `DD/MM/YYYY` dates and `"1,234.56"` /
//! `(12.30)` amounts, or separate debit and credit columns.
//!
//! Records are stored compactly and rendered straight into a buffered writer
//! at write time: no allocation per record.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::money::Currency;

/// Errors of writing a generated case.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A file or directory of the case could not be created or written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory at fault.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
}

/// How the bank side (right) writes its amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BankAmountStyle {
    /// One `Amount` column with thousands separators and negatives in
    /// parentheses: `"1,234.56"`, `(12.30)`.
    #[default]
    Parenthesized,
    /// Separate `Debit` (money out) and `Credit` (money in) columns, both
    /// non-negative, one of them empty on each line.
    DebitCredit,
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenOptions {
    /// About how many records each side gets (the left side gets exactly this
    /// many, give or take one split group; the right side is within a few
    /// percent of it).
    pub records: usize,
    /// Seed of the random generator: the same options give the same case.
    pub seed: u64,
    /// The bank side's amount style.
    pub bank_amounts: BankAmountStyle,
}

impl Default for GenOptions {
    fn default() -> Self {
        Self {
            records: 10_000,
            seed: 42,
            bank_amounts: BankAmountStyle::default(),
        }
    }
}

/// Which side of the case a record is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CaseSide {
    /// The ledger (`left.csv`).
    Left,
    /// The bank statement (`right.csv`).
    Right,
}

impl CaseSide {
    /// `"left"` or `"right"`, as written in `truth.csv`.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseSide::Left => "left",
            CaseSide::Right => "right",
        }
    }
}

/// What kind of reference a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// No reference: the field is empty.
    Missing,
    /// An invoice number, `INV-0012345`.
    Invoice,
    /// A payment batch number, `BAT-0012345` (split payments).
    Batch,
}

/// How a reference is spelled (bank-side noise; the ledger is always `Clean`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefNoise {
    /// `INV-0012345`
    Clean,
    /// `inv-0012345`
    Lower,
    /// `INV 0012345`
    Spaced,
    /// `INV0012345`
    Squashed,
    /// `Inv.0012345`
    Dotted,
    /// `inv/0012345`
    Slashed,
    /// `0012345` (the prefix dropped; only for invoices)
    NoPrefix,
}

const NOISES: [RefNoise; 6] = [
    RefNoise::Lower,
    RefNoise::Spaced,
    RefNoise::Squashed,
    RefNoise::Dotted,
    RefNoise::Slashed,
    RefNoise::NoPrefix,
];

/// A reference: kind, number and spelling, rendered at write time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference {
    /// Invoice, batch or none.
    pub kind: RefKind,
    /// The document number.
    pub number: u32,
    /// The spelling.
    pub noise: RefNoise,
}

/// How a counterparty name is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameStyle {
    /// As in the books: `Northwind Traders Ltd`.
    Ledger,
    /// Upper case, as banks print it: `NORTHWIND TRADERS LTD`.
    Upper,
    /// Upper case without the legal form: `NORTHWIND TRADERS`.
    UpperShort,
}

/// One generated record, compact; ids are the row positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Booking (left) or value (right) date, days since 1970-01-01.
    pub date: i32,
    /// Signed amount in minor units of `currency`; negative is money out.
    pub amount: i64,
    /// The record's currency.
    pub currency: Currency,
    /// The reference.
    pub reference: Reference,
    /// Index into the counterparty name table.
    pub counterparty: u16,
    /// How the counterparty is spelled.
    pub name_style: NameStyle,
}

/// One row of `truth.csv`: record `index` of `side` belongs to `group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruthRow {
    /// The true match group, numbered from 1.
    pub group: u32,
    /// The record's side.
    pub side: CaseSide,
    /// The record's row position on its side (its id is derived from it).
    pub index: u32,
}

/// A generated case: both sides and the true match groups.
#[derive(Debug, Clone)]
pub struct Case {
    /// The options it was generated with.
    pub options: GenOptions,
    /// Ledger records, in file order.
    pub left: Vec<Record>,
    /// Bank records, in file order.
    pub right: Vec<Record>,
    /// Every record in a true match group, group by group. Records not listed
    /// are truly unmatched (including duplicates and decoys).
    pub truth: Vec<TruthRow>,
}

/// Where [`Case::write`] put the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasePaths {
    /// The ledger, `left.csv`.
    pub left: PathBuf,
    /// The bank statement, `right.csv`.
    pub right: PathBuf,
    /// Rules that reconcile the two, `rules.toml`.
    pub rules: PathBuf,
    /// The true match groups, `truth.csv`.
    pub truth: PathBuf,
}

/// The id of record `index` on `side`, e.g. `L0000001` or `B0000001`.
pub fn record_id(side: CaseSide, index: u32) -> String {
    let mut buf = Vec::with_capacity(12);
    push_id(&mut buf, side, index);
    String::from_utf8_lossy(&buf).into_owned()
}

const FIRST_WORDS: [&str; 40] = [
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Adventure",
    "Litware",
    "Tailspin",
    "Wingtip",
    "Proseware",
    "Lucerne",
    "Margie",
    "Humongous",
    "Trey",
    "Alpine",
    "Coho",
    "Datum",
    "Woodgrove",
    "Fourth",
    "Graphic",
    "Blue Yonder",
    "Southridge",
    "Wide World",
    "Bellows",
    "Kestrel",
    "Osprey",
    "Quarry",
    "Riverbend",
    "Saffron",
    "Thornton",
    "Umbra",
    "Vantage",
    "Zephyr",
    "Ironclad",
    "Müller",
    "Société Lumière",
    "Harbour",
    "Granite",
    "Juniper",
    "Meridian",
    "Pinnacle",
    "Evergreen",
];
const SECOND_WORDS: [&str; 16] = [
    "Traders",
    "Foods",
    "Logistics",
    "Consulting",
    "Systems",
    "Airlines",
    "Imports",
    "Textiles",
    "Energy",
    "Holdings",
    "Pharma",
    "Media",
    "Builders",
    "Motors",
    "Partners",
    "Software",
];
const SUFFIXES: [&str; 8] = ["Ltd", "GmbH", "SA", "Inc", "LLC", "BV", "plc", "AG"];
const NAMES: usize = FIRST_WORDS.len() * SECOND_WORDS.len();

fn name_parts(index: u16) -> (&'static str, &'static str, &'static str) {
    let i = usize::from(index) % NAMES;
    let first = FIRST_WORDS[i / SECOND_WORDS.len()];
    let second = SECOND_WORDS[i % SECOND_WORDS.len()];
    let suffix = SUFFIXES[(i * 7 + i / 3) % SUFFIXES.len()];
    (first, second, suffix)
}

/// Currencies with their weights (out of 100).
const CURRENCIES: [(&str, u32); 4] = [("USD", 55), ("EUR", 25), ("GBP", 12), ("JPY", 8)];

/// Event mix, per mille. Chosen so both sides get about the same number of
/// records: per event the left gets 0.94 records on average, the right too.
const P_PAIR: u32 = 760; // 1:1 pairs (normal, refunds, fees)
const P_SPLIT: u32 = 40; // 2..4 ledger lines paid by one bank line
const P_UNMATCHED_LEFT: u32 = 30;
const P_UNMATCHED_RIGHT: u32 = 80;
const P_DUP_LEFT: u32 = 10;
const P_DUP_RIGHT: u32 = 10;
const P_DECOY_LEFT: u32 = 20;
// the rest (50) are right-side decoys.

/// Days the case spans, from 2026-01-01.
const SPAN_DAYS: i64 = 365;
/// 2026-01-01 as days since 1970-01-01.
const START_DAY: i32 = 20_454;

struct Gen {
    rng: ChaCha8Rng,
    /// [`CURRENCIES`], parsed.
    currencies: Vec<(Currency, u32)>,
    next_number: u32,
    left: Vec<Record>,
    right: Vec<Record>,
    truth: Vec<TruthRow>,
    group: u32,
    /// The last 1:1 pair, which duplicates and decoys copy from.
    last_pair: Option<(Record, Record)>,
}

/// Generates a case. Deterministic: the same options give the same case.
pub fn generate(options: &GenOptions) -> Case {
    let n = options.records;
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(options.seed),
        currencies: CURRENCIES
            .iter()
            .filter_map(|&(code, weight)| Some((Currency::parse(code)?, weight)))
            .collect(),
        next_number: 1000,
        left: Vec::with_capacity(n + 4),
        right: Vec::with_capacity(n + n / 10 + 4),
        truth: Vec::with_capacity(2 * n),
        group: 0,
        last_pair: None,
    };
    while g.left.len() < n {
        // Dates advance with the file, as exports are sorted by date.
        let day = START_DAY + (g.left.len() as i64 * SPAN_DAYS / n.max(1) as i64) as i32;
        let roll = g.rng.random_range(0..1000u32);
        let mut t = P_PAIR;
        if roll < t {
            g.pair(day);
            continue;
        }
        t += P_SPLIT;
        if roll < t {
            g.split(day);
            continue;
        }
        t += P_UNMATCHED_LEFT;
        if roll < t {
            let r = g.lone(day, NameStyle::Ledger);
            g.left.push(r);
            continue;
        }
        t += P_UNMATCHED_RIGHT;
        if roll < t {
            let shift = g.rng.random_range(0..3);
            let mut r = g.lone(day + shift, NameStyle::Upper);
            r.reference.noise = g.noise();
            g.right.push(r);
            continue;
        }
        t += P_DUP_LEFT;
        if roll < t {
            match g.last_pair {
                Some((l, _)) => g.left.push(l),
                None => g.pair(day),
            }
            continue;
        }
        t += P_DUP_RIGHT;
        if roll < t {
            match g.last_pair {
                Some((_, r)) => g.right.push(r),
                None => g.pair(day),
            }
            continue;
        }
        t += P_DECOY_LEFT;
        let left_decoy = roll < t;
        match g.last_pair {
            Some(pair) => g.decoy(pair, left_decoy),
            None => g.pair(day),
        }
    }
    Case {
        options: *options,
        left: g.left,
        right: g.right,
        truth: g.truth,
    }
}

impl Gen {
    fn currency(&mut self) -> Currency {
        let mut roll = self.rng.random_range(0..100u32);
        for &(currency, weight) in &self.currencies {
            if roll < weight {
                return currency;
            }
            roll -= weight;
        }
        self.currencies[0].0
    }

    /// A positive amount, roughly log-uniform from 1.00 to 1,000,000.00
    /// (integers only: pick a magnitude, then a value below it).
    fn magnitude(&mut self) -> i64 {
        let exp = self.rng.random_range(3..=7u32);
        self.rng.random_range(100..10i64.pow(exp))
    }

    fn number(&mut self) -> u32 {
        self.next_number += self.rng.random_range(1..4);
        self.next_number
    }

    fn noise(&mut self) -> RefNoise {
        if self.rng.random_bool(0.45) {
            NOISES[self.rng.random_range(0..NOISES.len())]
        } else {
            RefNoise::Clean
        }
    }

    fn counterparty(&mut self) -> u16 {
        self.rng.random_range(0..NAMES as u16)
    }

    fn bank_style(&mut self) -> NameStyle {
        if self.rng.random_bool(0.4) {
            NameStyle::UpperShort
        } else {
            NameStyle::Upper
        }
    }

    fn lone(&mut self, day: i32, name_style: NameStyle) -> Record {
        let currency = self.currency();
        let mut amount = self.magnitude();
        if self.rng.random_bool(0.1) {
            amount = -amount;
        }
        let number = self.number();
        let counterparty = self.counterparty();
        Record {
            date: day,
            amount,
            currency,
            reference: Reference {
                kind: RefKind::Invoice,
                number,
                noise: RefNoise::Clean,
            },
            counterparty,
            name_style,
        }
    }

    fn open_group(&mut self) -> u32 {
        self.group += 1;
        self.group
    }

    fn push_left_in(&mut self, group: u32, r: Record) {
        self.truth.push(TruthRow {
            group,
            side: CaseSide::Left,
            index: self.left.len() as u32,
        });
        self.left.push(r);
    }

    fn push_right_in(&mut self, group: u32, r: Record) {
        self.truth.push(TruthRow {
            group,
            side: CaseSide::Right,
            index: self.right.len() as u32,
        });
        self.right.push(r);
    }

    /// A 1:1 pair: normal (90%), refund (~6%) or with a deducted fee (~4%).
    fn pair(&mut self, day: i32) {
        let mut l = self.lone(day, NameStyle::Ledger);
        l.amount = l.amount.abs();
        let roll = self.rng.random_range(0..100u32);
        let refund = roll < 6;
        let fee = (6..10).contains(&roll);
        if refund {
            l.amount = -l.amount;
        }
        if self.rng.random_bool(0.02) {
            l.reference.kind = RefKind::Missing;
        }
        let mut r = l;
        r.date = day + self.rng.random_range(0..=3);
        r.name_style = self.bank_style();
        r.reference.noise = self.noise();
        if r.reference.kind != RefKind::Missing && self.rng.random_bool(0.06) {
            r.reference.kind = RefKind::Missing;
        }
        if fee {
            // The bank deducted a charge: 1.50 to 25.00 (yen: 150 to 2,500).
            l.amount = l.amount.max(10_000);
            r.amount = l.amount - self.rng.random_range(150..=2_500);
        } else if l.currency.minor_units() > 0 && self.rng.random_bool(0.03) {
            // Off by a cent (currencies without cents are never off by one).
            r.amount += if self.rng.random_bool(0.5) { 1 } else { -1 };
        }
        let group = self.open_group();
        self.push_left_in(group, l);
        self.push_right_in(group, r);
        self.last_pair = Some((l, r));
    }

    /// 2..4 ledger lines with one batch reference, paid by one bank line.
    fn split(&mut self, day: i32) {
        let parts = self.rng.random_range(2..=4usize);
        let currency = self.currency();
        let counterparty = self.counterparty();
        let number = self.number();
        let reference = Reference {
            kind: RefKind::Batch,
            number,
            noise: RefNoise::Clean,
        };
        let group = self.open_group();
        let mut total = 0i64;
        for _ in 0..parts {
            let amount = self.magnitude();
            total += amount;
            let l = Record {
                date: day - self.rng.random_range(0..=2),
                amount,
                currency,
                reference,
                counterparty,
                name_style: NameStyle::Ledger,
            };
            self.push_left_in(group, l);
        }
        let mut noise = self.noise();
        if noise == RefNoise::NoPrefix {
            noise = RefNoise::Lower;
        }
        let r = Record {
            date: day + self.rng.random_range(0..=2),
            amount: total,
            currency,
            reference: Reference { noise, ..reference },
            counterparty,
            name_style: self.bank_style(),
        };
        self.push_right_in(group, r);
    }

    /// A truly unmatched record that looks like one side of `pair`: same
    /// amount and currency, a close date, another counterparty, its own or no
    /// reference.
    fn decoy(&mut self, pair: (Record, Record), on_left: bool) {
        let (l, r) = pair;
        let model = if on_left { r } else { l };
        let first = usize::from(model.counterparty) / SECOND_WORDS.len();
        let other_first = (first + self.rng.random_range(1..FIRST_WORDS.len())) % FIRST_WORDS.len();
        let counterparty = (other_first * SECOND_WORDS.len()
            + self.rng.random_range(0..SECOND_WORDS.len())) as u16;
        let number = self.number();
        let kind = if !on_left && self.rng.random_bool(0.5) {
            RefKind::Missing
        } else {
            RefKind::Invoice
        };
        let d = Record {
            date: model.date + self.rng.random_range(-1..=2),
            amount: model.amount,
            currency: model.currency,
            reference: Reference {
                kind,
                number,
                noise: RefNoise::Clean,
            },
            counterparty,
            name_style: if on_left {
                NameStyle::Ledger
            } else {
                self.bank_style()
            },
        };
        if on_left {
            self.left.push(d);
        } else {
            self.right.push(d);
        }
    }
}

impl Case {
    /// The left side's header line (ledger style).
    pub const LEFT_HEADER: &'static str =
        "id,booking_date,amount,currency,reference,counterparty,memo\n";

    /// Writes `left.csv`: `id, booking_date (YYYY-MM-DD), amount (1234.56),
    /// currency, reference, counterparty, memo`.
    ///
    /// # Errors
    /// When `out` fails.
    pub fn write_left<W: Write>(&self, out: W) -> io::Result<()> {
        let mut out = BufWriter::with_capacity(1 << 20, out);
        out.write_all(Self::LEFT_HEADER.as_bytes())?;
        let mut line = Vec::with_capacity(256);
        for (i, r) in self.left.iter().enumerate() {
            line.clear();
            push_id(&mut line, CaseSide::Left, i as u32);
            line.push(b',');
            push_iso_date(&mut line, r.date);
            line.push(b',');
            push_plain_amount(&mut line, r.amount, r.currency);
            line.push(b',');
            line.extend_from_slice(r.currency.as_str().as_bytes());
            line.push(b',');
            push_reference(&mut line, r.reference);
            line.push(b',');
            push_name(&mut line, r.counterparty, r.name_style);
            line.push(b',');
            push_memo(&mut line, r);
            line.push(b'\n');
            out.write_all(&line)?;
        }
        out.flush()
    }

    /// The right side's header line for `style`.
    pub fn right_header(style: BankAmountStyle) -> &'static str {
        match style {
            BankAmountStyle::Parenthesized => {
                "Transaction ID,Value Date,Amount,Ccy,Payment Reference,Payer,Narrative\n"
            }
            BankAmountStyle::DebitCredit => {
                "Transaction ID,Value Date,Debit,Credit,Ccy,Payment Reference,Payer,Narrative\n"
            }
        }
    }

    /// Writes `right.csv` in bank style: `DD/MM/YYYY` dates, `"1,234.56"` and
    /// `(12.30)` amounts or debit and credit columns, upper-case names.
    ///
    /// # Errors
    /// When `out` fails.
    pub fn write_right<W: Write>(&self, out: W) -> io::Result<()> {
        let style = self.options.bank_amounts;
        let mut out = BufWriter::with_capacity(1 << 20, out);
        out.write_all(Self::right_header(style).as_bytes())?;
        let mut line = Vec::with_capacity(256);
        for (i, r) in self.right.iter().enumerate() {
            line.clear();
            push_id(&mut line, CaseSide::Right, i as u32);
            line.push(b',');
            push_dmy_date(&mut line, r.date);
            line.push(b',');
            match style {
                BankAmountStyle::Parenthesized => {
                    push_bank_amount(&mut line, r.amount, r.currency, true);
                }
                BankAmountStyle::DebitCredit => {
                    if r.amount < 0 {
                        push_bank_amount(&mut line, -r.amount, r.currency, false);
                        line.push(b',');
                    } else {
                        line.push(b',');
                        push_bank_amount(&mut line, r.amount, r.currency, false);
                    }
                }
            }
            line.push(b',');
            line.extend_from_slice(r.currency.as_str().as_bytes());
            line.push(b',');
            push_reference(&mut line, r.reference);
            line.push(b',');
            push_name(&mut line, r.counterparty, r.name_style);
            line.push(b',');
            push_narrative(&mut line, r);
            line.push(b'\n');
            out.write_all(&line)?;
        }
        out.flush()
    }

    /// Writes `truth.csv`: `group_id,side,id`, one line per record in a true
    /// match group.
    ///
    /// # Errors
    /// When `out` fails.
    pub fn write_truth<W: Write>(&self, out: W) -> io::Result<()> {
        let mut out = BufWriter::with_capacity(1 << 20, out);
        out.write_all(b"group_id,side,id\n")?;
        let mut line = Vec::with_capacity(64);
        for t in &self.truth {
            line.clear();
            push_u64(&mut line, u64::from(t.group));
            line.push(b',');
            line.extend_from_slice(t.side.as_str().as_bytes());
            line.push(b',');
            push_id(&mut line, t.side, t.index);
            line.push(b'\n');
            out.write_all(&line)?;
        }
        out.flush()
    }

    /// The rules file that reconciles this case's two files.
    pub fn rules_toml(&self) -> String {
        let right_amount = match self.options.bank_amounts {
            BankAmountStyle::Parenthesized => "amount = \"Amount\"\n",
            BankAmountStyle::DebitCredit => "debit = \"Debit\"\ncredit = \"Credit\"\n",
        };
        RULES_TEMPLATE.replace("{right_amount}\n", right_amount)
    }

    /// Writes `left.csv`, `right.csv`, `rules.toml` and `truth.csv` into
    /// `dir`, creating it if needed.
    ///
    /// # Errors
    /// [`SynthError::Io`] naming the file that could not be written.
    pub fn write(&self, dir: &Path) -> Result<CasePaths, SynthError> {
        std::fs::create_dir_all(dir).map_err(|source| SynthError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let paths = CasePaths {
            left: dir.join("left.csv"),
            right: dir.join("right.csv"),
            rules: dir.join("rules.toml"),
            truth: dir.join("truth.csv"),
        };
        write_file(&paths.left, |f| self.write_left(f))?;
        write_file(&paths.right, |f| self.write_right(f))?;
        write_file(&paths.truth, |f| self.write_truth(f))?;
        write_file(&paths.rules, |f| f.write_all(self.rules_toml().as_bytes()))?;
        Ok(paths)
    }
}

/// Generates a case and writes it into `dir` (see [`Case::write`]).
///
/// # Errors
/// [`SynthError::Io`] naming the file that could not be written.
pub fn write_case(options: &GenOptions, dir: &Path) -> Result<(Case, CasePaths), SynthError> {
    let case = generate(options);
    let paths = case.write(dir)?;
    Ok((case, paths))
}

fn write_file(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), SynthError> {
    let io_err = |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::create(path).map_err(io_err)?;
    write(&mut file).map_err(io_err)?;
    file.sync_data().map_err(io_err)
}

/// The generated rules; `{right_amount}` is filled with the bank's amount columns.
const RULES_TEMPLATE: &str = r#"# Rules generated by `recon gen`: they reconcile left.csv (ledger) with
# right.csv (bank statement).
name = "synthetic-ledger-vs-bank"

[left]
id = "id"
date = "booking_date"
date_format = "%Y-%m-%d"
amount = "amount"
currency = "currency"
reference = "reference"
counterparty = "counterparty"
description = "memo"

[right]
id = "Transaction ID"
date = "Value Date"
date_format = "%d/%m/%Y"
{right_amount}
currency = "Ccy"
reference = "Payment Reference"
counterparty = "Payer"
description = "Narrative"

[normalize]
strip_prefixes = ["INV"]

[duplicates]
left = ["reference", "amount", "date"]
right = ["reference", "amount", "date"]

# Same reference, amount within a minor unit, value date 0-3 days after booking.
[[pass]]
name = "reference"
cardinality = "one_to_one"
reference = "normalized"
amount = { abs = "0.01" }
date = { before = 0, after = 3 }

# One bank line paying 2..4 ledger lines of one batch.
[[pass]]
name = "split"
cardinality = "many_to_one"
reference = "normalized"
amount = { abs = "0.00" }
date = { window_days = 4 }
max_group = 4

# No usable reference: amount, date and a similar counterparty name.
[[pass]]
name = "amount-date-name"
cardinality = "one_to_one"
reference = "ignore"
amount = { abs = "0.01" }
date = { before = 0, after = 3 }
counterparty = { similarity = "jaro_winkler", min = 0.85 }

# Same reference but the bank deducted a charge: a break, not a match.
[[pass]]
name = "fee-deducted"
kind = "break"
cardinality = "one_to_one"
reference = "normalized"
date = { before = 0, after = 3 }
"#;

fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

fn push_padded(buf: &mut Vec<u8>, n: u64, width: usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut n = n;
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 && tmp.len() - i >= width {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

fn push_id(buf: &mut Vec<u8>, side: CaseSide, index: u32) {
    buf.push(match side {
        CaseSide::Left => b'L',
        CaseSide::Right => b'B',
    });
    push_padded(buf, u64::from(index) + 1, 7);
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil(days: i32) -> (i64, u32, u32) {
    // Shift to an era starting on 0000-03-01; each era is 400 years.
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn push_iso_date(buf: &mut Vec<u8>, days: i32) {
    let (y, m, d) = civil(days);
    push_padded(buf, y.max(0) as u64, 4);
    buf.push(b'-');
    push_padded(buf, u64::from(m), 2);
    buf.push(b'-');
    push_padded(buf, u64::from(d), 2);
}

fn push_dmy_date(buf: &mut Vec<u8>, days: i32) {
    let (y, m, d) = civil(days);
    push_padded(buf, u64::from(d), 2);
    buf.push(b'/');
    push_padded(buf, u64::from(m), 2);
    buf.push(b'/');
    push_padded(buf, y.max(0) as u64, 4);
}

/// `1234.56`, `-12.30`, `1500` (JPY).
fn push_plain_amount(buf: &mut Vec<u8>, amount: i64, currency: Currency) {
    if amount < 0 {
        buf.push(b'-');
    }
    let abs = amount.unsigned_abs();
    let units = u32::from(currency.minor_units());
    let scale = 10u64.pow(units);
    push_u64(buf, abs / scale);
    if units > 0 {
        buf.push(b'.');
        push_padded(buf, abs % scale, units as usize);
    }
}

/// `"1,234.56"`, `(12.30)`, `"150,000"`: thousands separators (quoted when
/// present), negatives in parentheses when `parens`, else the absolute value.
fn push_bank_amount(buf: &mut Vec<u8>, amount: i64, currency: Currency, parens: bool) {
    let abs = amount.unsigned_abs();
    let units = u32::from(currency.minor_units());
    let scale = 10u64.pow(units);
    let major = abs / scale;
    let quoted = major >= 1000;
    if quoted {
        buf.push(b'"');
    }
    let negative = parens && amount < 0;
    if negative {
        buf.push(b'(');
    }
    let mut digits = Vec::with_capacity(20);
    push_u64(&mut digits, major);
    for (i, d) in digits.iter().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            buf.push(b',');
        }
        buf.push(*d);
    }
    if units > 0 {
        buf.push(b'.');
        push_padded(buf, abs % scale, units as usize);
    }
    if negative {
        buf.push(b')');
    }
    if quoted {
        buf.push(b'"');
    }
}

fn push_reference(buf: &mut Vec<u8>, r: Reference) {
    let prefix: &[u8] = match r.kind {
        RefKind::Missing => return,
        RefKind::Invoice => b"INV",
        RefKind::Batch => b"BAT",
    };
    let sep: &[u8] = match r.noise {
        RefNoise::Clean | RefNoise::Lower => b"-",
        RefNoise::Spaced => b" ",
        RefNoise::Squashed | RefNoise::NoPrefix => b"",
        RefNoise::Dotted => b".",
        RefNoise::Slashed => b"/",
    };
    match r.noise {
        RefNoise::NoPrefix => {}
        RefNoise::Lower | RefNoise::Slashed => {
            buf.extend(prefix.iter().map(u8::to_ascii_lowercase));
        }
        RefNoise::Dotted => {
            buf.push(prefix[0]);
            buf.extend(prefix[1..].iter().map(u8::to_ascii_lowercase));
        }
        _ => buf.extend_from_slice(prefix),
    }
    buf.extend_from_slice(sep);
    push_padded(buf, u64::from(r.number), 7);
}

fn push_name(buf: &mut Vec<u8>, index: u16, style: NameStyle) {
    let (first, second, suffix) = name_parts(index);
    match style {
        NameStyle::Ledger => {
            for part in [first, " ", second, " ", suffix] {
                buf.extend_from_slice(part.as_bytes());
            }
        }
        NameStyle::Upper | NameStyle::UpperShort => {
            let mut tmp = [0u8; 4];
            let parts: &[&str] = if style == NameStyle::Upper {
                &[first, " ", second, " ", suffix]
            } else {
                &[first, " ", second]
            };
            for part in parts {
                for c in part.chars().flat_map(char::to_uppercase) {
                    buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
            }
        }
    }
}

fn push_memo(buf: &mut Vec<u8>, r: &Record) {
    let word: &[u8] = match (r.reference.kind, r.amount < 0) {
        (RefKind::Batch, _) => b"Batch payment ",
        (_, true) => b"Refund ",
        (RefKind::Missing, false) => b"Receipt",
        (RefKind::Invoice, false) => b"Invoice ",
    };
    buf.extend_from_slice(word);
    push_reference(buf, r.reference);
}

fn push_narrative(buf: &mut Vec<u8>, r: &Record) {
    let word: &[u8] = match (r.amount < 0, r.reference.number % 3) {
        (true, _) => b"OUTWARD PAYMENT",
        (false, 0) => b"SEPA CREDIT TRANSFER",
        (false, 1) => b"FASTER PAYMENT RECEIVED",
        (false, _) => b"BANK GIRO CREDIT",
    };
    buf.extend_from_slice(word);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut buf = Vec::new();
        f(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    fn cur(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn dates_render_in_both_styles() {
        assert_eq!(render(|b| push_iso_date(b, START_DAY)), "2026-01-01");
        assert_eq!(render(|b| push_dmy_date(b, START_DAY + 59)), "01/03/2026");
        assert_eq!(render(|b| push_iso_date(b, 0)), "1970-01-01");
        assert_eq!(render(|b| push_iso_date(b, 19_417)), "2023-03-01");
    }

    #[test]
    fn amounts_render_in_both_styles() {
        let usd = cur("USD");
        let jpy = cur("JPY");
        assert_eq!(render(|b| push_plain_amount(b, 123_456, usd)), "1234.56");
        assert_eq!(render(|b| push_plain_amount(b, -1_230, usd)), "-12.30");
        assert_eq!(render(|b| push_plain_amount(b, 5, usd)), "0.05");
        assert_eq!(render(|b| push_plain_amount(b, 1_500, jpy)), "1500");
        assert_eq!(
            render(|b| push_bank_amount(b, 123_456, usd, true)),
            "\"1,234.56\""
        );
        assert_eq!(
            render(|b| push_bank_amount(b, -1_230, usd, true)),
            "(12.30)"
        );
        assert_eq!(
            render(|b| push_bank_amount(b, -123_456_789, usd, true)),
            "\"(1,234,567.89)\""
        );
        assert_eq!(
            render(|b| push_bank_amount(b, 150_000, jpy, true)),
            "\"150,000\""
        );
        assert_eq!(
            render(|b| push_bank_amount(b, -99_900, usd, false)),
            "999.00"
        );
    }

    #[test]
    fn references_render_with_noise() {
        let r = |noise| Reference {
            kind: RefKind::Invoice,
            number: 12_345,
            noise,
        };
        let cases = [
            (RefNoise::Clean, "INV-0012345"),
            (RefNoise::Lower, "inv-0012345"),
            (RefNoise::Spaced, "INV 0012345"),
            (RefNoise::Squashed, "INV0012345"),
            (RefNoise::Dotted, "Inv.0012345"),
            (RefNoise::Slashed, "inv/0012345"),
            (RefNoise::NoPrefix, "0012345"),
        ];
        for (noise, want) in cases {
            assert_eq!(render(|b| push_reference(b, r(noise))), want);
        }
    }

    #[test]
    fn same_seed_same_case_other_seed_other_case() {
        let opts = GenOptions {
            records: 2_000,
            ..GenOptions::default()
        };
        let a = generate(&opts);
        let b = generate(&opts);
        assert_eq!(a.left, b.left);
        assert_eq!(a.right, b.right);
        assert_eq!(a.truth, b.truth);
        let c = generate(&GenOptions { seed: 7, ..opts });
        assert_ne!(a.left, c.left);
    }

    #[test]
    fn sides_are_about_the_requested_size_and_truth_is_consistent() {
        let case = generate(&GenOptions {
            records: 20_000,
            ..GenOptions::default()
        });
        assert!((20_000..20_004).contains(&case.left.len()));
        let right = case.right.len() as f64;
        assert!((18_000.0..22_000.0).contains(&right), "right has {right}");
        let mut seen = std::collections::HashSet::new();
        for t in &case.truth {
            assert!(seen.insert((t.side, t.index)), "record twice in truth");
            let len = match t.side {
                CaseSide::Left => case.left.len(),
                CaseSide::Right => case.right.len(),
            };
            assert!((t.index as usize) < len);
        }
        // Every group has both sides, and split groups balance exactly.
        let mut groups: std::collections::BTreeMap<u32, (i64, i64, usize)> = Default::default();
        for t in &case.truth {
            let e = groups.entry(t.group).or_default();
            match t.side {
                CaseSide::Left => {
                    e.0 += case.left[t.index as usize].amount;
                    e.2 += 1;
                }
                CaseSide::Right => e.1 += case.right[t.index as usize].amount,
            }
        }
        let splits = groups.values().filter(|g| g.2 > 1).count();
        assert!(splits > 100, "only {splits} split groups");
        for (l, r, n) in groups.values() {
            if *n > 1 {
                assert_eq!(l, r);
            }
        }
    }

    #[test]
    fn generated_rules_parse_for_both_bank_styles() {
        for bank_amounts in [BankAmountStyle::Parenthesized, BankAmountStyle::DebitCredit] {
            let case = generate(&GenOptions {
                records: 10,
                seed: 1,
                bank_amounts,
            });
            let rules = crate::rules::Rules::from_toml_str(&case.rules_toml(), "rules.toml")
                .unwrap_or_else(|e| panic!("{bank_amounts:?}: {e}"));
            assert_eq!(rules.passes.len(), 4);
        }
    }

    #[test]
    fn writes_all_four_files() {
        let dir = tempfile::tempdir().unwrap();
        let (case, paths) = write_case(
            &GenOptions {
                records: 500,
                seed: 3,
                bank_amounts: BankAmountStyle::DebitCredit,
            },
            dir.path(),
        )
        .unwrap();
        let left = std::fs::read_to_string(&paths.left).unwrap();
        let right = std::fs::read_to_string(&paths.right).unwrap();
        let truth = std::fs::read_to_string(&paths.truth).unwrap();
        assert_eq!(left.lines().count(), case.left.len() + 1);
        assert_eq!(right.lines().count(), case.right.len() + 1);
        assert_eq!(truth.lines().count(), case.truth.len() + 1);
        assert!(left.starts_with(Case::LEFT_HEADER));
        assert!(right.starts_with("Transaction ID,Value Date,Debit,Credit,"));
        let rules = std::fs::read_to_string(&paths.rules).unwrap();
        assert!(rules.contains("debit = \"Debit\""));
        assert!(!rules.contains("{right_amount}"));
    }
}
