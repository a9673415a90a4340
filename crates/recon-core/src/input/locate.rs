//! Finding the value a Parquet reader refused as invalid UTF-8.
//!
//! The parquet crate's Arrow reader validates a string column's bytes and,
//! on a value that is not UTF-8 (Latin-1 text a legacy job wrote into a
//! `STRING` column, say), fails the whole batch without saying where. On
//! that error's path only, the file is read again through the crate's
//! column readers, which hand over raw bytes, to name the row, the column
//! and the bytes, as a CSV's invalid UTF-8 is named.

use std::fs::File;
use std::path::Path;

use parquet::column::reader::ColumnReader;
use parquet::data_type::ByteArray;
use parquet::file::reader::{FileReader as _, SerializedFileReader};

use super::read::escape_invalid;
use crate::error::{InputError, NotUtf8Field};

/// Values read at a time from one column chunk.
const BATCH: usize = 4096;

/// The first value in file order (the lowest row, then the leftmost column)
/// that is not UTF-8, among the top-level byte-array columns whose root
/// positions are `columns` (those read as strings): as the error a CSV's would
/// be, its row numbered from `first_line`. `None` when the file cannot be
/// read again this way or holds no such value (the reader's own message
/// then stands).
pub(super) fn parquet_invalid_utf8(
    path: &Path,
    source: &str,
    columns: &[usize],
    first_line: u64,
) -> Option<InputError> {
    let reader = SerializedFileReader::new(File::open(path).ok()?).ok()?;
    let meta = reader.metadata();
    let schema = meta.file_metadata().schema_descr();
    // Top-level byte arrays only: a nested column's rows are not its values.
    let leaves: Vec<usize> = (0..schema.num_columns())
        .filter(|&i| {
            let leaf = schema.column(i);
            leaf.max_rep_level() == 0
                && leaf.physical_type() == parquet::basic::Type::BYTE_ARRAY
                && columns.contains(&schema.get_column_root_idx(i))
        })
        .collect();
    let mut rows_before = 0u64;
    for group in 0..meta.num_row_groups() {
        let row_group = reader.get_row_group(group).ok()?;
        let mut first: Option<(u64, usize, Vec<u8>)> = None;
        for &leaf in &leaves {
            let Ok(ColumnReader::ByteArrayColumnReader(mut values)) =
                row_group.get_column_reader(leaf)
            else {
                continue;
            };
            let max_def = schema.column(leaf).max_def_level();
            if let Some((row, bytes)) = first_invalid(&mut values, max_def)
                && first.as_ref().is_none_or(|(r, _, _)| row < *r)
            {
                first = Some((row, leaf, bytes));
            }
        }
        if let Some((row, leaf, bytes)) = first {
            let column = schema.get_column_root(leaf).name().to_owned();
            return Some(InputError::InvalidUtf8 {
                file: source.to_owned(),
                line: first_line.saturating_add(rows_before + row),
                field: Some(NotUtf8Field {
                    column,
                    value: escape_invalid(&bytes),
                }),
            });
        }
        rows_before += u64::try_from(meta.row_group(group).num_rows()).unwrap_or(0);
    }
    None
}

/// The first value of a column chunk that is not UTF-8: its row in the
/// chunk and its bytes. Nulls (definition levels below `max_def`) hold no
/// value and are counted as rows only.
fn first_invalid(
    reader: &mut parquet::column::reader::ColumnReaderImpl<parquet::data_type::ByteArrayType>,
    max_def: i16,
) -> Option<(u64, Vec<u8>)> {
    let mut defs: Vec<i16> = Vec::with_capacity(BATCH);
    let mut values: Vec<ByteArray> = Vec::with_capacity(BATCH);
    let mut row = 0u64;
    loop {
        defs.clear();
        values.clear();
        let levels = (max_def > 0).then_some(&mut defs);
        let (records, _, _) = reader.read_records(BATCH, levels, None, &mut values).ok()?;
        if records == 0 {
            return None;
        }
        let mut next = values.iter();
        for i in 0..records {
            let present = max_def == 0 || defs.get(i) == Some(&max_def);
            if present {
                let value = next.next()?;
                if std::str::from_utf8(value.data()).is_err() {
                    return Some((row, value.data().to_vec()));
                }
            }
            row += 1;
        }
    }
}
