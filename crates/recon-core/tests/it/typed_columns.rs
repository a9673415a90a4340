//! Typed columns of Parquet and Arrow files as a finance export has them:
//! float amounts (read only where exact), dates and timestamps (by their
//! calendar date), binary text, and the file-level checks a stream and a
//! stored file's metadata get.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, Date32Array, Date64Array, Float32Array, Float64Array, RecordBatch,
    StringArray, TimestampMillisecondArray, TimestampSecondArray,
};
use arrow_schema::{Field, Schema};
use recon_core::input::load_side;
use recon_core::mapping::SideMapping;
use recon_core::side::Side;
use tempfile::TempDir;

/// `columns` as one batch, each column nullable.
fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

/// `n` ids `r1`, `r2`, ...
fn ids(n: usize) -> ArrayRef {
    Arc::new(StringArray::from(
        (1..=n).map(|i| format!("r{i}")).collect::<Vec<_>>(),
    ))
}

fn write_parquet(dir: &TempDir, name: &str, batch: &RecordBatch) -> PathBuf {
    let path = dir.path().join(name);
    let mut w = parquet::arrow::ArrowWriter::try_new(
        fs::File::create(&path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    path
}

/// `path` (a Parquet file) stored as an upload is, in `dir`: the stored
/// file and what the conversion reports.
fn store_parquet(dir: &TempDir, path: &Path) -> (PathBuf, recon_core::input::Converted) {
    let stored = dir.path().join("stored.arrow");
    let converted = recon_core::input::convert_to_ipc(
        path,
        recon_core::input::Format::Parquet,
        &recon_core::input::ReadOptions::default(),
        &stored,
    )
    .unwrap();
    (stored, converted)
}

/// An Arrow stream of `batches` as bytes, with its end marker.
fn stream_bytes(batches: &[RecordBatch]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &batches[0].schema()).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    drop(w);
    out
}

fn load(path: &Path, map: &str) -> Result<Side, String> {
    let mapping: SideMapping = toml::from_str(map).unwrap();
    load_side(path, &mapping).map_err(|e| e.to_string())
}

const AMOUNTS: &str = "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"\n";

/// A float amount is taken where its shortest text has no more significant
/// digits than the type holds exactly (15 for float64, 6 for float32), and
/// refused at its row otherwise: `0.1 + 0.2` is not 0.30, and a float32
/// `1234567.89` is really 1234567.875.
#[test]
fn float_amounts_are_taken_only_where_exact() {
    let dir = tempfile::tempdir().unwrap();
    let values = vec![12.5, 0.1 + 0.2, 1e16, 1_234_567_890_123_456.8, -0.07];
    let path = write_parquet(
        &dir,
        "f64.parquet",
        &batch(vec![
            ("id", ids(values.len())),
            ("amount", Arc::new(Float64Array::from(values))),
        ]),
    );
    let side = load(&path, &format!("{AMOUNTS}on_error = \"quarantine\"")).unwrap();
    assert_eq!(side.amount, [1250, 1_000_000_000_000_000_000, -7]);
    assert_eq!(side.line, [1, 3, 5]);
    let refused: Vec<(u64, Option<&str>)> = side
        .rejects
        .iter()
        .map(|r| (r.line, r.value.as_deref()))
        .collect();
    assert_eq!(
        refused,
        [
            (2, Some("0.30000000000000004")),
            (4, Some("1234567890123456.8"))
        ]
    );
    let err = load(&path, AMOUNTS).unwrap_err();
    assert!(
        err.contains(
            "f64.parquet line 2, column \"amount\": \"0.30000000000000004\" is not exactly a \
             decimal: the column is float64, which holds decimals exactly only up to 15 \
             significant digits; write amounts as decimal or text"
        ),
        "{err}"
    );

    let values = vec![12.5f32, 1_234_567.9, 16_777_217.0, 99_999.99, 1234.5];
    let path = write_parquet(
        &dir,
        "f32.parquet",
        &batch(vec![
            ("id", ids(values.len())),
            ("amount", Arc::new(Float32Array::from(values))),
        ]),
    );
    let side = load(&path, &format!("{AMOUNTS}on_error = \"quarantine\"")).unwrap();
    assert_eq!(side.amount, [1250, 123_450]);
    let refused: Vec<u64> = side.rejects.iter().map(|r| r.line).collect();
    assert_eq!(refused, [2, 3, 4]);
    assert!(
        side.rejects[0].reason.contains("float32"),
        "{:?}",
        side.rejects[0]
    );
}

/// A float column read as text anywhere else (an extra column) is its
/// shortest decimal, never in exponent form.
#[test]
fn float_text_has_no_exponent() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(
        &dir,
        "x.parquet",
        &batch(vec![
            ("id", ids(2)),
            ("amount", Arc::new(StringArray::from(vec!["1.00", "2.00"]))),
            ("rate", Arc::new(Float64Array::from(vec![1e16, 1e-7]))),
        ]),
    );
    let side = load(&path, &format!("{AMOUNTS}extra = [\"rate\"]")).unwrap();
    let rate = &side.extra[0].1;
    assert_eq!(rate.get(0), Some("10000000000000000"));
    assert_eq!(rate.get(1), Some("0.0000001"));
}

/// Date and timestamp columns give their calendar date, whatever
/// `date_format` says (it is for text dates): a timestamp's date in its own
/// time zone, a named zone included.
#[test]
fn typed_dates_read_as_their_calendar_date() {
    const DAY: i64 = 86_400;
    // 2026-03-01 is day 20513.
    let midnight = 20_513 * DAY;
    let utc = |tz: &str, seconds: Vec<i64>| -> ArrayRef {
        Arc::new(TimestampSecondArray::from(seconds).with_timezone(tz))
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", ids(2)),
        ("amount", Arc::new(StringArray::from(vec!["1.00", "2.00"]))),
        ("d32", Arc::new(Date32Array::from(vec![20_513, 20_514]))),
        (
            "d64",
            Arc::new(Date64Array::from(vec![
                midnight * 1000,
                (midnight + DAY) * 1000,
            ])),
        ),
        (
            // No zone: the date as written, whatever the time of day.
            "naive",
            Arc::new(TimestampMillisecondArray::from(vec![
                (midnight + 23 * 3600 + 1800) * 1000,
                (midnight + DAY) * 1000,
            ])),
        ),
        ("utc", utc("UTC", vec![midnight + 9 * 3600, midnight + DAY])),
        // 03:00 UTC on 2 March is still 1 March in New York (UTC-5).
        (
            "new_york",
            utc(
                "America/New_York",
                vec![midnight + DAY + 3 * 3600, midnight + 2 * DAY],
            ),
        ),
        // 12:00 UTC on 1 March is already 2 March at +14:00.
        (
            "kiritimati",
            utc("+14:00", vec![midnight + 12 * 3600, midnight]),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(&dir, "dates.parquet", &batch(columns));
    let expected = [
        ("d32", [20_513, 20_514]),
        ("d64", [20_513, 20_514]),
        ("naive", [20_513, 20_514]),
        ("utc", [20_513, 20_514]),
        // 00:00 UTC on 3 March is 19:00 on 2 March there.
        ("new_york", [20_513, 20_514]),
        ("kiritimati", [20_514, 20_513]),
    ];
    for (column, days) in expected {
        let map = format!(
            "{AMOUNTS}date = \"{column}\"\ndate_format = \"%d/%m/%Y\"\nextra = [\"naive\"]"
        );
        let side = load(&path, &map).unwrap_or_else(|e| panic!("{column}: {e}"));
        assert_eq!(side.date, days.map(Some), "{column}");
        // The timestamp itself is kept whole where it is carried.
        assert_eq!(side.extra[0].1.get(0), Some("2026-03-01T23:30:00"));
    }
}

/// A value arrow cannot write as text is refused at its row and column, with
/// the value it stores.
#[test]
fn a_typed_value_without_text_is_refused_at_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(
        &dir,
        "bad-date.parquet",
        &batch(vec![
            ("id", ids(2)),
            ("amount", Arc::new(StringArray::from(vec!["1.00", "2.00"]))),
            ("date", Arc::new(Date32Array::from(vec![20_513, i32::MIN]))),
        ]),
    );
    let err = load(&path, &format!("{AMOUNTS}date = \"date\"")).unwrap_err();
    assert!(
        err.contains("bad-date.parquet line 2, column \"date\": \"-2147483648\" has no text form"),
        "{err}"
    );
}

/// Binary text that is not UTF-8 is refused at its row, never read as empty;
/// in an Arrow stream (whose reader decodes every column) an unmapped
/// column of it does not stop the load.
#[test]
fn binary_text_must_be_utf8_where_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let memo: ArrayRef = Arc::new(BinaryArray::from(vec![&b"cafe"[..], &b"caf\xe9"[..]]));
    let b = batch(vec![
        ("id", ids(2)),
        ("amount", Arc::new(StringArray::from(vec!["1.00", "2.00"]))),
        ("memo", memo),
    ]);
    let path = write_parquet(&dir, "bin.parquet", &b);
    let err = load(&path, &format!("{AMOUNTS}extra = [\"memo\"]")).unwrap_err();
    assert!(
        err.ends_with("bin.parquet line 2, column \"memo\": \"caf\\xe9\" is not valid UTF-8"),
        "{err}"
    );
    let stream = dir.path().join("bin.arrows");
    fs::write(&stream, stream_bytes(std::slice::from_ref(&b))).unwrap();
    let err = load(&stream, &format!("{AMOUNTS}extra = [\"memo\"]")).unwrap_err();
    assert!(err.contains("line 2, column \"memo\""), "{err}");
    let side = load(&stream, AMOUNTS).unwrap();
    assert_eq!(side.amount, [100, 200]);
}

/// A Parquet file of string columns as a legacy job writes them: `memo`
/// holds Latin-1 bytes in its second row group, after nulls. The parquet
/// crate's reader refuses such a column without saying where; the load
/// names the row (counted across row groups and nulls), the column and the
/// bytes (not a binary column's earlier bad bytes, which the reader does not
/// check), and reads the file when that column is not mapped.
fn latin1_in_a_string_column(path: &Path) {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::writer::SerializedFileWriter;

    let schema = Arc::new(
        parquet::schema::parser::parse_message_type(
            "message export { REQUIRED BYTE_ARRAY id (UTF8); REQUIRED BYTE_ARRAY amount (UTF8); \
             OPTIONAL BYTE_ARRAY memo (UTF8); OPTIONAL BYTE_ARRAY note (UTF8); \
             OPTIONAL BYTE_ARRAY digest; }",
        )
        .unwrap(),
    );
    let mut w =
        SerializedFileWriter::new(fs::File::create(path).unwrap(), schema, Arc::default()).unwrap();
    // Row groups of 3 and 4 rows; per column its values (`None` a null).
    // `digest` is binary (no string annotation): its bad bytes, in the first
    // row, are not what the reader refuses.
    let groups: [[Vec<Option<&[u8]>>; 5]; 2] = [
        [
            vec![Some(b"r1"), Some(b"r2"), Some(b"r3")],
            vec![Some(b"1.00"), Some(b"2.00"), Some(b"3.00")],
            vec![Some(b"a"), None, Some(b"b")],
            vec![None, None, None],
            vec![Some(b"\xff"), None, None],
        ],
        [
            vec![Some(b"r4"), Some(b"r5"), Some(b"r6"), Some(b"r7")],
            vec![Some(b"4.00"), Some(b"5.00"), Some(b"6.00"), Some(b"7.00")],
            vec![None, None, Some(b"caf\xe9 cr\xe8me"), Some(b"\xff")],
            // Later in its row group than memo's: memo's is the first.
            vec![None, None, None, Some(b"\xfe")],
            vec![None, None, None, None],
        ],
    ];
    for columns in groups {
        let mut rg = w.next_row_group().unwrap();
        for (i, column) in columns.iter().enumerate() {
            let mut col = rg.next_column().unwrap().unwrap();
            let values: Vec<ByteArray> =
                column.iter().flatten().map(|v| v.to_vec().into()).collect();
            let defs: Vec<i16> = column.iter().map(|v| i16::from(v.is_some())).collect();
            let defs = (i >= 2).then_some(&defs[..]);
            col.typed::<ByteArrayType>()
                .write_batch(&values, defs, None)
                .unwrap();
            col.close().unwrap();
        }
        rg.close().unwrap();
    }
    w.close().unwrap();
}

#[test]
fn a_string_column_that_is_not_utf8_is_named_at_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("legacy.parquet");
    latin1_in_a_string_column(&path);
    let expect = r#"legacy.parquet line 6, column "memo": "caf\xe9 cr\xe8me" is not valid UTF-8"#;
    let err = load(&path, &format!("{AMOUNTS}description = \"memo\"")).unwrap_err();
    assert!(err.ends_with(expect), "{err}");
    // Read with every column (as an upload is stored), the same value.
    let err = recon_core::input::read_table(
        &path,
        recon_core::input::Format::Parquet,
        &recon_core::input::ReadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.ends_with(expect), "{err}");
    // Only `note` mapped: its own value, in the last row.
    let err = load(&path, &format!("{AMOUNTS}description = \"note\"")).unwrap_err();
    assert!(
        err.ends_with(r#"legacy.parquet line 7, column "note": "\xfe" is not valid UTF-8"#),
        "{err}"
    );
    // Neither mapped: never decoded, the file reads.
    let side = load(&path, AMOUNTS).unwrap();
    assert_eq!(side.amount, [100, 200, 300, 400, 500, 600, 700]);
    // Stored as an upload: both columns kept empty and marked unreadable,
    // as a binary column holding such a value is; mapping one is refused
    // naming its first such value, the others load.
    let (stored, converted) = store_parquet(&dir, &path);
    assert_eq!(converted.rows, 7);
    assert_eq!(
        converted.columns,
        ["id", "amount", "memo", "note", "digest"]
    );
    assert_eq!(converted.unreadable, ["digest", "memo", "note"]);
    let side = load(&stored, AMOUNTS).unwrap();
    assert_eq!(side.amount, [100, 200, 300, 400, 500, 600, 700]);
    let err = load(&stored, &format!("{AMOUNTS}description = \"memo\"")).unwrap_err();
    assert!(err.contains("memo") && err.contains(expect), "{err}");
}

/// A stream cut off between two batches (no end marker) is refused, not read
/// as a shorter file; the whole stream reads.
#[test]
fn a_stream_without_its_end_marker_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let part = |from: usize| {
        batch(vec![
            (
                "id",
                Arc::new(StringArray::from(vec![format!("r{from}")])) as ArrayRef,
            ),
            ("amount", Arc::new(StringArray::from(vec!["1.00"]))),
        ])
    };
    let whole = stream_bytes(&[part(1), part(2)]);
    let path = dir.path().join("s.arrows");
    fs::write(&path, &whole).unwrap();
    assert_eq!(load(&path, AMOUNTS).unwrap().len(), 2);
    // The end marker is the last 8 bytes: 0xFFFFFFFF then a zero length.
    assert_eq!(
        whole[whole.len() - 8..],
        [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]
    );
    fs::write(&path, &whole[..whole.len() - 8]).unwrap();
    let err = load(&path, AMOUNTS).unwrap_err();
    assert!(
        err.contains("s.arrows: the Arrow stream is cut short"),
        "{err}"
    );
}

/// recon's own metadata in a file's schema is checked, not trusted: a first
/// line no file has is refused (it once overflowed a line number).
#[test]
fn a_first_line_past_any_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(vec![
        ("id", ids(1)),
        (
            "amount",
            Arc::new(StringArray::from(vec!["1.00"])) as ArrayRef,
        ),
    ]);
    let metadata = HashMap::from([("recon.first_line".to_owned(), u64::MAX.to_string())]);
    let schema = Arc::new(b.schema().as_ref().clone().with_metadata(metadata));
    let path = dir.path().join("meta.arrow");
    let mut w =
        arrow_ipc::writer::FileWriter::try_new(fs::File::create(&path).unwrap(), &schema).unwrap();
    w.write(&b.with_schema(schema.clone()).unwrap()).unwrap();
    w.finish().unwrap();
    let err = load(&path, AMOUNTS).unwrap_err();
    assert!(
        err.contains("recon.first_line metadata \"18446744073709551615\""),
        "{err}"
    );
}

/// Kinds survive the service's stored conversion: a float amount stored as
/// text is still read strictly.
#[test]
fn stored_conversions_keep_what_a_column_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(
        &dir,
        "f.parquet",
        &batch(vec![
            ("id", ids(2)),
            (
                "amount",
                Arc::new(Float64Array::from(vec![12.5, 0.1 + 0.2])) as ArrayRef,
            ),
            (
                "when",
                Arc::new(Date64Array::from(vec![20_513 * 86_400_000, 0])),
            ),
        ]),
    );
    let stored = dir.path().join("stored.arrow");
    recon_core::input::convert_to_ipc(
        &path,
        recon_core::input::Format::Parquet,
        &recon_core::input::ReadOptions::default(),
        &stored,
    )
    .unwrap();
    let map =
        format!("{AMOUNTS}date = \"when\"\ndate_format = \"%d/%m/%Y\"\non_error = \"quarantine\"");
    let side = load(&stored, &map).unwrap();
    assert_eq!(side.amount, [1250]);
    assert_eq!(side.date, [Some(20_513)]);
    assert_eq!(side.rejects.len(), 1);
    assert!(
        side.rejects[0].reason.contains("float64"),
        "{:?}",
        side.rejects[0]
    );
}

#[test]
fn timestamps_with_a_unit_other_than_seconds_keep_their_date() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(
        &dir,
        "ms.parquet",
        &batch(vec![
            ("id", ids(1)),
            (
                "amount",
                Arc::new(StringArray::from(vec!["1.00"])) as ArrayRef,
            ),
            (
                "at",
                // 23:30 UTC on 1 March is 00:30 on 2 March in Paris (UTC+1).
                Arc::new(
                    arrow_array::TimestampNanosecondArray::from(vec![
                        (20_513 * 86_400 + 23 * 3600 + 1800) * 1_000_000_000,
                    ])
                    .with_timezone("Europe/Paris"),
                ),
            ),
        ]),
    );
    let side = load(&path, &format!("{AMOUNTS}date = \"at\"")).unwrap();
    assert_eq!(side.date, [Some(20_514)]);
}

/// `amount_unit = "minor"` reads whole minor units, as payment processors
/// export them, in text and integer columns alike; a fraction is refused.
#[test]
fn minor_unit_amounts() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("psp.csv");
    fs::write(
        &csv,
        "id,amount,currency\np1,1230,USD\np2,-5,USD\np3,1230,JPY\np4,12.5,USD\n",
    )
    .unwrap();
    let map =
        "id = \"id\"\namount = \"amount\"\ncurrency = \"currency\"\namount_unit = \"minor\"\n";
    let side = load(&csv, &format!("{map}on_error = \"quarantine\"")).unwrap();
    assert_eq!(side.amount, [1230, -5, 1230]);
    assert_eq!(side.rejects.len(), 1);
    let err = load(&csv, map).unwrap_err();
    assert!(
        err.ends_with(
            "psp.csv line 5, column \"amount\": \"12.5\" is not a whole number of minor units \
             (the side's amount_unit is \"minor\")"
        ),
        "{err}"
    );

    let path = write_parquet(
        &dir,
        "cents.parquet",
        &batch(vec![
            ("id", ids(2)),
            (
                "amount",
                Arc::new(arrow_array::Int64Array::from(vec![123_456, -1])) as ArrayRef,
            ),
        ]),
    );
    let side = load(&path, &format!("{AMOUNTS}amount_unit = \"minor\"")).unwrap();
    assert_eq!(side.amount, [123_456, -1]);
    // The default is major units: the same column holds 123,456 dollars.
    let side = load(&path, AMOUNTS).unwrap();
    assert_eq!(side.amount, [12_345_600, -100]);

    let mapping: Result<SideMapping, _> = toml::from_str("amount_unit = \"cents\"");
    let err = mapping.unwrap_err().to_string();
    assert!(err.contains("major") && err.contains("minor"), "{err}");
}

/// A stored conversion (how the service keeps an upload) does not refuse a
/// file for a value without text in a column nobody may map: the column is
/// stored empty, listed as unreadable, and refused, saying why and where,
/// only where a mapping reads it.
#[test]
fn stored_conversions_mark_columns_with_values_without_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(
        &dir,
        "hashes.parquet",
        &batch(vec![
            ("id", ids(2)),
            (
                "amount",
                Arc::new(StringArray::from(vec!["1.00", "2.00"])) as ArrayRef,
            ),
            (
                "digest",
                Arc::new(BinaryArray::from(vec![&b"ok"[..], &b"\x9f\x00"[..]])),
            ),
            ("day", Arc::new(Date32Array::from(vec![20_513, i32::MIN]))),
        ]),
    );
    let (stored, converted) = store_parquet(&dir, &path);
    assert_eq!(converted.rows, 2);
    assert_eq!(converted.unreadable, ["day", "digest"]);
    let side = load(&stored, AMOUNTS).unwrap();
    assert_eq!(side.amount, [100, 200]);
    let err = load(&stored, &format!("{AMOUNTS}extra = [\"digest\"]")).unwrap_err();
    assert!(
        err.contains("column \"digest\" holds Binary (first at ")
            && err.contains("line 2, column \"digest\": \"\\x9f\\0\" is not valid UTF-8)"),
        "{err}"
    );
    let err = load(&stored, &format!("{AMOUNTS}date = \"day\"")).unwrap_err();
    assert!(
        err.contains("column \"day\" holds Date32 (first at "),
        "{err}"
    );
    // The original file itself is refused where the column is read.
    let err = load(&path, &format!("{AMOUNTS}extra = [\"digest\"]")).unwrap_err();
    assert!(err.contains("line 2, column \"digest\""), "{err}");
}

/// A mapping error is not hidden behind a value without text in a column
/// the mapping never reaches (an Arrow stream decodes every column).
#[test]
fn a_missing_column_is_named_before_an_unread_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    let b = batch(vec![
        ("id", ids(2)),
        (
            "amount",
            Arc::new(StringArray::from(vec!["1.00", "2.00"])) as ArrayRef,
        ),
        (
            "digest",
            Arc::new(BinaryArray::from(vec![&b"ok"[..], &b"\x9f"[..]])),
        ),
    ]);
    let stream = dir.path().join("s.arrows");
    fs::write(&stream, stream_bytes(std::slice::from_ref(&b))).unwrap();
    let err = load(
        &stream,
        "id = \"id\"\namount = \"amt\"\ncurrency_value = \"USD\"\n",
    )
    .unwrap_err();
    assert!(err.contains("column \"amt\" not found"), "{err}");
}

/// Only a text field's `recon.kind` mark is believed: a float field marked
/// otherwise is still a float, and a date column's text is a date only
/// when nothing but a time follows it.
#[test]
fn kind_marks_are_believed_only_on_text() {
    let dir = tempfile::tempdir().unwrap();
    let mark = |kind: &str| HashMap::from([("recon.kind".to_owned(), kind.to_owned())]);
    let fields = vec![
        Field::new("id", arrow_schema::DataType::Utf8, true),
        Field::new("amount", arrow_schema::DataType::Float64, true).with_metadata(mark("temporal")),
        Field::new("date", arrow_schema::DataType::Utf8, true).with_metadata(mark("temporal")),
    ];
    let schema = Arc::new(Schema::new(fields));
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![
            ids(3),
            Arc::new(Float64Array::from(vec![1.5, 0.1 + 0.2, 2.0])),
            Arc::new(StringArray::from(vec![
                "2026-03-01",
                "2026-03-01",
                "2026-03-01junk",
            ])),
        ],
    )
    .unwrap();
    let path = dir.path().join("marked.arrow");
    let mut w =
        arrow_ipc::writer::FileWriter::try_new(fs::File::create(&path).unwrap(), &schema).unwrap();
    w.write(&b).unwrap();
    w.finish().unwrap();
    let side = load(
        &path,
        &format!("{AMOUNTS}date = \"date\"\ndate_format = \"%d/%m/%Y\"\non_error = \"quarantine\""),
    )
    .unwrap();
    assert_eq!(side.amount, [150], "{:?} {:?}", side.date, side.rejects);
    assert_eq!(side.date, [Some(20_513)]);
    let reasons: Vec<&str> = side.rejects.iter().map(|r| r.reason.as_str()).collect();
    assert!(reasons[0].contains("float64"), "{reasons:?}");
    assert!(reasons[1].contains("2026-03-01junk"), "{reasons:?}");
}

/// A typed date past year 9999 (Arrow writes it with a sign) is refused as
/// out of range, not as text that misses a date format it never had.
#[test]
fn typed_dates_past_year_9999_are_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(
        &dir,
        "far.parquet",
        &batch(vec![
            ("id", ids(2)),
            (
                "amount",
                Arc::new(StringArray::from(vec!["1.00", "2.00"])) as ArrayRef,
            ),
            ("date", Arc::new(Date32Array::from(vec![20_513, 3_000_000]))),
        ]),
    );
    let err = load(&path, &format!("{AMOUNTS}date = \"date\"")).unwrap_err();
    assert!(
        err.ends_with(
            "far.parquet line 2, column \"date\": \"+10183-09-21\" is a date outside the years \
             0000 to 9999, which recon reads"
        ),
        "{err}"
    );
}
