//! API keys: 401/403 on `/v1/*`, operator routes per `protect_ops`, probes open.

use http::Method;
use recon_service::RequestBody;
use tuning::ApiKey;

use crate::app_with;

fn keyed(protect_ops: bool) -> crate::TestApp {
    app_with(|c| {
        c.api_keys = vec![ApiKey("alpha-key".into()), ApiKey("beta-key".into())];
        c.protect_ops = protect_ops;
    })
}

#[test]
fn api_needs_a_valid_bearer_key() {
    let t = keyed(true);
    let res = t.get("/v1/datasets").expect(401);
    assert!(res.header("www-authenticate").starts_with("Bearer"));
    assert_eq!(res.header("content-type"), "application/problem+json");
    t.send(
        Method::GET,
        "/v1/datasets",
        &[("authorization", "Bearer wrong")],
        RequestBody::empty(),
    )
    .expect(403);
    t.send(
        Method::GET,
        "/v1/datasets",
        &[("authorization", "Bearer beta-key")],
        RequestBody::empty(),
    )
    .expect(200);
    // An upload without a key is refused before its body is read.
    t.upload("/v1/datasets", "text/csv", "a\n1\n").expect(401);
}

#[test]
fn probes_stay_open_and_ops_follow_protect_ops() {
    let t = keyed(true);
    t.get("/health").expect(200);
    t.get("/ready").expect(200);
    t.get("/openapi.json").expect(200);
    for ops in ["/metrics", "/debug/status", "/performance/metrics"] {
        t.get(ops).expect(401);
        t.send(
            Method::GET,
            ops,
            &[("authorization", "Bearer alpha-key")],
            RequestBody::empty(),
        )
        .expect(200);
    }
    let open_ops = keyed(false);
    for ops in ["/metrics", "/debug/status", "/performance/metrics"] {
        open_ops.get(ops).expect(200);
    }
    open_ops.get("/v1/reconciliations").expect(401);
}

#[test]
fn unknown_api_paths_ask_for_the_key_before_answering_404() {
    let t = keyed(true);
    for (method, path) in [
        (Method::GET, "/v1/nope"),
        (Method::GET, "/v1/datasets/a/b/c"),
        (Method::GET, "/v1"),
        (Method::PUT, "/v1/datasets"),
    ] {
        t.send(method.clone(), path, &[], RequestBody::empty())
            .expect(401);
        t.send(
            method.clone(),
            path,
            &[("authorization", "Bearer wrong")],
            RequestBody::empty(),
        )
        .expect(403);
    }
    let with_key = |method: Method, path: &str| {
        t.send(
            method,
            path,
            &[("authorization", "Bearer alpha-key")],
            RequestBody::empty(),
        )
    };
    with_key(Method::GET, "/v1/nope").expect(404);
    with_key(Method::PUT, "/v1/datasets").expect(405);
    // Outside the API a miss needs no key.
    t.get("/nope").expect(404);
    t.get("/v1nope").expect(404);
}

/// What the OpenAPI document says of every operation under `/v1/` (401 and
/// 403, added to each there): every route of the router's table under
/// `/v1/` answers them, whatever its method, before anything else.
#[test]
fn every_api_route_answers_401_and_403() {
    let t = keyed(true);
    for (method, template, _) in recon_service::router::ROUTES {
        if !template.starts_with("/v1/") {
            continue;
        }
        let path = template.replace("{id}", "00000000-0000-4000-8000-000000000000");
        t.send(method.clone(), &path, &[], RequestBody::empty())
            .expect(401);
        t.send(
            method.clone(),
            &path,
            &[("authorization", "Bearer wrong")],
            RequestBody::empty(),
        )
        .expect(403);
    }
}
