//! A loaded side: typed, columnar records ready for matching.
//!
//! A [`Side`] is the contract between the input layer (which builds it from a
//! file and a mapping) and the matcher (which only reads it). Every column has
//! exactly `len()` entries; row `i` of every column is the same record.

use std::fmt;

use arrow_array::{Array, StringArray};

use crate::money::Currency;

/// Text values of one role, stored compactly: one buffer and offsets, no
/// allocation per record. A value is missing exactly when it is empty (`None`
/// where the file had an empty or null value), so no separate null flags are
/// kept: pushing `Some("")` reads back as `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextColumn {
    data: String,
    /// `offsets[i]..offsets[i + 1]` is row `i`'s text; always starts with 0.
    offsets: Offsets,
}

/// Offsets into a column's text: 4 bytes each while the text stays under 4 GiB
/// (every real column; half the memory of `usize`), 8 bytes beyond.
#[derive(Debug, Clone)]
enum Offsets {
    Narrow(Vec<u32>),
    Wide(Vec<usize>),
}

impl Offsets {
    fn with_capacity(n: usize) -> Self {
        Self::Narrow(Vec::with_capacity(n))
    }

    fn len(&self) -> usize {
        match self {
            Self::Narrow(v) => v.len(),
            Self::Wide(v) => v.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    fn get(&self, i: usize) -> usize {
        match self {
            Self::Narrow(v) => v[i] as usize,
            Self::Wide(v) => v[i],
        }
    }

    fn reserve(&mut self, n: usize) {
        match self {
            Self::Narrow(v) => v.reserve(n),
            Self::Wide(v) => v.reserve(n),
        }
    }

    /// Switches to 8-byte offsets when `max` does not fit in 4 bytes.
    fn make_room(&mut self, max: usize) {
        if let Self::Narrow(v) = self
            && u32::try_from(max).is_err()
        {
            *self = Self::Wide(v.iter().map(|&o| o as usize).collect());
        }
    }

    fn push(&mut self, o: usize) {
        self.make_room(o);
        match self {
            Self::Narrow(v) => v.push(u32::try_from(o).unwrap_or(u32::MAX)),
            Self::Wide(v) => v.push(o),
        }
    }

    /// Appends `offsets`, none of which exceeds `max`.
    fn extend(&mut self, max: usize, offsets: impl Iterator<Item = usize>) {
        self.make_room(max);
        match self {
            Self::Narrow(v) => v.extend(offsets.map(|o| u32::try_from(o).unwrap_or(u32::MAX))),
            Self::Wide(v) => v.extend(offsets),
        }
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl PartialEq for Offsets {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Narrow(a), Self::Narrow(b)) => a == b,
            (Self::Wide(a), Self::Wide(b)) => a == b,
            _ => self.len() == other.len() && self.iter().eq(other.iter()),
        }
    }
}

impl Eq for Offsets {}

impl Default for TextColumn {
    fn default() -> Self {
        Self::with_capacity(0, 0)
    }
}

impl TextColumn {
    /// An empty column with room for `rows` values of about `bytes` in total.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Offsets::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            data: String::with_capacity(bytes),
            offsets,
        }
    }

    /// Appends one value (`None` for a missing one; an empty one is missing too).
    pub fn push(&mut self, value: Option<&str>) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        if let Some(v) = value {
            self.data.push_str(v);
        }
        self.offsets.push(self.data.len());
    }

    /// Appends one value formatted from `value` (e.g. a line number used as id),
    /// writing straight into the column's buffer.
    pub fn push_display(&mut self, value: impl fmt::Display) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        // Writing to a String cannot fail.
        let _ = fmt::Write::write_fmt(&mut self.data, format_args!("{value}"));
        self.offsets.push(self.data.len());
    }

    /// Appends all rows of `other` after this column's rows.
    pub fn append(&mut self, other: &TextColumn) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let base = self.data.len();
        self.data.push_str(&other.data);
        self.offsets.extend(
            self.data.len(),
            other.offsets.iter().skip(1).map(|o| base + o),
        );
    }

    /// Reserves room for `rows` more values of about `bytes` in total.
    pub fn reserve(&mut self, rows: usize, bytes: usize) {
        self.data.reserve(bytes);
        self.offsets.reserve(rows);
    }

    /// Appends `n` missing values.
    pub fn extend_nulls(&mut self, n: usize) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let end = self.data.len();
        self.offsets.extend(end, std::iter::repeat_n(end, n));
    }

    /// Appends the rows of `array` except those in `skip` (sorted), an empty or
    /// null value as missing: what [`TextColumn::push`] would give row by row, with
    /// the text copied in one piece when no row is skipped.
    pub(crate) fn extend_from_array(&mut self, array: &StringArray, skip: &[usize]) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        let rows = array.len();
        let offsets = array.value_offsets();
        let nulls = array.nulls();
        // A null slot may still cover bytes (Arrow allows it); those must not be kept.
        let clean = nulls.is_none_or(|n| n.null_count() == 0)
            || (0..rows).all(|i| !array.is_null(i) || offsets[i] == offsets[i + 1]);
        let start = usize::try_from(offsets[0]).unwrap_or(0);
        let end = usize::try_from(offsets[rows]).unwrap_or(0);
        let whole = array
            .value_data()
            .get(start..end)
            .and_then(|b| std::str::from_utf8(b).ok());
        match whole {
            Some(text) if skip.is_empty() && clean => {
                let base = self.data.len();
                self.data.push_str(text);
                self.offsets.extend(
                    self.data.len(),
                    offsets[1..]
                        .iter()
                        .map(|&o| base + usize::try_from(o).unwrap_or(0) - start),
                );
            }
            _ => {
                let mut skip = skip.iter().peekable();
                for i in 0..rows {
                    if skip.next_if_eq(&&i).is_some() {
                        continue;
                    }
                    let value = (!array.is_null(i)).then(|| array.value(i));
                    self.push(value.filter(|v| !v.is_empty()));
                }
            }
        }
    }

    /// Total bytes of text held.
    pub fn text_len(&self) -> usize {
        self.data.len()
    }

    /// The value of row `i`, `None` when it was missing.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn get(&self, i: usize) -> Option<&str> {
        let text = &self.data[self.offsets.get(i)..self.offsets.get(i + 1)];
        (!text.is_empty()).then_some(text)
    }

    /// How many rows the column holds.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether the column holds no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> FromIterator<Option<&'a str>> for TextColumn {
    fn from_iter<I: IntoIterator<Item = Option<&'a str>>>(iter: I) -> Self {
        let mut col = TextColumn::with_capacity(0, 0);
        for v in iter {
            col.push(v);
        }
        col
    }
}

/// A row the input layer refused under `on_error = "quarantine"`, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// 1-based line (CSV/NDJSON) or row number (Parquet/Arrow) in the source.
    pub line: u64,
    /// The column at fault, when one is.
    pub column: Option<String>,
    /// The offending value, when there is one.
    pub value: Option<String>,
    /// A human sentence: what was expected.
    pub reason: String,
}

/// One side of a reconciliation, columnar. Built by the input layer.
#[derive(Debug, Clone, Default)]
pub struct Side {
    /// Where the records came from (a file name), used in every message.
    pub source: String,
    /// Record id per row: the mapped id column, or the row's line number.
    pub id: TextColumn,
    /// Amount per row in minor units of its currency (cents for USD, yen for JPY).
    pub amount: Vec<i64>,
    /// Currency per row.
    pub currency: Vec<Currency>,
    /// Date per row as days since 1970-01-01; `None` when not mapped or empty.
    pub date: Vec<Option<i32>>,
    /// Reference per row (invoice number, payment reference), raw as in the file.
    pub reference: TextColumn,
    /// Counterparty per row, raw.
    pub counterparty: TextColumn,
    /// Description / narrative per row, raw.
    pub description: TextColumn,
    /// 1-based source line (CSV, NDJSON) or row number (Parquet, Arrow) per row.
    pub line: Vec<u64>,
    /// Extra columns carried through to the output unchanged: (name, values).
    pub extra: Vec<(String, TextColumn)>,
    /// Rows refused under `on_error = "quarantine"`; they are not in the columns above.
    pub rejects: Vec<Reject>,
}

impl Side {
    /// How many accepted records the side holds (rejects excluded).
    pub fn len(&self) -> usize {
        self.amount.len()
    }

    /// Whether the side holds no accepted records.
    pub fn is_empty(&self) -> bool {
        self.amount.is_empty()
    }

    /// Appends `other`'s records and rejects after this side's: for a caller
    /// that builds sides in parts (the input layer joins its batches with its
    /// own builder, not this). A text column
    /// one side has and the other lacks (empty: not mapped there) is kept,
    /// missing for the other side's records; extra columns are joined by
    /// name, in this side's order, then `other`'s new ones.
    pub fn append(&mut self, other: &Side) {
        let (mine, theirs) = (self.len(), other.len());
        join_text(&mut self.id, mine, &other.id, theirs);
        join_text(&mut self.reference, mine, &other.reference, theirs);
        join_text(&mut self.counterparty, mine, &other.counterparty, theirs);
        join_text(&mut self.description, mine, &other.description, theirs);
        self.amount.extend_from_slice(&other.amount);
        self.currency.extend_from_slice(&other.currency);
        self.date.extend_from_slice(&other.date);
        self.line.extend_from_slice(&other.line);
        for (name, col) in &mut self.extra {
            match other.extra.iter().find(|(n, _)| n == name) {
                Some((_, theirs_col)) => join_text(col, mine, theirs_col, theirs),
                None => col.extend_nulls(theirs),
            }
        }
        for (name, theirs_col) in &other.extra {
            if !self.extra.iter().any(|(n, _)| n == name) {
                let mut col = TextColumn::default();
                join_text(&mut col, mine, theirs_col, theirs);
                self.extra.push((name.clone(), col));
            }
        }
        self.rejects.extend_from_slice(&other.rejects);
    }
}

/// Appends `theirs` (a column of `their_rows` records, or empty: not mapped)
/// to `mine` (of `my_rows` records, or empty), keeping rows aligned: the side
/// without the column gets missing values for its records.
fn join_text(mine: &mut TextColumn, my_rows: usize, theirs: &TextColumn, their_rows: usize) {
    match (mine.is_empty(), theirs.is_empty()) {
        (true, true) => {}
        (false, true) => mine.extend_nulls(their_rows),
        (true, false) => {
            mine.extend_nulls(my_rows);
            mine.append(theirs);
        }
        (false, false) => mine.append(theirs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_buffer::{NullBuffer, OffsetBuffer};
    use proptest::prelude::*;

    /// One-record sides with an optional reference and extras.
    fn one(id: &str, reference: Option<&str>, extra: &[(&str, &str)]) -> Side {
        let text = |v: &str| -> TextColumn { [Some(v)].into_iter().collect() };
        Side {
            id: text(id),
            amount: vec![1],
            currency: vec![Currency::parse("USD").unwrap()],
            date: vec![None],
            reference: reference.map(text).unwrap_or_default(),
            line: vec![2],
            extra: extra
                .iter()
                .map(|(n, v)| ((*n).to_owned(), text(v)))
                .collect(),
            ..Side::default()
        }
    }

    /// Sides whose columns differ (one lacks a role or an extra column)
    /// join with every value on its own record.
    #[test]
    fn append_keeps_records_aligned() {
        let mut side = one("A1", None, &[("cc", "X")]);
        side.append(&one("B1", Some("R"), &[("memo", "M"), ("cc", "Y")]));
        side.append(&one("C1", None, &[]));
        assert_eq!(side.len(), 3);
        fn col(c: &TextColumn) -> Vec<Option<&str>> {
            (0..3).map(|i| c.get(i)).collect()
        }
        assert_eq!(col(&side.id), [Some("A1"), Some("B1"), Some("C1")]);
        assert_eq!(col(&side.reference), [None, Some("R"), None]);
        let names: Vec<&str> = side.extra.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["cc", "memo"]);
        assert_eq!(col(&side.extra[0].1), [Some("X"), Some("Y"), None]);
        assert_eq!(col(&side.extra[1].1), [None, Some("M"), None]);
    }

    /// What pushing row by row gives: the reference for `extend_from_array`.
    fn pushed(array: &StringArray, skip: &[usize]) -> TextColumn {
        let mut col = TextColumn::default();
        col.push(Some("before"));
        for i in (0..array.len()).filter(|i| !skip.contains(i)) {
            let v = (!array.is_null(i)).then(|| array.value(i));
            col.push(v.filter(|v| !v.is_empty()));
        }
        col
    }

    fn extended(array: &StringArray, skip: &[usize]) -> TextColumn {
        let mut col = TextColumn::default();
        col.push(Some("before"));
        col.extend_from_array(array, skip);
        col
    }

    proptest! {
        #[test]
        fn extend_from_array_is_push_row_by_row(
            values in proptest::collection::vec(proptest::option::of("[a-zé]{0,4}"), 0..20),
            from in 0usize..5,
            skip_mask in proptest::collection::vec(any::<bool>(), 20),
        ) {
            let array = StringArray::from(values.clone());
            let from = from.min(values.len());
            let sliced = array.slice(from, values.len() - from);
            for a in [&array, &sliced] {
                prop_assert_eq!(extended(a, &[]), pushed(a, &[]));
                let skip: Vec<usize> = (0..a.len()).filter(|&i| skip_mask[i]).collect();
                prop_assert_eq!(extended(a, &skip), pushed(a, &skip));
            }
        }
    }

    #[test]
    fn offsets_widen_past_4_gib_and_keep_their_values() {
        let mut o = Offsets::with_capacity(2);
        o.push(0);
        o.push(7);
        let narrow = o.clone();
        assert!(matches!(o, Offsets::Narrow(_)));
        let big = u32::MAX as usize + 10;
        o.extend(big, [big - 1, big].into_iter());
        assert!(matches!(o, Offsets::Wide(_)));
        assert_eq!(o.iter().collect::<Vec<_>>(), [0, 7, big - 1, big]);
        o.push(big + 1);
        assert_eq!(o.get(4), big + 1);
        let mut wide = Offsets::Wide(vec![0]);
        wide.push(7);
        assert_eq!(wide, narrow);
    }

    #[test]
    fn extend_from_array_drops_bytes_under_nulls() {
        // Row 1 is null yet covers "zz": allowed by Arrow, never kept.
        let array = StringArray::new(
            OffsetBuffer::new(vec![0, 1, 3, 3, 4].into()),
            b"azzb".to_vec().into(),
            Some(NullBuffer::from(vec![true, false, true, true])),
        );
        let col = extended(&array, &[]);
        assert_eq!(col, pushed(&array, &[]));
        assert_eq!(col.text_len(), "before".len() + 2);
        let mut nulls = TextColumn::default();
        nulls.extend_nulls(2);
        assert_eq!(nulls.get(1), None);
        assert_eq!(nulls.len(), 2);
    }

    #[test]
    fn text_column_push_and_append() {
        let mut a: TextColumn = [Some("x"), None, Some("")].into_iter().collect();
        let mut b = TextColumn::default();
        b.push_display(42u64);
        b.push(Some("yz"));
        a.append(&b);
        let got: Vec<_> = (0..a.len()).map(|i| a.get(i)).collect();
        // An empty value is a missing one.
        assert_eq!(got, [Some("x"), None, None, Some("42"), Some("yz")]);
        assert_eq!(a.text_len(), 5);
    }
}
