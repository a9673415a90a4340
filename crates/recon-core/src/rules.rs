//! The rules file: both sides' mappings, text normalization, duplicate keys
//! and the ordered cascade of matching passes, parsed once into types.
//!
//! The format is documented with a complete example in `docs/rules.md`.
//! [`Rules::from_toml_str`] validates everything up front, so the matcher never
//! re-parses a string: tolerances become exact decimals, windows day counts,
//! similarity thresholds checked floats.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::input::Format;
use crate::mapping::{MappingError, SideMapping};
use crate::money::Currency;
use crate::outcome::SideName;

/// Upper bound on `max_group` of an aggregate pass.
pub const MAX_GROUP_LIMIT: usize = 8;
/// Upper bound on `max_candidates` of an aggregate pass (the subset search is
/// exponential in it).
pub const MAX_CANDIDATES_LIMIT: usize = 16;
/// Upper bound on date window sizes, in days.
pub const MAX_WINDOW_DAYS: u32 = 366;
/// Most passes a rules file may hold (each result row names its pass by
/// index in 16 bits; real cascades have a handful).
pub const MAX_PASSES: usize = 1000;

/// Why a rules file was refused. Every variant names the file; parse and
/// validation errors carry the 1-based line and column and the offending value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// The rules file could not be read.
    #[error("{file}: cannot read rules file: {err}")]
    Io {
        /// The path as given.
        file: String,
        /// The underlying I/O error.
        #[source]
        err: std::io::Error,
    },
    /// The text is not valid TOML or does not have the rules file's shape
    /// (unknown key, wrong type, missing `[left]`...).
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        /// The rules file.
        file: String,
        /// 1-based line of the problem (0 when unknown).
        line: u32,
        /// 1-based column of the problem (0 when unknown).
        column: u32,
        /// What the TOML parser said.
        message: String,
    },
    /// A value has the right type but is not acceptable.
    #[error("{file}:{line}:{column}: {context}: `{key}` = {value:?}: {reason}")]
    Invalid {
        /// The rules file.
        file: String,
        /// 1-based line of the value (or of its table).
        line: u32,
        /// 1-based column of the value (or of its table).
        column: u32,
        /// Where: `pass "name"`, `[duplicates]`, `rules`.
        context: Box<str>,
        /// The key at fault.
        key: &'static str,
        /// The offending value as written.
        value: String,
        /// What was expected.
        reason: Box<str>,
    },
}

/// A non-negative exact decimal as written in the rules file: `mantissa / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decimal {
    /// The digits as an integer.
    pub mantissa: i64,
    /// Digits after the decimal point.
    pub scale: u32,
}

/// Why text is not a [`Decimal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecimalProblem {
    /// Not plain digits with at most one `.` (a sign, an exponent, a
    /// separator, nothing at all).
    NotDecimal,
    /// Plain digits, but more than [`Decimal::MAX_DIGITS`] of them.
    TooManyDigits(usize),
}

impl Decimal {
    /// The most digits a decimal may have, before and after the point
    /// together (leading and trailing zeros count): any such mantissa fits an
    /// `i64`.
    pub const MAX_DIGITS: usize = 18;

    /// Parses a plain non-negative decimal such as `"0.05"` or `"2"`.
    /// `None` for signs, exponents, separators or more than
    /// [`Decimal::MAX_DIGITS`] digits.
    pub fn parse(text: &str) -> Option<Self> {
        Self::read(text).ok()
    }

    /// [`Decimal::parse`], saying why the text is refused.
    fn read(text: &str) -> Result<Self, DecimalProblem> {
        let t = text.trim();
        let (int, frac) = match t.split_once('.') {
            Some((i, f)) => (i, f),
            None => (t, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(DecimalProblem::NotDecimal);
        }
        let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !digits_ok(int) || !digits_ok(frac) {
            return Err(DecimalProblem::NotDecimal);
        }
        let digits = int.len() + frac.len();
        if digits > Self::MAX_DIGITS {
            return Err(DecimalProblem::TooManyDigits(digits));
        }
        let mut mantissa: i64 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa * 10 + i64::from(b - b'0');
        }
        Ok(Self {
            mantissa,
            scale: u32::try_from(frac.len()).map_err(|_| DecimalProblem::TooManyDigits(digits))?,
        })
    }

    /// Whether this is a decimal [`Decimal::parse`] could give: not negative,
    /// at most [`Decimal::MAX_DIGITS`] digits.
    pub fn is_valid(self) -> bool {
        let digits = usize::try_from(self.scale).unwrap_or(usize::MAX);
        self.mantissa >= 0
            && digits <= Self::MAX_DIGITS
            && i128::from(self.mantissa) < pow10(u32::try_from(Self::MAX_DIGITS).unwrap_or(18))
    }

    /// The value in minor units of `currency`, rounded down (a tolerance of
    /// `"0.005"` USD allows 0 cents).
    pub fn to_minor(self, currency: Currency) -> i64 {
        let minor = u32::from(currency.minor_units());
        let m = i128::from(self.mantissa);
        let v = if minor >= self.scale {
            m.saturating_mul(pow10(minor - self.scale))
        } else {
            m / pow10(self.scale - minor)
        };
        i64::try_from(v).unwrap_or(i64::MAX)
    }
}

/// Powers of ten that fit an `i128`, looked up rather than multiplied out:
/// tolerances are converted once per candidate pair in a pass.
const POW10: [i128; 39] = {
    let mut t = [1i128; 39];
    let mut k = 1;
    while k < 39 {
        t[k] = t[k - 1] * 10;
        k += 1;
    }
    t
};

/// `10^k` (saturating at `i128::MAX` past the table, which a decimal of at
/// most 18 digits never reaches).
fn pow10(k: u32) -> i128 {
    POW10.get(k as usize).copied().unwrap_or(i128::MAX)
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = 10i64.pow(self.scale);
        if self.scale == 0 {
            write!(f, "{}", self.mantissa)
        } else {
            write!(
                f,
                "{}.{:0w$}",
                self.mantissa / p,
                self.mantissa % p,
                w = self.scale as usize
            )
        }
    }
}

/// How far apart two amounts may be: `right - left` may be as low as
/// `-max(below, pct% x |base|)` and as high as `max(above, pct% x |base|)`,
/// in major units of the records' currency. `base` is the left amount in 1:1
/// passes and the single record's amount in aggregate passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AmountTolerance {
    /// How much the right amount may be below the left.
    pub below: Decimal,
    /// How much the right amount may be above the left.
    pub above: Decimal,
    /// Percentage of `|base|`, e.g. `0.5` for half a percent.
    pub pct: Decimal,
}

impl AmountTolerance {
    /// The allowed `(below, above)` in minor units for a pair whose base amount
    /// is `base` (minor units of `currency`). Both are non-negative.
    pub fn allowed(&self, base: i64, currency: Currency) -> (i64, i64) {
        let pct = if self.pct.mantissa == 0 {
            0
        } else {
            let num = i128::from(base).abs() * i128::from(self.pct.mantissa);
            let den = 100i128 * 10i128.pow(self.pct.scale);
            i64::try_from(num / den).unwrap_or(i64::MAX)
        };
        (
            self.below.to_minor(currency).max(pct),
            self.above.to_minor(currency).max(pct),
        )
    }

    /// Whether `diff = right - left` is within the tolerance for `base`.
    pub fn accepts(&self, diff: i128, base: i64, currency: Currency) -> bool {
        let (below, above) = self.allowed(base, currency);
        diff >= -i128::from(below) && diff <= i128::from(above)
    }
}

/// How far apart two dates may be: `right - left` in days within
/// `-before..=after`. A record without a date never passes a date gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DateWindow {
    /// Days the right date may be before the left.
    pub before: u32,
    /// Days the right date may be after the left.
    pub after: u32,
}

impl DateWindow {
    /// Whether `diff = right - left` (days) is inside the window.
    pub fn accepts(&self, diff: i64) -> bool {
        diff >= -i64::from(self.before) && diff <= i64::from(self.after)
    }
}

/// How references must agree in a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceRule {
    /// Byte-equal after trimming surrounding whitespace.
    Exact,
    /// Equal after [`crate::text`] normalization (NFKC, case, punctuation,
    /// whitespace, configured prefixes, leading zeros).
    Normalized,
    /// References are not compared (the default).
    #[default]
    Ignore,
}

impl ReferenceRule {
    /// The rule's name as a rules file writes it (`"normalized"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ReferenceRule::Exact => "exact",
            ReferenceRule::Normalized => "normalized",
            ReferenceRule::Ignore => "ignore",
        }
    }
}

/// A text similarity metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Jaro-Winkler, good for names.
    JaroWinkler,
    /// Token-set ratio, good for descriptions with words in any order.
    TokenSet,
}

/// A soft text comparison: candidates scoring below `min` are dropped; the
/// score ranks the rest. A pair where either record's value is missing or
/// empty never passes, whatever `min` (even 0).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { similarity = \"jaro_winkler\", min = 0.9 }"
)]
pub struct Similarity {
    /// Which metric.
    pub similarity: Metric,
    /// Minimum score in `[0, 1]` (default 0: rank only).
    #[serde(default)]
    pub min: f64,
}

/// How many records each side contributes to one match group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cardinality {
    /// One left record with one right record.
    #[default]
    OneToOne,
    /// One left record with 2..=`max_group` right records whose sum it equals.
    OneToMany,
    /// 2..=`max_group` left records whose sum equals one right record.
    ManyToOne,
}

impl Cardinality {
    /// The cardinality's name as a rules file writes it (`"one_to_many"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Cardinality::OneToOne => "one_to_one",
            Cardinality::OneToMany => "one_to_many",
            Cardinality::ManyToOne => "many_to_one",
        }
    }
}

/// What a pass produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassKind {
    /// Pairs within every gate are `matched`.
    #[default]
    Match,
    /// Pairs agreeing on identity (reference, similarity) are `break`s, with
    /// their differences; `amount` / `date` become outer limits on those
    /// differences (absent: unlimited).
    Break,
}

/// A record role, for duplicate keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The record id.
    Id,
    /// The reference, normalized as for `reference = "normalized"`.
    Reference,
    /// The amount with its currency: equal only when both are (1000 JPY,
    /// 1.000 BHD and 10.00 USD, each 1000 minor units, are three keys).
    Amount,
    /// The currency.
    Currency,
    /// The date.
    Date,
    /// The counterparty (exact).
    Counterparty,
    /// The description (exact).
    Description,
}

impl Role {
    /// Every role, in declaration order.
    const ALL: [Role; 7] = [
        Role::Id,
        Role::Reference,
        Role::Amount,
        Role::Currency,
        Role::Date,
        Role::Counterparty,
        Role::Description,
    ];

    /// This role's bit in a [`RoleSet`].
    const fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The role's name as a rules file writes it (`"reference"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Id => "id",
            Role::Reference => "reference",
            Role::Amount => "amount",
            Role::Currency => "currency",
            Role::Date => "date",
            Role::Counterparty => "counterparty",
            Role::Description => "description",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`Role`]s: the roles of a side a run reads ([`Rules::roles`]), and
/// so the ones a loader has to build
/// ([`SideLoad::roles`](crate::input::SideLoad::roles)).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoleSet(u8);

impl RoleSet {
    /// No role.
    pub const EMPTY: Self = Self(0);
    /// Every role: what a side loaded without a set holds.
    pub const ALL: Self = Self((1 << Role::ALL.len()) - 1);
    /// The roles every run reads whatever its rules: the id (every result row
    /// names it), the amount, the currency and the date (passes, totals and the
    /// conservation check).
    pub const ALWAYS: Self = Self::EMPTY
        .with(Role::Id)
        .with(Role::Amount)
        .with(Role::Currency)
        .with(Role::Date);

    /// This set and `role`.
    #[must_use]
    pub const fn with(self, role: Role) -> Self {
        Self(self.0 | role.bit())
    }

    /// Whether `role` is in the set.
    pub const fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// The roles in the set, in [`Role`]'s declaration order.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl FromIterator<Role> for RoleSet {
    fn from_iter<I: IntoIterator<Item = Role>>(roles: I) -> Self {
        roles.into_iter().fold(Self::EMPTY, Self::with)
    }
}

impl fmt::Debug for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// One pass of the cascade, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    /// Unique name, reported per result row as `rule`.
    pub name: String,
    /// Match or break.
    pub kind: PassKind,
    /// 1:1, 1:N or N:1.
    pub cardinality: Cardinality,
    /// Reference gate.
    pub reference: ReferenceRule,
    /// Amount gate; `None` only in break passes without an `amount` limit.
    pub amount: Option<AmountTolerance>,
    /// Date gate; `None` when dates are ignored.
    pub date: Option<DateWindow>,
    /// Counterparty similarity.
    pub counterparty: Option<Similarity>,
    /// Description similarity.
    pub description: Option<Similarity>,
    /// Most records on the many side of an aggregate group (2..=8, default 4).
    pub max_group: usize,
    /// Most candidates searched per record in an aggregate pass (default 12).
    pub max_candidates: usize,
}

/// `[normalize]`: options of reference normalization.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Normalize {
    /// Prefixes removed from normalized references, as configured.
    pub strip_prefixes: Vec<String>,
}

/// `[duplicates]`: the roles forming each side's duplicate key; empty = no
/// duplicate detection on that side.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Duplicates {
    /// Left key roles.
    #[serde(default)]
    pub left: Vec<Role>,
    /// Right key roles.
    #[serde(default)]
    pub right: Vec<Role>,
}

/// A parsed, validated rules file.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Optional name of the rule set.
    pub name: Option<String>,
    /// How to read the left file.
    pub left: SideMapping,
    /// How to read the right file.
    pub right: SideMapping,
    /// Reference normalization options.
    pub normalize: Normalize,
    /// Duplicate keys per side.
    pub duplicates: Duplicates,
    /// The cascade, in order.
    pub passes: Vec<Pass>,
    /// Lowercase hex SHA-256 of the rules text, for the audit block.
    pub sha256: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    name: Option<String>,
    left: Spanned<SideMapping>,
    right: Spanned<SideMapping>,
    #[serde(default)]
    normalize: RawNormalize,
    #[serde(default)]
    duplicates: Option<Spanned<Duplicates>>,
    #[serde(default, rename = "pass")]
    passes: Vec<Spanned<RawPass>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNormalize {
    #[serde(default)]
    strip_prefixes: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPass {
    name: Spanned<String>,
    #[serde(default)]
    kind: PassKind,
    #[serde(default)]
    cardinality: Cardinality,
    #[serde(default)]
    reference: ReferenceRule,
    #[serde(default)]
    amount: Option<RawAmount>,
    #[serde(default)]
    date: Option<Spanned<RawDate>>,
    #[serde(default)]
    counterparty: Option<Spanned<Similarity>>,
    #[serde(default)]
    description: Option<Spanned<Similarity>>,
    #[serde(default)]
    max_group: Option<Spanned<usize>>,
    #[serde(default)]
    max_candidates: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table of tolerances such as { abs = \"0.01\" } (amounts are strings, so they stay exact)"
)]
struct RawAmount {
    #[serde(default)]
    abs: Option<Spanned<String>>,
    #[serde(default)]
    pct: Option<Spanned<String>>,
    #[serde(default)]
    below: Option<Spanned<String>>,
    #[serde(default)]
    above: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table of days such as { window_days = 3 } or { before = 1, after = 3 }"
)]
struct RawDate {
    #[serde(default)]
    window_days: Option<u32>,
    #[serde(default)]
    before: Option<u32>,
    #[serde(default)]
    after: Option<u32>,
}

/// The parser's message for a value of the wrong type or range (`invalid
/// type: string "0.01", expected struct RawAmount`) in the rules file's own
/// words: where (`[left]`, `pass "p"`), the key as a dotted path within
/// inline tables, the value as written, and what was expected without Rust's
/// type names. The key is found in the document as `toml` parses it, with
/// spans. `None` when the message is of another kind or no value of the
/// document sits at `span`.
fn mistyped(text: &str, span: std::ops::Range<usize>, message: &str) -> Option<String> {
    if !message.starts_with("invalid type: ") && !message.starts_with("invalid value: ") {
        return None;
    }
    let expected = message.split_once(", expected ")?.1;
    let written = text.get(span.clone())?.trim();
    if written.is_empty() || written.contains('\n') {
        return None;
    }
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut keys = Vec::new();
    let mut context = String::new();
    if !find_value(doc.get_ref(), &span, &mut keys, &mut context) {
        return None;
    }
    let path = keys.join(".");
    let expected = match expected {
        "a string" if path.starts_with("amount.") => {
            "a string such as \"0.01\" (amounts are strings, so they stay exact)"
        }
        "f64" | "f32" => "a number",
        "usize" | "u64" | "u32" | "u16" | "u8" => "a whole number, 0 or more",
        "i64" | "i32" => "a whole number",
        other => other,
    };
    Some(format!(
        "{context}`{path}` = {written}: expected {expected}"
    ))
}

/// Whether the value at `span` is inside `table`; if so, the keys leading to
/// it within its table of the rules file are in `keys` and where that table
/// is (as [`RulesError::Invalid`] says it: `[left]: `, `pass "p": `) is in
/// `context`, empty at the top level. Tables are searched whole: a table
/// written under a header (`[left]`, `[[pass]]`) does not span its keys.
fn find_value(
    table: &toml::de::DeTable<'_>,
    span: &std::ops::Range<usize>,
    keys: &mut Vec<String>,
    context: &mut String,
) -> bool {
    use toml::de::DeValue;
    let top = keys.is_empty() && context.is_empty();
    for (key, value) in table {
        let key = key.get_ref().to_string();
        let found = match value.get_ref() {
            _ if value.span() == *span => {
                keys.push(key);
                return true;
            }
            DeValue::Array(items) if top && key == "pass" => items.iter().any(|pass| {
                // An array of tables: each pass is named by its `name`.
                let Some(t) = pass.get_ref().as_table() else {
                    return false;
                };
                *context = match t.get("name").and_then(|n| n.get_ref().as_str()) {
                    Some(name) => format!("pass {name:?}: "),
                    None => "[[pass]]: ".to_owned(),
                };
                find_value(t, span, keys, context)
            }),
            DeValue::Table(t) if top => {
                *context = format!("[{key}]: ");
                find_value(t, span, keys, context)
            }
            DeValue::Table(t) => {
                keys.push(key);
                let found = find_value(t, span, keys, context);
                if !found {
                    keys.pop();
                }
                found
            }
            _ => false,
        };
        if found {
            return true;
        }
        if top {
            context.clear();
        }
    }
    false
}

/// Turns byte offsets into 1-based line and column.
struct Locator<'a> {
    text: &'a str,
    file: &'a str,
}

impl Locator<'_> {
    fn line_col(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before.len(), |nl| before.len() - nl - 1)
            + 1;
        (
            u32::try_from(line).unwrap_or(u32::MAX),
            u32::try_from(col).unwrap_or(u32::MAX),
        )
    }

    fn invalid(
        &self,
        span: std::ops::Range<usize>,
        context: &str,
        key: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> RulesError {
        let (line, column) = self.line_col(span.start);
        RulesError::Invalid {
            file: self.file.to_string(),
            line,
            column,
            context: context.into(),
            key,
            value: value.into(),
            reason: reason.into().into_boxed_str(),
        }
    }

    /// Checks a side's mapping as loading it would (the amount and currency
    /// keys, the direction indicators, the delimiter, the date format, no
    /// empty column name, no column named twice), so a bad one is refused
    /// here, at its key, before any file is read. Keys that would do nothing
    /// are refused even when written out at their defaults: indicators
    /// without a `direction`, `date_format` without a `date` column,
    /// `delimiter`, `has_header` or `encoding` with a `format` other than `csv`.
    fn side(&self, side: &Spanned<SideMapping>, name: &str) -> Result<(), RulesError> {
        let mapping = side.get_ref();
        let written = |key| self.key_span(side.span(), key) != side.span();
        let csv_only = |format| {
            ["delimiter", "has_header", "encoding"]
                .into_iter()
                .find(|key| written(key))
                .map(|key| MappingError::CsvOptionWithoutCsv { key, format })
        };
        let unread = ["debit_values", "credit_values"]
            .into_iter()
            .find(|key| mapping.direction.is_none() && written(key))
            .map(|key| MappingError::IndicatorsWithoutDirection { key })
            .or_else(|| {
                (mapping.date.is_none() && written("date_format"))
                    .then_some(MappingError::DateFormatWithoutDate)
            })
            .or_else(|| {
                mapping
                    .format
                    .filter(|f| *f != Format::Csv)
                    .and_then(csv_only)
            });
        let Some(e) = mapping.validate().err().or(unread) else {
            return Ok(());
        };
        let written_last = |keys: &[(&'static str, &Option<String>)]| {
            keys.iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v.clone())))
                .max_by_key(|(k, _)| self.key_span(side.span(), k).start)
                .unwrap_or((keys[0].0, String::new()))
        };
        let (key, value, reason) = match &e {
            MappingError::EmptyColumn { key } => (
                *key,
                String::new(),
                "a column name cannot be empty".to_owned(),
            ),
            // Named at the key written last (the amount key too many or
            // without its partner; the second currency way), with its value
            // as written; at the first key when none is set.
            MappingError::AmountStyle { .. } => {
                let (key, value) = written_last(&[
                    ("amount", &mapping.amount),
                    ("debit", &mapping.debit),
                    ("credit", &mapping.credit),
                    ("direction", &mapping.direction),
                ]);
                (key, value, e.to_string())
            }
            MappingError::CurrencySource => {
                let (key, value) = written_last(&[
                    ("currency", &mapping.currency),
                    ("currency_value", &mapping.currency_value),
                ]);
                (key, value, e.to_string())
            }
            MappingError::CurrencyValue { value } => (
                "currency_value",
                value.clone(),
                "not a three-letter currency code".to_owned(),
            ),
            MappingError::Delimiter { value } => (
                "delimiter",
                value.to_string(),
                "must be one ASCII character".to_owned(),
            ),
            MappingError::Encoding { value } => ("encoding", value.clone(), e.to_string()),
            MappingError::DelimiterReserved { value } => (
                "delimiter",
                value.to_string(),
                "a line break or the quote character `\"` cannot separate fields".to_owned(),
            ),
            MappingError::IndicatorsWithoutDirection { key } => {
                let values = if *key == "debit_values" {
                    &mapping.debit_values
                } else {
                    &mapping.credit_values
                };
                (
                    *key,
                    values.join(", "),
                    "indicator values are read only with `amount` + `direction`: \
                     map a `direction` column or remove the key"
                        .to_owned(),
                )
            }
            MappingError::IndicatorOverlap { debit, credit } => (
                "credit_values",
                credit.clone(),
                format!(
                    "also in `debit_values` (as {debit:?}); indicators are compared \
                     ignoring case and surrounding spaces, and one means debit or credit, not both"
                ),
            ),
            MappingError::DateFormat { format, reason } => {
                ("date_format", format.clone(), reason.clone())
            }
            MappingError::SameColumn {
                key,
                column,
                other,
                other_column,
            } => (
                *key,
                column.clone(),
                format!(
                    "also the `{other}` column (as {other_column:?}); column names are \
                     compared ignoring case and surrounding spaces, and `{other}` and `{key}` \
                     are two columns"
                ),
            ),
            MappingError::RepeatedExtra { column, first } => (
                "extra",
                column.clone(),
                format!(
                    "listed twice (also as {first:?}); column names are compared ignoring \
                     case and surrounding spaces, and a column is carried through once"
                ),
            ),
            MappingError::DateFormatWithoutDate => (
                "date_format",
                mapping.date_format.clone(),
                "a date format is read only with a `date` column: \
                 map a `date` column or remove the key"
                    .to_owned(),
            ),
            MappingError::CsvOptionWithoutCsv { key, format } => {
                let value = match *key {
                    "delimiter" => mapping.delimiter.to_string(),
                    "encoding" => mapping.encoding.to_string(),
                    _ => mapping.has_header.to_string(),
                };
                (
                    *key,
                    value,
                    format!(
                        "only CSV files have a delimiter, a header line and an encoding, and \
                         this side's `format` is {:?}: remove the key",
                        format.name()
                    ),
                )
            }
        };
        Err(self.invalid(
            self.key_span(side.span(), key),
            &format!("[{name}]"),
            key,
            value,
            reason,
        ))
    }

    /// Where `key` is set inside the table at `table` (a `key = ...` line or
    /// an inline table's entry), else the table itself. A `[table]`'s span is
    /// its header: its keys run to the next header.
    fn key_span(&self, table: std::ops::Range<usize>, key: &str) -> std::ops::Range<usize> {
        let Some(spanned) = self.text.get(table.clone()) else {
            return table;
        };
        let body = if spanned.starts_with('[') {
            let rest = &self.text[table.start..];
            let end = rest
                .match_indices('\n')
                .map(|(nl, _)| nl + 1)
                .find(|&line| rest[line..].trim_start().starts_with('['))
                .unwrap_or(rest.len());
            &rest[..end]
        } else {
            spanned
        };
        body.match_indices(key)
            .find(|&(at, _)| {
                // Only blanks, or an inline table's `{` or `,`, before it on
                // its line (not a comment, not part of a longer key).
                let line = body[..at].rfind('\n').map_or(0, |nl| nl + 1);
                let before = body[line..at].trim();
                let after = body[at + key.len()..].trim_start_matches([' ', '\t']);
                (before.is_empty() || before.ends_with('{') || before.ends_with(','))
                    && after.starts_with('=')
            })
            .map_or(table.clone(), |(at, _)| {
                table.start + at..table.start + at + key.len()
            })
    }

    /// The text at `span`, as written (empty if the span is not in the text).
    fn written(&self, span: std::ops::Range<usize>) -> String {
        self.text.get(span).unwrap_or_default().to_owned()
    }

    fn decimal(
        &self,
        s: &Spanned<String>,
        context: &str,
        key: &'static str,
    ) -> Result<Decimal, RulesError> {
        Decimal::read(s.get_ref()).map_err(|problem| {
            let reason = match problem {
                DecimalProblem::NotDecimal => {
                    "expected a non-negative decimal string such as \"0.05\"".to_owned()
                }
                DecimalProblem::TooManyDigits(n) => format!(
                    "a decimal has at most {} digits, counting every digit before and after \
                     the point (zeros too); this one has {n}",
                    Decimal::MAX_DIGITS
                ),
            };
            self.invalid(s.span(), context, key, s.get_ref().clone(), reason)
        })
    }
}

/// The side (`"left"` or `"right"`) whose mapping gives `role` no column, if any.
fn unmapped_side(left: &SideMapping, right: &SideMapping, role: Role) -> Option<&'static str> {
    if !left.maps(role) {
        Some("left")
    } else if !right.maps(role) {
        Some("right")
    } else {
        None
    }
}

impl Rules {
    /// Parses and validates a rules file's text. `source` names it in errors.
    ///
    /// # Errors
    /// [`RulesError::Parse`] for bad TOML or an unknown / mistyped key,
    /// [`RulesError::Invalid`] for a value out of range, a side mapping that
    /// loading would refuse ([`SideMapping::validate`], or an empty column
    /// name), a contradictory pass (e.g. a break pass without a reference
    /// gate) or a key that could do nothing (`max_group` on a one-to-one
    /// pass, `date_format` without a `date` column, a prefix without a
    /// letter or digit...); both with line and column.
    pub fn from_toml_str(text: &str, source: &str) -> Result<Self, RulesError> {
        let loc = Locator { text, file: source };
        let raw: RawRules = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| loc.line_col(s.start));
            let mut message = e.message().to_string();
            // The parser names no key it finds twice: the span holds it.
            if message == "duplicate key"
                && let Some(key) = e.span().and_then(|s| text.get(s))
                && !key.is_empty()
                && !key.contains('\n')
            {
                message = format!("duplicate key `{key}`");
            } else if let Some(plain) = e.span().and_then(|s| mistyped(text, s, &message)) {
                message = plain;
            }
            RulesError::Parse {
                file: source.to_string(),
                line,
                column,
                message,
            }
        })?;
        loc.side(&raw.left, "left")?;
        loc.side(&raw.right, "right")?;
        let (left, right) = (raw.left.into_inner(), raw.right.into_inner());
        // A prefix without a letter or digit normalizes to nothing, and
        // normalization drops it: it would remove nothing.
        if let Some(p) =
            raw.normalize.strip_prefixes.iter().find(|p| {
                crate::text::normalize_prefixes(std::slice::from_ref(p.get_ref())).is_empty()
            })
        {
            return Err(loc.invalid(
                p.span(),
                "[normalize]",
                "strip_prefixes",
                p.get_ref().clone(),
                "a prefix needs a letter or a digit: normalized references keep only those, \
                 so this one would remove nothing",
            ));
        }
        if raw.passes.is_empty() {
            return Err(loc.invalid(
                0..0,
                "rules",
                "pass",
                "",
                "at least one [[pass]] is required",
            ));
        }
        if let Some(extra) = raw.passes.get(MAX_PASSES) {
            return Err(loc.invalid(
                extra.span(),
                "rules",
                "pass",
                format!("{} passes", raw.passes.len()),
                format!("a rules file holds at most {MAX_PASSES} passes"),
            ));
        }
        let mut names = BTreeSet::new();
        let mut passes = Vec::with_capacity(raw.passes.len());
        for sp in &raw.passes {
            let p = sp.get_ref();
            let name = p.name.get_ref().trim().to_string();
            let ctx = format!("pass {name:?}");
            if name.is_empty() {
                return Err(loc.invalid(
                    p.name.span(),
                    "[[pass]]",
                    "name",
                    p.name.get_ref().clone(),
                    "a pass needs a name with a letter, digit or sign in it",
                ));
            }
            if !names.insert(name.clone()) {
                return Err(loc.invalid(
                    p.name.span(),
                    &ctx,
                    "name",
                    p.name.get_ref().clone(),
                    "another pass has this name (names are compared without surrounding spaces); \
                     pass names must be unique",
                ));
            }
            let amount = match &p.amount {
                None if p.kind == PassKind::Break => None,
                None => Some(AmountTolerance::default()),
                Some(a) => {
                    if a.abs.is_some()
                        && let Some((key, s)) =
                            [("amount.below", &a.below), ("amount.above", &a.above)]
                                .into_iter()
                                .find_map(|(key, s)| s.as_ref().map(|s| (key, s)))
                    {
                        return Err(loc.invalid(
                            s.span(),
                            &ctx,
                            key,
                            s.get_ref().clone(),
                            "`abs` sets both `below` and `above`: give `abs`, or `below` and `above`, not both",
                        ));
                    }
                    let abs = match &a.abs {
                        Some(s) => loc.decimal(s, &ctx, "amount.abs")?,
                        None => Decimal::default(),
                    };
                    let pct = match &a.pct {
                        Some(s) => loc.decimal(s, &ctx, "amount.pct")?,
                        None => Decimal::default(),
                    };
                    let below = match &a.below {
                        Some(s) => loc.decimal(s, &ctx, "amount.below")?,
                        None => abs,
                    };
                    let above = match &a.above {
                        Some(s) => loc.decimal(s, &ctx, "amount.above")?,
                        None => abs,
                    };
                    Some(AmountTolerance { below, above, pct })
                }
            };
            let date = match &p.date {
                None => None,
                Some(d) => {
                    let r = d.get_ref();
                    if r.window_days.is_some() && (r.before.is_some() || r.after.is_some()) {
                        return Err(loc.invalid(
                            d.span(),
                            &ctx,
                            "date",
                            loc.written(d.span()),
                            "`window_days` sets both `before` and `after`: \
                             give `window_days`, or `before` and `after`, not both",
                        ));
                    }
                    // `{ before = 1 }` alone leaves `after` at 0 (and the
                    // other way round): an unset side allows no days.
                    let w = r.window_days.unwrap_or(0);
                    let win = DateWindow {
                        before: r.before.unwrap_or(w),
                        after: r.after.unwrap_or(w),
                    };
                    if win.before > MAX_WINDOW_DAYS || win.after > MAX_WINDOW_DAYS {
                        return Err(loc.invalid(
                            d.span(),
                            &ctx,
                            "date",
                            loc.written(d.span()),
                            format!("date windows are at most {MAX_WINDOW_DAYS} days"),
                        ));
                    }
                    Some(win)
                }
            };
            for (key, sim) in [
                ("counterparty", &p.counterparty),
                ("description", &p.description),
            ] {
                if let Some(s) = sim {
                    let min = s.get_ref().min;
                    if !(0.0..=1.0).contains(&min) {
                        return Err(loc.invalid(
                            s.span(),
                            &ctx,
                            if key == "counterparty" {
                                "counterparty.min"
                            } else {
                                "description.min"
                            },
                            min.to_string(),
                            "similarity thresholds are between 0 and 1",
                        ));
                    }
                }
            }
            // The bounds of the subset search, set on a pass that does none.
            if p.cardinality == Cardinality::OneToOne
                && let Some((key, m)) = [
                    ("max_group", &p.max_group),
                    ("max_candidates", &p.max_candidates),
                ]
                .into_iter()
                .find_map(|(key, m)| m.as_ref().map(|m| (key, m)))
            {
                return Err(loc.invalid(
                    loc.key_span(sp.span(), key),
                    &ctx,
                    key,
                    m.get_ref().to_string(),
                    format!(
                        "{key} bounds only aggregate passes (one_to_many, many_to_one), \
                         and this pass is one_to_one: set `cardinality` or remove the key"
                    ),
                ));
            }
            let max_group = p.max_group.as_ref().map_or(4, |m| *m.get_ref());
            if let Some(m) = &p.max_group
                && !(2..=MAX_GROUP_LIMIT).contains(m.get_ref())
            {
                return Err(loc.invalid(
                    m.span(),
                    &ctx,
                    "max_group",
                    m.get_ref().to_string(),
                    format!("max_group is between 2 and {MAX_GROUP_LIMIT}"),
                ));
            }
            let max_candidates = p.max_candidates.as_ref().map_or(12, |m| *m.get_ref());
            if let Some(m) = &p.max_candidates
                && !(2..=MAX_CANDIDATES_LIMIT).contains(m.get_ref())
            {
                return Err(loc.invalid(
                    m.span(),
                    &ctx,
                    "max_candidates",
                    m.get_ref().to_string(),
                    format!("max_candidates is between 2 and {MAX_CANDIDATES_LIMIT}"),
                ));
            }
            // A group's many side is drawn from a record's candidates: a
            // larger max_group could never be reached.
            // (The defaults, 4 and 12, agree: one of the keys is set here.)
            let set = p
                .max_group
                .as_ref()
                .map(|g| ("max_group", g))
                .or_else(|| p.max_candidates.as_ref().map(|c| ("max_candidates", c)));
            if max_group > max_candidates
                && let Some((key, value)) = set
            {
                return Err(loc.invalid(
                    value.span(),
                    &ctx,
                    key,
                    value.get_ref().to_string(),
                    format!(
                        "max_group ({max_group}) is above max_candidates ({max_candidates}): a \
                         group's records come from one record's candidates, so it could never \
                         be that large; lower max_group or raise max_candidates"
                    ),
                ));
            }
            if p.kind == PassKind::Break {
                if p.cardinality != Cardinality::OneToOne {
                    return Err(loc.invalid(
                        loc.key_span(sp.span(), "cardinality"),
                        &ctx,
                        "cardinality",
                        p.cardinality.as_str(),
                        "break passes are one_to_one",
                    ));
                }
                if p.reference == ReferenceRule::Ignore {
                    return Err(loc.invalid(
                        loc.key_span(sp.span(), "reference"),
                        &ctx,
                        "reference",
                        p.reference.as_str(),
                        "break passes pair records by identity: set reference to exact or normalized",
                    ));
                }
            }
            if p.cardinality != Cardinality::OneToOne
                && p.reference == ReferenceRule::Ignore
                && date.is_none()
            {
                return Err(loc.invalid(
                    loc.key_span(sp.span(), "cardinality"),
                    &ctx,
                    "cardinality",
                    p.cardinality.as_str(),
                    "aggregate passes need a reference gate or a date window to bound the search",
                ));
            }
            // A pass comparing a role one side has no column for compares
            // nothing there: every record of that side would lack it.
            // Each with where the pass says so, and what it says when that is
            // not the key's own text (`reference` has no span of its own).
            let reference = (p.reference != ReferenceRule::Ignore).then(|| p.reference.as_str());
            let compared = [
                reference.map(|rule| (Role::Reference, sp.span(), Some(rule))),
                p.date.as_ref().map(|d| (Role::Date, d.span(), None)),
                p.counterparty
                    .as_ref()
                    .map(|c| (Role::Counterparty, c.span(), None)),
                p.description
                    .as_ref()
                    .map(|d| (Role::Description, d.span(), None)),
            ];
            for (role, span, said) in compared.into_iter().flatten() {
                if let Some(side) = unmapped_side(&left, &right, role) {
                    let value = said.map_or_else(|| loc.written(span.clone()), str::to_owned);
                    return Err(loc.invalid(
                        span,
                        &ctx,
                        role.as_str(),
                        value,
                        format!("the pass compares the {role}, but [{side}] maps no {role} column"),
                    ));
                }
            }
            passes.push(Pass {
                name,
                kind: p.kind,
                cardinality: p.cardinality,
                reference: p.reference,
                amount,
                date,
                counterparty: p.counterparty.as_ref().map(|s| *s.get_ref()),
                description: p.description.as_ref().map(|s| *s.get_ref()),
                max_group,
                max_candidates,
            });
        }
        let (duplicates, duplicates_span) = match raw.duplicates {
            Some(d) => {
                let span = d.span();
                (d.into_inner(), span)
            }
            None => (Duplicates::default(), 0..0),
        };
        for (side, key, mapping) in [
            ("left", &duplicates.left, &left),
            ("right", &duplicates.right, &right),
        ] {
            if let Some(role) = key.iter().find(|r| !mapping.maps(**r)) {
                return Err(loc.invalid(
                    loc.key_span(duplicates_span.clone(), side),
                    "[duplicates]",
                    side,
                    role.to_string(),
                    format!("the key holds the {role}, but [{side}] maps no {role} column"),
                ));
            }
            // A fixed currency is the same on every record: it tells no two
            // apart, and alone it would make every record after the first a
            // duplicate.
            if key.contains(&Role::Currency)
                && let Some(code) = &mapping.currency_value
            {
                return Err(loc.invalid(
                    loc.key_span(duplicates_span.clone(), side),
                    "[duplicates]",
                    side,
                    Role::Currency.to_string(),
                    format!(
                        "[{side}] has one fixed currency (`currency_value` = {code:?}), the same \
                         on every record: it tells no two records apart; remove it from the key"
                    ),
                ));
            }
            // A role named twice adds nothing to the key: likely a typo for
            // another one.
            if let Some(role) = key
                .iter()
                .enumerate()
                .find_map(|(i, r)| key[..i].contains(r).then_some(r))
            {
                return Err(loc.invalid(
                    loc.key_span(duplicates_span.clone(), side),
                    "[duplicates]",
                    side,
                    role.to_string(),
                    format!("the key names the {role} twice; list each role once"),
                ));
            }
        }
        // Prefixes are stripped only from normalized references.
        let normalized = passes
            .iter()
            .any(|p: &Pass| p.reference == ReferenceRule::Normalized)
            || duplicates.left.contains(&Role::Reference)
            || duplicates.right.contains(&Role::Reference);
        if let Some(p) = raw.normalize.strip_prefixes.first()
            && !normalized
        {
            return Err(loc.invalid(
                p.span(),
                "[normalize]",
                "strip_prefixes",
                p.get_ref().clone(),
                "no pass compares normalized references (`reference = \"normalized\"`) and no \
                 [duplicates] key holds the reference, so no prefix would ever be stripped: \
                 remove [normalize] or normalize a pass's references",
            ));
        }
        Ok(Self {
            name: raw.name,
            left,
            right,
            normalize: Normalize {
                strip_prefixes: raw
                    .normalize
                    .strip_prefixes
                    .into_iter()
                    .map(Spanned::into_inner)
                    .collect(),
            },
            duplicates,
            passes,
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
        })
    }

    /// What [`Rules::from_toml_str`] guarantees of the passes and that
    /// matching relies on, checked again for rules built or changed in code
    /// (the fields are public): `Some((where, why))` for the first one that
    /// does not hold. Not the file's every check, only those whose breach
    /// would panic, loop without bound or give a wrong result.
    pub(crate) fn broken_invariant(&self) -> Option<(String, String)> {
        if self.passes.is_empty() || self.passes.len() > MAX_PASSES {
            return Some((
                "rules".to_owned(),
                format!("1 to {MAX_PASSES} passes, not {}", self.passes.len()),
            ));
        }
        let mut names = BTreeSet::new();
        for p in &self.passes {
            let at = format!("pass {:?}", p.name);
            let broken = |why: String| Some((at.clone(), why));
            let name = p.name.trim();
            if name.is_empty() || !names.insert(name) {
                return broken("pass names are unique and not blank".to_owned());
            }
            let decimals = p.amount.iter().flat_map(|a| [a.below, a.above, a.pct]);
            if let Some(d) = decimals.into_iter().find(|d| !d.is_valid()) {
                return broken(format!(
                    "amount tolerance {d:?}: a decimal is at least 0 with at most {} digits",
                    Decimal::MAX_DIGITS
                ));
            }
            if p.amount.is_none() && p.kind == PassKind::Match {
                return broken("a match pass compares amounts (`amount` is set)".to_owned());
            }
            if p.date
                .is_some_and(|w| w.before > MAX_WINDOW_DAYS || w.after > MAX_WINDOW_DAYS)
            {
                return broken(format!("date windows are at most {MAX_WINDOW_DAYS} days"));
            }
            if let Some(s) = [p.counterparty, p.description]
                .into_iter()
                .flatten()
                .find(|s| !(0.0..=1.0).contains(&s.min))
            {
                return broken(format!(
                    "similarity thresholds are between 0 and 1, not {}",
                    s.min
                ));
            }
            if p.kind == PassKind::Break
                && (p.cardinality != Cardinality::OneToOne || p.reference == ReferenceRule::Ignore)
            {
                return broken("break passes are one_to_one with a reference gate".to_owned());
            }
            if p.cardinality != Cardinality::OneToOne {
                if !(2..=MAX_GROUP_LIMIT).contains(&p.max_group)
                    || !(2..=MAX_CANDIDATES_LIMIT).contains(&p.max_candidates)
                    || p.max_group > p.max_candidates
                {
                    return broken(format!(
                        "aggregate passes have 2 <= max_group ({}) <= max_candidates ({}), \
                         max_group at most {MAX_GROUP_LIMIT}, max_candidates at most \
                         {MAX_CANDIDATES_LIMIT}",
                        p.max_group, p.max_candidates
                    ));
                }
                if p.reference == ReferenceRule::Ignore && p.date.is_none() {
                    return broken(
                        "aggregate passes need a reference gate or a date window".to_owned(),
                    );
                }
            }
        }
        None
    }

    /// How to read `side`'s file: [`Rules::left`] or [`Rules::right`].
    pub fn mapping(&self, side: SideName) -> &SideMapping {
        match side {
            SideName::Left => &self.left,
            SideName::Right => &self.right,
        }
    }

    /// The roles a run of these rules reads on `side`; a loader may leave the
    /// side's other roles out ([`crate::input::SideLoad::roles`]) and the results,
    /// summary included, are the same.
    ///
    /// Always [`RoleSet::ALWAYS`] (id, amount, currency, date); then
    /// - [`Role::Reference`] when a pass compares references (`exact` or
    ///   `normalized`), or `side`'s `[duplicates]` key holds it;
    /// - [`Role::Counterparty`] / [`Role::Description`] when a pass scores its
    ///   similarity, or `side`'s `[duplicates]` key holds it.
    ///
    /// Passes compare both sides, so a pass's roles are in both sides' sets; a
    /// duplicate key is one side's. No output reads a reference, counterparty or
    /// description: results carry ids, lines and `extra` columns only.
    pub fn roles(&self, side: SideName) -> RoleSet {
        let key = match side {
            SideName::Left => &self.duplicates.left,
            SideName::Right => &self.duplicates.right,
        };
        let passes = self.passes.iter().flat_map(|p| {
            [
                (p.reference != ReferenceRule::Ignore).then_some(Role::Reference),
                p.counterparty.map(|_| Role::Counterparty),
                p.description.map(|_| Role::Description),
            ]
        });
        passes
            .flatten()
            .chain(key.iter().copied())
            .fold(RoleSet::ALWAYS, RoleSet::with)
    }

    /// Reads and parses a rules file.
    ///
    /// # Errors
    /// [`RulesError::Io`] when the file cannot be read, [`RulesError::Parse`]
    /// at the first byte that is not UTF-8, else as [`Rules::from_toml_str`].
    pub fn from_path(path: &Path) -> Result<Self, RulesError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|err| RulesError::Io {
            file: file.clone(),
            err,
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let bytes = e.as_bytes();
                let at = e.utf8_error().valid_up_to();
                let valid = String::from_utf8_lossy(&bytes[..at]);
                let (line, column) = Locator {
                    text: &valid,
                    file: &file,
                }
                .line_col(at);
                return Err(RulesError::Parse {
                    file,
                    line,
                    column,
                    message: format!(
                        "byte 0x{:02X} is not UTF-8; a rules file is UTF-8 text",
                        bytes[at]
                    ),
                });
            }
        };
        Self::from_toml_str(&text, &file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both sides map every role, as inline tables: six lines, whatever follows
    /// keeps its line numbers.
    const SIDES: &str = "left = { amount = \"amount\", currency_value = \"USD\", id = \"id\", \
        date = \"date\", reference = \"ref\", counterparty = \"cp\", description = \"memo\" }\n\
        right = { amount = \"amount\", currency_value = \"USD\", id = \"id\", \
        date = \"date\", reference = \"ref\", counterparty = \"cp\", description = \"memo\" }\n\
        #\n#\n#\n#\n";

    fn parse(passes: &str) -> Result<Rules, RulesError> {
        Rules::from_toml_str(&format!("{SIDES}{passes}"), "rules.toml")
    }

    #[test]
    fn at_most_max_passes() {
        let passes = |n: usize| -> String {
            (0..n)
                .map(|i| format!("[[pass]]\nname = \"p{i}\"\nreference = \"exact\"\n"))
                .collect()
        };
        assert_eq!(parse(&passes(MAX_PASSES)).unwrap().passes.len(), MAX_PASSES);
        let err = parse(&passes(MAX_PASSES + 1)).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "rules: `pass` = \"1001 passes\": a rules file holds at most 1000 passes"
            ),
            "{err}"
        );
    }

    /// A blank pass name is shown as written; a name used twice (compared
    /// without surrounding spaces) is named at its second pass.
    #[test]
    fn pass_names_are_non_blank_and_unique() {
        let err = parse("[[pass]]\nname = \"  \"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "rules.toml:8:8: [[pass]]: `name` = \"  \": a pass needs a name with a letter, \
             digit or sign in it"
        );
        let err = parse("[[pass]]\nname = \"a\"\n[[pass]]\nname = \" a \"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "rules.toml:10:8: pass \"a\": `name` = \" a \": another pass has this name (names \
             are compared without surrounding spaces); pass names must be unique"
        );
    }

    /// A value of the wrong type names its table, its key (dotted within
    /// inline tables) and the value as written, without Rust's type names.
    #[test]
    fn a_mistyped_value_is_named_at_its_key() {
        for (pass, message) in [
            (
                "amount = \"0.01\"",
                "rules.toml:9:10: pass \"p\": `amount` = \"0.01\": expected a table of tolerances \
                 such as { abs = \"0.01\" } (amounts are strings, so they stay exact)",
            ),
            (
                "amount = { abs = 0.01 }",
                "rules.toml:9:18: pass \"p\": `amount.abs` = 0.01: expected a string such as \
                 \"0.01\" (amounts are strings, so they stay exact)",
            ),
            (
                "counterparty = { similarity = \"jaro_winkler\", min = \"0.9\" }",
                "rules.toml:9:53: pass \"p\": `counterparty.min` = \"0.9\": expected a number",
            ),
            (
                "date = 3",
                "rules.toml:9:8: pass \"p\": `date` = 3: expected a table of days such as \
                 { window_days = 3 } or { before = 1, after = 3 }",
            ),
            (
                "counterparty = 'jaro_winkler'",
                "rules.toml:9:16: pass \"p\": `counterparty` = 'jaro_winkler': expected a table \
                 such as { similarity = \"jaro_winkler\", min = 0.9 }",
            ),
            (
                "max_group = 3.0",
                "rules.toml:9:13: pass \"p\": `max_group` = 3.0: expected a whole number, 0 or more",
            ),
            (
                "date = { before = -1 }",
                "rules.toml:9:19: pass \"p\": `date.before` = -1: expected a whole number, 0 or more",
            ),
        ] {
            let err = parse(&format!("[[pass]]\nname = \"p\"\n{pass}\n")).unwrap_err();
            assert_eq!(err.to_string(), message, "{pass}");
        }
        // A name with a comment after it is the name alone.
        let err = parse("[[pass]]\nname = \"p\" # the first\nmax_group = 3.0\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "rules.toml:9:13: pass \"p\": `max_group` = 3.0: expected a whole number, 0 or more"
        );
        // A pass with its name written after the value, and a side table.
        let err = parse("[[pass]]\nmax_group = -2 # x\nname = \"late\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "rules.toml:8:13: pass \"late\": `max_group` = -2: expected a whole number, 0 or more"
        );
        let err = Rules::from_toml_str("[left]\nhas_header = \"yes\"\n", "rules.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "rules.toml:2:14: [left]: `has_header` = \"yes\": expected a boolean"
        );
    }

    /// A side's mapping is checked when the rules are read, and the error
    /// names the rules file at the key, in a `[table]` or an inline table.
    #[test]
    fn a_side_mapping_is_checked_at_its_key() {
        let right = "[right]\nid = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"\n";
        let pass = "[[pass]]\nname = \"p\"\n";
        let cases = [
            (
                "date_format = \"%Q\"",
                "rules.toml:5:1: [left]: `date_format` = \"%Q\": unsupported directive %Q",
            ),
            (
                "# date_format = \"%Y\"\ndate_format = \"%Y\"",
                "rules.toml:6:1: [left]: `date_format` = \"%Y\": needs exactly one year (%Y or %y), one month (%m or %b) and one day (%d or %e)",
            ),
            (
                "delimiter = \"é\"",
                "rules.toml:5:1: [left]: `delimiter` = \"é\": must be one ASCII character",
            ),
            (
                "debit = \"d\"",
                "rules.toml:5:1: [left]: `debit` = \"d\": map the amount as `amount`, as `debit` + `credit`, or as `amount` + `direction` (got amount, debit)",
            ),
            (
                "currency = \"ccy\"",
                "rules.toml:5:1: [left]: `currency` = \"ccy\": set exactly one of `currency` (a column) and `currency_value` (a fixed code)",
            ),
            (
                "delimiter = \"\\n\"",
                "rules.toml:5:1: [left]: `delimiter` = \"\\n\": a line break or the quote character `\"` cannot separate fields",
            ),
            (
                "delimiter = \"\\r\"",
                "rules.toml:5:1: [left]: `delimiter` = \"\\r\": a line break or the quote character `\"` cannot separate fields",
            ),
            (
                "delimiter = '\"'",
                "rules.toml:5:1: [left]: `delimiter` = \"\\\"\": a line break or the quote character `\"` cannot separate fields",
            ),
            (
                "debit_values = [\"S\"]",
                "rules.toml:5:1: [left]: `debit_values` = \"S\": indicator values are read only with `amount` + `direction`: map a `direction` column or remove the key",
            ),
            (
                // Written out at the default, still set for nothing.
                "credit_values = [\"C\", \"CR\", \"Credit\"]",
                "rules.toml:5:1: [left]: `credit_values` = \"C, CR, Credit\": indicator values are read only with `amount` + `direction`: map a `direction` column or remove the key",
            ),
            (
                // Compared as a row's indicator is: trimmed, any case.
                "direction = \"dc\"\ndebit_values = [\"S\", \"dr\"]\ncredit_values = [\"H\", \" DR \"]",
                "rules.toml:7:1: [left]: `credit_values` = \" DR \": also in `debit_values` (as \"dr\"); indicators are compared ignoring case and surrounding spaces, and one means debit or credit, not both",
            ),
            (
                "reference = \" \"",
                "rules.toml:5:1: [left]: `reference` = \"\": a column name cannot be empty",
            ),
            (
                "extra = [\"memo\", \"\"]",
                "rules.toml:5:1: [left]: `extra` = \"\": a column name cannot be empty",
            ),
        ];
        for (line, expected) in cases {
            let left = format!(
                "[left]\nid = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"\n{line}\n"
            );
            let err =
                Rules::from_toml_str(&format!("{left}{right}{pass}"), "rules.toml").unwrap_err();
            assert_eq!(err.to_string(), expected, "{line}");
        }
        // An inline table: the entry's own place.
        let text = format!(
            "left = {{ id = \"id\", amount = \"amount\", currency_value = \"usd1\" }}\n{right}{pass}"
        );
        let err = Rules::from_toml_str(&text, "rules.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "rules.toml:1:40: [left]: `currency_value` = \"usd1\": not a three-letter currency code"
        );
    }

    /// A side's key that would never be read, or a column named where two
    /// are needed, is refused at its key; a key that is read is kept.
    #[test]
    fn side_keys_that_could_do_nothing_are_refused() {
        let right = "[right]\nid = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"\n";
        let pass = "[[pass]]\nname = \"p\"\n";
        let read = |left: &str| {
            Rules::from_toml_str(
                &format!("[left]\ncurrency_value = \"USD\"\n{left}\n{right}{pass}"),
                "rules.toml",
            )
        };
        let cases = [
            (
                "amount = \"a\"\ndate_format = \"%d/%m/%Y\"",
                "rules.toml:4:1: [left]: `date_format` = \"%d/%m/%Y\": \
                 a date format is read only with a `date` column: map a `date` column or remove the key",
            ),
            (
                // Written out at the default, still set for nothing.
                "amount = \"a\"\ndate_format = \"%Y-%m-%d\"",
                "rules.toml:4:1: [left]: `date_format` = \"%Y-%m-%d\": \
                 a date format is read only with a `date` column: map a `date` column or remove the key",
            ),
            (
                "format = \"parquet\"\namount = \"a\"\ndelimiter = \";\"",
                "rules.toml:5:1: [left]: `delimiter` = \";\": only CSV files have a delimiter, \
                 a header line and an encoding, and this side's `format` is \"parquet\": remove the key",
            ),
            (
                "format = \"jsonl\"\namount = \"a\"\nhas_header = true",
                "rules.toml:5:1: [left]: `has_header` = \"true\": only CSV files have a delimiter, \
                 a header line and an encoding, and this side's `format` is \"ndjson\": remove the key",
            ),
            (
                "format = \"parquet\"\namount = \"a\"\nencoding = \"utf-8\"",
                "rules.toml:5:1: [left]: `encoding` = \"UTF-8\": only CSV files have a delimiter, \
                 a header line and an encoding, and this side's `format` is \"parquet\": remove the key",
            ),
            (
                "format = \"arrow-stream\"\namount = \"a\"\nhas_header = false",
                "rules.toml:5:1: [left]: `has_header` = \"false\": only CSV files have a delimiter, \
                 a header line and an encoding, and this side's `format` is \"arrow-stream\": remove the key",
            ),
            (
                "debit = \"Amount\"\ncredit = \" amount \"",
                "rules.toml:4:1: [left]: `credit` = \" amount \": also the `debit` column \
                 (as \"Amount\"); column names are compared ignoring case and surrounding spaces, \
                 and `debit` and `credit` are two columns",
            ),
            (
                "amount = \"3\"\ndirection = \"3\"",
                "rules.toml:4:1: [left]: `direction` = \"3\": also the `amount` column (as \"3\"); \
                 column names are compared ignoring case and surrounding spaces, \
                 and `amount` and `direction` are two columns",
            ),
            (
                "amount = \"a\"\nextra = [\"memo\", \"branch\", \" MEMO \"]",
                "rules.toml:4:1: [left]: `extra` = \" MEMO \": listed twice (also as \"memo\"); \
                 column names are compared ignoring case and surrounding spaces, \
                 and a column is carried through once",
            ),
        ];
        for (left, expected) in cases {
            let err = read(left).unwrap_err();
            assert_eq!(err.to_string(), expected, "{left}");
        }
        // Each key where it is read: a CSV format given or left to the
        // extension, a date format with its date column.
        for left in [
            "format = \"csv\"\namount = \"a\"\ndelimiter = \";\"\nhas_header = false",
            "amount = \"a\"\ndelimiter = \"\\t\"\nhas_header = true",
            "format = \"parquet\"\namount = \"a\"\ndate = \"d\"\ndate_format = \"%d/%m/%Y\"",
            "debit = \"d\"\ncredit = \"c\"\nextra = [\"memo\", \"memo2\"]",
            "amount = \"a\"\ndirection = \"dc\"",
        ] {
            assert!(read(left).is_ok(), "{left}");
        }
        // The mapping's own check refuses a key changed from its default.
        let parquet = SideMapping {
            format: Some(Format::Parquet),
            amount: Some("a".into()),
            currency_value: Some("USD".into()),
            has_header: false,
            ..SideMapping::default()
        };
        assert_eq!(
            parquet.validate().map_err(|e| e.to_string()),
            Err("`has_header` is set but `format` is parquet: \
                 `delimiter`, `has_header` and `encoding` are read only from CSV"
                .to_owned())
        );
        let written_default = SideMapping {
            has_header: true,
            ..parquet
        };
        assert_eq!(written_default.validate(), Ok(()));
    }

    /// A prefix that normalizes to nothing is refused at its place.
    #[test]
    fn a_prefix_that_removes_nothing_is_refused() {
        for (prefixes, column, value) in [
            ("[\"INV\", \"\"]", 26, ""),
            ("[\"INV\", \"  \"]", 26, "  "),
            ("[\"-\"]", 19, "-"),
        ] {
            let err = parse(&format!(
                "[normalize]\nstrip_prefixes = {prefixes}\n[[pass]]\nname = \"p\"\n"
            ))
            .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "rules.toml:8:{column}: [normalize]: `strip_prefixes` = {value:?}: \
                     a prefix needs a letter or a digit: normalized references keep only those, \
                     so this one would remove nothing"
                ),
                "{prefixes}"
            );
        }
        let r = parse(
            "[normalize]\nstrip_prefixes = [\"INV-\", \"№\"]\n[[pass]]\nname = \"p\"\n\
             reference = \"normalized\"\n",
        )
        .unwrap();
        assert_eq!(r.normalize.strip_prefixes, ["INV-", "№"]);
        // Prefixes nothing normalizes are refused; a duplicate key of the
        // reference normalizes it too.
        let err = parse("[normalize]\nstrip_prefixes = [\"INV\"]\n[[pass]]\nname = \"p\"\nreference = \"exact\"\n")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "rules.toml:8:19: [normalize]: `strip_prefixes` = \"INV\": no pass compares \
             normalized references (`reference = \"normalized\"`) and no [duplicates] key holds \
             the reference, so no prefix would ever be stripped: remove [normalize] or \
             normalize a pass's references"
        );
        parse(
            "[normalize]\nstrip_prefixes = [\"INV\"]\n[duplicates]\nright = [\"reference\"]\n\
             [[pass]]\nname = \"p\"\n",
        )
        .unwrap();
    }

    /// `[duplicates]` `left = []` says "no duplicate check on this side",
    /// as leaving the key out does: it is kept.
    #[test]
    fn an_empty_duplicate_key_means_no_check() {
        let r =
            parse("[duplicates]\nleft = []\nright = [\"id\"]\n[[pass]]\nname = \"p\"\n").unwrap();
        assert_eq!(
            r.duplicates,
            Duplicates {
                left: vec![],
                right: vec![Role::Id]
            }
        );
    }

    /// `max_group` and `max_candidates` bound the subset search of aggregate
    /// passes; on a one-to-one pass they are refused at the key, before their
    /// range is checked.
    #[test]
    fn aggregate_bounds_on_a_one_to_one_pass_are_refused() {
        check_refusals(&[
            (
                "[[pass]]\nname = \"p\"\nmax_group = 3\n",
                "rules.toml:9:1: pass \"p\": `max_group` = \"3\": max_group bounds only aggregate \
                 passes (one_to_many, many_to_one), and this pass is one_to_one: \
                 set `cardinality` or remove the key",
            ),
            (
                "[[pass]]\nname = \"p\"\ncardinality = \"one_to_one\"\nmax_candidates = 99\n",
                "rules.toml:10:1: pass \"p\": `max_candidates` = \"99\": max_candidates bounds only \
                 aggregate passes (one_to_many, many_to_one), and this pass is one_to_one: \
                 set `cardinality` or remove the key",
            ),
            (
                "[[pass]]\nname = \"b\"\nkind = \"break\"\nreference = \"exact\"\nmax_group = 4\n",
                "rules.toml:11:1: pass \"b\": `max_group` = \"4\": max_group bounds only aggregate \
                 passes (one_to_many, many_to_one), and this pass is one_to_one: \
                 set `cardinality` or remove the key",
            ),
        ]);
        let r = parse(
            "[[pass]]\nname = \"a\"\ncardinality = \"many_to_one\"\nreference = \"exact\"\n\
             max_group = 3\nmax_candidates = 16\n",
        )
        .unwrap();
        assert_eq!((r.passes[0].max_group, r.passes[0].max_candidates), (3, 16));
        // A group larger than the candidates it is drawn from could never be.
        check_refusals(&[
            (
                "[[pass]]\nname = \"a\"\ncardinality = \"many_to_one\"\nreference = \"exact\"\n\
                 max_candidates = 2\nmax_group = 8\n",
                "rules.toml:12:13: pass \"a\": `max_group` = \"8\": max_group (8) is above \
                 max_candidates (2): a group's records come from one record's candidates, so \
                 it could never be that large; lower max_group or raise max_candidates",
            ),
            (
                "[[pass]]\nname = \"a\"\ncardinality = \"many_to_one\"\nreference = \"exact\"\n\
                 max_candidates = 3\n",
                "rules.toml:11:18: pass \"a\": `max_candidates` = \"3\": max_group (4) is above \
                 max_candidates (3): a group's records come from one record's candidates, so \
                 it could never be that large; lower max_group or raise max_candidates",
            ),
        ]);
    }

    /// A decimal of plain digits but too many of them says so; other text
    /// is not a decimal at all.
    #[test]
    fn a_decimal_with_too_many_digits_says_the_limit() {
        check_refusals(&[
            (
                "[[pass]]\nname = \"a\"\namount = { abs = \"92233720368547758.07\" }\n",
                "rules.toml:9:18: pass \"a\": `amount.abs` = \"92233720368547758.07\": \
                 a decimal has at most 18 digits, counting every digit before and after the point \
                 (zeros too); this one has 19",
            ),
            (
                "[[pass]]\nname = \"a\"\namount = { pct = \"0.123456789012345678\" }\n",
                "rules.toml:9:18: pass \"a\": `amount.pct` = \"0.123456789012345678\": \
                 a decimal has at most 18 digits, counting every digit before and after the point \
                 (zeros too); this one has 19",
            ),
            (
                "[[pass]]\nname = \"a\"\namount = { abs = \"-92233720368547758.07\" }\n",
                "rules.toml:9:18: pass \"a\": `amount.abs` = \"-92233720368547758.07\": \
                 expected a non-negative decimal string such as \"0.05\"",
            ),
            (
                "[[pass]]\nname = \"a\"\namount = { abs = \"1,5\" }\n",
                "rules.toml:9:18: pass \"a\": `amount.abs` = \"1,5\": \
                 expected a non-negative decimal string such as \"0.05\"",
            ),
        ]);
        for (text, mantissa, scale) in [
            ("999999999999999999", 999_999_999_999_999_999, 0),
            ("0.12345678901234567", 12_345_678_901_234_567, 17),
            (".000000000000000001", 1, 18),
        ] {
            assert_eq!(
                Decimal::parse(text),
                Some(Decimal { mantissa, scale }),
                "{text}"
            );
        }
        assert_eq!(Decimal::parse("1000000000000000000"), None);
    }

    /// Each refusal of a pass: its rules, then the message (the SIDES are six
    /// lines, so the pass starts at line 7).
    fn check_refusals(cases: &[(&str, &str)]) {
        for (passes, expected) in cases {
            let err = parse(passes).unwrap_err();
            assert_eq!(err.to_string(), *expected, "{passes}");
        }
    }

    /// A value the file names (cardinality, reference rule) is shown as the
    /// file writes it, never as the Rust enum's name.
    #[test]
    fn refused_values_are_shown_as_the_file_writes_them() {
        check_refusals(&[
            (
                "[[pass]]\nname = \"agg\"\ncardinality = \"one_to_many\"\n",
                "rules.toml:9:1: pass \"agg\": `cardinality` = \"one_to_many\": \
                 aggregate passes need a reference gate or a date window to bound the search",
            ),
            (
                "[[pass]]\nname = \"b\"\nkind = \"break\"\nreference = \"exact\"\n\
                 cardinality = \"many_to_one\"\n",
                "rules.toml:11:1: pass \"b\": `cardinality` = \"many_to_one\": \
                 break passes are one_to_one",
            ),
            (
                "[[pass]]\nname = \"b\"\nkind = \"break\"\nreference = \"ignore\"\n",
                "rules.toml:10:1: pass \"b\": `reference` = \"ignore\": \
                 break passes pair records by identity: set reference to exact or normalized",
            ),
            (
                "[[pass]]\nname = \"w\"\ndate = { window_days = 400 }\n",
                "rules.toml:9:8: pass \"w\": `date` = \"{ window_days = 400 }\": \
                 date windows are at most 366 days",
            ),
        ]);
        // `as_str` is the name serde reads.
        for c in [
            Cardinality::OneToOne,
            Cardinality::OneToMany,
            Cardinality::ManyToOne,
        ] {
            assert_eq!(toml::Value::String(c.as_str().into()).try_into(), Ok(c));
        }
        for rule in [
            ReferenceRule::Exact,
            ReferenceRule::Normalized,
            ReferenceRule::Ignore,
        ] {
            assert_eq!(
                toml::Value::String(rule.as_str().into()).try_into(),
                Ok(rule)
            );
        }
    }

    /// Keys that contradict each other in a pass are refused at their place,
    /// saying which go together.
    #[test]
    fn contradictory_pass_keys_are_refused() {
        check_refusals(&[
            (
                "[[pass]]\nname = \"d\"\ndate = { window_days = 2, before = 1 }\n",
                "rules.toml:9:8: pass \"d\": `date` = \"{ window_days = 2, before = 1 }\": \
                 `window_days` sets both `before` and `after`: \
                 give `window_days`, or `before` and `after`, not both",
            ),
            (
                "[[pass]]\nname = \"d\"\ndate = { after = 0, window_days = 2 }\n",
                "rules.toml:9:8: pass \"d\": `date` = \"{ after = 0, window_days = 2 }\": \
                 `window_days` sets both `before` and `after`: \
                 give `window_days`, or `before` and `after`, not both",
            ),
            (
                "[[pass]]\nname = \"a\"\namount = { abs = \"1\", below = \"2\" }\n",
                "rules.toml:9:31: pass \"a\": `amount.below` = \"2\": \
                 `abs` sets both `below` and `above`: give `abs`, or `below` and `above`, not both",
            ),
            (
                "[[pass]]\nname = \"a\"\namount = { above = \"0\", pct = \"1\", abs = \"1\" }\n",
                "rules.toml:9:20: pass \"a\": `amount.above` = \"0\": \
                 `abs` sets both `below` and `above`: give `abs`, or `below` and `above`, not both",
            ),
        ]);
        // One side of a window alone: the other allows no day.
        let r = parse("[[pass]]\nname = \"d\"\ndate = { before = 1 }\n").unwrap();
        assert_eq!(
            r.passes[0].date,
            Some(DateWindow {
                before: 1,
                after: 0
            })
        );
        // `pct` goes with either form: each side allows the larger.
        let r = parse("[[pass]]\nname = \"a\"\namount = { below = \"2\", pct = \"1\" }\n").unwrap();
        let t = r.passes[0].amount.unwrap();
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(t.allowed(10_000, usd), (200, 100));
    }

    #[test]
    fn decimals_are_exact_and_round_down() {
        let usd = Currency::parse("USD").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        let d = Decimal::parse("0.05").unwrap();
        assert_eq!(d.to_minor(usd), 5);
        assert_eq!(d.to_minor(jpy), 0);
        assert_eq!(Decimal::parse("12").unwrap().to_minor(jpy), 12);
        assert_eq!(Decimal::parse("0.005").unwrap().to_minor(usd), 0);
        assert_eq!(d.to_string(), "0.05");
        for bad in ["-1", "1e3", "", ".", "1,0", "1.2.3"] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn tolerance_takes_the_larger_of_abs_and_pct() {
        let usd = Currency::parse("USD").unwrap();
        let t = AmountTolerance {
            below: Decimal::parse("0.10").unwrap(),
            above: Decimal::parse("0").unwrap(),
            pct: Decimal::parse("1").unwrap(),
        };
        assert_eq!(t.allowed(500, usd), (10, 5));
        assert_eq!(t.allowed(-5000, usd), (50, 50));
    }

    #[test]
    fn a_compared_role_must_be_mapped_on_both_sides() {
        // Each case: the sides, the rest of the rules, what the error says.
        let check = |sides: String, rest: &str, expected: &str| {
            let text = format!("{sides}{rest}");
            let err = Rules::from_toml_str(&text, "rules.toml").unwrap_err();
            assert_eq!(err.to_string(), expected, "{text}");
        };
        // SIDES without `key` on one side.
        let without = |side: usize, key: &str| {
            let mut lines: Vec<String> = SIDES.lines().map(str::to_owned).collect();
            lines[side] = lines[side].replacen(key, "", 1);
            lines.join("\n") + "\n"
        };
        check(
            without(0, ", reference = \"ref\""),
            "[[pass]]\nname = \"a\"\nreference = \"normalized\"\n",
            "rules.toml:7:1: pass \"a\": `reference` = \"normalized\": \
             the pass compares the reference, but [left] maps no reference column",
        );
        check(
            without(0, ", counterparty = \"cp\""),
            "[[pass]]\nname = \"n\"\ncounterparty = { similarity = \"jaro_winkler\", min = 0.9 }\n",
            "rules.toml:9:16: pass \"n\": \
             `counterparty` = \"{ similarity = \\\"jaro_winkler\\\", min = 0.9 }\": \
             the pass compares the counterparty, but [left] maps no counterparty column",
        );
        check(
            without(1, ", date = \"date\""),
            "[[pass]]\nname = \"d\"\ndate = { window_days = 2 }\n",
            "rules.toml:9:8: pass \"d\": `date` = \"{ window_days = 2 }\": \
             the pass compares the date, but [right] maps no date column",
        );
        check(
            without(1, ", description = \"memo\""),
            "[duplicates]\nright = [\"amount\", \"description\"]\n[[pass]]\nname = \"a\"\n",
            "rules.toml:8:1: [duplicates]: `right` = \"description\": \
             the key holds the description, but [right] maps no description column",
        );
        check(
            without(0, ""),
            "[duplicates]\nleft = [\"id\", \"amount\", \"id\"]\n[[pass]]\nname = \"a\"\n",
            "rules.toml:8:1: [duplicates]: `left` = \"id\": \
             the key names the id twice; list each role once",
        );
        // What nothing compares need not be mapped.
        let bare = "[left]\namount = \"amount\"\ncurrency_value = \"USD\"\n\
                    [right]\namount = \"amount\"\ncurrency = \"ccy\"\n\
                    [duplicates]\nleft = [\"amount\"]\nright = [\"amount\", \"currency\"]\n\
                    [[pass]]\nname = \"a\"\namount = { abs = \"0.01\" }\n";
        assert!(Rules::from_toml_str(bare, "rules.toml").is_ok());
        // A fixed currency tells no two records apart.
        let fixed = bare.replace("left = [\"amount\"]", "left = [\"amount\", \"currency\"]");
        assert_eq!(
            Rules::from_toml_str(&fixed, "rules.toml")
                .unwrap_err()
                .to_string(),
            "rules.toml:8:1: [duplicates]: `left` = \"currency\": [left] has one fixed currency \
             (`currency_value` = \"USD\"), the same on every record: it tells no two records \
             apart; remove it from the key"
        );
    }

    #[test]
    fn full_pass_parses() {
        let r = parse(
            "[normalize]\nstrip_prefixes = [\"INV\"]\n[duplicates]\nleft = [\"reference\", \"amount\"]\n\
             [[pass]]\nname = \"a\"\nreference = \"normalized\"\namount = { below = \"0.05\", above = \"0.01\" }\n\
             date = { before = 1, after = 3 }\ncounterparty = { similarity = \"jaro_winkler\", min = 0.8 }\n\
             [[pass]]\nname = \"b\"\ncardinality = \"one_to_many\"\ndate = { window_days = 2 }\nmax_group = 3\n",
        )
        .unwrap();
        assert_eq!(r.passes.len(), 2);
        let a = &r.passes[0];
        let t = a.amount.unwrap();
        assert_eq!((t.below.mantissa, t.above.mantissa), (5, 1));
        assert_eq!(
            a.date,
            Some(DateWindow {
                before: 1,
                after: 3
            })
        );
        assert_eq!(r.passes[1].max_group, 3);
        assert_eq!(r.duplicates.left, vec![Role::Reference, Role::Amount]);
        assert_eq!(r.sha256.len(), 64);
    }

    #[test]
    fn roles_are_what_passes_and_duplicate_keys_read() {
        let sides = [SideName::Left, SideName::Right];
        let roles = |passes: &str| sides.map(|s| parse(passes).unwrap().roles(s));
        let amount_only = "[[pass]]\nname = \"a\"\namount = { abs = \"0\" }\n";
        assert_eq!(roles(amount_only), [RoleSet::ALWAYS; 2]);

        let [l, r] = roles(
            "[duplicates]\nright = [\"description\"]\n\
             [[pass]]\nname = \"a\"\nreference = \"exact\"\n\
             [[pass]]\nname = \"b\"\ncounterparty = { similarity = \"jaro_winkler\" }\n",
        );
        let both = RoleSet::ALWAYS
            .with(Role::Reference)
            .with(Role::Counterparty);
        assert_eq!(l, both);
        assert_eq!(r, both.with(Role::Description));

        let [l, r] = roles(
            "[duplicates]\nleft = [\"reference\", \"amount\"]\n\
             [[pass]]\nname = \"a\"\ndescription = { similarity = \"token_set\" }\n",
        );
        assert_eq!(
            l,
            [Role::Reference, Role::Description]
                .into_iter()
                .chain(RoleSet::ALWAYS.iter())
                .collect()
        );
        assert_eq!(r, RoleSet::ALWAYS.with(Role::Description));
        assert!(!r.contains(Role::Reference) && !r.contains(Role::Counterparty));
        assert_eq!(RoleSet::ALL.iter().count(), 7);
        assert_eq!(
            format!("{:?}", RoleSet::EMPTY.with(Role::Date).with(Role::Id)),
            "{Id, Date}"
        );
    }

    #[test]
    fn bad_values_name_line_column_and_value() {
        let err = parse("[[pass]]\nname = \"a\"\namount = { abs = \"1,5\" }\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                RulesError::Invalid {
                    line: 9,
                    key: "amount.abs",
                    ..
                }
            ),
            "{msg}"
        );
        assert!(msg.contains("\"1,5\""), "{msg}");

        let err = parse("[[pass]]\nname = \"a\"\nfuzz = 1\n").unwrap_err();
        assert!(matches!(err, RulesError::Parse { line: 9, .. }), "{err}");
        assert!(parse("").is_err());
        assert!(parse("[[pass]]\nname = \"a\"\nkind = \"break\"\n").is_err());
        assert!(parse("[[pass]]\nname = \"a\"\ncardinality = \"many_to_one\"\n").is_err());
        assert!(parse("[[pass]]\nname = \"a\"\n[[pass]]\nname = \"a\"\n").is_err());
        assert!(parse("[[pass]]\nname = \"a\"\ncounterparty = { similarity = \"jaro_winkler\", min = 2.0 }\n").is_err());
    }
}
