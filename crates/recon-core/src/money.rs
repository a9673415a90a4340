//! Exact money: currencies with their minor units, amounts as integers.
//!
//! Amount text from files is parsed here, explicitly and without rounding:
//! [`parse_amount`] accepts the styles exports use (`1,234.56`, `(12.30)`, `12.30-`,
//! `$12.30`, `USD 12.30`); [`parse_decimal_minor`] accepts only a plain decimal, for
//! configuration such as tolerances; [`format_minor`] writes minor units back as text.

use std::fmt;

/// An ISO 4217 alphabetic currency code, e.g. `USD`. `Copy`, three bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl std::str::FromStr for Currency {
    type Err = NotACurrency;

    /// As [`Currency::parse`].
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Self::parse(code).ok_or_else(|| NotACurrency(code.to_owned()))
    }
}

/// Text that is no currency code (three ASCII letters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a currency code (three letters, such as USD)")]
pub struct NotACurrency(pub String);

impl Currency {
    /// Parses a three-letter code, case-insensitively. `None` if it is not three ASCII letters.
    pub fn parse(code: &str) -> Option<Self> {
        let b = trim(code).as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        Some(Self([
            b[0].to_ascii_uppercase(),
            b[1].to_ascii_uppercase(),
            b[2].to_ascii_uppercase(),
        ]))
    }

    /// The code's three ASCII letters, e.g. `b"USD"`.
    #[inline]
    pub fn as_bytes(&self) -> &[u8; 3] {
        &self.0
    }

    /// The code as text, e.g. `"USD"`.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Digits after the decimal point for this currency (ISO 4217): 0 for JPY, 3 for BHD, 2 by default.
    #[inline]
    pub fn minor_units(&self) -> u8 {
        // Every amount parsed asks: one load from a table indexed by the code
        // (only ASCII capitals are ever stored, so the index is in range).
        MINOR_UNITS.get(code_index(&self.0)).copied().unwrap_or(2)
    }
}

/// Codes with no minor units (ISO 4217).
const ZERO_DECIMALS: [&[u8; 3]; 17] = [
    b"BIF", b"CLP", b"DJF", b"GNF", b"ISK", b"JPY", b"KMF", b"KRW", b"PYG", b"RWF", b"UGX", b"UYI",
    b"VND", b"VUV", b"XAF", b"XOF", b"XPF",
];
/// Codes with three minor units.
const THREE_DECIMALS: [&[u8; 3]; 7] = [b"BHD", b"IQD", b"JOD", b"KWD", b"LYD", b"OMR", b"TND"];
/// Codes with four minor units.
const FOUR_DECIMALS: [&[u8; 3]; 2] = [b"CLF", b"UYW"];

/// A code's slot in [`MINOR_UNITS`]: the letters as base-26 digits.
#[inline]
const fn code_index(code: &[u8; 3]) -> usize {
    let a = code[0].wrapping_sub(b'A') as usize;
    let b = code[1].wrapping_sub(b'A') as usize;
    let c = code[2].wrapping_sub(b'A') as usize;
    a * 26 * 26 + b * 26 + c
}

/// Minor units of every code `AAA..=ZZZ`: 2 but for the lists above.
static MINOR_UNITS: [u8; 26 * 26 * 26] = {
    let mut table = [2u8; 26 * 26 * 26];
    let lists: [(&[&[u8; 3]], u8); 3] = [
        (&ZERO_DECIMALS, 0),
        (&THREE_DECIMALS, 3),
        (&FOUR_DECIMALS, 4),
    ];
    let mut l = 0;
    while l < lists.len() {
        let (codes, units) = lists[l];
        let mut i = 0;
        while i < codes.len() {
            table[code_index(codes[i])] = units;
            i += 1;
        }
        l += 1;
    }
    table
};

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an amount text was refused. The display text follows the value in messages,
/// e.g. `"12,3x" is not an amount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    /// Nothing but whitespace.
    #[error("is not an amount (empty)")]
    Empty,
    /// Not one of the accepted amount styles.
    #[error("is not an amount")]
    Invalid,
    /// More non-zero decimals than the currency has minor units; never rounded.
    #[error("has more decimals than {currency} allows ({allowed})")]
    TooManyDecimals {
        /// The row's currency.
        currency: Currency,
        /// Its minor units.
        allowed: u8,
    },
    /// Three letters before the number that are not the row's currency code
    /// (another code, or a word).
    #[error("is not an amount in {currency} (it starts with \"{found}\")")]
    CurrencyMismatch {
        /// The row's currency.
        currency: Currency,
        /// The three letters, upper-cased.
        found: Currency,
    },
    /// Not a whole number of minor units, where the mapping reads amounts
    /// so (`amount_unit = "minor"`).
    #[error("is not a whole number of minor units (the side's amount_unit is \"minor\")")]
    NotMinorUnits,
    /// Beyond [`MAX_MINOR`] minor units either way.
    #[error("is out of the amount range (at most {MAX_MINOR} minor units either way)")]
    Overflow,
}

/// `text.trim()`, without the Unicode whitespace search when both ends are
/// printable ASCII (almost every cell of a file).
pub(crate) fn trim(text: &str) -> &str {
    let b = text.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) if f.is_ascii_graphic() && l.is_ascii_graphic() => text,
        _ => text.trim(),
    }
}

/// Parses amount text as found in exports into minor units of `currency`.
///
/// Accepted, around an optional leading or trailing whitespace: a plain decimal
/// (`1234.56`, `-1234.56`, `+12`, `.5`); comma thousands separators in groups of
/// three (`1,234.56`); parentheses for negatives (`(12.30)`); a trailing minus
/// (`12.30-`); one currency symbol (`$ € £ ¥`) or the row's own three-letter code
/// before the number (`$12.30`, `-$12.30`, `USD 12.30`). Decimals beyond the
/// currency's minor units are accepted only when they are zeros (`12.300` USD).
///
/// # Errors
/// [`AmountError`] saying why; nothing is ever rounded.
pub fn parse_amount(text: &str, currency: Currency) -> Result<i64, AmountError> {
    match parse_plain(text.as_bytes(), usize::from(currency.minor_units())) {
        Some(units) => Ok(units),
        None => parse_amount_general(text, currency),
    }
}

/// The shapes almost every cell has, read in one pass: `-?int[.frac]`, where `int`
/// is digits, or comma-separated groups of three after a first group of one to
/// three; `frac` is one to `scale` digits; at most `18 - scale` bytes after the
/// sign, so the value cannot overflow. `None` for anything else, which
/// [`parse_amount_general`] then reads (to the same value, or an error): this
/// never accepts or refuses on its own.
#[inline]
fn parse_plain(text: &[u8], scale: usize) -> Option<i64> {
    let (negative, b) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if b.len() + scale > 18 {
        return None;
    }
    let mut value: i64 = 0;
    // Digits in the current group, and whether a comma was seen.
    let (mut group, mut commas) = (0usize, false);
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c.is_ascii_digit() {
            value = value * 10 + i64::from(c - b'0');
            group += 1;
        } else if c == b',' {
            // A first group of zeros (`0,123`) is no thousands grouping.
            if group == 0 || group > 3 || (commas && group != 3) || b[0] == b'0' {
                return None;
            }
            commas = true;
            group = 0;
        } else {
            break;
        }
        i += 1;
    }
    if group == 0 || (commas && group != 3) {
        return None;
    }
    let mut decimals = 0;
    if let Some((&c, frac)) = b[i..].split_first() {
        if c != b'.' || frac.is_empty() || frac.len() > scale {
            return None;
        }
        for &d in frac {
            if !d.is_ascii_digit() {
                return None;
            }
            value = value * 10 + i64::from(d - b'0');
        }
        decimals = frac.len();
    }
    for _ in decimals..scale {
        value *= 10;
    }
    Some(if negative { -value } else { value })
}

/// [`parse_amount`] for every accepted style (and every error).
fn parse_amount_general(text: &str, currency: Currency) -> Result<i64, AmountError> {
    let mut s = trim(text);
    if s.is_empty() {
        return Err(AmountError::Empty);
    }
    let mut negative = false;
    let mut signed = false;
    if let Some(inner) = s.strip_prefix('(') {
        s = inner.strip_suffix(')').ok_or(AmountError::Invalid)?.trim();
        negative = true;
        signed = true;
    } else if let Some(inner) = s.strip_suffix('-') {
        s = inner.trim_end();
        negative = true;
        signed = true;
    }
    take_sign(&mut s, &mut negative, &mut signed)?;
    if let Some(rest) = strip_currency_prefix(s, currency)? {
        s = rest.trim_start();
        // `$(12.30)`, `USD (12.30)`: parentheses after the symbol, unless a
        // sign was already given (`-$(12.30)` is two).
        match s.strip_prefix('(') {
            Some(_) if signed => return Err(AmountError::Invalid),
            Some(inner) => {
                s = inner.strip_suffix(')').ok_or(AmountError::Invalid)?.trim();
                negative = true;
                signed = true;
            }
            None => {}
        }
        take_sign(&mut s, &mut negative, &mut signed)?;
    }
    let magnitude = parse_unsigned(s, currency, Separators::Thousands)?;
    apply_sign(magnitude, negative)
}

/// Parses a whole number of minor units (`1234` cents, `-5`, `+12`; zeros
/// after a decimal point allowed, `1234.00`, as a decimal column of them
/// reads), around optional whitespace: amounts exported in minor units, as
/// payment processors' APIs give them.
///
/// # Errors
/// [`AmountError::Empty`], [`AmountError::NotMinorUnits`] for anything else
/// (separators, symbols, a non-zero fraction), [`AmountError::Overflow`]
/// beyond [`MAX_MINOR`].
pub fn parse_minor_units(text: &str) -> Result<i64, AmountError> {
    let s = trim(text);
    if s.is_empty() {
        return Err(AmountError::Empty);
    }
    let (negative, s) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b == b'0')
    {
        return Err(AmountError::NotMinorUnits);
    }
    let mut units: i64 = 0;
    for b in whole.bytes() {
        units = units
            .checked_mul(10)
            .and_then(|u| u.checked_add(i64::from(b - b'0')))
            .filter(|&u| u <= MAX_MINOR)
            .ok_or(AmountError::Overflow)?;
    }
    Ok(if negative { -units } else { units })
}

/// Parses a plain decimal (`-12.5`, `0.01`, `3`) into minor units of `currency`,
/// e.g. a tolerance in the rules file. No separators, symbols or parentheses.
///
/// # Errors
/// [`AmountError`] for anything else, for too many decimals and for overflow.
pub fn parse_decimal_minor(text: &str, currency: Currency) -> Result<i64, AmountError> {
    let mut s = text.trim();
    if s.is_empty() {
        return Err(AmountError::Empty);
    }
    let mut negative = false;
    let mut signed = false;
    take_sign(&mut s, &mut negative, &mut signed)?;
    let magnitude = parse_unsigned(s, currency, Separators::None)?;
    apply_sign(magnitude, negative)
}

/// Formats minor units as a plain decimal with the currency's decimals:
/// `-1234` USD is `"-12.34"`, `5` JPY is `"5"`, `5` BHD is `"0.005"`.
pub fn format_minor(units: i64, currency: Currency) -> String {
    Minor { units, currency }.to_string()
}

/// An amount in minor units with its currency; displays like [`format_minor`]
/// without allocating, for writers that format many amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minor {
    /// The amount in minor units.
    pub units: i64,
    /// Its currency.
    pub currency: Currency,
}

impl fmt::Display for Minor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scale = u32::from(self.currency.minor_units());
        let sign = if self.units < 0 { "-" } else { "" };
        let magnitude = self.units.unsigned_abs();
        if scale == 0 {
            return write!(f, "{sign}{magnitude}");
        }
        let pow = 10u64.pow(scale);
        let width = scale as usize;
        write!(f, "{sign}{}.{:0width$}", magnitude / pow, magnitude % pow)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Separators {
    None,
    Thousands,
}

/// Consumes one leading `+`/`-` (and the space after it); a second sign is invalid.
fn take_sign(s: &mut &str, negative: &mut bool, signed: &mut bool) -> Result<(), AmountError> {
    let sign = match s.as_bytes().first() {
        Some(b'-') => true,
        Some(b'+') => false,
        _ => return Ok(()),
    };
    if *signed {
        return Err(AmountError::Invalid);
    }
    *signed = true;
    *negative = sign;
    *s = s[1..].trim_start();
    Ok(())
}

/// Strips one currency symbol or the row's own code; `Ok(None)` when there is none.
fn strip_currency_prefix(s: &str, currency: Currency) -> Result<Option<&str>, AmountError> {
    // The common case, a number, decides on its first byte.
    if s.as_bytes()
        .first()
        .is_none_or(|b| b.is_ascii_digit() || *b == b'.')
    {
        return Ok(None);
    }
    for symbol in ['$', '\u{20ac}', '\u{a3}', '\u{a5}'] {
        if let Some(rest) = s.strip_prefix(symbol) {
            return Ok(Some(rest));
        }
    }
    let b = s.as_bytes();
    if b.len() > 3 && b[..3].iter().all(u8::is_ascii_alphabetic) && !b[3].is_ascii_alphabetic() {
        return match Currency::parse(&s[..3]) {
            Some(code) if code == currency => Ok(Some(&s[3..])),
            Some(found) => Err(AmountError::CurrencyMismatch { currency, found }),
            None => Err(AmountError::Invalid),
        };
    }
    Ok(None)
}

/// Parses `digits[.digits]` (with optional thousands groups) into minor units.
/// Works on bytes: every byte it accepts is ASCII.
fn parse_unsigned(s: &str, currency: Currency, seps: Separators) -> Result<u64, AmountError> {
    let scale = usize::from(currency.minor_units());
    let b = s.as_bytes();
    let (int, frac) = match b.iter().position(|&c| c == b'.') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &b[..0]),
    };
    if int.is_empty() && frac.is_empty() {
        return Err(AmountError::Invalid);
    }
    if !frac.iter().all(u8::is_ascii_digit) {
        return Err(AmountError::Invalid);
    }
    let mut value: u64 = 0;
    let mut push = |d: &u8| -> Result<(), AmountError> {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
            .ok_or(AmountError::Overflow)?;
        Ok(())
    };
    if seps == Separators::Thousands && int.contains(&b',') {
        for (i, group) in int.split(|&c| c == b',').enumerate() {
            // A first group of one to three digits, not starting with a
            // zero: `0,123` is a decimal comma (0.123) or a typo, never
            // 123, and no grouping writes `012,345`.
            let ok_len = if i == 0 {
                (1..=3).contains(&group.len()) && group.first() != Some(&b'0')
            } else {
                group.len() == 3
            };
            if !ok_len || !group.iter().all(u8::is_ascii_digit) {
                return Err(AmountError::Invalid);
            }
            group.iter().try_for_each(&mut push)?;
        }
    } else {
        if !int.iter().all(u8::is_ascii_digit) {
            return Err(AmountError::Invalid);
        }
        int.iter().try_for_each(&mut push)?;
    }
    let (kept, dropped) = frac.split_at(frac.len().min(scale));
    if dropped.iter().any(|&c| c != b'0') {
        return Err(AmountError::TooManyDecimals {
            currency,
            allowed: currency.minor_units(),
        });
    }
    kept.iter().try_for_each(&mut push)?;
    for _ in kept.len()..scale {
        push(&b'0')?;
    }
    Ok(value)
}

/// The largest amount, in minor units, either way: 2^62 - 1 (about 4.6e16
/// USD, 4.6e18 JPY). Any amount can be negated, and the difference of any
/// two fits in an `i64`, so no pair is ever out of a tolerance's reach.
pub const MAX_MINOR: i64 = (1 << 62) - 1;

/// The signed amount, within [`MAX_MINOR`] either way.
fn apply_sign(magnitude: u64, negative: bool) -> Result<i64, AmountError> {
    let value = i64::try_from(magnitude)
        .ok()
        .filter(|v| *v <= MAX_MINOR)
        .ok_or(AmountError::Overflow)?;
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    #[test]
    fn currencies_parse_with_from_str() {
        assert_eq!(
            "eur".parse::<super::Currency>().map(|c| c.to_string()),
            Ok("EUR".to_owned())
        );
        assert_eq!(
            "EURO".parse::<super::Currency>().unwrap_err().to_string(),
            "\"EURO\" is not a currency code (three letters, such as USD)"
        );
    }

    use super::*;
    use proptest::prelude::*;

    fn cur(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    /// One helper for the table below: `Ok(minor units)` or the error.
    fn check(text: &str, code: &str, expect: Result<i64, AmountError>) {
        assert_eq!(
            parse_amount(text, cur(code)),
            expect,
            "parsing {text:?} as {code}"
        );
    }

    #[test]
    fn minor_units_per_iso_4217() {
        for (codes, units) in [
            (
                &[
                    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX",
                    "UYI", "VND", "VUV", "XAF", "XOF", "XPF",
                ][..],
                0,
            ),
            (&["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"][..], 3),
            (&["CLF", "UYW"][..], 4),
            (&["USD", "EUR", "GBP", "CHF", "JPX", "BHE"][..], 2),
        ] {
            for code in codes {
                assert_eq!(cur(code).minor_units(), units, "{code}");
            }
        }
    }

    #[test]
    fn minor_units_table_is_the_lists() {
        for a in b'A'..=b'Z' {
            for b in b'A'..=b'Z' {
                for c in b'A'..=b'Z' {
                    let code = [a, b, c];
                    let expect = if ZERO_DECIMALS.contains(&&code) {
                        0
                    } else if THREE_DECIMALS.contains(&&code) {
                        3
                    } else if FOUR_DECIMALS.contains(&&code) {
                        4
                    } else {
                        2
                    };
                    assert_eq!(Currency(code).minor_units(), expect, "{code:?}");
                }
            }
        }
    }

    #[test]
    fn plain_fast_path_shapes() {
        let usd = cur("USD");
        let plain = |t: &str| parse_plain(t.as_bytes(), 2);
        assert_eq!(plain("1,234.56"), Some(123_456));
        assert_eq!(plain("-12,345,678.9"), Some(-1_234_567_890));
        assert_eq!(plain("0.05"), Some(5));
        assert_eq!(plain("7"), Some(700));
        // Left to the general parser: other styles, errors, and possible overflow.
        for t in [
            "",
            "-",
            "+1",
            ".5",
            "5.",
            "1.234",
            "1,23",
            "1234,567",
            "0,123",
            ",123",
            "1,",
            " 1",
            "1 ",
            "(1)",
            "1-",
            "$1",
            "1e5",
            "1.2.3",
            "--1",
            "1234567890123456.7",
        ] {
            assert_eq!(plain(t), None, "{t:?}");
        }
        assert_eq!(
            parse_amount("1234567890123456.7", usd),
            Ok(123_456_789_012_345_670)
        );
        assert_eq!(parse_plain(b"1.5", 0), None);
        assert_eq!(parse_plain(b"15", 0), Some(15));
    }

    #[test]
    fn amount_styles() {
        use AmountError::*;
        let usd = cur("USD");
        check("1234.56", "USD", Ok(123_456));
        check("-1234.56", "USD", Ok(-123_456));
        check("+12", "USD", Ok(1200));
        check("1,234.56", "USD", Ok(123_456));
        check("1,234,567", "USD", Ok(123_456_700));
        check("(12.30)", "USD", Ok(-1230));
        check("( 12.30 )", "USD", Ok(-1230));
        check("12.30-", "USD", Ok(-1230));
        check("$12.30", "USD", Ok(1230));
        check("-$12.30", "USD", Ok(-1230));
        check("$-12.30", "USD", Ok(-1230));
        check("USD 12.30", "USD", Ok(1230));
        check("usd12.30", "USD", Ok(1230));
        check("($1,000.00)", "USD", Ok(-100_000));
        check("$(1,000.00)", "USD", Ok(-100_000));
        check("USD (12.30)", "USD", Ok(-1230));
        check("-$(12.30)", "USD", Err(Invalid));
        check("($(12.30))", "USD", Err(Invalid));
        check("$(-12.30)", "USD", Err(Invalid));
        check("$(12.30", "USD", Err(Invalid));
        check("  7  ", "USD", Ok(700));
        check(".5", "USD", Ok(50));
        check("5.", "USD", Ok(500));
        check("12.300", "USD", Ok(1230));
        check("-0", "USD", Ok(0));
        check("1500", "JPY", Ok(1500));
        check("1.234", "BHD", Ok(1234));
        check(
            "1.2345",
            "BHD",
            Err(TooManyDecimals {
                currency: cur("BHD"),
                allowed: 3,
            }),
        );
        check(
            "12.345",
            "USD",
            Err(TooManyDecimals {
                currency: usd,
                allowed: 2,
            }),
        );
        check(
            "1.5",
            "JPY",
            Err(TooManyDecimals {
                currency: cur("JPY"),
                allowed: 0,
            }),
        );
        check("", "USD", Err(Empty));
        check("   ", "USD", Err(Empty));
        check("12,3x", "USD", Err(Invalid));
        check("1,23", "USD", Err(Invalid));
        check("1234,567", "USD", Err(Invalid));
        // A first group starting with zero is no grouping: not 123 nor 500.
        check("0,123", "BHD", Err(Invalid));
        check("-0,250", "KWD", Err(Invalid));
        check("00,500", "USD", Err(Invalid));
        check("012,345.00", "USD", Err(Invalid));
        check("$0,123", "USD", Err(Invalid));
        check("1,000,000", "JPY", Ok(1_000_000));
        check("0.123", "BHD", Ok(123));
        check(",123", "USD", Err(Invalid));
        check("--12", "USD", Err(Invalid));
        check("-(12)", "USD", Err(Invalid));
        check("(12", "USD", Err(Invalid));
        check("-12-", "USD", Err(Invalid));
        check(".", "USD", Err(Invalid));
        check("1e5", "USD", Err(Invalid));
        check("1 000", "USD", Err(Invalid));
        check(
            "EUR 12.30",
            "USD",
            Err(CurrencyMismatch {
                currency: usd,
                found: cur("EUR"),
            }),
        );
        check(
            "tbd 5",
            "USD",
            Err(CurrencyMismatch {
                currency: usd,
                found: cur("TBD"),
            }),
        );
        check("46116860184273879.03", "USD", Ok(MAX_MINOR));
        check("-46116860184273879.03", "USD", Ok(-MAX_MINOR));
        check("(4611686018427387903)", "JPY", Ok(-MAX_MINOR));
        // Symmetric, and any two amounts' difference fits in an i64.
        check("-46116860184273879.04", "USD", Err(Overflow));
        check("(46116860184273879.04)", "USD", Err(Overflow));
        check("92233720368547758.07", "USD", Err(Overflow));
        check("99999999999999999999999", "JPY", Err(Overflow));
        assert!(MAX_MINOR.checked_mul(2).is_some());
    }

    #[test]
    fn decimal_minor_is_strict() {
        let usd = cur("USD");
        assert_eq!(parse_decimal_minor("0.01", usd), Ok(1));
        assert_eq!(parse_decimal_minor("-2.5", usd), Ok(-250));
        assert_eq!(parse_decimal_minor("3", cur("JPY")), Ok(3));
        assert_eq!(parse_decimal_minor("1,000", usd), Err(AmountError::Invalid));
        assert_eq!(parse_decimal_minor("$1", usd), Err(AmountError::Invalid));
        assert_eq!(parse_decimal_minor("(1)", usd), Err(AmountError::Invalid));
        assert!(matches!(
            parse_decimal_minor("0.001", usd),
            Err(AmountError::TooManyDecimals { .. })
        ));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_minor(-1234, cur("USD")), "-12.34");
        assert_eq!(format_minor(5, cur("JPY")), "5");
        assert_eq!(format_minor(5, cur("BHD")), "0.005");
        assert_eq!(format_minor(-5, cur("USD")), "-0.05");
        assert_eq!(format_minor(0, cur("USD")), "0.00");
        assert_eq!(format_minor(i64::MIN, cur("USD")), "-92233720368547758.08");
    }

    proptest! {
        #[test]
        fn trim_is_str_trim(text in "[ \t\u{b}\u{c}\r\n\u{a0}\u{2003}a-z0-9.,$()-]{0,12}") {
            prop_assert_eq!(trim(&text), text.trim());
        }

        #[test]
        fn format_then_parse_round_trips(units in -MAX_MINOR..=MAX_MINOR, code in prop::sample::select(vec!["JPY", "USD", "BHD", "CLF"])) {
            let c = cur(code);
            let text = format_minor(units, c);
            prop_assert_eq!(parse_amount(&text, c), Ok(units));
            prop_assert_eq!(parse_decimal_minor(&text, c), Ok(units));
        }

        #[test]
        fn plain_fast_path_is_the_general_parser(
            text in "-?[0-9,]{0,22}(\\.[0-9,]{0,5})?[-.)0-9]?",
            code in prop::sample::select(vec!["JPY", "USD", "BHD", "CLF"]),
        ) {
            let c = cur(code);
            prop_assert_eq!(parse_amount(&text, c), parse_amount_general(&text, c), "{:?} {}", text, code);
        }

        #[test]
        fn plain_fast_path_reads_grouped_amounts(
            negative: bool,
            groups in proptest::collection::vec(0u32..1000, 1..7),
            first_digits in 1usize..=4,
            frac in "[0-9]{0,5}",
            code in prop::sample::select(vec!["JPY", "USD", "BHD", "CLF"]),
        ) {
            let c = cur(code);
            let first = groups[0] % 10u32.pow(first_digits as u32);
            let mut int = first.to_string();
            for g in &groups[1..] {
                int.push_str(&format!(",{g:03}"));
            }
            let plain = int.replace(',', "");
            for body in [int, plain] {
                let text = format!("{}{}{}{}", if negative { "-" } else { "" }, body,
                    if frac.is_empty() { "" } else { "." }, frac);
                let fast = parse_plain(text.as_bytes(), usize::from(c.minor_units()));
                let general = parse_amount_general(&text, c);
                if let Some(v) = fast {
                    prop_assert_eq!(Ok(v), general, "{:?} {}", text, code);
                }
                prop_assert_eq!(parse_amount(&text, c), general);
            }
        }

        #[test]
        fn parser_never_panics(text in "\\PC*") {
            let _ = parse_amount(&text, cur("USD"));
            let _ = parse_decimal_minor(&text, cur("BHD"));
        }

        #[test]
        fn parser_never_panics_on_amount_like_text(text in "[-+()$,. 0-9A-Za-z]{0,30}") {
            let _ = parse_amount(&text, cur("USD"));
            let _ = parse_amount(&text, cur("JPY"));
        }
    }

    #[test]
    fn minor_units_are_whole_numbers() {
        for (text, units) in [
            ("1234", Ok(1234)),
            (" -5 ", Ok(-5)),
            ("+12", Ok(12)),
            ("1234.00", Ok(1234)),
            ("0", Ok(0)),
            ("", Err(AmountError::Empty)),
            ("12.5", Err(AmountError::NotMinorUnits)),
            ("1,234", Err(AmountError::NotMinorUnits)),
            ("$12", Err(AmountError::NotMinorUnits)),
            ("-", Err(AmountError::NotMinorUnits)),
            (".00", Err(AmountError::NotMinorUnits)),
            ("1e3", Err(AmountError::NotMinorUnits)),
            ("4611686018427387903", Ok(MAX_MINOR)),
            ("-4611686018427387903", Ok(-MAX_MINOR)),
            ("4611686018427387904", Err(AmountError::Overflow)),
            ("99999999999999999999999", Err(AmountError::Overflow)),
        ] {
            assert_eq!(parse_minor_units(text), units, "{text:?}");
        }
    }
}
