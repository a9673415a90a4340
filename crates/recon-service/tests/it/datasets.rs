//! Uploads in every format, listing, deleting, and every upload error status.

use std::io;
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use http::Method;
use recon_service::RequestBody;
use sha2::Digest;

use crate::{BANK, FailingBody, LEDGER, app, app_with, multipart};

fn batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("amount", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
            Arc::new(StringArray::from(vec!["1.00", "2.50", "-3"])),
        ],
    )
    .unwrap()
}

fn arrow_stream() -> Vec<u8> {
    let b = batch();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &b.schema()).unwrap();
    w.write(&b).unwrap();
    w.into_inner().unwrap()
}

fn arrow_file() -> Vec<u8> {
    let b = batch();
    let mut w = arrow_ipc::writer::FileWriter::try_new(Vec::new(), &b.schema()).unwrap();
    w.write(&b).unwrap();
    w.into_inner().unwrap()
}

fn parquet_bytes() -> Vec<u8> {
    crate::parquet_of(&batch())
}

#[test]
fn csv_upload_is_stored_described_listed_and_deleted() {
    let t = app();
    let res = t
        .upload("/v1/datasets?name=ledger", "text/csv", LEDGER)
        .expect(201);
    let meta = res.json();
    let id = meta["id"].as_str().unwrap().to_owned();
    assert_eq!(res.header("location"), format!("/v1/datasets/{id}"));
    assert_eq!(meta["name"], "ledger");
    assert_eq!(meta["format"], "csv");
    assert_eq!(meta["rows"], 3);
    assert_eq!(meta["bytes"], LEDGER.len());
    assert_eq!(
        meta["columns"],
        serde_json::json!(["id", "date", "amount", "currency", "ref"])
    );
    assert_eq!(meta["sha256"], hex::encode(sha2::Sha256::digest(LEDGER)));
    assert!(
        t.dir
            .path()
            .join("datasets")
            .join(&id)
            .join("data.arrow")
            .is_file()
    );

    assert_eq!(
        t.get(&format!("/v1/datasets/{id}")).expect(200).json(),
        meta
    );
    let list = t.get("/v1/datasets").expect(200).json();
    assert_eq!(list["datasets"].as_array().unwrap().len(), 1);

    t.send(
        Method::DELETE,
        &format!("/v1/datasets/{id}"),
        &[],
        RequestBody::empty(),
    )
    .expect(204);
    t.get(&format!("/v1/datasets/{id}")).expect(404);
    t.send(
        Method::DELETE,
        &format!("/v1/datasets/{id}"),
        &[],
        RequestBody::empty(),
    )
    .expect(404);
    assert_eq!(
        t.get("/v1/datasets").json()["datasets"],
        serde_json::json!([])
    );
}

#[test]
fn every_format_uploads_to_the_same_rows() {
    let t = app();
    let ndjson = "{\"id\":\"a\",\"amount\":\"1.00\"}\n{\"id\":\"b\",\"amount\":\"2.50\"}\n{\"id\":\"c\",\"amount\":\"-3\"}\n";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "text/csv",
            b"id,amount\na,1.00\nb,2.50\nc,-3\n".to_vec(),
            "csv",
        ),
        ("application/x-ndjson", ndjson.as_bytes().to_vec(), "ndjson"),
        (
            "application/vnd.apache.arrow.stream",
            arrow_stream(),
            "arrow-stream",
        ),
        ("application/vnd.apache.arrow.file", arrow_file(), "arrow"),
        ("application/vnd.apache.parquet", parquet_bytes(), "parquet"),
    ];
    for (ct, body, format) in cases {
        let meta = t.upload("/v1/datasets", ct, body).expect(201).json();
        assert_eq!(meta["format"], format, "{ct}");
        assert_eq!(meta["rows"], 3, "{ct}");
        // NDJSON has no column order; its reader names the keys it found, sorted.
        let mut cols: Vec<_> = meta["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        cols.sort();
        assert_eq!(cols, ["amount", "id"], "{ct}");
    }
    assert_eq!(
        t.get("/v1/datasets").json()["datasets"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn multipart_upload_takes_fields_and_the_file_part() {
    let t = app();
    let body = multipart(
        "b0undary",
        &[
            ("name", None, None, b"bank statement"),
            ("delimiter", None, None, b";"),
            (
                "file",
                Some("bank.csv"),
                Some("text/csv"),
                b"id;amount\nx;1\ny;2\n",
            ),
        ],
    );
    let meta = t
        .upload(
            "/v1/datasets",
            "multipart/form-data; boundary=b0undary",
            body,
        )
        .expect(201)
        .json();
    assert_eq!(meta["name"], "bank statement");
    assert_eq!(meta["rows"], 2);
    assert_eq!(meta["columns"], serde_json::json!(["id", "amount"]));

    // Without a content type the file name's extension decides; the file name names it.
    let body = multipart("zz", &[("file", Some("bank.csv"), None, BANK.as_bytes())]);
    let meta = t
        .upload("/v1/datasets", "multipart/form-data; boundary=zz", body)
        .expect(201)
        .json();
    assert_eq!(meta["name"], "bank.csv");
    assert_eq!(meta["rows"], 3);

    let body = multipart("zz", &[("name", None, None, b"only a name")]);
    t.upload("/v1/datasets", "multipart/form-data; boundary=zz", body)
        .expect(400);
    let body = multipart(
        "zz",
        &[("file", Some("x.bin"), Some("image/png"), b"\x89PNG")],
    );
    t.upload("/v1/datasets", "multipart/form-data; boundary=zz", body)
        .expect(415);
}

pub fn assert_nothing_stored(t: &crate::TestApp) {
    assert_eq!(
        t.get("/v1/datasets").json()["datasets"],
        serde_json::json!([])
    );
    let tmp = t.dir.path().join("tmp");
    for scratch in std::fs::read_dir(tmp).unwrap() {
        let names: Vec<_> = std::fs::read_dir(scratch.unwrap().path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["owner.json".to_owned()], "scratch left behind");
    }
}

#[test]
fn upload_errors_have_their_statuses_and_leave_nothing() {
    let t = app_with(|c| c.server.max_request_body_size = 64);
    let big = "id,amount\n".to_owned() + &"x,1\n".repeat(40);
    // Declared too large: refused before reading.
    t.upload("/v1/datasets", "text/csv", big.clone())
        .expect(413);
    // Not declared: refused once the stream passes the limit.
    let streamed = RequestBody::from_reader(io::Cursor::new(big.into_bytes()), None);
    t.send(
        Method::POST,
        "/v1/datasets",
        &[("content-type", "text/csv")],
        streamed,
    )
    .expect(413);
    t.upload("/v1/datasets", "image/png", "x").expect(415);
    t.send(
        Method::POST,
        "/v1/datasets",
        &[],
        RequestBody::from_bytes("a,b\n"),
    )
    .expect(415);
    // Stalled past channel_timeout (the engine's reader reports TimedOut).
    let stalled = RequestBody::from_reader(
        FailingBody::new(b"id,amount\n", io::ErrorKind::TimedOut),
        None,
    );
    t.send(
        Method::POST,
        "/v1/datasets",
        &[("content-type", "text/csv")],
        stalled,
    )
    .expect(408);
    let cut = RequestBody::from_reader(
        FailingBody::new(b"id,amount\n", io::ErrorKind::UnexpectedEof),
        Some(60),
    );
    t.send(
        Method::POST,
        "/v1/datasets",
        &[("content-type", "text/csv")],
        cut,
    )
    .expect(400);
    t.upload("/v1/datasets", "text/csv", "").expect(422);
    assert_nothing_stored(&t);
}

#[test]
fn malformed_content_is_422_naming_the_line() {
    let t = app();
    let ragged = "id,amount,currency\na,1,EUR\nb,2\n";
    let res = t
        .upload("/v1/datasets?name=ragged.csv", "text/csv", ragged)
        .expect(422);
    let p = res.json();
    assert_eq!(res.header("content-type"), "application/problem+json");
    assert_eq!(p["status"], 422);
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("ragged.csv") && detail.contains("line 3"),
        "{detail}"
    );
    // A quote never closed would swallow the rows after it: refused too.
    let open = "id,amount,currency\na,1,EUR\nb,\"2,EUR\nc,3,EUR\n";
    let res = t
        .upload("/v1/datasets?name=open.csv", "text/csv", open)
        .expect(422);
    let detail = res.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.starts_with("open.csv line 3, column \"amount\": the quoted field starting \"2,EUR\" is never closed"),
        "{detail}"
    );
    let bad_json = "{\"id\":\"a\"}\n{not json\n";
    t.upload("/v1/datasets", "application/x-ndjson", bad_json)
        .expect(422);
    t.upload(
        "/v1/datasets",
        "application/vnd.apache.parquet",
        "not parquet at all",
    )
    .expect(422);
    assert_nothing_stored(&t);
}

#[test]
fn ids_that_could_escape_the_data_dir_are_rejected() {
    let t = app();
    for path in [
        "/v1/datasets/..%2F..%2Fetc%2Fpasswd",
        "/v1/datasets/../../etc/passwd",
        "/v1/datasets/..",
        "/v1/datasets/%2e%2e",
        "/v1/reconciliations/..",
        "/v1/reconciliations/../datasets/results",
    ] {
        t.get(path).expect(404);
    }
    t.send(Method::DELETE, "/v1/datasets/..", &[], RequestBody::empty())
        .expect(404);
    assert!(t.dir.path().join("datasets").is_dir());
}
