//! `hello-may`: a bare may_minihttp hello-world.
//!
//! The "ceiling" column of `bench-compare` for the threaded engine: may
//! coroutines and may_minihttp's connection loop with one static body, no
//! application. It prints the same `listening on http://ADDR` line as
//! `recon serve` so the harness starts it the same way.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::num::NonZeroUsize;

use anyhow::Context;
use clap::Parser;
use may_minihttp::{HttpServer, HttpService, Request, Response};

/// Bare may_minihttp hello-world server.
#[derive(Debug, Parser)]
#[command(name = "hello-may", version)]
struct Args {
    /// may worker threads (coroutine schedulers).
    #[arg(long, default_value = "2")]
    workers: NonZeroUsize,
    /// Address to bind.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// Port to bind (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    port: u16,
}

/// Answers every request with the same small JSON body.
#[derive(Debug, Clone, Copy)]
struct Hello;

impl HttpService for Hello {
    fn call(&mut self, _req: Request<'_, '_, '_>, rsp: &mut Response<'_>) -> io::Result<()> {
        rsp.header("Content-Type: application/json")
            .body("{\"status\":\"ok\"}");
        Ok(())
    }
}

/// may_minihttp binds inside `start` and does not report the address, so a
/// zero port is resolved first by binding and releasing an ephemeral port.
fn resolve_port(host: IpAddr, port: u16) -> anyhow::Result<SocketAddr> {
    let wanted = SocketAddr::new(host, port);
    if port != 0 {
        return Ok(wanted);
    }
    let probe = TcpListener::bind(wanted).with_context(|| format!("binding {wanted}"))?;
    probe.local_addr().context("reading the probe address")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    may::config().set_workers(args.workers.get());
    let addr = resolve_port(args.host, args.port)?;
    let server = HttpServer(Hello)
        .start(addr)
        .with_context(|| format!("binding {addr}"))?;
    println!(
        "hello-may listening on http://{addr} (engine=may_minihttp, workers={})",
        args.workers
    );
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the accept coroutine panicked"))
}
