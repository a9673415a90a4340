//! The typed configuration. Parsed once; nothing downstream re-parses strings.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

/// Which server engine serves the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// Waitress's model: one I/O dispatcher feeding a fixed pool of worker threads (may).
    Threaded,
    /// Uvicorn's model: tokio + hyper.
    #[default]
    Async,
}

impl Engine {
    /// The label used in metrics and status: `"threaded"` or `"async"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Engine::Threaded => "threaded",
            Engine::Async => "async",
        }
    }
}

/// What happens to a client arriving when `connection_limit` connections are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overload {
    /// Waitress: stop accepting; the client waits in the listen backlog until a slot frees.
    #[default]
    Queue,
    /// Uvicorn's `--limit-concurrency`: accept and answer 503 at once.
    Reject,
}

/// An API key. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The server settings `recommend` produces and the engines honour, with Waitress's meanings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Threaded engine: worker threads that run handlers (Waitress `threads`).
    pub threads: NonZeroUsize,
    /// Async engine: tokio worker threads (Uvicorn's workers, as threads of one process).
    pub workers: NonZeroUsize,
    /// Most connections open at once (Waitress `connection_limit`).
    pub connection_limit: NonZeroUsize,
    /// How often idle connections are swept (Waitress `cleanup_interval`).
    pub cleanup_interval: Duration,
    /// A connection idle or stalled this long is closed (Waitress `channel_timeout`).
    pub channel_timeout: Duration,
    /// Socket read size and receive buffer (Waitress `recv_bytes`).
    pub recv_bytes: NonZeroUsize,
    /// Socket write size and send buffer (Waitress `send_bytes`).
    pub send_bytes: NonZeroUsize,
    /// Request bodies must be smaller than this many bytes; 413 at or past it (Waitress's bound).
    pub max_request_body_size: u64,
    /// Largest request head (request line + headers) accepted, in bytes; 431 past it.
    pub max_request_header_size: usize,
    /// Listen backlog of the listening socket.
    pub backlog: u32,
}

/// recon's whole effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Which engine serves.
    pub engine: Engine,
    /// Address to bind.
    pub host: IpAddr,
    /// Port to bind; 0 picks a free one.
    pub port: u16,
    /// The tuned server settings.
    pub server: ServerSettings,
    /// Behaviour past `connection_limit`.
    pub overload: Overload,
    /// Value of the `Server` response header.
    pub server_header: String,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// On SIGTERM/SIGINT, how long to keep serving with `/ready` answering 503
    /// before the listener closes (time for a load balancer to stop routing here).
    pub drain_delay: Duration,
    /// Where datasets and results live.
    pub data_dir: PathBuf,
    /// Keys accepted on `/v1/*`; empty means no authentication.
    pub api_keys: Vec<ApiKey>,
    /// Whether `/metrics` and `/debug/*` need a key when keys exist.
    pub protect_ops: bool,
    /// Reconciliation jobs run at once, each on a job thread of its own.
    pub job_threads: NonZeroUsize,
    /// How long one job may run (from its start, queueing not counted)
    /// before it is stopped and failed.
    pub job_timeout: Duration,
    /// Log filter, e.g. `info` or `recon=debug`.
    pub log_level: String,
}

impl Default for Config {
    fn default() -> Self {
        let n = |v: usize| NonZeroUsize::new(v).unwrap_or(NonZeroUsize::MIN);
        Self {
            engine: Engine::Async,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8000,
            server: ServerSettings {
                threads: n(4),
                workers: n(2),
                connection_limit: n(100),
                cleanup_interval: Duration::from_secs(30),
                channel_timeout: Duration::from_secs(120),
                recv_bytes: n(65536),
                send_bytes: n(65536),
                max_request_body_size: 1 << 30,
                max_request_header_size: 64 * 1024,
                backlog: 1024,
            },
            overload: Overload::Queue,
            server_header: "recon".to_owned(),
            shutdown_timeout: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            data_dir: PathBuf::from("data"),
            api_keys: Vec::new(),
            protect_ops: true,
            job_threads: n(2),
            job_timeout: Duration::from_secs(3600),
            log_level: "info".to_owned(),
        }
    }
}
