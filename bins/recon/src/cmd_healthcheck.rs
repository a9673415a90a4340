//! `recon healthcheck`: a tiny HTTP probe for container health checks, so the
//! runtime image needs no curl. Exit 0 when the URL answers 2xx, 1 otherwise.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

/// Arguments of `recon healthcheck`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The URL to probe (plain http only).
    #[arg(long, default_value = "http://127.0.0.1:8000/health")]
    url: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3)]
    timeout: u64,
}

/// Runs `recon healthcheck`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rest = args
        .url
        .strip_prefix("http://")
        .with_context(|| format!("{:?}: only http:// URLs can be probed", args.url))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let timeout = Duration::from_secs(args.timeout.max(1));
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("{authority:?}: not a host:port"))?
        .next()
        .with_context(|| format!("{authority:?}: no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).context("reading the status line")?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line.split_whitespace().nth(1).unwrap_or("");
    if status.starts_with('2') {
        println!("{} {status}", args.url);
        Ok(ExitCode::SUCCESS)
    } else {
        bail!(
            "{} answered {:?}",
            args.url,
            line.lines().next().unwrap_or("")
        )
    }
}
