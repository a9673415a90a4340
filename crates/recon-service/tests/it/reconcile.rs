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
    t.send(
        Method::POST,
        "/v1/reconciliations",
        &[("content-type", "application/json")],
        RequestBody::from_bytes("{\"left\": 1}"),
    )
    .expect(400);
    t.send(
        Method::POST,
        "/v1/reconciliations",
        &[("content-type", "text/plain")],
        RequestBody::from_bytes("{}"),
    )
    .expect(415);
    start(&t, "?wait=soon", &l, &r, RULES).expect(400);
    assert_eq!(
        t.get("/v1/reconciliations").expect(200).json()["reconciliations"],
        serde_json::json!([])
    );
    t.get(&format!("/v1/reconciliations/{missing}")).expect(404);
    t.get(&format!("/v1/reconciliations/{missing}/events"))
        .expect(404);
}
