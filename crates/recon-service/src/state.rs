//! Live server figures the engine reports and the application shows
//! (`/ready`, `/debug/status`, `/metrics`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Counters an engine updates as connections and requests come and go.
#[derive(Debug)]
pub struct ServerState {
    engine: &'static str,
    connection_limit: usize,
    connections_open: AtomicUsize,
    connections_total: AtomicU64,
    workers_total: AtomicUsize,
    workers_busy: AtomicUsize,
    requests_queued: AtomicUsize,
    draining: AtomicBool,
    /// The address the engine listens on, once it serves (`port = 0` is
    /// chosen by the system: this is where it landed).
    listening: std::sync::OnceLock<std::net::SocketAddr>,
    /// Asks the engine whether a connection idle between requests would
    /// give its place to a new client ([`ServerState::set_idle_probe`]).
    idle_probe: std::sync::Mutex<Option<IdleProbe>>,
}

/// The engine's answer to "would a new client get in at the limit?" (see
/// [`ServerState::set_idle_probe`]).
struct IdleProbe(Box<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for IdleProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdleProbe")
    }
}

impl ServerState {
    /// Figures for `engine` (`"threaded"` or `"async"`) with its connection limit.
    pub fn new(engine: &'static str, connection_limit: usize) -> Self {
        Self {
            engine,
            connection_limit,
            connections_open: AtomicUsize::new(0),
            connections_total: AtomicU64::new(0),
            workers_total: AtomicUsize::new(0),
            workers_busy: AtomicUsize::new(0),
            requests_queued: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            listening: std::sync::OnceLock::new(),
            idle_probe: std::sync::Mutex::new(None),
        }
    }

    /// Lets [`ServerState::takes_new_clients`] ask the engine whether a
    /// connection idle between requests would give its place to a new
    /// client at the connection limit (both engines close the one kept alive
    /// longest for it). The engine that serves last sets it.
    pub fn set_idle_probe(&self, probe: impl Fn() -> bool + Send + Sync + 'static) {
        *self
            .idle_probe
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(IdleProbe(Box::new(probe)));
    }

    /// Whether a new client would be served now: below the connection
    /// limit, or at it with a connection idle between requests to close for
    /// it. What `/ready` reports.
    pub fn takes_new_clients(&self) -> bool {
        !self.at_connection_limit()
            || self
                .idle_probe
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_ref()
                .is_some_and(|probe| (probe.0)())
    }

    /// Records the address the engine listens on (the first call counts).
    pub fn set_listening(&self, addr: std::net::SocketAddr) {
        let _ = self.listening.set(addr);
    }

    /// The address the engine listens on, once it serves.
    pub fn listening(&self) -> Option<std::net::SocketAddr> {
        self.listening.get().copied()
    }

    /// The engine label for metrics.
    pub fn engine(&self) -> &'static str {
        self.engine
    }

    /// A connection was accepted.
    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("http_connections_active", "engine" => self.engine).increment(1.0);
    }

    /// A connection was closed.
    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("http_connections_active", "engine" => self.engine).decrement(1.0);
    }

    /// Connections open now.
    pub fn connections_open(&self) -> usize {
        self.connections_open.load(Ordering::Relaxed)
    }

    /// Connections accepted since start.
    pub fn connections_total(&self) -> u64 {
        self.connections_total.load(Ordering::Relaxed)
    }

    /// Whether `connection_limit` connections are open.
    pub fn at_connection_limit(&self) -> bool {
        self.connections_open() >= self.connection_limit
    }

    /// Sets how many workers the engine runs.
    pub fn set_workers_total(&self, n: usize) {
        self.workers_total.store(n, Ordering::Relaxed);
    }

    /// Workers the engine runs.
    pub fn workers_total(&self) -> usize {
        self.workers_total.load(Ordering::Relaxed)
    }

    /// A worker started a request.
    pub fn worker_busy(&self) {
        self.workers_busy.fetch_add(1, Ordering::Relaxed);
    }

    /// A worker finished a request.
    pub fn worker_idle(&self) {
        self.workers_busy.fetch_sub(1, Ordering::Relaxed);
    }

    /// Workers running a request now.
    pub fn workers_busy(&self) -> usize {
        self.workers_busy.load(Ordering::Relaxed)
    }

    /// A request is waiting for a worker.
    pub fn request_queued(&self) {
        self.requests_queued.fetch_add(1, Ordering::Relaxed);
    }

    /// A waiting request was taken by a worker.
    pub fn request_dequeued(&self) {
        self.requests_queued.fetch_sub(1, Ordering::Relaxed);
    }

    /// Requests waiting for a worker now.
    pub fn requests_queued(&self) -> usize {
        self.requests_queued.load(Ordering::Relaxed)
    }

    /// Marks the server as draining: `/ready` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the server is draining for shutdown.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
