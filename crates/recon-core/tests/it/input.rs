//! The input layer end to end: real files in every format, amount and date styles,
//! and the exact text of the errors a person sees for bad input.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use recon_core::error::InputError;
use recon_core::input::{
    Format, ReadOptions, SideLoad, Table, convert_to_ipc, load_side, load_side_with, read_table,
    write_rejects_csv, write_table_ipc,
};
use recon_core::mapping::{OnError, SideMapping, TextEncoding};
use recon_core::rules::RoleSet;
use recon_core::sha256_hex;
use recon_core::side::Side;
use tempfile::TempDir;

/// Writes `content` to `name` in a fresh temporary directory.
pub(crate) fn file(name: &str, content: &[u8]) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    fs::write(&path, content).unwrap();
    (dir, path)
}

/// A mapping from TOML text, as the rules file would hold it.
fn mapping(toml_text: &str) -> SideMapping {
    toml::from_str(toml_text).unwrap()
}

const BASIC: &str = r#"
id = "id"
amount = "amount"
currency = "currency"
date = "date"
reference = "ref"
"#;

/// Loads `content` as `name` with `map`, returning the side or the error text.
fn load(name: &str, content: &[u8], map: &str) -> Result<Side, String> {
    let (_dir, path) = file(name, content);
    load_side(&path, &mapping(map)).map_err(|e| e.to_string())
}

fn amounts(side: &Side) -> Vec<i64> {
    side.amount.clone()
}

fn ids(side: &Side) -> Vec<&str> {
    (0..side.len()).map(|i| side.id.get(i).unwrap()).collect()
}

/// The expected side of the small example table below, whatever the format.
fn check_example(side: &Side) {
    assert_eq!(ids(side), ["a1", "a2", "a3"]);
    assert_eq!(amounts(side), [123_456, -1230, 5]);
    let cur: Vec<_> = side.currency.iter().map(|c| c.as_str()).collect();
    assert_eq!(cur, ["USD", "EUR", "JPY"]);
    let dates: Vec<_> = side
        .date
        .iter()
        .map(|d| d.map(recon_core::date::format_days))
        .collect();
    assert_eq!(
        dates,
        [
            Some("2026-03-01".to_owned()),
            Some("2026-02-28".to_owned()),
            None
        ]
    );
    assert_eq!(side.reference.get(0), Some("INV-1"));
    assert_eq!(side.reference.get(2), None);
    assert!(side.rejects.is_empty());
}

fn example_batch() -> RecordBatch {
    let text = |v: [Option<&str>; 3]| Arc::new(StringArray::from(v.to_vec()));
    let schema = Arc::new(Schema::new(
        ["id", "amount", "currency", "date", "ref"]
            .map(|n| Field::new(n, DataType::Utf8, true))
            .to_vec(),
    ));
    RecordBatch::try_new(
        schema,
        vec![
            text([Some("a1"), Some("a2"), Some("a3")]),
            text([Some("1,234.56"), Some("(12.30)"), Some("5")]),
            text([Some("USD"), Some("eur"), Some("JPY")]),
            text([Some("2026-03-01"), Some("2026-02-28"), None]),
            text([Some("INV-1"), Some("x"), None]),
        ],
    )
    .unwrap()
}

const EXAMPLE_CSV: &str = "id,amount,currency,date,ref\n\
a1,\"1,234.56\",USD,2026-03-01,INV-1\n\
a2,(12.30),eur,2026-02-28,x\n\
a3,5,JPY,,\n";

#[test]
fn csv_with_quotes_and_styles() {
    check_example(&load("ledger.csv", EXAMPLE_CSV.as_bytes(), BASIC).unwrap());
}

#[test]
fn csv_with_bom() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(EXAMPLE_CSV.as_bytes());
    check_example(&load("bom.csv", &bytes, BASIC).unwrap());
}

/// `load_digested`'s SHA-256 is the file's, whatever path the load takes: a
/// CSV hashed as it is read (with its BOM, over many reads, with only some
/// columns built), and another format read again.
#[test]
fn load_digested_gives_the_files_sha256() {
    let check = |path: &Path, map: &SideMapping, roles: RoleSet| {
        let (side, sha256) = SideLoad::new(path, map)
            .roles(roles)
            .load_digested()
            .unwrap();
        assert!(!side.is_empty());
        assert_eq!(
            sha256,
            sha256_hex(&fs::read(path).unwrap()),
            "{}",
            path.display()
        );
    };
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(EXAMPLE_CSV.as_bytes());
    let (_bom_dir, bom_path) = file("bom.csv", &bom);
    check(&bom_path, &mapping(BASIC), RoleSet::ALL);
    // No reference built: the reader reads a projection of the file.
    check(&bom_path, &mapping(BASIC), RoleSet::ALWAYS);

    // Several megabytes: many reads of the reader's buffer.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.csv");
    write_big_csv(&big, 60_000);
    let big_map = mapping(
        "id = \"entry_id\"\namount = \"amount\"\ncurrency = \"ccy\"\ndate = \"posted\"\nreference = \"invoice\"",
    );
    check(&big, &big_map, RoleSet::ALL);

    let ndjson = dir.path().join("side.ndjson");
    let mut w = arrow_json::LineDelimitedWriter::new(fs::File::create(&ndjson).unwrap());
    w.write(&example_batch()).unwrap();
    w.finish().unwrap();
    check(&ndjson, &mapping(BASIC), RoleSet::ALL);
}

/// `load_digest_later` gives the same side as `load` and, when computed, the
/// file's SHA-256; a file written to or replaced after loading is refused
/// rather than hashed.
#[test]
fn a_later_digest_is_the_files_or_refused_if_it_changed() {
    let (_dir, path) = file("later.csv", EXAMPLE_CSV.as_bytes());
    let map = mapping(BASIC);
    let (side, pending) = SideLoad::new(&path, &map).load_digest_later().unwrap();
    check_example(&side);
    assert_eq!(
        pending.compute().unwrap(),
        sha256_hex(EXAMPLE_CSV.as_bytes())
    );

    // Appended to after loading: same inode, new size and times.
    let (_, pending) = SideLoad::new(&path, &map).load_digest_later().unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"x9,1.00,USD,2026-03-01,INV-9\n"))
        .unwrap();
    let e = pending.compute().unwrap_err();
    assert!(
        matches!(&e, InputError::Changed { file } if file.ends_with("later.csv")),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("changed while it was being reconciled"),
        "{e}"
    );

    // Replaced by another file of the same bytes: the path names a new inode.
    let (_, pending) = SideLoad::new(&path, &map).load_digest_later().unwrap();
    let other = path.with_extension("new");
    fs::write(&other, fs::read(&path).unwrap()).unwrap();
    fs::rename(&other, &path).unwrap();
    assert!(matches!(pending.compute(), Err(InputError::Changed { .. })));

    // Removed: the path names nothing.
    let (_, pending) = SideLoad::new(&path, &map).load_digest_later().unwrap();
    fs::remove_file(&path).unwrap();
    assert!(matches!(pending.compute(), Err(InputError::Io { .. })));
}

#[test]
fn csv_with_semicolons_and_no_header() {
    let csv = "a1;\"1,234.56\";USD;2026-03-01;INV-1\na2;(12.30);eur;2026-02-28;x\na3;5;JPY;;\n";
    let side = load(
        "semi.csv",
        csv.as_bytes(),
        r#"
        delimiter = ";"
        has_header = false
        id = "1"
        amount = "2"
        currency = "3"
        date = "4"
        reference = "5"
        "#,
    )
    .unwrap();
    check_example(&side);
    assert_eq!(side.line, [1, 2, 3]);
}

#[test]
fn csv_line_numbers_count_the_header() {
    let side = load("l.csv", EXAMPLE_CSV.as_bytes(), BASIC).unwrap();
    assert_eq!(side.line, [2, 3, 4]);
}

#[test]
fn parquet_round_trip_casts_typed_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typed.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("amount", DataType::Decimal128(12, 2), false),
        Field::new("date", DataType::Date32, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![7, 8])),
            Arc::new(
                Decimal128Array::from(vec![123_456, -5])
                    .with_precision_and_scale(12, 2)
                    .unwrap(),
            ),
            Arc::new(Date32Array::from(vec![Some(20_513), None])),
        ],
    )
    .unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(fs::File::create(&path).unwrap(), schema, None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let side = load_side(
        &path,
        &mapping("id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"\ndate = \"date\""),
    )
    .unwrap();
    assert_eq!(ids(&side), ["7", "8"]);
    assert_eq!(amounts(&side), [123_456, -5]);
    assert_eq!(side.date, [Some(20_513), None]);
    assert_eq!(side.line, [1, 2]);
}

/// Writes `batch` as a Parquet file at `path`.
fn write_parquet(path: &Path, batch: &RecordBatch) {
    let file = fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// Writes `batch` as an Arrow IPC file at `path`.
fn write_arrow_file(path: &Path, batch: &RecordBatch) {
    let file = fs::File::create(path).unwrap();
    let mut w = arrow_ipc::writer::FileWriter::try_new(file, &batch.schema()).unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
}

/// A column name past `MAX_COLUMN_NAME` bytes (a header that is really a
/// data line, or a hostile one) is refused naming its position.
#[test]
fn overlong_column_names_are_refused() {
    let name = "n".repeat(recon_core::input::MAX_COLUMN_NAME + 1);
    let csv = format!("amount,{name}\n1,2\n");
    let err = load(
        "wide.csv",
        csv.as_bytes(),
        "amount = \"amount\"\ncurrency_value = \"USD\"",
    )
    .unwrap_err();
    assert!(
        err.ends_with(
            "wide.csv: column 2's name is 1025 bytes long; recon reads names of at most 1024 \
             bytes (is the header line a data line?)"
        ),
        "{err}"
    );
}

/// A Parquet file whose records would be over `MAX_RECORD_BYTES` each once
/// uncompressed is refused, naming the row group and the limit (the check
/// reads the metadata before any page; a 20 KB file of one compressed
/// 600 MiB value took 1.2 GB to read). The test checks the refusal, not
/// when it comes.
#[test]
fn parquet_records_too_large_once_uncompressed_are_refused() {
    use parquet::basic::{Compression, ZstdLevel};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.parquet");
    let big = "a".repeat(2 << 20);
    let batch = RecordBatch::try_from_iter([(
        "amount",
        Arc::new(StringArray::from(vec![big.as_str()])) as arrow_array::ArrayRef,
    )])
    .unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_dictionary_enabled(false)
        .build();
    let file = fs::File::create(&path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    assert!(
        fs::metadata(&path).unwrap().len() < 64 * 1024,
        "compressed small"
    );
    let err = load_side(
        &path,
        &mapping("amount = \"amount\"\ncurrency_value = \"USD\""),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("row group 0 holds")
            && err.ends_with("recon does not read records that large"),
        "{err}"
    );
}

/// Arrow IPC files and streams with a few bytes changed are read or refused,
/// never a panic: arrow's decoder trusts some buffer offsets of a malformed
/// file and panicked on about one in twenty.
#[test]
fn mutated_arrow_files_never_panic() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.arrow");
    write_arrow_file(&whole, &example_batch());
    let file_bytes = fs::read(&whole).unwrap();
    let mut stream_bytes = Vec::new();
    {
        let batch = example_batch();
        let mut w =
            arrow_ipc::writer::StreamWriter::try_new(&mut stream_bytes, &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(19);
    let (mut read, mut refused) = (0, Vec::new());
    for round in 0..400 {
        let (original, format, name) = if round % 2 == 0 {
            (&file_bytes, Format::Arrow, "m.arrow")
        } else {
            (&stream_bytes, Format::ArrowStream, "m.arrows")
        };
        let mut bytes = original.clone();
        for _ in 0..rng.random_range(1..=8) {
            let i = rng.random_range(0..bytes.len());
            bytes[i] = rng.random();
        }
        let path = dir.path().join(name);
        fs::write(&path, &bytes).unwrap();
        match read_table(&path, format, &ReadOptions::default()) {
            Ok(table) => {
                read += 1;
                let _ = Side::from_table(&table, &mapping(BASIC));
            }
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains(name), "{e}");
                refused.push(e);
            }
        }
    }
    // Both ways were taken, and arrow's panics became refusals.
    assert!(read > 0 && !refused.is_empty(), "{read} read");
    assert!(
        refused
            .iter()
            .any(|e| e.contains("malformed Arrow IPC data")),
        "{refused:?}"
    );
}

#[test]
fn parquet_of_text_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("side.parquet");
    write_parquet(&path, &example_batch());
    check_example(&load_side(&path, &mapping(BASIC)).unwrap());
}

/// Compressed files as other tools write them: every Parquet codec
/// (pyarrow, polars, DuckDB and Spark choose among them) and LZ4 or Zstandard
/// Arrow IPC bodies (pyarrow's `write_feather` compresses with LZ4 by default).
#[test]
fn compressed_parquet_and_arrow_files_read() {
    use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
    let dir = tempfile::tempdir().unwrap();
    let batch = example_batch();
    for (name, codec) in [
        ("snappy", Compression::SNAPPY),
        ("gzip", Compression::GZIP(GzipLevel::default())),
        ("brotli", Compression::BROTLI(BrotliLevel::default())),
        ("zstd", Compression::ZSTD(ZstdLevel::default())),
        ("lz4", Compression::LZ4_RAW),
    ] {
        let path = dir.path().join(format!("{name}.parquet"));
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(codec)
            .build();
        let file = fs::File::create(&path).unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        check_example(&load_side(&path, &mapping(BASIC)).unwrap());
    }
    for (name, codec) in [
        ("lz4", arrow_ipc::CompressionType::LZ4_FRAME),
        ("zstd", arrow_ipc::CompressionType::ZSTD),
    ] {
        let path = dir.path().join(format!("{name}.arrow"));
        let options = arrow_ipc::writer::IpcWriteOptions::default()
            .try_with_compression(Some(codec))
            .unwrap();
        let file = fs::File::create(&path).unwrap();
        let mut w =
            arrow_ipc::writer::FileWriter::try_new_with_options(file, &batch.schema(), options)
                .unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        check_example(&load_side(&path, &mapping(BASIC)).unwrap());
    }
}

/// A Parquet or Arrow IPC file's columns nothing maps are not read: a
/// nested column (which has no text form) beside the mapped ones loads,
/// and fails the load only once it is mapped, naming the file; a list
/// column reads as Arrow's text of it.
#[test]
fn columnar_files_read_only_the_mapped_columns() {
    use arrow_array::types::Int64Type;
    use arrow_array::{ArrayRef, ListArray, StructArray};
    let example = example_batch();
    let nested: ArrayRef = Arc::new(StructArray::from(vec![(
        Arc::new(Field::new("k", DataType::Int64, true)),
        Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
    )]));
    // A list has a text form: it is read like any other column.
    let tags: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
        Some(vec![Some(1), Some(2)]),
        Some(vec![]),
        None,
    ]));
    let mut fields: Vec<Field> = example
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.insert(2, Field::new("meta", nested.data_type().clone(), true));
    fields.push(Field::new("tags", tags.data_type().clone(), true));
    let mut columns = example.columns().to_vec();
    columns.insert(2, nested);
    columns.push(tags);
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let parquet_path = dir.path().join("wide.parquet");
    write_parquet(&parquet_path, &batch);
    let arrow_path = dir.path().join("wide.arrow");
    write_arrow_file(&arrow_path, &batch);

    let with_meta = mapping(&format!("{BASIC}extra = [\"meta\"]\n"));
    let with_tags = mapping(&format!("{BASIC}extra = [\"tags\"]\n"));
    for path in [&parquet_path, &arrow_path] {
        check_example(&load_side(path, &mapping(BASIC)).unwrap());
        let side = load_side(path, &with_tags).unwrap();
        let tags: Vec<_> = (0..3).map(|i| side.extra[0].1.get(i)).collect();
        assert_eq!(
            tags,
            [Some("[1, 2]"), Some("[]"), None],
            "{}",
            path.display()
        );
        let e = load_side(path, &with_meta).unwrap_err();
        assert!(
            matches!(&e, InputError::UnreadableColumn { column, data_type, .. }
                if column == "meta" && data_type.starts_with("Struct")),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("column \"meta\""), "{e}");
    }

    // Read whole (as the service stores an upload, before any mapping is
    // known), the struct column does not make the file unreadable: it is
    // carried as empty, marked, and still refused when mapped.
    let opts = ReadOptions::default();
    let table = read_table(&parquet_path, Format::Parquet, &opts).unwrap();
    assert_eq!(table.rows, 3);
    let stored = dir.path().join("stored.arrow");
    let converted = convert_to_ipc(&parquet_path, Format::Parquet, &opts, &stored).unwrap();
    assert_eq!(converted.columns[2], "meta");
    assert_eq!(converted.unreadable, ["meta"]);
    let stored_opts = ReadOptions {
        source: Some("wide.parquet".into()),
        ..ReadOptions::default()
    };
    let load_stored = |map: &SideMapping| {
        SideLoad::new(&stored, map)
            .format(Format::Arrow)
            .options(stored_opts.clone())
            .load()
    };
    check_example(&load_stored(&mapping(BASIC)).unwrap());
    let e = load_stored(&with_meta).unwrap_err();
    assert!(
        matches!(&e, InputError::UnreadableColumn { file, column, data_type }
            if file == "wide.parquet" && column == "meta" && data_type.starts_with("Struct")),
        "{e:?}"
    );
}

#[test]
fn ndjson_nested_objects_are_carried_but_not_mapped() {
    let lines = [
        r#"{"id":"a1","amount":"1,234.56","currency":"USD","date":"2026-03-01","ref":"INV-1","meta":{"k":1}}"#,
        r#"{"id":"a2","amount":"(12.30)","currency":"eur","date":"2026-02-28","ref":"x","meta":{"k":2}}"#,
        r#"{"id":"a3","amount":5,"currency":"JPY","date":null,"ref":null,"meta":null}"#,
    ];
    let (_dir, path) = file("nested.ndjson", lines.join("\n").as_bytes());
    check_example(&load_side(&path, &mapping(BASIC)).unwrap());
    let e = load_side(&path, &mapping(&format!("{BASIC}extra = [\"meta\"]\n"))).unwrap_err();
    assert!(
        matches!(&e, InputError::UnreadableColumn { column, .. } if column == "meta"),
        "{e:?}"
    );
}

#[test]
fn arrow_file_and_stream_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let batch = example_batch();
    let file_path = dir.path().join("side.arrow");
    write_arrow_file(&file_path, &batch);
    check_example(&load_side(&file_path, &mapping(BASIC)).unwrap());

    let stream_path = dir.path().join("side.arrows");
    let mut w = arrow_ipc::writer::StreamWriter::try_new(
        fs::File::create(&stream_path).unwrap(),
        &batch.schema(),
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    check_example(&load_side(&stream_path, &mapping(BASIC)).unwrap());
}

#[test]
fn ndjson_round_trip_keeps_number_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("side.ndjson");
    let mut w = arrow_json::LineDelimitedWriter::new(fs::File::create(&path).unwrap());
    w.write(&example_batch()).unwrap();
    w.finish().unwrap();
    check_example(&load_side(&path, &mapping(BASIC)).unwrap());

    // Numbers written as JSON numbers keep their exact text.
    let side = load(
        "n.jsonl",
        b"{\"id\": 1, \"amount\": 10.25}\n{\"id\": 2, \"amount\": -3}\n",
        "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"",
    )
    .unwrap();
    assert_eq!(ids(&side), ["1", "2"]);
    assert_eq!(amounts(&side), [1025, -300]);
}

#[test]
fn stored_ipc_keeps_source_and_lines() {
    let (dir, path) = file("bank.csv", b"id,amount\nx,1\ny,oops\n");
    let table = read_table(&path, Format::Csv, &ReadOptions::default()).unwrap();
    let stored = dir.path().join("stored.arrow");
    write_table_ipc(&table, &stored).unwrap();
    let back = read_table(&stored, Format::Arrow, &ReadOptions::default()).unwrap();
    assert_eq!(back.source, table.source);
    assert_eq!(back.first_line, 2);
    assert_eq!(back.rows, 2);
    let err = Side::from_table(
        &back,
        &mapping("amount = \"amount\"\ncurrency_value = \"USD\""),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.ends_with("bank.csv line 3, column \"amount\": \"oops\" is not an amount"),
        "{err}"
    );
}

#[test]
fn debit_credit_columns() {
    let csv = "id,debit,credit\n1,12.30,\n2,,5.00\n3,0.00,7\n";
    let side = load(
        "dc.csv",
        csv.as_bytes(),
        "id = \"id\"\ndebit = \"debit\"\ncredit = \"credit\"\ncurrency_value = \"USD\"",
    )
    .unwrap();
    assert_eq!(amounts(&side), [-1230, 500, 700]);

    let err = load(
        "dc.csv",
        b"id,debit,credit\n1,1.00,2.00\n",
        "id = \"id\"\ndebit = \"debit\"\ncredit = \"credit\"\ncurrency_value = \"USD\"",
    )
    .unwrap_err();
    assert!(err.contains("line 2, column \"debit\": \"1.00\""), "{err}");
    // An empty debit is fine; both empty is a row without an amount, said so.
    let err = load(
        "dc.csv",
        b"id,debit,credit\n1,,2.00\n2, ,\n",
        "id = \"id\"\ndebit = \"debit\"\ncredit = \"credit\"\ncurrency_value = \"USD\"",
    )
    .unwrap_err();
    assert!(
        err.ends_with(
            "dc.csv line 3, column \"debit\": \"\" and the credit column are both empty; \
             one of them holds the amount"
        ),
        "{err}"
    );
}

#[test]
fn direction_indicator() {
    let csv = "id,amt,dc\n1,12.30,D\n2,5,cr\n3,1,Debit\n4,2,X\n";
    let map = "id = \"id\"\namount = \"amt\"\ndirection = \"dc\"\ncurrency_value = \"EUR\"\non_error = \"quarantine\"";
    let side = load("ind.csv", csv.as_bytes(), map).unwrap();
    assert_eq!(amounts(&side), [-1230, 500, -100]);
    assert_eq!(side.rejects.len(), 1);
    assert_eq!(side.rejects[0].line, 5);
    assert_eq!(side.rejects[0].column.as_deref(), Some("dc"));
    assert!(
        side.rejects[0]
            .reason
            .contains("not a debit or credit indicator")
    );
}

/// A statement that marks only its credits (`CR`) leaves debits blank: an
/// empty value in `debit_values` reads a blank indicator as a debit.
#[test]
fn a_blank_indicator_can_be_one_direction() {
    let csv = "id,amt,dc\n1,12.30,\n2,5,CR\n3,1,  \n4,2,X\n";
    let map = "id = \"id\"\namount = \"amt\"\ndirection = \"dc\"\ncurrency_value = \"EUR\"\n\
               debit_values = [\"\"]\ncredit_values = [\"CR\"]\non_error = \"quarantine\"";
    let side = load("blank.csv", csv.as_bytes(), map).unwrap();
    assert_eq!(amounts(&side), [-1230, 500, -100]);
    assert_eq!(side.rejects.len(), 1);
    assert_eq!(side.rejects[0].line, 5);
    assert!(
        side.rejects[0]
            .reason
            .ends_with("(expected one of (blank), CR)"),
        "{}",
        side.rejects[0].reason
    );
    // Without the empty value, a blank indicator is an error naming its line.
    let strict = map.replace("debit_values = [\"\"]", "debit_values = [\"DR\"]");
    let err = load(
        "blank.csv",
        csv.as_bytes(),
        &strict.replace("on_error = \"quarantine\"", ""),
    )
    .unwrap_err();
    assert!(err.contains("blank.csv line 2, column \"dc\""), "{err}");
}

#[test]
fn minor_units_per_currency() {
    let csv = "id,amount,cur\n1,1500,JPY\n2,1.234,BHD\n3,1.5,JPY\n";
    let map = "id = \"id\"\namount = \"amount\"\ncurrency = \"cur\"";
    let err = load("m.csv", csv.as_bytes(), map).unwrap_err();
    assert!(
        err.ends_with(
            "m.csv line 4, column \"amount\": \"1.5\" has more decimals than JPY allows (0)"
        ),
        "{err}"
    );
    let side = load("m.csv", &csv.as_bytes()[..csv.len() - 10], map).unwrap();
    assert_eq!(amounts(&side), [1500, 1234]);
}

#[test]
fn too_many_decimals_is_an_error_not_rounding() {
    let err = load(
        "t.csv",
        b"id,amount\n1,12.345\n",
        "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"",
    )
    .unwrap_err();
    assert!(
        err.ends_with(
            "t.csv line 2, column \"amount\": \"12.345\" has more decimals than USD allows (2)"
        ),
        "{err}"
    );
}

#[test]
fn unparsable_amount_names_file_line_column_value() {
    let mut csv = String::from("id,amount\n");
    for i in 0..15 {
        csv.push_str(&format!("{i},1.00\n"));
    }
    csv.push_str("x,\"12,3x\"\n");
    let err = load(
        "bank.csv",
        csv.as_bytes(),
        "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"",
    )
    .unwrap_err();
    assert!(
        err.ends_with("bank.csv line 17, column \"amount\": \"12,3x\" is not an amount"),
        "{err}"
    );
}

#[test]
fn wrong_date_is_an_error() {
    let map =
        "amount = \"amount\"\ncurrency_value = \"USD\"\ndate = \"d\"\ndate_format = \"%d/%m/%Y\"";
    let side = load("d.csv", b"amount,d\n1,01/03/2026\n", map).unwrap();
    assert_eq!(side.date, [Some(20_513)]);
    let err = load("d.csv", b"amount,d\n1,01/03/2026\n2,31/02/2026\n", map).unwrap_err();
    assert!(
        err.ends_with("d.csv line 3, column \"d\": \"31/02/2026\" is not a calendar date"),
        "{err}"
    );
    let err = load("d.csv", b"amount,d\n1,2026-03-01\n", map).unwrap_err();
    assert!(
        err.ends_with(
            "d.csv line 2, column \"d\": \"2026-03-01\" is not a date in the format %d/%m/%Y"
        ),
        "{err}"
    );
}

/// Rows repeating the row before's date (a date-ordered export) read the
/// same days as rows parsed one by one, and a bad date right after a good
/// run of the same text is still refused.
#[test]
fn repeated_dates_read_as_parsed_alone() {
    let map =
        "amount = \"amount\"\ncurrency_value = \"USD\"\ndate = \"d\"\ndate_format = \"%d/%m/%Y\"";
    let side = load(
        "d.csv",
        b"amount,d\n1,01/03/2026\n2,01/03/2026\n3,02/03/2026\n4,\n5,01/03/2026\n6,01/03/2026\n",
        map,
    )
    .unwrap();
    assert_eq!(
        side.date,
        [
            Some(20_513),
            Some(20_513),
            Some(20_514),
            None,
            Some(20_513),
            Some(20_513)
        ]
    );
    let err = load(
        "d.csv",
        b"amount,d\n1,01/03/2026\n2,01/03/2026\n3,01/03/2026 \n4,31/02/2026\n",
        map,
    )
    .unwrap_err();
    assert!(
        err.ends_with("d.csv line 5, column \"d\": \"31/02/2026\" is not a calendar date"),
        "{err}"
    );
}

#[test]
fn missing_column_lists_available_ones() {
    let err = load(
        "bank.csv",
        b"id,amt\n1,2\n",
        "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"",
    )
    .unwrap_err();
    assert!(
        err.ends_with("bank.csv: column \"amount\" not found; available columns: \"id\", \"amt\""),
        "{err}"
    );
}

/// A mapped name that matches two columns is refused, naming both; an exact
/// match wins over ones differing in case or spaces; unmapped duplicates are
/// left alone.
#[test]
fn a_mapped_name_matching_two_columns_is_refused() {
    let map = "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"";
    let err = load("bank.csv", b"id,amount,amount\n1,5.00,7.00\n", map).unwrap_err();
    assert!(
        err.ends_with(
            "bank.csv: column \"amount\" matches 2 columns of the file (#2 \"amount\", #3 \"amount\"): map one by its exact name, or make the file's column names unique"
        ),
        "{err}"
    );
    let (_dir, path) = file("bank.csv", b"id,Amount,amount \n1,5.00,7.00\n");
    let err = load_side(&path, &mapping(map)).unwrap_err();
    assert!(
        matches!(&err, InputError::AmbiguousColumn { column, matches, .. }
            if column == "amount"
                && *matches == [(2, "Amount".to_owned()), (3, "amount ".to_owned())]),
        "{err}"
    );
    // Named exactly, one of them is meant.
    let exact = map.replace("amount = \"amount\"", "amount = \"Amount\"");
    let side = load("bank.csv", b"id,Amount,amount \n1,5.00,7.00\n", &exact).unwrap();
    assert_eq!(amounts(&side), [500]);
    let side = load("bank.csv", b"id,Amount,amount\n1,5.00,7.00\n", map).unwrap();
    assert_eq!(amounts(&side), [700]);
    // A duplicate nothing maps is no one's business.
    let side = load("bank.csv", b"id,amount,memo,memo\n1,5.00,a,b\n", map).unwrap();
    assert_eq!(amounts(&side), [500]);
}

/// A very wide file is read a few rows at a time (a batch's memory grows with
/// its cells), and one wider than `MAX_COLUMNS` is refused before any reader
/// allocates for it: never a process aborted by an allocation of gigabytes.
#[test]
fn wide_files_load_in_narrow_batches_and_too_wide_ones_are_refused() {
    let map = "id = \"c0\"\namount = \"c1\"\ncurrency_value = \"USD\"";
    let wide = |columns: usize| {
        let row = |f: &dyn Fn(usize) -> String| (0..columns).map(f).collect::<Vec<_>>().join(",");
        let mut text = row(&|i| format!("c{i}"));
        for r in 0..3 {
            text.push('\n');
            text.push_str(&row(&|i| {
                if i == 0 {
                    format!("r{r}")
                } else {
                    "1.00".to_owned()
                }
            }));
        }
        text.push('\n');
        text
    };
    let side = load("wide.csv", wide(5_000).as_bytes(), map).unwrap();
    assert_eq!(ids(&side), ["r0", "r1", "r2"]);
    assert_eq!(side.line, [2, 3, 4]);
    let columns = recon_core::input::MAX_COLUMNS + 1;
    let err = load("wider.csv", wide(columns).as_bytes(), map).unwrap_err();
    assert!(
        err.contains(&format!(
            "wider.csv: {columns} columns; recon reads files of at most {} columns",
            recon_core::input::MAX_COLUMNS
        )),
        "{err}"
    );
}

/// A directory given as a side's file is named as one, not as a file of an
/// unknown format.
#[test]
fn a_directory_is_no_side_file() {
    let dir = tempfile::tempdir().unwrap();
    let map = mapping("id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"");
    let err = load_side(dir.path(), &map).unwrap_err();
    assert!(matches!(err, InputError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().ends_with(": a directory, not a file"),
        "{err}"
    );
}

/// CSV options on a side whose format its file's extension gives (JSON Lines
/// here) are refused when the file is opened, as with a `format` key; left at
/// their defaults they are no one's business.
#[test]
fn csv_options_on_a_file_of_another_format_are_refused() {
    let map = "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"";
    let content = b"{\"id\": \"a\", \"amount\": 1}\n";
    for (key, value) in [("delimiter", "\";\""), ("has_header", "false")] {
        let err = load("side.ndjson", content, &format!("{map}\n{key} = {value}")).unwrap_err();
        assert!(
            err.ends_with(&format!(
                "side.ndjson: invalid mapping: `{key}` is set but `format` is ndjson: `delimiter`, `has_header` and `encoding` are read only from CSV"
            )),
            "{err}"
        );
    }
    let side = load("side.ndjson", content, &format!("{map}\ndelimiter = \",\"")).unwrap();
    assert_eq!(ids(&side), ["a"]);
}

/// The file's form is checked before its values: a ragged row is the error
/// even after a row with a bad amount.
#[test]
fn a_ragged_row_is_reported_before_an_earlier_bad_value() {
    let map = "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"";
    let err = load("bank.csv", b"id,amount\n1,oops\n2,1.00\n3,1.00,x\n", map).unwrap_err();
    assert!(
        err.ends_with("bank.csv line 4: incorrect number of fields, expected 2 got 3"),
        "{err}"
    );
}

/// A file split by another delimiter reads as one column named by its whole
/// header line; the message says which delimiter to set, and setting it
/// reads the file.
#[test]
fn a_missing_column_in_a_one_column_header_suggests_the_delimiter() {
    let map = "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"";
    for (content, c, written) in [
        (&b"id;amount\n1;2.50\n"[..], ';', ";"),
        (b"id\tamount\n1\t2.50\n", '\t', "\\t"),
        (b"id|amount|memo\n1|2.50|a;b\n", '|', "|"),
        // A value holding the delimiter read with makes the row ragged: its
        // error carries the same hint.
        (b"id;amount\n1;2,50\n", ';', ";"),
        (b"id\tamount\n1\t1,002.50\n", '\t', "\\t"),
    ] {
        let err = load("bank.csv", content, map).unwrap_err();
        assert!(
            err.ends_with(&format!(
                "if the file is {c:?}-separated, set delimiter = \"{written}\" in this side's mapping)"
            )),
            "{err}"
        );
        let fixed = format!("{map}\ndelimiter = \"{written}\"");
        match load("bank.csv", content, &fixed) {
            Ok(side) if content.ends_with(b"1,002.50\n") => {
                assert_eq!(amounts(&side), [100_250]);
            }
            Ok(side) => assert_eq!(amounts(&side), [250]),
            // A decimal comma is no amount recon reads.
            Err(e) => assert!(e.ends_with("\"2,50\" is not an amount"), "{e}"),
        }
    }
    // A comma-separated file read with another delimiter: the hint is ','.
    let semicolon = format!("{map}\ndelimiter = \";\"");
    let err = load("bank.csv", b"id,amount\n1,2.50\n", &semicolon).unwrap_err();
    assert!(
        err.ends_with(
            "if the file is ','-separated, set delimiter = \",\" in this side's mapping)"
        ),
        "{err}"
    );
    // More than one column, none holding a delimiter, only the delimiter in
    // use (a quoted name), or a format without delimiters: no hint.
    for (name, content, ending) in [
        (
            "bank.csv",
            &b"id,amt\n1,2\n"[..],
            "available columns: \"id\", \"amt\"",
        ),
        (
            "bank.csv",
            b"idamount\n1\n",
            "available columns: \"idamount\"",
        ),
        (
            "bank.csv",
            b"\"id,amount\"\n1\n",
            "available columns: \"id,amount\"",
        ),
        (
            "bank.ndjson",
            b"{\"id;amount\": \"1\"}\n",
            "available columns: \"id;amount\"",
        ),
    ] {
        let err = load(name, content, map).unwrap_err();
        assert!(err.ends_with(ending), "{err}");
    }
}

#[test]
fn empty_file_is_an_error() {
    for content in [&b""[..], b"\xEF\xBB\xBF"] {
        let (_dir, path) = file("empty.csv", content);
        let err = load_side(&path, &mapping(BASIC)).unwrap_err();
        assert!(matches!(err, InputError::Empty { .. }), "{err}");
        assert!(
            err.to_string().ends_with("empty.csv: the file is empty"),
            "{err}"
        );
    }
}

#[test]
fn invalid_utf8_names_the_line() {
    let err = load(
        "bad.csv",
        b"id,amount\n1,2\n2,3\n3,\xff\xfe\n",
        "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"",
    )
    .unwrap_err();
    assert!(
        err.ends_with(r#"bad.csv line 4, column "amount": "\xff\xfe" is not valid UTF-8"#),
        "{err}"
    );
}

#[test]
fn a_long_bad_value_is_cut_in_the_message() {
    let long = "9x".repeat(5_000);
    let csv = format!("id,amount\n1,{long}\n");
    let err = load(
        "long.csv",
        csv.as_bytes(),
        "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"",
    )
    .unwrap_err();
    let shown = format!("\"{}\"... (10000 bytes in all) ", &long[..200]);
    assert!(
        err.contains(&format!("long.csv line 2, column \"amount\": {shown}")),
        "{err}"
    );
    assert!(err.len() < 400, "{} bytes", err.len());
    // Quarantined, the value is kept whole in its own field and cut in the
    // reason, as in a message.
    let side = load(
        "long.csv",
        csv.as_bytes(),
        "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"\non_error = \"quarantine\"",
    )
    .unwrap();
    assert_eq!(side.rejects[0].value.as_deref(), Some(long.as_str()));
    assert_eq!(side.rejects[0].reason, format!("{shown}is not an amount"));
    // Invalid UTF-8 is cut the same way, after its escapes.
    let mut bytes = b"id,amount\n1,\xff".to_vec();
    bytes.extend_from_slice(long.as_bytes());
    bytes.push(b'\n');
    let err = load(
        "long8.csv",
        &bytes,
        "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"",
    )
    .unwrap_err();
    assert!(
        err.ends_with(&format!(
            "\"\\xff{}\"... (10004 bytes in all) is not valid UTF-8",
            &long[..196]
        )),
        "{err}"
    );
}

#[test]
fn invalid_utf8_names_the_column_and_shows_the_bytes_past_quoted_lines() {
    // The bad field is quoted and follows a record spanning two lines and a
    // blank line; valid text around the bad byte is kept, escaped.
    let err = load(
        "q.csv",
        b"id,memo,amount\n1,\"two\nlines\",2\n\n2,\"caf\xc3\xa9 \xe9t\xe9\tx\",3\n",
        "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"",
    )
    .unwrap_err();
    assert!(
        err.ends_with(r#"q.csv line 5, column "memo": "café \xe9t\xe9\tx" is not valid UTF-8"#),
        "{err}"
    );
}

#[test]
fn invalid_utf8_in_json_lines_names_the_line() {
    let err = load(
        "bad.ndjson",
        b"{\"id\": \"1\", \"amount\": \"2\"}\n{\"id\": \"2\", \"amount\": \"\xff\"}\n",
        "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"",
    )
    .unwrap_err();
    assert!(err.ends_with("bad.ndjson line 2: invalid UTF-8"), "{err}");
}

#[test]
fn malformed_json_lines_name_the_file_line_and_column() {
    // A blank line before the bad record: lines are the file's, not the record's.
    let err = load(
        "bad.ndjson",
        b"{\"id\": \"1\", \"amount\": \"2\"}\n\n{\"id\": \"2\", \"amount\": \n",
        "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"",
    )
    .unwrap_err();
    assert!(
        err.ends_with("bad.ndjson line 3: not valid JSON at column 22: EOF while parsing a value"),
        "{err}"
    );
}

/// JSON Lines records are numbered by the line they are on, as CSV's are
/// and as a JSON syntax error is: blank lines count.
#[test]
fn json_lines_records_are_named_by_their_line() {
    let map = "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"";
    let content =
        b"{\"id\": \"a\", \"amount\": \"1.00\"}\n\n\n{\"id\": \"b\", \"amount\": \"x\"}\n";
    let err = load("bank.ndjson", content, map).unwrap_err();
    assert!(
        err.ends_with("bank.ndjson line 4, column \"amount\": \"x\" is not an amount"),
        "{err}"
    );
    let quarantine = format!("{map}\non_error = \"quarantine\"");
    let side = load("bank.ndjson", content, &quarantine).unwrap();
    assert_eq!(side.line, [1]);
    assert_eq!(side.rejects[0].line, 4);
    let side = load(
        "bank.ndjson",
        b"\n{\"id\": \"a\", \"amount\": 1}\n\n{\"id\": \"b\", \"amount\": 2}\n{\"id\": \"c\", \"amount\": 3}",
        map,
    )
    .unwrap();
    assert_eq!(side.line, [2, 4, 5]);
}

/// A key holding text in one record and an object in another fits no
/// column type: the file is refused at the line where the kind changes,
/// mapped key or not.
#[test]
fn a_json_key_of_two_kinds_is_refused_at_its_line() {
    let map = "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"";
    let content = b"{\"id\": \"a\", \"amount\": 1, \"o\": \"x\"}\n{\"id\": \"b\", \"amount\": 2, \"o\": {\"a\": 2}}\n";
    let err = load("mix.ndjson", content, map).unwrap_err();
    assert!(
        err.ends_with("mix.ndjson line 2: key \"o\" holds an object here but text, a number or a boolean on line 1; a key must hold one kind of value in every record"),
        "{err}"
    );
    // Text then an array: the reader infers text and fails decoding the
    // array, which is then found the same way.
    let content =
        b"{\"id\": \"a\", \"amount\": 1, \"n\": 1}\n\n{\"id\": \"b\", \"amount\": 2, \"n\": [1]}\n";
    let err = load("mix.ndjson", content, map).unwrap_err();
    assert!(
        err.ends_with("mix.ndjson line 3: key \"n\" holds an array of text, a number or a boolean here but text, a number or a boolean on line 1; a key must hold one kind of value in every record"),
        "{err}"
    );
    // Arrays of two kinds (numbers, then arrays), an empty array between:
    // refused at the line where the kind changes.
    let content = b"{\"id\": \"a\", \"amount\": 1, \"n\": []}\n{\"id\": \"b\", \"amount\": 2, \"n\": [1]}\n{\"id\": \"c\", \"amount\": 3, \"n\": [[1]]}\n";
    let err = load("mix.ndjson", content, map).unwrap_err();
    assert!(
        err.ends_with("mix.ndjson line 3: key \"n\" holds an array of array of text, a number or a boolean here but an array of text, a number or a boolean on line 2; a key must hold one kind of value in every record"),
        "{err}"
    );
}

/// Arrays of plain values are a kind of value like any other: unmapped, they
/// do not stop the file loading; mapped as an extra column, they read as
/// their text.
#[test]
fn json_arrays_of_plain_values_load() {
    let map = "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"";
    let content = b"{\"id\": \"a\", \"amount\": 1, \"tags\": [1, 2]}\n{\"id\": \"b\", \"amount\": 2, \"tags\": [\"x\"], \"t\": [\"y\"]}\n";
    let side = load("arr.ndjson", content, map).unwrap();
    assert_eq!(ids(&side), ["a", "b"]);
    let side = load("arr.ndjson", content, &format!("{map}\nextra = [\"t\"]")).unwrap();
    let (name, column) = &side.extra[0];
    assert_eq!(name, "t");
    assert_eq!(column.get(0), None);
    assert_eq!(column.get(1), Some("[y]"));
    // Numbers in arrays keep their text, as numbers elsewhere do: never
    // through an f64, and never depending on another row's numbers.
    let content = b"{\"id\": \"a\", \"amount\": 1, \"n\": [0.1, 12345678901234567.89]}\n{\"id\": \"b\", \"amount\": 2, \"n\": [1, 12345678901234567890123]}\n{\"id\": \"c\", \"amount\": 3, \"m\": [[1.5], [2]]}\n";
    let side = load(
        "num.ndjson",
        content,
        &format!("{map}\nextra = [\"n\", \"m\"]"),
    )
    .unwrap();
    let (_, n) = &side.extra[0];
    assert_eq!(n.get(0), Some("[0.1, 12345678901234567.89]"));
    assert_eq!(n.get(1), Some("[1, 12345678901234567890123]"));
    let (_, m) = &side.extra[1];
    assert_eq!(m.get(2), Some("[[1.5], [2]]"));
}

/// A line of valid JSON that is not an object is no record: refused at its
/// line, whatever it holds.
#[test]
fn a_json_line_that_is_not_an_object_is_refused_at_its_line() {
    let map = "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"";
    for bad in ["[1]", "\"text\"", "null", "12"] {
        let content = format!("{{\"id\": \"a\", \"amount\": 1}}\n\n {bad}\n");
        let err = load("o.ndjson", content.as_bytes(), map).unwrap_err();
        assert!(
            err.ends_with(
                "o.ndjson line 3: not a JSON object; each line holds one record, {\"key\": value, ...}"
            ),
            "{bad}: {err}"
        );
    }
}

/// A record holding a key twice is refused at its line, as a CSV header
/// naming a column twice is: the decoder would keep one value and lose the
/// other.
#[test]
fn a_json_record_holding_a_key_twice_is_refused_at_its_line() {
    let map = "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"";
    let content =
        "{\"id\": \"a\", \"amount\": 1}\n{\"id\": \"b\", \"amount\": \"1\", \"amount\": \"2\"}\n";
    let err = load("twice.ndjson", content.as_bytes(), map).unwrap_err();
    assert!(
        err.ends_with(
            "twice.ndjson line 2: key \"amount\" appears twice in this record; one of its values would be lost"
        ),
        "{err}"
    );
}

/// A byte order mark before the first record is skipped, as in CSV; lines
/// are still the file's.
#[test]
fn a_json_lines_byte_order_mark_is_skipped() {
    let map = "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"";
    let content =
        b"\xEF\xBB\xBF{\"id\": \"a\", \"amount\": 1}\n{\"id\": \"b\", \"amount\": \"x\"}\n";
    let err = load("bom.ndjson", content, map).unwrap_err();
    assert!(
        err.ends_with("bom.ndjson line 2, column \"amount\": \"x\" is not an amount"),
        "{err}"
    );
    let first = content.iter().position(|&b| b == b'\n').unwrap() + 1;
    let side = load("bom.ndjson", &content[..first], map).unwrap();
    assert_eq!(ids(&side), ["a"]);
    assert_eq!(side.line, [1]);
}

/// A file that is not Arrow IPC, or one cut short, says so instead of the
/// reader's bare "Invalid argument".
#[test]
fn a_foreign_or_cut_arrow_file_is_named_as_such() {
    let err = load("g.arrow", b"notarrow", BASIC).unwrap_err();
    assert!(
        err.ends_with(
            "/g.arrow: not an Arrow IPC file: it does not start with ARROW1 (an Arrow stream is \
         format \"arrow-stream\", .arrows; Feather version 1 is not read)"
        ),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.arrow");
    write_arrow_file(&whole, &example_batch());
    let bytes = fs::read(&whole).unwrap();
    let err = load("cut.arrow", &bytes[..bytes.len() - 40], BASIC).unwrap_err();
    assert!(
        err.ends_with("/cut.arrow: the Arrow IPC file is cut short: it does not end with ARROW1"),
        "{err}"
    );
    check_example(&load_side(&whole, &mapping(BASIC)).unwrap());
    // The file read as a stream (by its name, or a stream's media type).
    let as_stream = dir.path().join("whole.arrows");
    fs::copy(&whole, &as_stream).unwrap();
    let err = load_side(&as_stream, &mapping(BASIC))
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with(
            "whole.arrows: an Arrow IPC file (it starts with ARROW1), not an Arrow stream: read \
             it as format \"arrow\" (.arrow, application/vnd.apache.arrow.file)"
        ),
        "{err}"
    );
}

/// A `.tsv` file is no format of its own: the error says how to read it.
#[test]
fn a_tsv_file_is_told_how_to_be_read() {
    let err = load("bank.tsv", b"id\tamount\n1\t2\n", BASIC).unwrap_err();
    assert!(
        err.ends_with(
            "bank.tsv: unknown format \"tsv\" (expected csv, parquet, arrow, arrow-stream or \
             ndjson; a tab-separated file is read with format = \"csv\" and delimiter = \"\\t\" \
             in the side's mapping)"
        ),
        "{err}"
    );
    let tsv = format!("{BASIC}format = \"csv\"\ndelimiter = \"\\t\"\ncurrency_value = \"USD\"\n");
    let side = load(
        "bank.tsv",
        b"id\tamount\tcurrency\tdate\tref\n1\t2.00\tUSD\t2026-01-02\tR\n",
        &tsv.replace("currency = \"currency\"\n", ""),
    )
    .unwrap();
    assert_eq!(amounts(&side), [200]);
}

#[test]
fn invalid_utf8_in_the_header_is_line_1() {
    let err = load(
        "h.csv",
        b"id,am\xffount\n1,2\n",
        "amount = \"x\"\ncurrency_value = \"USD\"",
    )
    .unwrap_err();
    assert!(err.ends_with("h.csv line 1: invalid UTF-8"), "{err}");
}

#[test]
fn quoted_field_may_hold_delimiters_quotes_and_newlines() {
    let csv = "id,amount,memo\n1,2,\"a, \"\"b\"\"\nc\"\n2,3,plain\n";
    let side = load(
        "q.csv",
        csv.as_bytes(),
        "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"\ndescription = \"memo\"",
    )
    .unwrap();
    assert_eq!(side.description.get(0), Some("a, \"b\"\nc"));
    assert_eq!(side.description.get(1), Some("plain"));
    assert_eq!(amounts(&side), [200, 300]);
}

/// A quote that opens a field and is never closed would take every later
/// line into that one field, silently losing their rows: the file is
/// refused at the record holding the quote, naming its column and the start
/// of its text, whatever `on_error` says.
#[test]
fn an_unclosed_quote_is_refused_where_it_opens() {
    let map = "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"\ndescription = \"memo\"";
    let check = |content: &str, expect: &str| {
        assert!(expect.starts_with("open.csv line "), "{expect}");
        let expect = format!("/{expect}");
        for on_error in ["fail", "quarantine"] {
            let map = format!("{map}\non_error = \"{on_error}\"");
            let err = load("open.csv", content.as_bytes(), &map).unwrap_err();
            assert!(err.ends_with(&expect), "on_error = {on_error}: {err}");
        }
    };
    let later = "so the rows after it cannot be read";
    // In the last column, three lines before the end; an earlier record
    // holds a closed multi-line field and an escaped quote.
    check(
        "id,amount,memo\n1,2,\"two\nlines \"\"q\"\"\"\n2,3,\"never closed, at all\n3,4,x\n4,5,y\n\n",
        &format!(
            "open.csv line 4, column \"memo\": the quoted field starting \"never closed, at all\" is never closed: the file ends inside it 3 lines later, {later}"
        ),
    );
    // In the first column; a long value is cut; no final line break.
    let long = "w".repeat(60);
    check(
        &format!("id,amount,memo\n1,2,a\n\"{long}\n2,3,b"),
        &format!(
            "open.csv line 3, column \"id\": the quoted field starting \"{}\" is never closed: the file ends inside it 1 line later, {later}",
            &long[..40]
        ),
    );
    // On the last line: nothing after it, but the field's end is missing.
    check(
        "id,amount,memo\r\n1,2,a\r\n2,3,\"cut",
        "open.csv line 3, column \"memo\": the quoted field starting \"cut\" is never closed: the file ends inside it on that line (was it cut short?)",
    );
    // Closed quotes, escaped quotes and a quote inside an unquoted field are
    // not openings.
    let side = load(
        "ok.csv",
        b"id,amount,memo\n1,2,\"a \"\"b\"\"\"\n2,3,5\" pipe\n3,4,\"\"\n",
        map,
    )
    .unwrap();
    assert_eq!(amounts(&side), [200, 300, 400]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any bytes as a CSV or NDJSON file give a side or an error, never a panic.
    #[test]
    fn loading_arbitrary_bytes_never_panics(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        csvish in "[a-c0-9,;\"()\\-.\n $]{0,200}",
        quarantine: bool,
    ) {
        let map = format!(
            "id = \"a\"\namount = \"b\"\ncurrency_value = \"USD\"\ndate = \"c\"\non_error = \"{}\"",
            if quarantine { "quarantine" } else { "fail" }
        );
        let mut header_first = b"a,b,c\n".to_vec();
        header_first.extend_from_slice(csvish.as_bytes());
        for (name, content) in [
            ("x.csv", &body[..]),
            ("y.csv", &header_first[..]),
            ("z.ndjson", &body[..]),
        ] {
            let _ = load(name, content, &map);
        }
    }
}

#[test]
fn wrong_column_count_names_the_line() {
    let err = load(
        "short.csv",
        b"id,amount\n1,2\n2\n",
        "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"",
    )
    .unwrap_err();
    assert!(
        err.ends_with("short.csv line 3: incorrect number of fields, expected 2 got 1"),
        "{err}"
    );
}

#[test]
fn empty_id_is_an_error() {
    let err = load(
        "i.csv",
        b"id,amount\n,2\n",
        "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"",
    )
    .unwrap_err();
    assert!(
        err.ends_with("i.csv line 2, column \"id\": \"\" is an empty id"),
        "{err}"
    );
}

#[test]
fn quarantine_keeps_good_rows_and_counts_bad_ones() {
    let csv = "id,amount,cur,date,branch\n\
        1,10.00,USD,2026-01-01,north\n\
        2,abc,USD,2026-01-02,south\n\
        3,3.00,XX,2026-01-03,east\n\
        4,4.00,USD,2026-13-01,west\n\
        5,\"5,000.00\",USD,,\n";
    let map = "id = \"id\"\namount = \"amount\"\ncurrency = \"cur\"\ndate = \"date\"\nextra = [\"branch\"]\non_error = \"quarantine\"";
    let side = load("q.csv", csv.as_bytes(), map).unwrap();
    assert_eq!(ids(&side), ["1", "5"]);
    assert_eq!(amounts(&side), [1000, 500_000]);
    assert_eq!(side.line, [2, 6]);
    assert_eq!(side.extra.len(), 1);
    assert_eq!(side.extra[0].0, "branch");
    assert_eq!(side.extra[0].1.get(0), Some("north"));
    assert_eq!(side.extra[0].1.get(1), None);
    let lines: Vec<u64> = side.rejects.iter().map(|r| r.line).collect();
    assert_eq!(lines, [3, 4, 5]);
    assert_eq!(side.len() + side.rejects.len(), 5, "nothing dropped");

    let mut out = Vec::new();
    write_rejects_csv(&side, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "line,column,value,reason\n\
         3,amount,abc,\"\"\"abc\"\" is not an amount\"\n\
         4,cur,XX,\"\"\"XX\"\" is not a currency code\"\n\
         5,date,2026-13-01,\"\"\"2026-13-01\"\" is not a calendar date\"\n"
    );
}

#[test]
fn fail_mode_stops_at_the_first_bad_row_across_batches() {
    let mut csv = String::from("amount\n");
    for i in 0..5000 {
        if i == 3100 || i == 4500 {
            csv.push_str("bad\n");
        } else {
            csv.push_str("1\n");
        }
    }
    let (_dir, path) = file("big.csv", csv.as_bytes());
    let opts = ReadOptions {
        batch_size: 1000,
        ..ReadOptions::default()
    };
    let table = read_table(&path, Format::Csv, &opts).unwrap();
    assert_eq!(table.batches.len(), 5);
    let mut map = mapping("amount = \"amount\"\ncurrency_value = \"USD\"");
    let err = Side::from_table(&table, &map).unwrap_err().to_string();
    assert!(err.contains("big.csv line 3102, column"), "{err}");
    map.on_error = OnError::Quarantine;
    let side = Side::from_table(&table, &map).unwrap();
    assert_eq!(side.len(), 4998);
    assert_eq!(
        side.rejects.iter().map(|r| r.line).collect::<Vec<_>>(),
        [3102, 4502]
    );
    // Default ids are line numbers, in order across batches.
    assert_eq!(side.id.get(0), Some("2"));
    assert_eq!(side.id.get(4997), Some("5001"));
}

/// A table built by hand may say anything in `rows`: mapping trusts the
/// batches (it reserved `rows` once, and aborted on 2^40).
#[test]
fn a_tables_row_count_is_not_trusted() {
    let (_dir, path) = file("t.csv", b"amount\n1\n2\n");
    let mut table = read_table(&path, Format::Csv, &ReadOptions::default()).unwrap();
    table.rows = 1 << 40;
    let side = Side::from_table(
        &table,
        &mapping("amount = \"amount\"\ncurrency_value = \"USD\""),
    )
    .unwrap();
    assert_eq!(side.amount, [100, 200]);
}

#[test]
fn formats_from_names_and_media_types() {
    assert_eq!(Format::from_path(Path::new("a/B.CSV")), Some(Format::Csv));
    assert_eq!(
        Format::from_path(Path::new("x.parquet")),
        Some(Format::Parquet)
    );
    assert_eq!(
        Format::from_path(Path::new("x.arrows")),
        Some(Format::ArrowStream)
    );
    assert_eq!(
        Format::from_path(Path::new("x.jsonl")),
        Some(Format::Ndjson)
    );
    assert_eq!(Format::from_path(Path::new("x.xlsx")), None);
    for f in [
        Format::Csv,
        Format::Parquet,
        Format::Arrow,
        Format::ArrowStream,
        Format::Ndjson,
    ] {
        assert_eq!(Format::from_media_type(f.media_type()), Some(f));
    }
    assert_eq!(
        Format::from_media_type("text/csv; charset=utf-8"),
        Some(Format::Csv)
    );
    let err = load("x.xlsx", b"a", BASIC).unwrap_err();
    assert!(err.contains("unknown format \"xlsx\""), "{err}");
}

#[test]
fn bad_mapping_is_an_error() {
    let err = load("a.csv", b"amount\n1\n", "amount = \"amount\"").unwrap_err();
    assert!(
        err.contains("a.csv: invalid mapping: set exactly one of `currency`"),
        "{err}"
    );
}

#[test]
fn empty_table_maps_to_empty_side() {
    let side = Side::from_table(&Table::empty("none"), &mapping(BASIC));
    assert!(
        side.is_err(),
        "a mapped column is missing from an empty table"
    );
    let side = load("h.csv", b"id,amount,currency,date,ref\n", BASIC).unwrap();
    assert!(side.is_empty());
}

/// The `[left]` / `[right]` tables of a rules file, as the rules parser embeds them.
fn side_mappings(rules: &Path) -> (SideMapping, SideMapping) {
    let mut table: toml::Table = toml::from_str(&fs::read_to_string(rules).unwrap()).unwrap();
    let mut take = |k: &str| -> SideMapping { table.remove(k).unwrap().try_into().unwrap() };
    (take("left"), take("right"))
}

#[test]
fn bundled_examples_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let (left, right) = side_mappings(&root.join("rules.toml"));
    let ledger = load_side(&root.join("ledger.csv"), &left).unwrap();
    let bank = load_side(&root.join("bank.csv"), &right).unwrap();
    assert!(!ledger.is_empty() && !bank.is_empty());
    assert!(ledger.rejects.is_empty() && bank.rejects.is_empty());
    assert_eq!(ledger.id.get(0), Some("GL-1001"));
    assert_eq!(ledger.amount[0], 125_000);
    assert_eq!(bank.amount[0], 125_000);
    assert_eq!(bank.amount[1], -8990);
    assert_eq!(ledger.date[0], bank.date[0]);
}

/// Writes a ledger-like CSV of `rows` records (about 80 bytes each).
fn write_big_csv(path: &Path, rows: usize) {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(fs::File::create(path).unwrap());
    writeln!(w, "entry_id,posted,amount,ccy,invoice,customer,memo").unwrap();
    for i in 0..rows {
        let day = 1 + i % 28;
        let cents = (i * 7919) % 10_000_000;
        let sign = if i % 5 == 0 { "-" } else { "" };
        writeln!(
            w,
            "GL-{i:07},2026-03-{day:02},{sign}{}.{:02},EUR,INV-{:08},\"Customer {}, Ltd\",Invoice payment {i}",
            cents / 100,
            cents % 100,
            i / 2,
            i % 997
        )
        .unwrap();
    }
    w.flush().unwrap();
}

/// 1M rows (about 100 MB): run with RECON_SLOW_TESTS=1; in release it also reports
/// the streaming load and the read and map times on stderr (`cargo test --release -p recon-core --test it -- large_csv --nocapture`).
#[test]
fn large_csv_loads_every_row() {
    if std::env::var_os("RECON_SLOW_TESTS").is_none() {
        return;
    }
    let rows = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    write_big_csv(&path, rows);
    let map = mapping(
        r#"
        id = "entry_id"
        date = "posted"
        amount = "amount"
        currency = "ccy"
        reference = "invoice"
        counterparty = "customer"
        description = "memo"
        "#,
    );
    let bytes = fs::metadata(&path).unwrap().len();
    for _ in 0..3 {
        for batch_size in [4 << 10, 16 << 10, 64 << 10] {
            let opts = ReadOptions {
                batch_size,
                ..ReadOptions::default()
            };
            let t0 = std::time::Instant::now();
            let side = load_side_with(&path, Format::Csv, &opts, &map).unwrap();
            eprintln!(
                "large_csv: {rows} rows, {} MB: load_side_with, {batch_size} rows per batch: {:?}",
                bytes / 1_000_000,
                t0.elapsed()
            );
            assert_eq!(side.len(), rows);
            assert_eq!(side.id.get(rows - 1), Some("GL-0999999"));
        }
    }
    for _ in 0..3 {
        let t0 = std::time::Instant::now();
        let table = read_table(&path, Format::Csv, &ReadOptions::default()).unwrap();
        let t1 = std::time::Instant::now();
        let side = Side::from_table(&table, &map).unwrap();
        let t2 = std::time::Instant::now();
        eprintln!(
            "large_csv: {rows} rows, {} MB: read {:?}, map {:?}, total {:?}",
            bytes / 1_000_000,
            t1 - t0,
            t2 - t1,
            t2 - t0
        );
        assert_eq!(side.len(), rows);
        assert_eq!(side.id.get(rows - 1), Some("GL-0999999"));
        assert_eq!(side.counterparty.get(3), Some("Customer 3, Ltd"));
        assert_eq!(side.amount[1], 7919);
        assert_eq!(side.amount[5], -(5 * 7919));
    }
}

#[test]
fn crlf_line_endings_and_padded_header_names() {
    let csv = "Id , Amount\r\n1,2.50\r\n2,(3)\r\n";
    let side = load(
        "win.csv",
        csv.as_bytes(),
        "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"",
    )
    .unwrap();
    assert_eq!(ids(&side), ["1", "2"]);
    assert_eq!(amounts(&side), [250, -300]);
    assert_eq!(side.line, [2, 3]);
}

#[test]
fn lines_count_blank_lines_and_quoted_line_breaks() {
    let csv = "id,amount,memo\n\
        1,1,\"two\nlines\"\n\
        \n\
        2,2,\"a \"\"quoted\"\" word\"\n\
        3,3,plain 5\" pipe\n\
        4,oops,x\n";
    let map =
        "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"\non_error = \"quarantine\"";
    let (dir, path) = file("blank.csv", csv.as_bytes());
    let side = load_side(&path, &mapping(map)).unwrap();
    assert_eq!(side.line, [2, 5, 6]);
    assert_eq!(side.rejects[0].line, 7);
    assert_eq!(side.len() + side.rejects.len(), 4);

    // The stored form keeps the lines.
    let table = read_table(&path, Format::Csv, &ReadOptions::default()).unwrap();
    assert_eq!(
        (0..4).map(|r| table.line(r)).collect::<Vec<_>>(),
        [2, 5, 6, 7]
    );
    let stored = dir.path().join("stored.arrow");
    write_table_ipc(&table, &stored).unwrap();
    let back = read_table(&stored, Format::Arrow, &ReadOptions::default()).unwrap();
    assert_eq!(
        (0..4).map(|r| back.line(r)).collect::<Vec<_>>(),
        [2, 5, 6, 7]
    );

    // Reader errors point at the physical line too.
    let err = load("gap.csv", b"id,amount\n1,2\n\n\n2\n", map).unwrap_err();
    assert!(
        err.ends_with("gap.csv line 5: incorrect number of fields, expected 2 got 1"),
        "{err}"
    );
}

/// One input for the stored-form differential checks.
struct StoredCase {
    name: &'static str,
    content: Vec<u8>,
    format: Format,
    opts: ReadOptions,
}

impl StoredCase {
    fn csv(name: &'static str, content: &[u8]) -> Self {
        Self {
            name,
            content: content.to_vec(),
            format: Format::Csv,
            opts: ReadOptions {
                batch_size: 2,
                ..ReadOptions::default()
            },
        }
    }
}

/// Everything a caller can observe of a table: origin, schema, rows, lines, values.
fn table_view(t: &Table) -> String {
    let lines: Vec<u64> = (0..t.rows).map(|r| t.line(r)).collect();
    format!(
        "{} first={} rows={} lines={lines:?}\n{:?}\n{:?}",
        t.source, t.first_line, t.rows, t.schema, t.batches
    )
}

/// Mappings the stored-form checks apply: `fail` and `quarantine`, named and
/// line-number ids, a column some inputs lack.
const STORED_MAPPINGS: [&str; 4] = [
    BASIC,
    "amount = \"amount\"\ncurrency_value = \"USD\"\non_error = \"quarantine\"\ndescription = \"memo\"",
    "id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\"\non_error = \"quarantine\"",
    "amount = \"amount\"\ncurrency_value = \"USD\"",
];

/// Checks that [`convert_to_ipc`] stores exactly what `write_table_ipc(read_table(src))`
/// stores: the same error for bad input, else the same table when read back (source,
/// lines, values) and the same side (or mapping error) for every mapping.
fn check_stored(case: &StoredCase) {
    let (dir, src) = file(case.name, &case.content);
    let read = read_table(&src, case.format, &case.opts);
    let dest = dir.path().join("converted.arrow");
    let converted = convert_to_ipc(&src, case.format, &case.opts, &dest);
    let (table, converted) = match (read, converted) {
        (Ok(t), Ok(c)) => (t, c),
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string(), "{}", case.name);
            return;
        }
        (a, b) => panic!("{}: read_table {a:?} but convert_to_ipc {b:?}", case.name),
    };
    assert_eq!(converted.rows, table.rows as u64, "{}", case.name);
    let names: Vec<String> = table
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(converted.columns, names, "{}", case.name);
    let stored = dir.path().join("stored.arrow");
    write_table_ipc(&table, &stored).unwrap();
    let reopen = ReadOptions::default();
    let old = read_table(&stored, Format::Arrow, &reopen).unwrap();
    let new = read_table(&dest, Format::Arrow, &reopen).unwrap();
    assert_eq!(table_view(&new), table_view(&old), "{}", case.name);
    assert_eq!(table_view(&new), table_view(&table), "{}", case.name);
    for map in STORED_MAPPINGS {
        let map = mapping(map);
        let side =
            |t: &Table| format!("{:?}", Side::from_table(t, &map).map_err(|e| e.to_string()));
        assert_eq!(side(&new), side(&table), "{}", case.name);
    }
}

/// The example table written by `write`, as a file of `format`.
fn example_in(name: &'static str, format: Format) -> StoredCase {
    let batch = example_batch();
    let mut content = Vec::new();
    match format {
        Format::Parquet => {
            let mut w =
                parquet::arrow::ArrowWriter::try_new(&mut content, batch.schema(), None).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
        }
        Format::Arrow => {
            let mut w =
                arrow_ipc::writer::FileWriter::try_new(&mut content, &batch.schema()).unwrap();
            w.write(&batch).unwrap();
            w.finish().unwrap();
        }
        Format::ArrowStream => {
            let mut w =
                arrow_ipc::writer::StreamWriter::try_new(&mut content, &batch.schema()).unwrap();
            w.write(&batch).unwrap();
            w.finish().unwrap();
        }
        Format::Ndjson => {
            let mut w = arrow_json::LineDelimitedWriter::new(&mut content);
            w.write(&batch).unwrap();
            w.finish().unwrap();
        }
        Format::Csv => content.extend_from_slice(EXAMPLE_CSV.as_bytes()),
    }
    StoredCase {
        name,
        content,
        format,
        opts: ReadOptions::default(),
    }
}

/// CSV inputs that exercise line numbering and every reader error.
fn csv_stored_cases() -> Vec<StoredCase> {
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(EXAMPLE_CSV.as_bytes());
    vec![
        StoredCase::csv("example.csv", EXAMPLE_CSV.as_bytes()),
        StoredCase::csv("bom.csv", &bom),
        StoredCase::csv(
            "lines.csv",
            b"id,amount,memo\n1,1,\"two\nlines\"\n\n2,2,\"a \"\"quoted\"\" word\"\n3,3,plain 5\" pipe\n4,oops,x\n\n\n5,5,\"x\r\ny\"\n",
        ),
        StoredCase::csv("crlf.csv", b"id , Amount\r\n1,2.50\r\n\r\n2,(3)\r\n"),
        StoredCase::csv("gap.csv", b"id,amount\n1,2\n\n\n2\n"),
        StoredCase::csv("quoted_then_short.csv", b"id,amount\n1,\"a\nb\"\n3,4\n5\n"),
        StoredCase::csv("utf8.csv", b"id,amount\n1,2\n\n2,3\n3,\xff\xfe\n"),
        StoredCase::csv("header_utf8.csv", b"id,am\xffount\n1,2\n"),
        StoredCase::csv("empty.csv", b""),
        StoredCase::csv("bom_only.csv", b"\xEF\xBB\xBF"),
        StoredCase::csv("header_only.csv", b"id,amount\n"),
        StoredCase {
            opts: ReadOptions {
                delimiter: b';',
                has_header: false,
                encoding: TextEncoding::UTF_8,
                batch_size: 1,
                source: Some("upload-7".to_owned()),
            },
            ..StoredCase::csv(
                "noheader.csv",
                b"a1;\"1,234.56\";USD;2026-03-01;INV-1\n\na2;(12.30);eur;2026-02-28;\"x\ny\"\na3;5;JPY;;\n",
            )
        },
        // In windows-1252: stored as UTF-8 text, its lines kept; and a file
        // the encoding refuses (0x81 is no Shift_JIS character alone).
        StoredCase {
            opts: ReadOptions {
                encoding: TextEncoding::from_label("windows-1252").unwrap(),
                batch_size: 1,
                ..ReadOptions::default()
            },
            ..StoredCase::csv(
                "latin.csv",
                b"id,amount,currency,date,ref\na1,1.00,EUR,2026-03-01,\"M\xfcller\n\xa7 2\"\n\na2,oops,EUR,,\xe9\n",
            )
        },
        StoredCase {
            opts: ReadOptions {
                encoding: TextEncoding::from_label("shift_jis").unwrap(),
                ..ReadOptions::default()
            },
            ..StoredCase::csv("sjis.csv", b"id,amount\n1,2\n2,\x81 \n")
        },
    ]
}

#[test]
fn convert_to_ipc_stores_what_write_table_ipc_stores() {
    for case in csv_stored_cases() {
        check_stored(&case);
    }
    for (name, format) in [
        ("x.parquet", Format::Parquet),
        ("x.arrow", Format::Arrow),
        ("x.arrows", Format::ArrowStream),
        ("x.ndjson", Format::Ndjson),
    ] {
        check_stored(&example_in(name, format));
    }
    check_stored(&StoredCase {
        name: "bad.ndjson",
        content: b"{\"id\": 1}\n{\"id\": \n".to_vec(),
        format: Format::Ndjson,
        opts: ReadOptions::default(),
    });
    check_stored(&StoredCase {
        name: "truncated.parquet",
        content: b"PAR1 not really".to_vec(),
        format: Format::Parquet,
        opts: ReadOptions::default(),
    });
}

#[test]
fn convert_to_ipc_of_a_stored_file_keeps_its_origin() {
    let (dir, path) = file("bank.csv", b"id,amount\n\nx,1\ny,oops\n");
    let first = dir.path().join("first.arrow");
    convert_to_ipc(&path, Format::Csv, &ReadOptions::default(), &first).unwrap();
    let second = dir.path().join("second.arrow");
    let converted =
        convert_to_ipc(&first, Format::Arrow, &ReadOptions::default(), &second).unwrap();
    assert_eq!(converted.rows, 2);
    assert_eq!(converted.columns, ["id", "amount"]);
    let back = read_table(&second, Format::Arrow, &ReadOptions::default()).unwrap();
    let err = Side::from_table(
        &back,
        &mapping("amount = \"amount\"\ncurrency_value = \"USD\""),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.ends_with("bank.csv line 4, column \"amount\": \"oops\" is not an amount"),
        "{err}"
    );
}

#[test]
fn convert_to_ipc_names_an_unwritable_destination() {
    let (dir, path) = file("ok.csv", EXAMPLE_CSV.as_bytes());
    let dest = dir.path().join("missing-dir").join("x.arrow");
    let err = convert_to_ipc(&path, Format::Csv, &ReadOptions::default(), &dest).unwrap_err();
    assert!(matches!(err, InputError::Io { .. }), "{err}");
    assert!(err.to_string().contains("missing-dir"), "{err}");
}

/// A destination that fills up (here `/dev/full`, whose every write fails
/// with "no space left") is the writer's I/O failure, never the input's:
/// the service answers it 500, not 422.
#[cfg(target_os = "linux")]
#[test]
fn convert_to_ipc_on_a_full_disk_is_an_io_error() {
    let (_dir, path) = file("ok.csv", EXAMPLE_CSV.as_bytes());
    let dest = Path::new("/dev/full");
    let err = convert_to_ipc(&path, Format::Csv, &ReadOptions::default(), dest).unwrap_err();
    assert!(
        matches!(&err, InputError::Io { file, source }
            if file == "/dev/full" && source.raw_os_error() == Some(28)),
        "{err:?}"
    );
    let table = read_table(&path, Format::Csv, &ReadOptions::default()).unwrap();
    let err = write_table_ipc(&table, dest).unwrap_err();
    assert!(matches!(err, InputError::Io { .. }), "{err:?}");
}

/// Checks that [`load_side_with`] gives exactly what `Side::from_table(read_table(..))`
/// gives (the side, or the error), for `case` as given and as stored by
/// [`convert_to_ipc`], under every mapping of [`STORED_MAPPINGS`] and `extra`.
fn check_loaded(case: &StoredCase, extra: &[&str]) {
    let (dir, src) = file(case.name, &case.content);
    let stored = dir.path().join("stored.arrow");
    let mut inputs = vec![(src.clone(), case.format, case.opts.clone())];
    if convert_to_ipc(&src, case.format, &case.opts, &stored).is_ok() {
        inputs.push((stored, Format::Arrow, ReadOptions::default()));
    }
    for (path, format, opts) in &inputs {
        for map in STORED_MAPPINGS.iter().chain(extra) {
            let map = mapping(map);
            let whole = read_table(path, *format, opts).and_then(|t| Side::from_table(&t, &map));
            let streamed = load_side_with(path, *format, opts, &map);
            assert_eq!(
                format!("{:?}", streamed.map_err(|e| e.to_string())),
                format!("{:?}", whole.map_err(|e| e.to_string())),
                "{} as {format:?} with {map:?}",
                case.name
            );
        }
    }
}

#[test]
fn load_side_with_maps_as_from_table_does() {
    let cases = csv_stored_cases().into_iter().chain([
        StoredCase::csv("bad_then_short.csv", b"id,amount\n1,x\n2,3\n4\n"),
        StoredCase::csv(
            "blank_then_bad.csv",
            b"id,amount,memo\n\n1,1,a\n\n2,bad,b\n3,4,\"multi\nline\"\n,5,c\n",
        ),
        example_in("x.parquet", Format::Parquet),
        example_in("x.arrow", Format::Arrow),
        example_in("x.arrows", Format::ArrowStream),
        example_in("x.ndjson", Format::Ndjson),
    ]);
    for case in cases {
        check_loaded(
            &case,
            &["id = \"id\"\namount = \"amount\"\ncurrency_value = \"USD\""],
        );
    }
}

#[test]
fn load_side_with_maps_many_batches_in_order() {
    let mut csv = String::from("id,amount,memo\n");
    for i in 0..2000 {
        match i % 97 {
            0 => csv.push_str(&format!("r{i},bad{i},x\n")),
            13 => csv.push('\n'),
            41 => csv.push_str(&format!("r{i},{i}.5,\"two\nlines {i}\"\n")),
            _ => csv.push_str(&format!("r{i},{i},m{i}\n")),
        }
    }
    for batch_size in [1, 7, 64, 5000] {
        let case = StoredCase {
            opts: ReadOptions {
                batch_size,
                ..ReadOptions::default()
            },
            ..StoredCase::csv("many.csv", csv.as_bytes())
        };
        check_loaded(
            &case,
            &[
                "amount = \"amount\"\ncurrency_value = \"EUR\"\nextra = [\"memo\"]\non_error = \"quarantine\"",
                "id = \"memo\"\ndebit = \"amount\"\ncredit = \"id\"\ncurrency_value = \"EUR\"\non_error = \"quarantine\"",
            ],
        );
    }
}
