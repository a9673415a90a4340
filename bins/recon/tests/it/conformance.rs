//! The conformance suite: one set of HTTP behaviours every engine must show,
//! driven through the real `recon serve` binary on 127.0.0.1 port 0 with a
//! real HTTP client (ureq) or raw sockets. Every test is stamped over every
//! engine by `engines!` at the bottom; adding an engine to
//! `support::ENGINES` runs the whole suite against it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::engines;
use crate::support::{Engine, Raw, Server, agent, slow_tests};

/// How long a raw read waits for an answer that should come at once.
const PROMPT: Duration = Duration::from_secs(10);

fn json(res: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = res.status().as_u16();
    let mut body = res.into_body();
    let text = body.read_to_string().unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

fn get(server: &Server, path: &str) -> (u16, Value) {
    json(agent().get(server.url(path)).call().expect("request"))
}

/// A job's results in `format` (200 asserted), as bytes.
fn results(server: &Server, job_id: &str, format: &str) -> Vec<u8> {
    let path = format!("/v1/reconciliations/{job_id}/results?format={format}");
    let res = agent().get(server.url(&path)).call().expect("results");
    assert_eq!(res.status(), 200, "{path}");
    res.into_body().read_to_vec().expect("results body")
}

fn assert_problem(status: u16, body: &Value, expected: u16) {
    assert_eq!(status, expected, "body: {body}");
    assert_eq!(body["status"], expected, "problem body: {body}");
    assert!(body["title"].is_string(), "problem body: {body}");
    assert!(body["type"].is_string(), "problem body: {body}");
    assert!(body["detail"].is_string(), "problem body: {body}");
}

/// A request head for `path` with extra header lines (each ending in CRLF).
fn head(method: &str, path: &str, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n")
}

/// Sends `GET /health` on `raw` and checks the 200: the connection has been
/// accepted and served once (then idle between requests).
fn serve_health(raw: &mut Raw) {
    raw.send(head("GET", "/health", "").as_bytes())
        .expect("send");
    let res = raw.read_response(PROMPT).expect("health answer");
    assert_eq!(res.status, 200, "{res:?}");
}

/// Starts an upload on `raw` and returns once the server has it in flight
/// (it asks for the body with `100 Continue`, which never comes): a
/// connection that is not idle, so it keeps its place at the connection
/// limit.
fn hold_in_flight(raw: &mut Raw) {
    let extra = "Content-Type: text/csv\r\nContent-Length: 100\r\nExpect: 100-continue\r\n";
    raw.send(head("POST", "/v1/datasets", extra).as_bytes())
        .expect("send head");
    let interim = raw.read_head_response(PROMPT).expect("100 Continue");
    assert_eq!(interim.status, 100, "{interim:?}");
}

/// Writes a generated reconciliation case (`left.csv`, `right.csv`,
/// `rules.toml`) of about `records` records per side into `dir`.
fn gen_case(dir: &Path, records: usize) -> PathBuf {
    let out = dir.join("case");
    let status = Command::new(env!("CARGO_BIN_EXE_recon"))
        .args(["gen", "--records", &records.to_string(), "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run recon gen");
    assert!(status.success(), "recon gen failed");
    out
}

/// Starts a reconciliation of two uploaded datasets with the case's rules;
/// `query` is appended to the path (e.g. `?wait=30`).
fn reconcile(
    server: &Server,
    case: &Path,
    left: &Value,
    right: &Value,
    query: &str,
) -> (u16, Value) {
    let rules = std::fs::read_to_string(case.join("rules.toml")).expect("rules");
    let request = serde_json::json!({"left": left["id"], "right": right["id"], "rules": rules});
    let res = agent()
        .post(server.url(&format!("/v1/reconciliations{query}")))
        .header("Content-Type", "application/json")
        .send(request.to_string().as_bytes())
        .expect("reconcile");
    json(res)
}

fn upload(server: &Server, path: &Path, key: Option<&str>) -> (u16, Value) {
    let bytes = std::fs::read(path).expect("read case file");
    let mut req = agent()
        .post(server.url("/v1/datasets"))
        .header("Content-Type", "text/csv");
    if let Some(key) = key {
        req = req.header("Authorization", &format!("Bearer {key}"));
    }
    json(req.send(&bytes[..]).expect("upload"))
}

// ---------------------------------------------------------------- basics

fn listening_line(engine: Engine) {
    let server = Server::builder(engine)
        .arg("--workers", "1")
        .arg("--threads", "3")
        .arg("--connection-limit", "7")
        .start();
    let line = server.listening_line();
    assert!(
        line.contains(&format!("(engine={}, ", engine.as_str())),
        "{line}"
    );
    // The threaded engine has no `workers`: its line names only what it uses.
    let figures = match engine {
        Engine::Async => "workers=1, threads=3, connection_limit=7)",
        Engine::Threaded => "threads=3, connection_limit=7)",
    };
    assert!(
        line.contains(&format!("(engine={}, {figures}", engine.as_str())),
        "{line}"
    );
    assert_ne!(server.addr().port(), 0);
}

/// `recon serve --vcpus --memory [--profile]` tunes for the given box, as
/// `recon config show` does: the reference figures for 16 vCPU / 32 GiB are
/// threads=12, connection_limit=2000 (balanced) and 4 / 500 (memory-constrained).
fn serve_tunes_for_given_resources_and_profile(engine: Engine) {
    let server = Server::builder(engine)
        .arg("--vcpus", "16")
        .arg("--memory", "32GiB")
        .start();
    let line = server.listening_line();
    let figures = match engine {
        Engine::Async => "workers=16, threads=12, connection_limit=2000)",
        Engine::Threaded => "(engine=threaded, threads=12, connection_limit=2000)",
    };
    assert!(line.contains(figures), "{line}");
    let (status, body) = get(&server, "/health");
    assert_eq!(status, 200, "{body}");
    drop(server);

    let server = Server::builder(engine)
        .arg("--vcpus", "16")
        .arg("--memory", "32GiB")
        .arg("--profile", "memory-constrained")
        .start();
    let line = server.listening_line();
    let figures = match engine {
        Engine::Async => "workers=4, threads=4, connection_limit=500)",
        Engine::Threaded => "(engine=threaded, threads=4, connection_limit=500)",
    };
    assert!(line.contains(figures), "{line}");

    // Half the resources is refused before binding.
    let Err(err) = Server::builder(engine).arg("--vcpus", "16").try_start() else {
        panic!("--vcpus without --memory must not start");
    };
    assert!(err.contains("--memory"), "{err}");
}

/// The soft open-file limit of a running process, from `/proc/PID/limits`.
fn soft_open_files(server: &Server) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    line.split_whitespace()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

/// A soft open-file limit below `connection_limit` plus 256 for files is
/// raised as far as needed; a hard limit below that is raised to and warned
/// about, naming what to change.
fn open_file_limit_follows_the_connection_limit(engine: Engine) {
    let server = Server::builder(engine)
        .arg("--connection-limit", "1000")
        .open_files(300, 4096)
        .start();
    assert_eq!(soft_open_files(&server), 1256);
    assert!(
        server.log().contains("raised the open-file limit"),
        "{}",
        server.log()
    );
    assert_eq!(get(&server, "/health").0, 200);
    drop(server);

    let server = Server::builder(engine)
        .arg("--connection-limit", "1000")
        .open_files(300, 600)
        .start();
    assert_eq!(soft_open_files(&server), 600);
    let log = server.log();
    assert!(log.contains("WARN") && log.contains("ulimit -Hn"), "{log}");
    drop(server);

    // Enough already: left as it is.
    let server = Server::builder(engine)
        .arg("--connection-limit", "10")
        .open_files(300, 4096)
        .start();
    assert_eq!(soft_open_files(&server), 300);
    assert!(
        !server.log().contains("open-file limit"),
        "{}",
        server.log()
    );
}

/// A server whose stderr reader is gone (a dead log pipe) still starts,
/// serves and stops on SIGTERM: a log line it cannot write is dropped (the
/// threaded engine exited with a panic at start, the async one's signal
/// thread panicked on its "draining" line and SIGTERM went unanswered).
fn serves_and_stops_with_stderr_closed(engine: Engine) {
    let mut server = Server::builder(engine).stderr_closed().start();
    assert_eq!(get(&server, "/health").0, 200);
    // A request log line or two more, each written to the closed pipe.
    assert_eq!(get(&server, "/no-such-path").0, 404);
    server.terminate();
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("stopped on SIGTERM");
    assert!(status.success(), "{status:?}");
}

fn health(engine: Engine) {
    let server = Server::start(engine);
    let res = agent().get(server.url("/health")).call().expect("health");
    assert_eq!(res.status(), 200);
    let ct = res.headers().get("content-type").expect("content-type");
    assert!(ct.to_str().unwrap_or("").starts_with("application/json"));
    assert_eq!(
        res.headers().get("server").and_then(|v| v.to_str().ok()),
        Some("recon")
    );
    let (_, body) = json(res);
    assert_eq!(body["status"], "ok");
}

/// `HEAD /health` carries the headers the GET would, including its
/// `Content-Length` (RFC 9110 §9.3.2), and no body.
fn head_health(engine: Engine) {
    let server = Server::start(engine);
    let mut raw = server.raw();
    raw.send(head("GET", "/health", "").as_bytes())
        .expect("send");
    let get = raw.read_response(PROMPT).expect("GET response");
    assert_eq!(get.status, 200, "{get:?}");
    let get_len = get.header("content-length").expect("GET content-length");
    assert_eq!(get_len, get.body.len().to_string(), "{get:?}");
    assert_ne!(get_len, "0", "{get:?}");

    raw.send(head("HEAD", "/health", "").as_bytes())
        .expect("send");
    let res = raw.read_head_response(PROMPT).expect("HEAD response");
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.header("content-length"), Some(get_len), "{res:?}");
    assert_eq!(res.header("content-type"), get.header("content-type"));
    assert_eq!(res.header("transfer-encoding"), None, "{res:?}");
    // The connection stays usable: no body bytes were sent after the head.
    raw.send(head("GET", "/health", "").as_bytes())
        .expect("send");
    let res = raw.read_response(PROMPT).expect("GET after HEAD");
    assert_eq!(res.status, 200, "{res:?}");
    assert!(res.text().contains("ok"), "{res:?}");

    // Byte-exact: with `Connection: close` everything sent is the head.
    let mut raw = server.raw();
    raw.send(head("HEAD", "/health", "Connection: close\r\n").as_bytes())
        .expect("send");
    let bytes = String::from_utf8(raw.read_until_close(PROMPT)).expect("utf-8 head");
    let lower = bytes.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200 "), "{bytes}");
    assert!(
        lower.contains(&format!("\r\ncontent-length: {get_len}\r\n")),
        "{bytes}"
    );
    assert_eq!(
        bytes.find("\r\n\r\n").map(|i| i + 4),
        Some(bytes.len()),
        "a body followed: {bytes:?}"
    );
}

/// HEAD works wherever GET does (RFC 9110): the GET's length when it is
/// known before the body is made, none (rather than a wrong one) for a
/// stream, never a body; `Allow` lists HEAD beside GET.
fn head_on_every_get_route(engine: Engine) {
    let server = Server::start(engine);
    let case = gen_case(server.data_dir(), 50);
    let (_, left) = upload(&server, &case.join("left.csv"), None);
    let (_, right) = upload(&server, &case.join("right.csv"), None);
    let (status, job) = reconcile(&server, &case, &left, &right, "?wait=30");
    assert_eq!(status, 200, "{job}");
    let dataset = format!("/v1/datasets/{}", left["id"].as_str().expect("id"));
    let results = format!(
        "/v1/reconciliations/{}/results",
        job["id"].as_str().expect("job id")
    );
    let mut raw = server.raw();
    raw.send(head("GET", &dataset, "").as_bytes())
        .expect("send");
    let get = raw.read_response(PROMPT).expect("GET");
    raw.send(head("HEAD", &dataset, "").as_bytes())
        .expect("send");
    let res = raw.read_head_response(PROMPT).expect("HEAD");
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(
        res.header("content-length"),
        Some(get.body.len().to_string().as_str())
    );
    assert_eq!(res.header("content-type"), get.header("content-type"));
    // A streamed body: its headers, no length, and nothing after the head.
    let mut raw = server.raw();
    raw.send(head("HEAD", &results, "Connection: close\r\n").as_bytes())
        .expect("send");
    let bytes = String::from_utf8(raw.read_until_close(PROMPT)).expect("utf-8 head");
    let lower = bytes.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200 "), "{bytes}");
    assert!(lower.contains("\r\ncontent-type: text/csv"), "{bytes}");
    assert!(!lower.contains("content-length: 0"), "{bytes}");
    assert_eq!(
        bytes.find("\r\n\r\n").map(|i| i + 4),
        Some(bytes.len()),
        "a body followed: {bytes:?}"
    );
    let res = agent()
        .put(server.url("/v1/datasets"))
        .send(&b""[..])
        .expect("put");
    assert_eq!(res.status(), 405);
    assert_eq!(
        res.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST, GET, HEAD")
    );
}

fn ready(engine: Engine) {
    let server = Server::start(engine);
    let (status, body) = get(&server, "/ready");
    assert_eq!(status, 200, "{body}");
}

fn unknown_route_is_problem_json(engine: Engine) {
    let server = Server::start(engine);
    let res = agent()
        .get(server.url("/no/such/route"))
        .call()
        .expect("get");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (status, body) = json(res);
    assert_problem(status, &body, 404);
    assert!(ct.starts_with("application/problem+json"), "{ct}");
}

fn server_header_is_configurable(engine: Engine) {
    let server = Server::builder(engine)
        .arg("--server-header", "acme-recon")
        .start();
    let res = agent()
        .get(server.url("/no/such/route"))
        .call()
        .expect("get");
    assert_eq!(
        res.headers().get("server").and_then(|v| v.to_str().ok()),
        Some("acme-recon")
    );
    // Empty: no Server header at all, on both engines.
    let server = Server::builder(engine).arg("--server-header", "").start();
    let res = agent().get(server.url("/health")).call().expect("get");
    assert!(res.headers().get("server").is_none(), "{:?}", res.headers());
}

fn ops_endpoints(engine: Engine) {
    let server = Server::start(engine);
    let (status, body) = get(&server, "/debug/status");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["engine"], engine.as_str(), "{body}");
    assert!(body["settings"].is_array(), "{body}");
    // Started with port 0: the port the system chose is reported.
    assert_eq!(body["listening"], server.addr().to_string(), "{body}");

    let (status, body) = get(&server, "/performance/metrics");
    assert_eq!(status, 200, "{body}");

    let res = agent().get(server.url("/metrics")).call().expect("metrics");
    assert_eq!(res.status(), 200);
    let text = res.into_body().read_to_string().expect("metrics text");
    for name in [
        "http_requests_total",
        "http_request_duration_seconds",
        "http_connections_active",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(
        text.contains(&format!("engine=\"{}\"", engine.as_str())),
        "{text}"
    );

    let (status, body) = get(&server, "/openapi.json");
    assert_eq!(status, 200);
    assert!(
        body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{body}"
    );
    assert!(body["paths"]["/health"].is_object(), "{body}");
}

fn keep_alive_reuses_connection(engine: Engine) {
    let server = Server::start(engine);
    let mut raw = server.raw();
    for _ in 0..3 {
        raw.send(head("GET", "/health", "").as_bytes())
            .expect("send");
        let res = raw
            .read_response(PROMPT)
            .expect("response on the same connection");
        assert_eq!(res.status, 200, "{res:?}");
    }
    let (_, status) = get(&server, "/debug/status");
    // The three requests above came over one connection.
    assert!(
        status["connections"]["total"].as_u64().unwrap_or(0) <= 3,
        "{status}"
    );
}

// ---------------------------------------------------------------- limits

fn oversized_header_is_431(engine: Engine) {
    let server = Server::builder(engine)
        .arg("--max-request-header-size", "16KiB")
        .start();
    let mut raw = server.raw();
    let big = format!("X-Big: {}\r\n", "a".repeat(32 * 1024));
    let _ = raw.send(head("GET", "/health", &big).as_bytes());
    let res = raw.read_response(PROMPT).expect("a 431 response");
    assert_eq!(res.status, 431, "{res:?}");
    // A header under the limit is fine.
    let mut raw = server.raw();
    let small = format!("X-Small: {}\r\n", "a".repeat(4 * 1024));
    raw.send(head("GET", "/health", &small).as_bytes())
        .expect("send");
    assert_eq!(raw.read_response(PROMPT).expect("200").status, 200);
}

/// A limit below hyper's smallest read buffer (8 KiB) still holds on the
/// async engine: a 431 from both engines, and the connection closes. The
/// threaded engine's carries the application's problem body; the async
/// engine's is hyper's own, which has none (docs/threaded-engine.md,
/// "Parse errors").
fn small_header_limit_is_431(engine: Engine) {
    let server = Server::builder(engine)
        .arg("--max-request-header-size", "1KiB")
        .start();
    let mut raw = server.raw();
    let big = format!("X-Big: {}\r\n", "a".repeat(3000));
    let _ = raw.send(head("GET", "/health", &big).as_bytes());
    let res = raw.read_response(PROMPT).expect("a 431 response");
    assert_eq!(res.status, 431, "{res:?}");
    if engine == Engine::Threaded {
        assert!(
            res.text()
                .contains("request head exceeds max_request_header_size"),
            "{res:?}"
        );
    }
    assert_eq!(res.header("connection"), Some("close"), "{res:?}");
    let mut raw = server.raw();
    let small = format!("X-Small: {}\r\n", "a".repeat(500));
    raw.send(head("GET", "/health", &small).as_bytes())
        .expect("send");
    assert_eq!(raw.read_response(PROMPT).expect("200").status, 200);
}

/// `max_request_header_size` is exact on both engines, whatever the limit
/// (under hyper's 8 KiB buffer, past it, not a power of two) and however the
/// header lines are written: a head of exactly the limit (request line,
/// header lines and the blank line, line breaks included, as sent) is
/// served, one byte more is 431.
fn header_limit_is_exact(engine: Engine) {
    /// Header lines as clients write them: canonical, no space after the
    /// colon, several spaces and trailing whitespace.
    const SHAPES: [&str; 3] = [
        "Accept: */*\r\nUser-Agent: probe/1.0\r\n",
        "Accept:*/*\r\nUser-Agent:probe/1.0\r\nX-A:1\r\nX-B:2\r\n",
        "Accept:    */*   \r\nX-Spaced:  a b c  \r\n",
    ];
    /// A head of exactly `len` bytes: `shape`'s lines, then `X-Pad` filling
    /// the rest.
    fn head_of(len: usize, shape: &str) -> String {
        let start = format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n{shape}X-Pad: ");
        let end = "\r\n\r\n";
        let pad = len - start.len() - end.len();
        format!("{start}{}{end}", "p".repeat(pad))
    }
    for (limit, bytes) in [("1KiB", 1024), ("5000", 5000), ("40KiB", 40 * 1024)] {
        let server = Server::builder(engine)
            .arg("--max-request-header-size", limit)
            .start();
        for shape in SHAPES {
            for (len, want) in [(bytes, 200), (bytes + 1, 431)] {
                let request = head_of(len, shape);
                assert_eq!(request.len(), len);
                let mut raw = server.raw();
                let _ = raw.send(request.as_bytes());
                let res = raw.read_response(PROMPT).expect("a response");
                assert_eq!(
                    res.status, want,
                    "limit {limit}, head of {len} bytes, lines {shape:?}: {res:?}"
                );
            }
        }
    }
}

fn declared_body_past_limit_is_413_unread(engine: Engine) {
    let server = Server::builder(engine)
        .arg("--max-request-body-size", "1KiB")
        .start();
    let mut raw = server.raw();
    // Only the head is sent: the answer must not wait for the body.
    raw.send(
        head(
            "POST",
            "/v1/datasets",
            "Content-Type: text/csv\r\nContent-Length: 1000000\r\n",
        )
        .as_bytes(),
    )
    .expect("send");
    let res = raw.read_response(PROMPT).expect("a 413 response");
    assert_eq!(res.status, 413, "{res:?}");
    let body: Value = serde_json::from_slice(&res.body).expect("problem json");
    assert_eq!(body["status"], 413, "{body}");
    assert!(
        res.header("content-type")
            .is_some_and(|c| c.starts_with("application/problem+json"))
    );
    // Exactly one response, saying so, then the connection closes (the body
    // was never read).
    assert_eq!(res.header("connection"), Some("close"), "{res:?}");
    assert!(raw.closed_within(PROMPT), "connection left open after 413");
    // The application's words on both engines, and counted like any answer.
    assert_eq!(
        body["detail"],
        "the request body must be smaller than max_request_body_size (1024 bytes)"
    );
    let res = agent().get(server.url("/metrics")).call().expect("metrics");
    let text = res.into_body().read_to_string().expect("metrics text");
    assert!(
        text.lines().any(|l| l.starts_with("http_requests_total{")
            && l.contains("route=\"/v1/datasets\"")
            && l.contains("status=\"413\"")
            && l.ends_with(" 1")),
        "{text}"
    );
}

/// `max_request_body_size` is the largest body accepted: a declared length
/// equal to it is read and served, one byte more is 413 before reading.
/// Waitress's bound: a body must be smaller than `max_request_body_size`; a
/// declared length at the limit is refused before the body is read.
fn body_limit_boundary_matches_waitress(engine: Engine) {
    let server = Server::builder(engine)
        .arg("--max-request-body-size", "1KiB")
        .start();
    let mut body = b"id,date,amount,description\n".to_vec();
    let mut n = 0;
    while body.len() + 60 < 1023 {
        n += 1;
        body.extend_from_slice(format!("L{n:07},2024-01-01,1.00,x\n").as_bytes());
    }
    let pad = 1023 - body.len() - format!("L{:07},2024-01-01,1.00,\n", n + 1).len();
    body.extend_from_slice(
        format!("L{:07},2024-01-01,1.00,{}\n", n + 1, "y".repeat(pad)).as_bytes(),
    );
    assert_eq!(body.len(), 1023);

    let mut raw = server.raw();
    let extra = format!(
        "Content-Type: text/csv\r\nContent-Length: {}\r\n",
        body.len()
    );
    let mut request = head("POST", "/v1/datasets", &extra).into_bytes();
    request.extend_from_slice(&body);
    raw.send(&request).expect("send");
    let res = raw
        .read_response(PROMPT)
        .expect("a response below the limit");
    assert_eq!(
        res.status,
        201,
        "a body one byte below the limit is accepted: {}",
        res.text()
    );

    let mut raw = server.raw();
    let extra = format!(
        "Content-Type: text/csv\r\nContent-Length: {}\r\n",
        body.len() + 1
    );
    raw.send(head("POST", "/v1/datasets", &extra).as_bytes())
        .expect("send");
    let res = raw.read_response(PROMPT).expect("a response at the limit");
    assert_eq!(
        res.status,
        413,
        "a body of exactly the limit is refused: {}",
        res.text()
    );
    assert!(raw.closed_within(PROMPT), "connection left open after 413");
}

fn chunked_body_past_limit_is_413(engine: Engine) {
    let server = Server::builder(engine)
        .arg("--max-request-body-size", "1KiB")
        .start();
    let mut raw = server.raw();
    let mut body = b"id,date,amount\n".to_vec();
    while body.len() < 128 * 1024 {
        body.extend_from_slice(b"L0000001,2024-01-01,1.00\n");
    }
    let mut request = head(
        "POST",
        "/v1/datasets",
        "Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n",
    )
    .into_bytes();
    request.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
    request.extend_from_slice(&body);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    // A request pipelined after the refused body is never served: the
    // connection closes after the 413, on both engines.
    request.extend_from_slice(head("GET", "/ready", "").as_bytes());
    // The server may close before taking it all: a failed send is no fault.
    let _ = raw.send(&request);
    let res = raw.read_response(PROMPT).expect("a 413 response");
    assert_eq!(res.status, 413, "{}", res.text());
    assert_eq!(res.header("connection"), Some("close"), "{res:?}");
    assert!(raw.closed_within(PROMPT), "connection left open after 413");
}

fn expect_continue_upload(engine: Engine) {
    let server = Server::start(engine);
    let body = b"id,date,amount,description\nL1,2024-01-02,10.00,rent\nL2,2024-01-03,5.50,coffee\n";
    let mut raw = server.raw();
    let extra = format!(
        "Content-Type: text/csv\r\nContent-Length: {}\r\nExpect: 100-continue\r\n",
        body.len()
    );
    raw.send(head("POST", "/v1/datasets", &extra).as_bytes())
        .expect("send head");
    // The server asks for the body before the client sends it.
    let interim = raw.read_head_response(PROMPT).expect("100 Continue");
    assert_eq!(interim.status, 100, "{interim:?}");
    raw.send(body).expect("send body");
    let res = raw.read_response(PROMPT).expect("final response");
    assert_eq!(res.status, 201, "{}", res.text());
}

/// A request refused before its body is read (an unknown parameter, a wrong
/// key) is answered without `100 Continue`, so the client never sends the
/// body; the connection then closes, its body unread.
fn expect_continue_refused_unread(engine: Engine) {
    let server = Server::builder(engine).arg("--api-key", "k1").start();
    let extra = "Content-Type: text/csv\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n";
    for (path, auth, status) in [
        ("/v1/datasets?x=1", "Authorization: Bearer k1\r\n", 400),
        ("/v1/datasets", "Authorization: Bearer nope\r\n", 403),
        ("/v1/datasets", "", 401),
    ] {
        let mut raw = server.raw();
        raw.send(head("POST", path, &format!("{extra}{auth}")).as_bytes())
            .expect("send head");
        let res = raw.read_head_response(PROMPT).expect("an answer");
        assert_eq!(res.status, status, "{path} {auth:?}: {res:?}");
        assert!(
            raw.closed_within(PROMPT),
            "{path}: left open with its body unread"
        );
    }
}

fn connection_limit_queues_then_serves(engine: Engine) {
    let server = Server::builder(engine)
        .arg("--connection-limit", "2")
        .start();
    let mut a = server.raw();
    let mut b = server.raw();
    // Each client is served once first, so both are accepted (not merely in the
    // backlog) before either asks /ready.
    serve_health(&mut a);
    serve_health(&mut b);
    let ready = |raw: &mut Raw| {
        raw.send(head("GET", "/ready", "").as_bytes())
            .expect("send");
        raw.read_response(PROMPT).expect("ready answer").status
    };
    // Two of two connections are open, but `b` is idle: a new client would
    // take its place, so the server is ready for one.
    assert_eq!(ready(&mut a), 200);
    // With `b` busy (a request under way) it is not.
    hold_in_flight(&mut b);
    assert_eq!(ready(&mut a), 503);
    hold_in_flight(&mut a);
    // The third client connects (the listen backlog holds it) but is not served.
    let mut c = server.raw();
    c.send(head("GET", "/health", "").as_bytes()).expect("send");
    assert!(
        c.read_response(Duration::from_millis(700)).is_none(),
        "a client past connection_limit was served"
    );
    // One leaves; the waiting client is served.
    drop(a);
    let res = c.read_response(PROMPT).expect("served once a slot freed");
    assert_eq!(res.status, 200, "{res:?}");
}

fn overload_reject_answers_503(engine: Engine) {
    let server = Server::builder(engine)
        .arg("--connection-limit", "1")
        .arg("--overload", "reject")
        .start();
    let mut a = server.raw();
    a.send(head("GET", "/health", "").as_bytes()).expect("send");
    assert_eq!(a.read_response(PROMPT).expect("first").status, 200);
    // Its next request under way: not idle, so it keeps its place.
    hold_in_flight(&mut a);
    let mut b = server.raw();
    let _ = b.send(head("GET", "/health", "").as_bytes());
    let res = b.read_response(PROMPT).expect("a 503 answer");
    assert_eq!(res.status, 503, "{res:?}");
    let body: Value = serde_json::from_slice(&res.body).expect("problem json");
    assert_eq!(body["status"], 503, "{body}");
    // The same words and retry hint from both engines.
    assert_eq!(
        body["detail"],
        "the server is at its connection limit; retry later"
    );
    assert_eq!(res.header("retry-after"), Some("1"), "{res:?}");
    assert!(b.closed_within(PROMPT), "rejected connection left open");
}

/// A client arriving at `connection_limit` takes the place of the
/// connection kept alive longest (idle between requests), closed for it, in
/// either overload mode: a pool of idle connections (a proxy's) never holds
/// every slot while clients wait, or are refused. A connection with nothing
/// sent yet, or with its next request under way, keeps its place.
fn a_client_at_the_limit_takes_the_longest_idle_place(engine: Engine) {
    for overload in ["queue", "reject"] {
        let server = Server::builder(engine)
            .arg("--connection-limit", "3")
            .arg("--overload", overload)
            .arg("--channel-timeout", "60s")
            .start();
        let mut a = server.raw();
        let mut b = server.raw();
        serve_health(&mut a);
        serve_health(&mut b);
        // Accepted, nothing sent: not a kept-alive connection.
        let mut fresh = server.raw();
        fresh.send(b"GET /heal").expect("send");
        // Well within channel_timeout (60 s), the new client is served...
        let mut c = server.raw();
        c.send(head("GET", "/health", "").as_bytes()).expect("send");
        let res = c
            .read_response(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{overload}: a client at the limit waited"));
        assert_eq!(res.status, 200, "{overload}: {res:?}");
        // ... in the place of `a`, idle longest; `b` and `fresh` are served on.
        assert!(
            a.closed_within(PROMPT),
            "{overload}: the longest idle kept its place"
        );
        serve_health(&mut b);
        fresh
            .send(b"th HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("send");
        assert_eq!(
            fresh.read_response(PROMPT).expect("fresh").status,
            200,
            "{overload}"
        );
    }
}

/// A client already waiting at the limit (`overload = queue`) takes the
/// place of a connection that goes idle after it arrived, well before that
/// connection's `channel_timeout`.
fn a_waiting_client_takes_the_place_of_one_gone_idle(engine: Engine) {
    let server = Server::builder(engine)
        .arg("--connection-limit", "1")
        .arg("--channel-timeout", "60s")
        .start();
    let mut a = server.raw();
    hold_in_flight(&mut a);
    let mut c = server.raw();
    c.send(head("GET", "/health", "").as_bytes()).expect("send");
    assert!(
        c.read_response(Duration::from_millis(700)).is_none(),
        "served past the limit"
    );
    // `a`'s upload ends (100 bytes, as `hold_in_flight` declared): idle now.
    let body = format!("a\n{}", "x\n".repeat(49));
    a.send(body.as_bytes()).expect("send body");
    assert_eq!(a.read_response(PROMPT).expect("upload answer").status, 201);
    let res = c
        .read_response(Duration::from_secs(10))
        .expect("the waiting client was not given the idle place");
    assert_eq!(res.status, 200, "{res:?}");
    assert!(
        a.closed_within(PROMPT),
        "the idle connection kept its place"
    );
}

/// Flags giving a 1 s channel_timeout.
fn short_timeout(engine: Engine) -> Server {
    Server::builder(engine)
        .arg("--channel-timeout", "1s")
        .arg("--cleanup-interval", "1s")
        .start()
}

fn idle_keep_alive_is_closed(engine: Engine) {
    let server = short_timeout(engine);
    let mut raw = server.raw();
    raw.send(head("GET", "/health", "").as_bytes())
        .expect("send");
    assert_eq!(raw.read_response(PROMPT).expect("200").status, 200);
    let started = Instant::now();
    assert!(
        raw.closed_within(Duration::from_secs(8)),
        "idle connection kept open"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed too early"
    );
}

fn silent_client_is_closed(engine: Engine) {
    let server = short_timeout(engine);
    let mut raw = server.raw();
    assert!(
        raw.closed_within(Duration::from_secs(8)),
        "silent connection kept open"
    );
}

fn slow_loris_head_is_cut(engine: Engine) {
    let server = short_timeout(engine);
    let mut raw = server.raw();
    raw.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .expect("send");
    let bytes = raw.read_until_close(Duration::from_secs(8));
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.contains(" 200 "),
        "a half-sent head was answered: {text}"
    );
    assert!(
        raw.closed_within(Duration::from_secs(1)),
        "slow-loris connection kept open"
    );
}

fn stalled_upload_is_cut(engine: Engine) {
    let server = short_timeout(engine);
    let mut raw = server.raw();
    raw.send(
        head(
            "POST",
            "/v1/datasets",
            "Content-Type: text/csv\r\nContent-Length: 100000\r\n",
        )
        .as_bytes(),
    )
    .expect("send");
    raw.send(b"id,date,amount\n").expect("send");
    let started = Instant::now();
    let res = raw
        .read_response(Duration::from_secs(10))
        .expect("a 408 answer to the stalled upload");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "cut too early"
    );
    assert_eq!(res.status, 408, "{}", res.text());
    let body: Value = serde_json::from_slice(&res.body).expect("problem json");
    assert_eq!(body["status"], 408, "{body}");
    assert!(raw.closed_within(PROMPT), "connection left open after 408");
}

fn slow_reader_is_cut(engine: Engine) {
    let server = short_timeout(engine);
    // A results download far larger than the socket buffers.
    let case = gen_case(server.data_dir(), 20_000);
    let (_, left) = upload(&server, &case.join("left.csv"), None);
    let (_, right) = upload(&server, &case.join("right.csv"), None);
    let (status, job) = reconcile(&server, &case, &left, &right, "?wait=60");
    assert_eq!(status, 200, "{job}");
    let path = format!(
        "/v1/reconciliations/{}/results?format=csv",
        job["id"].as_str().expect("id")
    );
    let mut raw = server.raw();
    raw.send(head("GET", &path, "").as_bytes()).expect("send");
    // The client never reads: the server's writes stall, and it gives up on
    // the connection after channel_timeout.
    let open = || get(&server, "/debug/status").1["connections"]["open"].as_u64();
    wait_until(Duration::from_secs(5), || open().unwrap_or(0) >= 2);
    wait_until(Duration::from_secs(15), || open().unwrap_or(u64::MAX) <= 1);
    let got = raw.read_until_close(Duration::from_secs(10));
    assert!(!got.is_empty(), "the download never started");
}

// ---------------------------------------------------------------- the API

fn auth_guards_v1(engine: Engine) {
    // Two keys in one flag, separated by a comma as RECON_API_KEYS has them.
    let server = Server::builder(engine)
        .arg("--api-key", "s3cret-key,other-key")
        .start();
    let (status, body) = get(&server, "/v1/datasets");
    assert_problem(status, &body, 401);
    let res = agent()
        .get(server.url("/v1/datasets"))
        .header("Authorization", "Bearer other-key")
        .call()
        .expect("get");
    assert_eq!(res.status(), 200);
    let res = agent()
        .get(server.url("/v1/datasets"))
        .header("Authorization", "Bearer wrong-key")
        .call()
        .expect("get");
    let (status, body) = json(res);
    assert_problem(status, &body, 403);
    let res = agent()
        .get(server.url("/v1/datasets"))
        .header("Authorization", "Bearer s3cret-key")
        .call()
        .expect("get");
    assert_eq!(res.status(), 200);
    // Liveness and readiness stay open; ops endpoints are protected by default.
    assert_eq!(get(&server, "/health").0, 200);
    assert_eq!(get(&server, "/ready").0, 200);
    assert_eq!(get(&server, "/debug/status").0, 401);
}

/// A body past the limit from a client without the key is answered like any
/// request without it (401, or 403 for a wrong key): the limit is told only
/// to a client allowed to upload. Unread either way, and the connection closes.
fn auth_comes_before_the_body_limit(engine: Engine) {
    let server = Server::builder(engine)
        .arg("--api-key", "s3cret-key")
        .arg("--max-request-body-size", "1KiB")
        .start();
    for (key, expected) in [
        ("", 401),
        ("Authorization: Bearer wrong-key\r\n", 403),
        ("Authorization: Bearer s3cret-key\r\n", 413),
    ] {
        let mut raw = server.raw();
        let extra = format!("{key}Content-Type: text/csv\r\nContent-Length: 1000000\r\n");
        raw.send(head("POST", "/v1/datasets", &extra).as_bytes())
            .expect("send");
        let res = raw
            .read_response(PROMPT)
            .expect("an answer before the body");
        let body: Value = serde_json::from_slice(&res.body).expect("problem json");
        assert_problem(res.status, &body, expected);
        assert!(
            raw.closed_within(PROMPT),
            "connection left open after {expected}"
        );
    }
}

fn upload_reconcile_and_fetch(engine: Engine) {
    let server = Server::start(engine);
    let case = gen_case(server.data_dir(), 300);
    let (status, left) = upload(&server, &case.join("left.csv"), None);
    assert_eq!(status, 201, "{left}");
    let (status, right) = upload(&server, &case.join("right.csv"), None);
    assert_eq!(status, 201, "{right}");
    assert!(left["rows"].as_u64().unwrap_or(0) > 0, "{left}");

    let (status, listed) = get(&server, "/v1/datasets");
    assert_eq!(status, 200);
    assert_eq!(
        listed["datasets"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    let id = left["id"].as_str().expect("id");
    assert_eq!(get(&server, &format!("/v1/datasets/{id}")).0, 200);

    let (status, job) = reconcile(&server, &case, &left, &right, "?wait=30");
    assert_eq!(status, 200, "{job}");
    let job_id = job["id"].as_str().expect("job id");
    let (status, got) = get(&server, &format!("/v1/reconciliations/{job_id}"));
    assert_eq!(status, 200, "{got}");

    let text = String::from_utf8(results(&server, job_id, "csv")).expect("csv");
    assert!(text.lines().count() > 1, "{text}");

    for format in ["json", "parquet"] {
        assert!(!results(&server, job_id, format).is_empty(), "{format}");
    }
    let (status, body) = get(&server, "/v1/reconciliations/no-such-job");
    assert!(status == 404 || status == 400, "{status} {body}");

    // The job is over: the event stream replays its end and closes.
    let res = agent()
        .get(server.url(&format!("/v1/reconciliations/{job_id}/events")))
        .call()
        .expect("events");
    assert_eq!(res.status(), 200);
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let events = res.into_body().read_to_string().expect("events body");
    assert!(events.contains("event: end"), "{events}");

    // A streamed answer to an HTTP/1.0 client has no length to give: it ends
    // with the connection, and says so even to a client asking to keep it.
    for path in ["results", "events"] {
        let mut raw = server.raw();
        raw.send(
            format!(
                "GET /v1/reconciliations/{job_id}/{path} HTTP/1.0\r\n\
                 Connection: keep-alive\r\n\r\nGET /health HTTP/1.0\r\n\r\n"
            )
            .as_bytes(),
        )
        .expect("send");
        let res = raw
            .read_response(Duration::from_secs(20))
            .expect("a response");
        assert_eq!(res.status, 200, "{path}: {}", res.text());
        assert_eq!(res.header("content-length"), None, "{path}");
        assert_eq!(
            res.header("connection")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("close"),
            "{path}"
        );
    }

    let res = agent()
        .delete(server.url(&format!("/v1/datasets/{id}")))
        .call()
        .expect("delete");
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(get(&server, &format!("/v1/datasets/{id}")).0, 404);
}

fn unsupported_upload_type_is_415(engine: Engine) {
    let server = Server::start(engine);
    let res = agent()
        .post(server.url("/v1/datasets"))
        .header("Content-Type", "image/png")
        .send(&b"\x89PNG"[..])
        .expect("post");
    let (status, body) = json(res);
    assert_problem(status, &body, 415);
}

// ---------------------------------------------------------------- shutdown

/// Sends the head and the first half of an upload of `body` to `path` and
/// returns once the server counts it busy (in flight), with the half left.
fn half_upload<'b>(server: &Server, path: &str, body: &'b [u8]) -> (Raw, &'b [u8]) {
    let (first, second) = body.split_at(body.len() / 2);
    // /debug/status may count itself as busy on some engines: take a baseline.
    let baseline = busy(server);
    let mut raw = server.raw();
    let extra = format!(
        "Content-Type: text/csv\r\nContent-Length: {}\r\n",
        body.len()
    );
    raw.send(head("POST", path, &extra).as_bytes())
        .expect("send head");
    raw.send(first).expect("send first half");
    wait_until(Duration::from_secs(10), || busy(server) > baseline);
    (raw, second)
}

fn graceful_shutdown_finishes_in_flight(engine: Engine) {
    let mut server = Server::start(engine);
    let case = gen_case(server.data_dir(), 300);
    let csv = std::fs::read(case.join("left.csv")).expect("csv");
    let (mut raw, second) = half_upload(&server, "/v1/datasets", &csv);
    server.terminate();
    raw.send(second).expect("send second half");
    let res = raw
        .read_response(Duration::from_secs(20))
        .expect("the in-flight upload answered");
    assert_eq!(res.status, 201, "{}", res.text());
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("exited after drain");
    assert!(status.success(), "exit status {status:?}");
}

/// An upload still arriving when `shutdown_timeout` runs out is cut off and
/// never stored: not as a shorter dataset (the cut can fall inside a value),
/// not after a restart either.
fn stop_past_its_timeout_stores_no_partial_upload(engine: Engine) {
    let mut server = Server::builder(engine)
        .arg("--shutdown-timeout", "1s")
        .start();
    let body: String = std::iter::once("id,amount\n".to_owned())
        .chain((1..=40).map(|i| format!("{i},{i}.00\n")))
        .collect();
    let (_raw, _) = half_upload(&server, "/v1/datasets?name=partial", body.as_bytes());
    server.terminate();
    // The rest never comes: the stop's timeout closes the connection.
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("exited after its shutdown timeout");
    assert!(status.success(), "exit status {status:?}");
    let datasets = server.data_dir().join("datasets");
    let stored: Vec<_> = std::fs::read_dir(&datasets)
        .map(|dir| dir.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(stored.is_empty(), "a cut-off upload was stored: {stored:?}");
    let server = server.restart();
    let (status, listed) = get(&server, "/v1/datasets");
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["datasets"], serde_json::json!([]), "{listed}");
}

/// A job that succeeded just before a graceful stop keeps its Parquet results:
/// the stop waits for the background write (the file of a 100k-record job
/// takes long enough that exiting at once would leave it `pending`, marked
/// `failed` by the next start).
fn graceful_stop_writes_parquet_results(engine: Engine) {
    if !slow_tests() {
        eprintln!("skipped: set RECON_SLOW_TESTS=1 for the parquet stop test");
        return;
    }
    let mut server = Server::start(engine);
    let case = gen_case(server.data_dir(), 100_000);
    let (_, left) = upload(&server, &case.join("left.csv"), None);
    let (_, right) = upload(&server, &case.join("right.csv"), None);
    let (status, job) = reconcile(&server, &case, &left, &right, "?wait=60");
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["state"], "succeeded", "{job}");
    let id = job["id"].as_str().expect("job id").to_owned();
    server.terminate();
    let exit = server
        .wait_exit(Duration::from_secs(30))
        .expect("exited after the stop");
    assert!(exit.success(), "exit status {exit:?}");
    let server = server.restart();
    let (status, got) = get(&server, &format!("/v1/reconciliations/{id}"));
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["parquet"], "ready", "{got}");
    let body = results(&server, &id, "parquet");
    assert!(body.starts_with(b"PAR1") && body.ends_with(b"PAR1"));
}

fn sigint_drains_and_exits_zero(engine: Engine) {
    let mut server = Server::start(engine);
    assert_eq!(get(&server, "/health").0, 200);
    server.signal(libc::SIGINT);
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("exited after SIGINT");
    assert!(status.success(), "exit status {status:?}");
    // A clean stop leaves no scratch directory or lease that the next start
    // would sweep as a dead instance's.
    for sub in ["tmp", "owners"] {
        let left: Vec<_> = std::fs::read_dir(server.data_dir().join(sub))
            .expect("data dir entry")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(left.is_empty(), "{sub}/ after a clean stop: {left:?}");
    }
}

/// With a drain delay, a signal first makes `/ready` answer 503 while requests,
/// old and new connections alike, are still served; a second signal ends the
/// delay (60 s here, so exiting within the limit proves it was cut short).
fn drain_delay_serves_while_not_ready(engine: Engine) {
    let mut server = Server::builder(engine).arg("--drain-delay", "60s").start();
    let mut kept = server.raw();
    let ask = |raw: &mut Raw, path: &str| {
        raw.send(head("GET", path, "").as_bytes()).expect("send");
        raw.read_response(PROMPT).expect("an answer").status
    };
    assert_eq!(ask(&mut kept, "/ready"), 200);
    server.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ask(&mut kept, "/ready") != 503 {
        assert!(Instant::now() < deadline, "/ready never reported draining");
        std::thread::park_timeout(Duration::from_millis(20));
    }
    assert_eq!(
        ask(&mut kept, "/health"),
        200,
        "kept connection still served"
    );
    let mut fresh = server.raw();
    assert_eq!(
        ask(&mut fresh, "/health"),
        200,
        "new connection still served"
    );
    assert_eq!(ask(&mut fresh, "/ready"), 503);
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("a second signal ends the drain delay");
    assert!(status.success(), "exit status {status:?}");
}

fn killed_mid_upload_leaves_no_dataset(engine: Engine) {
    let mut server = Server::start(engine);
    let baseline = busy(&server);
    let mut raw = server.raw();
    let extra = "Content-Type: text/csv\r\nContent-Length: 1000000\r\n";
    raw.send(head("POST", "/v1/datasets", extra).as_bytes())
        .expect("send head");
    raw.send(b"id,date,amount\nL1,2024-01-01,1.00\n")
        .expect("send part");
    wait_until(Duration::from_secs(10), || busy(&server) > baseline);
    server.signal(libc::SIGKILL);
    let _ = server.wait_exit(Duration::from_secs(10));
    let server = server.restart();
    let (status, listed) = get(&server, "/v1/datasets");
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        listed["datasets"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
}

/// Workers busy now, as `/debug/status` reports (it may count itself).
fn busy(server: &Server) -> u64 {
    get(server, "/debug/status").1["workers"]["busy"]
        .as_u64()
        .unwrap_or(0)
}

/// Polls `cond` every 20 ms until it holds, failing after `limit`.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------- slow

/// A reader producing `total` bytes of valid ledger CSV without holding them.
struct CsvStream {
    total: u64,
    sent: u64,
    row: u64,
    pending: Vec<u8>,
}

impl CsvStream {
    fn new(total: u64) -> Self {
        Self {
            total,
            sent: 0,
            row: 0,
            pending: Vec::new(),
        }
    }
}

impl Read for CsvStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.sent >= self.total {
            return Ok(0);
        }
        while self.pending.len() < buf.len() {
            if self.row == 0 {
                self.pending
                    .extend_from_slice(b"id,date,amount,description\n");
            }
            self.row += 1;
            let line = format!(
                "L{:09},2024-{:02}-{:02},{}.{:02},payment reference {}\n",
                self.row,
                self.row % 12 + 1,
                self.row % 28 + 1,
                self.row % 100_000,
                self.row % 100,
                self.row
            );
            self.pending.extend_from_slice(line.as_bytes());
        }
        let left = usize::try_from(self.total - self.sent).unwrap_or(usize::MAX);
        let n = buf.len().min(left);
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        self.sent += n as u64;
        Ok(n)
    }
}

fn upload_100_mb_streamed(engine: Engine) {
    if !slow_tests() {
        eprintln!("skipped: set RECON_SLOW_TESTS=1 for the 100 MB upload");
        return;
    }
    let server = Server::start(engine);
    let total = 100 * 1024 * 1024;
    let started = Instant::now();
    let res = agent()
        .post(server.url("/v1/datasets?name=big.csv"))
        .header("Content-Type", "text/csv")
        .send(ureq::SendBody::from_owned_reader(CsvStream::new(total)))
        .expect("upload");
    let (status, body) = json(res);
    assert_eq!(status, 201, "{body}");
    eprintln!(
        "100 MB upload on {}: {:?}",
        engine.as_str(),
        started.elapsed()
    );
}

fn restart_mid_job(engine: Engine) {
    if !slow_tests() {
        eprintln!("skipped: set RECON_SLOW_TESTS=1 for the restart test");
        return;
    }
    let server = Server::start(engine);
    let case = gen_case(server.data_dir(), 20_000);
    let (_, left) = upload(&server, &case.join("left.csv"), None);
    let (_, right) = upload(&server, &case.join("right.csv"), None);
    let (status, job) = reconcile(&server, &case, &left, &right, "");
    assert!(status == 202 || status == 200, "{job}");
    let job_id = job["id"].as_str().expect("job id").to_owned();
    let server = server.restart();
    // Datasets survive; the job is either finished or marked failed, never half-done.
    let (status, got) = get(
        &server,
        &format!("/v1/datasets/{}", left["id"].as_str().unwrap_or("")),
    );
    assert_eq!(status, 200, "{got}");
    let (status, got) = get(&server, &format!("/v1/reconciliations/{job_id}"));
    assert_eq!(status, 200, "{got}");
    let state = got["state"].as_str().unwrap_or("");
    assert!(state == "succeeded" || state == "failed", "{got}");
    if state == "failed" {
        assert_eq!(got["error"], "interrupted", "{got}");
        // Never served half-written.
        let (status, body) = get(&server, &format!("/v1/reconciliations/{job_id}/results"));
        assert_ne!(status, 200, "{body}");
    }
}

/// A graceful stop lets the jobs it is running finish within
/// `shutdown_timeout` (and writes their Parquet results); only jobs it never
/// started are marked interrupted. Never is a job that ended (its results in
/// place) marked interrupted over its end.
fn stop_lets_running_jobs_finish(engine: Engine) {
    if !slow_tests() {
        eprintln!("skipped: set RECON_SLOW_TESTS=1 for the stop-with-jobs test");
        return;
    }
    let mut server = Server::builder(engine)
        .arg("--shutdown-timeout", "60s")
        .start();
    let case = gen_case(server.data_dir(), 20_000);
    let (_, left) = upload(&server, &case.join("left.csv"), None);
    let (_, right) = upload(&server, &case.join("right.csv"), None);
    let mut ids = Vec::new();
    for _ in 0..6 {
        let (status, job) = reconcile(&server, &case, &left, &right, "");
        assert!(status == 202 || status == 200, "{job}");
        ids.push(job["id"].as_str().expect("job id").to_owned());
    }
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(60))
        .expect("the stop ends");
    assert!(status.success(), "exit status {status:?}");
    let server = server.restart();
    let mut succeeded = 0;
    for id in &ids {
        let (status, got) = get(&server, &format!("/v1/reconciliations/{id}"));
        assert_eq!(status, 200, "{got}");
        let results = server.data_dir().join("jobs").join(id).join("results.csv");
        match got["state"].as_str() {
            Some("succeeded") => {
                succeeded += 1;
                assert_eq!(got["parquet"], "ready", "{got}");
                assert!(results.exists(), "{got}");
            }
            Some("failed") => {
                assert_eq!(got["error"], "interrupted", "{got}");
                assert!(!results.exists(), "an ended job marked interrupted: {got}");
            }
            _ => panic!("unsettled after the stop: {got}"),
        }
    }
    // The job running when the signal came finished.
    assert!(succeeded >= 1, "no job finished within the stop's timeout");
}

engines!(
    listening_line,
    stop_past_its_timeout_stores_no_partial_upload,
    serve_tunes_for_given_resources_and_profile,
    open_file_limit_follows_the_connection_limit,
    serves_and_stops_with_stderr_closed,
    health,
    head_health,
    head_on_every_get_route,
    ready,
    unknown_route_is_problem_json,
    server_header_is_configurable,
    ops_endpoints,
    keep_alive_reuses_connection,
    oversized_header_is_431,
    small_header_limit_is_431,
    header_limit_is_exact,
    declared_body_past_limit_is_413_unread,
    chunked_body_past_limit_is_413,
    body_limit_boundary_matches_waitress,
    expect_continue_upload,
    expect_continue_refused_unread,
    connection_limit_queues_then_serves,
    overload_reject_answers_503,
    a_client_at_the_limit_takes_the_longest_idle_place,
    a_waiting_client_takes_the_place_of_one_gone_idle,
    idle_keep_alive_is_closed,
    silent_client_is_closed,
    slow_loris_head_is_cut,
    stalled_upload_is_cut,
    slow_reader_is_cut,
    auth_guards_v1,
    auth_comes_before_the_body_limit,
    upload_reconcile_and_fetch,
    unsupported_upload_type_is_415,
    graceful_shutdown_finishes_in_flight,
    graceful_stop_writes_parquet_results,
    sigint_drains_and_exits_zero,
    drain_delay_serves_while_not_ready,
    killed_mid_upload_leaves_no_dataset,
    upload_100_mb_streamed,
    restart_mid_job,
    stop_lets_running_jobs_finish,
);

/// Reads one HTTP/2 frame: (type, flags, stream id, payload).
fn read_frame(raw: &mut Raw) -> (u8, u8, u32, Vec<u8>) {
    let mut head = [0u8; 9];
    raw.stream().read_exact(&mut head).expect("frame header");
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let stream = u32::from_be_bytes([head[5] & 0x7f, head[6], head[7], head[8]]);
    let mut payload = vec![0u8; len];
    raw.stream()
        .read_exact(&mut payload)
        .expect("frame payload");
    (head[3], head[4], stream, payload)
}

/// HTTP/2 over cleartext with prior knowledge (the async engine's extra):
/// the server answers the preface with SETTINGS, then serves GET /health on
/// stream 1 (HPACK written by hand: static-table indexes and raw literals).
#[test]
fn async_h2c_prior_knowledge() {
    crate::support::within(Duration::from_secs(60), || {
        let server = Server::start(Engine::Async);
        let mut raw: Raw = server.raw();
        let (status_200, body) = h2_get_health(&mut raw);
        assert!(status_200, "response HEADERS did not carry :status 200");
        assert_eq!(String::from_utf8_lossy(&body), r#"{"status":"ok"}"#);
    });
}

/// An idle HTTP/2 connection gives its place at the connection limit like an
/// HTTP/1 one, though its client sends frames after its last response (a
/// SETTINGS acknowledgement here): streams in flight, not bytes read, say
/// whether it is busy.
#[test]
fn async_idle_h2_connection_gives_its_place() {
    crate::support::within(Duration::from_secs(60), || {
        let server = Server::builder(Engine::Async)
            .arg("--connection-limit", "2")
            .arg("--channel-timeout", "60s")
            .start();
        let mut h2 = server.raw();
        assert!(h2_get_health(&mut h2).0);
        // SETTINGS with the ACK flag, after the response.
        h2.send(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).expect("send ack");
        let mut h1 = server.raw();
        serve_health(&mut h1);
        let mut c = server.raw();
        c.send(head("GET", "/health", "").as_bytes()).expect("send");
        let res = c
            .read_response(Duration::from_secs(10))
            .expect("a client at the limit waited");
        assert_eq!(res.status, 200);
        // The HTTP/2 connection was idle longest.
        assert!(
            h2.closed_within(PROMPT),
            "the idle h2 connection kept its place"
        );
        serve_health(&mut h1);
    });
}

/// Opens HTTP/2 with prior knowledge on `raw` and GETs /health on stream 1
/// (HPACK written by hand: static-table indexes and raw literals); whether
/// the answer was :status 200, and its body.
fn h2_get_health(raw: &mut Raw) -> (bool, Vec<u8>) {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // An empty SETTINGS frame: length 0, type 4, flags 0, stream 0.
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    // HEADERS: :method GET (2), :scheme http (6), :path /health, :authority.
    let mut block = vec![0x82, 0x86, 0x04, 7];
    block.extend_from_slice(b"/health");
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"127.0.0.1");
    let len = u8::try_from(block.len()).expect("small block");
    // Type 1 (HEADERS), flags END_STREAM | END_HEADERS, stream 1.
    out.extend_from_slice(&[0, 0, len, 1, 0x05, 0, 0, 0, 1]);
    out.extend_from_slice(&block);
    raw.send(&out).expect("send preface and request");

    let (kind, _, stream, _) = read_frame(raw);
    assert_eq!(
        (kind, stream),
        (4, 0),
        "first frame is the server's SETTINGS"
    );
    let mut status_200 = false;
    let mut body = Vec::new();
    loop {
        let (kind, flags, stream, payload) = read_frame(raw);
        if stream != 1 {
            continue;
        }
        match kind {
            // :status 200 is static-table index 8.
            1 => status_200 = payload.first() == Some(&0x88),
            0 => body.extend_from_slice(&payload),
            _ => {}
        }
        if flags & 0x01 != 0 {
            break;
        }
    }
    (status_200, body)
}

/// `SERVER_TYPE` (the Waitress/Uvicorn deployments' variable) picks the
/// engine when no flag does.
#[test]
fn server_type_env_picks_the_engine() {
    crate::support::within(Duration::from_secs(60), || {
        for engine in crate::support::ENGINES {
            let server = Server::builder(*engine)
                .without_engine_flag()
                .env("SERVER_TYPE", engine.as_str())
                .start();
            let line = server.listening_line();
            assert!(
                line.contains(&format!("engine={},", engine.as_str())),
                "{line}"
            );
        }
    });
}

/// A bad setting stops `recon serve` before it binds, with exit code 2 and a
/// message naming the setting and its source.
#[test]
fn serve_rejects_bad_config_with_exit_2() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_recon"))
        .args(["serve", "--port", "0", "--engine", "bogus", "--data-dir"])
        .arg(dir.path())
        .current_dir(dir.path())
        .output()
        .expect("run recon serve");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "nothing announced: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--engine"), "{stderr}");
}

/// Records that do not read (a torn or hand-edited `job.json` or
/// `meta.json`) are logged once at start with their paths, left on disk for
/// repair, and neither listed nor served.
#[test]
fn unreadable_records_are_logged_at_start_and_kept() {
    let dir = std::sync::Arc::new(tempfile::TempDir::new().expect("tempdir"));
    let job_id = "0000aaaa-0000-4000-8000-000000000000";
    let dataset_id = "0000bbbb-0000-4000-8000-000000000000";
    let job = dir.path().join("jobs").join(job_id).join("job.json");
    let meta = dir
        .path()
        .join("datasets")
        .join(dataset_id)
        .join("meta.json");
    for (path, text) in [(&job, "{broken"), (&meta, "{")] {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write record");
    }
    let server = Server::builder(Engine::Threaded)
        .data_dir(std::sync::Arc::clone(&dir))
        .start();
    let log = server.log();
    for (kind, path) in [("job", &job), ("dataset", &meta)] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("unreadable {kind} record"))
                    && l.contains(&path.display().to_string())),
            "{kind} not logged with its path:\n{log}"
        );
    }
    assert_eq!(
        get(&server, "/v1/datasets").1["datasets"],
        serde_json::json!([])
    );
    assert_eq!(
        get(&server, "/v1/reconciliations").1["reconciliations"],
        serde_json::json!([])
    );
    assert_eq!(
        get(&server, &format!("/v1/reconciliations/{job_id}")).0,
        404
    );
    assert_eq!(get(&server, &format!("/v1/datasets/{dataset_id}")).0, 404);
    assert_eq!(std::fs::read_to_string(&job).expect("job kept"), "{broken");
    assert_eq!(std::fs::read_to_string(&meta).expect("meta kept"), "{");
}

/// A server-side failure answers a generic 500 and logs what failed with
/// the file's path, so an operator can find it (here a job's results.csv
/// removed behind the server's back).
#[test]
fn a_500_is_generic_on_the_wire_and_names_the_file_in_the_log() {
    let server = Server::start(Engine::Async);
    let case = gen_case(server.data_dir(), 50);
    let (_, left) = upload(&server, &case.join("left.csv"), None);
    let (_, right) = upload(&server, &case.join("right.csv"), None);
    let (status, job) = reconcile(&server, &case, &left, &right, "?wait=30");
    assert_eq!(status, 200, "{job}");
    let job_id = job["id"].as_str().expect("job id");
    let results = server
        .data_dir()
        .join("jobs")
        .join(job_id)
        .join("results.csv");
    std::fs::remove_file(&results).expect("remove results.csv");
    let (status, body) = get(&server, &format!("/v1/reconciliations/{job_id}/results"));
    assert_problem(status, &body, 500);
    assert!(
        !body.to_string().contains("results.csv"),
        "no path on the wire: {body}"
    );
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("request failed") && l.contains(&results.display().to_string())),
        "{log}"
    );
}
