//! A generated case through the whole HTTP flow: upload both sides, reconcile,
//! stream every result row back. 2,000 records per side by default; 50,000
//! with `RECON_SLOW_TESTS=1` (the benchmark's size), printing the stage times.

use std::time::Instant;

use http::Method;
use recon_core::synth::{GenOptions, generate};
use recon_service::RequestBody;

use crate::app;

#[test]
fn a_generated_case_round_trips_every_record() {
    let slow = std::env::var("RECON_SLOW_TESTS").is_ok_and(|v| v == "1");
    let records = if slow { 50_000 } else { 2_000 };
    let case = generate(&GenOptions {
        records,
        ..GenOptions::default()
    });
    let mut left = Vec::new();
    case.write_left(&mut left).unwrap();
    let mut right = Vec::new();
    case.write_right(&mut right).unwrap();
    let rules = case.rules_toml();

    let t = app();
    let started = Instant::now();
    let l = t
        .upload("/v1/datasets", "text/csv", left)
        .expect(201)
        .json();
    let upload_left = started.elapsed();
    let r = t
        .upload("/v1/datasets", "text/csv", right)
        .expect(201)
        .json();
    let uploaded = started.elapsed();
    let body = serde_json::json!({"left": l["id"], "right": r["id"], "rules": rules});
    let job = t
        .send(
            Method::POST,
            "/v1/reconciliations?wait=120",
            &[("content-type", "application/json")],
            RequestBody::from_bytes(serde_json::to_vec(&body).unwrap()),
        )
        .expect(200)
        .json();
    let reconciled = started.elapsed();
    assert_eq!(job["state"], "succeeded", "{job}");
    let total = l["rows"].as_u64().unwrap() + r["rows"].as_u64().unwrap();
    assert_eq!(job["progress"]["total"], total);
    let id = job["id"].as_str().unwrap();
    let results = t
        .get(&format!("/v1/reconciliations/{id}/results"))
        .expect(200);
    let fetched = started.elapsed();
    assert_eq!(results.text().lines().count() as u64, 1 + total);
    let rate = job["summary"]["match_rate"].as_f64().unwrap();
    assert!(rate > 0.5, "match rate {rate}");
    if slow {
        eprintln!(
            "{records} x {records}: upload left {upload_left:?}, both {uploaded:?}, \
             reconcile {:?} (job {} ms, stages {}, matcher {}), results {:?}",
            reconciled - uploaded,
            job["duration_ms"],
            job["stages"],
            job["summary"]["audit"]["timings"],
            fetched - reconciled
        );
    }
}
