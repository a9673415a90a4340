//! Errors of the input layer: reading files and mapping their rows to records.
//!
//! Every variant about bad input says where (file, and line and column when there
//! is one) and what (the offending value), so a person can fix the file.

use std::fmt;

use crate::date::DateError;
use crate::mapping::MappingError;
use crate::money::AmountError;

/// Why one value of one row could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueProblem {
    /// The amount text is not an amount (see [`AmountError`]).
    #[error(transparent)]
    Amount(#[from] AmountError),
    /// The date text does not match the date format (see [`DateError`]).
    #[error(transparent)]
    Date(#[from] DateError),
    /// Not a three-letter currency code.
    #[error("is not a currency code")]
    Currency,
    /// The id column is empty on this row.
    #[error("is an empty id")]
    EmptyId,
    /// Neither a debit nor a credit indicator.
    #[error("is not a debit or credit indicator (expected one of {expected})")]
    Direction {
        /// The accepted values, comma-separated.
        expected: String,
    },
    /// Both the debit and the credit column hold a non-zero amount.
    #[error("and the credit column are both non-zero")]
    DebitAndCredit,
    /// Both the debit and the credit column are empty: the row has no amount.
    #[error("and the credit column are both empty; one of them holds the amount")]
    NoDebitOrCredit,
    /// A value of a typed column (Parquet, Arrow) that has no text form,
    /// such as a date outside the calendar.
    #[error("has no text form: {reason}")]
    NoText {
        /// Arrow's reason.
        reason: String,
    },
    /// A date or timestamp column's value in a year recon does not read
    /// (before 0 or after 9999).
    #[error("is a date outside the years 0000 to 9999, which recon reads")]
    YearOutOfRange,
    /// A float amount that is not surely the decimal it reads as: beyond
    /// `digits` significant digits a float stands for many decimals.
    #[error(
        "is not exactly a decimal: the column is {kind}, which holds decimals exactly only up \
         to {digits} significant digits; write amounts as decimal or text"
    )]
    InexactFloat {
        /// The column's type: `float64`, `float32` or `float16`.
        kind: &'static str,
        /// Significant digits the type holds exactly.
        digits: u8,
    },
    /// The amount does not fit the amount range after combining columns.
    /// Kept for callers matching it; loading no longer yields it, since every
    /// parsed amount is within [`crate::money::MAX_MINOR`] and its negation
    /// is too.
    #[error("overflows the amount range")]
    Overflow,
}

/// Errors reading an input file or mapping it to a [`crate::side::Side`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The file could not be opened, read or written.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file was written to or replaced while it was being reconciled, so
    /// a digest read afterwards might not be of the bytes loaded.
    #[error(
        "{file}: the file changed while it was being reconciled; run again on a file nothing writes to"
    )]
    Changed {
        /// The file.
        file: String,
    },
    /// The file holds no header and no rows.
    #[error("{file}: the file is empty")]
    Empty {
        /// The file.
        file: String,
    },
    /// The file has more columns than recon reads
    /// ([`crate::input::MAX_COLUMNS`]): a ledger or statement has tens.
    #[error(
        "{file}: {columns} columns; recon reads files of at most {max} columns (in a CSV file, a \
         wrong delimiter or a header of values can make one line look this wide)"
    )]
    TooManyColumns {
        /// The file.
        file: String,
        /// Its columns.
        columns: usize,
        /// The most recon reads.
        max: usize,
    },
    /// A column name longer than [`crate::input::MAX_COLUMN_NAME`] bytes.
    #[error(
        "{file}: column {position}'s name is {length} bytes long; recon reads names of at most {max} bytes (is the header line a data line?)"
    )]
    ColumnNameTooLong {
        /// The file.
        file: String,
        /// The column's 1-based position.
        position: usize,
        /// Its name's length in bytes.
        length: usize,
        /// The longest name recon reads.
        max: usize,
    },
    /// A Parquet row group whose data, uncompressed, is more than
    /// [`crate::input::MAX_RECORD_BYTES`] a row: refused before any of it is
    /// decoded (a small file can hold gigabytes once uncompressed).
    #[error(
        "{file}: row group {row_group} holds {bytes} bytes of uncompressed data for {rows} rows, more than {max} bytes a record; recon does not read records that large"
    )]
    RecordsTooLarge {
        /// The file.
        file: String,
        /// The row group's 0-based index.
        row_group: usize,
        /// Its uncompressed bytes, as its metadata says.
        bytes: u64,
        /// Its rows.
        rows: u64,
        /// The most bytes a record may take on average.
        max: u64,
    },
    /// The format could not be told from the file name or media type.
    #[error(
        "{file}: unknown format {hint:?} (expected csv, parquet, arrow, arrow-stream or ndjson{})",
        if hint.eq_ignore_ascii_case("tsv") || hint.eq_ignore_ascii_case("tab") {
            "; a tab-separated file is read with format = \"csv\" and delimiter = \"\\t\" in the side's mapping"
        } else {
            ""
        }
    )]
    UnknownFormat {
        /// The file.
        file: String,
        /// The extension or media type that was not recognized.
        hint: String,
    },
    /// A line that is not valid UTF-8.
    #[error("{file} line {line}{}", invalid_utf8_detail(.field.as_ref()))]
    InvalidUtf8 {
        /// The file.
        file: String,
        /// 1-based line.
        line: u64,
        /// The field holding the bytes, when the row could be read again to
        /// find it (CSV rows after the header).
        field: Option<NotUtf8Field>,
    },
    /// Bytes a CSV file's declared encoding (the mapping's `encoding`, not
    /// UTF-8) does not define: refused, never replaced, since a replaced
    /// byte would change a reference or a name without a trace.
    #[error(
        "{file} line {line}{}: {value} is not valid {encoding}",
        column.as_ref().map(|c| format!(", column {c:?}")).unwrap_or_default()
    )]
    Undecodable {
        /// The file.
        file: String,
        /// 1-based line its record starts on (as for invalid UTF-8).
        line: u64,
        /// The column they are in, when the record could be read again to
        /// find it (not in the header line).
        column: Option<String>,
        /// The bytes, each written `\xNN`.
        value: String,
        /// The encoding's name.
        encoding: &'static str,
    },
    /// A row the reader could not split into the header's columns.
    #[error("{file} line {line}: {reason}")]
    MalformedRow {
        /// The file.
        file: String,
        /// 1-based line.
        line: u64,
        /// What the reader found wrong.
        reason: String,
    },
    /// A CSV file ends inside a quoted field: a quote opened a field and
    /// nothing closed it, so every line after it would be read as that one
    /// field's text (and the rows on them lost). Refused, never read.
    #[error(
        "{file} line {line}{}: the quoted field starting {value:?} is never closed: {}",
        InColumn(.column.as_deref()),
        EndsInside(*.lines)
    )]
    UnclosedQuote {
        /// The file.
        file: String,
        /// 1-based line the record holding the quote starts on.
        line: u64,
        /// The quoted field's column (its 1-based position past the header's
        /// columns), when the record could be read again to find it.
        column: Option<String>,
        /// The start of the field's text, up to its first line break
        /// (at most 40 characters).
        value: String,
        /// Lines from the one the quote opens on to the end of the file.
        lines: u64,
    },
    /// A mapped column is not in the file. When a CSV file seems to have one
    /// column whose name holds another delimiter (`a;b;c` read with `,`), the
    /// message says which delimiter to set.
    #[error(
        "{file}: column {column:?} not found; {}{}",
        Available(.available),
        DelimiterHint::new(.available, .delimiter)
    )]
    MissingColumn {
        /// The file.
        file: String,
        /// The mapped column name.
        column: String,
        /// The file's columns.
        available: Vec<String>,
        /// The delimiter a CSV file was read with; `None` for the other
        /// formats, which have no delimiter to get wrong.
        delimiter: Option<char>,
    },
    /// A mapped column name matches more than one of the file's columns: the
    /// same name twice, or, with no exact match, names that differ from it only
    /// in case or surrounding spaces. Which one is meant cannot be known, so
    /// none is read.
    #[error(
        "{file}: column {column:?} matches {} columns of the file ({}): map one by its exact name, or make the file's column names unique",
        .matches.len(),
        Positions(.matches)
    )]
    AmbiguousColumn {
        /// The file.
        file: String,
        /// The mapped column name.
        column: String,
        /// The matching columns: 1-based position and name.
        matches: Vec<(usize, String)>,
    },
    /// A mapped column holds values that have no text form (a nested struct,
    /// map or union column of a Parquet or Arrow file, an NDJSON key holding
    /// objects). Such columns are carried as empty until mapped, so the rest
    /// of the file reads as usual.
    #[error(
        "{file}: column {column:?} holds {data_type} values, which cannot be read as text; map a column of text, numbers, dates or booleans instead"
    )]
    UnreadableColumn {
        /// The file.
        file: String,
        /// The mapped column name.
        column: String,
        /// The column's type in the file, as Arrow names it.
        data_type: String,
    },
    /// One value of one row is not readable for its role.
    #[error("{file} line {line}, column {column:?}: {} {problem}", shown(.value))]
    BadValue {
        /// The file.
        file: String,
        /// 1-based line (CSV, NDJSON) or row (Parquet, Arrow).
        line: u64,
        /// The column.
        column: String,
        /// The offending text.
        value: String,
        /// What is wrong with it.
        problem: ValueProblem,
    },
    /// The side's mapping is unusable.
    #[error("{file}: invalid mapping: {source}")]
    Mapping {
        /// The file the mapping was for.
        file: String,
        /// What is wrong.
        #[source]
        source: MappingError,
    },
    /// The Arrow, Parquet or JSON reader failed without a line to point at.
    #[error("{file}: {reason}")]
    Format {
        /// The file.
        file: String,
        /// The reader's message.
        reason: String,
    },
}

/// Displays column names as `"a", "b"`.
struct Names<'a>(&'a [String]);

impl fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n:?}")?;
        }
        Ok(())
    }
}

/// How many names a missing column's message lists at most: a file may
/// have thousands, and the message goes into HTTP answers and logs.
const NAMES_SHOWN: usize = 100;

/// `available columns: "a", "b"` (the first [`NAMES_SHOWN`], then how many
/// more), or that the file has none.
struct Available<'a>(&'a [String]);

impl fmt::Display for Available<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.len() {
            0 => f.write_str("the file has no columns"),
            n if n > NAMES_SHOWN => write!(
                f,
                "available columns: {} and {} more",
                Names(&self.0[..NAMES_SHOWN]),
                n - NAMES_SHOWN
            ),
            _ => write!(f, "available columns: {}", Names(self.0)),
        }
    }
}

/// Columns as `#2 "amount", #3 "Amount "`.
struct Positions<'a>(&'a [(usize, String)]);

impl fmt::Display for Positions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (position, name)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "#{position} {name:?}")?;
        }
        Ok(())
    }
}

/// What [`InputError::MissingColumn`] adds when a CSV file's only column's
/// name looks like a whole header split by another delimiter than the one it
/// was read with: the one it holds most of.
pub(crate) struct DelimiterHint<'a> {
    available: &'a [String],
    delimiter: Option<char>,
}

impl<'a> DelimiterHint<'a> {
    pub(crate) fn new(available: &'a [String], delimiter: &Option<char>) -> Self {
        Self {
            available,
            delimiter: *delimiter,
        }
    }
}

impl fmt::Display for DelimiterHint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ([name], Some(delimiter)) = (self.available, self.delimiter) else {
            return Ok(());
        };
        let found = [(';', ";"), ('\t', "\\t"), ('|', "|"), (',', ",")]
            .into_iter()
            .filter(|&(c, _)| c != delimiter)
            .map(|(c, written)| (name.matches(c).count(), c, written))
            .filter(|&(n, _, _)| n > 0)
            .max_by_key(|&(n, _, _)| n);
        match found {
            Some((_, c, written)) => write!(
                f,
                " (the only column's name holds {c:?}: if the file is {c:?}-separated, set delimiter = \"{written}\" in this side's mapping)"
            ),
            None => Ok(()),
        }
    }
}

/// `, column "memo"` when the column is known, else nothing.
struct InColumn<'a>(Option<&'a str>);

impl fmt::Display for InColumn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(column) => write!(f, ", column {column:?}"),
            None => Ok(()),
        }
    }
}

/// Where the file ends, `n` lines after an unclosed quote.
struct EndsInside(u64);

impl fmt::Display for EndsInside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rest = "so the rows after it cannot be read";
        match self.0 {
            0 => f.write_str("the file ends inside it on that line (was it cut short?)"),
            1 => write!(f, "the file ends inside it 1 line later, {rest}"),
            n => write!(f, "the file ends inside it {n} lines later, {rest}"),
        }
    }
}

/// The field of an [`InputError::InvalidUtf8`] row that is not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotUtf8Field {
    /// Its column's name (its 1-based position past the header's columns).
    pub column: String,
    /// Its valid text as it is (escaped as in a Rust string) and each byte
    /// that is not UTF-8 as `\xNN`.
    pub value: String,
}

/// The end of [`InputError::InvalidUtf8`]'s message: the column and value
/// when they are known.
fn invalid_utf8_detail(field: Option<&NotUtf8Field>) -> String {
    match field {
        Some(NotUtf8Field { column, value }) => {
            let (head, rest) = cut(value);
            format!(", column {column:?}: \"{head}\"{rest} is not valid UTF-8")
        }
        None => ": invalid UTF-8".to_owned(),
    }
}

/// Most characters of a value a message shows: a field can hold megabytes,
/// and a message (or a problem+json detail) should stay readable. The
/// value itself is kept whole where it is data (a rejects file).
const SHOWN_CHARS: usize = 200;

/// `value` quoted as in a Rust string, cut after [`SHOWN_CHARS`] characters.
pub(crate) fn shown(value: &str) -> String {
    let (head, rest) = cut(value);
    format!("{head:?}{rest}")
}

/// `value`'s first [`SHOWN_CHARS`] characters, and what to say of the rest:
/// nothing when there is none, else how long the whole value is.
fn cut(value: &str) -> (&str, String) {
    match value.char_indices().nth(SHOWN_CHARS) {
        None => (value, String::new()),
        Some((end, _)) => (&value[..end], format!("... ({} bytes in all)", value.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_columns_says_so() {
        let missing = |available: Vec<String>| {
            InputError::MissingColumn {
                file: "x.parquet".to_owned(),
                column: "amount".to_owned(),
                available,
                delimiter: None,
            }
            .to_string()
        };
        assert_eq!(
            missing(Vec::new()),
            "x.parquet: column \"amount\" not found; the file has no columns"
        );
        assert_eq!(
            missing(vec!["id".to_owned(), "amt".to_owned()]),
            "x.parquet: column \"amount\" not found; available columns: \"id\", \"amt\""
        );
        // A wide file's names are listed up to a hundred.
        let wide: Vec<String> = (1..=250).map(|i| format!("c{i}")).collect();
        let text = missing(wide);
        assert!(text.ends_with("\"c99\", \"c100\" and 150 more"), "{text}");
        assert!(!text.contains("\"c101\""), "{text}");
    }
}
