//! Calendar dates as days since 1970-01-01, parsed with a small strftime-like format.
//!
//! A [`DateFormat`] is compiled once per side and then applied to every row without
//! allocating. Dates are validated against the proleptic Gregorian calendar
//! (`2026-02-29` is refused). Conversion uses the civil-from-days algorithm by
//! Howard Hinnant, so no date library is needed.

use std::fmt;

/// One piece of a compiled date format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// `%Y`: four-digit year.
    Year4,
    /// `%y`: two-digit year, 00-68 is 20xx and 69-99 is 19xx (POSIX).
    Year2,
    /// `%m`: month number, one or two digits.
    Month,
    /// `%m` next to another number with nothing between (`%Y%m%d`): exactly
    /// two digits, or `2026111` could be November 1 or January 11.
    Month2,
    /// `%b` / `%B`: English month name, abbreviated or full, any case.
    MonthName,
    /// `%d`: day of month, one or two digits.
    Day,
    /// `%d` next to another number with nothing between: exactly two digits.
    Day2,
    /// `%e`: day of month, optionally space-padded.
    DaySpace,
    /// A character that must appear as is.
    Literal(char),
}

/// A compiled date format such as `"%d/%m/%Y"`.
///
/// Directives: `%Y` (4-digit year), `%y` (2-digit year: 00-68 is 2000-2068, 69-99
/// is 1969-1999), `%m` (month, 1 or 2 digits), `%b`/`%B` (English month name,
/// `Mar` or `March`, any case), `%d` (day, 1 or 2 digits), `%e` (day, optionally
/// space-padded), `%%` (a percent sign). Any other character must match itself.
/// A `%m` or `%d` directly next to another number (`%Y%m%d`, `%d%m%y`) takes
/// exactly two digits, since with one the text would be ambiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateFormat {
    items: Vec<Item>,
    /// The format's widest layout, when it has one (see [`Fixed`]).
    fixed: Option<Fixed>,
}

/// The layout of a format made only of `%Y`, `%m`, `%d` and ASCII literals when
/// every month and day has two digits (`2026-03-01` for `%Y-%m-%d`): a text of
/// exactly that shape is read by position, which gives what the item-by-item
/// reading gives (there each field takes as many digits as it may), and any
/// other text is left to the item-by-item reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fixed {
    /// The layout's length in bytes.
    len: usize,
    /// The literal byte at each position, or [`Fixed::DIGIT`].
    pattern: [u8; Fixed::MAX],
    year: usize,
    month: usize,
    day: usize,
}

impl Fixed {
    /// Longest layout kept.
    const MAX: usize = 16;
    /// A digit position in [`Fixed::pattern`] (`\0` is never a literal kept).
    const DIGIT: u8 = 0;

    fn of(items: &[Item]) -> Option<Self> {
        let mut fixed = Self {
            len: 0,
            pattern: [Self::DIGIT; Self::MAX],
            year: 0,
            month: 0,
            day: 0,
        };
        for item in items {
            let at = fixed.len;
            let width = match *item {
                Item::Year4 => {
                    fixed.year = at;
                    4
                }
                Item::Month | Item::Month2 => {
                    fixed.month = at;
                    2
                }
                Item::Day | Item::Day2 => {
                    fixed.day = at;
                    2
                }
                Item::Literal(c) if c.is_ascii() && c != '\0' => {
                    *fixed.pattern.get_mut(at)? = c as u8;
                    1
                }
                _ => return None,
            };
            fixed.len += width;
            if fixed.len > Self::MAX {
                return None;
            }
        }
        Some(fixed)
    }

    /// The (year, month, day) of a text of exactly this layout, else `None`.
    #[inline]
    fn fields(&self, text: &[u8]) -> Option<(i32, u32, u32)> {
        if text.len() != self.len {
            return None;
        }
        for (&b, &p) in text.iter().zip(&self.pattern[..self.len]) {
            let ok = if p == Self::DIGIT {
                b.is_ascii_digit()
            } else {
                b == p
            };
            if !ok {
                return None;
            }
        }
        let num = |at: usize, n: usize| {
            text[at..at + n]
                .iter()
                .fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'))
        };
        let year = i32::try_from(num(self.year, 4)).ok()?;
        Some((year, num(self.month, 2), num(self.day, 2)))
    }
}

/// Why a date format string is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DateFormatError {
    /// A `%` directive other than the supported ones.
    #[error("unsupported directive %{0}")]
    Directive(char),
    /// A `%` at the very end.
    #[error("a lone % at the end")]
    TrailingPercent,
    /// The format lacks a year, month or day directive, or has one twice.
    #[error("needs exactly one year (%Y or %y), one month (%m or %b) and one day (%d or %e)")]
    Incomplete,
}

/// Why a date text was refused. The display text follows the value in messages,
/// e.g. `"31/02/2026" is not a date in the format %d/%m/%Y`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DateError {
    /// The text does not have the format's shape.
    #[error("is not a date in the format {format}")]
    Format {
        /// The format, as configured.
        format: String,
    },
    /// The shape is right but the day does not exist (e.g. 31 February).
    #[error("is not a calendar date")]
    Calendar,
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

impl DateFormat {
    /// Compiles a format string.
    ///
    /// # Errors
    /// [`DateFormatError`] for an unknown directive or a format without exactly one
    /// year, month and day.
    pub fn parse(format: &str) -> Result<Self, DateFormatError> {
        let mut items = Vec::new();
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                items.push(Item::Literal(c));
                continue;
            }
            items.push(match chars.next() {
                Some('Y') => Item::Year4,
                Some('y') => Item::Year2,
                Some('m') => Item::Month,
                Some('b' | 'B') => Item::MonthName,
                Some('d') => Item::Day,
                Some('e') => Item::DaySpace,
                Some('%') => Item::Literal('%'),
                Some(other) => return Err(DateFormatError::Directive(other)),
                None => return Err(DateFormatError::TrailingPercent),
            });
        }
        // A one-or-two-digit field against another number takes two.
        let numeric = |i: Option<&Item>| {
            matches!(
                i,
                Some(Item::Year4 | Item::Year2 | Item::Month | Item::Day | Item::DaySpace)
            )
        };
        let exact: Vec<bool> = (0..items.len())
            .map(|i| {
                numeric(i.checked_sub(1).and_then(|j| items.get(j))) || numeric(items.get(i + 1))
            })
            .collect();
        for (item, exact) in items.iter_mut().zip(exact) {
            *item = match *item {
                Item::Month if exact => Item::Month2,
                Item::Day if exact => Item::Day2,
                other => other,
            };
        }
        let count = |f: fn(&Item) -> bool| items.iter().filter(|i| f(i)).count();
        if count(|i| matches!(i, Item::Year4 | Item::Year2)) != 1
            || count(|i| matches!(i, Item::Month | Item::Month2 | Item::MonthName)) != 1
            || count(|i| matches!(i, Item::Day | Item::Day2 | Item::DaySpace)) != 1
        {
            return Err(DateFormatError::Incomplete);
        }
        let fixed = Fixed::of(&items);
        Ok(Self { items, fixed })
    }

    /// Parses `text` (surrounding whitespace ignored) into days since 1970-01-01.
    ///
    /// # Errors
    /// [`DateError::Format`] when the text does not have the format's shape,
    /// [`DateError::Calendar`] when the day does not exist.
    pub fn parse_days(&self, text: &str) -> Result<i32, DateError> {
        self.parse_days_with(text, true)
    }

    /// [`DateFormat::parse_days`], with or without the [`Fixed`] layout's shortcut.
    #[inline]
    fn parse_days_with(&self, text: &str, shortcut: bool) -> Result<i32, DateError> {
        let text = crate::money::trim(text);
        let fast = match &self.fixed {
            Some(fixed) if shortcut => fixed.fields(text.as_bytes()),
            _ => None,
        };
        let (y, m, d) = fast
            .or_else(|| self.fields(text))
            .ok_or_else(|| DateError::Format {
                format: self.to_string(),
            })?;
        if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
            return Err(DateError::Calendar);
        }
        Ok(days_from_civil(y, m, d))
    }

    fn fields(&self, text: &str) -> Option<(i32, u32, u32)> {
        let mut s = text.as_bytes();
        let (mut year, mut month, mut day) = (0i32, 0u32, 0u32);
        for item in &self.items {
            match *item {
                Item::Year4 => year = i32::try_from(take_digits(&mut s, 4, 4)?).ok()?,
                Item::Year2 => {
                    let y = i32::try_from(take_digits(&mut s, 2, 2)?).ok()?;
                    year = if y < 69 { 2000 + y } else { 1900 + y };
                }
                Item::Month => month = take_digits(&mut s, 1, 2)?,
                Item::Month2 => month = take_digits(&mut s, 2, 2)?,
                Item::Day => day = take_digits(&mut s, 1, 2)?,
                Item::Day2 => day = take_digits(&mut s, 2, 2)?,
                Item::DaySpace => {
                    if s.first() == Some(&b' ') {
                        s = &s[1..];
                    }
                    day = take_digits(&mut s, 1, 2)?;
                }
                Item::MonthName => month = take_month_name(&mut s)?,
                Item::Literal(c) if c.is_ascii() => {
                    // One byte: cheaper than a slice comparison per row.
                    match s.split_first() {
                        Some((&b, rest)) if b == c as u8 => s = rest,
                        _ => return None,
                    }
                }
                Item::Literal(c) => {
                    let mut buf = [0u8; 4];
                    let lit = c.encode_utf8(&mut buf).as_bytes();
                    s = s.strip_prefix(lit)?;
                }
            }
        }
        s.is_empty().then_some((year, month, day))
    }
}

impl fmt::Display for DateFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.items {
            match item {
                Item::Year4 => f.write_str("%Y")?,
                Item::Year2 => f.write_str("%y")?,
                Item::Month | Item::Month2 => f.write_str("%m")?,
                Item::MonthName => f.write_str("%b")?,
                Item::Day | Item::Day2 => f.write_str("%d")?,
                Item::DaySpace => f.write_str("%e")?,
                Item::Literal('%') => f.write_str("%%")?,
                Item::Literal(c) => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
}

/// Takes `min..=max` ASCII digits from the front of `s`.
fn take_digits(s: &mut &[u8], min: usize, max: usize) -> Option<u32> {
    let n = s
        .iter()
        .take(max)
        .take_while(|c| c.is_ascii_digit())
        .count();
    if n < min {
        return None;
    }
    let v = s[..n]
        .iter()
        .fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'));
    *s = &s[n..];
    Some(v)
}

/// Takes an English month name, full or its first three letters, any case.
fn take_month_name(s: &mut &[u8]) -> Option<u32> {
    let n = s.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    let word = &s[..n];
    let idx = MONTHS.iter().position(|m| {
        let m = m.as_bytes();
        (word.len() == 3 || word.len() == m.len()) && word.eq_ignore_ascii_case(&m[..word.len()])
    })?;
    *s = &s[n..];
    u32::try_from(idx + 1).ok()
}

fn is_leap(y: i32) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a valid proleptic Gregorian date (month 1-12, day
/// within the month). Saturates at the `i32` range for years beyond about ±5.8 million.
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    // Shift the year to start in March so the leap day is the last day of the year.
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let m = i64::from(m);
    let d = i64::from(d);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    let days = era * 146_097 + doe - 719_468;
    i32::try_from(days).unwrap_or(if days < 0 { i32::MIN } else { i32::MAX })
}

/// The (year, month, day) of a count of days since 1970-01-01.
pub fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

/// A date as days since 1970-01-01, displayed as `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Days(pub i32);

impl fmt::Display for Days {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(self.0);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// Formats days since 1970-01-01 as `YYYY-MM-DD`.
pub fn format_days(days: i32) -> String {
    Days(days).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One helper: parse `text` with `format`, expect days as `YYYY-MM-DD` or an error.
    fn check(format: &str, text: &str, expect: Option<&str>) {
        let f = DateFormat::parse(format).unwrap();
        let got = f.parse_days(text).ok().map(format_days);
        assert_eq!(got.as_deref(), expect, "{text:?} with {format:?}");
    }

    #[test]
    fn formats() {
        check("%Y-%m-%d", "2026-03-01", Some("2026-03-01"));
        check("%Y-%m-%d", " 2026-3-1 ", Some("2026-03-01"));
        check("%d/%m/%Y", "01/03/2026", Some("2026-03-01"));
        check("%m/%d/%y", "03/01/26", Some("2026-03-01"));
        check("%m/%d/%y", "12/31/99", Some("1999-12-31"));
        check("%d %b %Y", "1 Mar 2026", Some("2026-03-01"));
        check("%d %b %Y", "01 MARCH 2026", Some("2026-03-01"));
        check("%b %e, %Y", "Mar  1, 2026", Some("2026-03-01"));
        check("%Y%m%d", "20260301", Some("2026-03-01"));
        // Compact: a month or day against another number takes two digits,
        // or 2026111 could be November 1 or January 11.
        check("%Y%m%d", "2026111", None);
        check("%Y%m%d", "2026031", None);
        check("%Y%m%d", "202631", None);
        check("%d%m%y", "010326", Some("2026-03-01"));
        check("%d%m%y", "10326", None);
        check("%Y%m-%d", "202603-1", Some("2026-03-01"));
        check("%Y-%m%d", "2026-0301", Some("2026-03-01"));
        check("%Y-%m%d", "2026-301", None);
        assert_eq!(DateFormat::parse("%Y%m%d").unwrap().to_string(), "%Y%m%d");
        check("%Y-%m-%d", "2024-02-29", Some("2024-02-29"));
        check("%Y-%m-%d", "1970-01-01", Some("1970-01-01"));
        check("%Y-%m-%d", "1969-12-31", Some("1969-12-31"));
        check("%Y-%m-%d", "2026-02-29", None);
        check("%Y-%m-%d", "1900-02-29", None);
        check("%Y-%m-%d", "2026-13-01", None);
        check("%Y-%m-%d", "2026-00-10", None);
        check("%Y-%m-%d", "2026-04-31", None);
        check("%Y-%m-%d", "01/03/2026", None);
        check("%Y-%m-%d", "2026-03-01x", None);
        check("%Y-%m-%d", "", None);
        check("%d %b %Y", "1 Mrz 2026", None);
        check("%d %b %Y", "1 Ma 2026", None);
    }

    #[test]
    fn fixed_layouts() {
        let layout = |f: &str| DateFormat::parse(f).unwrap().fixed.map(|x| x.len);
        assert_eq!(layout("%Y-%m-%d"), Some(10));
        assert_eq!(layout("%Y%m%d"), Some(8));
        assert_eq!(layout("%d %b %Y"), None);
        assert_eq!(layout("%m/%d/%y"), None);
        assert_eq!(layout("%e.%m.%Y"), None);
        assert_eq!(layout("%Y\u{2013}%m\u{2013}%d"), None);
        let f = DateFormat::parse("%d/%m/%Y").unwrap();
        let fixed = f.fixed.unwrap();
        assert_eq!(fixed.fields(b"01/03/2026"), Some((2026, 3, 1)));
        assert_eq!(fixed.fields(b"1/03/2026"), None);
        assert_eq!(fixed.fields(b"01-03-2026"), None);
        assert_eq!(f.parse_days("31/02/2026"), Err(DateError::Calendar));
    }

    #[test]
    fn epoch_and_known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn bad_formats_are_refused() {
        assert_eq!(
            DateFormat::parse("%Y-%q"),
            Err(DateFormatError::Directive('q'))
        );
        assert_eq!(
            DateFormat::parse("%Y-%m-%"),
            Err(DateFormatError::TrailingPercent)
        );
        assert_eq!(DateFormat::parse("%Y-%m"), Err(DateFormatError::Incomplete));
        assert_eq!(
            DateFormat::parse("%d/%m/%Y").unwrap().to_string(),
            "%d/%m/%Y"
        );
    }

    #[test]
    fn error_text_names_the_format() {
        let f = DateFormat::parse("%d/%m/%Y").unwrap();
        let err = f.parse_days("2026-03-01").unwrap_err();
        assert_eq!(err.to_string(), "is not a date in the format %d/%m/%Y");
    }

    proptest! {
        #[test]
        fn days_round_trip(days in -719_528i32..=2_932_896) {
            // Years 0000..=9999.
            let text = format_days(days);
            let f = DateFormat::parse("%Y-%m-%d").unwrap();
            prop_assert_eq!(f.parse_days(&text), Ok(days));
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }

        #[test]
        fn parser_never_panics(text in "\\PC*", fmt in "[%YymbBdea/ -]{0,12}") {
            if let Ok(f) = DateFormat::parse(&fmt) {
                let _ = f.parse_days(&text);
            }
            let _ = DateFormat::parse("%d %b %Y").unwrap().parse_days(&text);
        }

        #[test]
        fn fixed_layout_is_the_item_reading(
            text in "[0-9]{0,4}[-/ ]?[0-9]{0,4}[-/ .]?[0-9]{0,4}[ ]?",
            fmt in prop::sample::select(vec![
                "%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%Y%m%d", "%d.%m.%Y", "%Y-%d-%m", "%d%m%Y",
                "%d/%m/%y", "%e %b %Y",
            ]),
        ) {
            let f = DateFormat::parse(fmt).unwrap();
            prop_assert_eq!(f.parse_days_with(&text, true), f.parse_days_with(&text, false), "{:?} {}", text, fmt);
        }

        #[test]
        fn fixed_layout_reads_real_dates(
            days in -719_528i32..=2_932_896,
            fmt in prop::sample::select(vec!["%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%Y%m%d", "%d%m%Y"]),
            pad: bool,
        ) {
            let (y, m, d) = civil_from_days(days);
            let (m, d) = if pad { (format!("{m:02}"), format!("{d:02}")) } else { (m.to_string(), d.to_string()) };
            let text = fmt.replace("%Y", &format!("{y:04}")).replace("%m", &m).replace("%d", &d);
            let f = DateFormat::parse(fmt).unwrap();
            prop_assert_eq!(f.parse_days_with(&text, true), f.parse_days_with(&text, false), "{:?} {}", text, fmt);
            if pad {
                prop_assert_eq!(f.parse_days(&text), Ok(days));
            }
        }

        #[test]
        fn any_format_agrees_with_the_item_reading(text in "[0-9a-z/ -]{0,12}", fmt in "[%Ymd/ 0-]{0,10}") {
            if let Ok(f) = DateFormat::parse(&fmt) {
                prop_assert_eq!(f.parse_days_with(&text, true), f.parse_days_with(&text, false), "{:?} {:?}", text, fmt);
            }
        }

        #[test]
        fn format_days_never_panics(days: i32) {
            let _ = format_days(days);
        }

        #[test]
        fn days_from_civil_never_panics(y: i32, m in 1u32..=12, d in 1u32..=31) {
            let _ = days_from_civil(y, m, d);
        }
    }
}
