//! Limits with Waitress's meaning: channel_timeout, connection_limit, and a
//! graceful shutdown.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::support::{Client, Server};

fn quick_timeouts(c: &mut tuning::Config) {
    c.server.channel_timeout = Duration::from_secs(1);
    c.server.cleanup_interval = Duration::from_millis(200);
}

#[test]
fn idle_keep_alive_connections_close_after_channel_timeout() {
    let server = Server::start(quick_timeouts);
    let mut c = server.client();
    c.send(b"GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(c.response().status, 200);
    let waited = c.time_to_close();
    assert!(waited >= Duration::from_millis(800), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[test]
fn slow_loris_heads_are_cut_off() {
    let server = Server::start(quick_timeouts);
    let mut c = server.client();
    let started = Instant::now();
    // One byte every 150 ms: never idle long enough for a read timeout,
    // but the head as a whole takes longer than channel_timeout.
    let head = b"GET /health HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for b in head {
        if c.stream.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    if !closed {
        c.stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        assert!(c.is_closed(), "slow head not cut off");
    }
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[test]
fn stalled_uploads_time_out() {
    let server = Server::start(quick_timeouts);
    let mut c = server.client();
    c.send(b"POST /v1/datasets HTTP/1.1\r\nContent-Type: text/csv\r\nContent-Length: 1000\r\n\r\nid,amount\n");
    let started = Instant::now();
    // The handler's read fails with TimedOut; the app answers (408 by
    // contract) or the connection closes. Either way within a few seconds.
    let mut buf = [0u8; 512];
    let n = std::io::Read::read(&mut c.stream, &mut buf).unwrap_or(0);
    if n > 0 {
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 4"), "{text}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(c.is_closed());
}

/// Starts an upload on `c` and returns once the server has it in flight (it
/// asks for the body, which never comes): not idle, so the connection keeps
/// its place at the limit (an idle one is closed for a new client).
fn hold_in_flight(c: &mut Client) {
    c.send(
        b"POST /v1/datasets HTTP/1.1\r\nContent-Type: text/csv\r\n\
          Content-Length: 100\r\nExpect: 100-continue\r\n\r\n",
    );
    assert_eq!(c.response().status, 100);
}

#[test]
fn connection_limit_queues_the_next_client() {
    let server =
        Server::start(|c| c.server.connection_limit = std::num::NonZeroUsize::new(2).unwrap());
    let mut a = server.client();
    let mut b = server.client();
    for c in [&mut a, &mut b] {
        c.send(b"GET /health HTTP/1.1\r\n\r\n");
        assert_eq!(c.response().status, 200);
    }
    // At the limit with `b` idle, a new client would take its place: ready.
    a.send(b"GET /ready HTTP/1.1\r\n\r\n");
    assert_eq!(a.response().status, 200);
    // With `b` busy, the limit is reached.
    hold_in_flight(&mut b);
    a.send(b"GET /ready HTTP/1.1\r\n\r\n");
    assert_eq!(a.response().status, 503);
    hold_in_flight(&mut a);
    // The third connects (the kernel completes the handshake in the backlog)
    // but is not served while two are open.
    let mut third = server.client();
    third.send(b"GET /health HTTP/1.1\r\n\r\n");
    third
        .stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut probe = [0u8; 1];
    let waiting = std::io::Read::read(&mut third.stream, &mut probe);
    assert!(waiting.is_err(), "third client served past the limit");
    assert_eq!(server.app.state().connections_open(), 2);
    drop(a);
    third
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The byte we probed for was not consumed: read the full response.
    assert_eq!(third.response().status, 200);
}

#[test]
fn reject_overload_answers_503() {
    let server = Server::start(|c| {
        c.server.connection_limit = std::num::NonZeroUsize::new(1).unwrap();
        c.overload = tuning::Overload::Reject;
    });
    let mut a = server.client();
    a.send(b"GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(a.response().status, 200);
    hold_in_flight(&mut a);
    let mut b = server.client();
    let r = b.response();
    assert_eq!(r.status, 503);
    assert!(b.is_closed());
}

#[test]
fn graceful_shutdown_closes_idle_and_returns() {
    let server = Server::start(|_| {});
    let addr = server.addr;
    let mut idle = server.client();
    idle.send(b"GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(idle.response().status, 200);
    let started = Instant::now();
    server.stop().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(idle.is_closed());
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening"
    );
}

#[test]
fn shutdown_lets_an_in_flight_request_finish() {
    let server = Server::start(|c| c.server.channel_timeout = Duration::from_secs(5));
    let app = std::sync::Arc::clone(&server.app);
    let mut c = Client::connect(server.addr);
    // An upload whose body is still arriving when shutdown starts.
    c.send(b"POST /v1/datasets?name=s HTTP/1.1\r\nContent-Type: text/csv\r\nContent-Length: 53\r\n\r\nid,date,amount,description\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.state().workers_busy() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopper = std::thread::spawn(move || server.stop());
    std::thread::sleep(Duration::from_millis(200));
    assert!(app.state().is_draining());
    c.send(b"1,2024-01-01,10.00,coffee\n");
    let r = c.response();
    assert!(r.status < 500, "{}", r.status);
    assert_eq!(r.header("connection"), Some("close"));
    stopper.join().unwrap().unwrap();
}

#[test]
fn slow_readers_are_cut_off() {
    let server = Server::start(quick_timeouts);
    let mut c = server.client();
    // Thousands of pipelined requests for a 10 KB document, never read: the
    // server's writes stall once the socket buffers fill, and a write stalled
    // past channel_timeout closes the connection.
    let one = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n";
    let many: Vec<u8> = one.iter().copied().cycle().take(one.len() * 3000).collect();
    c.stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = c.stream.write_all(&many);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.app.state().connections_total() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    while server.app.state().connections_open() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        server.app.state().connections_open(),
        0,
        "slow reader still connected"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}
