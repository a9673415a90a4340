//! The raw-socket edge-case suite: HTTP/1.x bytes in, bytes out, against every
//! engine through the real `recon serve` binary. Each case is one of the
//! defects probed in may_minihttp 0.1.11 (issue 5) or a limit with Waitress's
//! meaning.
//!
//! Where hyper (async) and the threaded engine legitimately answer
//! differently, the test asserts the common contract: the status class, that
//! a smuggled request is never answered, that the connection is closed.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::engines;
use crate::support::{Engine, Server};

/// How long a read waits for an answer that should come at once.
const PROMPT: Duration = Duration::from_secs(10);

/// One response parsed from raw bytes.
#[derive(Debug, Clone)]
struct Resp {
    status: u16,
    status_line: String,
    headers: Vec<(String, String)>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Splits everything a server sent into responses (Content-Length, chunked,
/// or the rest of the stream). Unparseable bytes end the list.
fn parse_all(mut bytes: &[u8]) -> Vec<Resp> {
    let mut out = Vec::new();
    while let Some(end) = find(bytes, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        bytes = &bytes[end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default().to_owned();
        let Some(status) = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
        else {
            break;
        };
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let r = Resp {
            status,
            status_line,
            headers,
        };
        if (100..200).contains(&status) || status == 204 || status == 304 {
        } else if let Some(len) = r
            .header("content-length")
            .and_then(|l| l.parse::<usize>().ok())
        {
            bytes = &bytes[len.min(bytes.len())..];
        } else if r
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            while let Some(eol) = find(bytes, b"\r\n") {
                let size_text = String::from_utf8_lossy(&bytes[..eol]).into_owned();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .unwrap_or(0);
                bytes = &bytes[(eol + 2).min(bytes.len())..];
                if size == 0 {
                    bytes = &bytes[2.min(bytes.len())..];
                    break;
                }
                bytes = &bytes[(size + 2).min(bytes.len())..];
            }
        } else {
            bytes = &[];
        }
        out.push(r);
    }
    out
}

/// Sends `bytes` on a new connection and reads until the server closes or
/// sends nothing for `quiet`; returns the responses and whether it closed.
fn exchange(server: &Server, bytes: &[u8], quiet: Duration) -> (Vec<Resp>, bool) {
    let mut raw = server.raw();
    let _ = raw.send(bytes);
    let deadline = Instant::now() + PROMPT;
    let mut got = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let closed = loop {
        let wait = if got.is_empty() {
            deadline.saturating_duration_since(Instant::now())
        } else {
            quiet
        };
        if wait.is_zero() {
            break false;
        }
        raw.set_read_timeout(wait);
        match raw.stream().read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false;
            }
            Err(_) => break true,
        }
    };
    (parse_all(&got), closed)
}

fn statuses(responses: &[Resp]) -> Vec<u16> {
    responses.iter().map(|r| r.status).collect()
}

fn malformed_lengths_are_4xx_and_close(engine: Engine) {
    let server = Server::start(engine);
    for cl in ["abc", "-1", "1e3", "0x10", "18446744073709551616", "3, 4"] {
        let req = format!("POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: {cl}\r\n\r\nabcd");
        let (rs, closed) = exchange(&server, req.as_bytes(), Duration::from_secs(2));
        let got = statuses(&rs);
        assert!(
            got.len() == 1 && (400..500).contains(&got[0]),
            "Content-Length {cl:?}: {got:?}"
        );
        assert!(closed, "Content-Length {cl:?}: connection left open");
    }
    let dup =
        "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd";
    let (rs, closed) = exchange(&server, dup.as_bytes(), Duration::from_secs(2));
    assert_eq!(statuses(&rs), [400]);
    assert!(closed);
    // The process survived all of it.
    let (rs, _) = exchange(
        &server,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_millis(200),
    );
    assert_eq!(statuses(&rs), [200]);
}

fn content_length_with_transfer_encoding_never_smuggles(engine: Engine) {
    let server = Server::start(engine);
    let req = "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n";
    let (rs, closed) = exchange(&server, req.as_bytes(), Duration::from_secs(2));
    let got = statuses(&rs);
    assert!(!got.contains(&404), "smuggled request answered: {got:?}");
    assert!(!got.is_empty() && got[0] < 500, "{got:?}");
    if engine == Engine::Threaded {
        assert_eq!(got, [400]);
        assert!(closed);
    }
    for te in ["gzip", "chunked, identity"] {
        let req = format!("POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n");
        let (rs, closed) = exchange(&server, req.as_bytes(), Duration::from_secs(2));
        let got = statuses(&rs);
        assert!(
            got.len() == 1 && (400..600).contains(&got[0]),
            "TE {te:?}: {got:?}"
        );
        assert!(closed, "TE {te:?}: connection left open");
    }
}

fn unread_body_then_second_request(engine: Engine) {
    let server = Server::start(engine);
    let hidden = "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n";
    let req = format!(
        "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{hidden}GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        hidden.len()
    );
    let (rs, _) = exchange(&server, req.as_bytes(), Duration::from_secs(2));
    let got = statuses(&rs);
    assert!(!got.contains(&404), "body parsed as a request: {got:?}");
    assert!(!got.is_empty(), "no answer");
    // Either the body was drained and the second request answered, or the
    // connection was closed after the first response.
    if got.len() == 2 {
        assert_eq!(got[1], 200);
    }
}

fn pipelined_requests(engine: Engine) {
    let server = Server::start(engine);
    let req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /ready HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (rs, closed) = exchange(&server, req.as_bytes(), Duration::from_secs(2));
    assert_eq!(statuses(&rs), [200, 404, 200, 200]);
    assert!(closed);
}

fn http10_keep_alive_rules(engine: Engine) {
    let server = Server::start(engine);
    let (rs, closed) = exchange(
        &server,
        b"GET /health HTTP/1.0\r\n\r\n",
        Duration::from_secs(2),
    );
    assert_eq!(statuses(&rs), [200]);
    assert!(
        rs[0].status_line.starts_with("HTTP/1.0 200"),
        "{}",
        rs[0].status_line
    );
    assert!(closed, "HTTP/1.0 without keep-alive left open");

    let mut raw = server.raw();
    raw.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .expect("send");
    let first = raw.read_response(PROMPT).expect("first response");
    assert_eq!(first.status, 200);
    assert!(
        first
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("keep-alive")),
        "{:?}",
        first.headers
    );
    raw.send(b"GET /health HTTP/1.0\r\n\r\n").expect("send");
    assert_eq!(
        raw.read_response(PROMPT).expect("second response").status,
        200
    );
    assert!(raw.closed_within(Duration::from_secs(2)));

    let (rs, closed) = exchange(
        &server,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    );
    assert_eq!(statuses(&rs), [200]);
    assert!(
        rs[0].status_line.starts_with("HTTP/1.1 200 OK"),
        "{}",
        rs[0].status_line
    );
    assert!(closed);
}

fn header_limits(engine: Engine) {
    let server = Server::builder(engine)
        .arg("--max-request-header-size", "8KiB")
        .start();
    let big = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    let (rs, closed) = exchange(&server, big.as_bytes(), Duration::from_secs(2));
    let got = statuses(&rs);
    assert!(got.len() <= 1, "{got:?}");
    if let Some(s) = got.first() {
        assert!(*s == 431 || *s == 400, "{got:?}");
    }
    assert!(closed);
    if engine == Engine::Threaded {
        assert_eq!(got, [431]);
    }
    // More than httparse's default 16 headers is an ordinary request.
    let twenty: String = (0..20).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!("GET /health HTTP/1.1\r\nHost: x\r\n{twenty}Connection: close\r\n\r\n");
    let (rs, _) = exchange(&server, req.as_bytes(), Duration::from_secs(2));
    assert_eq!(statuses(&rs), [200]);
}

fn declared_body_too_large_is_413(engine: Engine) {
    let server = Server::builder(engine)
        .arg("--max-request-body-size", "1KiB")
        .start();
    let req = "POST /v1/datasets HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 1048576\r\n\r\n";
    let (rs, closed) = exchange(&server, req.as_bytes(), Duration::from_secs(2));
    assert_eq!(statuses(&rs), [413]);
    assert!(closed);
}

fn quick_timeouts(engine: Engine) -> Server {
    Server::builder(engine)
        .arg("--channel-timeout", "1s")
        .arg("--cleanup-interval", "200ms")
        .start()
}

fn slow_loris_head_is_cut_off(engine: Engine) {
    // A byte every 100 ms for up to 8 s: the client never goes idle, but its
    // head never completes, so it must be cut while it is still trickling,
    // about `channel_timeout` (1 s) after it connected.
    let server = quick_timeouts(engine);
    let mut raw = server.raw();
    let started = Instant::now();
    let mut head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_vec();
    head.resize(head.len() + 80, b'a');
    let mut cut = None;
    for b in &head {
        if raw.send(&[*b]).is_err() || raw.closed_within(Duration::from_millis(100)) {
            cut = Some(started.elapsed());
            break;
        }
    }
    let cut = cut.expect("a trickling head was never cut");
    assert!(cut < Duration::from_secs(4), "cut only after {cut:?}");
}

fn idle_keep_alive_closes_after_channel_timeout(engine: Engine) {
    let server = quick_timeouts(engine);
    let mut raw = server.raw();
    raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    assert_eq!(raw.read_response(PROMPT).expect("response").status, 200);
    let started = Instant::now();
    assert!(
        raw.closed_within(Duration::from_secs(5)),
        "idle connection still open"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
}

fn busy_keep_alive_outlives_channel_timeout(engine: Engine) {
    // Requests every 300 ms for 2.4 s on one connection: each is activity,
    // so the 1 s idle deadline keeps moving on and nothing is cut.
    let server = quick_timeouts(engine);
    let mut raw = server.raw();
    for k in 0..8 {
        raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap_or_else(|e| panic!("request {k}: {e}"));
        let r = raw
            .read_response(PROMPT)
            .unwrap_or_else(|| panic!("request {k} unanswered"));
        assert_eq!(r.status, 200);
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn stalled_body_times_out(engine: Engine) {
    let server = quick_timeouts(engine);
    let mut raw = server.raw();
    raw.send(
        b"POST /v1/datasets HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 1000\r\n\r\nid,amount\n",
    )
    .expect("send");
    let started = Instant::now();
    if let Some(r) = raw.read_response(Duration::from_secs(5)) {
        assert!((400..500).contains(&r.status), "{}", r.status);
    }
    assert!(
        raw.closed_within(Duration::from_secs(3)),
        "stalled upload still open"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

fn connection_limit_plus_one_waits(engine: Engine) {
    let server = Server::builder(engine)
        .arg("--connection-limit", "2")
        .start();
    let mut a = server.raw();
    let mut b = server.raw();
    for c in [&mut a, &mut b] {
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        assert_eq!(c.read_response(PROMPT).expect("served").status, 200);
    }
    let mut third = server.raw();
    third
        .send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    assert!(
        third.read_response(Duration::from_millis(700)).is_none(),
        "third client served past the connection limit"
    );
    drop(a);
    // The request already sent is answered once a slot frees.
    let r = third
        .read_response(PROMPT)
        .expect("third client served after one left");
    assert_eq!(r.status, 200);
}

engines!(
    malformed_lengths_are_4xx_and_close,
    content_length_with_transfer_encoding_never_smuggles,
    unread_body_then_second_request,
    pipelined_requests,
    http10_keep_alive_rules,
    header_limits,
    declared_body_too_large_is_413,
    slow_loris_head_is_cut_off,
    idle_keep_alive_closes_after_channel_timeout,
    busy_keep_alive_outlives_channel_timeout,
    stalled_body_times_out,
    connection_limit_plus_one_waits,
);
