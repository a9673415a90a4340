//! Real Waitress on the same bytes: status and connection behaviour compared.
//! Runs only with `RECON_SLOW_TESTS=1` and when `python3 -c "import waitress"`
//! works (`pip install waitress`).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Client, Server};

/// A WSGI app shaped like recon's inline routes: `/health` 200, else 404;
/// it never reads the request body.
const WSGI: &str = r#"
import sys, waitress
def app(environ, start_response):
    if environ["PATH_INFO"] == "/health":
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"status":"ok"}']
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no"]
server = waitress.create_server(app, host="127.0.0.1", port=0, threads=2,
                                max_request_header_size=4096)
print(server.effective_port, flush=True)
server.run()
"#;

struct Waitress {
    child: Child,
    addr: SocketAddr,
}

impl Waitress {
    fn start() -> Option<Self> {
        let ok = Command::new("python3")
            .args(["-c", "import waitress"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
        let mut child = Command::new("python3")
            .args(["-c", WSGI])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take()?)
            .read_line(&mut line)
            .ok()?;
        let port: u16 = line.trim().parse().ok()?;
        Some(Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }
}

impl Drop for Waitress {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first status code sent and whether the server closed within 2 s.
fn probe(addr: SocketAddr, bytes: &[u8]) -> (Option<u16>, bool) {
    let mut c = Client::connect(addr);
    c.send(bytes);
    c.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        if Instant::now() > deadline {
            break false;
        }
        match c.stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) if !got.is_empty() => break false,
            Err(_) => {}
        }
    };
    let status = std::str::from_utf8(&got)
        .ok()
        .and_then(|t| t.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok());
    (status, closed)
}

#[test]
fn same_status_and_close_as_waitress() {
    if std::env::var("RECON_SLOW_TESTS").as_deref() != Ok("1") {
        return;
    }
    let Some(waitress) = Waitress::start() else {
        return;
    };
    let ours = Server::start(|c| c.server.max_request_header_size = 4096);
    let big = format!(
        "GET /health HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(8192)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "1.1 keep-alive",
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("1.0", b"GET /health HTTP/1.0\r\n\r\n".to_vec()),
        (
            "1.0 keep-alive",
            b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec(),
        ),
        (
            "close",
            b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
        ),
        ("404", b"GET /nope HTTP/1.1\r\n\r\n".to_vec()),
        (
            "bad CL",
            b"POST /health HTTP/1.1\r\nContent-Length: abc\r\n\r\n".to_vec(),
        ),
        (
            "bad header line",
            b"GET /health HTTP/1.1\r\nno colon\r\n\r\n".to_vec(),
        ),
        ("big head", big.into_bytes()),
    ];
    let mut differences = Vec::new();
    for (name, bytes) in &cases {
        let theirs = probe(waitress.addr, bytes);
        let mine = probe(ours.addr, bytes);
        // Compare the status class and the close: exact codes differ where
        // Waitress answers 400 for a head we answer 431.
        let class = |s: Option<u16>| s.map(|s| s / 100);
        if class(theirs.0) != class(mine.0) || theirs.1 != mine.1 {
            differences.push(format!("{name}: waitress {theirs:?}, ours {mine:?}"));
        }
    }
    assert!(differences.is_empty(), "{differences:#?}");

    // The one intended difference: Waitress lets Transfer-Encoding override
    // Content-Length (RFC 9112 allows it); we refuse the pair with 400 and
    // close, as issue 5 asks, since it is the classic smuggling vector.
    let cl_te = b"POST /health HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(probe(waitress.addr, cl_te).0, Some(200));
    assert_eq!(probe(ours.addr, cl_te), (Some(400), true));
}
