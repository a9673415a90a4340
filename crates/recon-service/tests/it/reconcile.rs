//! Reconciliation jobs over HTTP: validation, the job lifecycle, results and events.

use http::Method;
use recon_service::RequestBody;

use crate::{BANK, LEDGER, TestApp, app};

pub const RULES: &str = r#"
[left]
id = "id"
amount = "amount"
currency = "currency"
date = "date"
reference = "ref"

[right]
id = "id"
amount = "amount"
currency = "currency"
date = "date"
reference = "ref"

[[pass]]
name = "reference"
cardinality = "one_to_one"
reference = "exact"
amount = { abs = "0.00" }
date = { before = 0, after = 3 }
"#;

pub fn upload(t: &TestApp, csv: &str) -> String {
    t.upload("/v1/datasets", "text/csv", csv.to_owned())
        .expect(201)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn start(t: &TestApp, query: &str, left: &str, right: &str, rules: &str) -> crate::Answer {
    let body = serde_json::json!({"left": left, "right": right, "rules": rules});
    t.send(
        Method::POST,
        &format!("/v1/reconciliations{query}"),
        &[("content-type", "application/json")],
        RequestBody::from_bytes(serde_json::to_vec(&body).unwrap()),
    )
}

#[test]
fn requests_are_validated_before_a_job_exists() {
    let t = app();
    let l = upload(&t, LEDGER);
    let r = upload(&t, BANK);
    let missing = "00000000-0000-4000-8000-0000000000ff";
    let p = start(&t, "", &l, missing, RULES).expect(422).json();
    assert!(
        p["detail"].as_str().unwrap().contains("right dataset"),
        "{p}"
    );
    start(&t, "", &l, "../x", RULES).expect(422);
    start(&t, "", &l, &r, "[left]\nnot valid = = toml").expect(422);
    // A side mapping that loading would refuse is refused with the rules, at
    // its line, before any file is read.
    let bad_date = RULES.replacen(
        "date = \"date\"",
        "date = \"date\"\ndate_format = \"%Q\"",
        1,
    );
    let p = start(&t, "", &l, &r, &bad_date).expect(422).json();
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("rules:7:1: [left]: `date_format` = \"%Q\": unsupported directive %Q"),
        "{p}"
    );
    t.send(
        Method::POST,
        "/v1/reconciliations",
        &[("content-type", "application/json")],
        RequestBody::from_bytes("{\"left\": 1}"),
    )
    .expect(400);
    // The fields as an array, in order, are no request: an object only, and
    // the message says so without naming an internal type.
    let array = serde_json::json!([l, r, RULES]).to_string();
    for body in [array.as_str(), "[]", " null"] {
        let p = t
            .send(
                Method::POST,
                "/v1/reconciliations",
                &[("content-type", "application/json")],
                RequestBody::from_bytes(body.to_owned()),
            )
            .expect(400)
            .json();
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains("expected a JSON object"), "{body}: {p}");
        assert!(!detail.contains("ReconciliationRequest"), "{body}: {p}");
    }
    t.send(
        Method::POST,
        "/v1/reconciliations",
        &[("content-type", "text/plain")],
        RequestBody::from_bytes("{}"),
    )
    .expect(415);
    // No Content-Type at all is 415 too, as the API document says.
    let p = t
        .send(
            Method::POST,
            "/v1/reconciliations",
            &[],
            RequestBody::from_bytes("{}"),
        )
        .expect(415)
        .json();
    assert_eq!(
        p["detail"],
        "send the request as application/json (the Content-Type header is missing)"
    );
    // The JSON request's own cap (16 MiB, under the 1 GiB body limit) is
    // named as such, not as max_request_body_size.
    let declared = RequestBody::from_reader(std::io::Cursor::new(b"{}".to_vec()), Some(17 << 20));
    let p = t
        .send(
            Method::POST,
            "/v1/reconciliations",
            &[("content-type", "application/json")],
            declared,
        )
        .expect(413)
        .json();
    assert_eq!(
        p["detail"],
        "a reconciliation request must be smaller than 16777216 bytes; upload the data as \
         datasets and send their ids"
    );
    start(&t, "?wait=soon", &l, &r, RULES).expect(400);
    assert_eq!(
        t.get("/v1/reconciliations").expect(200).json()["reconciliations"],
        serde_json::json!([])
    );
    t.get(&format!("/v1/reconciliations/{missing}")).expect(404);
    t.get(&format!("/v1/reconciliations/{missing}/events"))
        .expect(404);
}

#[test]
fn a_job_runs_to_results_filtered_in_every_format() {
    let t = app();
    let l = upload(&t, LEDGER);
    let r = upload(&t, BANK);
    let res = start(&t, "?wait=30", &l, &r, RULES).expect(200);
    let job = res.json();
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(res.header("location"), format!("/v1/reconciliations/{id}"));
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["progress"]["done"], 6);
    assert_eq!(job["progress"]["total"], 6);
    assert_eq!(job["summary"]["left"]["records"], 3);
    assert_eq!(job["summary"]["audit"]["run_id"], id.as_str());
    // Read back from disk: the same job (its Parquet state may have moved on since).
    let again = t
        .get(&format!("/v1/reconciliations/{id}"))
        .expect(200)
        .json();
    assert_eq!(
        (&again["state"], &again["summary"]),
        (&job["state"], &job["summary"])
    );

    let base = format!("/v1/reconciliations/{id}/results");
    let all = t.get(&base).expect(200);
    assert_eq!(all.header("content-type"), "text/csv");
    let lines: Vec<String> = all.text().lines().map(str::to_owned).collect();
    assert!(lines[0].starts_with("match_id,side,record_id"), "{lines:?}");
    assert_eq!(lines.len(), 1 + 6);
    let unmatched = t
        .get(&format!("{base}?status=unmatched"))
        .expect(200)
        .text();
    let ids: Vec<&str> = unmatched
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap())
        .collect();
    assert_eq!(ids, ["L3", "B9"]);
    let json = t
        .get(&format!("{base}?status=matched&format=json"))
        .expect(200);
    assert_eq!(json.header("content-type"), "application/x-ndjson");
    let rows: Vec<serde_json::Value> = json
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r["status"] == "matched"));
    t.get(&format!("{base}?status=bogus")).expect(400);
    t.get(&format!("{base}?format=xml")).expect(400);

    // The events stream ends once every result file is in place, Parquet included.
    let events = t
        .get(&format!("/v1/reconciliations/{id}/events"))
        .expect(200);
    assert_eq!(events.header("content-type"), "text/event-stream");
    let text = events.text();
    let last = text.split("\n\n").filter(|e| !e.is_empty()).last().unwrap();
    assert!(last.starts_with("event: end\ndata: {"), "{text}");
    assert!(last.contains("\"parquet\":\"ready\""), "{last}");
    let parquet = t.get(&format!("{base}?format=parquet")).expect(200);
    assert!(parquet.body.starts_with(b"PAR1") && parquet.body.ends_with(b"PAR1"));

    let metrics = t.get("/metrics").expect(200).text();
    assert!(
        metrics.contains("recon_jobs_total{status=\"succeeded\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("recon_records_total{status=\"matched\"}"));
    assert!(metrics.contains("recon_job_duration_seconds"));
}

#[test]
fn a_queued_job_is_followed_through_its_events() {
    let t = app();
    let l = upload(&t, LEDGER);
    let r = upload(&t, BANK);
    let job = start(&t, "", &l, &r, RULES).expect(202).json();
    let id = job["id"].as_str().unwrap();
    assert_eq!(job["state"], "queued");
    assert_eq!(
        job["links"]["events"],
        format!("/v1/reconciliations/{id}/events")
    );
    // The SSE body blocks until the job ends, so reading it whole waits for it.
    let events = t
        .get(&format!("/v1/reconciliations/{id}/events"))
        .expect(200)
        .text();
    let last = events
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .last()
        .unwrap();
    assert!(last.starts_with("event: end"), "{events}");
    assert!(last.contains("\"succeeded\""), "{events}");
    let list = t.get("/v1/reconciliations").expect(200).json();
    assert_eq!(list["reconciliations"][0]["id"], id);
    let status = t.get("/debug/status").expect(200).json();
    assert_eq!(status["jobs"]["succeeded"], 1);
}

#[test]
fn a_bad_value_fails_the_job_naming_line_column_and_value() {
    let t = app();
    let l = upload(
        &t,
        "id,date,amount,currency,ref\nL1,2024-01-02,12x.00,EUR,A\n",
    );
    let r = upload(&t, BANK);
    let job = start(&t, "?wait=30", &l, &r, RULES).expect(200).json();
    assert_eq!(job["state"], "failed");
    let err = job["error"].as_str().unwrap();
    assert!(
        err.contains("line 2") && err.contains("amount") && err.contains("12x.00"),
        "{err}"
    );
    let id = job["id"].as_str().unwrap();
    let p = t
        .get(&format!("/v1/reconciliations/{id}/results"))
        .expect(409)
        .json();
    // It failed: the answer says so, with why, not "once it has succeeded".
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("reconciliation {id} failed (")) && detail.contains("12x.00"),
        "{p}"
    );
    assert!(job["links"].get("results").is_none(), "{job}");
}

/// A job past `job_timeout` is stopped while matching and fails saying so:
/// here every record has one reference, amount and day, so every pair is a
/// candidate (400 million at 20k a side, minutes of work) and only the stop
/// ends it within the wait. The job thread is free again afterwards.
#[test]
fn a_job_past_its_time_limit_is_stopped_and_fails_saying_so() {
    let t = crate::app_with(|c| {
        c.job_timeout = std::time::Duration::from_secs(1);
        c.job_threads = std::num::NonZeroUsize::MIN;
    });
    let (l, r) = (upload(&t, &crowd("L")), upload(&t, &crowd("B")));
    let job = start(&t, "?wait=120", &l, &r, RULES).expect(200).json();
    failed_with(
        &job,
        "stopped: the job ran past its time limit of 1s (job_timeout)",
    );
    // The one job thread is free again: the next job runs on it.
    let (l, r) = (upload(&t, LEDGER), upload(&t, BANK));
    let job = start(&t, "?wait=120", &l, &r, RULES).expect(200).json();
    assert_eq!(job["state"], "succeeded", "{job}");
}

/// Job `id` once it has ended: its event stream ends with it.
fn ended(t: &TestApp, id: &str) -> serde_json::Value {
    t.get(&format!("/v1/reconciliations/{id}/events"))
        .expect(200);
    t.get(&format!("/v1/reconciliations/{id}"))
        .expect(200)
        .json()
}

/// Checks that `job` failed with an error starting `prefix`, and offers no
/// results.
#[track_caller]
fn failed_with(job: &serde_json::Value, prefix: &str) {
    assert_eq!(job["state"], "failed", "{job}");
    let err = job["error"].as_str().unwrap();
    assert!(err.starts_with(prefix), "{err}");
    assert!(job["links"].get("results").is_none(), "{job}");
}

/// Every record of one reference, amount and day, 20k a side: every pair is a
/// candidate of the reference pass, minutes of work, which only a stop ends.
fn crowd(prefix: &str) -> String {
    let mut csv = String::from("id,date,amount,currency,ref\n");
    for i in 0..20_000 {
        csv.push_str(&format!("{prefix}{i},2024-01-02,10.00,EUR,INV-1\n"));
    }
    csv
}

/// `POST /v1/reconciliations/{id}/cancel`: a running job stops and fails
/// saying so, a job queued behind it fails without starting, the job thread
/// is free again, and a job that has ended, or none, cannot be cancelled.
#[test]
fn a_job_asked_to_stop_fails_saying_so() {
    let t = crate::app_with(|c| c.job_threads = std::num::NonZeroUsize::new(1).unwrap());
    let (l, r) = (upload(&t, &crowd("L")), upload(&t, &crowd("B")));
    let id_of = |a: crate::Answer| a.json()["id"].as_str().unwrap().to_owned();
    // Answered after a second's wait, running: its thread took it at once.
    let job = start(&t, "?wait=1", &l, &r, RULES).expect(202).json();
    assert_eq!(job["state"], "running", "{job}");
    let running = job["id"].as_str().unwrap().to_owned();
    // One job thread, busy for minutes: this one waits in the queue.
    let queued = id_of(start(&t, "", &l, &r, RULES).expect(202));
    let cancel = |id: &str, query: &str| {
        t.send(
            Method::POST,
            &format!("/v1/reconciliations/{id}/cancel{query}"),
            &[],
            RequestBody::empty(),
        )
    };
    let job = cancel(&queued, "").expect(202).json();
    assert_eq!(job["state"], "queued", "{job}");
    let job = cancel(&running, "?wait=120").expect(200).json();
    failed_with(
        &job,
        "cancelled: POST /v1/reconciliations/{id}/cancel asked it to stop while it was matching",
    );
    // The queued job ends once the thread reaches it.
    let job = ended(&t, &queued);
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(
        job["error"],
        "cancelled: POST /v1/reconciliations/{id}/cancel asked it to stop before it started"
    );
    assert!(job["started"].is_null(), "{job}");
    // Ended jobs stay as they ended.
    let p = cancel(&running, "").expect(409).json();
    assert_eq!(
        p["detail"],
        format!("reconciliation {running} has already ended: it failed")
    );
    let (l, r) = (upload(&t, LEDGER), upload(&t, BANK));
    let done = id_of(start(&t, "?wait=120", &l, &r, RULES).expect(200));
    let p = cancel(&done, "").expect(409).json();
    assert_eq!(
        p["detail"],
        format!("reconciliation {done} has already ended: it succeeded")
    );
    cancel("00000000-0000-4000-8000-0000000000ff", "").expect(404);
    cancel(&done, "?wait=x").expect(400);
    cancel(&done, "?now=1").expect(400);
}

/// The rules' reading keys (`delimiter`, `has_header`, `format`) mean what
/// they mean to `recon match`: a one-shot request whose rules come first
/// reads its files that way; rules that come after files read otherwise, or
/// that contradict how a stored dataset was read, are refused naming the key.
#[test]
fn the_rules_reading_keys_are_honoured_or_refused() {
    let t = app();
    let semi = |csv: &str| csv.replace(',', ";");
    let rules_semi = RULES
        .replace("[left]\n", "[left]\ndelimiter = \";\"\n")
        .replace("[right]\n", "[right]\ndelimiter = \";\"\n");
    let (left, right) = (semi(LEDGER), semi(BANK));
    let parts = |rules_first: bool| {
        let files = [
            ("left", Some("ledger.csv"), None, left.as_bytes()),
            ("right", Some("bank.csv"), None, right.as_bytes()),
        ];
        let rules = ("rules", None, None, rules_semi.as_bytes());
        let all: Vec<_> = if rules_first {
            std::iter::once(rules).chain(files).collect()
        } else {
            files.into_iter().chain(std::iter::once(rules)).collect()
        };
        crate::multipart("bnd", &all)
    };
    let job = t
        .upload(
            "/v1/reconcile",
            "multipart/form-data; boundary=bnd",
            parts(true),
        )
        .expect(200)
        .json();
    assert_eq!(job["state"], "succeeded", "{job}");
    // Files first: read with commas, so the rules' `;` is refused, and said so.
    let p = t
        .upload(
            "/v1/reconcile",
            "multipart/form-data; boundary=bnd",
            parts(false),
        )
        .expect(422)
        .json();
    let detail = p["detail"].as_str().unwrap();
    // The datasets stored for the request were never given to the client:
    // the message names the part and its file, never an id.
    assert!(
        detail.starts_with("[left]: `delimiter` = \";\", but the `left` file (\"")
            && detail.contains("send the `rules` part before the files")
            && !detail.contains("dataset"),
        "{p}"
    );
    // Stored datasets: read with `;` at upload, the same rules agree; a
    // header-less reading does not.
    let stored = |csv: &str| {
        t.upload("/v1/datasets?delimiter=%3B", "text/csv", csv.to_owned())
            .expect(201)
            .json()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (l, r) = (stored(&left), stored(&right));
    start(&t, "?wait=30", &l, &r, &rules_semi).expect(200);
    let no_header = rules_semi.replacen("[right]\n", "[right]\nhas_header = false\n", 1);
    let p = start(&t, "", &l, &r, &no_header).expect(422).json();
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .starts_with("[right]: `has_header` = false, but dataset "),
        "{p}"
    );
    let parquet = RULES.replacen("[left]\n", "[left]\nformat = \"parquet\"\n", 1);
    let p = start(&t, "", &l, &r, &parquet).expect(422).json();
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("`format` = \"parquet\""),
        "{p}"
    );
}

#[test]
fn one_shot_reconcile_stores_inputs_and_answers_with_the_summary() {
    let t = app();
    let body = crate::multipart(
        "bnd",
        &[
            ("rules", None, None, RULES.as_bytes()),
            (
                "left",
                Some("ledger.csv"),
                Some("text/csv"),
                LEDGER.as_bytes(),
            ),
            ("right", Some("bank.csv"), None, BANK.as_bytes()),
        ],
    );
    let job = t
        .upload("/v1/reconcile", "multipart/form-data; boundary=bnd", body)
        .expect(200)
        .json();
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(job["summary"]["match_rate"].as_f64().unwrap() > 0.5);
    assert!(job["links"]["results"].is_string());
    let names: Vec<_> = t.get("/v1/datasets").json()["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"ledger.csv".to_owned()) && names.contains(&"bank.csv".to_owned()));

    // Missing rules: 400 naming what is missing, and the files it stored
    // are removed again.
    let body = crate::multipart("bnd", &[("left", Some("l.csv"), None, LEDGER.as_bytes())]);
    let p = t
        .upload("/v1/reconcile", "multipart/form-data; boundary=bnd", body)
        .expect(400)
        .json();
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .starts_with("the multipart body has no `right` or `rules`"),
        "{p}"
    );
    t.upload("/v1/reconcile", "text/csv", LEDGER).expect(415);
    assert_eq!(
        t.get("/v1/datasets").json()["datasets"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn parquet_asked_for_at_once_waits_for_the_file() {
    let t = app();
    let l = upload(&t, LEDGER);
    let r = upload(&t, BANK);
    let job = start(&t, "?wait=30", &l, &r, RULES).expect(200).json();
    assert_eq!(job["state"], "succeeded");
    let id = job["id"].as_str().unwrap();
    // Asked for before the Parquet file is written, the request waits for it.
    let parquet = t
        .get(&format!("/v1/reconciliations/{id}/results?format=parquet"))
        .expect(200);
    assert!(parquet.body.starts_with(b"PAR1"));
    // A job answered 202 is in place with its rules.
    let queued = start(&t, "", &l, &r, RULES).expect(202).json();
    let queued = queued["id"].as_str().unwrap();
    let dir = t.dir.path().join("jobs").join(queued);
    assert!(dir.join("rules.toml").is_file() && dir.join("job.json").is_file());
    // An ended job's directory holds its files and no temporary one (but
    // the Parquet file's, which may still be being written).
    let dir = t.dir.path().join("jobs").join(id);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.contains("results.parquet"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "job.json",
            "rejects_left.csv",
            "rejects_right.csv",
            "results.csv",
            "rules.toml",
            "summary.json"
        ]
    );
}

/// The results CSV of a job that succeeded.
fn results_of(t: &TestApp, job: &serde_json::Value) -> String {
    assert_eq!(job["state"], "succeeded", "{job}");
    let id = job["id"].as_str().unwrap();
    t.get(&format!("/v1/reconciliations/{id}/results"))
        .expect(200)
        .text()
}

#[test]
fn a_role_no_rule_reads_is_checked_but_changes_nothing() {
    let t = app();
    // RULES, with a description mapped on the left that no pass compares.
    let with_memo = RULES.replacen(
        "reference = \"ref\"\n",
        "reference = \"ref\"\ndescription = \"memo\"\n",
        1,
    );
    assert_ne!(with_memo, RULES);
    let r = upload(&t, BANK);

    // The ledger has no `memo` column: refused before a job exists, with
    // recon-core's missing-column message naming the dataset.
    let l = t
        .upload("/v1/datasets?name=ledger.csv", "text/csv", LEDGER)
        .expect(201)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = start(&t, "?wait=30", &l, &r, &with_memo).expect(422).json();
    assert_eq!(
        p["detail"],
        "[left]: ledger.csv: column \"memo\" not found; available columns: \
         \"id\", \"date\", \"amount\", \"currency\", \"ref\""
    );
    assert_eq!(
        t.get("/v1/reconciliations").json()["reconciliations"],
        serde_json::json!([])
    );

    // With the column: the same results as without the mapping.
    let memo_ledger = "id,date,amount,currency,ref,memo\n\
L1,2024-01-02,100.00,EUR,INV-1,rent\n\
L2,2024-01-03,-25.50,EUR,INV-2,fee\n\
L3,2024-01-04,-25.50,EUR,INV-3,fee\n";
    let l = upload(&t, memo_ledger);
    let plain = results_of(&t, &start(&t, "?wait=30", &l, &r, RULES).expect(200).json());
    let mapped = results_of(
        &t,
        &start(&t, "?wait=30", &l, &r, &with_memo).expect(200).json(),
    );
    assert_eq!(mapped, plain);
    assert!(!plain.contains("duplicate"), "{plain}");

    // A duplicate key on the description reads it: L3 repeats L2's memo and amount.
    let keyed = with_memo.replacen(
        "[[pass]]",
        "[duplicates]\nleft = [\"description\", \"amount\"]\n\n[[pass]]",
        1,
    );
    let dup = results_of(
        &t,
        &start(&t, "?wait=30", &l, &r, &keyed).expect(200).json(),
    );
    assert!(dup.contains(",left,L3,4,duplicate,"), "{dup}");
}

/// The 422 detail of a reconciliation of `l` and `r` whose left side maps
/// `column` as its description.
fn refused_mapping(t: &TestApp, l: &str, r: &str, column: &str) -> String {
    let mapped = RULES.replacen(
        "reference = \"ref\"\n",
        &format!("reference = \"ref\"\ndescription = \"{column}\"\n"),
        1,
    );
    let p = start(t, "?wait=30", l, r, &mapped).expect(422).json();
    p["detail"].as_str().unwrap().to_owned()
}

/// [`LEDGER`] as Parquet, with `extra` (a name and its values) after its own
/// text columns.
fn ledger_parquet_with(extra: (&str, arrow_array::ArrayRef)) -> Vec<u8> {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, RecordBatch, StringArray};

    let rows: Vec<Vec<&str>> = LEDGER
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let mut columns: Vec<(&str, ArrayRef)> = ["id", "date", "amount", "currency", "ref"]
        .iter()
        .enumerate()
        .map(|(c, n)| {
            let values = StringArray::from_iter_values(rows.iter().map(|r| r[c]));
            (*n, Arc::new(values) as ArrayRef)
        })
        .collect();
    columns.push(extra);
    crate::parquet_of(&RecordBatch::try_from_iter(columns).unwrap())
}

/// [`LEDGER`] as Parquet, with a nested `meta` struct column after its own.
fn ledger_parquet_with_a_struct() -> Vec<u8> {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, StructArray};
    use arrow_schema::{DataType, Field};

    let meta: ArrayRef = Arc::new(StructArray::from(vec![(
        Arc::new(Field::new("batch", DataType::Int64, true)),
        Arc::new(Int64Array::from(vec![7, 7, 8])) as ArrayRef,
    )]));
    ledger_parquet_with(("meta", meta))
}

#[test]
fn a_nested_column_is_stored_empty_and_refused_only_when_mapped() {
    let t = app();
    let meta = t
        .upload(
            "/v1/datasets?name=ledger.parquet",
            "application/vnd.apache.parquet",
            ledger_parquet_with_a_struct(),
        )
        .expect(201)
        .json();
    assert_eq!(meta["rows"], 3);
    assert_eq!(meta["columns"][5], "meta");
    assert_eq!(meta["unreadable_columns"], serde_json::json!(["meta"]));
    let l = meta["id"].as_str().unwrap().to_owned();
    let r = upload(&t, BANK);

    // Not mapped: the same results as the CSV ledger's, but for the `line`
    // column (a Parquet row is numbered from 1, a CSV record by its line).
    let without_line = |csv: String| -> Vec<String> {
        csv.lines()
            .map(|l| {
                let mut f: Vec<&str> = l.split(',').collect();
                f.remove(3);
                f.join(",")
            })
            .collect()
    };
    let from_csv = upload(&t, LEDGER);
    let expected = results_of(
        &t,
        &start(&t, "?wait=30", &from_csv, &r, RULES)
            .expect(200)
            .json(),
    );
    let got = results_of(&t, &start(&t, "?wait=30", &l, &r, RULES).expect(200).json());
    assert_eq!(without_line(got), without_line(expected));

    // Mapped: refused before a job exists, naming the dataset, the column
    // and its type.
    let err = refused_mapping(&t, &l, &r, "meta");
    assert!(
        err.starts_with("[left]: ledger.parquet: ")
            && err.contains("column \"meta\" holds Struct")
            && err.contains("cannot be read as text"),
        "{err}"
    );
    // A CSV upload has no such columns: the key is absent.
    let csv_meta = t
        .get(&format!("/v1/datasets/{from_csv}"))
        .expect(200)
        .json();
    assert!(csv_meta.get("unreadable_columns").is_none(), "{csv_meta}");
}

#[test]
fn one_shot_reconcile_names_what_it_accepts() {
    let t = app();
    for (ct, tail) in [
        (Some("application/json"), ", not \"application/json\""),
        (Some("text/csv"), ", not \"text/csv\""),
        (None, "; the request has no Content-Type"),
    ] {
        let headers: Vec<(&str, &str)> = ct.map(|c| ("content-type", c)).into_iter().collect();
        let res = t
            .send(
                Method::POST,
                "/v1/reconcile",
                &headers,
                RequestBody::from_bytes("{}"),
            )
            .expect(415);
        assert_eq!(
            res.json()["detail"],
            format!(
                "POST /v1/reconcile takes multipart/form-data with the files `left` and `right` and the field `rules`{tail}"
            )
        );
    }
    t.upload("/v1/reconcile", "multipart/form-data", "")
        .expect(400);
}

#[test]
fn a_mapped_column_the_dataset_lacks_is_422_before_any_job() {
    let t = app();
    // The right side maps `reference = "invoice"`, which the bank file lacks.
    let (head, tail) = RULES.split_once("[right]").unwrap();
    let rules = format!(
        "{head}[right]{}",
        tail.replacen("\"ref\"", "\"invoice\"", 1)
    );
    let body = crate::multipart(
        "bnd",
        &[
            ("rules", None, None, rules.as_bytes()),
            ("left", Some("ledger.csv"), None, LEDGER.as_bytes()),
            ("right", Some("bank.csv"), None, BANK.as_bytes()),
        ],
    );
    let p = t
        .upload(
            "/v1/reconcile",
            "multipart/form-data; boundary=bnd",
            body.clone(),
        )
        .expect(422)
        .json();
    assert_eq!(
        p["detail"],
        "[right]: bank.csv: column \"invoice\" not found; available columns: \
         \"id\", \"date\", \"amount\", \"currency\", \"ref\""
    );
    // Nothing stored, no job.
    assert_eq!(
        t.get("/v1/datasets").json()["datasets"],
        serde_json::json!([])
    );
    assert_eq!(
        t.get("/v1/reconciliations").json()["reconciliations"],
        serde_json::json!([])
    );
    // The check comes before the files are published, so a refused request's
    // files are never listed, even for a moment: with nowhere to publish
    // (`datasets/` made a file), the refusal is still this 422, while the
    // same request with good rules reaches publishing and fails there.
    let datasets = t.dir.path().join("datasets");
    std::fs::rename(&datasets, t.dir.path().join("datasets.away")).unwrap();
    std::fs::write(&datasets, b"").unwrap();
    let refused = t
        .upload("/v1/reconcile", "multipart/form-data; boundary=bnd", body)
        .expect(422)
        .json();
    assert_eq!(refused["detail"], p["detail"]);
    let good = crate::multipart(
        "bnd",
        &[
            ("rules", None, None, RULES.as_bytes()),
            ("left", Some("ledger.csv"), None, LEDGER.as_bytes()),
            ("right", Some("bank.csv"), None, BANK.as_bytes()),
        ],
    );
    t.upload("/v1/reconcile", "multipart/form-data; boundary=bnd", good)
        .expect(500);
    std::fs::remove_file(&datasets).unwrap();
    std::fs::rename(t.dir.path().join("datasets.away"), &datasets).unwrap();
    // Over stored datasets, the same answer.
    let l = upload(&t, LEDGER);
    let r = t
        .upload("/v1/datasets?name=bank.csv", "text/csv", BANK)
        .expect(201)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = start(&t, "?wait=30", &l, &r, &rules).expect(422).json();
    assert_eq!(again["detail"], p["detail"]);
}

#[test]
fn query_values_out_of_range_or_empty_are_400() {
    let t = app();
    let l = upload(&t, LEDGER);
    let r = upload(&t, BANK);
    for wait in ["301", "1.5", "-1", ""] {
        let p = start(&t, &format!("?wait={wait}"), &l, &r, RULES)
            .expect(400)
            .json();
        assert_eq!(
            p["detail"],
            format!("wait must be whole seconds from 0 to 300, not {wait:?}")
        );
    }
    let body = crate::multipart("bnd", &[("rules", None, None, RULES.as_bytes())]);
    t.upload(
        "/v1/reconcile?wait=1.5",
        "multipart/form-data; boundary=bnd",
        body,
    )
    .expect(400);
    assert_eq!(
        t.get("/v1/reconciliations").json()["reconciliations"],
        serde_json::json!([])
    );

    let job = start(&t, "?wait=300", &l, &r, RULES).expect(200).json();
    let base = format!(
        "/v1/reconciliations/{}/results",
        job["id"].as_str().unwrap()
    );
    for empty in [
        "status=",
        "status=,",
        "status=&status=%20",
        "format=json&status=",
    ] {
        let p = t.get(&format!("{base}?{empty}")).expect(400).json();
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .starts_with("the status list is empty;"),
            "{empty}: {p}"
        );
    }
    // A list with an empty item among others is the others.
    let some = t.get(&format!("{base}?status=matched,")).expect(200).text();
    assert_eq!(some.lines().count(), 1 + 4);
}

#[test]
fn one_shot_reconcile_refuses_unknown_and_repeated_parts() {
    let t = app();
    for (parts, detail) in [
        (
            vec![
                ("left", Some("l.csv"), None, LEDGER.as_bytes()),
                ("middle", Some("m.csv"), None, BANK.as_bytes()),
            ],
            "unknown part \"middle\"; POST /v1/reconcile takes the files `left` and `right` and \
             the field `rules`",
        ),
        (
            vec![
                ("left", Some("l.csv"), None, LEDGER.as_bytes()),
                ("left", Some("l2.csv"), None, LEDGER.as_bytes()),
            ],
            "part \"left\" is given twice",
        ),
    ] {
        let body = crate::multipart("bnd", &parts);
        let p = t
            .upload("/v1/reconcile", "multipart/form-data; boundary=bnd", body)
            .expect(400)
            .json();
        assert_eq!(p["detail"], detail);
    }
    crate::datasets::assert_nothing_stored(&t);
}

#[test]
fn quarantined_rows_are_served_per_side_as_csv() {
    let t = app();
    let quarantine = RULES.replacen(
        "reference = \"ref\"\n",
        "reference = \"ref\"\non_error = \"quarantine\"\n",
        1,
    );
    let l = upload(
        &t,
        "id,date,amount,currency,ref\n\
L1,2024-01-02,100.00,EUR,INV-1\n\
L2,2024-01-03,\"12,x\",EUR,INV-2\n",
    );
    let r = upload(&t, BANK);
    let job = start(&t, "?wait=30", &l, &r, &quarantine)
        .expect(200)
        .json();
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["summary"]["left"]["rejects"], 1);
    let id = job["id"].as_str().unwrap();
    let base = format!("/v1/reconciliations/{id}/rejects");

    let left = t.get(&format!("{base}?side=left")).expect(200);
    assert_eq!(left.header("content-type"), "text/csv");
    let text = left.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0], "line,column,value,reason");
    assert!(lines[1].starts_with("3,amount,\"12,x\","), "{text}");
    assert_eq!(
        t.get(&format!("{base}?side=right")).expect(200).text(),
        "line,column,value,reason\n"
    );

    for bad in ["", "?side=middle", "?side="] {
        t.get(&format!("{base}{bad}")).expect(400);
    }
    let missing = "00000000-0000-4000-8000-0000000000ff";
    t.get(&format!("/v1/reconciliations/{missing}/rejects?side=left"))
        .expect(404);
    // A failed job has no rejects to serve.
    let failed = start(&t, "?wait=30", &l, &r, RULES).expect(200).json();
    assert_eq!(failed["state"], "failed", "{failed}");
    let failed = failed["id"].as_str().unwrap();
    t.get(&format!("/v1/reconciliations/{failed}/rejects?side=left"))
        .expect(409);
}

/// `job_threads` bounds the jobs running at once: with two job threads,
/// never more than two jobs' runs overlap, whatever parallel work each does
/// (a job is never run inside another's wait).
#[test]
fn no_more_jobs_run_at_once_than_job_threads() {
    let t = crate::app_with(|c| c.job_threads = std::num::NonZeroUsize::new(2).unwrap());
    // Enough rows that each job's loading and matching fan out.
    let mut ledger = String::from("id,date,amount,currency,ref\n");
    let mut bank = ledger.clone();
    for i in 0..20_000 {
        ledger.push_str(&format!("L{i},2026-03-01,{}.00,EUR,R{i}\n", i % 997));
        bank.push_str(&format!("B{i},2026-03-02,{}.00,EUR,R{i}\n", i % 997));
    }
    let (l, r) = (upload(&t, &ledger), upload(&t, &bank));
    let ids: Vec<String> = (0..6)
        .map(|_| {
            start(&t, "", &l, &r, RULES).expect(202).json()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let spans: Vec<(String, String)> = ids
        .iter()
        .map(|id| {
            let job = ended(&t, id);
            assert_eq!(job["state"], "succeeded", "{job}");
            (
                job["started"].as_str().unwrap().to_owned(),
                job["finished"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // RFC 3339 with a fixed width sorts as time does.
    for (start, _) in &spans {
        let running = spans
            .iter()
            .filter(|(s, f)| s.as_str() <= start.as_str() && start.as_str() < f.as_str())
            .count();
        assert!(running <= 2, "{running} jobs running at {start}: {spans:?}");
    }
}

/// Both lists page with `?limit=N`, following `next` links to the end in
/// creation order without repeating or skipping an item; the reconciliation
/// list filters by `state`, and its links keep the filter. Bad paging
/// parameters are 400 naming the range or the cursor.
#[test]
fn lists_page_in_creation_order() {
    let t = app();
    let upload = |csv: &str| {
        t.upload("/v1/datasets", "text/csv", csv.to_owned())
            .expect(201)
            .json()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let ids: Vec<String> = (0..5).map(|_| upload(LEDGER)).collect();
    let walk = |first: &str, key: &str| -> Vec<String> {
        let mut seen = Vec::new();
        let mut uri = Some(first.to_owned());
        while let Some(u) = uri {
            let page = t.get(&u).expect(200).json();
            let items = page[key].as_array().unwrap();
            assert!(items.len() <= 2, "{page}");
            seen.extend(items.iter().map(|d| d["id"].as_str().unwrap().to_owned()));
            uri = page["next"].as_str().map(str::to_owned);
        }
        seen
    };
    assert_eq!(walk("/v1/datasets?limit=2", "datasets"), ids);
    let whole = t.get("/v1/datasets").expect(200).json();
    assert_eq!(whole["datasets"].as_array().unwrap().len(), 5);
    assert!(whole["next"].is_null(), "{whole}");

    let (l, r) = (ids[0].clone(), upload(BANK));
    let ok: Vec<String> = (0..3)
        .map(|_| {
            start(&t, "?wait=30", &l, &r, RULES).expect(200).json()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let bad_date = RULES.replacen("[left]\n", "[left]\ndate_format = \"%d/%m/%Y\"\n", 1);
    let failed = start(&t, "?wait=30", &l, &r, &bad_date).expect(200).json();
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(
        walk("/v1/reconciliations?limit=2", "reconciliations").len(),
        4
    );
    assert_eq!(
        walk(
            "/v1/reconciliations?limit=2&state=succeeded",
            "reconciliations"
        ),
        ok
    );
    let page = t
        .get("/v1/reconciliations?limit=2&state=succeeded")
        .expect(200)
        .json();
    assert!(
        page["next"].as_str().unwrap().ends_with("&state=succeeded"),
        "{page}"
    );
    assert_eq!(
        walk("/v1/reconciliations?state=failed", "reconciliations"),
        [failed["id"].as_str().unwrap()]
    );

    for (uri, says) in [
        (
            "/v1/datasets?limit=0",
            "limit must be a whole number from 1 to 1000",
        ),
        ("/v1/datasets?after=abc", "after must be a cursor"),
        (
            "/v1/reconciliations?state=done",
            "state must be queued, running, succeeded or failed",
        ),
        (
            "/v1/datasets?state=failed",
            "unknown query parameter \"state\"",
        ),
    ] {
        let p = t.get(uri).expect(400).json();
        assert!(p["detail"].as_str().unwrap().contains(says), "{uri}: {p}");
    }
}

/// An upload whose binary column holds a value that is not UTF-8 (raw hash
/// bytes, say) is stored, that column empty and listed as unreadable; a
/// reconciliation that does not map it runs, one that maps it is refused
/// naming the column and its first such value.
#[test]
fn a_column_with_a_value_without_text_is_stored_empty_and_refused_only_when_mapped() {
    use std::sync::Arc;

    use arrow_array::BinaryArray;

    let t = app();
    let digests: Vec<&[u8]> = vec![b"ok", b"\x9f\x00", b"ok"];
    let meta = t
        .upload(
            "/v1/datasets?name=ledger.parquet",
            "application/vnd.apache.parquet",
            ledger_parquet_with(("digest", Arc::new(BinaryArray::from(digests)))),
        )
        .expect(201)
        .json();
    assert_eq!(meta["unreadable_columns"], serde_json::json!(["digest"]));
    let l = meta["id"].as_str().unwrap().to_owned();
    let r = upload(&t, BANK);
    let job = start(&t, "?wait=30", &l, &r, RULES).expect(200).json();
    assert_eq!(job["state"], "succeeded", "{job}");
    let err = refused_mapping(&t, &l, &r, "digest");
    assert!(
        err.contains("column \"digest\" holds Binary (first at ")
            && err.contains("line 2, column \"digest\": \"\\x9f\\0\" is not valid UTF-8"),
        "{err}"
    );
}

/// A client tailing the dataset list (following `next`, and asking again
/// from its last cursor when there is none) while uploads run concurrently
/// sees every dataset exactly once: each is stamped as it becomes visible,
/// so none appears behind a cursor already passed.
#[test]
fn a_tailing_pager_sees_every_concurrent_upload_once() {
    const WRITERS: usize = 3;
    const EACH: usize = 8;
    let t = app();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let seen = std::thread::scope(|scope| {
        for w in 0..WRITERS {
            let (t, done) = (&t, &done);
            scope.spawn(move || {
                for k in 0..EACH {
                    // Sizes differ so conversions take different times.
                    let rows = (w * EACH + k) % 5 * 200;
                    let csv: String = std::iter::once("id,amount\n".to_owned())
                        .chain((0..rows).map(|i| format!("r{i},1.00\n")))
                        .collect();
                    t.upload("/v1/datasets", "text/csv", csv).expect(201);
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
        let mut seen: Vec<String> = Vec::new();
        let mut cursor: Option<String> = None;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let finished = done.load(std::sync::atomic::Ordering::SeqCst) == WRITERS * EACH;
            let uri = match &cursor {
                Some(c) => format!("/v1/datasets?limit=2&after={c}"),
                None => "/v1/datasets?limit=2".to_owned(),
            };
            let page = t.get(&uri).expect(200).json();
            for d in page["datasets"].as_array().unwrap() {
                seen.push(d["id"].as_str().unwrap().to_owned());
                cursor = Some(format!(
                    "{}_{}",
                    d["created"].as_str().unwrap(),
                    d["id"].as_str().unwrap()
                ));
            }
            let last_page = page["next"].is_null();
            if finished && last_page {
                break seen;
            }
            assert!(std::time::Instant::now() < deadline, "tailing did not end");
        }
    });
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a dataset was listed twice");
    assert_eq!(
        seen.len(),
        WRITERS * EACH,
        "the tailing pager missed a dataset"
    );
}

/// A ledger in windows-1252 whose references hold characters outside ASCII,
/// and the bank's statement of them in UTF-8.
const LEDGER_1252: &[u8] = b"id,date,amount,currency,ref\n\
L1,2024-01-02,100.00,EUR,M\xdcLLER-1\n\
L2,2024-01-03,-25.50,EUR,CAF\xc9-2\n";
const BANK_UTF8: &str = "id,date,amount,currency,ref\n\
B1,2024-01-02,100.00,EUR,MÜLLER-1\n\
B2,2024-01-03,-25.50,EUR,CAFÉ-2\n";

#[test]
fn a_csv_in_another_encoding_is_stored_as_declared_and_matched() {
    let t = app();
    let latin_rules = RULES.replacen("[left]\n", "[left]\nencoding = \"windows-1252\"\n", 1);
    let meta = |res: crate::Answer| res.expect(201).json();
    // By the query's option, or by the body's charset: stored as UTF-8 text,
    // recording the encoding it was read in.
    let by_option = meta(t.upload("/v1/datasets?encoding=latin1", "text/csv", LEDGER_1252));
    let by_charset = meta(t.upload(
        "/v1/datasets",
        "text/csv; charset=\"Windows-1252\"",
        LEDGER_1252,
    ));
    for m in [&by_option, &by_charset] {
        assert_eq!(
            (&m["encoding"], &m["rows"]),
            (&"windows-1252".into(), &2.into()),
            "{m}"
        );
    }
    let bank = upload(&t, BANK_UTF8);
    assert_eq!(
        t.get(&format!("/v1/datasets/{bank}")).json()["encoding"],
        "UTF-8"
    );
    for left in [&by_option, &by_charset] {
        let left = left["id"].as_str().unwrap();
        let job = start(&t, "?wait=30", left, &bank, &latin_rules)
            .expect(200)
            .json();
        assert_eq!(job["state"], "succeeded", "{job}");
        // Both references read as the bank writes them.
        assert_eq!(job["summary"]["rules"][0]["groups"], 2, "{job}");
        // Rules naming another encoding than the dataset was read in.
        let sjis = RULES.replacen("[left]\n", "[left]\nencoding = \"shift_jis\"\n", 1);
        let p = start(&t, "", left, &bank, &sjis).expect(422).json();
        let d = p["detail"].as_str().unwrap();
        assert!(
            d.starts_with("[left]: `encoding` = \"Shift_JIS\", but dataset ")
                && d.contains("was read as windows-1252 when it was stored"),
            "{p}"
        );
    }
    // A byte order mark names the encoding over the option (or its
    // default), and the dataset records what was read.
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(BANK_UTF8.encode_utf16().flat_map(u16::to_le_bytes));
    for query in ["?encoding=windows-1252", ""] {
        let m = meta(t.upload(&format!("/v1/datasets{query}"), "text/csv", utf16.clone()));
        assert_eq!(
            (&m["encoding"], &m["rows"]),
            (&"UTF-16LE".into(), &2.into()),
            "{m}"
        );
    }
    // Read as UTF-8 (no option, no charset), the same bytes are refused at
    // the first that is not UTF-8.
    let p = t
        .upload("/v1/datasets", "text/csv", LEDGER_1252)
        .expect(422)
        .json();
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .ends_with(r#"line 2, column "ref": "M\xdcLLER-1" is not valid UTF-8"#),
        "{p}"
    );
    // Bytes outside the declared encoding: 422 naming line, column, bytes.
    let p = t
        .upload(
            "/v1/datasets?encoding=shift_jis",
            "text/csv",
            b"id,ref\n1,a\x81 b\n".to_vec(),
        )
        .expect(422)
        .json();
    assert_eq!(
        p["detail"],
        r#"request body line 2, column "ref": \x81 is not valid Shift_JIS"#
    );
}

#[test]
fn a_charset_recon_cannot_honour_is_415() {
    let t = app();
    let detail = |res: crate::Answer| {
        res.expect(415).json()["detail"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let d = detail(t.upload("/v1/datasets", "text/csv; charset=ebcdic", LEDGER));
    assert!(
        d.starts_with("the body has the charset \"ebcdic\", which recon does not know"),
        "{d}"
    );
    let d = detail(t.upload(
        "/v1/datasets?encoding=latin1",
        "text/csv; charset=shift_jis",
        LEDGER,
    ));
    assert!(
        d.contains("but the `encoding` option says windows-1252"),
        "{d}"
    );
    let d = detail(t.upload(
        "/v1/datasets",
        "application/x-ndjson; charset=utf-16",
        "{\"id\": 1}\n",
    ));
    assert!(
        d.ends_with("but JSON Lines is UTF-8; send it as UTF-8"),
        "{d}"
    );
    let d = detail(t.upload(
        "/v1/datasets",
        "text/csv; charset=windows-1252; charset=utf-8",
        LEDGER,
    ));
    assert_eq!(
        d,
        "the body gives a charset 2 times (windows-1252, utf-8); give one"
    );
    // A charset that agrees, and UTF-8 said out loud, are fine.
    t.upload(
        "/v1/datasets?encoding=utf-8",
        "text/csv; charset=UTF-8",
        LEDGER,
    )
    .expect(201);
    // One shot: the rules' encoding and a file part's charset must agree.
    let latin_rules = RULES.replacen("[left]\n", "[left]\nencoding = \"windows-1252\"\n", 1);
    let body = crate::multipart(
        "bnd",
        &[
            ("rules", None, None, latin_rules.as_bytes()),
            (
                "left",
                Some("l.csv"),
                Some("text/csv; charset=shift_jis"),
                LEDGER_1252,
            ),
            ("right", Some("b.csv"), None, BANK_UTF8.as_bytes()),
        ],
    );
    let d = detail(t.upload("/v1/reconcile", "multipart/form-data; boundary=bnd", body));
    assert!(
        d.starts_with("part \"left\" has the charset \"shift_jis\""),
        "{d}"
    );
    // Without a charset, the rules' encoding reads the part.
    let body = crate::multipart(
        "bnd",
        &[
            ("rules", None, None, latin_rules.as_bytes()),
            ("left", Some("l.csv"), None, LEDGER_1252),
            ("right", Some("b.csv"), None, BANK_UTF8.as_bytes()),
        ],
    );
    let job = t
        .upload("/v1/reconcile", "multipart/form-data; boundary=bnd", body)
        .expect(200)
        .json();
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["summary"]["rules"][0]["groups"], 2, "{job}");
}

/// A body that hands over `head`, says so, then waits for `rest` to be
/// released: a client stalled half-way through its upload.
struct Stalled {
    head: std::io::Cursor<Vec<u8>>,
    reached: Option<std::sync::mpsc::Sender<()>>,
    rest: Option<std::sync::mpsc::Receiver<Vec<u8>>>,
    tail: std::io::Cursor<Vec<u8>>,
}

impl std::io::Read for Stalled {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.head.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        if let Some(reached) = self.reached.take() {
            let _ = reached.send(());
        }
        if let Some(rest) = self.rest.take() {
            self.tail = std::io::Cursor::new(rest.recv().unwrap_or_default());
        }
        self.tail.read(buf)
    }
}

/// The files of a one-shot request are not datasets until the whole
/// request is read: while the `right` file is still arriving, the `left`
/// one (already read and converted) is listed nowhere, so a server killed
/// at that moment leaves none behind. Once the request completes, both
/// are listed.
#[test]
fn one_shot_files_are_listed_only_once_the_request_is_whole() {
    let t = std::sync::Arc::new(app());
    let body = crate::multipart(
        "bnd",
        &[
            ("rules", None, None, RULES.as_bytes()),
            ("left", Some("ledger.csv"), None, LEDGER.as_bytes()),
            ("right", Some("bank.csv"), None, BANK.as_bytes()),
        ],
    );
    // Cut inside the right file's part: after its headers and a few bytes.
    let cut = body
        .windows(b"B1,".len())
        .position(|w| w == b"B1,")
        .unwrap();
    let (reached_tx, reached_rx) = std::sync::mpsc::channel();
    let (rest_tx, rest_rx) = std::sync::mpsc::channel();
    let stalled = Stalled {
        head: std::io::Cursor::new(body[..cut].to_vec()),
        reached: Some(reached_tx),
        rest: Some(rest_rx),
        tail: std::io::Cursor::new(Vec::new()),
    };
    let len = body.len() as u64;
    let app = std::sync::Arc::clone(&t);
    let request = std::thread::spawn(move || {
        app.send(
            Method::POST,
            "/v1/reconcile?wait=30",
            &[("content-type", "multipart/form-data; boundary=bnd")],
            RequestBody::from_reader(stalled, Some(len)),
        )
    });
    reached_rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap();
    assert_eq!(
        t.get("/v1/datasets").json()["datasets"],
        serde_json::json!([])
    );
    rest_tx.send(body[cut..].to_vec()).unwrap();
    let job = request.join().unwrap().expect(200).json();
    assert_eq!(job["state"], "succeeded", "{job}");
    let listed = t.get("/v1/datasets").json()["datasets"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(listed, 2);
    let mut scratch_left = 0;
    for entry in std::fs::read_dir(t.dir.path().join("tmp")).unwrap() {
        for f in std::fs::read_dir(entry.unwrap().path()).unwrap() {
            let name = f.unwrap().file_name().into_string().unwrap();
            if name != "owner.json" {
                scratch_left += 1;
            }
        }
    }
    assert_eq!(scratch_left, 0, "scratch files left behind");
}

/// `format=json` rows are recon-core's NDJSON rows (`write_results_ndjson`)
/// for the same inputs and rules: typed values, `null` where empty, each
/// row's own side's extra columns in an `extra` object. The one difference
/// is the score, which the service reads back from results.csv (four
/// decimals).
#[test]
fn json_results_are_recon_cores_ndjson() {
    let ledger = "id,date,amount,currency,ref,note,cost center\n\
                  L1,2024-01-02,100.00,EUR,INV-1,\"a, \"\"q\"\"\",CC1\n\
                  L2,2024-01-03,-25.50,EUR,INV-2,,CC2\n\
                  L3,2024-01-04,10.00,EUR,INV-3,x,\n";
    let bank = "id,date,amount,currency,ref,branch\n\
                B1,2024-01-03,100.00,EUR,INV-1,Main\n\
                B2,2024-01-03,-25.00,EUR,INV-2,\n\
                B9,2024-01-09,77.00,EUR,OTHER,North\n";
    let rules = RULES
        .replacen(
            "[left]\n",
            "[left]\nextra = [\"note\", \"Cost Center\"]\n",
            1,
        )
        .replacen("[right]\n", "[right]\nextra = [\"branch\"]\n", 1)
        .replace("amount = { abs = \"0.00\" }", "amount = { abs = \"1.00\" }");
    let served = served_and_core_json(ledger.as_bytes(), bank.as_bytes(), &rules);
    // The rows hold what the contract says, not only what both agree on.
    let l2 = served.iter().find(|r| r["record_id"] == "L2").unwrap();
    // Named as the header spells it.
    assert_eq!(
        l2["extra"],
        serde_json::json!({"note": null, "cost center": "CC2"}),
        "{l2}"
    );
    assert!(l2["match_id"].is_u64(), "{l2}");
    let b9 = served.iter().find(|r| r["record_id"] == "B9").unwrap();
    assert_eq!(
        (
            &b9["match_id"],
            &b9["rule"],
            &b9["amount_diff"],
            &b9["extra"]
        ),
        (
            &serde_json::Value::Null,
            &serde_json::Value::Null,
            &serde_json::Value::Null,
            &serde_json::json!({"branch": "North"})
        ),
        "{b9}"
    );

    // A generated case: every status, splits, breaks, several currencies.
    let dir = tempfile::tempdir().unwrap();
    let options = recon_core::synth::GenOptions {
        records: 3000,
        seed: 7,
        ..Default::default()
    };
    let (_, paths) = recon_core::synth::write_case(&options, dir.path()).unwrap();
    let rules = std::fs::read_to_string(&paths.rules)
        .unwrap()
        .replacen("[left]\n", "[left]\nextra = [\"memo\"]\n", 1)
        .replacen(
            "[right]\n",
            "[right]\nextra = [\"Narrative\", \"Payer\"]\n",
            1,
        );
    let served = served_and_core_json(
        &std::fs::read(&paths.left).unwrap(),
        &std::fs::read(&paths.right).unwrap(),
        &rules,
    );
    for status in ["matched", "break", "ambiguous", "unmatched", "duplicate"] {
        assert!(
            served.iter().any(|r| r["status"] == status),
            "no {status} row"
        );
    }
}

/// Runs `rules` over the two files as a one-shot request and with
/// recon-core directly; asserts the served `format=json` rows equal
/// `write_results_ndjson`'s (scores at four decimals) and returns them.
fn served_and_core_json(ledger: &[u8], bank: &[u8], rules: &str) -> Vec<serde_json::Value> {
    use recon_core::{
        NoProgress, Reconciler, Rules, StatusFilter, load_side, write_results_ndjson,
    };

    let t = app();
    let body = crate::multipart(
        "bnd",
        &[
            ("rules", None, None, rules.as_bytes()),
            ("left", Some("l.csv"), None, ledger),
            ("right", Some("b.csv"), None, bank),
        ],
    );
    let job = t
        .upload(
            "/v1/reconcile?wait=60",
            "multipart/form-data; boundary=bnd",
            body,
        )
        .expect(200)
        .json();
    assert_eq!(job["state"], "succeeded", "{job}");
    let id = job["id"].as_str().unwrap();
    let served = t
        .get(&format!("/v1/reconciliations/{id}/results?format=json"))
        .expect(200)
        .text();

    let dir = tempfile::tempdir().unwrap();
    let (l, r) = (dir.path().join("l.csv"), dir.path().join("b.csv"));
    std::fs::write(&l, ledger).unwrap();
    std::fs::write(&r, bank).unwrap();
    let parsed = Rules::from_toml_str(rules, "rules.toml").unwrap();
    let left = load_side(&l, &parsed.left).unwrap();
    let right = load_side(&r, &parsed.right).unwrap();
    let outcome = Reconciler::new(parsed)
        .run(&left, &right, &NoProgress)
        .unwrap();
    let mut core = Vec::new();
    write_results_ndjson(&outcome, &left, &right, &mut core, &StatusFilter::ALL).unwrap();
    let core = String::from_utf8(core).unwrap();

    let rows = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| {
                let mut row: serde_json::Value = serde_json::from_str(l).unwrap();
                // Both to the CSV's four decimals.
                if let Some(score) = row["score"].as_f64() {
                    row["score"] = serde_json::json!((score * 1e4).round() / 1e4);
                }
                row
            })
            .collect()
    };
    let (served, core) = (rows(&served), rows(&core));
    assert_eq!(served.len(), core.len());
    for (s, c) in served.iter().zip(&core) {
        assert_eq!(s, c);
    }
    served
}
