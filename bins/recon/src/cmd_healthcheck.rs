//! `recon healthcheck`: a tiny HTTP probe for container health checks, so the
//! runtime image needs no curl. Exit 0 when the URL answers 2xx, 1 otherwise.
//! Without `--url` it probes `/health` where `recon serve` would listen with
//! the same environment and config file, so a changed port needs no second
//! setting.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

/// Arguments of `recon healthcheck`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The URL to probe (plain http only; port 80 when none is given,
    /// `/health` when it names no path). Default: `/health` on the host and
    /// port `recon serve` would use with this environment and config file
    /// (127.0.0.1 for 0.0.0.0); `serve`'s flags are not seen here.
    #[arg(long)]
    url: Option<String>,
    /// Give up after this long: seconds (`3`) or with a unit (`500ms`, `3s`).
    #[arg(long, default_value = "3", value_parser = parse_timeout)]
    timeout: Duration,
}

/// A probe timeout as durations are written elsewhere, at least 1 ms.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    tuning::units::parse_duration(text)
        .ok()
        .filter(|d| !d.is_zero() && *d <= Duration::from_secs(3600))
        .ok_or_else(|| {
            format!("expected a duration from 1ms to 1h, such as 3, 500ms or 3s, not {text:?}")
        })
}

/// Runs `recon healthcheck`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let url = match args.url {
        Some(url) => url,
        None => configured_url()?,
    };
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url:?}: only http:// URLs can be probed"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        // A bare `http://host:port` probes recon's liveness route.
        None => (rest, "/health"),
    };
    let timeout = args.timeout;
    let addr = with_port(authority)
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
        // Only the exit code decides: a closed stdout does not fail the check.
        let _ = writeln!(std::io::stdout(), "{url} {status}");
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("{url} answered {:?}", line.lines().next().unwrap_or(""))
    }
}

/// `/health` where `recon serve` would listen: the configured port, on the
/// configured address or, for an unspecified one (`0.0.0.0`, `::`), loopback.
fn configured_url() -> anyhow::Result<String> {
    let loaded = tuning::load(&tuning::LoadOptions::default())
        .context("loading the configuration to find the port")?;
    let config = &loaded.config;
    let host = match config.host {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(format!(
        "http://{}/health",
        SocketAddr::new(host, config.port)
    ))
}

/// `authority` with a port: `host` alone (or `[v6]` alone) means port 80, as
/// in any http URL.
fn with_port(authority: &str) -> String {
    if authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.ends_with(']'))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    }
}

#[cfg(test)]
mod tests {
    use super::with_port;

    #[test]
    fn a_url_without_a_port_means_80() {
        for (authority, expect) in [
            ("127.0.0.1", "127.0.0.1:80"),
            ("127.0.0.1:8000", "127.0.0.1:8000"),
            ("localhost", "localhost:80"),
            ("[::1]", "[::1]:80"),
            ("[::1]:8000", "[::1]:8000"),
        ] {
            assert_eq!(with_port(authority), expect);
        }
    }
}
