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

    // While an accepted job (here another replica's, queued) still needs it,
    // the dataset cannot be deleted: 409 naming the job.
    let job = "00000000-0000-4000-8000-000000000001";
    let job_dir = t.dir.path().join("jobs").join(job);
    std::fs::create_dir_all(&job_dir).unwrap();
    let mut rec = serde_json::json!({
        "id": job, "state": "queued", "left": id, "right": "r", "rules_sha256": "",
        "progress": {"done": 0, "total": 0}, "created": "2026-01-01T00:00:00Z",
        "owner": {"host": "elsewhere.invalid", "pid": 1, "instance": "0".repeat(32)},
    });
    std::fs::write(job_dir.join("job.json"), rec.to_string()).unwrap();
    let delete = || {
        t.send(
            Method::DELETE,
            &format!("/v1/datasets/{id}"),
            &[],
            RequestBody::empty(),
        )
    };
    let p = delete().expect(409).json();
    assert!(
        p["detail"].as_str().unwrap().contains(&format!(
            "is used by reconciliation \"{job}\", which is queued"
        )),
        "{p}"
    );
    rec["state"] = "failed".into();
    std::fs::write(job_dir.join("job.json"), rec.to_string()).unwrap();

    delete().expect(204);
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
    // Compressed bytes are not taken for the data.
    let p = t
        .send(
            Method::POST,
            "/v1/datasets",
            &[("content-type", "text/csv"), ("content-encoding", "gzip")],
            RequestBody::from_bytes("id,amount\nx,1\n"),
        )
        .expect(415)
        .json();
    assert_eq!(
        p["detail"],
        "Content-Encoding \"gzip\" is not supported; send the body uncompressed"
    );
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

#[test]
fn datasets_and_jobs_list_in_creation_order_within_one_second() {
    let t = app();
    // Created well within one second: ordered by a random id, 8 datasets
    // would come out in creation order once in 40320 runs.
    let ids: Vec<String> = (0..8)
        .map(|i| crate::reconcile::upload(&t, &format!("id,amount\nx{i},1\n")))
        .collect();
    assert_eq!(listed_ids(&t, "/v1/datasets", "datasets"), ids);

    let (l, r) = (
        crate::reconcile::upload(&t, LEDGER),
        crate::reconcile::upload(&t, BANK),
    );
    let jobs: Vec<String> = (0..6)
        .map(|_| {
            crate::reconcile::start(&t, "", &l, &r, crate::reconcile::RULES).json()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        listed_ids(&t, "/v1/reconciliations", "reconciliations"),
        jobs
    );
}

/// The ids a list route answers under `key`, in its order.
fn listed_ids(t: &crate::TestApp, path: &str, key: &str) -> Vec<String> {
    t.get(path).expect(200).json()[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A multipart upload's answer.
fn post_multipart(t: &crate::TestApp, parts: &[crate::Part<'_>]) -> crate::Answer {
    t.upload(
        "/v1/datasets",
        "multipart/form-data; boundary=zz",
        multipart("zz", parts),
    )
}

#[test]
fn multipart_parts_beyond_the_fields_and_one_file_are_refused() {
    let t = app();
    let csv: &[u8] = b"id,amount\nx,1\n";
    let detail = |res: crate::Answer| res.json()["detail"].as_str().unwrap().to_owned();
    // A second file part (`-F file=@a.csv -F other=@b.csv`).
    let d = detail(
        post_multipart(
            &t,
            &[
                ("file", Some("a.csv"), None, csv),
                ("other", Some("b.csv"), None, csv),
            ],
        )
        .expect(400),
    );
    assert_eq!(
        d,
        "part \"other\" (b.csv) follows the file part; a dataset upload takes one file part, \
         after its fields (name, delimiter, has_header, encoding)"
    );
    // A field after the file would not apply: refused, not dropped.
    let d = detail(
        post_multipart(
            &t,
            &[
                ("file", Some("a.csv"), None, csv),
                ("name", None, None, b"late"),
            ],
        )
        .expect(400),
    );
    assert!(d.starts_with("part \"name\" follows the file part"), "{d}");
    // Late even when the file it came after was refused (in windows-1252
    // and read as UTF-8, as the late field could not say): the request's
    // own mistake is what is said.
    let d = detail(
        post_multipart(
            &t,
            &[
                ("file", Some("l.csv"), None, b"id,name\n1,M\xfcller\n"),
                ("encoding", None, None, b"windows-1252"),
            ],
        )
        .expect(400),
    );
    assert!(
        d.starts_with("part \"encoding\" follows the file part"),
        "{d}"
    );
    let d = detail(
        post_multipart(
            &t,
            &[
                ("colour", None, None, b"blue"),
                ("file", Some("a.csv"), None, csv),
            ],
        )
        .expect(400),
    );
    assert_eq!(
        d,
        "unknown part \"colour\"; a dataset upload takes the fields name, delimiter, has_header, encoding, \
         then one file part"
    );
    let d = detail(
        post_multipart(
            &t,
            &[
                ("name", None, None, b"a"),
                ("name", None, None, b"b"),
                ("file", Some("a.csv"), None, csv),
            ],
        )
        .expect(400),
    );
    assert_eq!(d, "part \"name\" is given twice");
    assert_nothing_stored(&t);
}

#[test]
fn query_parameters_a_route_does_not_take_are_refused() {
    let t = app();
    let detail = |res: crate::Answer| res.json()["detail"].as_str().unwrap().to_owned();
    let csv = "id,amount\nx,1\n";
    // A misspelt option is not silently dropped, and nothing is stored.
    let d = detail(
        t.upload("/v1/datasets?nmae=ledger", "text/csv", csv)
            .expect(400),
    );
    assert_eq!(
        d,
        "unknown query parameter \"nmae\"; this endpoint takes name, delimiter, has_header, encoding"
    );
    let d = detail(
        t.upload("/v1/datasets?name=a&name=b", "text/csv", csv)
            .expect(400),
    );
    assert_eq!(d, "query parameter \"name\" is given twice");
    // An option given in the query and again as a form field.
    let body = multipart(
        "zz",
        &[
            ("name", None, None, b"form"),
            ("file", Some("a.csv"), None, csv.as_bytes()),
        ],
    );
    let d = detail(
        t.upload(
            "/v1/datasets?name=query",
            "multipart/form-data; boundary=zz",
            body,
        )
        .expect(400),
    );
    assert_eq!(
        d,
        "option \"name\" is given both in the query and as a part; give it once"
    );
    assert_nothing_stored(&t);
    let d = detail(t.get("/v1/datasets?offset=10").expect(400));
    assert_eq!(
        d,
        "unknown query parameter \"offset\"; this endpoint takes limit, after"
    );
    let d = detail(t.get("/v1/datasets?limit=1&limit=2").expect(400));
    assert!(d.contains("\"limit\""), "{d}");
    let d = detail(
        t.get("/v1/datasets/00000000-0000-0000-0000-000000000000?limit=1")
            .expect(400),
    );
    assert_eq!(
        d,
        "unknown query parameter \"limit\"; this endpoint takes none"
    );
    // A reconciliation's results: `status` repeats, a misspelling does not pass.
    let d = detail(
        t.get("/v1/reconciliations/00000000-0000-0000-0000-000000000000/results?statuss=unmatched")
            .expect(400),
    );
    assert_eq!(
        d,
        "unknown query parameter \"statuss\"; this endpoint takes format, status"
    );
    t.get("/v1/reconciliations/00000000-0000-0000-0000-000000000000/results?status=matched&status=break")
        .expect(404);
    // Probes and operations endpoints ignore their query (cache-busters).
    t.get("/health?_=1700000000").expect(200);
    t.get("/metrics?x").expect(200);
    // The same upload without the mistakes is stored under its name.
    let meta = t
        .upload("/v1/datasets?name=ledger", "text/csv", csv)
        .expect(201)
        .json();
    assert_eq!(meta["name"], "ledger");
}

#[test]
fn a_file_parts_own_content_type_decides_its_format() {
    let t = app();
    // A file part of its own encoding (compressed) is 415 as a whole body
    // with a Content-Encoding is.
    let body = "--zz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"l.csv.gz\"\r\n\
                Content-Type: text/csv\r\nContent-Encoding: gzip\r\n\r\nid,amount\nx,1\n\r\n--zz--\r\n";
    let p = t
        .upload("/v1/datasets", "multipart/form-data; boundary=zz", body)
        .expect(415)
        .json();
    assert_eq!(
        p["detail"],
        "part \"file\" has the encoding \"gzip\", which recon does not undo; send it as it is \
         (binary)"
    );
    let ndjson: &[u8] = b"{\"id\":\"a\",\"amount\":\"1\"}\n";
    let csv: &[u8] = b"id,amount\nx,1\n";
    // `-F 'file=@a.csv;type=application/json'`: JSON is no format recon reads.
    let res = post_multipart(
        &t,
        &[("file", Some("a.csv"), Some("application/json"), csv)],
    )
    .expect(415);
    let d = res.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        d.starts_with(
            "part \"file\" has Content-Type \"application/json\", which is not a format recon reads"
        ),
        "{d}"
    );
    // A type and a file name naming two formats.
    let res = post_multipart(&t, &[("file", Some("a.parquet"), Some("text/csv"), csv)]).expect(415);
    assert_eq!(
        res.json()["detail"],
        "part \"file\" has Content-Type \"text/csv\" (csv) but its file name \"a.parquet\" says \
         parquet; make them agree, or send application/octet-stream to go by the file name"
    );
    assert_nothing_stored(&t);
    // The type decides where the name makes no claim; a generic type leaves it to the name.
    let meta = post_multipart(
        &t,
        &[(
            "file",
            Some("rows.txt"),
            Some("application/x-ndjson"),
            ndjson,
        )],
    )
    .expect(201)
    .json();
    assert_eq!(meta["format"], "ndjson");
    let meta = post_multipart(
        &t,
        &[("file", Some("a.csv"), Some("application/octet-stream"), csv)],
    )
    .expect(201)
    .json();
    assert_eq!(meta["format"], "csv");
}

#[test]
fn a_refused_upload_is_named_by_what_the_client_sent_never_by_an_id() {
    let t = app();
    let ragged: &[u8] = b"id,amount,currency\na,1,EUR\nb,2\n";
    let detail = |res: crate::Answer| res.json()["detail"].as_str().unwrap().to_owned();
    let d = detail(t.upload("/v1/datasets", "text/csv", ragged).expect(422));
    assert_eq!(
        d,
        "request body line 3: incorrect number of fields, expected 3 got 2"
    );
    let d = detail(post_multipart(&t, &[("file", Some("r.csv"), None, ragged)]).expect(422));
    assert!(d.starts_with("r.csv line 3: "), "{d}");
    let d = detail(post_multipart(&t, &[("file", None, Some("text/csv"), ragged)]).expect(422));
    assert!(d.starts_with("part \"file\" line 3: "), "{d}");
    // In a one-shot reconciliation too.
    let body = multipart(
        "zz",
        &[
            ("left", None, Some("text/csv"), ragged),
            ("right", Some("bank.csv"), None, BANK.as_bytes()),
        ],
    );
    let d = detail(
        t.upload("/v1/reconcile", "multipart/form-data; boundary=zz", body)
            .expect(422),
    );
    assert!(d.starts_with("part \"left\" line 3: "), "{d}");
    assert_nothing_stored(&t);
}
