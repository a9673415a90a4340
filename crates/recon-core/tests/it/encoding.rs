//! CSV files in other encodings than UTF-8 (a mapping's `encoding`): read as
//! the same file in UTF-8 reads, hashed as written, refused where a byte does
//! not belong to the encoding.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::fs;
use std::path::Path;

use proptest::prelude::*;
use recon_core::input::{SideLoad, load_side};
use recon_core::mapping::{SideMapping, TextEncoding};
use recon_core::rules::RoleSet;
use recon_core::sha256_hex;
use recon_core::side::Side;

const MAP: &str = r#"
id = "id"
amount = "amount"
currency_value = "EUR"
reference = "ref"
counterparty = "name"
"#;

fn mapping(extra: &str) -> SideMapping {
    toml::from_str(&format!("{MAP}\n{extra}")).unwrap()
}

/// Loads `bytes` as `name` with [`MAP`] and `extra` keys: the side, or the
/// error's text.
fn load(name: &str, bytes: &[u8], extra: &str) -> Result<Side, String> {
    let (_dir, path) = crate::input::file(name, bytes);
    load_side(&path, &mapping(extra)).map_err(|e| e.to_string())
}

/// What a side holds, as text: compared between a file and its UTF-8 twin.
fn shown(side: &Side) -> Vec<String> {
    (0..side.len())
        .map(|i| {
            format!(
                "{}|{}|{:?}|{:?}|{}",
                side.id.get(i).unwrap_or(""),
                side.amount[i],
                side.reference.get(i),
                side.counterparty.get(i),
                side.line[i]
            )
        })
        .collect()
}

fn windows_1252(text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(text);
    assert!(!unmappable, "{text}");
    bytes.into_owned()
}

fn shift_jis(text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(text);
    assert!(!unmappable, "{text}");
    bytes.into_owned()
}

/// UTF-16 with its byte order mark, little- or big-endian.
fn utf16(text: &str, little: bool) -> Vec<u8> {
    std::iter::once('\u{feff}' as u16)
        .chain(text.encode_utf16())
        .flat_map(|u| {
            if little {
                u.to_le_bytes()
            } else {
                u.to_be_bytes()
            }
        })
        .collect()
}

const TEXT: &str = "id,amount,ref,name\n\
    1,12.50,INV-1,Müller Café\n\
    2,-3.00,INV-2,\"Straße 5,\n2. Stock\"\n\
    \n\
    3,7.25,\"€ 100\",Ørsted A/S\n";

#[test]
fn a_windows_1252_file_reads_as_its_utf8_twin() {
    let utf8 = load("a.csv", TEXT.as_bytes(), "").unwrap();
    assert_eq!(utf8.counterparty.get(0), Some("Müller Café"));
    assert_eq!(utf8.line, [2, 3, 6]);
    for label in ["windows-1252", "latin1", "ISO-8859-1", " cp1252 "] {
        let side = load(
            "a.csv",
            &windows_1252(TEXT),
            &format!("encoding = {label:?}"),
        )
        .unwrap();
        assert_eq!(shown(&side), shown(&utf8), "{label}");
    }
    // Read as UTF-8 (no `encoding`), the same bytes are refused where the
    // first one that is not UTF-8 stands.
    let err = load("a.csv", &windows_1252(TEXT), "").unwrap_err();
    assert!(
        err.ends_with(r#"a.csv line 2, column "name": "M\xfcller Caf\xe9" is not valid UTF-8"#),
        "{err}"
    );
}

#[test]
fn utf16_files_read_by_their_byte_order_mark() {
    let tsv = TEXT
        .replace(',', "\t")
        .replace("\"Straße 5\t", "\"Straße 5,");
    let utf8 = load(
        "a.tsv",
        tsv.as_bytes(),
        "delimiter = \"\\t\"\nformat = \"csv\"",
    )
    .unwrap();
    assert_eq!(utf8.len(), 3);
    for (little, label) in [
        (true, "utf-16le"),
        (false, "utf-16be"),
        (false, "utf-16le"),
        (true, "utf-8"),
        (false, "windows-1252"),
    ] {
        // A byte order mark wins over the label: a big-endian file labelled
        // little-endian still reads, and so does one labelled UTF-8 (or
        // left at it, below), as Excel's "Unicode text" comes.
        let side = load(
            "a.tsv",
            &utf16(&tsv, little),
            &format!("delimiter = \"\\t\"\nformat = \"csv\"\nencoding = {label:?}"),
        )
        .unwrap();
        assert_eq!(
            shown(&side),
            shown(&utf8),
            "{label}, little-endian {little}"
        );
    }
    let side = load(
        "a.tsv",
        &utf16(&tsv, true),
        "delimiter = \"\\t\"\nformat = \"csv\"",
    )
    .unwrap();
    assert_eq!(shown(&side), shown(&utf8), "no label");
    // A UTF-8 byte order mark too: the label is then not read.
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(TEXT.as_bytes());
    let side = load("bom.csv", &bom, "encoding = \"windows-1252\"").unwrap();
    assert_eq!(
        shown(&side),
        shown(&load("a.csv", TEXT.as_bytes(), "").unwrap())
    );
}

#[test]
fn the_digest_is_of_the_files_own_bytes() {
    let bytes = utf16(TEXT, true);
    let (_dir, path) = crate::input::file("a.csv", &bytes);
    // Labelled, and found by its byte order mark alone.
    for (map, roles) in [
        (mapping("encoding = \"utf-16le\""), RoleSet::ALL),
        (mapping("encoding = \"utf-16le\""), RoleSet::ALWAYS),
        (mapping(""), RoleSet::ALL),
    ] {
        let (side, sha256) = SideLoad::new(&path, &map)
            .roles(roles)
            .load_digested()
            .unwrap();
        assert_eq!(side.len(), 3);
        assert_eq!(sha256, sha256_hex(&bytes));
    }
}

#[test]
fn bytes_outside_the_encoding_are_refused_at_their_line_and_column() {
    let check = |bytes: &[u8], expect: &str| {
        for on_error in ["fail", "quarantine"] {
            let extra = format!("encoding = \"shift_jis\"\non_error = \"{on_error}\"");
            let err = load("sj.csv", bytes, &extra).unwrap_err();
            assert!(err.ends_with(expect), "{on_error}: {err}");
        }
    };
    // 0x81 0x20: a lead byte without its trail, in a quoted field on the
    // record's second line (named by the line the record starts on), after
    // a record holding the delimiter quoted.
    let mut bytes = shift_jis("id,amount,ref,name\n1,1.00,\"a,b\",東京\n2,2.00,r,\"x,\ny");
    bytes.extend_from_slice(b"\x81\x20z\"\n3,3.00,r3,n\n");
    check(
        &bytes,
        r#"sj.csv line 3, column "name": \x81 is not valid Shift_JIS"#,
    );
    // In the header: its line alone.
    let mut header = b"id,amount,ref,na".to_vec();
    header.extend_from_slice(b"\x81\x20me\n1,1.00,r,n\n");
    check(&header, r"sj.csv line 1: \x81 is not valid Shift_JIS");
    // Past the decoder's first chunk: the line still counts every line.
    let mut long = shift_jis("id,amount,ref,name\n");
    for i in 0..20_000 {
        long.extend_from_slice(&shift_jis(&format!("{i},1.00,r{i},名前{i}\n")));
    }
    long.extend_from_slice(b"20000,1.00,\x81\x20,n\n");
    check(
        &long,
        r#"sj.csv line 20002, column "ref": \x81 is not valid Shift_JIS"#,
    );
}

#[test]
fn an_unclosed_quote_shows_its_decoded_text() {
    let err = load(
        "open.csv",
        &windows_1252("id,amount,ref,name\n1,1.00,r,\"Müller\nline\n"),
        "encoding = \"windows-1252\"",
    )
    .unwrap_err();
    assert!(
        err.ends_with(
            "open.csv line 2, column \"name\": the quoted field starting \"Müller\" is never \
             closed: the file ends inside it 1 line later, so the rows after it cannot be read"
        ),
        "{err}"
    );
}

#[test]
fn labels_are_checked_where_they_are_written() {
    assert_eq!(
        TextEncoding::from_label("LATIN1").map(TextEncoding::name),
        Some("windows-1252")
    );
    // Labels the standard maps to its replacement encoding decode nothing.
    assert!(TextEncoding::from_label("iso-2022-kr").is_none());
    let err = toml::from_str::<SideMapping>("encoding = \"ebcdic\"").unwrap_err();
    assert!(
        err.to_string().contains("encoding \"ebcdic\" is not known"),
        "{err}"
    );
    // Other formats are UTF-8 (or binary) by their own definition.
    let err = mapping("format = \"parquet\"\nencoding = \"latin1\"")
        .validate()
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("`encoding` is set but `format` is parquet"),
        "{err}"
    );
}

/// A few records of text drawn from `alphabet`, with quoting, delimiters
/// and line breaks inside fields.
fn records(alphabet: &'static [&'static str]) -> impl Strategy<Value = String> {
    let field = prop::collection::vec(prop::sample::select(alphabet), 0..12)
        .prop_map(|parts| parts.concat());
    prop::collection::vec((field.clone(), field), 1..40).prop_map(|rows| {
        let mut text = String::from("id,amount,ref,name\n");
        for (i, (reference, name)) in rows.iter().enumerate() {
            let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            text.push_str(&format!("{i},1.00,{},{}\n", quote(reference), quote(name)));
        }
        text
    })
}

const SYNTAX: [&str; 6] = ["a", "0", " ", ",", "\n", "\""];

/// Text windows-1252 writes, and text Shift_JIS writes.
const LATIN: &[&str] = &[
    SYNTAX[0], SYNTAX[1], SYNTAX[2], SYNTAX[3], SYNTAX[4], SYNTAX[5], "é", "ß", "Ø", "€", "œ",
];
const JAPANESE: &[&str] = &[
    SYNTAX[0], SYNTAX[1], SYNTAX[2], SYNTAX[3], SYNTAX[4], SYNTAX[5], "東", "京", "ー", "ｱ", "表",
];

/// `text` in `encoding` reads as `utf8`, the side of its UTF-8 twin.
fn reads_as(path: &Path, bytes: &[u8], encoding: &str, utf8: &[String]) {
    fs::write(path, bytes).unwrap();
    let side = load_side(path, &mapping(&format!("encoding = {encoding:?}"))).unwrap();
    assert_eq!(&shown(&side), utf8, "{encoding}");
}

fn utf8_side(path: &Path, text: &str) -> Vec<String> {
    fs::write(path, text.as_bytes()).unwrap();
    shown(&load_side(path, &mapping("")).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the text, a file in windows-1252, Shift_JIS (`表` is
    /// 0x95 0x5C, its trail byte a backslash) or UTF-16 reads as its UTF-8
    /// twin.
    #[test]
    fn any_text_reads_as_its_utf8_twin(latin in records(LATIN), japanese in records(JAPANESE)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let utf8 = utf8_side(&path, &latin);
        reads_as(&path, &windows_1252(&latin), "windows-1252", &utf8);
        reads_as(&path, &utf16(&latin, false), "utf-16be", &utf8);
        let utf8 = utf8_side(&path, &japanese);
        reads_as(&path, &shift_jis(&japanese), "shift_jis", &utf8);
        reads_as(&path, &utf16(&japanese, true), "utf-16le", &utf8);
    }
}

/// Files far larger than the decoder's chunk: characters cut between two
/// reads of the file are read whole.
#[test]
fn large_files_read_across_the_decoders_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    let mut text = String::from("id,amount,ref,name\n");
    for i in 0..30_000 {
        text.push_str(&format!("{i},1.00,\"表{i}\nー\",東京ｱ{i}\n"));
    }
    let utf8 = utf8_side(&path, &text);
    assert_eq!(utf8.len(), 30_000);
    reads_as(&path, &shift_jis(&text), "shift_jis", &utf8);
    reads_as(&path, &utf16(&text, false), "utf-16be", &utf8);
}
