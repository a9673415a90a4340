//! Reading input files into columnar text tables, and mapping them to [`Side`]s.
//!
//! Two stages, so a service can store an upload once and map it later:
//! [`read_table`] reads CSV, Parquet, Arrow IPC (file and stream) or NDJSON in
//! batches into a [`Table`] whose every column is UTF-8 text; [`Side::from_table`]
//! applies a [`SideMapping`], parsing amounts, currencies and dates exactly.
//! [`load_side`] does both.

use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use serde::Deserialize;

use crate::error::InputError;
use crate::mapping::SideMapping;
use crate::side::Side;

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
            "csv" | "txt" | "tsv" => Self::Csv,
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
        }
    }
}

/// Reads a file into a text [`Table`].
///
/// # Errors
/// [`InputError`] naming the file (and line where there is one) for an unreadable,
/// empty or malformed file, or invalid UTF-8.
pub fn read_table(path: &Path, format: Format, opts: &ReadOptions) -> Result<Table, InputError> {
    let _ = (path, format, opts);
    Err(InputError::Format {
        file: path.display().to_string(),
        reason: "not implemented yet".to_owned(),
    })
}

/// Writes a table as an Arrow IPC file (how the service stores uploads); read it
/// back with [`read_table`] and [`Format::Arrow`]. The source name and first line are
/// kept in the schema's metadata, so messages still name the original file.
///
/// # Errors
/// [`InputError::Io`] or [`InputError::Format`] when the file cannot be written.
pub fn write_table_ipc(table: &Table, path: &Path) -> Result<(), InputError> {
    let _ = (table, path);
    Err(InputError::Format {
        file: path.display().to_string(),
        reason: "not implemented yet".to_owned(),
    })
}

impl Side {
    /// Maps a text table to a side: finds the mapped columns, parses amounts,
    /// currencies and dates, and applies `on_error`.
    ///
    /// # Errors
    /// [`InputError::Mapping`] for an unusable mapping, [`InputError::MissingColumn`]
    /// for a mapped column the table lacks, and under `on_error = "fail"`
    /// [`InputError::BadValue`] for the first bad row.
    pub fn from_table(table: &Table, mapping: &SideMapping) -> Result<Side, InputError> {
        let _ = mapping;
        Err(InputError::Format {
            file: table.source.clone(),
            reason: "not implemented yet".to_owned(),
        })
    }
}

/// Reads a file and maps it: [`read_table`] then [`Side::from_table`]. The format is
/// the mapping's, else the file extension's.
///
/// # Errors
/// Any error of those two steps, and [`InputError::UnknownFormat`].
pub fn load_side(path: &Path, mapping: &SideMapping) -> Result<Side, InputError> {
    let _ = (path, mapping);
    Err(InputError::Format {
        file: path.display().to_string(),
        reason: "not implemented yet".to_owned(),
    })
}

/// Writes a side's rejects as CSV with the columns `line,column,value,reason`.
///
/// # Errors
/// The writer's I/O errors.
pub fn write_rejects_csv(side: &Side, writer: impl std::io::Write) -> std::io::Result<()> {
    let _ = (side, writer);
    Ok(())
}
