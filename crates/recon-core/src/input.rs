//! Reading input files into columnar text tables, and mapping them to [`Side`]s.
//!
//! Two stages, so a service can store an upload once and map it later:
//! [`read_table`] reads CSV, Parquet, Arrow IPC (file and stream) or NDJSON in
//! batches into a [`Table`] whose every column is UTF-8 text; [`Side::from_table`]
//! applies a [`SideMapping`], parsing amounts, currencies and dates exactly.
//! [`load_side`] does both, batch by batch; [`SideLoad`] does it with a chosen
//! format, read options or set of roles (a run builds only the roles its rules
//! read: [`crate::rules::Rules::roles`]).

mod cast;
mod load;
mod locate;
mod map;
mod read;

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, Schema, SchemaRef};
use serde::Deserialize;

use crate::error::InputError;
use crate::mapping::{MappingError, SideMapping, TextEncoding};
use crate::rules::RoleSet;
use crate::side::Side;
use map::{Plan, SideBuilder};
use read::{Opened, for_each_batch, io_err};

/// Schema metadata key holding the original source name in stored IPC files.
const META_SOURCE: &str = "recon.source";
/// Schema metadata key holding the first row's line number in stored IPC files.
const META_FIRST_LINE: &str = "recon.first_line";
/// Schema metadata key holding [`LineFixes`] (`row:line;row:line`) in stored IPC files.
const META_LINE_FIXES: &str = "recon.line_fixes";
/// Field metadata key marking a text column that stands in for a column recon
/// cannot read as text (e.g. a nested struct); its value is the original type.
/// All of such a column's values are null; mapping it is an
/// [`InputError::UnreadableColumn`].
const META_UNREADABLE: &str = "recon.unreadable_type";
/// Footer metadata key of a stored IPC file: the columns stored empty because
/// a value had no text form, as a JSON object of name to what made them
/// unreadable (known only once the whole file was read).
const META_UNREADABLE_COLUMNS: &str = "recon.unreadable_columns";
/// The name messages give the file at `path`: `opts`' source, else the path.
fn source_name(opts: Option<&ReadOptions>, path: &Path) -> String {
    opts.and_then(|o| o.source.clone())
        .unwrap_or_else(|| path.display().to_string())
}

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
    /// The format's name as a rules file writes it and the service shows it
    /// (`"arrow-stream"`): what serde reads back.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Parquet => "parquet",
            Self::Arrow => "arrow",
            Self::ArrowStream => "arrow-stream",
            Self::Ndjson => "ndjson",
        }
    }

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

/// The most columns a file may have: a ledger or a bank statement has tens;
/// past this the file is refused ([`InputError::TooManyColumns`]) before any
/// reader allocates for its columns (arrow-csv takes an offset per cell of a
/// batch, and a batch of a very wide file is read in fewer rows).
pub const MAX_COLUMNS: usize = 10_000;

/// The longest column name recon reads, in bytes; a longer one is refused
/// ([`InputError::ColumnNameTooLong`]): every name is copied into each
/// batch's schema and a stored dataset's record.
pub const MAX_COLUMN_NAME: usize = 1024;

/// The most bytes a Parquet row group may hold a record once uncompressed,
/// from its metadata, before any page is read
/// ([`InputError::RecordsTooLarge`]): no financial record comes near it, and
/// a small compressed file can otherwise expand to gigabytes.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;

/// How to read a file, beyond its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// CSV field delimiter.
    pub delimiter: u8,
    /// Whether the CSV's first line names the columns; without one, columns are named `1`, `2`, ...
    pub has_header: bool,
    /// The CSV's character encoding (the other formats are UTF-8 by their
    /// own definition).
    pub encoding: TextEncoding,
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
            encoding: mapping.encoding,
            ..Self::default()
        })
    }
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            delimiter: b',',
            has_header: true,
            encoding: TextEncoding::UTF_8,
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
    /// The delimiter a CSV file was read with; `None` for the other formats.
    delimiter: Option<u8>,
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

    /// Decodes [`LineFixes::encode`]'s text; anything unreadable gives no
    /// fixes, as do rows out of order or a line past any file's (the fixes
    /// come from a file's metadata, which anyone can write).
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
        let fixes = parse().unwrap_or_default();
        let sane = fixes.windows(2).all(|w| w[0].0 < w[1].0)
            && fixes.iter().all(|&(_, line)| line <= read::MAX_FIRST_LINE);
        Self(if sane { fixes } else { Vec::new() })
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
        // Both bounded (stored first lines and fixes are checked when read),
        // yet never allowed to wrap.
        self.base.1.saturating_add(row.saturating_sub(self.base.0))
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
            delimiter: None,
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
/// [`convert_to_ipc`] or [`write_table_ipc`] keeps its original source name and line
/// numbering.
///
/// # Errors
/// [`InputError`] naming the file (and line where there is one) for an unreadable,
/// empty or malformed file, or invalid UTF-8.
pub fn read_table(path: &Path, format: Format, opts: &ReadOptions) -> Result<Table, InputError> {
    let span = tracing::debug_span!("read_table", file = %path.display(), ?format);
    let _enter = span.enter();
    let started = Instant::now();
    let opened = Opened::open(path, format, opts)?;
    let (source, schema, first_line, delimiter) = (
        opened.source.clone(),
        opened.schema.clone(),
        opened.first_line,
        opened.delimiter(),
    );
    let mut batches = Vec::new();
    let driven = opened.drive(|all| {
        for_each_batch(all, |batch, _| {
            batches.push(batch);
            Ok(())
        })
    })?;
    tracing::debug!(
        rows = driven.rows,
        batches = batches.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "table read"
    );
    Ok(Table {
        source,
        schema,
        batches,
        rows: driven.rows,
        first_line,
        line_fixes: driven.line_fixes,
        delimiter,
    })
}

/// What [`convert_to_ipc`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    /// Rows written.
    pub rows: u64,
    /// The column names, in file order.
    pub columns: Vec<String>,
    /// The columns stored empty because their values have no text form (a
    /// nested struct, map or union), or one of them has none (a binary value
    /// that is not UTF-8, a date outside the calendar): mapping one is an
    /// [`InputError::UnreadableColumn`] saying which.
    pub unreadable: Vec<String>,
    /// The encoding a CSV file was read in: its byte order mark's, else
    /// the one asked for; `None` for the other formats.
    pub encoding: Option<TextEncoding>,
}

/// Converts a file to an Arrow IPC file of text columns (how the service stores an
/// upload), batch by batch: never more than a batch or two in memory, plus the CSV
/// line map. Reading `dest` back with [`read_table`] and [`Format::Arrow`] gives the
/// same table as reading `src`, with the same source name (`opts.source`, else
/// `src`'s name) and line numbers, so messages still point at the upload.
///
/// `dest` is created (or truncated) and flushed, not synced: the caller decides
/// about `fsync`. On an error `dest` may hold a partial file; the caller removes it.
///
/// # Errors
/// Every error [`read_table`] gives for `src`, and [`InputError::Io`]
/// naming `dest` when it cannot be written (a full disk is the writer's
/// failure, never the input's).
pub fn convert_to_ipc(
    src: &Path,
    format: Format,
    opts: &ReadOptions,
    dest: &Path,
) -> Result<Converted, InputError> {
    let span = tracing::debug_span!("convert_to_ipc", file = %src.display(), ?format);
    let _enter = span.enter();
    let started = Instant::now();
    // A Parquet string column holding bytes that are not UTF-8 fails its
    // reader's whole batch, so the file is converted again without it and
    // it is stored as a binary column with such a value is: empty, marked
    // unreadable, refused where mapped. One more try per such column.
    let mut left_out = std::collections::BTreeMap::new();
    loop {
        let e = match convert_leaving_out(src, format, opts, dest, &left_out) {
            Ok(converted) => {
                tracing::debug!(
                    rows = converted.rows,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "converted to IPC"
                );
                return Ok(converted);
            }
            Err(e) => e,
        };
        let column = match &e {
            InputError::InvalidUtf8 {
                field: Some(field), ..
            } if format == Format::Parquet && !left_out.contains_key(&field.column) => {
                field.column.clone()
            }
            _ => return Err(e),
        };
        left_out.insert(column, format!("Utf8 (first at {e})"));
    }
}

/// [`convert_to_ipc`] once, with the `left_out` columns (name: why) not read
/// but stored empty and marked unreadable.
fn convert_leaving_out(
    src: &Path,
    format: Format,
    opts: &ReadOptions,
    dest: &Path,
    left_out: &std::collections::BTreeMap<String, String>,
) -> Result<Converted, InputError> {
    let mut opened = Opened::open(src, format, opts)?;
    let schema = opened.schema.clone();
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut unreadable: Vec<String> = schema
        .fields()
        .iter()
        .filter(|f| f.metadata().contains_key(META_UNREADABLE))
        .map(|f| f.name().clone())
        .collect();
    // A column nobody may ever map must not refuse the upload: a value
    // without a text form marks its column instead, refused where mapped.
    let control = opened.store_unreadable();
    let encoding = opened.encoding();
    let kept: Vec<usize> = (0..columns.len())
        .filter(|&i| !left_out.contains_key(&columns[i]))
        .collect();
    let narrowed = kept.len() < columns.len() && opened.project(&kept)?;
    let mut sink = IpcSink::create(dest, &schema, &opened.source, opened.first_line)?;
    let source = opened.source.clone();
    let driven = opened.drive(|all| {
        for_each_batch(all, |batch, _| {
            if !narrowed {
                return sink.write(&batch);
            }
            // The columns left out come back empty, in their places.
            let mut read = batch.columns().iter();
            let full = (0..columns.len())
                .map(|i| match kept.binary_search(&i) {
                    Ok(_) => read.next().cloned(),
                    Err(_) => Some(arrow_array::new_null_array(
                        &arrow_schema::DataType::Utf8,
                        batch.num_rows(),
                    )),
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| read::format_err(&source, "a column went missing"))?;
            let full = RecordBatch::try_new(schema.clone(), full)
                .map_err(|e| read::format_err(&source, e))?;
            sink.write(&full)
        })
    })?;
    let mut found = control
        .map(|c| std::mem::take(&mut *c.unreadable.lock().unwrap_or_else(PoisonError::into_inner)))
        .unwrap_or_default();
    found.extend(left_out.iter().map(|(k, v)| (k.clone(), v.clone())));
    unreadable.extend(found.keys().cloned());
    sink.finish(&driven.line_fixes, &found)?;
    Ok(Converted {
        rows: driven.rows as u64,
        columns,
        unreadable,
        encoding,
    })
}

/// The schema of an IPC file [`convert_to_ipc`] stored, as loading it sees
/// it: the columns stored unreadable are marked so (`recon.unreadable_type`),
/// and mapping one is an [`InputError::UnreadableColumn`].
pub fn stored_ipc_schema<R: std::io::Read + std::io::Seek>(
    reader: &arrow_ipc::reader::FileReader<R>,
) -> SchemaRef {
    read::stored_schema(reader)
}

/// Writes a table as an Arrow IPC file, as [`convert_to_ipc`] does; read it back
/// with [`read_table`] and [`Format::Arrow`]. The source name and line numbering are
/// kept in the file's metadata, so messages still name the original file.
///
/// # Errors
/// [`InputError::Io`] when the file cannot be written.
pub fn write_table_ipc(table: &Table, path: &Path) -> Result<(), InputError> {
    let mut sink = IpcSink::create(path, &table.schema, &table.source, table.first_line)?;
    for batch in &table.batches {
        sink.write(batch)?;
    }
    sink.finish(&table.line_fixes, &std::collections::BTreeMap::new())
}

/// An Arrow IPC file being written batch by batch, with recon's metadata: the
/// source name and first line in the schema (known before the first batch), the
/// line fixes in the footer (known only once a CSV has been scanned).
struct IpcSink {
    file_name: String,
    schema: SchemaRef,
    writer: arrow_ipc::writer::FileWriter<std::io::BufWriter<File>>,
}

impl IpcSink {
    fn create(
        path: &Path,
        schema: &Schema,
        source: &str,
        first_line: u64,
    ) -> Result<Self, InputError> {
        let file_name = path.display().to_string();
        let mut metadata = schema.metadata().clone();
        metadata.insert(META_SOURCE.to_owned(), source.to_owned());
        metadata.insert(META_FIRST_LINE.to_owned(), first_line.to_string());
        let schema = Arc::new(Schema::new_with_metadata(schema.fields().clone(), metadata));
        let file = File::create(path).map_err(|e| io_err(&file_name, e))?;
        let writer = arrow_ipc::writer::FileWriter::try_new_buffered(file, &schema)
            .map_err(|e| write_err(&file_name, e))?;
        Ok(Self {
            file_name,
            schema,
            writer,
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), InputError> {
        let batch = batch
            .clone()
            .with_schema(self.schema.clone())
            .map_err(|e| write_err(&self.file_name, e))?;
        self.writer
            .write(&batch)
            .map_err(|e| write_err(&self.file_name, e))
    }

    fn finish(
        mut self,
        line_fixes: &LineFixes,
        unreadable: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), InputError> {
        if !line_fixes.0.is_empty() {
            self.writer
                .write_metadata(META_LINE_FIXES, line_fixes.encode());
        }
        if !unreadable.is_empty() {
            let text = serde_json::to_string(unreadable)
                .map_err(|e| write_err(&self.file_name, ArrowError::JsonError(e.to_string())))?;
            self.writer.write_metadata(META_UNREADABLE_COLUMNS, text);
        }
        self.writer
            .finish()
            .map_err(|e| write_err(&self.file_name, e))?;
        self.writer
            .into_inner()
            .and_then(|mut w| w.flush().map_err(ArrowError::from))
            .map_err(|e| write_err(&self.file_name, e))?;
        Ok(())
    }
}

/// A failure writing an IPC file: always the writer's side ([`InputError::Io`],
/// a full disk say), never the input's, whatever Arrow calls it.
fn write_err(file: &str, e: ArrowError) -> InputError {
    let source = match e {
        ArrowError::IoError(_, source) => source,
        other => std::io::Error::other(other.to_string()),
    };
    io_err(file, source)
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
    /// for a mapped column the table lacks, [`InputError::AmbiguousColumn`] for
    /// one that matches two of its columns, and under `on_error = "fail"`
    /// [`InputError::BadValue`] for the first bad row.
    pub fn from_table(table: &Table, mapping: &SideMapping) -> Result<Side, InputError> {
        let span = tracing::debug_span!("map_table", file = %table.source, rows = table.rows);
        let _enter = span.enter();
        let plan = Plan::new(
            &table.source,
            &table.schema,
            table.delimiter,
            mapping,
            RoleSet::ALL,
        )?;
        let mut side = SideBuilder::new(&plan);
        if let Some(first) = table.batches.first() {
            // The batches' own count, not `table.rows`: a table built by hand
            // may say anything there.
            let rows = table.batches.iter().map(RecordBatch::num_rows).sum();
            side.reserve(rows, first);
        }
        // A few batches per thread at a time, mapped in parallel and joined in order.
        let window = rayon::current_num_threads().max(1) * 2;
        let mut row = 0u64;
        let mut batches = table.batches.iter().peekable();
        while batches.peek().is_some() {
            let chunk: Vec<(RecordBatch, u64)> = batches
                .by_ref()
                .take(window)
                .map(|b| {
                    let first_row = row;
                    row += b.num_rows() as u64;
                    (b.clone(), first_row)
                })
                .collect();
            side.add_window(&chunk, &table.line_fixes, table.first_line)?;
        }
        Ok(side.finish())
    }
}

/// Reads a file and maps it to a side, as [`load_side_with`] does. The format is
/// the mapping's, else the file extension's; the CSV delimiter and header flag are
/// the mapping's. Every mapped role is built: [`SideLoad::roles`] builds fewer.
///
/// # Errors
/// Those of [`load_side_with`], [`InputError::UnknownFormat`], and
/// [`InputError::Mapping`] for a bad delimiter.
pub fn load_side(path: &Path, mapping: &SideMapping) -> Result<Side, InputError> {
    SideLoad::new(path, mapping).load()
}

/// Reads a file and maps it to a side batch by batch: the same side (and the same
/// error) as [`read_table`] then [`Side::from_table`], without ever holding the
/// whole file as text. `opts.source` names the file in messages; an Arrow file
/// written by [`convert_to_ipc`] or [`write_table_ipc`] keeps its stored source
/// name (unless `opts.source` is set) and line numbers. Every mapped role is
/// built: [`SideLoad::roles`] builds fewer.
///
/// # Errors
/// Those of [`read_table`] first (a malformed row anywhere in the file wins), then
/// those of [`Side::from_table`].
pub fn load_side_with(
    path: &Path,
    format: Format,
    opts: &ReadOptions,
    mapping: &SideMapping,
) -> Result<Side, InputError> {
    SideLoad::new(path, mapping)
        .format(format)
        .options(opts.clone())
        .load()
}

/// A side to load from a file with its mapping, batch by batch, as
/// [`load_side`] and [`load_side_with`] do, with the choices they leave at
/// their defaults: the format, the read options, and the roles to build.
///
/// ```
/// # use recon_core::input::SideLoad;
/// # use recon_core::outcome::SideName;
/// # use recon_core::rules::Rules;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("ledger.csv");
/// std::fs::write(&path, "id,amount,memo\nL1,100.00,rent\n")?;
/// let rules = Rules::from_toml_str(
///     r#"
///     [left]
///     id = "id"
///     amount = "amount"
///     currency_value = "EUR"
///     description = "memo"
///     [right]
///     amount = "amount"
///     currency_value = "EUR"
///     [[pass]]
///     name = "by-amount"
///     "#,
///     "rules.toml",
/// )?;
/// // No pass reads the description: `memo` is checked to exist, never built.
/// let side = SideLoad::new(&path, &rules.left)
///     .roles(rules.roles(SideName::Left))
///     .load()?;
/// assert_eq!((side.len(), side.description.len()), (1, 0));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a SideLoad does nothing until `load` is called"]
pub struct SideLoad<'a> {
    path: &'a Path,
    mapping: &'a SideMapping,
    format: Option<Format>,
    options: Option<ReadOptions>,
    roles: RoleSet,
}

impl<'a> SideLoad<'a> {
    /// Loading `path` with `mapping`: the format is the mapping's, else the file
    /// extension's; the read options are the mapping's
    /// ([`ReadOptions::from_mapping`]); every role is built.
    pub fn new(path: &'a Path, mapping: &'a SideMapping) -> Self {
        Self {
            path,
            mapping,
            format: None,
            options: None,
            roles: RoleSet::ALL,
        }
    }

    /// Reads the file as `format`, whatever the mapping or extension say.
    pub fn format(self, format: Format) -> Self {
        Self {
            format: Some(format),
            ..self
        }
    }

    /// Reads the file with `options` instead of the mapping's: `options.source`
    /// names the file in messages (an Arrow file written by [`convert_to_ipc`] or
    /// [`write_table_ipc`] otherwise keeps its stored name).
    pub fn options(self, options: ReadOptions) -> Self {
        Self {
            options: Some(options),
            ..self
        }
    }

    /// Builds only the text roles in `roles` (reference, counterparty,
    /// description), e.g. [`crate::rules::Rules::roles`] of a run: the others are
    /// not read, and their columns of the side are left empty (length 0, which
    /// the matcher accepts). Every column the mapping names is still looked up,
    /// so a mapped column the file lacks is the same
    /// [`InputError::MissingColumn`] as without a set. The id, amount, currency,
    /// date, line and `extra` columns are always built.
    pub fn roles(self, roles: RoleSet) -> Self {
        Self { roles, ..self }
    }

    /// Reads the file and maps it to a side, never holding the whole file as
    /// text: with every role, the same side (and the same error) as
    /// [`read_table`] then [`Side::from_table`], except that a Parquet or
    /// Arrow IPC file's columns nothing maps are not read at all (one that
    /// cannot be read as text does not fail the load).
    ///
    /// # Errors
    /// [`InputError::UnknownFormat`] when no format is set and the extension names
    /// none; [`InputError::Mapping`] for a bad delimiter when no options are set;
    /// then those of [`read_table`] (a malformed row anywhere in the file wins),
    /// then those of [`Side::from_table`].
    pub fn load(self) -> Result<Side, InputError> {
        Ok(self.load_inner(Hashing::Off)?.side)
    }

    /// [`SideLoad::load`], also giving the file's SHA-256 (lowercase hex) for an
    /// audit trail. A CSV is hashed as the reader reads it, so the digest is of
    /// the very bytes the side was built from (a BOM included) and costs no
    /// second read; another format's file is read once more after loading.
    ///
    /// # Errors
    /// Those of [`SideLoad::load`], and [`InputError::Io`] when a non-CSV file
    /// cannot be read again for its digest.
    pub fn load_digested(self) -> Result<(Side, String), InputError> {
        let path = self.path;
        let source = self.source();
        let loaded = self.load_inner(Hashing::AsRead)?;
        let sha256 = match loaded.sha256 {
            Some(sha256) => sha256,
            None => File::open(path)
                .and_then(crate::sha256_reader)
                .map_err(|e| io_err(&source, e))?,
        };
        Ok((loaded.side, sha256))
    }

    /// [`SideLoad::load`], with the file's SHA-256 left for later: the
    /// returned [`PendingDigest`] reads the file once more when asked, so a
    /// caller can hash it while other work (matching, writing) leaves a core
    /// free rather than on the loading path. The file is opened here before it
    /// is loaded; the digest is refused rather than given if the file changed
    /// or was replaced since (see [`PendingDigest::compute`]).
    ///
    /// # Errors
    /// [`InputError::Io`] when the file cannot be opened, then those of
    /// [`SideLoad::load`].
    pub fn load_digest_later(self) -> Result<(Side, PendingDigest), InputError> {
        let source = self.source();
        let file = File::open(self.path).map_err(|e| io_err(&source, e))?;
        let stamp = file
            .metadata()
            .map(|m| Stamp::of(&m))
            .map_err(|e| io_err(&source, e))?;
        let path = self.path.to_path_buf();
        let side = self.load()?;
        Ok((
            side,
            PendingDigest {
                file,
                path,
                source,
                stamp,
            },
        ))
    }

    /// The name messages give the file: the options' source, else its path.
    fn source(&self) -> String {
        source_name(self.options.as_ref(), self.path)
    }

    fn load_inner(self, hashing: Hashing) -> Result<load::Loaded, InputError> {
        let path = self.path;
        // Said before a format is looked for: a directory has no extension to
        // name one, and "unknown format" would mislead.
        if path.is_dir() {
            return Err(InputError::Io {
                file: path.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    "a directory, not a file",
                ),
            });
        }
        let format = match self
            .format
            .or(self.mapping.format)
            .or_else(|| Format::from_path(path))
        {
            Some(f) => f,
            None => {
                return Err(InputError::UnknownFormat {
                    hint: path
                        .extension()
                        .map(|e| e.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    file: path.display().to_string(),
                });
            }
        };
        let mapping_err = |source| InputError::Mapping {
            file: path.display().to_string(),
            source,
        };
        let opts = match self.options {
            Some(opts) => opts,
            None => {
                // A format the extension gives is known only now: CSV options
                // it would never read are refused, as with a `format` key.
                if self.format.is_none() && self.mapping.format.is_none() {
                    self.mapping
                        .check_csv_options(format)
                        .map_err(mapping_err)?;
                }
                ReadOptions::from_mapping(self.mapping).map_err(mapping_err)?
            }
        };
        let span = tracing::debug_span!("load_side", file = %path.display(), ?format);
        let _enter = span.enter();
        let started = Instant::now();
        let mut opened = Opened::open(path, format, &opts)?;
        if hashing == Hashing::AsRead {
            // Where the format cannot, `load_digested` reads the file again.
            opened.hash_as_read();
        }
        let loaded = load::load_opened(opened, self.mapping, self.roles)?;
        tracing::debug!(
            rows = loaded.side.len(),
            rejects = loaded.side.rejects.len(),
            roles = ?self.roles,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "side loaded"
        );
        Ok(loaded)
    }
}

/// The SHA-256 of a loaded file, to be computed later (from
/// [`SideLoad::load_digest_later`]): it holds the file open as it was when
/// loading began.
#[derive(Debug)]
pub struct PendingDigest {
    file: File,
    path: std::path::PathBuf,
    source: String,
    stamp: Stamp,
}

impl PendingDigest {
    /// Reads the file from its start and gives its SHA-256 (lowercase hex).
    ///
    /// # Errors
    /// [`InputError::Io`] when the file cannot be read or its path no longer
    /// names a file; [`InputError::Changed`] when the file's size, times or
    /// identity differ from when it was opened for loading (it was written to
    /// or replaced meanwhile), so the digest might not be of the bytes loaded.
    pub fn compute(self) -> Result<String, InputError> {
        let err = |e| io_err(&self.source, e);
        let sha256 = crate::sha256_reader(&self.file).map_err(err)?;
        let held = self.file.metadata().map(|m| Stamp::of(&m)).map_err(err)?;
        let named = std::fs::metadata(&self.path)
            .map(|m| Stamp::of(&m))
            .map_err(err)?;
        if held != self.stamp || named != self.stamp {
            return Err(InputError::Changed { file: self.source });
        }
        Ok(sha256)
    }
}

/// What tells a file's content changed or the file was replaced: its size and
/// modification time, and on Unix its device, inode and status-change time
/// (which every write moves and no user can set back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    identity: (u64, u64, i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Self {
            len: m.len(),
            modified: m.modified().ok(),
            #[cfg(unix)]
            identity: (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()),
        }
    }
}

/// Whether a [`SideLoad`] hashes a CSV as it reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hashing {
    Off,
    AsRead,
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
