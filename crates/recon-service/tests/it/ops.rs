//! Health, readiness, status, performance figures, Prometheus text, OpenAPI,
//! unknown routes, and the Inline/Blocking dispatch of each route.

use http::Method;
use recon_service::{Dispatch, RequestBody};

use crate::app;

#[test]
fn health_and_head() {
    let t = app();
    let res = t.get("/health").expect(200);
    assert_eq!(res.json(), serde_json::json!({"status": "ok"}));
    assert_eq!(res.header("content-type"), "application/json");
    let head = t
        .send(Method::HEAD, "/health", &[], RequestBody::empty())
        .expect(200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), "15");
    // Probes that send HEAD get readiness too.
    let head = t
        .send(Method::HEAD, "/ready", &[], RequestBody::empty())
        .expect(200);
    assert!(head.body.is_empty());
}

#[test]
fn ready_reports_draining_and_connection_limit() {
    let t = crate::app_with(|c| {
        c.server.connection_limit = std::num::NonZeroUsize::new(2).unwrap();
    });
    t.get("/ready").expect(200);
    t.app.state().connection_opened();
    t.app.state().connection_opened();
    assert_eq!(
        t.get("/ready").expect(503).json()["status"],
        "at_connection_limit"
    );
    // At the limit with an idle connection the engine would close for a new
    // client: still ready.
    let idle = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    t.app.state().set_idle_probe({
        let idle = std::sync::Arc::clone(&idle);
        move || idle.load(std::sync::atomic::Ordering::Relaxed)
    });
    t.get("/ready").expect(200);
    idle.store(false, std::sync::atomic::Ordering::Relaxed);
    t.get("/ready").expect(503);
    t.app.state().connection_closed();
    t.get("/ready").expect(200);
    t.app.state().start_draining();
    assert_eq!(t.get("/ready").expect(503).json()["status"], "draining");
    t.get("/health").expect(200);
    t.app.state().connection_closed();
}

#[test]
fn debug_status_shows_engine_settings_and_live_figures() {
    let dir = tempfile::tempdir().unwrap();
    let settings = vec![recon_service::SettingEntry {
        key: "threads".into(),
        value: "4".into(),
        source: "default".into(),
    }];
    let app = recon_service::App::new(std::sync::Arc::new(crate::config_in(dir.path())), settings)
        .unwrap();
    app.state().set_workers_total(4);
    app.state().worker_busy();
    app.state().connection_opened();
    let s = crate::send(
        &app,
        Method::GET,
        "/debug/status",
        &[],
        RequestBody::empty(),
    )
    .expect(200)
    .json();
    assert_eq!(s["engine"], "async");
    assert_eq!(s["settings"][0]["key"], "threads");
    assert_eq!(s["settings"][0]["source"], "default");
    assert_eq!(s["connections"]["open"], 1);
    assert_eq!(s["connections"]["total"], 1);
    assert_eq!(s["workers"]["busy"], 1);
    assert_eq!(s["workers"]["idle"], 3);
    assert_eq!(s["jobs"]["running"], 0);
    assert_eq!(s["datasets"]["count"], 0);
    assert!(s["process"]["rss_bytes"].as_u64().unwrap() > 0);
    assert!(s["version"].is_string() && s["uptime_seconds"].is_number());
    app.state().connection_closed();
}

#[test]
fn performance_metrics_count_routes_by_template() {
    let t = app();
    for _ in 0..5 {
        t.get("/health").expect(200);
    }
    t.get("/v1/datasets/0123").expect(404);
    t.get("/nope").expect(404);
    t.upload("/v1/datasets", "text/csv", crate::LEDGER)
        .expect(201);
    t.get("/v1/datasets").expect(200);
    let p = t.get("/performance/metrics").expect(200).json();
    let routes = p["routes"].as_array().unwrap();
    // A template with two methods is two entries, told apart by `method`.
    let find = |r: &str, m: &str| {
        routes
            .iter()
            .find(|x| x["route"] == r && x["method"] == m)
            .unwrap_or_else(|| panic!("{m} {r}: {p}"))
    };
    assert_eq!(find("/health", "GET|HEAD")["count"], 5);
    assert_eq!(find("/v1/datasets/{id}", "GET|HEAD")["count"], 1);
    assert_eq!(find("/v1/datasets", "GET|HEAD")["count"], 1);
    assert_eq!(find("/v1/datasets", "GET|HEAD")["bytes_in"], 0);
    // A path no route takes counts as `unmatched`, with no method.
    let unmatched = routes
        .iter()
        .find(|x| x["route"] == "unmatched")
        .unwrap_or_else(|| panic!("no unmatched entry: {p}"));
    assert_eq!(unmatched["count"], 1, "{p}");
    assert!(unmatched.get("method").is_none(), "{p}");
    let upload = find("/v1/datasets", "POST");
    assert_eq!(upload["bytes_in"], crate::LEDGER.len());
    assert!(upload["bytes_out"].as_u64().unwrap() > 0);
    assert!(
        upload["latency_ms"]["max"].as_f64().unwrap()
            >= upload["latency_ms"]["p50"].as_f64().unwrap()
    );
    assert!(p["requests_per_second_1m"].as_f64().unwrap() > 0.0);
    assert!(p["process"]["cpu_seconds"].as_f64().unwrap() >= 0.0);
}

/// Every series of the job counters is listed from the start, at zero or
/// above, so a first job's end is an increase `rate()` sees, whatever jobs
/// the other tests of this process ran.
#[test]
fn job_counters_are_listed_before_any_job_ends() {
    let t = app();
    let text = t.get("/metrics").expect(200).text();
    for series in [
        "recon_jobs_total{status=\"succeeded\"}",
        "recon_jobs_total{status=\"failed\"}",
        "recon_records_total{status=\"matched\"}",
        "recon_records_total{status=\"break\"}",
        "recon_records_total{status=\"ambiguous\"}",
        "recon_records_total{status=\"unmatched\"}",
        "recon_records_total{status=\"duplicate\"}",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(series)),
            "{series} missing from:\n{text}"
        );
    }
}

#[test]
fn prometheus_text_has_conventional_names_and_template_labels() {
    let t = app();
    t.get("/health").expect(200);
    t.get("/v1/datasets/abc").expect(404);
    let res = t.get("/metrics").expect(200);
    assert!(res.header("content-type").starts_with("text/plain"));
    let text = res.text();
    for name in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    // Every family has its help line, not only its type.
    for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split(' ').next().unwrap_or_default();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no # HELP for {name}:\n{text}"
        );
    }
    assert!(text.contains("route=\"/v1/datasets/{id}\""), "{text}");
    assert!(!text.contains("route=\"/v1/datasets/abc\""));
}

#[test]
fn openapi_unknown_routes_and_methods() {
    let t = app();
    let doc = t.get("/openapi.json").expect(200).json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/reconciliations/{id}/results"].is_object());
    let res = t.get("/nope").expect(404);
    assert_eq!(res.json()["status"], 404);
    let res = t
        .send(Method::PUT, "/v1/datasets", &[], RequestBody::empty())
        .expect(405);
    assert!(res.header("allow").contains("POST"));
}

#[test]
fn dispatch_keeps_cheap_routes_inline() {
    let t = app();
    let d = |m: Method, p: &str| t.app.dispatch(&m, p);
    assert_eq!(d(Method::GET, "/health"), Dispatch::Inline);
    assert_eq!(d(Method::GET, "/ready"), Dispatch::Inline);
    assert_eq!(d(Method::GET, "/metrics"), Dispatch::Inline);
    assert_eq!(d(Method::GET, "/nope"), Dispatch::Inline);
    assert_eq!(d(Method::POST, "/v1/datasets"), Dispatch::Blocking);
    assert_eq!(d(Method::GET, "/debug/status"), Dispatch::Blocking);
    assert_eq!(
        d(Method::GET, "/v1/reconciliations/x/events"),
        Dispatch::Blocking
    );
}

/// A body whose read panics, standing in for any handler fault.
#[derive(Debug)]
struct PanickingBody;

impl std::io::Read for PanickingBody {
    fn read(&mut self, _buf: &mut [u8]) -> std::io::Result<usize> {
        panic!("deliberate test panic inside a handler");
    }
}

#[test]
fn a_panicking_handler_answers_500_and_the_app_keeps_serving() {
    let t = app();
    let res = t
        .send(
            Method::POST,
            "/v1/datasets",
            &[("content-type", "text/csv")],
            RequestBody::from_reader(PanickingBody, None),
        )
        .expect(500);
    assert_eq!(res.header("content-type"), "application/problem+json");
    assert!(!res.text().contains("deliberate"), "{}", res.text());
    t.get("/health").expect(200);
    let perf = t.get("/performance/metrics").expect(200).json();
    assert_eq!(perf["totals"]["errors"], 1);
    crate::datasets::assert_nothing_stored(&t);
}
