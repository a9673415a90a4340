//! Parsing and printing of the two unit-bearing kinds of value: sizes and durations.
//!
//! Sizes accept a plain byte count (`65536`) or a number with a binary unit
//! (`64KiB`, `64K`, `64KB`, `512MiB`, `32G`, `1TiB`): every unit is a power of
//! 1024, as Docker's `--memory 32g` means. Durations accept plain seconds
//! (`30`) or a number with a unit (`500ms`, `30s`, `2m`, `1h`).

use std::time::Duration;

/// Why a size or duration did not parse; the caller adds where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Not a number followed by a known unit.
    #[error("not a number with a known unit")]
    Malformed,
    /// The value does not fit in 64 bits.
    #[error("too large")]
    Overflow,
}

/// Parses a size in bytes: `65536`, `64KiB`, `64K`, `512MiB`, `32GiB`, `32G`, `1T`.
///
/// # Errors
/// [`UnitError::Malformed`] for anything else, [`UnitError::Overflow`] past `u64::MAX`.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let (number, unit) = split_number(text)?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(UnitError::Malformed),
    };
    number.checked_mul(1u64 << shift).ok_or(UnitError::Overflow)
}

/// Parses a duration: plain seconds (`30`) or `500ms`, `30s`, `2m`, `1h`.
///
/// # Errors
/// [`UnitError::Malformed`] for anything else, [`UnitError::Overflow`] when too large.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let (number, unit) = split_number(text)?;
    let millis_per_unit: u64 = match unit.to_ascii_lowercase().as_str() {
        "ms" => 1,
        "" | "s" | "sec" | "secs" => 1_000,
        "m" | "min" | "mins" => 60_000,
        "h" => 3_600_000,
        _ => return Err(UnitError::Malformed),
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or(UnitError::Overflow)
}

/// Prints a size the way [`parse_size`] reads it, in the largest exact binary unit.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, name) in UNITS {
        let unit = 1u64 << shift;
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{name}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// Prints a size for people, rounded to one decimal when not exact: `23.5GiB`, `512MiB`.
pub fn format_size_approx(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, name) in UNITS {
        let unit = 1u64 << shift;
        if bytes >= unit {
            let tenths = (u128::from(bytes) * 10 + u128::from(unit) / 2) / u128::from(unit);
            return if tenths % 10 == 0 {
                format!("{}{name}", tenths / 10)
            } else {
                format!("{}.{}{name}", tenths / 10, tenths % 10)
            };
        }
    }
    format!("{bytes}B")
}

/// Prints a duration the way [`parse_duration`] reads it: `20s`, `10m`, `1500ms`.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if !millis.is_multiple_of(1000) {
        format!("{millis}ms")
    } else if millis >= 60_000 && millis.is_multiple_of(60_000) && millis < 3_600_000 {
        format!("{}m", millis / 60_000)
    } else if millis >= 3_600_000 && millis.is_multiple_of(3_600_000) {
        format!("{}h", millis / 3_600_000)
    } else {
        format!("{}s", millis / 1000)
    }
}

/// Splits `"64KiB"` into `(64, "KiB")`, allowing spaces between them and `_` in the number.
fn split_number(text: &str) -> Result<(u64, &str), UnitError> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(end);
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() {
        return Err(UnitError::Malformed);
    }
    let number = digits.parse::<u64>().map_err(|_| UnitError::Overflow)?;
    Ok((number, unit.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_every_spelling() {
        let cases = [
            ("65536", 65536),
            ("64KiB", 65536),
            ("64K", 65536),
            ("64kb", 65536),
            ("512MiB", 512 << 20),
            ("32GiB", 32 << 30),
            ("32G", 32 << 30),
            (" 1 TiB ", 1 << 40),
            ("1_000", 1000),
            ("10B", 10),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_sizes() {
        for text in ["", "abc", "12 parsecs", "-1", "1.5G", "G"] {
            assert_eq!(parse_size(text), Err(UnitError::Malformed), "{text}");
        }
        assert_eq!(parse_size("99999999999T"), Err(UnitError::Overflow));
        assert_eq!(
            parse_size("999999999999999999999"),
            Err(UnitError::Overflow)
        );
    }

    #[test]
    fn durations_in_every_spelling() {
        let cases = [
            ("30", 30_000),
            ("30s", 30_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("250ms", 250),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(want)),
                "{text}"
            );
        }
        for text in ["", "soon", "1d", "-5s", "1.5s"] {
            assert_eq!(parse_duration(text), Err(UnitError::Malformed), "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_size_and_duration_round_trips(bytes: u64, millis in 0u64..(1 << 50)) {
            proptest::prop_assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
            let d = Duration::from_millis(millis);
            proptest::prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn printing_round_trips() {
        for bytes in [0, 10, 1000, 65536, 262_144, 512 << 20, 32 << 30, 3 << 40] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
        }
        assert_eq!(format_size(262_144), "256KiB");
        assert_eq!(format_size_approx(24_684_084 * 1024), "23.5GiB");
        assert_eq!(format_size_approx(32 << 30), "32GiB");
        assert_eq!(format_size_approx(1000), "1000B");
        for millis in [250, 1000, 20_000, 120_000, 600_000, 3_600_000, 5_400_000] {
            let d = Duration::from_millis(millis);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        assert_eq!(format_duration(Duration::from_secs(180)), "3m");
        assert_eq!(format_duration(Duration::from_secs(20)), "20s");
    }
}
