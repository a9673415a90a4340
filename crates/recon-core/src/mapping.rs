//! How one side's file maps to record roles: the `[left]` / `[right]` tables of
//! the rules file.
//!
//! [`SideMapping`] is plain configuration, deserialized once; [`SideMapping::amount_style`]
//! and [`SideMapping::currency_source`] turn its flat keys into the one style the
//! loader uses, rejecting contradictory combinations up front.

use serde::Deserialize;

use crate::input::Format;

/// What to do with a row whose amount, currency, date or id cannot be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop at the first bad row with an error naming file, line, column and value.
    #[default]
    Fail,
    /// Keep loading; bad rows go to [`crate::side::Side::rejects`] with their reason.
    Quarantine,
}

/// What an amount column's numbers count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmountUnit {
    /// The currency's major unit, as people write amounts: `12.30` USD.
    #[default]
    Major,
    /// Whole minor units, as payment processors' APIs export them: `1230`
    /// for 12.30 USD, `1230` for 1230 JPY (see
    /// [`crate::money::parse_minor_units`]).
    Minor,
}

/// One side's columns and how to read them. Every role names a column of the file
/// (the header name, or for files without a header the 1-based position as text, e.g. `"3"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SideMapping {
    /// File format; by default taken from the file's extension.
    #[serde(default)]
    pub format: Option<Format>,
    /// CSV field delimiter: one ASCII character, not a line break or `"`.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// Whether the CSV's first line names the columns.
    #[serde(default = "default_true")]
    pub has_header: bool,
    /// The CSV's character encoding; UTF-8 by default.
    #[serde(default)]
    pub encoding: TextEncoding,
    /// Record id column; by default the row's line number.
    #[serde(default)]
    pub id: Option<String>,
    /// Signed amount column (alone, or with `direction`).
    #[serde(default)]
    pub amount: Option<String>,
    /// Debit column (money out, made negative); used together with `credit`.
    #[serde(default)]
    pub debit: Option<String>,
    /// Credit column (money in, positive); used together with `debit`.
    #[serde(default)]
    pub credit: Option<String>,
    /// Debit/credit indicator column; used together with `amount`.
    #[serde(default)]
    pub direction: Option<String>,
    /// Indicator values meaning debit (ASCII case-insensitive, surrounding
    /// spaces ignored); set only with `direction`, sharing no value with
    /// `credit_values`.
    #[serde(default = "default_debit_values")]
    pub debit_values: Vec<String>,
    /// Indicator values meaning credit (ASCII case-insensitive, surrounding
    /// spaces ignored); set only with `direction`, sharing no value with
    /// `debit_values`.
    #[serde(default = "default_credit_values")]
    pub credit_values: Vec<String>,
    /// Currency column (ISO 4217 codes).
    #[serde(default)]
    pub currency: Option<String>,
    /// One fixed currency for the whole file, e.g. `"EUR"`.
    #[serde(default)]
    pub currency_value: Option<String>,
    /// Date column.
    #[serde(default)]
    pub date: Option<String>,
    /// Date format: `%Y %m %d %y %b %e` and literal characters.
    #[serde(default = "default_date_format")]
    pub date_format: String,
    /// Reference column (invoice number, payment reference).
    #[serde(default)]
    pub reference: Option<String>,
    /// Counterparty column.
    #[serde(default)]
    pub counterparty: Option<String>,
    /// Description / narrative column.
    #[serde(default)]
    pub description: Option<String>,
    /// Columns carried through to the output unchanged.
    #[serde(default)]
    pub extra: Vec<String>,
    /// What the amount columns' numbers count (`amount`, `debit`, `credit`).
    #[serde(default)]
    pub amount_unit: AmountUnit,
    /// What to do with bad rows.
    #[serde(default)]
    pub on_error: OnError,
}

/// A CSV file's character encoding, named by a label of the WHATWG Encoding
/// Standard (the labels browsers know): `utf-8`, `windows-1252`, `latin1`,
/// `iso-8859-15`, `utf-16le`, `utf-16be`, `shift_jis`, `gbk`, ... A file in
/// another encoding than UTF-8 is decoded as it is read, strictly: a byte
/// sequence the encoding does not define is refused at its line, never
/// replaced. As in browsers, `latin1`, `iso-8859-1` and `ascii` name
/// windows-1252 (which reads every byte), and a byte order mark at the
/// start of the file (UTF-8 or UTF-16) wins over the label, the default
/// UTF-8 included.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TextEncoding(&'static encoding_rs::Encoding);

impl TextEncoding {
    /// UTF-8, the default.
    pub const UTF_8: Self = Self(encoding_rs::UTF_8);
    /// UTF-16, little-endian (Excel's "Unicode text").
    pub const UTF_16LE: Self = Self(encoding_rs::UTF_16LE);
    /// UTF-16, big-endian.
    pub const UTF_16BE: Self = Self(encoding_rs::UTF_16BE);

    /// The encoding a label names (ASCII case-insensitive, surrounding
    /// spaces ignored); `None` for a label the standard does not know, and
    /// for those it maps to its "replacement" encoding (ISO-2022-KR,
    /// HZ-GB-2312, ...), which decode no text at all.
    pub fn from_label(label: &str) -> Option<Self> {
        encoding_rs::Encoding::for_label(label.trim().as_bytes())
            .filter(|e| *e != encoding_rs::REPLACEMENT)
            .map(Self)
    }

    /// The encoding's canonical name (`windows-1252` for `latin1`).
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// Whether this is UTF-8, read without decoding.
    pub fn is_utf8(self) -> bool {
        self.0 == encoding_rs::UTF_8
    }

    /// The decoder of text after any byte order mark (the reader skips one
    /// and reads the encoding it names): a mark there is read as text.
    pub(crate) fn new_decoder(self) -> encoding_rs::Decoder {
        self.0.new_decoder_without_bom_handling()
    }
}

impl Default for TextEncoding {
    fn default() -> Self {
        Self::UTF_8
    }
}

impl std::fmt::Debug for TextEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for TextEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TextEncoding {
    type Err = MappingError;

    fn from_str(label: &str) -> Result<Self, MappingError> {
        Self::from_label(label).ok_or_else(|| MappingError::Encoding {
            value: label.to_owned(),
        })
    }
}

impl<'de> Deserialize<'de> for TextEncoding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let label = String::deserialize(d)?;
        label.parse().map_err(serde::de::Error::custom)
    }
}

fn default_delimiter() -> char {
    ','
}

fn default_true() -> bool {
    true
}

fn default_date_format() -> String {
    "%Y-%m-%d".to_owned()
}

fn default_debit_values() -> Vec<String> {
    ["D", "DR", "Debit"].map(str::to_owned).to_vec()
}

fn default_credit_values() -> Vec<String> {
    ["C", "CR", "Credit"].map(str::to_owned).to_vec()
}

/// Whether two names are the same once surrounding spaces are ignored,
/// ASCII case-insensitive. The loader finds a column by it when no header
/// is spelled exactly so, and reads a row's direction indicator by it
/// (`input/map.rs`); the mapping's checks compare column names and
/// indicator lists by it too, so they refuse exactly what loading would
/// confuse.
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

impl Default for SideMapping {
    /// The same defaults as an empty TOML table: no roles mapped, CSV options as documented.
    fn default() -> Self {
        Self {
            format: None,
            delimiter: default_delimiter(),
            has_header: true,
            encoding: TextEncoding::default(),
            id: None,
            amount: None,
            debit: None,
            credit: None,
            direction: None,
            debit_values: default_debit_values(),
            credit_values: default_credit_values(),
            currency: None,
            currency_value: None,
            date: None,
            date_format: default_date_format(),
            reference: None,
            counterparty: None,
            description: None,
            extra: Vec::new(),
            amount_unit: AmountUnit::Major,
            on_error: OnError::Fail,
        }
    }
}

/// How a side states its amounts, resolved from [`SideMapping`]'s keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountStyle<'a> {
    /// One signed amount column.
    Signed {
        /// The amount column.
        amount: &'a str,
    },
    /// Separate debit (negative) and credit (positive) columns; an empty cell counts as zero.
    DebitCredit {
        /// The debit column.
        debit: &'a str,
        /// The credit column.
        credit: &'a str,
    },
    /// An amount column and an indicator column; a debit indicator negates the amount.
    Directed {
        /// The amount column.
        amount: &'a str,
        /// The indicator column.
        direction: &'a str,
    },
}

/// Where a side's currency comes from, resolved from [`SideMapping`]'s keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CurrencySource<'a> {
    /// A column of ISO 4217 codes.
    Column(&'a str),
    /// One code for every row.
    Fixed(crate::money::Currency),
}

/// Why a [`SideMapping`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MappingError {
    /// No amount columns, or a combination that does not say one thing.
    #[error(
        "map the amount as `amount`, as `debit` + `credit`, or as `amount` + `direction` (got {got})"
    )]
    AmountStyle {
        /// The amount keys that were set.
        got: String,
    },
    /// Neither or both of `currency` and `currency_value`.
    #[error("set exactly one of `currency` (a column) and `currency_value` (a fixed code)")]
    CurrencySource,
    /// `currency_value` is not a three-letter code.
    #[error("currency_value {value:?} is not a three-letter currency code")]
    CurrencyValue {
        /// The configured value.
        value: String,
    },
    /// The encoding's label is not one the WHATWG Encoding Standard knows
    /// (or names one that decodes no text).
    #[error(
        "encoding {value:?} is not known: use a WHATWG label such as \"utf-8\", \"windows-1252\", \"iso-8859-15\", \"utf-16le\" or \"shift_jis\""
    )]
    Encoding {
        /// The label as written.
        value: String,
    },
    /// The delimiter is not one ASCII character.
    #[error("delimiter \"{}\" must be one ASCII character", value.escape_debug())]
    Delimiter {
        /// The configured delimiter.
        value: char,
    },
    /// The delimiter is a line break (`\n`, `\r`) or the quote character
    /// `"`: CSV gives those their own meaning, so fields could not be split
    /// by them.
    #[error(
        "delimiter \"{}\" cannot be a line break or the quote character `\"`",
        value.escape_debug()
    )]
    DelimiterReserved {
        /// The configured delimiter.
        value: char,
    },
    /// `debit_values` or `credit_values` is set but no `direction` column is
    /// mapped: the indicator values would never be read.
    #[error(
        "`{key}` is set but no `direction` column is mapped: indicator values are read only with `amount` + `direction`"
    )]
    IndicatorsWithoutDirection {
        /// `debit_values` or `credit_values`.
        key: &'static str,
    },
    /// One indicator value is in both `debit_values` and `credit_values`
    /// (compared as the loader compares a row's indicator: surrounding
    /// spaces ignored, ASCII case-insensitive).
    #[error("{credit:?} in `credit_values` is also in `debit_values` (as {debit:?})")]
    IndicatorOverlap {
        /// The value as written in `debit_values`.
        debit: String,
        /// The value as written in `credit_values`.
        credit: String,
    },
    /// The date format does not parse.
    #[error("date_format {format:?}: {reason}")]
    DateFormat {
        /// The configured format.
        format: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key names an empty (or blank) column.
    #[error("`{key}` names an empty column")]
    EmptyColumn {
        /// The key (`extra` for an extra column).
        key: &'static str,
    },
    /// `debit` and `credit`, or `amount` and `direction`, name one column
    /// (compared as the loader finds a column: surrounding spaces ignored,
    /// ASCII case-insensitive).
    #[error(
        "`{key}` {column:?} names the `{other}` column ({other_column:?}): they must be two columns"
    )]
    SameColumn {
        /// `credit` or `direction`.
        key: &'static str,
        /// The column as `key` writes it.
        column: String,
        /// `debit` or `amount`.
        other: &'static str,
        /// The column as `other` writes it.
        other_column: String,
    },
    /// One column is listed twice in `extra` (compared as the loader finds a
    /// column): both would carry the same values to two output columns of
    /// one name.
    #[error("`extra` lists {column:?} twice (also as {first:?})")]
    RepeatedExtra {
        /// The later entry, as written.
        column: String,
        /// The earlier entry, as written.
        first: String,
    },
    /// `date_format` is changed from its default but no `date` column is
    /// mapped: the format would never be used.
    #[error(
        "`date_format` is set but no `date` column is mapped: a date format is read only with a `date` column"
    )]
    DateFormatWithoutDate,
    /// `delimiter`, `has_header` or `encoding` is changed from its default
    /// while `format` names a format other than CSV: the option would never
    /// be read.
    #[error(
        "`{key}` is set but `format` is {}: `delimiter`, `has_header` and `encoding` are read only from CSV",
        format.name()
    )]
    CsvOptionWithoutCsv {
        /// `delimiter`, `has_header` or `encoding`.
        key: &'static str,
        /// The configured format.
        format: Format,
    },
}

/// A CSV delimiter as a byte: one ASCII character that is not a line break or
/// the quote (the check every delimiter goes through, a mapping's or an
/// upload's).
///
/// # Errors
/// [`MappingError::Delimiter`] when it is not one ASCII character,
/// [`MappingError::DelimiterReserved`] when it is `\n`, `\r` or `"`.
pub fn delimiter_byte(value: char) -> Result<u8, MappingError> {
    let byte = u8::try_from(value)
        .ok()
        .filter(u8::is_ascii)
        .ok_or(MappingError::Delimiter { value })?;
    if matches!(byte, b'\n' | b'\r' | b'"') {
        return Err(MappingError::DelimiterReserved { value });
    }
    Ok(byte)
}

impl SideMapping {
    /// Whether this side's file gives `role` a column (amount and currency
    /// always have one, or a fixed value, once the mapping is valid).
    pub fn maps(&self, role: crate::rules::Role) -> bool {
        use crate::rules::Role;
        match role {
            Role::Id => self.id.is_some(),
            Role::Amount | Role::Currency => true,
            Role::Date => self.date.is_some(),
            Role::Reference => self.reference.is_some(),
            Role::Counterparty => self.counterparty.is_some(),
            Role::Description => self.description.is_some(),
        }
    }

    /// The amount style these keys describe.
    ///
    /// # Errors
    /// [`MappingError::AmountStyle`] when the keys set are not exactly one of the three styles.
    pub fn amount_style(&self) -> Result<AmountStyle<'_>, MappingError> {
        match (
            self.amount.as_deref(),
            self.debit.as_deref(),
            self.credit.as_deref(),
            self.direction.as_deref(),
        ) {
            (Some(amount), None, None, None) => Ok(AmountStyle::Signed { amount }),
            (None, Some(debit), Some(credit), None) => {
                Ok(AmountStyle::DebitCredit { debit, credit })
            }
            (Some(amount), None, None, Some(direction)) => {
                Ok(AmountStyle::Directed { amount, direction })
            }
            _ => {
                let got: Vec<&str> = [
                    ("amount", self.amount.is_some()),
                    ("debit", self.debit.is_some()),
                    ("credit", self.credit.is_some()),
                    ("direction", self.direction.is_some()),
                ]
                .iter()
                .filter(|(_, set)| *set)
                .map(|(k, _)| *k)
                .collect();
                Err(MappingError::AmountStyle {
                    got: if got.is_empty() {
                        "none".to_owned()
                    } else {
                        got.join(", ")
                    },
                })
            }
        }
    }

    /// Where the currency comes from.
    ///
    /// # Errors
    /// [`MappingError::CurrencySource`] unless exactly one of `currency` and
    /// `currency_value` is set; [`MappingError::CurrencyValue`] for a bad fixed code.
    pub fn currency_source(&self) -> Result<CurrencySource<'_>, MappingError> {
        match (self.currency.as_deref(), self.currency_value.as_deref()) {
            (Some(col), None) => Ok(CurrencySource::Column(col)),
            (None, Some(code)) => crate::money::Currency::parse(code)
                .map(CurrencySource::Fixed)
                .ok_or_else(|| MappingError::CurrencyValue {
                    value: code.to_owned(),
                }),
            _ => Err(MappingError::CurrencySource),
        }
    }

    /// The delimiter as a byte.
    ///
    /// # Errors
    /// [`MappingError::Delimiter`] when it is not one ASCII character,
    /// [`MappingError::DelimiterReserved`] when it is `\n`, `\r` or `"`.
    pub fn delimiter_byte(&self) -> Result<u8, MappingError> {
        delimiter_byte(self.delimiter)
    }

    /// Checks the direction indicators: no value in both lists, and neither
    /// list changed from its default unless a `direction` column is mapped
    /// (a rules file also refuses one written out at its default: see
    /// [`crate::rules::Rules::from_toml_str`]).
    ///
    /// # Errors
    /// [`MappingError::IndicatorsWithoutDirection`] or
    /// [`MappingError::IndicatorOverlap`].
    pub fn check_indicators(&self) -> Result<(), MappingError> {
        if self.direction.is_none() {
            let changed = [
                ("debit_values", &self.debit_values, default_debit_values()),
                (
                    "credit_values",
                    &self.credit_values,
                    default_credit_values(),
                ),
            ]
            .into_iter()
            .find(|(_, values, default)| *values != default);
            if let Some((key, _, _)) = changed {
                return Err(MappingError::IndicatorsWithoutDirection { key });
            }
        }
        for credit in &self.credit_values {
            if let Some(debit) = self
                .debit_values
                .iter()
                .find(|debit| same_name(debit, credit))
            {
                return Err(MappingError::IndicatorOverlap {
                    debit: debit.clone(),
                    credit: credit.clone(),
                });
            }
        }
        Ok(())
    }

    /// Every column this mapping names, with the key naming it (`extra` for
    /// each extra column).
    fn columns(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("id", &self.id),
            ("amount", &self.amount),
            ("debit", &self.debit),
            ("credit", &self.credit),
            ("direction", &self.direction),
            ("currency", &self.currency),
            ("date", &self.date),
            ("reference", &self.reference),
            ("counterparty", &self.counterparty),
            ("description", &self.description),
        ]
        .into_iter()
        .filter_map(|(key, column)| column.as_deref().map(|c| (key, c)))
        .chain(self.extra.iter().map(|c| ("extra", c.as_str())))
    }

    /// Checks that `debit` and `credit`, or `amount` and `direction`, are two
    /// columns, and that `extra` lists no column twice (names compared as
    /// the loader finds a column).
    ///
    /// # Errors
    /// [`MappingError::SameColumn`] or [`MappingError::RepeatedExtra`].
    fn check_distinct_columns(&self) -> Result<(), MappingError> {
        let pair = match self.amount_style() {
            Ok(AmountStyle::DebitCredit { debit, credit }) => {
                Some(("credit", credit, "debit", debit))
            }
            Ok(AmountStyle::Directed { amount, direction }) => {
                Some(("direction", direction, "amount", amount))
            }
            _ => None,
        };
        if let Some((key, column, other, other_column)) = pair
            && same_name(column, other_column)
        {
            return Err(MappingError::SameColumn {
                key,
                column: column.to_owned(),
                other,
                other_column: other_column.to_owned(),
            });
        }
        for (i, column) in self.extra.iter().enumerate() {
            if let Some(first) = self.extra[..i].iter().find(|c| same_name(c, column)) {
                return Err(MappingError::RepeatedExtra {
                    column: column.clone(),
                    first: first.clone(),
                });
            }
        }
        Ok(())
    }

    /// Checks that no key is changed from its default where it would never
    /// be read: `date_format` without a `date` column, `delimiter` or
    /// `has_header` with a `format` other than CSV (a rules file also refuses
    /// one written out at its default: see
    /// [`crate::rules::Rules::from_toml_str`]). A format left to the file's
    /// extension is not known here, so the CSV options are then left alone.
    ///
    /// # Errors
    /// [`MappingError::DateFormatWithoutDate`] or
    /// [`MappingError::CsvOptionWithoutCsv`].
    fn check_unread_options(&self) -> Result<(), MappingError> {
        if self.date.is_none() && self.date_format != default_date_format() {
            return Err(MappingError::DateFormatWithoutDate);
        }
        match self.format {
            Some(format) => self.check_csv_options(format),
            None => Ok(()),
        }
    }

    /// Checks that `delimiter`, `has_header` and `encoding` keep their defaults unless
    /// `format` (the mapping's, or the one a file's extension gives) is CSV.
    ///
    /// # Errors
    /// [`MappingError::CsvOptionWithoutCsv`] naming the first changed key.
    pub fn check_csv_options(&self, format: Format) -> Result<(), MappingError> {
        if format == Format::Csv {
            return Ok(());
        }
        let changed = [
            ("delimiter", self.delimiter != default_delimiter()),
            ("has_header", !self.has_header),
            ("encoding", !self.encoding.is_utf8()),
        ]
        .into_iter()
        .find(|(_, changed)| *changed);
        match changed {
            Some((key, _)) => Err(MappingError::CsvOptionWithoutCsv { key, format }),
            None => Ok(()),
        }
    }

    /// Checks every key combination, that no column name is empty and that
    /// the amount roles and `extra` name distinct columns, the direction
    /// indicators, the delimiter and the date format, and that no key is set
    /// where it would never be read, without reading a file.
    ///
    /// # Errors
    /// The first [`MappingError`] found.
    pub fn validate(&self) -> Result<(), MappingError> {
        if let Some((key, _)) = self.columns().find(|(_, column)| column.trim().is_empty()) {
            return Err(MappingError::EmptyColumn { key });
        }
        self.amount_style()?;
        self.check_distinct_columns()?;
        self.check_indicators()?;
        self.currency_source()?;
        self.delimiter_byte()?;
        crate::date::DateFormat::parse(&self.date_format).map_err(|e| {
            MappingError::DateFormat {
                format: self.date_format.clone(),
                reason: e.to_string(),
            }
        })?;
        self.check_unread_options()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_from_empty_toml_match_default() {
        let m: SideMapping = toml::from_str("").unwrap();
        assert_eq!(m, SideMapping::default());
    }

    #[test]
    fn full_mapping_parses() {
        let m: SideMapping = toml::from_str(
            r#"
            format = "csv"
            delimiter = ";"
            has_header = true
            id = "txn_id"
            amount = "amt"
            direction = "dc"
            debit_values = ["S"]
            credit_values = ["H"]
            currency_value = "eur"
            date = "booked"
            date_format = "%d/%m/%Y"
            reference = "ref"
            counterparty = "name"
            description = "memo"
            extra = ["branch"]
            on_error = "quarantine"
            "#,
        )
        .unwrap();
        assert_eq!(m.format, Some(Format::Csv));
        assert_eq!(m.delimiter_byte().unwrap(), b';');
        assert_eq!(
            m.amount_style().unwrap(),
            AmountStyle::Directed {
                amount: "amt",
                direction: "dc"
            }
        );
        assert_eq!(m.on_error, OnError::Quarantine);
        m.validate().unwrap();
        for (key, mapping) in [
            (
                "date",
                SideMapping {
                    date: Some(" ".to_owned()),
                    ..m.clone()
                },
            ),
            (
                "extra",
                SideMapping {
                    extra: vec!["memo".to_owned(), String::new()],
                    ..m.clone()
                },
            ),
        ] {
            assert_eq!(mapping.validate(), Err(MappingError::EmptyColumn { key }));
        }
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = toml::from_str::<SideMapping>("amount = \"a\"\namuont = \"b\"").unwrap_err();
        assert!(err.to_string().contains("amuont"), "{err}");
    }

    #[test]
    fn line_breaks_and_quotes_are_not_delimiters() {
        for value in ['\n', '\r', '"'] {
            let m = SideMapping {
                delimiter: value,
                ..SideMapping::default()
            };
            assert_eq!(
                m.delimiter_byte(),
                Err(MappingError::DelimiterReserved { value })
            );
        }
        let tab = SideMapping {
            delimiter: '\t',
            ..SideMapping::default()
        };
        assert_eq!(tab.delimiter_byte(), Ok(b'\t'));
        assert_eq!(
            MappingError::DelimiterReserved { value: '\n' }.to_string(),
            "delimiter \"\\n\" cannot be a line break or the quote character `\"`"
        );
    }

    #[test]
    fn indicators_need_a_direction_and_mean_one_thing() {
        let directed = SideMapping {
            amount: Some("a".into()),
            currency_value: Some("EUR".into()),
            direction: Some("dc".into()),
            ..SideMapping::default()
        };
        directed.validate().unwrap();
        let without = SideMapping {
            direction: None,
            credit_values: vec!["H".into()],
            ..directed.clone()
        };
        assert_eq!(
            without.validate(),
            Err(MappingError::IndicatorsWithoutDirection {
                key: "credit_values"
            })
        );
        let overlap = SideMapping {
            debit_values: vec!["S".into(), "Cr".into()],
            ..directed
        };
        assert_eq!(
            overlap.validate(),
            Err(MappingError::IndicatorOverlap {
                debit: "Cr".into(),
                credit: "CR".into()
            })
        );
    }

    #[test]
    fn two_roles_name_two_columns_and_extra_each_once() {
        let debit_credit = SideMapping {
            debit: Some("Amount".into()),
            credit: Some(" amount ".into()),
            currency_value: Some("EUR".into()),
            ..SideMapping::default()
        };
        let err = debit_credit.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`credit` \" amount \" names the `debit` column (\"Amount\"): they must be two columns"
        );
        let extra = SideMapping {
            debit: Some("d".into()),
            extra: vec!["memo".into(), "Memo".into()],
            ..debit_credit
        };
        assert_eq!(
            extra.validate(),
            Err(MappingError::RepeatedExtra {
                column: "Memo".into(),
                first: "memo".into()
            })
        );
        assert_eq!(
            extra.validate().unwrap_err().to_string(),
            "`extra` lists \"Memo\" twice (also as \"memo\")"
        );
    }

    #[test]
    fn a_date_format_needs_a_date_column() {
        let m = SideMapping {
            amount: Some("a".into()),
            currency_value: Some("EUR".into()),
            date_format: "%d.%m.%Y".into(),
            ..SideMapping::default()
        };
        assert_eq!(m.validate(), Err(MappingError::DateFormatWithoutDate));
        let dated = SideMapping {
            date: Some("booked".into()),
            ..m
        };
        assert_eq!(dated.validate(), Ok(()));
    }

    #[test]
    fn format_names_are_what_serde_reads() {
        for format in [
            Format::Csv,
            Format::Parquet,
            Format::Arrow,
            Format::ArrowStream,
            Format::Ndjson,
        ] {
            let read: Format = toml::Value::String(format.name().into())
                .try_into()
                .unwrap();
            assert_eq!(read, format);
        }
    }

    #[test]
    fn contradictory_amount_keys_are_rejected() {
        let m = SideMapping {
            amount: Some("a".into()),
            debit: Some("d".into()),
            ..SideMapping::default()
        };
        let err = m.amount_style().unwrap_err();
        assert!(err.to_string().contains("got amount, debit"), "{err}");
    }
}
