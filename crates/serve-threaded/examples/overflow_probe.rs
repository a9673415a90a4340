//! What a coroutine stack overflow does to the threaded engine: serves with
//! a 12 KiB coroutine stack (below `/metrics`' measured 23 KiB in a release
//! build, above `/health`'s 9 KiB), a connection limit of 1 and a 100 ms
//! cleanup interval, then asks `/metrics` once and `/health` three times,
//! each on its own connection. may stops the overflowing coroutine at its
//! guard page without unwinding it; the sweeper then closes that connection
//! and releases its slot, so the `/health` requests are served (before that
//! fix the slot leaked and, at a limit of 1, they waited forever).
//!
//! `cargo run --release -p serve-threaded --example overflow_probe`

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use recon_service::{App, Shutdown};
use serve_threaded::Options;
use tuning::Config;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut config = Config {
        data_dir: dir.path().join("data"),
        engine: tuning::Engine::Threaded,
        ..Config::default()
    };
    config.server.connection_limit = std::num::NonZeroUsize::new(1).ok_or("limit")?;
    config.server.cleanup_interval = Duration::from_millis(100);
    let app = Arc::new(App::new(Arc::new(config), vec![])?);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let shutdown = Shutdown::new();
    let _server = {
        let (app, shutdown) = (Arc::clone(&app), shutdown.clone());
        let options = Options {
            stack_bytes: 12 * 1024,
        };
        std::thread::spawn(move || {
            serve_threaded::serve_with_options(app, listener, shutdown, options)
        })
    };
    for path in ["/metrics", "/health", "/health", "/health"] {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = Vec::new();
        let read = s.read_to_end(&mut out);
        let status = String::from_utf8_lossy(&out[..out.len().min(12)]).into_owned();
        drop(s);
        std::thread::sleep(Duration::from_millis(300));
        println!(
            "{path}: {status:?} ({} bytes, {read:?}); connections_open = {}",
            out.len(),
            app.state().connections_open()
        );
    }
    Ok(())
}
