//! A typed column of a Parquet, Arrow or JSON file as text, value by value.
//!
//! Mapping reads text only. Most types become text through arrow-cast; a few
//! are read here, because how they become text decides what a side holds:
//! - floats as the shortest decimal that reads back as the same float, never
//!   in exponent form (`1e16` is `10000000000000000`), so an amount column
//!   can tell an exact decimal from a float's noise ([`ValueKind::Float`]);
//! - binary values checked as UTF-8, a value that is not refused at its row
//!   (arrow-cast would make it null: an empty cell, silently);
//! - any other value arrow-cast cannot turn into text (a date outside its
//!   calendar, say) refused at its row and column, not for the whole column.
//!
//! A field keeps what it was in the text schema's metadata ([`META_KIND`]),
//! so mapping can read a float amount strictly and a typed date by its
//! calendar date whatever the `date_format`.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float16Type, Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, StringArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, Field};

/// Field metadata key of a text column read from a typed one: its
/// [`ValueKind`] name. Kept in stored IPC files, like `recon.unreadable_type`.
pub(super) const META_KIND: &str = "recon.kind";

/// What a column was before it became text, where mapping reads it
/// differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueKind {
    /// A floating-point column: its values are exact decimals only up to
    /// `digits` significant digits (15 for float64, 6 for float32, 3 for
    /// float16: any decimal that short survives the trip through the float
    /// and back as its shortest text).
    Float {
        /// The Arrow type's name, for messages.
        name: &'static str,
        /// Significant digits the float type carries exactly.
        digits: u8,
    },
    /// A date or timestamp column: its text starts with the ISO calendar date
    /// (a timestamp with a time zone is written in that zone's local time).
    Temporal,
}

impl ValueKind {
    /// The kind of a typed column, `None` for text and other types.
    pub(super) fn of(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            // Encoded columns are what their values are.
            DataType::Dictionary(_, values) => return Self::of(values),
            DataType::RunEndEncoded(_, values) => return Self::of(values.data_type()),
            DataType::Float64 => Self::ALL[0],
            DataType::Float32 => Self::ALL[1],
            DataType::Float16 => Self::ALL[2],
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => Self::Temporal,
            _ => return None,
        })
    }

    /// The name kept in [`META_KIND`].
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Float { name, .. } => name,
            Self::Temporal => "temporal",
        }
    }

    /// Every kind, one of each.
    const ALL: [Self; 4] = [
        Self::Float {
            name: "float64",
            digits: 15,
        },
        Self::Float {
            name: "float32",
            digits: 6,
        },
        Self::Float {
            name: "float16",
            digits: 3,
        },
        Self::Temporal,
    ];

    /// The kind a text field was read from, from its [`META_KIND`] mark.
    pub(crate) fn of_field(field: &Field) -> Option<Self> {
        let name = field.metadata().get(META_KIND)?;
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// The number of significant digits in a decimal's text: from the first
/// non-zero digit to the last, sign, point and other characters aside
/// (`10000000000000000` has 1, `0.0250` has 2, `1234567.875` has 10).
pub(crate) fn significant_digits(text: &str) -> usize {
    let digits = text.as_bytes().iter().filter(|b| b.is_ascii_digit());
    let mut count = 0usize;
    let mut pending_zeros = 0usize;
    for &d in digits {
        if d == b'0' {
            if count > 0 {
                pending_zeros += 1;
            }
        } else {
            count += pending_zeros + 1;
            pending_zeros = 0;
        }
    }
    count
}

/// A value that has no text form: its 0-based row in the batch, the value as
/// far as it can be shown, and why.
#[derive(Debug)]
pub(super) struct BadCell {
    pub(super) row: usize,
    pub(super) value: String,
    pub(super) problem: CellProblem,
}

/// Why a [`BadCell`] has no text form.
#[derive(Debug)]
pub(super) enum CellProblem {
    /// A binary value that is not UTF-8 (`value` escapes its bytes).
    NotUtf8,
    /// arrow-cast's reason.
    Cast(String),
    /// No value of the column can be written (a time zone arrow does not
    /// know, say): the reason, for the whole column (`row` is 0).
    Column(String),
}

/// `column` as text, nulls kept.
///
/// # Errors
/// The first value that has no text form.
pub(super) fn column_text(column: &ArrayRef) -> Result<ArrayRef, BadCell> {
    // Each value written straight into the array's buffer: no string a value.
    let floats = |text: &mut dyn FnMut(usize, &mut StringBuilder)| -> ArrayRef {
        let mut out = StringBuilder::with_capacity(column.len(), column.len() * 8);
        for i in 0..column.len() {
            if column.is_valid(i) {
                text(i, &mut out);
                out.append_value("");
            } else {
                out.append_null();
            }
        }
        Arc::new(out.finish())
    };
    match column.data_type() {
        DataType::Utf8 => Ok(Arc::clone(column)),
        // `Display` of a float is the shortest text that reads back as it,
        // without an exponent.
        DataType::Float64 => {
            let a = column.as_primitive::<Float64Type>();
            Ok(floats(&mut |i, out| {
                let _ = write!(out, "{}", a.value(i));
            }))
        }
        DataType::Float32 => {
            let a = column.as_primitive::<Float32Type>();
            Ok(floats(&mut |i, out| {
                let _ = write!(out, "{}", a.value(i));
            }))
        }
        DataType::Float16 => {
            let a = column.as_primitive::<Float16Type>();
            Ok(floats(&mut |i, out| shortest_f16(a.value(i), out)))
        }
        // Encoded columns: their values decoded first, then read as above
        // (a dictionary of floats is still floats).
        DataType::Dictionary(_, values) => decoded(column, values),
        DataType::RunEndEncoded(_, values) => decoded(column, values.data_type()),
        DataType::Binary => binary_text(column.as_binary::<i32>().iter()),
        DataType::LargeBinary => binary_text(column.as_binary::<i64>().iter()),
        DataType::BinaryView => binary_text(column.as_binary_view().iter()),
        _ => cast_text(column),
    }
}

/// An encoded column as text through its decoded values.
fn decoded(column: &ArrayRef, values: &DataType) -> Result<ArrayRef, BadCell> {
    match arrow_cast::cast(column, values) {
        Ok(plain) => column_text(&plain),
        Err(e) => Err(BadCell {
            row: 0,
            value: String::new(),
            problem: CellProblem::Column(e.to_string()),
        }),
    }
}

/// The shortest decimal that reads back as the same half-precision float
/// (`1.23`, not the `1.2304688` of its `f32`), without an exponent.
fn shortest_f16(value: half::f16, out: &mut StringBuilder) {
    let wide = value.to_f32();
    if !wide.is_finite() {
        let _ = write!(out, "{wide}");
        return;
    }
    // An f16 needs at most 5 significant decimal digits to be told apart.
    for digits in 1..=5 {
        let text = format!("{:.*e}", digits - 1, wide);
        if let Ok(back) = text.parse::<f64>()
            && half::f16::from_f64(back) == value
        {
            // At most 5 digits: `f64`'s shortest text is those digits, plain.
            let _ = write!(out, "{back}");
            return;
        }
    }
    let _ = write!(out, "{wide}");
}

/// Binary values as text, each checked as UTF-8.
fn binary_text<'a>(values: impl Iterator<Item = Option<&'a [u8]>>) -> Result<ArrayRef, BadCell> {
    let text = values
        .enumerate()
        .map(|(row, v)| {
            v.map(|bytes| {
                std::str::from_utf8(bytes).map_err(|_| BadCell {
                    row,
                    value: super::read::escape_invalid(bytes),
                    problem: CellProblem::NotUtf8,
                })
            })
            .transpose()
        })
        .collect::<Result<StringArray, _>>()?;
    Ok(Arc::new(text))
}

/// Any other type through arrow-cast, which either fails as a whole or (in
/// its safe mode) leaves a value it cannot convert null: either way the
/// first such value is found and named.
fn cast_text(column: &ArrayRef) -> Result<ArrayRef, BadCell> {
    let options = arrow_cast::CastOptions {
        safe: true,
        ..Default::default()
    };
    let lost = |text: &ArrayRef| (0..column.len()).find(|&i| column.is_valid(i) && text.is_null(i));
    let failed = match arrow_cast::cast_with_options(column, &DataType::Utf8, &options) {
        Ok(text) => match lost(&text) {
            None => return Ok(text),
            Some(row) => (row, None),
        },
        Err(e) => match first_unformattable(column) {
            Some(row) => (row, Some(e.to_string())),
            // No one value is at fault: the column as a whole cannot be written.
            None => {
                return Err(BadCell {
                    row: 0,
                    value: String::new(),
                    problem: CellProblem::Column(e.to_string()),
                });
            }
        },
    };
    let (row, reason) = failed;
    let value = raw_value(column, row);
    let reason =
        reason.unwrap_or_else(|| format!("a {} value that has no text form", column.data_type()));
    Err(BadCell {
        row,
        value,
        problem: CellProblem::Cast(reason),
    })
}

/// The first row arrow's formatter cannot write; `None` when it cannot
/// write any (it refuses the column's type itself).
fn first_unformattable(column: &ArrayRef) -> Option<usize> {
    let formatter = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default()).ok()?;
    (0..column.len()).find(|&i| column.is_valid(i) && formatter.value(i).try_to_string().is_err())
}

/// Row `row`'s value as far as it can be shown: its storage as a number (a
/// date's day count, a timestamp's ticks) where it has one, else nothing.
fn raw_value(column: &ArrayRef, row: usize) -> String {
    let one = column.slice(row, 1);
    let storage = match one.data_type() {
        DataType::Date32 | DataType::Time32(_) => DataType::Int32,
        DataType::Date64 | DataType::Time64(_) | DataType::Timestamp(_, _) => DataType::Int64,
        DataType::Duration(_) => DataType::Int64,
        _ => return String::new(),
    };
    let Ok(number) = arrow_cast::cast(&one, &storage) else {
        return String::new();
    };
    arrow_cast::cast(&number, &DataType::Utf8)
        .ok()
        .and_then(|t| t.as_string_opt::<i32>().map(|s| s.value(0).to_owned()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_digits_count_from_first_to_last_non_zero() {
        for (text, n) in [
            ("0", 0),
            ("-0", 0),
            ("10000000000000000", 1),
            ("0.0250", 2),
            ("1234567.875", 10),
            ("0.30000000000000004", 17),
            ("-99999.99", 7),
            ("100.01", 5),
        ] {
            assert_eq!(significant_digits(text), n, "{text}");
        }
    }

    #[test]
    fn floats_read_as_their_shortest_decimal_without_exponent() {
        let column: ArrayRef = Arc::new(arrow_array::Float64Array::from(vec![
            Some(1e16),
            None,
            Some(0.1 + 0.2),
            Some(-12.5),
            Some(f64::NAN),
        ]));
        let text = column_text(&column).expect("text");
        let text = text.as_string::<i32>();
        assert_eq!(text.value(0), "10000000000000000");
        assert!(text.is_null(1));
        assert_eq!(text.value(2), "0.30000000000000004");
        assert_eq!(text.value(3), "-12.5");
        assert_eq!(text.value(4), "NaN");
    }

    #[test]
    fn binary_that_is_not_utf8_is_refused_at_its_row() {
        let column: ArrayRef = Arc::new(arrow_array::BinaryArray::from(vec![
            Some(&b"cafe"[..]),
            None,
            Some(&b"caf\xe9"[..]),
        ]));
        let bad = column_text(&column).expect_err("refused");
        assert_eq!(bad.row, 2);
        assert_eq!(bad.value, "caf\\xe9");
        assert!(matches!(bad.problem, CellProblem::NotUtf8));
    }

    #[test]
    fn a_date_without_text_form_is_refused_at_its_row() {
        let column: ArrayRef = Arc::new(arrow_array::Date32Array::from(vec![
            Some(20_000),
            Some(i32::MIN),
        ]));
        let bad = column_text(&column).expect_err("refused");
        assert_eq!(bad.row, 1);
        assert_eq!(bad.value, i32::MIN.to_string());
    }

    #[test]
    fn half_floats_read_as_their_own_shortest_decimal() {
        let column: ArrayRef = Arc::new(arrow_array::Float16Array::from(vec![
            half::f16::from_f32(1.23),
            half::f16::from_f32(0.1),
            half::f16::from_f32(-2048.0),
            half::f16::from_f32(65504.0),
        ]));
        let text = column_text(&column).expect("text");
        let text = text.as_string::<i32>();
        let values: Vec<&str> = (0..4).map(|i| text.value(i)).collect();
        assert_eq!(values, ["1.23", "0.1", "-2048", "65500"]);
    }

    #[test]
    fn dictionary_floats_are_floats() {
        let dict: arrow_array::DictionaryArray<arrow_array::types::Int32Type> =
            vec!["a", "b", "a"].into_iter().collect();
        let values: ArrayRef = Arc::new(arrow_array::Float64Array::from(vec![1e16, 0.5]));
        let column: ArrayRef = Arc::new(dict.with_values(values));
        assert!(matches!(
            ValueKind::of(column.data_type()),
            Some(ValueKind::Float { digits: 15, .. })
        ));
        let text = column_text(&column).expect("text");
        let text = text.as_string::<i32>();
        assert_eq!(text.value(0), "10000000000000000");
        assert_eq!(text.value(1), "0.5");
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for t in [
            DataType::Float64,
            DataType::Float32,
            DataType::Float16,
            DataType::Date64,
        ] {
            let kind = ValueKind::of(&t).expect("kind");
            let field = Field::new("x", DataType::Utf8, true).with_metadata(
                std::collections::HashMap::from([(META_KIND.to_owned(), kind.name().to_owned())]),
            );
            assert_eq!(ValueKind::of_field(&field), Some(kind));
        }
        assert_eq!(ValueKind::of(&DataType::Int64), None);
    }
}
