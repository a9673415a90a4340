//! The baseline of issue 5's benchmark: a bare may_minihttp hello-world with
//! the same number of may workers as the threaded engine (one), no pinning,
//! answering `{"status":"ok"}` like `/health`.
//!
//! `cargo run --release -p serve-threaded --example minihttp_hello -- 127.0.0.1:18089`
//! then `wrk -t1 -c50 -d5s http://127.0.0.1:18089/health`.

use std::io;

use may_minihttp::{HttpServer, HttpService, Request, Response};

#[derive(Clone)]
struct Health;

impl HttpService for Health {
    fn call(&mut self, _req: Request<'_, '_, '_>, rsp: &mut Response<'_>) -> io::Result<()> {
        rsp.header("Content-Type: application/json");
        rsp.body(r#"{"status":"ok"}"#);
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18089".to_owned());
    may::config().set_workers(1);
    may::config().set_worker_pin(false);
    let server = HttpServer(Health).start(&addr)?;
    println!("may_minihttp hello on http://{addr}");
    server.join().map_err(|_| "server coroutine panicked")?;
    Ok(())
}
