//! `hello-hyper`: a bare hyper 1 hello-world on a tokio multi-thread runtime.
//!
//! The "ceiling" column of `bench-compare` for the async engine: no routing,
//! no application, no metrics; one static body over HTTP/1.1 keep-alive. It
//! prints the same `listening on http://ADDR` line as `recon serve` so the
//! harness starts it the same way.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroUsize;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Bare hyper hello-world server.
#[derive(Debug, Parser)]
#[command(name = "hello-hyper", version)]
struct Args {
    /// Runtime worker threads.
    #[arg(long, default_value = "2")]
    workers: NonZeroUsize,
    /// Address to bind.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// Port to bind (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    port: u16,
}

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = Response::new(Full::new(Bytes::from_static(b"{\"status\":\"ok\"}")));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

async fn serve(listener: TcpListener) -> anyhow::Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            // Running out of descriptors is transient: keep serving.
            Err(err) => {
                eprintln!("accept: {err}");
                continue;
            }
        };
        // Latency matters more than packet count for a hello-world.
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let io = TokioIo::new(stream);
            // Errors are clients going away; a hello-world has nothing to say about them.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, service_fn(hello))
                .await;
        });
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.get())
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(async {
        let addr = SocketAddr::new(args.host, args.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr().context("reading the bound address")?;
        println!(
            "hello-hyper listening on http://{local} (engine=hyper, workers={})",
            args.workers
        );
        serve(listener).await
    })
}
