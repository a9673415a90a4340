//! Dataset and job ids: random UUIDs, validated before they touch a path.
//!
//! An id from a URL is only ever joined to a directory after [`is_valid`]
//! accepted it: exactly 36 characters of `[0-9a-f-]`, so no `/`, `..` or other
//! escape from the data directory can get through.

/// A fresh random id (UUID v4, lowercase, hyphenated).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// Whether `id` has the shape of an id this service issues.
pub fn is_valid(id: &str) -> bool {
    id.len() == 36
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_ids_are_valid_and_escapes_are_not() {
        assert!(is_valid(&new_id()));
        for bad in [
            "",
            "..",
            "../../../../etc/passwd",
            "0123456789abcdef0123456789abcdef012/",
            "0123456789ABCDEF-0123456789abcdef-01",
            "0123456789abcdef-0123456789abcdef-0",
            "0123456789abcdef-0123456789abcdef-0%2",
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
