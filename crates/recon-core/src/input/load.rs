//! Loading a side straight from a file, batch by batch, without a whole [`super::Table`].
//!
//! The reader fills a window of batches while the previous window is mapped in
//! parallel (rayon); mapped parts are joined in file order and the text batches
//! dropped, so only a window or two of text is ever held beside the side. The
//! result, errors included, is what [`Side::from_table`] gives for the same file
//! (but for a columnar file's unmapped columns, which are not read).

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;

use super::map::{Plan, SideBuilder};
use super::read::{Opened, TextBatches};
use super::{LineCursor, LineFixes};
use crate::error::InputError;
use crate::mapping::SideMapping;
use crate::rules::RoleSet;
use crate::side::{Side, TextColumn};

/// Batches read together and mapped together, with their first rows.
type Window = Vec<(RecordBatch, u64)>;

/// A side loaded from a file.
pub(super) struct Loaded {
    pub(super) side: Side,
    /// The file's SHA-256 when the reader hashed it as it read (CSV).
    pub(super) sha256: Option<String>,
}

/// Maps an opened file to a side as it is read, building only the text roles in
/// `roles` (every mapped column is still looked up).
///
/// # Errors
/// As [`Side::from_table`] after [`super::read_table`]: the reader's errors first
/// (a malformed row anywhere in the file wins over a bad value before it, as when
/// the whole table is read first), then the mapping's.
pub(super) fn load_opened(
    mut opened: Opened,
    mapping: &SideMapping,
    roles: RoleSet,
) -> Result<Loaded, InputError> {
    let source = opened.source.clone();
    let schema = opened.schema.clone();
    let first_line = opened.first_line;
    let stored_fixes = opened.line_fixes.clone();
    let file_bytes = opened.bytes;
    let mut plan = Plan::new(&source, &schema, opened.delimiter(), mapping, roles);
    if plan.is_err() {
        // Only the reader's own errors may still come before the mapping's:
        // a value without text in some column is not one of them.
        let _ = opened.store_unreadable();
    }
    // Whether batches hold every column, so their size tells the file's rows.
    let mut whole_rows = true;
    if let Ok(plan) = &mut plan {
        // Columns nothing maps (or whose role is not loaded) are split and
        // checked by the reader, never built.
        let columns = plan.columns();
        if opened.project(&columns)? {
            plan.project(&columns);
            whole_rows = false;
        }
    }
    let mut reserved = false;
    let mut side = plan.as_ref().ok().map(SideBuilder::new);
    // The first mapping error; the rest of the file is still read for reader errors.
    let mut failed: Option<InputError> = None;
    let driven = opened.drive(|mut batches| {
        let window = rayon::current_num_threads().max(1) * 2;
        let mut rows = 0usize;
        let mut next = read_window(&mut batches, window, &mut rows)?;
        while !next.is_empty() {
            let current = std::mem::take(&mut next);
            let Some(builder) = side.as_mut().filter(|_| failed.is_none()) else {
                drop(current);
                next = read_window(&mut batches, window, &mut rows)?;
                continue;
            };
            if !reserved {
                reserved = true;
                if whole_rows {
                    reserve_for_file(builder, &current, file_bytes);
                }
            }
            let (mapped, read) = rayon::join(
                || builder.add_window(&current, &stored_fixes, first_line),
                || read_window(&mut batches, window, &mut rows),
            );
            drop(current);
            if let Err(e) = mapped {
                // Only the reader's verdict is still to come: free the side now.
                failed = Some(e);
                side = None;
            }
            next = read?;
        }
        Ok(rows)
    })?;
    // Lines a CSV scan found only now: rows were mapped one line per record.
    let found = (stored_fixes.0.is_empty() && !driven.line_fixes.0.is_empty())
        .then_some(&driven.line_fixes);
    if let Some(e) = failed {
        return Err(match (found, e) {
            (
                Some(fixes),
                InputError::BadValue {
                    file,
                    line,
                    column,
                    value,
                    problem,
                },
            ) => InputError::BadValue {
                file,
                line: relocated(fixes, first_line, line),
                column,
                value,
                problem,
            },
            (_, e) => e,
        });
    }
    let Some(side) = side else {
        return Err(plan
            .err()
            .unwrap_or_else(|| super::read::format_err(&source, "the mapping was not applied")));
    };
    let ids_are_lines = side.ids_are_lines();
    let mut side = side.finish();
    if let Some(fixes) = found {
        relocate_side(&mut side, fixes, first_line, ids_are_lines);
    }
    Ok(Loaded {
        side,
        sha256: driven.sha256,
    })
}

/// Reserves the side's room for the rows the file likely holds, judged from the
/// first window's bytes per row (text plus a separator or offset per column), so
/// the columns are not copied over and over as they grow. A guess: too low only
/// means growing as without it; too high only leaves untouched capacity.
fn reserve_for_file(builder: &mut SideBuilder<'_, '_>, first: &Window, file_bytes: u64) {
    let Some((sample, _)) = first.first() else {
        return;
    };
    let (mut rows, mut bytes) = (0u64, 0u64);
    for (batch, _) in first {
        rows += batch.num_rows() as u64;
        bytes += (batch.num_rows() * batch.num_columns()) as u64;
        for column in batch.columns() {
            if let Some(text) = column.as_string_opt::<i32>() {
                bytes += text.value_data().len() as u64;
            }
        }
    }
    if rows == 0 || bytes == 0 {
        return;
    }
    // Never more rows than two bytes a row could hold.
    let estimate = (u128::from(file_bytes) * u128::from(rows) / u128::from(bytes))
        .min(u128::from(file_bytes / 2));
    let more = usize::try_from(estimate).unwrap_or(0);
    builder.reserve(more, sample);
}

/// Reads up to `window` batches, counting rows.
fn read_window(
    batches: &mut TextBatches,
    window: usize,
    rows: &mut usize,
) -> Result<Window, InputError> {
    let mut out = Vec::with_capacity(window);
    while out.len() < window {
        let Some(batch) = batches.next() else { break };
        let batch = batch?;
        out.push((batch, *rows as u64));
        *rows += out.last().map_or(0, |(b, _)| b.num_rows());
    }
    Ok(out)
}

/// The physical line of a row that was given the line `line` as if every record
/// took one line.
fn relocated(fixes: &LineFixes, first_line: u64, line: u64) -> u64 {
    let row = line - first_line;
    LineCursor::new(fixes, first_line, row).line(row)
}

/// Gives rows mapped one line per record their physical lines (and line-number
/// ids their lines).
fn relocate_side(side: &mut Side, fixes: &LineFixes, first_line: u64, ids_are_lines: bool) {
    let mut cursor = LineCursor::new(fixes, first_line, 0);
    for line in &mut side.line {
        *line = cursor.line(*line - first_line);
    }
    let mut cursor = LineCursor::new(fixes, first_line, 0);
    for reject in &mut side.rejects {
        reject.line = cursor.line(reject.line - first_line);
    }
    if ids_are_lines {
        let mut ids = TextColumn::with_capacity(side.line.len(), side.id.text_len() + 64);
        for &line in &side.line {
            ids.push_display(line);
        }
        side.id = ids;
    }
}
