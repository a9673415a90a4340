//! Mapping text batches to a [`Side`]: resolving a [`SideMapping`] against a
//! schema ([`Plan`]), parsing each batch's amounts, currencies and dates in
//! parallel ([`Part`]), and joining the parts in file order ([`SideBuilder`]),
//! copying each text column straight from the batch.

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Schema};
use rayon::prelude::*;

use super::cast::{ValueKind, significant_digits};
use super::read::{format_err, unreadable_type};
use super::{LineCursor, LineFixes};
use crate::date::DateFormat;
use crate::error::{InputError, ValueProblem};
use crate::mapping::{
    AmountStyle, AmountUnit, CurrencySource, MappingError, OnError, SideMapping, same_name,
};
use crate::money::{Currency, parse_amount, parse_minor_units, trim};
use crate::rules::{Role, RoleSet};
use crate::side::{Reject, Side, TextColumn};

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

/// A mapping resolved against one table's schema. A text role left out of the
/// roles to load has no column here (its mapped column was still found), so it
/// is neither read nor built: its [`TextColumn`] stays empty.
pub(super) struct Plan<'a> {
    source: &'a str,
    pub(super) names: Vec<&'a str>,
    pub(super) id: Option<usize>,
    amount: AmountCols,
    currency: CurrencyCol,
    date: Option<usize>,
    date_format: DateFormat,
    /// The date column was a date or timestamp: its text starts with the ISO
    /// date, read with this format whatever `date_format` says.
    typed_date: Option<DateFormat>,
    /// What each column was before it became text ([`ValueKind`]).
    kinds: Vec<Option<ValueKind>>,
    pub(super) reference: Option<usize>,
    pub(super) counterparty: Option<usize>,
    pub(super) description: Option<usize>,
    pub(super) extra: Vec<usize>,
    /// The roles built; a text role outside it is left empty, not filled with nulls.
    roles: RoleSet,
    debit_values: &'a [String],
    credit_values: &'a [String],
    amount_unit: AmountUnit,
    on_error: OnError,
}

/// How a date or timestamp column's text starts (arrow-cast's form).
const ISO_DATE: &str = "%Y-%m-%d";
/// The length of [`ISO_DATE`]'s text.
const ISO_DATE_LEN: usize = "2026-03-01".len();

/// The date of a date or timestamp column's text: its first
/// [`ISO_DATE_LEN`] bytes where a time follows them (`T`), else the whole
/// text (which the date format then takes only if it is a date alone).
fn typed_date_part(text: &str) -> &str {
    match (text.get(..ISO_DATE_LEN), text.as_bytes().get(ISO_DATE_LEN)) {
        (Some(date), Some(b'T')) => date,
        _ => text,
    }
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
    /// Resolves every column `mapping` names (a missing one is an error whatever
    /// `roles` says), keeping the text roles outside `roles` out of the plan.
    /// `delimiter` is the one a CSV file was read with (`None` for the other
    /// formats), for the missing column's message.
    pub(super) fn new(
        source: &'a str,
        schema: &'a Schema,
        delimiter: Option<u8>,
        mapping: &'a SideMapping,
        roles: RoleSet,
    ) -> Result<Self, InputError> {
        let mapping_err = |e| InputError::Mapping {
            file: source.to_owned(),
            source: e,
        };
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        // Positions of the columns named `column`: exactly, else ignoring case
        // and surrounding spaces.
        let positions = |column: &str| -> Vec<usize> {
            let exact: Vec<usize> = (0..names.len()).filter(|&i| names[i] == column).collect();
            if !exact.is_empty() {
                return exact;
            }
            (0..names.len())
                .filter(|&i| same_name(names[i], column))
                .collect()
        };
        let find = |column: &str| -> Result<usize, InputError> {
            let found = match positions(column).as_slice() {
                [] => Err(InputError::MissingColumn {
                    file: source.to_owned(),
                    column: column.to_owned(),
                    available: names.iter().map(|n| (*n).to_owned()).collect(),
                    delimiter: delimiter.map(char::from),
                }),
                [i] => Ok(*i),
                many => Err(InputError::AmbiguousColumn {
                    file: source.to_owned(),
                    column: column.to_owned(),
                    matches: many.iter().map(|&i| (i + 1, names[i].to_owned())).collect(),
                }),
            };
            found.and_then(|i| match unreadable_type(schema.field(i)) {
                Some(data_type) => Err(InputError::UnreadableColumn {
                    file: source.to_owned(),
                    column: names[i].to_owned(),
                    data_type,
                }),
                None => Ok(i),
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
        for (i, field) in schema.fields().iter().enumerate() {
            if field.data_type() != &DataType::Utf8 {
                return Err(format_err(
                    source,
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
        let kinds: Vec<Option<ValueKind>> = schema
            .fields()
            .iter()
            .map(|f| ValueKind::of_field(f))
            .collect();
        let typed_date = match date.and_then(|c| kinds[c]) {
            Some(ValueKind::Temporal) => Some(DateFormat::parse(ISO_DATE).map_err(|e| {
                mapping_err(MappingError::DateFormat {
                    format: ISO_DATE.to_owned(),
                    reason: e.to_string(),
                })
            })?),
            _ => None,
        };
        // Found (or refused) first, then dropped when the role is not loaded.
        let text = |column: &Option<String>, role: Role| -> Result<Option<usize>, InputError> {
            Ok(opt(column)?.filter(|_| roles.contains(role)))
        };
        let reference = text(&mapping.reference, Role::Reference)?;
        let counterparty = text(&mapping.counterparty, Role::Counterparty)?;
        let description = text(&mapping.description, Role::Description)?;
        let extra = mapping
            .extra
            .iter()
            .map(|c| find(c))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            source,
            names,
            id,
            amount,
            currency,
            date,
            date_format,
            typed_date,
            kinds,
            reference,
            counterparty,
            description,
            extra,
            roles,
            debit_values: &mapping.debit_values,
            credit_values: &mapping.credit_values,
            amount_unit: mapping.amount_unit,
            on_error: mapping.on_error,
        })
    }

    /// The schema positions the mapping reads, sorted.
    pub(super) fn columns(&self) -> Vec<usize> {
        let mut cols: Vec<usize> = [
            self.id,
            self.date,
            self.reference,
            self.counterparty,
            self.description,
        ]
        .into_iter()
        .flatten()
        .chain(self.extra.iter().copied())
        .collect();
        match self.amount {
            AmountCols::Signed(c) => cols.push(c),
            AmountCols::DebitCredit { debit, credit } => cols.extend([debit, credit]),
            AmountCols::Directed { amount, direction } => cols.extend([amount, direction]),
        }
        if let CurrencyCol::Column(c) = self.currency {
            cols.push(c);
        }
        cols.sort_unstable();
        cols.dedup();
        cols
    }

    /// Re-aims the plan at batches holding only `columns` (from [`Plan::columns`]),
    /// in that order.
    pub(super) fn project(&mut self, columns: &[usize]) {
        let at = |c: usize| columns.binary_search(&c).unwrap_or(c);
        let opt = |c: Option<usize>| c.map(at);
        self.id = opt(self.id);
        self.date = opt(self.date);
        self.reference = opt(self.reference);
        self.counterparty = opt(self.counterparty);
        self.description = opt(self.description);
        for c in &mut self.extra {
            *c = at(*c);
        }
        self.amount = match self.amount {
            AmountCols::Signed(c) => AmountCols::Signed(at(c)),
            AmountCols::DebitCredit { debit, credit } => AmountCols::DebitCredit {
                debit: at(debit),
                credit: at(credit),
            },
            AmountCols::Directed { amount, direction } => AmountCols::Directed {
                amount: at(amount),
                direction: at(direction),
            },
        };
        if let CurrencyCol::Column(c) = self.currency {
            self.currency = CurrencyCol::Column(at(c));
        }
        self.names = columns.iter().map(|&c| self.names[c]).collect();
        self.kinds = columns.iter().map(|&c| self.kinds[c]).collect();
    }

    /// Parses one batch whose first row is table row `first_row`: its typed values,
    /// lines and rejects. Its text is appended later, straight from the batch.
    fn map_batch(
        &self,
        batch: &RecordBatch,
        first_row: u64,
        mut lines: LineCursor<'_>,
    ) -> Result<Part, InputError> {
        let cols: Vec<&StringArray> = batch
            .columns()
            .iter()
            .map(|c| c.as_string::<i32>())
            .collect();
        let rows = batch.num_rows();
        let mut part = Part {
            amount: Vec::with_capacity(rows),
            currency: Vec::with_capacity(rows),
            date: Vec::with_capacity(rows),
            line: Vec::with_capacity(rows),
            rejects: Vec::new(),
            refused: Vec::new(),
            line_ids: self
                .id
                .is_none()
                .then(|| TextColumn::with_capacity(rows, rows * 8)),
        };
        let cell = |col: usize, row: usize| -> Option<&str> {
            let a = cols[col];
            if a.is_null(row) {
                None
            } else {
                Some(a.value(row))
            }
        };
        // The last date text and its day: exports are usually in date order,
        // so most rows repeat the row before's date and skip its parsing.
        let mut last_date = None;
        for row in 0..rows {
            let line = lines.line(first_row + row as u64);
            match self.parse_row(&cell, row, &mut last_date) {
                Ok((amount, currency, date)) => {
                    if let Some(ids) = &mut part.line_ids {
                        ids.push_display(line);
                    }
                    part.amount.push(amount);
                    part.currency.push(currency);
                    part.date.push(date);
                    part.line.push(line);
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
                        OnError::Quarantine => {
                            part.refused.push(row);
                            part.rejects.push(Reject {
                                line,
                                // The value is whole in its own column.
                                reason: format!(
                                    "{} {}",
                                    crate::error::shown(&fault.value),
                                    fault.problem
                                ),
                                column: Some(column),
                                value: Some(fault.value),
                            });
                        }
                    }
                }
            }
        }
        Ok(part)
    }

    /// Reads one row's typed values, or the first fault. `last_date` is the
    /// last date text parsed and its day, reused when this row's is the same.
    fn parse_row<'b>(
        &self,
        cell: &impl Fn(usize, usize) -> Option<&'b str>,
        row: usize,
        last_date: &mut Option<(&'b str, i32)>,
    ) -> Result<(i64, Currency, Option<i32>), Fault> {
        let text = |c: usize| cell(c, row).unwrap_or("");
        if let Some(c) = self.id
            && trim(text(c)).is_empty()
        {
            return Err(Fault::new(c, text(c), ValueProblem::EmptyId));
        }
        let currency = match self.currency {
            CurrencyCol::Fixed(cur) => cur,
            CurrencyCol::Column(c) => Currency::parse(text(c))
                .ok_or_else(|| Fault::new(c, text(c), ValueProblem::Currency))?,
        };
        // A float column's value is taken only where it is surely the
        // decimal its text shows.
        let parse = |c: usize, t: &str| -> Result<i64, Fault> {
            if let Some(ValueKind::Float { name, digits }) = self.kinds[c]
                && significant_digits(t) > usize::from(digits)
            {
                return Err(Fault::new(
                    c,
                    t,
                    ValueProblem::InexactFloat { kind: name, digits },
                ));
            }
            match self.amount_unit {
                AmountUnit::Major => parse_amount(t, currency),
                AmountUnit::Minor => parse_minor_units(t),
            }
            .map_err(|e| Fault::new(c, t, e))
        };
        let amount = match self.amount {
            AmountCols::Signed(c) => parse(c, text(c))?,
            AmountCols::DebitCredit { debit, credit } => {
                let part = |c: usize| -> Result<Option<i64>, Fault> {
                    let t = text(c);
                    if trim(t).is_empty() {
                        return Ok(None);
                    }
                    // Within ±MAX_MINOR (`parse_amount`): `abs` cannot overflow.
                    Ok(Some(parse(c, t)?.abs()))
                };
                match (part(debit)?, part(credit)?) {
                    (None, None) => {
                        return Err(Fault::new(debit, "", ValueProblem::NoDebitOrCredit));
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
                // Within ±MAX_MINOR (`parse_amount`): `abs` cannot overflow.
                let v = parse(amount, t)?.abs();
                // Trimmed once per row (a trimmed name trims in O(1)).
                let d = text(direction).trim();
                let is = |values: &[String]| values.iter().any(|x| same_name(x, d));
                if is(self.debit_values) {
                    -v
                } else if is(self.credit_values) {
                    v
                } else {
                    let expected = self
                        .debit_values
                        .iter()
                        .chain(self.credit_values)
                        .map(|v| if trim(v).is_empty() { "(blank)" } else { v })
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
                match *last_date {
                    Some((seen, day)) if seen == t => Some(day),
                    _ if trim(t).is_empty() => None,
                    _ => {
                        let day = match &self.typed_date {
                            // `2026-03-01`, `2026-03-01T09:30:00+01:00`: the date
                            // (and nothing else where a time does not follow).
                            // Arrow writes a year past 9999 or before 0 with a
                            // sign (`+10183-09-21`): said so, not as a format.
                            Some(iso) => iso.parse_days(typed_date_part(t)).map_err(|e| {
                                if t.starts_with(['+', '-']) {
                                    Fault::new(c, t, ValueProblem::YearOutOfRange)
                                } else {
                                    Fault::new(c, t, e)
                                }
                            }),
                            None => self
                                .date_format
                                .parse_days(t)
                                .map_err(|e| Fault::new(c, t, e)),
                        }?;
                        *last_date = Some((t, day));
                        Some(day)
                    }
                }
            }
        };
        Ok((amount, currency, date))
    }
}

/// One batch's typed values, mapped on its own (in parallel with other batches).
pub(super) struct Part {
    amount: Vec<i64>,
    currency: Vec<Currency>,
    date: Vec<Option<i32>>,
    line: Vec<u64>,
    rejects: Vec<Reject>,
    /// The batch rows refused (in order), whose text is left out.
    refused: Vec<usize>,
    /// Line numbers as ids, when no id column is mapped.
    line_ids: Option<TextColumn>,
}

/// The optional text roles' columns of `side`, each with the batch column the
/// plan maps to it and its role.
fn text_roles<'s>(
    side: &'s mut Side,
    plan: &Plan<'_>,
) -> [(&'s mut TextColumn, Option<usize>, Role); 3] {
    [
        (&mut side.reference, plan.reference, Role::Reference),
        (
            &mut side.counterparty,
            plan.counterparty,
            Role::Counterparty,
        ),
        (&mut side.description, plan.description, Role::Description),
    ]
}

/// A side being joined from mapped batches in file order.
pub(super) struct SideBuilder<'p, 'a> {
    plan: &'p Plan<'a>,
    side: Side,
}

impl<'p, 'a> SideBuilder<'p, 'a> {
    /// An empty side of `plan`'s source and extra columns.
    pub(super) fn new(plan: &'p Plan<'a>) -> Self {
        let side = Side {
            source: plan.source.to_owned(),
            extra: plan
                .extra
                .iter()
                .map(|&i| (plan.names[i].to_owned(), TextColumn::default()))
                .collect(),
            ..Side::default()
        };
        Self { plan, side }
    }

    /// Reserves room for `rows` more rows and, per text column, the share of
    /// `bytes` that `sample`'s columns suggest.
    pub(super) fn reserve(&mut self, rows: usize, sample: &RecordBatch) {
        let plan = self.plan;
        let sample_rows = sample.num_rows().max(1);
        let bytes = |c: usize| -> usize {
            let per_row = sample.column(c).as_string::<i32>().value_data().len() / sample_rows;
            rows.saturating_mul(per_row + 1)
        };
        let side = &mut self.side;
        side.amount.reserve(rows);
        side.currency.reserve(rows);
        side.date.reserve(rows);
        side.line.reserve(rows);
        side.id.reserve(rows, plan.id.map_or(0, bytes));
        let roles = text_roles(side, plan);
        for (col, c, role) in roles {
            if plan.roles.contains(role) {
                col.reserve(rows, c.map_or(0, bytes));
            }
        }
        for ((_, col), &c) in side.extra.iter_mut().zip(&plan.extra) {
            col.reserve(rows, bytes(c));
        }
    }

    /// Maps a window of batches in parallel and appends them in order.
    ///
    /// # Errors
    /// Under `on_error = "fail"`, the first bad row's [`InputError::BadValue`].
    pub(super) fn add_window(
        &mut self,
        window: &[(RecordBatch, u64)],
        fixes: &LineFixes,
        first_line: u64,
    ) -> Result<(), InputError> {
        let plan = self.plan;
        let parts: Vec<Result<Part, InputError>> = window
            .par_iter()
            .map(|(batch, first_row)| {
                let lines = LineCursor::new(fixes, first_line, *first_row);
                plan.map_batch(batch, *first_row, lines)
            })
            .collect();
        for (part, (batch, _)) in parts.into_iter().zip(window) {
            self.append(batch, part?);
        }
        Ok(())
    }

    /// Appends a mapped batch: its typed values, then each text column copied
    /// from the batch without its refused rows.
    fn append(&mut self, batch: &RecordBatch, part: Part) {
        let plan = self.plan;
        let side = &mut self.side;
        let accepted = part.amount.len();
        let text = |c: usize| batch.column(c).as_string::<i32>();
        side.amount.extend_from_slice(&part.amount);
        side.currency.extend_from_slice(&part.currency);
        side.date.extend_from_slice(&part.date);
        side.line.extend_from_slice(&part.line);
        side.rejects.extend(part.rejects);
        match (&part.line_ids, plan.id) {
            (Some(ids), _) => side.id.append(ids),
            (None, Some(c)) => side.id.extend_from_array(text(c), &part.refused),
            (None, None) => side.id.extend_nulls(accepted),
        }
        let roles = text_roles(side, plan);
        for (col, c, role) in roles {
            match c {
                Some(c) => col.extend_from_array(text(c), &part.refused),
                None if plan.roles.contains(role) => col.extend_nulls(accepted),
                // Not loaded: left empty, which a side allows for its text roles.
                None => {}
            }
        }
        for ((_, col), &c) in side.extra.iter_mut().zip(&plan.extra) {
            col.extend_from_array(text(c), &part.refused);
        }
    }

    /// Whether ids are line numbers (no id column is mapped).
    pub(super) fn ids_are_lines(&self) -> bool {
        self.plan.id.is_none()
    }

    /// The side joined so far.
    pub(super) fn finish(self) -> Side {
        if !self.side.rejects.is_empty() {
            tracing::warn!(file = %self.side.source, rejects = self.side.rejects.len(), "rows quarantined");
        }
        self.side
    }
}
