//! Measures the coroutine stack the threaded engine needs: serves with an odd
//! stack size (in machine words), which makes may print each coroutine's peak
//! stack use when it ends, and sends one request to each route the
//! application answers inline, each on its own connection.
//!
//! `cargo run --release -p serve-threaded --example stack_probe`
//! (and without `--release` for the debug figure). Output lines read
//! `coroutine name = Some("recon-conn"), stack size = WORDS, used size = WORDS`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use recon_service::{App, Shutdown};
use serve_threaded::Options;
use tuning::Config;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        data_dir: dir.path().join("data"),
        engine: tuning::Engine::Threaded,
        ..Config::default()
    };
    let app = Arc::new(App::new(Arc::new(config), vec![])?);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let shutdown = Shutdown::new();
    let server = {
        let (app, shutdown) = (Arc::clone(&app), shutdown.clone());
        // 1 MiB plus one word: odd, so may tracks and reports usage.
        let options = Options {
            stack_bytes: (1 << 20) + size_of::<usize>(),
        };
        std::thread::spawn(move || {
            serve_threaded::serve_with_options(app, listener, shutdown, options)
        })
    };
    for path in [
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
        "/debug/status",
        "/performance/metrics",
        "/nope",
    ] {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        let status = String::from_utf8_lossy(&out[..out.len().min(12)]).into_owned();
        println!("{path}: {status} ({} bytes)", out.len());
        // Let the connection's coroutine end (and report) before the next.
        std::thread::sleep(Duration::from_millis(100));
    }
    shutdown.trigger();
    server.join().map_err(|_| "server thread panicked")??;
    Ok(())
}
