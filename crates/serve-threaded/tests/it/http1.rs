//! HTTP/1.x edge cases on a raw socket: framing, keep-alive, errors.

use crate::support::Server;

/// Sends `request` on a fresh connection and checks the statuses of the
/// responses that come back, then whether the connection was closed.
fn check(
    server: &Server,
    request: &str,
    statuses: &[u16],
    closed: bool,
) -> Vec<crate::support::Resp> {
    let mut c = server.client();
    c.send(request.as_bytes());
    let resps: Vec<_> = statuses.iter().map(|_| c.response()).collect();
    let got: Vec<u16> = resps.iter().map(|r| r.status).collect();
    assert_eq!(got, statuses, "{request:?}");
    if closed {
        assert!(c.is_closed(), "expected close after {request:?}");
    }
    resps
}

#[test]
fn health_keep_alive_and_status_line() {
    let server = Server::start(|_| {});
    let mut c = server.client();
    for _ in 0..3 {
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = c.response();
        assert_eq!((r.version, r.status, r.reason.as_str()), (1, 200, "OK"));
        assert_eq!(r.body, br#"{"status":"ok"}"#);
        assert_eq!(r.header("server"), Some("recon"));
        assert!(r.header("date").is_some_and(|d| d.ends_with(" GMT")));
        assert_eq!(r.header("connection"), None);
    }
    c.send(b"HEAD /health HTTP/1.1\r\n\r\n");
    let r = c.response_to(true);
    assert_eq!(r.status, 200);
    // The length the GET would have, when the application says (it may
    // leave the HEAD body empty).
    assert!(matches!(
        r.header("content-length"),
        None | Some("15") | Some("0")
    ));
    assert!(c.leftover().is_empty(), "HEAD response carried a body");
    let r = check(&server, "GET /nope HTTP/1.1\r\n\r\n", &[404], false);
    assert_eq!(r[0].reason, "Not Found");
    assert_eq!(
        r[0].header("content-type"),
        Some("application/problem+json")
    );
}

#[test]
fn configurable_server_header() {
    let server = Server::start(|c| c.server_header = "waitress".to_owned());
    let r = check(&server, "GET /health HTTP/1.1\r\n\r\n", &[200], false);
    assert_eq!(r[0].header("server"), Some("waitress"));
}

#[test]
fn http10_and_connection_close() {
    let server = Server::start(|_| {});
    let r = check(&server, "GET /health HTTP/1.0\r\n\r\n", &[200], true);
    assert_eq!(r[0].version, 0);
    assert_eq!(r[0].header("connection"), Some("close"));
    let r = check(
        &server,
        "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /health HTTP/1.0\r\n\r\n",
        &[200, 200],
        true,
    );
    assert_eq!(r[0].header("connection"), Some("keep-alive"));
    let r = check(
        &server,
        "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n",
        &[200],
        true,
    );
    assert_eq!(r[0].header("connection"), Some("close"));
}

#[test]
fn pipelined_requests_answer_in_order() {
    let server = Server::start(|_| {});
    let reqs = "GET /health HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\nGET /ready HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\nConnection: close\r\n\r\n";
    check(&server, reqs, &[200, 404, 200, 200], true);
}

#[test]
fn malformed_framing_is_400_and_closes() {
    let server = Server::start(|_| {});
    for req in [
        "POST /health HTTP/1.1\r\nContent-Length: abc\r\n\r\nGET /health HTTP/1.1\r\n\r\n",
        "POST /health HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "POST /health HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\nabcd",
        "POST /health HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /health HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        "POST /health HTTP/1.1\r\nTransfer-Encoding: bogus\r\n\r\n",
        "GET /health HTTP/1.1\r\nNo colon here\r\n\r\n",
        "\x01\x02garbage\r\n\r\n",
    ] {
        let r = check(&server, req, &[400], true);
        assert_eq!(r[0].header("connection"), Some("close"));
        assert_eq!(
            r[0].header("content-type"),
            Some("application/problem+json")
        );
    }
    // Still serving.
    check(&server, "GET /health HTTP/1.1\r\n\r\n", &[200], false);
}

#[test]
fn header_limits_answer_431() {
    let server = Server::start(|c| c.server.max_request_header_size = 4096);
    let big = format!(
        "GET /health HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(5000)
    );
    check(&server, &big, &[431], true);
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    check(
        &server,
        &format!("GET /health HTTP/1.1\r\n{many}\r\n"),
        &[431],
        true,
    );
    // More than httparse's usual 16 is fine.
    let twenty: String = (0..20).map(|i| format!("X-H{i}: v\r\n")).collect();
    check(
        &server,
        &format!("GET /health HTTP/1.1\r\n{twenty}\r\n"),
        &[200],
        false,
    );
}

#[test]
fn declared_body_past_the_limit_is_413_before_reading() {
    let server = Server::start(|c| c.server.max_request_body_size = 100);
    let r = check(
        &server,
        "POST /v1/datasets HTTP/1.1\r\nContent-Length: 101\r\n\r\n",
        &[413],
        true,
    );
    assert_eq!(r[0].header("connection"), Some("close"));
}

#[test]
fn unread_bodies_are_never_parsed_as_requests() {
    let server = Server::start(|_| {});
    // /health does not read a body; the bytes of a request hidden in it must
    // be drained, not answered.
    let smuggled = "GET /nope HTTP/1.1\r\n\r\n";
    let req = format!(
        "POST /health HTTP/1.1\r\nContent-Length: {}\r\n\r\n{smuggled}GET /health HTTP/1.1\r\nConnection: close\r\n\r\n",
        smuggled.len()
    );
    let resps = {
        let mut c = server.client();
        c.send(req.as_bytes());
        let a = c.response();
        let b = c.response();
        assert!(c.is_closed());
        vec![a.status, b.status]
    };
    assert_ne!(resps[0], 404, "the body was parsed as a request");
    assert_eq!(resps[1], 200);
    let chunked = format!(
        "POST /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\nGET /health HTTP/1.1\r\nConnection: close\r\n\r\n",
        smuggled.len()
    );
    let resps: Vec<u16> = {
        let mut c = server.client();
        c.send(chunked.as_bytes());
        let a = c.response();
        let b = c.response();
        assert!(c.is_closed());
        vec![a.status, b.status]
    };
    assert_ne!(resps[0], 404);
    assert_eq!(resps[1], 200);
}

#[test]
fn chunked_upload_with_100_continue() {
    let server = Server::start(|_| {});
    let mut c = server.client();
    c.send(
        b"POST /v1/datasets?name=t HTTP/1.1\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = c.response();
    assert_eq!(interim.status, 100);
    let csv = "id,date,amount,description\n1,2024-01-01,10.00,coffee\n2,2024-01-02,5.50,tea\n";
    let (a, b) = csv.split_at(20);
    c.send(
        format!(
            "{:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        )
        .as_bytes(),
    );
    let r = c.response();
    assert!(
        r.status < 500,
        "{} {:?}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    // The connection is still in step.
    c.send(b"GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(c.response().status, 200);
}

#[test]
fn non_numeric_and_huge_lengths_do_not_crash() {
    let server = Server::start(|_| {});
    for cl in ["-1", "1e3", "0x10", "18446744073709551616", " ", "1 2"] {
        check(
            &server,
            &format!("POST /v1/datasets HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n"),
            &[400],
            true,
        );
    }
    check(&server, "GET /health HTTP/1.1\r\n\r\n", &[200], false);
}

#[test]
fn heads_and_bodies_larger_than_the_idle_buffer() {
    // A connection starts with small buffers (4 KiB), grows them for a
    // large head or body and shrinks them back between requests: none of
    // that may show on the wire.
    let server = Server::start(|_| {});
    let mut c = server.client();
    for size in [3000, 20_000, 100, 40_000] {
        c.send(
            format!(
                "GET /health HTTP/1.1\r\nX-Big: {}\r\n\r\n",
                "a".repeat(size)
            )
            .as_bytes(),
        );
        assert_eq!(c.response().status, 200, "head with a {size}-byte header");
    }
    let mut csv = String::from("id,date,amount,description\n");
    for i in 0..8000 {
        csv.push_str(&format!(
            "{i},2024-01-01,{}.{:02},item number {i}\n",
            i % 500,
            i % 100
        ));
    }
    assert!(csv.len() > 200_000);
    for _ in 0..2 {
        c.send(
            format!(
                "POST /v1/datasets?name=big HTTP/1.1\r\nContent-Type: text/csv\r\nContent-Length: {}\r\n\r\n{csv}",
                csv.len()
            )
            .as_bytes(),
        );
        let r = c.response();
        assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
        c.send(b"GET /health HTTP/1.1\r\n\r\n");
        assert_eq!(c.response().status, 200);
    }
}
