//! Opening an input file as a stream of text batches, and driving it.
//!
//! [`Opened`] is a file whose schema is known and whose rows come batch by batch,
//! every column as UTF-8 text. [`Opened::drive`] feeds the batches to a consumer in
//! file order (collecting a [`super::Table`], writing an IPC file, mapping a side)
//! while, for CSV, a second pass over the file finds the physical line each record
//! starts on. Nothing here holds more than the batch in hand.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use sha2::{Digest, Sha256};

use super::cast::{self, CellProblem, META_KIND, ValueKind};
use super::locate;
use super::{
    BOM, Format, LineCursor, LineFixes, META_FIRST_LINE, META_LINE_FIXES, META_SOURCE,
    META_UNREADABLE, META_UNREADABLE_COLUMNS, ReadOptions, source_name,
};
use crate::error::{InputError, NotUtf8Field, ValueProblem};
use crate::mapping::TextEncoding;

/// Text batches, one at a time, in file order.
pub(super) type TextBatches = Box<dyn Iterator<Item = Result<RecordBatch, InputError>> + Send>;

pub(super) fn io_err(file: &str, source: std::io::Error) -> InputError {
    InputError::Io {
        file: file.to_owned(),
        source,
    }
}

/// Cells (rows x columns) in one batch at most: a reader holds a few such
/// batches (and arrow-csv an offset per cell), so a very wide file is read
/// in fewer rows at a time rather than in a batch of gigabytes.
const BATCH_CELLS: usize = 1 << 22;

/// The rows a batch of `columns` columns takes: `requested`, fewer for a
/// file wider than `BATCH_CELLS / requested` columns, at least one.
fn batch_rows(requested: usize, columns: usize) -> usize {
    requested.min(BATCH_CELLS / columns.max(1)).max(1)
}

/// Refuses a file wider than [`super::MAX_COLUMNS`], or with a column name
/// longer than [`super::MAX_COLUMN_NAME`] bytes, before any reader allocates
/// for its columns (every name is copied into each batch's schema and into a
/// stored dataset's record).
fn check_width(source: &str, schema: &Schema) -> Result<(), InputError> {
    let columns = schema.fields().len();
    if columns > super::MAX_COLUMNS {
        return Err(InputError::TooManyColumns {
            file: source.to_owned(),
            columns,
            max: super::MAX_COLUMNS,
        });
    }
    if let Some((i, field)) = schema
        .fields()
        .iter()
        .enumerate()
        .find(|(_, f)| f.name().len() > super::MAX_COLUMN_NAME)
    {
        return Err(InputError::ColumnNameTooLong {
            file: source.to_owned(),
            position: i + 1,
            length: field.name().len(),
            max: super::MAX_COLUMN_NAME,
        });
    }
    Ok(())
}

/// Refuses a Parquet file with a row group of more than
/// [`super::MAX_RECORD_BYTES`] a row once uncompressed, from its metadata,
/// before any page is decompressed: a 20 KB file of one zstd-compressed
/// 600 MiB value would take 1.2 GB to read.
fn check_parquet_sizes(
    source: &str,
    metadata: &parquet::file::metadata::ParquetMetaData,
) -> Result<(), InputError> {
    for (i, rg) in metadata.row_groups().iter().enumerate() {
        let rows = u64::try_from(rg.num_rows()).unwrap_or(0).max(1);
        let bytes = u64::try_from(rg.total_byte_size()).unwrap_or(u64::MAX);
        if bytes / rows > super::MAX_RECORD_BYTES {
            return Err(InputError::RecordsTooLarge {
                file: source.to_owned(),
                row_group: i,
                bytes,
                rows,
                max: super::MAX_RECORD_BYTES,
            });
        }
    }
    Ok(())
}

/// Batches from an Arrow IPC reader with a panic of arrow's decoder (it
/// trusts some buffer offsets and lengths of a malformed file) turned into
/// an error; reading stops there.
struct Unpanicked<I> {
    batches: I,
    failed: bool,
}

impl<I: Iterator<Item = Result<RecordBatch, ArrowError>>> Iterator for Unpanicked<I> {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let batches = &mut self.batches;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| batches.next())) {
            Ok(item) => item,
            Err(_) => {
                self.failed = true;
                Some(Err(ArrowError::IpcError(
                    "malformed Arrow IPC data: a buffer's offsets or lengths do not fit its \
                     data"
                        .to_owned(),
                )))
            }
        }
    }
}

/// [`Unpanicked`] batches of `batches`.
fn unpanicked<I>(batches: I) -> Unpanicked<I> {
    Unpanicked {
        batches,
        failed: false,
    }
}

pub(super) fn format_err(file: &str, e: impl std::fmt::Display) -> InputError {
    InputError::Format {
        file: file.to_owned(),
        reason: e.to_string(),
    }
}

/// An input file opened for reading batch by batch, every column as text.
pub(super) struct Opened {
    /// The name used in messages.
    pub(super) source: String,
    /// Every field `Utf8`, nullable, no metadata.
    pub(super) schema: SchemaRef,
    /// The line (or row number) of the first row.
    pub(super) first_line: u64,
    /// Line fixes known before reading (a stored IPC file's); a CSV's are found
    /// while driving.
    pub(super) line_fixes: LineFixes,
    /// The file's size in bytes.
    pub(super) bytes: u64,
    /// For CSV: how to find the line each record starts on.
    scan: Option<LineScan>,
    /// For Parquet and Arrow IPC files: how to open the file again reading
    /// only some columns.
    reopen: Option<Reopen>,
    /// For a typed format's reader: the columns to convert, and the
    /// columns stored unreadable.
    control: Option<Arc<Control>>,
    batches: TextBatches,
}

/// A columnar file [`Opened::project`] can open again for some columns only.
struct Reopen {
    path: PathBuf,
    format: Format,
    batch_size: usize,
}

/// What [`Opened::drive`] found once every batch was read.
pub(super) struct Driven {
    /// Rows read.
    pub(super) rows: usize,
    /// The line fixes of the whole file: the stored ones, or the CSV scan's.
    pub(super) line_fixes: LineFixes,
    /// For a CSV opened with [`Opened::hash_as_read`], the lowercase hex
    /// SHA-256 of the file: of the bytes the reader parsed (and a BOM before
    /// them), hashed as they were read.
    pub(super) sha256: Option<String>,
}

impl Opened {
    /// Opens `path` and reads as far as its schema.
    ///
    /// # Errors
    /// [`InputError`] for an unreadable or empty file, or a header/schema the reader
    /// refuses.
    pub(super) fn open(
        path: &Path,
        format: Format,
        opts: &ReadOptions,
    ) -> Result<Self, InputError> {
        let source = source_name(Some(opts), path);
        let file = File::open(path).map_err(|e| io_err(&source, e))?;
        let bytes = file.metadata().map_err(|e| io_err(&source, e))?.len();
        if bytes == 0 {
            return Err(InputError::Empty { file: source });
        }
        let opened = match format {
            Format::Csv => open_csv(path, file, source, opts),
            Format::Parquet => open_parquet(path, file, source, opts),
            Format::Arrow => open_arrow_file(file, source, opts),
            Format::ArrowStream => open_arrow_stream(file, source),
            Format::Ndjson => open_ndjson(path, file, source, opts),
        }?;
        let reopen = matches!(format, Format::Parquet | Format::Arrow).then(|| Reopen {
            path: path.to_path_buf(),
            format,
            batch_size: opts.batch_size,
        });
        Ok(Self {
            bytes,
            reopen,
            ..opened
        })
    }

    /// Makes a value without a text form (a binary value that is not UTF-8,
    /// a date outside the calendar) mark its column unreadable instead of
    /// failing the read: how an upload is stored, since a column nobody maps
    /// must not refuse the file. Returns where the columns are listed once
    /// read (`None` for CSV, whose values are all text).
    pub(super) fn store_unreadable(&self) -> Option<Arc<Control>> {
        let control = self.control.as_ref()?;
        control.lenient.store(true, Ordering::Relaxed);
        Some(Arc::clone(control))
    }

    /// The delimiter a CSV file is read with; `None` for the other formats.
    pub(super) fn delimiter(&self) -> Option<u8> {
        self.scan.as_ref().map(|scan| scan.delimiter)
    }

    /// The encoding a CSV file is read in (its byte order mark's, else the
    /// label's); `None` for the other formats.
    pub(super) fn encoding(&self) -> Option<TextEncoding> {
        self.scan.as_ref().map(|scan| scan.encoding)
    }

    /// Makes a CSV's reader hash the file as it reads it, for [`Driven::sha256`];
    /// returns whether it will (not for other formats, nor once reading began).
    pub(super) fn hash_as_read(&mut self) -> bool {
        let Some(scan) = &mut self.scan else {
            return false;
        };
        let mut state = scan.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.offset > 0 {
            return false;
        }
        scan.hash = true;
        *state = ScanState::new(scan);
        true
    }

    /// Reads only `columns` (sorted schema positions) where the format can skip the
    /// others; returns whether it did, i.e. whether batches now hold just those
    /// columns, in that order. A CSV's other columns are still split and its rows
    /// checked (what is read or refused does not change); a Parquet or Arrow IPC
    /// file's other columns are neither decoded nor converted to text, so a
    /// column nothing maps (a binary one that is not UTF-8, say) cannot fail
    /// the load.
    ///
    /// # Errors
    /// [`InputError::Io`] when the file cannot be opened again;
    /// [`InputError::Format`] when a columnar file's reader refuses it.
    pub(super) fn project(&mut self, columns: &[usize]) -> Result<bool, InputError> {
        if columns.len() >= self.schema.fields().len() {
            return Ok(false);
        }
        if let Some(reopen) = &self.reopen {
            let control = self.control.clone().unwrap_or_default();
            self.batches = reopen.open(&self.source, columns, self.first_line, control)?;
            return Ok(true);
        }
        let Some(scan) = &mut self.scan else {
            // Every column is still decoded; only these become text.
            if let Some(control) = &self.control {
                let _ = control.wanted.set(columns.to_vec());
            }
            return Ok(false);
        };
        let mut file = File::open(&scan.path).map_err(|e| io_err(&self.source, e))?;
        file.seek(SeekFrom::Start(scan.skip()))
            .map_err(|e| io_err(&self.source, e))?;
        let opts = ReadOptions {
            delimiter: scan.delimiter,
            has_header: scan.has_header,
            encoding: scan.encoding,
            batch_size: scan.batch_size,
            source: None,
        };
        // A fresh scan: it sees what the new reader reads.
        scan.state = Arc::new(Mutex::new(ScanState::new(scan)));
        self.batches = csv_batches(
            Scanned::new(file, scan.state.clone(), scan.encoding),
            &self.source,
            &self.schema,
            &opts,
            Some(columns.to_vec()),
        )?;
        Ok(true)
    }

    /// Hands the batches to `consume`, which reads them in file order and returns
    /// how many rows it read, while for CSV a scan of the bytes the reader reads finds
    /// the physical line each record starts on. A CSV reader's error that `consume` passes on names the
    /// physical line.
    ///
    /// # Errors
    /// `consume`'s: the reader's errors (malformed rows, invalid UTF-8, I/O) and its own.
    pub(super) fn drive(
        self,
        consume: impl FnOnce(TextBatches) -> Result<usize, InputError> + Send,
    ) -> Result<Driven, InputError> {
        let Self {
            line_fixes,
            scan,
            batches,
            schema,
            source,
            bytes,
            ..
        } = self;
        let Some(scan) = scan else {
            return Ok(Driven {
                rows: consume(batches)?,
                line_fixes,
                sha256: None,
            });
        };
        // The reader counts records; the scan of the bytes it read finds the
        // lines they start on (after an error, as far as the reader read).
        let read = consume(batches);
        let Scan {
            fixes,
            records,
            sha256,
            unclosed,
            fed,
            undecodable,
        } = scan
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .finish();
        let line_fixes = match &read {
            _ if fixes.0.is_empty() => fixes,
            Ok(rows) if *rows as u64 == records => fixes,
            Ok(_) => LineFixes::default(),
            Err(_) => fixes,
        };
        // A quote still open where the whole file was read took the rest of
        // it into one field: refused, and named as the cause when that
        // record is the one the reader found ragged.
        let unclosed = unclosed.filter(|_| scan.skip() + fed == bytes);
        let read = read
            .map_err(|e| relocate(e, &line_fixes, scan.has_header))
            .map_err(|e| scan.explain_invalid_utf8(e, &schema))
            .map_err(|e| scan.explain_undecodable(e, undecodable, &schema));
        let cause = match &read {
            Ok(_) => unclosed,
            Err(InputError::MalformedRow { line, .. }) => {
                unclosed.filter(|u| u.record_line == *line)
            }
            Err(_) => None,
        };
        if let Some(unclosed) = cause {
            return Err(scan.explain_unclosed(source, unclosed, &schema));
        }
        let rows = read?;
        // The reader read to the end of the file: the digest covers all of it.
        Ok(Driven {
            rows,
            line_fixes,
            sha256: sha256.map(hex::encode),
        })
    }
}

/// Feeds every batch to `each` with its first row's index; returns the rows read.
///
/// # Errors
/// The reader's first error, or `each`'s.
pub(super) fn for_each_batch(
    batches: TextBatches,
    mut each: impl FnMut(RecordBatch, u64) -> Result<(), InputError>,
) -> Result<usize, InputError> {
    let mut rows = 0usize;
    for batch in batches {
        let batch = batch?;
        let n = batch.num_rows();
        each(batch, rows as u64)?;
        rows += n;
    }
    Ok(rows)
}

/// Turns a CSV reader's error into one naming the line, when its message has one.
fn csv_err(file: &str, e: &ArrowError) -> InputError {
    let msg = match e {
        ArrowError::CsvError(m) => m.as_str(),
        ArrowError::IoError(_, io) if Undecodable::of(io).is_some() => {
            return read_err(file, io);
        }
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
                field: None,
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
            field: None,
        },
        None => format_err(file, msg),
    }
}

fn open_csv(
    path: &Path,
    mut file: File,
    source: String,
    opts: &ReadOptions,
) -> Result<Opened, InputError> {
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
    // A byte order mark names the encoding whatever the label says (as
    // browsers read one), and is skipped.
    let (encoding, bom) = bom_encoding(&start[..got]).unwrap_or((opts.encoding, &[]));
    let skip = bom.len() as u64;
    file.seek(SeekFrom::Start(skip))
        .map_err(|e| io_err(&source, e))?;
    let first_line = if opts.has_header { 2 } else { 1 };
    let mut scan = LineScan {
        path: path.to_owned(),
        bom,
        delimiter: opts.delimiter,
        has_header: opts.has_header,
        encoding,
        first_line,
        batch_size: opts.batch_size,
        hash: false,
        state: Arc::default(),
    };
    // The header is read through a scan of its own, thrown away after.
    let probe_state = Arc::new(Mutex::new(ScanState::new(&scan)));
    let probe = Scanned::new(file, Arc::clone(&probe_state), encoding);
    let mut reader = BufReader::with_capacity(1 << 20, probe);
    if reader
        .fill_buf()
        .map_err(|e| read_err(&source, &e))?
        .is_empty()
    {
        return Err(InputError::Empty { file: source });
    }
    let csv_format = arrow_csv::reader::Format::default()
        .with_header(opts.has_header)
        .with_delimiter(opts.delimiter);
    let (inferred, _) = csv_format.infer_schema(&mut reader, Some(0)).map_err(|e| {
        let refused = probe_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refused
            .take();
        refused.map_or_else(|| csv_err(&source, &e), |(u, _, _)| u.to_error(&source))
    })?;
    if inferred.fields().is_empty() {
        return Err(InputError::Empty { file: source });
    }
    check_width(&source, &inferred)?;
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
    let mut file = reader.into_inner().file;
    file.seek(SeekFrom::Start(skip))
        .map_err(|e| io_err(&source, e))?;
    scan.state = Arc::new(Mutex::new(ScanState::new(&scan)));
    let reader = Scanned::new(file, scan.state.clone(), encoding);
    let batches = csv_batches(reader, &source, &schema, opts, None)?;
    Ok(Opened {
        source,
        schema,
        first_line,
        line_fixes: LineFixes::default(),
        bytes: 0,
        scan: Some(scan),
        reopen: None,
        control: None,
        batches,
    })
}

/// The encoding a byte order mark at the start of `head` (a file's first
/// bytes) names, with the mark; `None` without one. A mark wins over any
/// label, as in browsers.
fn bom_encoding(head: &[u8]) -> Option<(TextEncoding, &'static [u8])> {
    const UTF_16LE_BOM: &[u8] = b"\xFF\xFE";
    const UTF_16BE_BOM: &[u8] = b"\xFE\xFF";
    [
        (TextEncoding::UTF_8, BOM),
        (TextEncoding::UTF_16LE, UTF_16LE_BOM),
        (TextEncoding::UTF_16BE, UTF_16BE_BOM),
    ]
    .into_iter()
    .find(|(_, bom)| head.starts_with(bom))
}

/// The CSV reader over `file` (positioned after any BOM), of `projection`'s columns
/// only when given (the others are still split and checked, never built).
fn csv_batches(
    file: Scanned,
    source: &str,
    schema: &SchemaRef,
    opts: &ReadOptions,
    projection: Option<Vec<usize>>,
) -> Result<TextBatches, InputError> {
    let mut builder = arrow_csv::ReaderBuilder::new(schema.clone())
        .with_header(opts.has_header)
        .with_delimiter(opts.delimiter)
        .with_batch_size(batch_rows(opts.batch_size, schema.fields().len()));
    if let Some(columns) = projection {
        builder = builder.with_projection(columns);
    }
    let csv = builder
        .build_buffered(BufReader::with_capacity(1 << 20, file))
        .map_err(|e| csv_err(source, &e))?;
    let name = source.to_owned();
    // A header read as one column whose name holds another delimiter makes
    // the rows ragged too: their error says which delimiter to set, as a
    // missing column's does.
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let hint =
        crate::error::DelimiterHint::new(&names, &Some(char::from(opts.delimiter))).to_string();
    Ok(Box::new(csv.map(move |b| {
        b.map_err(|e| match csv_err(&name, &e) {
            InputError::MalformedRow { file, line, reason } if !hint.is_empty() => {
                InputError::MalformedRow {
                    file,
                    line,
                    reason: reason + &hint,
                }
            }
            other => other,
        })
    })))
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
        InputError::InvalidUtf8 { file, line, field } => InputError::InvalidUtf8 {
            file,
            line: physical(line),
            field,
        },
        InputError::MalformedRow { file, line, reason } => InputError::MalformedRow {
            file,
            line: physical(line),
            reason,
        },
        other => other,
    }
}

/// How to reopen a CSV, and the scan of where its records start.
struct LineScan {
    path: PathBuf,
    /// The byte order mark before the first line, if any.
    bom: &'static [u8],
    delimiter: u8,
    has_header: bool,
    /// The file's encoding (its byte order mark's, else the label's): other
    /// than UTF-8, the reader decodes it, and every offset the scan gives
    /// counts the decoded text's bytes.
    encoding: TextEncoding,
    first_line: u64,
    /// The reader's rows per batch.
    batch_size: usize,
    /// Whether the scan also hashes the file ([`Opened::hash_as_read`]).
    hash: bool,
    /// The scan of the bytes the current reader has read.
    state: Arc<Mutex<ScanState>>,
}

impl LineScan {
    /// The bytes before the first line (the byte order mark's).
    fn skip(&self) -> u64 {
        self.bom.len() as u64
    }

    /// Adds the column and the bytes to an invalid-UTF-8 error on a row,
    /// read again from the file (only on this error's path). Any other error,
    /// or a row that cannot be read again, is returned as it is.
    fn explain_invalid_utf8(&self, err: InputError, schema: &Schema) -> InputError {
        match err {
            InputError::InvalidUtf8 {
                file,
                line,
                field: None,
            } if line > 1 || !self.has_header => {
                let field = invalid_field(&self.path, self.skip(), self.delimiter, line).map(
                    |(i, value)| NotUtf8Field {
                        column: column_name(schema, i),
                        value,
                    },
                );
                InputError::InvalidUtf8 { file, line, field }
            }
            other => other,
        }
    }

    /// The error for a quoted field the file ends inside, with its column and
    /// the start of its text read again from the file (on this error's path
    /// only).
    fn explain_unclosed(&self, file: String, unclosed: Unclosed, schema: &Schema) -> InputError {
        let Unclosed {
            record_line,
            record_at,
            quote_at,
            quote_line,
            last_line,
        } = unclosed;
        let (column, value) = self
            .text_at(record_at)
            .and_then(|text| unclosed_field(text, quote_at - record_at, self.delimiter))
            .map(|(i, value)| (Some(column_name(schema, i)), value))
            .unwrap_or_default();
        InputError::UnclosedQuote {
            file,
            line: record_line,
            column,
            value,
            lines: last_line.saturating_sub(quote_line),
        }
    }

    /// Adds the column to an error on bytes the file's encoding does not
    /// define, from the record's text before them read again (only on this
    /// error's path): `at` is where the scan stopped, `record_at` where that
    /// record starts, both in the decoded text.
    fn explain_undecodable(
        &self,
        err: InputError,
        at: Option<(u64, u64)>,
        schema: &Schema,
    ) -> InputError {
        match (err, at) {
            (
                InputError::Undecodable {
                    file,
                    line,
                    column: None,
                    value,
                    encoding,
                },
                Some((record_at, at)),
            ) if line > 1 || !self.has_header => {
                let column = self.text_at(record_at).and_then(|text| {
                    let mut before = Vec::new();
                    // The text before the bytes decoded once already; an
                    // error past them leaves what was read.
                    let _ = text.take(at - record_at).read_to_end(&mut before);
                    let fields = fields_ended(&before, self.delimiter)?;
                    Some(column_name(schema, fields))
                });
                InputError::Undecodable {
                    file,
                    line,
                    column,
                    value,
                    encoding,
                }
            }
            (other, _) => other,
        }
    }

    /// The file's text from `at` (an offset in the text the reader read,
    /// past the skipped bytes): the file itself for UTF-8, decoded
    /// otherwise. `None` when the file cannot be read again.
    fn text_at(&self, at: u64) -> Option<Box<dyn Read>> {
        let mut file = File::open(&self.path).ok()?;
        if self.encoding.is_utf8() {
            file.seek(SeekFrom::Start(self.skip() + at)).ok()?;
            return Some(Box::new(file));
        }
        file.seek(SeekFrom::Start(self.skip())).ok()?;
        let mut text = Scanned::new(file, Arc::default(), self.encoding);
        let skipped = std::io::copy(&mut (&mut text).take(at), &mut std::io::sink()).ok()?;
        (skipped == at).then(|| Box::new(text) as Box<dyn Read>)
    }
}

/// The name of the `i`th (0-based) column: a field past the header's is
/// named by its position.
fn column_name(schema: &Schema, i: usize) -> String {
    schema
        .fields()
        .get(i)
        .map_or_else(|| (i + 1).to_string(), |f| f.name().clone())
}

/// How many fields the last record `text` starts (the start of one record,
/// as the scan finds records) ends with a delimiter, read as csv_core reads
/// them: a quoted delimiter ends none, and a record ended inside the text
/// (by a lone `\r`, which csv_core ends records at) starts the count again.
fn fields_ended(text: &[u8], delimiter: u8) -> Option<usize> {
    use csv_core::ReadRecordResult;

    // The output buffers hold any record of the text whole; only the
    // count is used.
    let mut csv = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
    let (mut out, mut ends) = (vec![0u8; text.len() + 1], vec![0usize; text.len() + 2]);
    let (mut input, mut fields) = (text, 0usize);
    loop {
        let (result, read, _, ended) = csv.read_record(input, &mut out, &mut ends);
        input = &input[read..];
        fields += ended;
        match result {
            ReadRecordResult::InputEmpty => {}
            // A record ended before the text's end: count the next one.
            ReadRecordResult::Record if !input.is_empty() => fields = 0,
            // Read as a whole record, the text ends one field more, empty.
            ReadRecordResult::Record | ReadRecordResult::End => {
                return Some(fields.saturating_sub(1));
            }
            ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => return None,
        }
    }
}

/// Characters of an unclosed field's text its error shows.
const UNCLOSED_SHOWN: usize = 40;

/// The unclosed quoted field of the record `text` starts with, whose
/// opening quote is `prefix` bytes further: its position in the record (the
/// fields before it are read with csv_core) and the start of its text, up
/// to its first line break. `None` when the file cannot be read again.
fn unclosed_field(mut text: impl Read, prefix: u64, delimiter: u8) -> Option<(usize, String)> {
    let mut before = Vec::new();
    (&mut text).take(prefix).read_to_end(&mut before).ok()?;
    // The fields before the quote, each ended by a delimiter.
    let fields = fields_ended(&before, delimiter)?;
    let mut shown = Vec::new();
    // The text after the quote; an error past its start leaves what was read.
    let _ = text
        .take(4 * UNCLOSED_SHOWN as u64 + 1)
        .read_to_end(&mut shown);
    let shown = shown.get(1..).unwrap_or_default();
    let end = shown
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .unwrap_or(shown.len());
    let value: String = String::from_utf8_lossy(&shown[..end])
        .chars()
        .take(UNCLOSED_SHOWN)
        .collect();
    Some((fields, value))
}

/// The first field that is not UTF-8 in the record starting on `line`
/// (1-based, lines counted after the first `skip` bytes): its position and
/// its text, each invalid byte written `\xNN`. `None` when the file cannot
/// be read again or that record has no such field.
fn invalid_field(path: &Path, skip: u64, delimiter: u8, line: u64) -> Option<(usize, String)> {
    use csv_core::ReadRecordResult;

    let mut file = File::open(path).ok()?;
    file.seek(SeekFrom::Start(skip)).ok()?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut skipped = Vec::new();
    for _ in 1..line {
        skipped.clear();
        if reader.read_until(b'\n', &mut skipped).ok()? == 0 {
            return None;
        }
    }
    let mut csv = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
    let (mut out, mut ends) = (vec![0u8; 4096], vec![0usize; 64]);
    let (mut out_len, mut ends_len) = (0, 0);
    loop {
        let input = reader.fill_buf().ok()?;
        let (result, read, written, ended) =
            csv.read_record(input, &mut out[out_len..], &mut ends[ends_len..]);
        reader.consume(read);
        out_len += written;
        ends_len += ended;
        match result {
            ReadRecordResult::InputEmpty => {}
            ReadRecordResult::OutputFull => out.resize(out.len() * 2, 0),
            ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
            ReadRecordResult::Record => break,
            ReadRecordResult::End => return None,
        }
    }
    let mut start = 0;
    for (i, &end) in ends[..ends_len].iter().enumerate() {
        let field = out.get(start..end)?;
        if std::str::from_utf8(field).is_err() {
            return Some((i, escape_invalid(field)));
        }
        start = end;
    }
    None
}

/// `bytes` as text: valid runs escaped as in a Rust string, each byte that
/// is not UTF-8 as `\xNN`.
pub(super) fn escape_invalid(bytes: &[u8]) -> String {
    let mut text = String::new();
    for chunk in bytes.utf8_chunks() {
        text.extend(chunk.valid().escape_debug());
        for b in chunk.invalid() {
            let _ = write!(text, "\\x{b:02x}");
        }
    }
    text
}

/// The file under a CSV reader, handing every byte read to a [`ScanState`]: the
/// lines are found (and, when asked, the file hashed) in the reader's own
/// bytes, without reading the file twice.
///
/// A file in another encoding than UTF-8 is decoded on the way: the reader
/// gets UTF-8, the scan finds lines in it, and the hash is of the file's
/// own bytes.
struct Scanned {
    file: File,
    state: Arc<Mutex<ScanState>>,
    decoding: Option<Box<Decoding>>,
}

/// A strict decoder's state between reads: the file's bytes read and not
/// yet decoded, and the text decoded and not yet handed on.
struct Decoding {
    decoder: encoding_rs::Decoder,
    encoding: &'static str,
    raw: Box<[u8]>,
    raw_at: std::ops::Range<usize>,
    text: Box<[u8]>,
    text_at: std::ops::Range<usize>,
    /// The file is read to its end; `done` once the decoder is flushed too.
    eof: bool,
    done: bool,
    /// Bytes the encoding does not define, found after the text in hand.
    bad: Option<Vec<u8>>,
}

/// Bytes the decoder refused, as the reader's I/O error: the file's
/// encoding, the physical line and the bytes.
#[derive(Debug, Clone)]
struct Undecodable {
    encoding: &'static str,
    line: u64,
    bytes: Vec<u8>,
}

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}: {} is not valid {}",
            self.line,
            escape_all(&self.bytes),
            self.encoding
        )
    }
}

impl std::error::Error for Undecodable {}

impl Undecodable {
    /// The refusal an I/O error carries, if it is one.
    fn of(e: &std::io::Error) -> Option<&Self> {
        e.get_ref()?.downcast_ref()
    }

    /// The refusal as the load's error (its column, if any, found later).
    fn to_error(&self, file: &str) -> InputError {
        InputError::Undecodable {
            file: file.to_owned(),
            line: self.line,
            column: None,
            value: escape_all(&self.bytes),
            encoding: self.encoding,
        }
    }
}

/// A reader's I/O error: bytes the file's encoding does not define, or an
/// I/O failure.
fn read_err(file: &str, e: &std::io::Error) -> InputError {
    match Undecodable::of(e) {
        Some(u) => u.to_error(file),
        None => io_err(file, std::io::Error::new(e.kind(), e.to_string())),
    }
}

/// Every byte as `\xNN` (undecodable bytes are no text at all).
fn escape_all(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(4 * bytes.len());
    for b in bytes {
        let _ = write!(text, "\\x{b:02x}");
    }
    text
}

/// Bytes read from the file at a time when decoding, and the room for their
/// text (any decoder's UTF-8 for 64 KiB fits in three times as much).
const DECODE_CHUNK: usize = 1 << 16;

/// Bytes of a chunk kept before the next one: as long as any encoding's
/// longest malformed sequence.
const KEPT_BYTES: usize = 4;

impl Scanned {
    fn new(file: File, state: Arc<Mutex<ScanState>>, encoding: TextEncoding) -> Self {
        let decoding = (!encoding.is_utf8()).then(|| {
            Box::new(Decoding {
                decoder: encoding.new_decoder(),
                encoding: encoding.name(),
                raw: vec![0; KEPT_BYTES + DECODE_CHUNK].into_boxed_slice(),
                raw_at: 0..0,
                text: vec![0; 3 * DECODE_CHUNK + 16].into_boxed_slice(),
                text_at: 0..0,
                eof: false,
                done: false,
                bad: None,
            })
        });
        Self {
            file,
            state,
            decoding,
        }
    }
}

impl Read for Scanned {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(d) = &mut self.decoding else {
            let n = self.file.read(buf)?;
            self.state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .feed(&buf[..n]);
            return Ok(n);
        };
        while d.text_at.is_empty() {
            if let Some(bytes) = &d.bad {
                // The text before the bytes is read: the scan is in their
                // record, named by the line it starts on (as a row's
                // invalid UTF-8 is).
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                let refused = Undecodable {
                    encoding: d.encoding,
                    line: state.record_line,
                    bytes: bytes.clone(),
                };
                // The CSV reader keeps this error whole; its header
                // inference keeps only the text, so the scan keeps it too.
                state.refused = Some((refused.clone(), state.record_at, state.offset));
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    refused,
                ));
            }
            if d.done {
                return Ok(0);
            }
            if d.raw_at.is_empty() && !d.eof {
                // The chunk's last bytes stay in front of the next: a bad
                // sequence the decoder finds there may have begun in them.
                let kept = d.raw_at.end.min(KEPT_BYTES);
                d.raw.copy_within(d.raw_at.end - kept..d.raw_at.end, 0);
                let n = self.file.read(&mut d.raw[kept..])?;
                self.state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take_raw(&d.raw[kept..kept + n]);
                d.eof = n == 0;
                d.raw_at = kept..kept + n;
            }
            let (result, read, written) = d.decoder.decode_to_utf8_without_replacement(
                &d.raw[d.raw_at.clone()],
                &mut d.text,
                d.eof,
            );
            d.raw_at.start += read;
            d.text_at = 0..written;
            match result {
                encoding_rs::DecoderResult::Malformed(bad, after) => {
                    // The bad sequence ends `after` bytes before where the
                    // decoder stopped (its start may be in the chunk before).
                    let end = d.raw_at.start - usize::from(after);
                    let start = end.saturating_sub(usize::from(bad));
                    d.bad = Some(d.raw[start..end].to_vec());
                }
                encoding_rs::DecoderResult::InputEmpty => d.done = d.eof,
                encoding_rs::DecoderResult::OutputFull => {}
            }
        }
        let n = buf.len().min(d.text_at.len());
        let from = d.text_at.start;
        buf[..n].copy_from_slice(&d.text[from..from + n]);
        d.text_at.start += n;
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .scan(&buf[..n]);
        Ok(n)
    }
}

/// Finds the line each CSV data record starts on, where it differs from one line
/// per record: after blank lines (which the reader skips) and quoted fields
/// holding line breaks. Follows the reader's quoting: a quote opens a field only
/// at its start, `""` inside a quoted field is a literal quote. Fed the file's
/// bytes in order, chunk by chunk; hashes them on the way when asked to.
#[derive(Debug, Clone, Default)]
struct ScanState {
    /// The SHA-256 of the file so far (a BOM included), when hashing.
    hash: Option<Sha256>,
    delimiter: u8,
    header: u64,
    fixes: Vec<(u64, u64)>,
    /// The last fix (or the first row's line): the line every later row is predicted from.
    predict: (u64, u64),
    /// Records seen, the header included.
    records: u64,
    in_quotes: bool,
    /// Whether the current record has any byte besides `\r`.
    nonempty: bool,
    line: u64,
    record_line: u64,
    /// Where the current record starts, as an offset past the skipped bytes.
    record_at: u64,
    /// The open quoted field's opening quote: its offset and line.
    quote_at: u64,
    quote_line: u64,
    /// The byte before the next chunk's first, and where the last closing quote was.
    before: u8,
    offset: u64,
    last_close: Option<u64>,
    /// The file's bytes read (the decoded text's are `offset`).
    raw: u64,
    /// What a decoding reader refused (bytes its encoding does not define),
    /// with where it stopped: the record's start and its own offset, in the
    /// decoded text.
    refused: Option<(Undecodable, u64, u64)>,
}

impl ScanState {
    fn new(scan: &LineScan) -> Self {
        let hash = scan.hash.then(|| {
            let mut hash = Sha256::new();
            // The reader starts after a BOM; the file's digest starts with it.
            hash.update(scan.bom);
            hash
        });
        Self {
            hash,
            delimiter: scan.delimiter,
            header: u64::from(scan.has_header),
            fixes: Vec::new(),
            predict: (0, scan.first_line),
            records: 0,
            in_quotes: false,
            nonempty: false,
            line: 1,
            record_line: 1,
            record_at: 0,
            quote_at: 0,
            quote_line: 1,
            before: b'\n',
            offset: 0,
            last_close: None,
            raw: 0,
            refused: None,
        }
    }

    fn emit(&mut self, start: u64) {
        if let Some(row) = self.records.checked_sub(self.header)
            && self.predict.1 + (row - self.predict.0) != start
        {
            self.fixes.push((row, start));
            self.predict = (row, start);
        }
        self.records += 1;
    }

    /// Scans the next bytes of a UTF-8 file.
    fn feed(&mut self, chunk: &[u8]) {
        self.take_raw(chunk);
        self.scan(chunk);
    }

    /// Counts (and when hashing, hashes) the next bytes of the file.
    fn take_raw(&mut self, chunk: &[u8]) {
        if let Some(hash) = &mut self.hash {
            hash.update(chunk);
        }
        self.raw += chunk.len() as u64;
    }

    /// Scans the next bytes of the file's text.
    fn scan(&mut self, chunk: &[u8]) {
        let Some(&last) = chunk.last() else {
            return;
        };
        let mut from = 0;
        for pos in memchr::memchr2_iter(b'\n', b'"', chunk) {
            if !self.nonempty && chunk[from..pos].iter().any(|&b| b != b'\r') {
                self.nonempty = true;
            }
            from = pos + 1;
            let prev = if pos == 0 {
                self.before
            } else {
                chunk[pos - 1]
            };
            let abs = self.offset + pos as u64;
            if chunk[pos] == b'"' {
                self.nonempty = true;
                if self.in_quotes {
                    self.in_quotes = false;
                    self.last_close = Some(abs);
                } else if prev == self.delimiter || prev == b'\n' || prev == b'\r' {
                    // A field's opening quote.
                    self.in_quotes = true;
                    (self.quote_at, self.quote_line) = (abs, self.line);
                } else if self.last_close.is_some_and(|c| c + 1 == abs) {
                    // `""`: a literal quote; the field stays open.
                    self.in_quotes = true;
                }
                continue;
            }
            self.line += 1;
            if self.in_quotes {
                continue;
            }
            if self.nonempty {
                self.emit(self.record_line);
            }
            self.nonempty = false;
            self.record_line = self.line;
            self.record_at = abs + 1;
        }
        if !self.nonempty && chunk[from..].iter().any(|&b| b != b'\r') {
            self.nonempty = true;
        }
        self.before = last;
        self.offset += chunk.len() as u64;
    }

    /// What the scan found in the bytes fed.
    fn finish(mut self) -> Scan {
        if self.nonempty {
            self.emit(self.record_line);
        }
        // The last line holding a byte: a final line break starts none.
        let last_line = if self.offset > 0 && self.before == b'\n' {
            self.line - 1
        } else {
            self.line
        };
        Scan {
            fixes: LineFixes(self.fixes),
            records: self.records.saturating_sub(self.header),
            sha256: self.hash.map(|h| h.finalize().into()),
            fed: self.raw,
            undecodable: self.refused.map(|(_, record_at, at)| (record_at, at)),
            unclosed: self.in_quotes.then_some(Unclosed {
                record_line: self.record_line,
                record_at: self.record_at,
                quote_at: self.quote_at,
                quote_line: self.quote_line,
                last_line,
            }),
        }
    }
}

/// A quoted field still open where the bytes fed end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unclosed {
    /// The line its record starts on, and the record's offset.
    record_line: u64,
    record_at: u64,
    /// The opening quote's offset and line.
    quote_at: u64,
    quote_line: u64,
    /// The file's last line holding a byte.
    last_line: u64,
}

/// A finished [`ScanState`].
#[derive(Debug, PartialEq, Eq)]
struct Scan {
    fixes: LineFixes,
    /// Data records seen, which the caller checks against the reader's count.
    records: u64,
    /// When hashing, the SHA-256 of the file's BOM (if it has one) and the
    /// bytes fed.
    sha256: Option<[u8; 32]>,
    /// A quoted field the bytes fed end inside.
    unclosed: Option<Unclosed>,
    /// How many of the file's bytes were fed.
    fed: u64,
    /// Where the reader stopped at bytes the encoding does not define.
    undecodable: Option<(u64, u64)>,
}

/// The all-text schema of `schema`: same names, every field `Utf8`, no metadata
/// but the [`META_UNREADABLE`] mark of a field whose values have no text form
/// and the [`META_KIND`] mark of a float, date or timestamp field (kept from a
/// stored file's text field, or the field's own type).
fn text_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                let mut metadata = std::collections::HashMap::new();
                if let Some(t) = unreadable_type(f) {
                    metadata.insert(META_UNREADABLE.to_owned(), t);
                } else if let Some(kind) = kind_of(f) {
                    metadata.insert(META_KIND.to_owned(), kind.name().to_owned());
                }
                Field::new(f.name(), DataType::Utf8, true).with_metadata(metadata)
            })
            .collect::<Vec<_>>(),
    ))
}

/// What a field's values were before they are text: its own type's kind, or
/// for a text field the mark a stored conversion left (only a text field's:
/// a typed field's type is what it holds, whatever its metadata says).
fn kind_of(field: &Field) -> Option<ValueKind> {
    match field.data_type() {
        DataType::Utf8 => ValueKind::of_field(field),
        other => ValueKind::of(other),
    }
}

/// The type of a field's values when they have no text form: marked so by an
/// earlier conversion, or a type Arrow cannot cast to text (a struct, map or
/// union). Such a column reads as all null, and mapping it is refused
/// ([`InputError::UnreadableColumn`]), so one nested column nobody maps does
/// not make the whole file unreadable.
pub(super) fn unreadable_type(field: &Field) -> Option<String> {
    if let Some(t) = field.metadata().get(META_UNREADABLE) {
        return Some(t.clone());
    }
    (!arrow_cast::can_cast_types(field.data_type(), &DataType::Utf8))
        .then(|| field.data_type().to_string())
}

/// Makes every column of each batch `Utf8` (keeping names) so mapping only
/// ever sees text ([`cast::column_text`]); a column [`text_schema`] marks
/// unreadable, or one [`Control::wanted`] leaves out, becomes all null. Rows
/// are numbered from `first_line` for the messages of values without text.
fn to_text(
    source: String,
    schema: SchemaRef,
    first_line: u64,
    control: Arc<Control>,
    batches: impl Iterator<Item = Result<RecordBatch, ArrowError>> + Send + 'static,
) -> TextBatches {
    to_text_of(source, schema, first_line, control, None, batches)
}

/// A Parquet file [`to_text`] can read again for the value its reader
/// refused as invalid UTF-8 ([`locate::parquet_invalid_utf8`]).
struct Relocate {
    path: PathBuf,
    /// The root columns read that the reader reads as strings (and so
    /// validates): a binary one's bytes are checked at their row when cast
    /// ([`cast::column_text`]), never by the reader.
    columns: Vec<usize>,
}

impl Relocate {
    /// For `path`, whose columns at `read` (root positions) the reader
    /// reads with the types of `schema` (the file's whole Arrow schema).
    fn new(path: &Path, schema: &Schema, read: impl IntoIterator<Item = usize>) -> Self {
        let string = |i: usize| {
            schema.fields().get(i).is_some_and(|f| {
                matches!(
                    f.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                )
            })
        };
        Self {
            path: path.to_owned(),
            columns: read.into_iter().filter(|&i| string(i)).collect(),
        }
    }
}

/// [`to_text`], with a Parquet reader's invalid-UTF-8 error located.
fn to_text_of(
    source: String,
    schema: SchemaRef,
    first_line: u64,
    control: Arc<Control>,
    relocate: Option<Relocate>,
    batches: impl Iterator<Item = Result<RecordBatch, ArrowError>> + Send + 'static,
) -> TextBatches {
    let mut rows = 0u64;
    Box::new(batches.map(move |batch| {
        let batch = batch.map_err(|e| {
            let msg = e.to_string().to_ascii_lowercase();
            relocate
                .as_ref()
                .filter(|_| msg.contains("utf-8") || msg.contains("utf8"))
                .and_then(|r| {
                    locate::parquet_invalid_utf8(&r.path, &source, &r.columns, first_line)
                })
                .unwrap_or_else(|| format_err(&source, e))
        })?;
        let first_row = rows;
        rows += batch.num_rows() as u64;
        let wanted = control.wanted.get();
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .enumerate()
            .map(|(i, (c, field))| {
                let unread = wanted.is_some_and(|w| w.binary_search(&i).is_err());
                if unread || field.metadata().contains_key(META_UNREADABLE) {
                    return Ok(arrow_array::new_null_array(&DataType::Utf8, c.len()));
                }
                let bad = match cast::column_text(c) {
                    Ok(text) => return Ok(text),
                    Err(bad) => bad,
                };
                let line = first_line.saturating_add(first_row + bad.row as u64);
                let column = field.name().clone();
                let err = match bad.problem {
                    CellProblem::NotUtf8 => InputError::InvalidUtf8 {
                        file: source.clone(),
                        line,
                        field: Some(NotUtf8Field {
                            column,
                            value: bad.value,
                        }),
                    },
                    CellProblem::Cast(reason) => InputError::BadValue {
                        file: source.clone(),
                        line,
                        column,
                        value: bad.value,
                        problem: ValueProblem::NoText { reason },
                    },
                    CellProblem::Column(reason) => format_err(
                        &source,
                        format!(
                            "column {column:?} ({}) cannot be read as text: {reason}",
                            c.data_type()
                        ),
                    ),
                };
                if !control.lenient.load(Ordering::Relaxed) {
                    return Err(err);
                }
                // Stored, not refused: the column is marked unreadable with
                // the first such value, and refused only where it is mapped.
                let why = format!("{} (first at {err})", c.data_type());
                control
                    .unreadable
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(field.name().clone())
                    .or_insert(why);
                Ok(arrow_array::new_null_array(&DataType::Utf8, c.len()))
            })
            .collect::<Result<Vec<ArrayRef>, _>>()?;
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| format_err(&source, e))
    }))
}

/// What the caller of a reader that decodes every column says, and what it
/// learns, while the batches are read.
#[derive(Debug, Default)]
pub(super) struct Control {
    /// The columns mapping reads of a file whose reader decodes every column
    /// (an Arrow stream, NDJSON): set by [`Opened::project`], so the others
    /// are never converted to text and a value there without a text form
    /// cannot fail the load. Unset, every column is converted.
    wanted: std::sync::OnceLock<Vec<usize>>,
    /// Set by [`Opened::store_unreadable`]: a value without a text form does
    /// not fail the read; its column is listed in `unreadable` (the batch
    /// holding the value has it empty; a stored file's footer then marks the
    /// whole column, so none of its text is ever read).
    lenient: AtomicBool,
    /// Such columns by name, each with its type and its first such value.
    pub(super) unreadable: Mutex<std::collections::BTreeMap<String, String>>,
}

/// A text stream numbered from row `first_line` (formats without physical
/// lines: Parquet, Arrow, NDJSON records).
fn rows_from(
    source: String,
    schema: &Schema,
    first_line: u64,
    relocate: Option<Relocate>,
    batches: impl Iterator<Item = Result<RecordBatch, ArrowError>> + Send + 'static,
) -> Opened {
    let schema = text_schema(schema);
    let control = Arc::new(Control::default());
    Opened {
        batches: to_text_of(
            source.clone(),
            schema.clone(),
            first_line,
            Arc::clone(&control),
            relocate,
            batches,
        ),
        source,
        schema,
        first_line,
        line_fixes: LineFixes::default(),
        bytes: 0,
        scan: None,
        reopen: None,
        control: Some(control),
    }
}

impl Reopen {
    /// The file's text batches of `columns` (sorted schema positions) only.
    /// `first_line` is the file's, as opening it found (its stored origin);
    /// `control` the first opening's (whether values without text fail).
    fn open(
        &self,
        source: &str,
        columns: &[usize],
        first_line: u64,
        control: Arc<Control>,
    ) -> Result<TextBatches, InputError> {
        let file = File::open(&self.path).map_err(|e| io_err(source, e))?;
        let source = source.to_owned();
        match self.format {
            Format::Parquet => {
                let builder =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                        .map_err(|e| format_err(&source, e))?;
                let relocate = Relocate::new(&self.path, builder.schema(), columns.iter().copied());
                let mask = parquet::arrow::ProjectionMask::roots(
                    builder.parquet_schema(),
                    columns.iter().copied(),
                );
                let reader = builder
                    .with_projection(mask)
                    .with_batch_size(batch_rows(self.batch_size, columns.len()))
                    .build()
                    .map_err(|e| format_err(&source, e))?;
                let schema = text_schema(&arrow_array::RecordBatchReader::schema(&reader));
                Ok(to_text_of(
                    source,
                    schema,
                    first_line,
                    control,
                    Some(relocate),
                    reader,
                ))
            }
            _ => {
                let reader =
                    arrow_ipc::reader::FileReader::try_new_buffered(file, Some(columns.to_vec()))
                        .map_err(|e| format_err(&source, e))?;
                let schema = text_schema(&stored_schema(&reader));
                Ok(to_text(
                    source,
                    schema,
                    first_line,
                    control,
                    unpanicked(reader),
                ))
            }
        }
    }
}

fn open_parquet(
    path: &Path,
    file: File,
    source: String,
    opts: &ReadOptions,
) -> Result<Opened, InputError> {
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format_err(&source, e))?;
    let schema = builder.schema().clone();
    check_width(&source, &schema)?;
    check_parquet_sizes(&source, builder.metadata())?;
    let reader = builder
        .with_batch_size(batch_rows(opts.batch_size, schema.fields().len()))
        .build()
        .map_err(|e| format_err(&source, e))?;
    let relocate = Relocate::new(path, &schema, 0..schema.fields().len());
    Ok(rows_from(source, &schema, 1, Some(relocate), reader))
}

/// The largest first line a stored file may give: far beyond any file's
/// lines, and far enough below `u64::MAX` that no row's line overflows.
pub(super) const MAX_FIRST_LINE: u64 = 1 << 48;

/// Applies the source name and first line stored by [`super::convert_to_ipc`],
/// if any; `given` is a source name the caller gave, which wins.
///
/// # Errors
/// [`InputError::Format`] when the stored first line is not a line number.
fn stored_origin(
    schema: &Schema,
    source: String,
    given: Option<&str>,
) -> Result<(String, u64), InputError> {
    let metadata = schema.metadata();
    let first_line = match metadata.get(META_FIRST_LINE) {
        None => 1,
        Some(text) => match text.parse::<u64>() {
            Ok(line @ 1..=MAX_FIRST_LINE) => line,
            _ => {
                return Err(format_err(
                    &source,
                    format!(
                        "the schema's {META_FIRST_LINE} metadata {text:?} is not a line number (1 to {MAX_FIRST_LINE})"
                    ),
                ));
            }
        },
    };
    let source = match (given, metadata.get(META_SOURCE)) {
        (None, Some(stored)) => stored.clone(),
        _ => source,
    };
    Ok((source, first_line))
}

/// An Arrow IPC file's schema with the columns its footer lists as stored
/// unreadable ([`META_UNREADABLE_COLUMNS`], written by `convert_to_ipc`)
/// marked so: such a column's values are empty in the file, and mapping it
/// is refused with what made it unreadable.
pub(super) fn stored_schema<R: Read + Seek>(
    reader: &arrow_ipc::reader::FileReader<R>,
) -> SchemaRef {
    let schema = reader.schema();
    let marks: std::collections::BTreeMap<String, String> = reader
        .custom_metadata()
        .get(META_UNREADABLE_COLUMNS)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    if marks.is_empty() {
        return schema;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match marks.get(f.name()) {
            Some(why) => {
                let mut metadata = f.metadata().clone();
                metadata.insert(META_UNREADABLE.to_owned(), why.clone());
                f.as_ref().clone().with_metadata(metadata)
            }
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Checks an Arrow IPC file's framing before its reader sees it: the magic
/// `ARROW1` at both ends (the reader's own error for a short or foreign file
/// is a bare "Invalid argument" from a seek before the start).
fn check_arrow_magic(file: &mut File, source: &str) -> Result<(), InputError> {
    const MAGIC: &[u8; 6] = b"ARROW1";
    let len = file.metadata().map_err(|e| io_err(source, e))?.len();
    let mut read_at = |from: SeekFrom| -> Result<[u8; 6], InputError> {
        let mut buf = [0u8; 6];
        file.seek(from)
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| io_err(source, e))?;
        Ok(buf)
    };
    if len < 6 || &read_at(SeekFrom::Start(0))? != MAGIC {
        return Err(format_err(
            source,
            "not an Arrow IPC file: it does not start with ARROW1 (an Arrow stream is \
             format \"arrow-stream\", .arrows; Feather version 1 is not read)",
        ));
    }
    // Magic, padding, footer length and magic again: 18 bytes at least.
    if len < 18 || &read_at(SeekFrom::End(-6))? != MAGIC {
        return Err(format_err(
            source,
            "the Arrow IPC file is cut short: it does not end with ARROW1",
        ));
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| io_err(source, e))?;
    Ok(())
}

fn open_arrow_file(
    mut file: File,
    source: String,
    opts: &ReadOptions,
) -> Result<Opened, InputError> {
    check_arrow_magic(&mut file, &source)?;
    let reader = arrow_ipc::reader::FileReader::try_new_buffered(file, None)
        .map_err(|e| format_err(&source, e))?;
    let schema = stored_schema(&reader);
    let (source, first_line) = stored_origin(&schema, source, opts.source.as_deref())?;
    check_width(&source, &schema)?;
    // Written in the footer by a streaming conversion, in the schema by older files.
    let line_fixes = reader
        .custom_metadata()
        .get(META_LINE_FIXES)
        .or_else(|| schema.metadata().get(META_LINE_FIXES))
        .map(|t| LineFixes::decode(t))
        .unwrap_or_default();
    Ok(Opened {
        line_fixes,
        ..rows_from(source, &schema, first_line, None, unpanicked(reader))
    })
}

fn open_arrow_stream(mut file: File, source: String) -> Result<Opened, InputError> {
    // An Arrow IPC *file* read as a stream would fail as "expected 1330795073
    // metadata bytes" (its magic read as a length): name the mix-up instead.
    let mut head = [0u8; 6];
    let got = file.read(&mut head).map_err(|e| io_err(&source, e))?;
    if head[..got] == *b"ARROW1" {
        return Err(format_err(
            &source,
            "an Arrow IPC file (it starts with ARROW1), not an Arrow stream: read it as \
             format \"arrow\" (.arrow, application/vnd.apache.arrow.file)",
        ));
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| io_err(&source, e))?;
    let ran_out = Arc::new(AtomicBool::new(false));
    let watched = RunOut {
        file,
        ran_out: Arc::clone(&ran_out),
    };
    let reader = arrow_ipc::reader::StreamReader::try_new_buffered(watched, None)
        .map_err(|e| format_err(&source, format!("not a readable Arrow IPC stream: {e}")))?;
    let schema = reader.schema();
    check_width(&source, &schema)?;
    let opened = rows_from(source.clone(), &schema, 1, None, unpanicked(reader));
    // The reader takes the end of the file for the end of the stream: a
    // stream cut off between two batches would read as a shorter one.
    let mut checked = false;
    let end = std::iter::from_fn(move || {
        if std::mem::replace(&mut checked, true) || !ran_out.load(Ordering::Relaxed) {
            return None;
        }
        Some(Err(format_err(
            &source,
            "the Arrow stream is cut short: the file ends without the stream's end marker \
             (its writer stopped, or the copy was cut off)",
        )))
    });
    Ok(Opened {
        batches: Box::new(opened.batches.chain(end)),
        ..opened
    })
}

/// A stream's file, noting when a read finds nothing more: a complete
/// stream ends with its end marker, after which the reader reads no more.
struct RunOut {
    file: File,
    ran_out: Arc<AtomicBool>,
}

impl Read for RunOut {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.ran_out.store(true, Ordering::Relaxed);
        }
        Ok(n)
    }
}

fn open_ndjson(
    path: &Path,
    file: File,
    source: String,
    opts: &ReadOptions,
) -> Result<Opened, InputError> {
    // A byte order mark is skipped, as in a CSV file: every read below
    // (inference, line numbers, records) starts after it.
    let mut reader = BufReader::with_capacity(
        1 << 20,
        AfterBom::new(file).map_err(|e| io_err(&source, e))?,
    );
    // Inferring reads every record, so a malformed file fails here. arrow-json
    // places its errors within the record ("line 1") or not at all: on an
    // error, the file is read again to find the line.
    let (inferred, _) = match arrow_json::reader::infer_json_schema_from_seekable(&mut reader, None)
    {
        Ok(inferred) => inferred,
        Err(e) => {
            let found = reader
                .seek(SeekFrom::Start(0))
                .ok()
                .and_then(|_| first_bad_json_line(&mut reader))
                .or_else(|| {
                    // Every line is JSON: a key holding two kinds of value.
                    reader.seek(SeekFrom::Start(0)).ok()?;
                    first_mixed_key(&mut reader)
                });
            return Err(match found {
                Some((line, bad)) => bad.into_error(source, line),
                None => format_err(&source, e),
            });
        }
    };
    if inferred.fields().is_empty() {
        return Err(InputError::Empty { file: source });
    }
    check_width(&source, &inferred)?;
    // Values are decoded as text, but for nested ones (arrays, objects),
    // which keep their inferred type: cast to text afterwards where Arrow can
    // (an array of plain values), else read as null like any column without a
    // text form. Unmapped, they never stop a file from loading.
    let decoded: Vec<Field> = inferred
        .fields()
        .iter()
        .map(|f| {
            if f.data_type().is_nested() {
                f.as_ref()
                    .clone()
                    .with_data_type(text_leaves(f.data_type()))
            } else if unreadable_type(f).is_some() {
                f.as_ref().clone()
            } else {
                Field::new(f.name(), DataType::Utf8, true)
            }
        })
        .collect();
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| io_err(&source, e))?;
    // Rows are numbered by the lines they are on, as a CSV's are: the
    // reader skips blank lines. The same pass refuses a record holding a
    // key twice, which the decoder would read as its last value, and finds
    // the order the columns first appear in, which the schema takes.
    let JsonLines {
        fixes: line_fixes,
        keys,
    } = match json_line_fixes(&mut reader).map_err(|e| io_err(&source, e))? {
        Ok(found) => found,
        Err((line, bad)) => return Err(bad.into_error(source, line)),
    };
    let first_seen: std::collections::HashMap<&str, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let mut decoded = decoded;
    decoded.sort_by_key(|f| {
        first_seen
            .get(f.name().as_str())
            .copied()
            .unwrap_or(usize::MAX)
    });
    let schema = Arc::new(Schema::new(decoded));
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| io_err(&source, e))?;
    let json = arrow_json::ReaderBuilder::new(schema.clone())
        .with_coerce_primitive(true)
        .with_batch_size(batch_rows(opts.batch_size, schema.fields().len()))
        .build(reader)
        .map_err(|e| format_err(&source, e))?;
    let opened = rows_from(source.clone(), &schema, 1, None, json);
    // Inference lets some keys of two kinds through (text, then an array),
    // and decoding fails without a line: find it, on the error's path only.
    let path = path.to_path_buf();
    let batches: TextBatches = Box::new(opened.batches.map(move |batch| {
        batch.map_err(|e| match e {
            InputError::Format { .. } => {
                let reread = || {
                    File::open(&path)
                        .and_then(AfterBom::new)
                        .map(BufReader::new)
                };
                reread()
                    .ok()
                    .and_then(first_bad_json_line)
                    .or_else(|| reread().ok().and_then(first_mixed_key))
                    .map_or(e, |(line, bad)| bad.into_error(source.clone(), line))
            }
            other => other,
        })
    }));
    Ok(Opened {
        line_fixes,
        batches,
        ..opened
    })
}

/// `data_type` with the plain values inside its lists read as text: a
/// number in an array keeps its JSON text (`12345678901234567.89`, `1`
/// beside `1.5`) instead of going through an `f64`. Objects keep their
/// inferred type (they have no text form).
fn text_leaves(data_type: &DataType) -> DataType {
    let inner = |field: &arrow_schema::FieldRef| {
        Arc::new(
            field
                .as_ref()
                .clone()
                .with_data_type(text_leaves(field.data_type())),
        )
    };
    match data_type {
        DataType::List(field) => DataType::List(inner(field)),
        DataType::LargeList(field) => DataType::LargeList(inner(field)),
        DataType::FixedSizeList(field, n) => DataType::FixedSizeList(inner(field), *n),
        nested if nested.is_nested() => nested.clone(),
        _ => DataType::Utf8,
    }
}

/// A file read from after its UTF-8 byte order mark, if it has one, as if it
/// began there: seeking to the start lands after the mark.
struct AfterBom {
    file: File,
    base: u64,
}

impl AfterBom {
    fn new(mut file: File) -> std::io::Result<Self> {
        let mut head = [0u8; 3];
        let mut got = 0;
        while got < head.len() {
            match file.read(&mut head[got..])? {
                0 => break,
                n => got += n,
            }
        }
        let base = if head[..got] == *BOM {
            BOM.len() as u64
        } else {
            0
        };
        file.seek(SeekFrom::Start(base))?;
        Ok(Self { file, base })
    }
}

impl Read for AfterBom {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }
}

impl Seek for AfterBom {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let pos = match pos {
            SeekFrom::Start(n) => SeekFrom::Start(self.base + n),
            relative => relative,
        };
        Ok(self.file.seek(pos)?.saturating_sub(self.base))
    }
}

/// What a pass over a JSON Lines file's lines finds besides its values.
struct JsonLines {
    /// Where its records (one a non-blank line) are not one line after
    /// another: the records after blank lines.
    fixes: LineFixes,
    /// Its top-level keys in the order they first appear (inference lists
    /// each record's keys sorted).
    keys: Vec<String>,
}

/// Reads a JSON Lines file's line fixes and key order ([`JsonLines`]).
/// `Err` with the first record (its line) that holds a top-level key twice:
/// JSON leaves that undefined and the decoder would keep the last value,
/// dropping the other without a word, where a CSV file naming a column twice
/// is refused.
fn json_line_fixes(input: impl BufRead) -> std::io::Result<Result<JsonLines, (u64, BadJsonLine)>> {
    let mut fixes = Vec::new();
    let mut keys = KeyOrder::default();
    let mut record = 0u64;
    for (i, line) in input.split(b'\n').enumerate() {
        let text = line?;
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line = i as u64 + 1;
        // Lines that do not parse were refused by inference already; the
        // decoder reports any it let through.
        let mut de = serde_json::Deserializer::from_slice(&text);
        if let Ok(Some(key)) = serde::de::DeserializeSeed::deserialize(&mut keys, &mut de) {
            return Ok(Err((
                line,
                BadJsonLine::NotJson(format!(
                    "key {key:?} appears twice in this record; one of its values would be lost"
                )),
            )));
        }
        // Record `record` is predicted on the line after the last fix's.
        let predicted = fixes
            .last()
            .map_or(record + 1, |&(row, at): &(u64, u64)| at + (record - row));
        if line != predicted {
            fixes.push((record, line));
        }
        record += 1;
    }
    Ok(Ok(JsonLines {
        fixes: LineFixes(fixes),
        keys: keys.order,
    }))
}

/// The top-level keys of the records read so far, in the order they first
/// appear. Read as a seed, a JSON object gives its first key written twice,
/// if any, found without building its values (they are skipped) or copying
/// its keys (unless escaped or new).
#[derive(Default)]
struct KeyOrder {
    order: Vec<String>,
    seen: std::collections::HashSet<String>,
}

impl<'de> serde::de::DeserializeSeed<'de> for &mut KeyOrder {
    type Value = Option<String>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for &mut KeyOrder {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys: Vec<Key<'de>> = Vec::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            map.next_value::<serde::de::IgnoredAny>()?;
            // Records mostly list the same keys in the same order: a key
            // where the first record had it is known without hashing.
            let known = self.order.get(keys.len()).map(String::as_str) == Some(key.0.as_ref())
                || self.seen.contains(key.0.as_ref());
            if !known {
                self.seen.insert(key.0.clone().into_owned());
                self.order.push(key.0.clone().into_owned());
            }
            keys.push(key);
        }
        // Sorted, so a record of many keys costs `k log k`, not `k²`.
        keys.sort_unstable();
        Ok(keys
            .windows(2)
            .find(|pair| pair[0] == pair[1])
            .map(|pair| pair[0].0.clone().into_owned()))
    }
}

/// An object key, borrowed from the line unless it holds an escape.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> serde::de::Visitor<'de> for Text {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Text)
    }
}

/// The kind of a JSON value, as far as a column's type goes: `null` is any,
/// and an array is of the kind of its values (an empty one is any array).
fn json_kind(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::Object(_) => Some("an object".to_owned()),
        serde_json::Value::Array(items) => Some(match items.iter().find_map(json_kind) {
            Some(inner) => format!("an array of {}", inner.trim_start_matches("an ")),
            None => "an array".to_owned(),
        }),
        _ => Some("text, a number or a boolean".to_owned()),
    }
}

/// The first line of `input` where a top-level key holds another kind of
/// value than on an earlier line (an object there, text here): no column
/// type fits both. `None` when there is none or `input` cannot be read.
fn first_mixed_key(input: impl BufRead) -> Option<(u64, BadJsonLine)> {
    let mut kinds: std::collections::HashMap<String, (String, u64)> =
        std::collections::HashMap::new();
    for (i, line) in input.split(b'\n').enumerate() {
        let line = line.ok()?;
        let Ok(serde_json::Value::Object(record)) = serde_json::from_slice(&line) else {
            continue;
        };
        let at = i as u64 + 1;
        for (key, value) in &record {
            let Some(kind) = json_kind(value) else {
                continue;
            };
            // An empty array fits arrays of any kind: the longer kind is kept.
            let fits =
                |short: &str, long: &str| long.starts_with(short) && short.ends_with("array");
            match kinds.get_mut(key) {
                Some((was, _)) if *was == kind || fits(&kind, was) => {}
                Some((was, first)) if fits(was, &kind) => {
                    *was = kind;
                    *first = at;
                }
                Some((was, first)) => {
                    return Some((
                        at,
                        BadJsonLine::NotJson(format!(
                            "key {key:?} holds {kind} here but {was} on line {first}; a key must hold one kind of value in every record"
                        )),
                    ));
                }
                None => {
                    kinds.insert(key.clone(), (kind, at));
                }
            }
        }
    }
    None
}

/// What is wrong with a line of a JSON Lines file.
#[derive(Debug, PartialEq)]
enum BadJsonLine {
    /// It is not UTF-8.
    NotUtf8,
    /// It is not a JSON value (why, with the column), or not one a column
    /// can hold beside the other lines.
    NotJson(String),
}

impl BadJsonLine {
    /// The error for line `line` of `file`.
    fn into_error(self, file: String, line: u64) -> InputError {
        match self {
            Self::NotUtf8 => InputError::InvalidUtf8 {
                file,
                line,
                field: None,
            },
            Self::NotJson(reason) => InputError::MalformedRow { file, line, reason },
        }
    }
}

/// The first non-blank line of `input` that is not UTF-8, not JSON, or
/// not a JSON object (1-based), and what is wrong with it; `None` when every line is
/// one or `input` cannot be read.
fn first_bad_json_line(input: impl BufRead) -> Option<(u64, BadJsonLine)> {
    for (i, line) in input.split(b'\n').enumerate() {
        let line = line.ok()?;
        let bad = if std::str::from_utf8(&line).is_err() {
            BadJsonLine::NotUtf8
        } else if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        // Parsed whole (not skipped over) so a string's escapes are checked:
        // a lone `\ud800` is not text, and arrow-json refuses it.
        } else if let Err(e) = serde_json::from_slice::<serde_json::Value>(&line) {
            let text = e.to_string();
            let what = text
                .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
                .unwrap_or(&text);
            BadJsonLine::NotJson(format!("not valid JSON at column {}: {what}", e.column()))
        } else if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            // Valid JSON, but a record is an object: not `[1]`, `"x"` or `null`.
            BadJsonLine::NotJson(
                "not a JSON object; each line holds one record, {\"key\": value, ...}".to_owned(),
            )
        } else {
            continue;
        };
        return Some((i as u64 + 1, bad));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn json_records_are_numbered_by_their_lines() {
        let lines = |text: &[u8]| -> Vec<u64> {
            let fixes = json_line_fixes(text).unwrap().unwrap().fixes;
            (0..3)
                .map(|row| LineCursor::new(&fixes, 1, row).line(row))
                .collect()
        };
        assert_eq!(lines(b"{}\n{}\n{}\n"), [1, 2, 3]);
        assert_eq!(lines(b"\n{}\n \t\n\n{}\n{}"), [2, 5, 6]);
        assert_eq!(lines(b"{}\r\n\r\n{}\r\n{}\r\n"), [1, 3, 4]);
    }

    #[test]
    fn json_keys_are_listed_as_they_first_appear() {
        let keys = |text: &[u8]| json_line_fixes(text).unwrap().unwrap().keys;
        assert_eq!(
            keys(b"{\"zeta\": 1, \"id\": {\"b\": 1, \"a\": 2}}\n\n{\"id\": 2, \"amount\": 3, \"zeta\": 4}\n{\"\\u0061\": 1}"),
            ["zeta", "id", "amount", "a"]
        );
    }

    #[test]
    fn a_record_holding_a_key_twice_is_refused_at_its_line() {
        let repeated = |text: &[u8]| match json_line_fixes(text).unwrap() {
            Ok(_) => None,
            Err((line, BadJsonLine::NotJson(why))) => Some((line, why)),
            Err((line, other)) => panic!("line {line}: {other:?}"),
        };
        assert_eq!(
            repeated(b"{\"a\": 1, \"b\": 2}\n{\"b\": {\"a\": 1, \"a\": 2}}\n"),
            None
        );
        let (line, why) =
            repeated(b"{\"a\": 1}\n\n{\"a\": \"1\", \"b\": [1], \"a\": \"2\"}\n").unwrap();
        assert_eq!(line, 3);
        assert!(why.starts_with("key \"a\" appears twice"), "{why}");
        // An escaped spelling of the same key is the same key.
        assert_eq!(
            repeated(b"{\"id\": 1, \"\\u0069d\": 2}").map(|(line, _)| line),
            Some(1)
        );
    }

    #[test]
    fn a_key_of_two_kinds_is_found_where_it_changes() {
        let found = first_mixed_key(
            &b"{\"o\": \"x\", \"n\": 1}\n\n{\"o\": null, \"n\": \"2\"}\n{\"o\": {\"a\": 2}}\n"[..],
        );
        assert_eq!(
            found,
            Some((
                4,
                BadJsonLine::NotJson(
                    "key \"o\" holds an object here but text, a number or a boolean on line 1; a key must hold one kind of value in every record".to_owned()
                )
            ))
        );
        assert_eq!(
            first_mixed_key(&b"{\"a\": [1]}\n{\"a\": null}\n{\"a\": [2]}\n"[..]),
            None
        );
    }

    #[test]
    fn the_first_bad_json_line_is_the_files() {
        let not_json = |column: usize, what: &str| {
            BadJsonLine::NotJson(format!("not valid JSON at column {column}: {what}"))
        };
        type Found = Option<(u64, BadJsonLine)>;
        let cases: [(&[u8], Found); 7] = [
            (b"{}\n\n{\"a\": \"caf\xc3\xa9\"}\n", None),
            (
                b"{}\n\n{}\n{\"a\": \"L\\ud800x\"}\n",
                Some((4, not_json(15, "unexpected end of hex escape"))),
            ),
            (
                b"{}\n{}\n{\"a\": \"\xff\"}\n",
                Some((3, BadJsonLine::NotUtf8)),
            ),
            (
                b"\n  \n{\"a\": \n{}\n",
                Some((3, not_json(6, "EOF while parsing a value"))),
            ),
            (
                b"{}\n{\"a\" 1}\n\xff\n",
                Some((2, not_json(6, "expected `:`"))),
            ),
            (b"{}\n\xe2\x82", Some((2, BadJsonLine::NotUtf8))),
            (b"", None),
        ];
        for (text, expected) in cases {
            assert_eq!(first_bad_json_line(text), expected, "{text:?}");
        }
    }

    fn state(has_header: bool) -> ScanState {
        ScanState::new(&LineScan {
            path: PathBuf::new(),
            bom: &[],
            delimiter: b',',
            has_header,
            encoding: TextEncoding::UTF_8,
            first_line: 1 + u64::from(has_header),
            batch_size: 1,
            hash: true,
            state: Arc::default(),
        })
    }

    #[test]
    fn scan_finds_blank_lines_and_quoted_breaks() {
        let mut s = state(true);
        let text = b"h,m\n1,\"a\nb\"\n\n2,x\r\n3,y";
        s.feed(text);
        let scan = s.finish();
        assert_eq!((scan.fixes, scan.records), (LineFixes(vec![(1, 5)]), 3));
        assert_eq!(scan.sha256, Some(<[u8; 32]>::from(Sha256::digest(text))));
    }

    proptest! {
        /// However the reader's reads split the file, the scan finds the same lines.
        #[test]
        fn scan_is_the_same_whatever_the_chunks(
            text in proptest::collection::vec(prop::sample::select(b"a,\"\n\r".to_vec()), 0..60),
            cuts in proptest::collection::vec(0usize..60, 0..8),
            has_header: bool,
        ) {
            let mut whole = state(has_header);
            whole.feed(&text);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(text.len())).collect();
            cuts.sort_unstable();
            let mut chunked = state(has_header);
            let mut from = 0;
            for cut in cuts.into_iter().chain([text.len()]) {
                chunked.feed(&text[from..cut]);
                from = cut;
            }
            prop_assert_eq!(whole.finish(), chunked.finish());
        }
    }
}
