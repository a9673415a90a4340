//! Text helpers for matching: reference normalization, similarity folding,
//! key hashing, Jaro-Winkler and the token-set ratio.
//!
//! Everything here writes into caller-owned buffers so the matcher can prepare
//! a whole side without allocating per record.
//!
//! Normalized references (`reference = "normalized"` in a pass):
//! 1. Unicode NFKC (skipped for pure-ASCII input, where it is the identity),
//! 2. lowercase,
//! 3. every character that is not alphanumeric (punctuation, whitespace) removed,
//! 4. the longest configured prefix (itself normalized the same way) removed when
//!    something remains after it,
//! 5. leading zeros removed (one `0` is kept when the key is all zeros).
//!
//! So `INV-00123`, `inv 00123`, `Invoice #123` (with `strip_prefixes =
//! ["INV", "INVOICE"]`) and `123` all normalize to `123`. An empty result
//! counts as a missing reference.

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// Appends the normalized form of `raw` (see the module docs) to `out`.
///
/// `prefixes` must already be normalized with an empty prefix list and sorted
/// longest first; [`normalize_prefixes`] does that.
pub fn normalize_reference_into(raw: &str, prefixes: &[String], out: &mut String) {
    if raw.is_ascii()
        && let Some(kept) = ascii_key(raw)
    {
        let (bytes, len) = kept;
        let body = &bytes[..len];
        let rest = &body[cut_len(body, prefixes)..];
        // Only ASCII alphanumerics were kept, so this never falls back.
        out.push_str(std::str::from_utf8(rest).unwrap_or_default());
        return;
    }
    normalize_any_into(raw, prefixes, out);
}

/// [`normalize_reference_into`] for any text, character by character: what
/// references too long for the stack path (or not ASCII) take.
fn normalize_any_into(raw: &str, prefixes: &[String], out: &mut String) {
    let start = out.len();
    if raw.is_ascii() {
        for b in raw.bytes() {
            if b.is_ascii_alphanumeric() {
                out.push(b.to_ascii_lowercase() as char);
            }
        }
    } else {
        for_each_nfkc(raw, |c| {
            for lc in c.to_lowercase() {
                if lc.is_alphanumeric() {
                    out.push(lc);
                }
            }
        });
    }
    let drop = cut_len(&out.as_bytes()[start..], prefixes);
    if drop > 0 {
        out.replace_range(start..start + drop, "");
    }
}

/// Longest ASCII reference the stack path of [`normalize_reference_into`]
/// takes (every real one; longer ones take the general path).
const ASCII_KEY: usize = 64;

/// An ASCII reference's alphanumerics, lowercased, in a stack buffer with
/// their count; `None` when it is longer than [`ASCII_KEY`].
fn ascii_key(raw: &str) -> Option<([u8; ASCII_KEY], usize)> {
    if raw.len() > ASCII_KEY {
        return None;
    }
    let mut bytes = [0u8; ASCII_KEY];
    let mut len = 0;
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() {
            bytes[len] = b.to_ascii_lowercase();
            len += 1;
        }
    }
    Some((bytes, len))
}

/// How many leading bytes of a key's alphanumerics (`body`) steps 4 and 5 of
/// the module docs remove: the first (longest) prefix that leaves something
/// after it, then leading zeros, keeping one `0` of an all-zero rest.
fn cut_len(body: &[u8], prefixes: &[String]) -> usize {
    let cut = prefixes
        .iter()
        .find(|p| !p.is_empty() && body.len() > p.len() && body.starts_with(p.as_bytes()))
        .map_or(0, |p| p.len());
    let rest = &body[cut..];
    let zeros = rest.iter().take_while(|&&b| b == b'0').count();
    if zeros == rest.len() && zeros > 0 {
        cut + zeros - 1
    } else {
        cut + zeros
    }
}

/// Normalizes configured prefixes (NFKC, lowercase, alphanumerics only) and
/// sorts them longest first, dropping empty and repeated ones.
pub fn normalize_prefixes(raw: &[String]) -> Vec<String> {
    let mut out: Vec<String> = raw
        .iter()
        .map(|p| {
            let mut s = String::new();
            for c in p.nfkc() {
                for lc in c.to_lowercase() {
                    if lc.is_alphanumeric() {
                        s.push(lc);
                    }
                }
            }
            s
        })
        .filter(|s| !s.is_empty())
        .collect();
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out.dedup();
    out
}

/// Appends the similarity form of `raw` to `out`: NFKC, lowercase, every run of
/// non-alphanumeric characters turned into one space, trimmed.
pub fn fold_for_similarity_into(raw: &str, out: &mut String) {
    let start = out.len();
    let mut pending_space = false;
    let mut push = |c: char, out: &mut String| {
        if c.is_alphanumeric() {
            if pending_space && out.len() > start {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        } else {
            pending_space = true;
        }
    };
    if raw.is_ascii() {
        for b in raw.bytes() {
            push(b.to_ascii_lowercase() as char, out);
        }
    } else {
        for_each_nfkc(raw, |c| {
            for lc in c.to_lowercase() {
                push(lc, out);
            }
        });
    }
}

/// Calls `f` with each character of `raw` in NFKC. Text the quick check
/// finds in NFKC already (nearly every non-ASCII name, e.g. `Müller` with its
/// precomposed `ü`) is passed as it is, without the normalizer's buffering.
fn for_each_nfkc(raw: &str, mut f: impl FnMut(char)) {
    if is_nfkc_quick(raw.chars()) == IsNormalized::Yes {
        raw.chars().for_each(&mut f);
    } else {
        raw.nfkc().for_each(f);
    }
}

/// A 64-bit FNV-1a hash of `s`: stable across runs, platforms and thread counts
/// (unlike `std`'s randomly seeded hasher), so it may decide processing order.
pub fn hash_key(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Jaro-Winkler similarity in `[0, 1]` of two already folded strings, as
/// `strsim::jaro_winkler` computes it (bit for bit). ASCII strings of up to
/// 64 bytes, nearly every name, take a byte path with its match flags
/// on the stack: strsim walks `char`s and allocates its flags on every call,
/// which is per candidate pair in a name pass.
pub fn jaro_winkler(a: &str, b: &str) -> f64 {
    if a.len() <= SHORT && b.len() <= SHORT && a.is_ascii() && b.is_ascii() {
        let sim = jaro_short(a.as_bytes(), b.as_bytes());
        if sim > 0.7 {
            let prefix = a
                .bytes()
                .take(4)
                .zip(b.bytes())
                .take_while(|(x, y)| x == y)
                .count();
            sim + 0.1 * prefix as f64 * (1.0 - sim)
        } else {
            sim
        }
    } else {
        strsim::jaro_winkler(a, b)
    }
}

/// Longest strings [`jaro_winkler`]'s byte path takes.
const SHORT: usize = 64;

/// Jaro similarity of two byte strings of at most [`SHORT`] bytes: the same
/// matching window, first-free-match rule, transposition count and
/// arithmetic (in the same order) as `strsim::generic_jaro`, with `b`'s
/// positions as bits of one word. Each byte value gets the positions in `b`
/// holding it, so `a[i]`'s first free match in its window is the lowest bit
/// of `positions[a[i]] & window & !taken`: one step a byte of `a` where
/// strsim scans the window byte by byte (a name pass scores every candidate
/// pair, and the scan's early exits were its mispredicted branches).
fn jaro_short(a: &[u8], b: &[u8]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    debug_assert!(a.len() <= SHORT && b.len() <= SHORT);
    let range = (a.len().max(b.len()) / 2).saturating_sub(1);
    // Bits `0..n` set (`n` up to 64).
    let low = |n: usize| u64::MAX.checked_shr(64 - n as u32).unwrap_or(0);
    let mut positions = [0u64; 256];
    for (j, &y) in b.iter().enumerate() {
        positions[usize::from(y)] |= 1 << j;
    }
    let (mut a_taken, mut b_taken) = (0u64, 0u64);
    for (i, &x) in a.iter().enumerate() {
        let lo = i.saturating_sub(range);
        let hi = b.len().min(i + range + 1);
        if lo >= hi {
            // Past `b`'s end: no later byte of `a` has a window either.
            break;
        }
        let window = low(hi) & !low(lo);
        let free = positions[usize::from(x)] & window & !b_taken;
        if free != 0 {
            // The lowest set bit: the window's first free match.
            b_taken |= free & free.wrapping_neg();
            a_taken |= 1 << i;
        }
    }
    let matches = a_taken.count_ones() as usize;
    if matches == 0 {
        return 0.0;
    }
    // The k-th matched byte of `a` against the k-th matched byte of `b`.
    let mut transpositions = 0usize;
    while a_taken != 0 {
        let (i, j) = (a_taken.trailing_zeros(), b_taken.trailing_zeros());
        if a[i as usize] != b[j as usize] {
            transpositions += 1;
        }
        a_taken &= a_taken - 1;
        b_taken &= b_taken - 1;
    }
    transpositions /= 2;
    ((matches as f64 / a.len() as f64)
        + (matches as f64 / b.len() as f64)
        + ((matches - transpositions) as f64 / matches as f64))
        / 3.0
}

/// Token-set ratio in `[0, 1]` of two already folded strings (tokens split on
/// spaces), as popularised by fuzzywuzzy: with `I` the sorted common tokens and
/// `A`, `B` the sorted tokens only in `a`, only in `b`, it is the best
/// normalized Levenshtein similarity among `(I, I+A)`, `(I, I+B)` and
/// `(I+A, I+B)`. One token set containing the other scores 1; no tokens on
/// either side scores 0.
pub fn token_set_ratio(a: &str, b: &str) -> f64 {
    let mut ta: Vec<&str> = a.split(' ').filter(|t| !t.is_empty()).collect();
    let mut tb: Vec<&str> = b.split(' ').filter(|t| !t.is_empty()).collect();
    if ta.is_empty() || tb.is_empty() {
        return 0.0;
    }
    ta.sort_unstable();
    ta.dedup();
    tb.sort_unstable();
    tb.dedup();
    let (mut common, mut only_a, mut only_b) = (Vec::new(), Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < ta.len() || j < tb.len() {
        match (ta.get(i), tb.get(j)) {
            (Some(x), Some(y)) if x == y => {
                common.push(*x);
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                only_a.push(*x);
                i += 1;
            }
            (Some(_), Some(y)) => {
                only_b.push(*y);
                j += 1;
            }
            (Some(x), None) => {
                only_a.push(*x);
                i += 1;
            }
            (None, Some(y)) => {
                only_b.push(*y);
                j += 1;
            }
            (None, None) => break,
        }
    }
    let t0 = common.join(" ");
    let join = |rest: &[&str]| {
        if t0.is_empty() {
            rest.join(" ")
        } else if rest.is_empty() {
            t0.clone()
        } else {
            format!("{t0} {}", rest.join(" "))
        }
    };
    let t1 = join(&only_a);
    let t2 = join(&only_b);
    let mut best = strsim::normalized_levenshtein(&t1, &t2);
    if !t0.is_empty() {
        best = best
            .max(strsim::normalized_levenshtein(&t0, &t1))
            .max(strsim::normalized_levenshtein(&t0, &t2));
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str, prefixes: &[&str]) -> String {
        let p: Vec<String> = prefixes.iter().map(|s| s.to_string()).collect();
        let p = normalize_prefixes(&p);
        let mut out = String::from("keep|");
        normalize_reference_into(raw, &p, &mut out);
        out.strip_prefix("keep|").unwrap().to_string()
    }

    proptest::proptest! {
        #[test]
        fn ascii_references_take_the_stack_path_to_the_same_key(
            raw in "[ -~]{0,80}",
            prefixes in proptest::collection::vec("[a-zA-Z0-9-]{0,4}", 0..3),
        ) {
            let p = normalize_prefixes(&prefixes);
            let (mut fast, mut any) = (String::from("keep|"), String::from("keep|"));
            normalize_reference_into(&raw, &p, &mut fast);
            normalize_any_into(&raw, &p, &mut any);
            proptest::prop_assert_eq!(fast, any);
        }
    }

    #[test]
    fn references_normalize_to_one_key() {
        let p = ["INV", "INVOICE"];
        assert_eq!(norm("INV-00123", &p), "123");
        assert_eq!(norm("inv 00123", &p), "123");
        assert_eq!(norm("Invoice #123", &p), "123");
        assert_eq!(norm("123", &p), "123");
        assert_eq!(norm("ＩＮＶ－１２３", &p), "123"); // full-width, NFKC
        assert_eq!(norm("INV", &p), "inv"); // nothing would remain: prefix kept
        assert_eq!(norm("000", &p), "0");
        assert_eq!(norm(" - ", &p), "");
        assert_eq!(norm("AB-12", &[]), "ab12");
    }

    proptest::proptest! {
        /// The quick check's shortcut gives what the normalizer gives, on
        /// text mixing ASCII, precomposed and combining letters and
        /// compatibility characters (ligatures, full-width, superscripts).
        #[test]
        fn nfkc_shortcut_equals_the_normalizer(
            raw in "[a-zA-Z0-9 üÜéÅ\u{0308}\u{0301}\u{212B}\u{FB01}\u{FF21}\u{00B2}\u{1E9B}\u{0323}]{0,12}|.{0,12}",
        ) {
            let mut fast = String::new();
            for_each_nfkc(&raw, |c| fast.push(c));
            proptest::prop_assert_eq!(fast, raw.nfkc().collect::<String>());
        }
    }

    #[test]
    fn folding_collapses_punctuation_and_case() {
        let mut s = String::new();
        fold_for_similarity_into("  ACME, Corp.  Ltd ", &mut s);
        assert_eq!(s, "acme corp ltd");
    }

    #[test]
    fn token_set_scores_subsets_as_equal() {
        assert_eq!(token_set_ratio("acme corp", "corp acme ltd"), 1.0);
        assert_eq!(token_set_ratio("", "x"), 0.0);
        let r = token_set_ratio("acme corp", "zenith bank");
        assert!(r < 0.5, "{r}");
        assert!((jaro_winkler("martha", "marhta") - 0.9611).abs() < 1e-3);
    }

    proptest::proptest! {
        /// The byte path gives strsim's value bit for bit, on short ASCII
        /// strings from a small alphabet (so matches and transpositions
        /// are common), and on any strings (which may take strsim's path).
        #[test]
        fn jaro_winkler_equals_strsim_on_ascii(a in "[abcde ]{0,70}", b in "[abcde ]{0,70}") {
            proptest::prop_assert_eq!(
                jaro_winkler(&a, &b).to_bits(),
                strsim::jaro_winkler(&a, &b).to_bits()
            );
        }

        /// Lengths at the word's edge: 64 bytes is the last the bit path
        /// takes, with windows reaching bit 63.
        #[test]
        fn jaro_winkler_equals_strsim_at_64_bytes(a in "[ab]{56,66}", b in "[ab]{56,66}") {
            proptest::prop_assert_eq!(
                jaro_winkler(&a, &b).to_bits(),
                strsim::jaro_winkler(&a, &b).to_bits()
            );
        }

        #[test]
        fn jaro_winkler_equals_strsim_on_any_text(a in ".{0,20}", b in ".{0,20}") {
            proptest::prop_assert_eq!(
                jaro_winkler(&a, &b).to_bits(),
                strsim::jaro_winkler(&a, &b).to_bits()
            );
        }
    }

    #[test]
    fn jaro_winkler_known_values() {
        for (a, b) in [
            ("martha", "marhta"),
            ("dixon", "dicksonx"),
            ("acme corp", "acme corporation"),
            ("", ""),
            ("a", ""),
            ("abc", "xyz"),
        ] {
            assert_eq!(
                jaro_winkler(a, b).to_bits(),
                strsim::jaro_winkler(a, b).to_bits(),
                "{a:?} {b:?}"
            );
        }
    }

    #[test]
    fn hash_is_stable() {
        assert_eq!(hash_key(""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(hash_key("a"), hash_key("b"));
    }
}
