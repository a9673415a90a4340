//! Reading input files into columnar text tables, and mapping them to [`Side`]s.
//!
//! Two stages, so a service can store an upload once and map it later:
//! [`read_table`] reads CSV, Parquet, Arrow IPC (file and stream) or NDJSON in
//! batches into a [`Table`] whose every column is UTF-8 text; [`Side::from_table`]
//! applies a [`SideMapping`], parsing amounts, currencies and dates exactly.
//! [`load_side`] does both.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use rayon::prelude::*;
use serde::Deserialize;

use crate::date::DateFormat;
use crate::error::{InputError, ValueProblem};
use crate::mapping::{AmountStyle, CurrencySource, MappingError, OnError, SideMapping};
use crate::money::{AmountError, Currency, parse_amount};
use crate::side::{Reject, Side, TextColumn};

/// Schema metadata key holding the original source name in stored IPC files.
const META_SOURCE: &str = "recon.source";
/// Schema metadata key holding the first row's line number in stored IPC files.
const META_FIRST_LINE: &str = "recon.first_line";
/// Schema metadata key holding [`LineFixes`] (`row:line;row:line`) in stored IPC files.
const META_LINE_FIXES: &str = "recon.line_fixes";
/// The UTF-8 byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// An input file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Comma (or other delimiter) separated values, UTF-8, optional BOM.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// Arrow IPC file (`.arrow`, `.feather`).
    Arrow,
    /// Arrow IPC stream (`.arrows`).
    ArrowStream,
    /// Newline-delimited JSON, one object per line.
    #[serde(alias = "jsonl")]
    Ndjson,
}

impl Format {
    /// The format a file name's extension implies (case-insensitive):
    /// `csv`/`txt`, `parquet`/`pq`, `arrow`/`feather`/`ipc`, `arrows`, `ndjson`/`jsonl`.
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "csv" | "txt" => Self::Csv,
            "parquet" | "pq" => Self::Parquet,
            "arrow" | "feather" | "ipc" => Self::Arrow,
            "arrows" => Self::ArrowStream,
            "ndjson" | "jsonl" => Self::Ndjson,
            _ => return None,
        })
    }

    /// The format a media type names (parameters such as `; charset=utf-8` ignored):
    /// `text/csv`, `application/vnd.apache.parquet`, `application/vnd.apache.arrow.file`,
    /// `application/vnd.apache.arrow.stream`, `application/x-ndjson`.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        let essence = media_type.split(';').next()?.trim().to_ascii_lowercase();
        Some(match essence.as_str() {
            "text/csv" => Self::Csv,
            "application/vnd.apache.parquet" | "application/x-parquet" => Self::Parquet,
            "application/vnd.apache.arrow.file" => Self::Arrow,
            "application/vnd.apache.arrow.stream" => Self::ArrowStream,
            "application/x-ndjson" | "application/jsonl" | "application/json-lines" => Self::Ndjson,
            _ => return None,
        })
    }

    /// The canonical media type of this format.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv",
            Self::Parquet => "application/vnd.apache.parquet",
            Self::Arrow => "application/vnd.apache.arrow.file",
            Self::ArrowStream => "application/vnd.apache.arrow.stream",
            Self::Ndjson => "application/x-ndjson",
        }
    }
}

/// How to read a file, beyond its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// CSV field delimiter.
    pub delimiter: u8,
    /// Whether the CSV's first line names the columns; without one, columns are named `1`, `2`, ...
    pub has_header: bool,
    /// Rows per batch.
    pub batch_size: usize,
    /// The name used in messages; by default the file name.
    pub source: Option<String>,
}

impl ReadOptions {
    /// The CSV options a side's mapping sets.
    ///
    /// # Errors
    /// [`MappingError::Delimiter`] when the delimiter is not one ASCII character.
    pub fn from_mapping(mapping: &SideMapping) -> Result<Self, MappingError> {
        Ok(Self {
            delimiter: mapping.delimiter_byte()?,
            has_header: mapping.has_header,
            ..Self::default()
        })
    }
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            delimiter: b',',
            has_header: true,
            batch_size: 16 * 1024,
            source: None,
        }
    }
}

/// A file read into memory as Arrow batches whose every column is UTF-8 text.
#[derive(Debug, Clone)]
pub struct Table {
    /// Where the rows came from, used in every message.
    pub source: String,
    /// All fields are `Utf8`, nullable.
    pub schema: SchemaRef,
    /// The rows, in file order.
    pub batches: Vec<RecordBatch>,
    /// Total rows over all batches.
    pub rows: usize,
    /// The 1-based line (or row number) of the first row: 2 for a CSV with a header, else 1.
    pub first_line: u64,
    /// Where CSV rows do not follow each other line by line (blank lines, quoted
    /// line breaks); see [`Table::line`].
    line_fixes: LineFixes,
}

/// Rows whose line is not the previous row's plus one, as sorted `(row, line)`
/// pairs; every row after a fix continues one line per row. Empty for almost every file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct LineFixes(Vec<(u64, u64)>);

impl LineFixes {
    /// Encodes the fixes for schema metadata.
    fn encode(&self) -> String {
        let mut out = String::new();
        for (i, (row, line)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            out.push_str(&format!("{row}:{line}"));
        }
        out
    }

    /// Decodes [`LineFixes::encode`]'s text; anything unreadable gives no fixes.
    fn decode(text: &str) -> Self {
        let parse = || -> Option<Vec<(u64, u64)>> {
            text.split(';')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (r, l) = p.split_once(':')?;
                    Some((r.parse().ok()?, l.parse().ok()?))
                })
                .collect()
        };
        Self(parse().unwrap_or_default())
    }
}

/// Walks rows in increasing order, giving each its line.
struct LineCursor<'a> {
    fixes: &'a [(u64, u64)],
    next: usize,
    base: (u64, u64),
}

impl<'a> LineCursor<'a> {
    fn new(fixes: &'a LineFixes, first_line: u64, first_row: u64) -> Self {
        let next = fixes.0.partition_point(|f| f.0 <= first_row);
        let base = match next.checked_sub(1) {
            Some(i) => fixes.0[i],
            None => (0, first_line),
        };
        Self {
            fixes: &fixes.0,
            next,
            base,
        }
    }

    /// The line of `row`; rows must not decrease between calls.
    fn line(&mut self, row: u64) -> u64 {
        while let Some(&fix) = self.fixes.get(self.next) {
            if fix.0 > row {
                break;
            }
            self.base = fix;
            self.next += 1;
        }
        self.base.1 + (row - self.base.0)
    }
}

impl Table {
    /// An empty table.
    pub fn empty(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            schema: Arc::new(Schema::empty()),
            batches: Vec::new(),
            rows: 0,
            first_line: 1,
            line_fixes: LineFixes::default(),
        }
    }

    /// The 1-based line (CSV, NDJSON) or row number (Parquet, Arrow) of row `row`
    /// (0-based over all batches). For CSV this is the physical line the record starts
    /// on, counting blank lines and line breaks inside quoted fields.
    pub fn line(&self, row: usize) -> u64 {
        LineCursor::new(&self.line_fixes, self.first_line, row as u64).line(row as u64)
    }
}

/// Reads a file into a text [`Table`].
///
/// CSV is read with a schema of all-`Utf8` columns named by the header (a UTF-8 BOM is
/// skipped); Parquet and Arrow columns of other types are cast to text; NDJSON
/// numbers and booleans keep their JSON text. An Arrow file written by
/// [`write_table_ipc`] keeps its original source name and line numbering.
///
/// # Errors
/// [`InputError`] naming the file (and line where there is one) for an unreadable,
/// empty or malformed file, or invalid UTF-8.
pub fn read_table(path: &Path, format: Format, opts: &ReadOptions) -> Result<Table, InputError> {
    let source = opts
        .source
        .clone()
        .unwrap_or_else(|| path.display().to_string());
    let span = tracing::debug_span!("read_table", file = %source, ?format);
    let _enter = span.enter();
    let started = Instant::now();
    let file = File::open(path).map_err(|e| io_err(&source, e))?;
    if file.metadata().map_err(|e| io_err(&source, e))?.len() == 0 {
        return Err(InputError::Empty { file: source });
    }
    let table = match format {
        Format::Csv => read_csv(path, file, source, opts)?,
        Format::Parquet => read_parquet(file, source, opts)?,
        Format::Arrow => read_arrow_file(file, source, opts)?,
        Format::ArrowStream => read_arrow_stream(file, source)?,
        Format::Ndjson => read_ndjson(file, source, opts)?,
    };
    tracing::debug!(
        rows = table.rows,
        batches = table.batches.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "table read"
    );
    Ok(table)
}

fn io_err(file: &str, source: std::io::Error) -> InputError {
    InputError::Io {
        file: file.to_owned(),
        source,
    }
}

fn format_err(file: &str, e: impl std::fmt::Display) -> InputError {
    InputError::Format {
        file: file.to_owned(),
        reason: e.to_string(),
    }
}

/// Turns a CSV reader's error into one naming the line, when its message has one.
fn csv_err(file: &str, e: &ArrowError) -> InputError {
    let msg = match e {
        ArrowError::CsvError(m) => m.as_str(),
        other => return format_err(file, other),
    };
    let line = msg.split_once("line ").and_then(|(_, rest)| {
        let digits: &str = &rest[..rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len())];
        digits.parse::<u64>().ok()
    });
    let lower = msg.to_ascii_lowercase();
    match line {
        Some(line) if lower.contains("utf-8") || lower.contains("utf8") => {
            InputError::InvalidUtf8 {
                file: file.to_owned(),
                line,
            }
        }
        Some(line) => InputError::MalformedRow {
            file: file.to_owned(),
            line,
            // The line is in the message already; say it once.
            reason: msg.replace(&format!(" for line {line}"), ""),
        },
        None if lower.contains("utf-8") || lower.contains("utf8") => InputError::InvalidUtf8 {
            file: file.to_owned(),
            line: 1,
        },
        None => format_err(file, msg),
    }
}

fn read_csv(
    path: &Path,
    mut file: File,
    source: String,
    opts: &ReadOptions,
) -> Result<Table, InputError> {
    let mut start = [0u8; 3];
    let mut got = 0;
    while got < 3 {
        let n = file
            .read(&mut start[got..])
            .map_err(|e| io_err(&source, e))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let skip = if &start[..got] == BOM { 3 } else { 0 };
    file.seek(SeekFrom::Start(skip))
        .map_err(|e| io_err(&source, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    if reader
        .fill_buf()
        .map_err(|e| io_err(&source, e))?
        .is_empty()
    {
        return Err(InputError::Empty { file: source });
    }
    let csv_format = arrow_csv::reader::Format::default()
        .with_header(opts.has_header)
        .with_delimiter(opts.delimiter);
    let (inferred, _) = csv_format
        .infer_schema(&mut reader, Some(0))
        .map_err(|e| csv_err(&source, &e))?;
    if inferred.fields().is_empty() {
        return Err(InputError::Empty { file: source });
    }
    let fields: Vec<Field> = inferred
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let name = if opts.has_header {
                f.name().clone()
            } else {
                (i + 1).to_string()
            };
            Field::new(name, DataType::Utf8, true)
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let mut file = reader.into_inner();
    file.seek(SeekFrom::Start(skip))
        .map_err(|e| io_err(&source, e))?;
    let first_line = if opts.has_header { 2 } else { 1 };
    let read = || -> Result<(Vec<RecordBatch>, usize), InputError> {
        let csv = arrow_csv::ReaderBuilder::new(schema.clone())
            .with_header(opts.has_header)
            .with_delimiter(opts.delimiter)
            .with_batch_size(opts.batch_size)
            .build_buffered(BufReader::with_capacity(1 << 20, file))
            .map_err(|e| csv_err(&source, &e))?;
        let mut batches = Vec::new();
        let mut rows = 0;
        for batch in csv {
            let batch = batch.map_err(|e| csv_err(&source, &e))?;
            rows += batch.num_rows();
            batches.push(batch);
        }
        Ok((batches, rows))
    };
    // The reader counts records; a second pass finds the lines they start on.
    let scan = || scan_line_fixes(path, skip, opts, first_line);
    let (read, scanned) = rayon::join(read, scan);
    let line_fixes = match scanned {
        Ok((fixes, _)) if fixes.0.is_empty() => fixes,
        Ok((fixes, records)) => match &read {
            Ok((_, rows)) if *rows as u64 == records => fixes,
            Ok(_) => LineFixes::default(),
            Err(_) => fixes,
        },
        Err(_) => LineFixes::default(),
    };
    let (batches, rows) = read.map_err(|e| relocate(e, &line_fixes, opts.has_header))?;
    Ok(Table {
        source,
        schema,
        batches,
        rows,
        first_line,
        line_fixes,
    })
}

/// Turns a reader error's record number (1-based, header included) into the line
/// that record starts on.
fn relocate(err: InputError, fixes: &LineFixes, has_header: bool) -> InputError {
    let first_line = if has_header { 2 } else { 1 };
    let physical = |record: u64| -> u64 {
        match record.checked_sub(1 + u64::from(has_header)) {
            Some(row) => LineCursor::new(fixes, first_line, row).line(row),
            None => record,
        }
    };
    match err {
        InputError::InvalidUtf8 { file, line } => InputError::InvalidUtf8 {
            file,
            line: physical(line),
        },
        InputError::MalformedRow { file, line, reason } => InputError::MalformedRow {
            file,
            line: physical(line),
            reason,
        },
        other => other,
    }
}

/// Finds the line each CSV data record starts on, where it differs from one line per
/// record: after blank lines (which the reader skips) and quoted fields holding line
/// breaks. Follows the reader's quoting: a quote opens a field only at its start,
/// `""` inside a quoted field is a literal quote. Returns the fixes and the number of
/// data records seen, which the caller checks against the reader's count.
fn scan_line_fixes(
    path: &Path,
    skip: u64,
    opts: &ReadOptions,
    first_line: u64,
) -> std::io::Result<(LineFixes, u64)> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(skip))?;
    let mut buf = vec![0u8; 1 << 20];
    let header = u64::from(opts.has_header);
    let mut fixes = Vec::new();
    let mut predict = (0u64, first_line);
    let mut records = 0u64;
    let mut emit = |start: u64| {
        if let Some(row) = records.checked_sub(header)
            && predict.1 + (row - predict.0) != start
        {
            fixes.push((row, start));
            predict = (row, start);
        }
        records += 1;
    };
    let mut in_quotes = false;
    // Whether the current record has any byte besides `\r`.
    let mut nonempty = false;
    let mut line = 1u64;
    let mut record_line = 1u64;
    // The byte before the chunk's first, and where the last closing quote was.
    let mut before = b'\n';
    let mut offset = 0u64;
    let mut last_close = None;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        let mut from = 0;
        for pos in memchr::memchr2_iter(b'\n', b'"', chunk) {
            if !nonempty && chunk[from..pos].iter().any(|&b| b != b'\r') {
                nonempty = true;
            }
            from = pos + 1;
            let prev = if pos == 0 { before } else { chunk[pos - 1] };
            let abs = offset + pos as u64;
            if chunk[pos] == b'"' {
                nonempty = true;
                if in_quotes {
                    in_quotes = false;
                    last_close = Some(abs);
                } else if prev == opts.delimiter
                    || prev == b'\n'
                    || prev == b'\r'
                    || last_close.is_some_and(|c| c + 1 == abs)
                {
                    in_quotes = true;
                }
                continue;
            }
            line += 1;
            if in_quotes {
                continue;
            }
            if nonempty {
                emit(record_line);
            }
            nonempty = false;
            record_line = line;
        }
        if !nonempty && chunk[from..].iter().any(|&b| b != b'\r') {
            nonempty = true;
        }
        before = chunk[n - 1];
        offset += n as u64;
    }
    if nonempty {
        emit(record_line);
    }
    Ok((LineFixes(fixes), records.saturating_sub(header)))
}

/// Casts every column to `Utf8` (keeping names) so mapping only ever sees text.
/// A table of every column as text, numbered from row 1 (formats without
/// physical lines: Parquet, Arrow, NDJSON records).
fn text_table(
    source: String,
    batches: impl Iterator<Item = Result<RecordBatch, ArrowError>>,
    schema: &Schema,
) -> Result<Table, InputError> {
    let (schema, batches, rows) = to_text_batches(&source, batches, schema)?;
    Ok(Table {
        source,
        schema,
        batches,
        rows,
        first_line: 1,
        line_fixes: LineFixes::default(),
    })
}

fn to_text_batches(
    source: &str,
    batches: impl Iterator<Item = Result<RecordBatch, ArrowError>>,
    schema: &Schema,
) -> Result<(SchemaRef, Vec<RecordBatch>, usize), InputError> {
    let text_schema = Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let mut out = Vec::new();
    let mut rows = 0;
    for batch in batches {
        let batch = batch.map_err(|e| format_err(source, e))?;
        let columns = batch
            .columns()
            .iter()
            .map(|c| {
                if c.data_type() == &DataType::Utf8 {
                    Ok(c.clone())
                } else {
                    arrow_cast::cast(c, &DataType::Utf8)
                }
            })
            .collect::<Result<Vec<ArrayRef>, _>>()
            .map_err(|e| format_err(source, e))?;
        let batch = RecordBatch::try_new(text_schema.clone(), columns)
            .map_err(|e| format_err(source, e))?;
        rows += batch.num_rows();
        out.push(batch);
    }
    Ok((text_schema, out, rows))
}

fn read_parquet(file: File, source: String, opts: &ReadOptions) -> Result<Table, InputError> {
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format_err(&source, e))?;
    let schema = builder.schema().clone();
    let reader = builder
        .with_batch_size(opts.batch_size)
        .build()
        .map_err(|e| format_err(&source, e))?;
    text_table(source, reader, &schema)
}

/// Applies the source name and first line stored by [`write_table_ipc`], if any.
fn stored_origin(schema: &Schema, source: String, opts: &ReadOptions) -> (String, u64) {
    let metadata = schema.metadata();
    let first_line = metadata
        .get(META_FIRST_LINE)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let source = match (&opts.source, metadata.get(META_SOURCE)) {
        (None, Some(stored)) => stored.clone(),
        _ => source,
    };
    (source, first_line)
}

fn read_arrow_file(file: File, source: String, opts: &ReadOptions) -> Result<Table, InputError> {
    let reader = arrow_ipc::reader::FileReader::try_new_buffered(file, None)
        .map_err(|e| format_err(&source, e))?;
    let schema = reader.schema();
    let (source, first_line) = stored_origin(&schema, source, opts);
    let line_fixes = schema
        .metadata()
        .get(META_LINE_FIXES)
        .map(|t| LineFixes::decode(t))
        .unwrap_or_default();
    Ok(Table {
        first_line,
        line_fixes,
        ..text_table(source, reader, &schema)?
    })
}

fn read_arrow_stream(file: File, source: String) -> Result<Table, InputError> {
    let reader = arrow_ipc::reader::StreamReader::try_new_buffered(file, None)
        .map_err(|e| format_err(&source, e))?;
    let schema = reader.schema();
    text_table(source, reader, &schema)
}

fn read_ndjson(file: File, source: String, opts: &ReadOptions) -> Result<Table, InputError> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let (inferred, _) = arrow_json::reader::infer_json_schema_from_seekable(&mut reader, None)
        .map_err(|e| format_err(&source, e))?;
    if inferred.fields().is_empty() {
        return Err(InputError::Empty { file: source });
    }
    let schema = Arc::new(Schema::new(
        inferred
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| io_err(&source, e))?;
    let json = arrow_json::ReaderBuilder::new(schema.clone())
        .with_coerce_primitive(true)
        .with_batch_size(opts.batch_size)
        .build(reader)
        .map_err(|e| format_err(&source, e))?;
    text_table(source, json, &schema)
}

/// Writes a table as an Arrow IPC file (how the service stores uploads); read it
/// back with [`read_table`] and [`Format::Arrow`]. The source name and first line are
/// kept in the schema's metadata, so messages still name the original file.
///
/// # Errors
/// [`InputError::Io`] or [`InputError::Format`] when the file cannot be written.
pub fn write_table_ipc(table: &Table, path: &Path) -> Result<(), InputError> {
    let file_name = path.display().to_string();
    let mut metadata = table.schema.metadata().clone();
    metadata.insert(META_SOURCE.to_owned(), table.source.clone());
    metadata.insert(META_FIRST_LINE.to_owned(), table.first_line.to_string());
    if !table.line_fixes.0.is_empty() {
        metadata.insert(META_LINE_FIXES.to_owned(), table.line_fixes.encode());
    }
    let schema = Arc::new(Schema::new_with_metadata(
        table.schema.fields().clone(),
        metadata,
    ));
    let file = File::create(path).map_err(|e| io_err(&file_name, e))?;
    let mut writer = arrow_ipc::writer::FileWriter::try_new_buffered(file, &schema)
        .map_err(|e| format_err(&file_name, e))?;
    for batch in &table.batches {
        let batch = batch
            .clone()
            .with_schema(schema.clone())
            .map_err(|e| format_err(&file_name, e))?;
        writer
            .write(&batch)
            .map_err(|e| format_err(&file_name, e))?;
    }
    writer.finish().map_err(|e| format_err(&file_name, e))?;
    writer
        .into_inner()
        .and_then(|mut w| w.flush().map_err(ArrowError::from))
        .map_err(|e| format_err(&file_name, e))?;
    Ok(())
}

/// How the amount is read, with column positions resolved.
#[derive(Clone, Copy)]
enum AmountCols {
    Signed(usize),
    DebitCredit { debit: usize, credit: usize },
    Directed { amount: usize, direction: usize },
}

#[derive(Clone, Copy)]
enum CurrencyCol {
    Column(usize),
    Fixed(Currency),
}

/// A mapping resolved against one table's schema.
struct Plan<'a> {
    source: &'a str,
    names: Vec<&'a str>,
    id: Option<usize>,
    amount: AmountCols,
    currency: CurrencyCol,
    date: Option<usize>,
    date_format: DateFormat,
    reference: Option<usize>,
    counterparty: Option<usize>,
    description: Option<usize>,
    extra: Vec<usize>,
    debit_values: &'a [String],
    credit_values: &'a [String],
    on_error: OnError,
}

/// A refused value: which column, the text, and why.
struct Fault {
    column: usize,
    value: String,
    problem: ValueProblem,
}

impl Fault {
    fn new(column: usize, value: &str, problem: impl Into<ValueProblem>) -> Self {
        Self {
            column,
            value: value.to_owned(),
            problem: problem.into(),
        }
    }
}

impl<'a> Plan<'a> {
    fn new(table: &'a Table, mapping: &'a SideMapping) -> Result<Self, InputError> {
        let mapping_err = |source| InputError::Mapping {
            file: table.source.clone(),
            source,
        };
        let names: Vec<&str> = table
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let find = |column: &str| -> Result<usize, InputError> {
            names
                .iter()
                .position(|n| *n == column)
                .or_else(|| {
                    names
                        .iter()
                        .position(|n| n.trim().eq_ignore_ascii_case(column.trim()))
                })
                .ok_or_else(|| InputError::MissingColumn {
                    file: table.source.clone(),
                    column: column.to_owned(),
                    available: names.iter().map(|n| (*n).to_owned()).collect(),
                })
        };
        let opt = |column: &Option<String>| column.as_deref().map(find).transpose();
        let amount = match mapping.amount_style().map_err(mapping_err)? {
            AmountStyle::Signed { amount } => AmountCols::Signed(find(amount)?),
            AmountStyle::DebitCredit { debit, credit } => AmountCols::DebitCredit {
                debit: find(debit)?,
                credit: find(credit)?,
            },
            AmountStyle::Directed { amount, direction } => AmountCols::Directed {
                amount: find(amount)?,
                direction: find(direction)?,
            },
        };
        let currency = match mapping.currency_source().map_err(mapping_err)? {
            CurrencySource::Column(c) => CurrencyCol::Column(find(c)?),
            CurrencySource::Fixed(c) => CurrencyCol::Fixed(c),
        };
        let date_format = DateFormat::parse(&mapping.date_format).map_err(|e| {
            mapping_err(MappingError::DateFormat {
                format: mapping.date_format.clone(),
                reason: e.to_string(),
            })
        })?;
        for (i, field) in table.schema.fields().iter().enumerate() {
            if field.data_type() != &DataType::Utf8 {
                return Err(format_err(
                    &table.source,
                    format!(
                        "column {:?} (#{}) is {}, not text",
                        field.name(),
                        i + 1,
                        field.data_type()
                    ),
                ));
            }
        }
        let id = opt(&mapping.id)?;
        let date = opt(&mapping.date)?;
        let reference = opt(&mapping.reference)?;
        let counterparty = opt(&mapping.counterparty)?;
        let description = opt(&mapping.description)?;
        let extra = mapping
            .extra
            .iter()
            .map(|c| find(c))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            source: &table.source,
            names,
            id,
            amount,
            currency,
            date,
            date_format,
            reference,
            counterparty,
            description,
            extra,
            debit_values: &mapping.debit_values,
            credit_values: &mapping.credit_values,
            on_error: mapping.on_error,
        })
    }

    /// Maps one batch whose first row is table row `first_row`.
    fn map_batch(
        &self,
        batch: &RecordBatch,
        first_row: u64,
        mut lines: LineCursor<'_>,
    ) -> Result<Side, InputError> {
        let cols: Vec<&StringArray> = batch
            .columns()
            .iter()
            .map(|c| c.as_string::<i32>())
            .collect();
        let rows = batch.num_rows();
        let text_col = |idx: Option<usize>| -> TextColumn {
            let bytes = idx.map_or(0, |i| cols[i].value_data().len());
            TextColumn::with_capacity(rows, bytes)
        };
        let mut side = Side {
            source: self.source.to_owned(),
            id: match self.id {
                Some(i) => text_col(Some(i)),
                None => TextColumn::with_capacity(rows, rows * 8),
            },
            amount: Vec::with_capacity(rows),
            currency: Vec::with_capacity(rows),
            date: Vec::with_capacity(rows),
            reference: text_col(self.reference),
            counterparty: text_col(self.counterparty),
            description: text_col(self.description),
            line: Vec::with_capacity(rows),
            extra: self
                .extra
                .iter()
                .map(|&i| (self.names[i].to_owned(), text_col(Some(i))))
                .collect(),
            rejects: Vec::new(),
        };
        let cell = |col: usize, row: usize| -> Option<&str> {
            let a = cols[col];
            if a.is_null(row) {
                None
            } else {
                Some(a.value(row))
            }
        };
        let non_empty = |col: Option<usize>, row: usize| -> Option<&str> {
            col.and_then(|c| cell(c, row)).filter(|s| !s.is_empty())
        };
        for row in 0..rows {
            let line = lines.line(first_row + row as u64);
            match self.parse_row(&cell, row) {
                Ok((amount, currency, date)) => {
                    match self.id {
                        Some(c) => side.id.push(cell(c, row)),
                        None => side.id.push_display(line),
                    }
                    side.amount.push(amount);
                    side.currency.push(currency);
                    side.date.push(date);
                    side.reference.push(non_empty(self.reference, row));
                    side.counterparty.push(non_empty(self.counterparty, row));
                    side.description.push(non_empty(self.description, row));
                    side.line.push(line);
                    for ((_, out), &c) in side.extra.iter_mut().zip(&self.extra) {
                        out.push(non_empty(Some(c), row));
                    }
                }
                Err(fault) => {
                    let column = self.names[fault.column].to_owned();
                    match self.on_error {
                        OnError::Fail => {
                            return Err(InputError::BadValue {
                                file: self.source.to_owned(),
                                line,
                                column,
                                value: fault.value,
                                problem: fault.problem,
                            });
                        }
                        OnError::Quarantine => side.rejects.push(Reject {
                            line,
                            reason: format!("{:?} {}", fault.value, fault.problem),
                            column: Some(column),
                            value: Some(fault.value),
                        }),
                    }
                }
            }
        }
        Ok(side)
    }

    /// Reads one row's typed values, or the first fault.
    fn parse_row<'b>(
        &self,
        cell: &impl Fn(usize, usize) -> Option<&'b str>,
        row: usize,
    ) -> Result<(i64, Currency, Option<i32>), Fault> {
        let text = |c: usize| cell(c, row).unwrap_or("");
        if let Some(c) = self.id
            && text(c).trim().is_empty()
        {
            return Err(Fault::new(c, text(c), ValueProblem::EmptyId));
        }
        let currency = match self.currency {
            CurrencyCol::Fixed(cur) => cur,
            CurrencyCol::Column(c) => Currency::parse(text(c))
                .ok_or_else(|| Fault::new(c, text(c), ValueProblem::Currency))?,
        };
        let amount = match self.amount {
            AmountCols::Signed(c) => {
                parse_amount(text(c), currency).map_err(|e| Fault::new(c, text(c), e))?
            }
            AmountCols::DebitCredit { debit, credit } => {
                let part = |c: usize| -> Result<Option<i64>, Fault> {
                    let t = text(c);
                    if t.trim().is_empty() {
                        return Ok(None);
                    }
                    let v = parse_amount(t, currency).map_err(|e| Fault::new(c, t, e))?;
                    v.checked_abs()
                        .map(Some)
                        .ok_or_else(|| Fault::new(c, t, ValueProblem::Overflow))
                };
                match (part(debit)?, part(credit)?) {
                    (None, None) => {
                        return Err(Fault::new(debit, "", AmountError::Empty));
                    }
                    (Some(d), None) => -d,
                    (None, Some(c)) => c,
                    (Some(d), Some(c)) if d == 0 || c == 0 => c - d,
                    (Some(_), Some(_)) => {
                        return Err(Fault::new(debit, text(debit), ValueProblem::DebitAndCredit));
                    }
                }
            }
            AmountCols::Directed { amount, direction } => {
                let t = text(amount);
                let v = parse_amount(t, currency)
                    .map_err(|e| Fault::new(amount, t, e))?
                    .checked_abs()
                    .ok_or_else(|| Fault::new(amount, t, ValueProblem::Overflow))?;
                let d = text(direction).trim();
                let is =
                    |values: &[String]| values.iter().any(|x| x.trim().eq_ignore_ascii_case(d));
                if is(self.debit_values) {
                    -v
                } else if is(self.credit_values) {
                    v
                } else {
                    let expected = self
                        .debit_values
                        .iter()
                        .chain(self.credit_values)
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ");
                    return Err(Fault::new(
                        direction,
                        text(direction),
                        ValueProblem::Direction { expected },
                    ));
                }
            }
        };
        let date = match self.date {
            None => None,
            Some(c) => {
                let t = text(c);
                if t.trim().is_empty() {
                    None
                } else {
                    Some(
                        self.date_format
                            .parse_days(t)
                            .map_err(|e| Fault::new(c, t, e))?,
                    )
                }
            }
        };
        Ok((amount, currency, date))
    }
}

impl Side {
    /// Maps a text table to a side: finds the mapped columns, parses amounts,
    /// currencies and dates, and applies `on_error`. Batches are mapped in parallel
    /// and joined in file order.
    ///
    /// Column names match exactly, else ignoring case and surrounding spaces.
    /// Amounts: see [`crate::money::parse_amount`]; with `debit` + `credit`, a debit
    /// counts as `-|d|` and a credit as `+|c|` (an empty cell is zero, two non-zero
    /// cells are an error); with `direction`, a debit indicator makes the amount
    /// `-|a|` and a credit indicator `+|a|`. An empty date is `None`; an empty mapped
    /// id is an error. Text roles are kept raw, with empty cells as `None`.
    ///
    /// # Errors
    /// [`InputError::Mapping`] for an unusable mapping, [`InputError::MissingColumn`]
    /// for a mapped column the table lacks, and under `on_error = "fail"`
    /// [`InputError::BadValue`] for the first bad row.
    pub fn from_table(table: &Table, mapping: &SideMapping) -> Result<Side, InputError> {
        let span = tracing::debug_span!("map_table", file = %table.source, rows = table.rows);
        let _enter = span.enter();
        let plan = Plan::new(table, mapping)?;
        let mut starts = Vec::with_capacity(table.batches.len());
        let mut row = 0u64;
        for b in &table.batches {
            starts.push(row);
            row += b.num_rows() as u64;
        }
        let map = |(batch, &first_row): (&RecordBatch, &u64)| {
            let lines = LineCursor::new(&table.line_fixes, table.first_line, first_row);
            plan.map_batch(batch, first_row, lines)
        };
        if let [batch] = table.batches.as_slice() {
            return map((batch, &0));
        }
        // Room for every row and all the text the mapped columns could hold, so the
        // joined side is allocated once.
        let text_bytes = |col: Option<usize>| -> usize {
            col.map_or(0, |c| {
                table
                    .batches
                    .iter()
                    .map(|b| b.column(c).as_string::<i32>().value_data().len())
                    .sum()
            })
        };
        let rows = table.rows;
        let mut side = Side {
            source: table.source.clone(),
            id: TextColumn::with_capacity(rows, text_bytes(plan.id).max(rows * 8)),
            amount: Vec::with_capacity(rows),
            currency: Vec::with_capacity(rows),
            date: Vec::with_capacity(rows),
            reference: TextColumn::with_capacity(rows, text_bytes(plan.reference)),
            counterparty: TextColumn::with_capacity(rows, text_bytes(plan.counterparty)),
            description: TextColumn::with_capacity(rows, text_bytes(plan.description)),
            line: Vec::with_capacity(rows),
            extra: plan
                .extra
                .iter()
                .map(|&i| {
                    let col = TextColumn::with_capacity(rows, text_bytes(Some(i)));
                    (plan.names[i].to_owned(), col)
                })
                .collect(),
            rejects: Vec::new(),
        };
        // A few batches per thread at a time, joined in order and dropped, so the
        // per-batch parts never add up to a second copy of the side.
        let window = rayon::current_num_threads().max(1) * 2;
        for (batches, starts) in table.batches.chunks(window).zip(starts.chunks(window)) {
            let parts: Vec<Result<Side, InputError>> =
                batches.par_iter().zip(starts.par_iter()).map(map).collect();
            for part in parts {
                side.append(&part?);
            }
        }
        if !side.rejects.is_empty() {
            tracing::warn!(file = %side.source, rejects = side.rejects.len(), "rows quarantined");
        }
        Ok(side)
    }
}

/// Reads a file and maps it: [`read_table`] then [`Side::from_table`]. The format is
/// the mapping's, else the file extension's.
///
/// # Errors
/// Any error of those two steps, [`InputError::UnknownFormat`], and
/// [`InputError::Mapping`] for a bad delimiter.
pub fn load_side(path: &Path, mapping: &SideMapping) -> Result<Side, InputError> {
    let file = path.display().to_string();
    let format = match mapping.format.or_else(|| Format::from_path(path)) {
        Some(f) => f,
        None => {
            return Err(InputError::UnknownFormat {
                hint: path
                    .extension()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                file,
            });
        }
    };
    let opts = ReadOptions::from_mapping(mapping).map_err(|source| InputError::Mapping {
        file: file.clone(),
        source,
    })?;
    let table = read_table(path, format, &opts)?;
    Side::from_table(&table, mapping)
}

/// Writes a side's rejects as CSV with the header `line,column,value,reason`.
///
/// # Errors
/// The writer's I/O errors.
pub fn write_rejects_csv(side: &Side, writer: impl Write) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(writer);
    w.write_all(b"line,column,value,reason\n")?;
    for r in &side.rejects {
        write!(w, "{},", r.line)?;
        write_csv_field(&mut w, r.column.as_deref().unwrap_or(""))?;
        w.write_all(b",")?;
        write_csv_field(&mut w, r.value.as_deref().unwrap_or(""))?;
        w.write_all(b",")?;
        write_csv_field(&mut w, &r.reason)?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

/// Writes one CSV field, quoted when it holds a delimiter, quote or line break.
fn write_csv_field(w: &mut impl Write, field: &str) -> std::io::Result<()> {
    if field.contains([',', '"', '\n', '\r']) {
        write!(w, "\"{}\"", field.replace('"', "\"\""))
    } else {
        w.write_all(field.as_bytes())
    }
}
