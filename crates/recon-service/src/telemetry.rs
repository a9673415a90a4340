//! Request metrics: the Prometheus recorder, per-route latency histograms for
//! `/performance/metrics`, and process figures (RSS, CPU time) from `/proc`.
//!
//! The Prometheus recorder is process-global (the `metrics` facade has one
//! recorder), installed once through a `OnceLock`; several [`App`](crate::App)s in
//! one process (tests) share it. Per-route figures are per application and lock
//! free except for the histogram, which takes a short uncontended mutex.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;

use crate::router::{ROUTES, Route};

/// Buckets of `http_request_duration_seconds`, 100 µs to 30 s.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
];

/// Buckets of `recon_job_duration_seconds`, 10 ms to 10 min.
const JOB_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first use.
/// `None` when another recorder was installed first (then `/metrics` shows only
/// process figures).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".to_owned()),
                    DURATION_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("recon_job_duration_seconds".to_owned()),
                        JOB_BUCKETS,
                    )
                });
            let builder = match builder {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "prometheus buckets rejected; using summaries");
                    PrometheusBuilder::new()
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    zero_counters();
                    spawn_upkeep(handle.clone());
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a metrics recorder is already installed");
                    None
                }
            }
        })
        .as_ref()
}

/// Gives every metric recon records its `# HELP` line (docs/api.md lists
/// them with their labels).
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by method, route and status."
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's head to its answer's last byte, by method and route."
    );
    describe_counter!(
        "http_request_body_bytes_total",
        Unit::Bytes,
        "Request body bytes read, by route."
    );
    describe_counter!(
        "http_response_body_bytes_total",
        Unit::Bytes,
        "Response body bytes written, by route."
    );
    describe_gauge!("http_connections_active", "Client connections open now.");
    describe_counter!(
        "recon_jobs_total",
        "Reconciliation jobs ended, by final state."
    );
    describe_histogram!(
        "recon_job_duration_seconds",
        Unit::Seconds,
        "Time a reconciliation job ran, from its start to its end."
    );
    describe_counter!(
        "recon_records_total",
        "Records of succeeded jobs, by status."
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory size in bytes."
    );
}

/// Registers every series of the job counters at zero, so `/metrics` lists
/// them before the first job ends and `rate()` or `increase()` sees that
/// first job (a series appearing at 1 reads as no increase).
fn zero_counters() {
    for state in ["succeeded", "failed"] {
        metrics::counter!("recon_jobs_total", "status" => state).increment(0);
    }
    for status in recon_core::outcome::Status::ALL {
        metrics::counter!("recon_records_total", "status" => status.as_str()).increment(0);
    }
}

/// How often histogram samples are drained into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Drains histogram samples every few seconds on a small thread of its own;
/// without it, samples pile up in memory until `/metrics` is scraped.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("recon-metrics-upkeep".to_owned())
        .stack_size(64 * 1024)
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no metrics upkeep thread; histograms drain on scrape only");
    }
}

/// Renders the Prometheus exposition: the recorder's metrics (after upkeep)
/// followed by the process gauges.
pub fn render_prometheus() -> String {
    let process = ProcessStats::read();
    metrics::gauge!("process_resident_memory_bytes").set(process.rss_bytes as f64);
    let mut out = String::new();
    if let Some(handle) = prometheus() {
        handle.run_upkeep();
        out = handle.render();
    }
    // A counter set from the kernel's figure: the facade's counters only add,
    // so CPU time is written here directly, in exposition format.
    out.push_str(
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n",
    );
    out.push_str("# TYPE process_cpu_seconds_total counter\n");
    out.push_str(&format!(
        "process_cpu_seconds_total {}\n",
        process.cpu_seconds
    ));
    out
}

/// The Prometheus handles one kind of request records to.
#[derive(Clone)]
pub struct RequestHandles {
    /// `http_requests_total{method,route,status,engine}`.
    pub requests: metrics::Counter,
    /// `http_request_duration_seconds{method,route,engine}`.
    pub duration: metrics::Histogram,
    /// `http_request_body_bytes_total{route,engine}`.
    pub body_in: metrics::Counter,
    /// `http_response_body_bytes_total{route,engine}`.
    pub body_out: metrics::Counter,
}

impl std::fmt::Debug for RequestHandles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHandles").finish_non_exhaustive()
    }
}

/// Registered handles by (route, method, status), so a request costs no
/// building and looking up of four label sets in the recorder. A GET answered
/// 200 (most requests: /health, /ready, polling) finds its route's handles
/// without a lock; the rest take a read lock and a hash of three small
/// values. Bounded: routes x methods x statuses.
pub struct HandleCache {
    get_ok: [OnceLock<RequestHandles>; Route::COUNT],
    map: RwLock<HashMap<(&'static str, &'static str, u16), RequestHandles>>,
}

impl Default for HandleCache {
    fn default() -> Self {
        Self {
            get_ok: std::array::from_fn(|_| OnceLock::new()),
            map: RwLock::default(),
        }
    }
}

impl std::fmt::Debug for HandleCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.map.read().map(|m| m.len()).unwrap_or(0);
        let fast = self.get_ok.iter().filter(|h| h.get().is_some()).count();
        f.debug_struct("HandleCache")
            .field("entries", &(n + fast))
            .finish()
    }
}

impl HandleCache {
    /// Calls `f` with the handles of requests to `route` (`None`: no route
    /// matched) with `method` answered `status` by `engine`.
    pub fn with<R>(
        &self,
        route: Option<Route>,
        method: &'static str,
        status: u16,
        engine: &'static str,
        f: impl FnOnce(&RequestHandles) -> R,
    ) -> R {
        let template = route.map_or("unmatched", Route::template);
        if let Some(route) = route
            && method == "GET"
            && status == 200
            && let Some(slot) = self.get_ok.get(route.index())
        {
            return f(slot.get_or_init(|| RequestHandles::new(template, method, status, engine)));
        }
        let key = (template, method, status);
        if let Ok(map) = self.map.read()
            && let Some(h) = map.get(&key)
        {
            return f(h);
        }
        let h = RequestHandles::new(template, method, status, engine);
        let out = f(&h);
        if let Ok(mut map) = self.map.write() {
            map.insert(key, h);
        }
        out
    }
}

impl RequestHandles {
    fn new(route: &'static str, method: &'static str, status: u16, engine: &'static str) -> Self {
        Self {
            requests: metrics::counter!("http_requests_total", "method" => method,
                "route" => route, "status" => status.to_string(), "engine" => engine),
            duration: metrics::histogram!("http_request_duration_seconds", "method" => method,
                "route" => route, "engine" => engine),
            body_in: metrics::counter!("http_request_body_bytes_total", "route" => route,
                "engine" => engine),
            body_out: metrics::counter!("http_response_body_bytes_total", "route" => route,
                "engine" => engine),
        }
    }
}

/// Figures of one route.
#[derive(Debug)]
struct RouteFigures {
    count: AtomicU64,
    errors: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: Arc<AtomicU64>,
    /// Latency in microseconds; made on the route's first request, so routes
    /// nobody calls cost no memory (each histogram is ~190 KiB).
    latency: Mutex<Option<Histogram<u64>>>,
}

impl RouteFigures {
    fn new() -> Self {
        Self {
            count: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: Arc::new(AtomicU64::new(0)),
            latency: Mutex::new(None),
        }
    }
}

/// A latency histogram: 1 µs to 1 h at 3 significant digits (the bounds are
/// valid, so this is always `Some`).
fn latency_histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).ok()
}

/// A one-minute window of request counts, one slot per second.
#[derive(Debug)]
struct Window {
    /// Second (since start) each slot counts for.
    stamps: [AtomicU64; 60],
    counts: [AtomicU64; 60],
}

/// Per-application request figures for `/performance/metrics`.
#[derive(Debug)]
pub struct RequestStats {
    started: Instant,
    routes: Vec<RouteFigures>,
    unmatched: RouteFigures,
    window: Window,
}

impl Default for RequestStats {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestStats {
    /// Empty figures, starting the uptime clock now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            routes: (0..Route::COUNT).map(|_| RouteFigures::new()).collect(),
            unmatched: RouteFigures::new(),
            window: Window {
                stamps: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
                counts: std::array::from_fn(|_| AtomicU64::new(0)),
            },
        }
    }

    /// Time since the application started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    fn figures(&self, route: Option<Route>) -> &RouteFigures {
        route
            .and_then(|r| self.routes.get(r.index()))
            .unwrap_or(&self.unmatched)
    }

    /// Records one request that ran over `span` (started..finished).
    pub fn record(
        &self,
        route: Option<Route>,
        status: u16,
        span: std::ops::Range<Instant>,
        bytes_in: u64,
    ) {
        let finished = span.end;
        let elapsed = finished.saturating_duration_since(span.start);
        let f = self.figures(route);
        f.count.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            f.errors.fetch_add(1, Ordering::Relaxed);
        }
        f.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if let Ok(mut guard) = f.latency.lock() {
            if guard.is_none() {
                *guard = latency_histogram();
            }
            if let Some(h) = guard.as_mut() {
                h.saturating_record(micros);
            }
        }
        let sec = finished.saturating_duration_since(self.started).as_secs();
        let slot = (sec % 60) as usize;
        let stamp = &self.window.stamps[slot];
        let count = &self.window.counts[slot];
        if stamp.swap(sec, Ordering::AcqRel) != sec {
            count.store(0, Ordering::Release);
        }
        count.fetch_add(1, Ordering::AcqRel);
    }

    /// Adds `n` response bytes to a route's figures.
    pub fn add_bytes_out(&self, route: Option<Route>, n: u64) {
        self.figures(route)
            .bytes_out
            .fetch_add(n, Ordering::Relaxed);
    }

    /// The response-bytes counter of a route (streamed bodies add to it as they are read).
    pub fn bytes_out(&self, route: Option<Route>) -> Arc<AtomicU64> {
        Arc::clone(&self.figures(route).bytes_out)
    }

    /// Requests per second over the last full minute (or since start when younger).
    pub fn requests_per_second(&self) -> f64 {
        let now = self.started.elapsed().as_secs();
        let total: u64 = (0..60)
            .filter(|&i| {
                let s = self.window.stamps[i].load(Ordering::Acquire);
                s != u64::MAX && s + 60 > now
            })
            .map(|i| self.window.counts[i].load(Ordering::Acquire))
            .sum();
        let span = now.clamp(1, 60) as f64;
        total as f64 / span
    }

    /// A snapshot of every route that saw traffic.
    pub fn snapshot(&self) -> Vec<RouteSnapshot> {
        let mut out = Vec::new();
        let mut seen = [false; Route::COUNT];
        for (_, template, route) in ROUTES {
            if std::mem::replace(&mut seen[route.index()], true) {
                continue;
            }
            if let Some(mut s) = snapshot_of(template, self.figures(Some(*route))) {
                // Several methods share a template (GET and POST /v1/datasets),
                // and HEAD counts with the GET route it takes.
                let mut methods: Vec<&str> = ROUTES
                    .iter()
                    .filter(|(_, _, r)| r == route)
                    .map(|(m, _, _)| m.as_str())
                    .collect();
                if methods.contains(&"GET") {
                    methods.push("HEAD");
                }
                s.method = Some(methods.join("|"));
                out.push(s);
            }
        }
        if let Some(s) = snapshot_of("unmatched", &self.unmatched) {
            out.push(s);
        }
        out
    }
}

fn snapshot_of(route: &'static str, f: &RouteFigures) -> Option<RouteSnapshot> {
    let count = f.count.load(Ordering::Relaxed);
    if count == 0 {
        return None;
    }
    let ms = |micros: u64| micros as f64 / 1000.0;
    let guard = f.latency.lock();
    let (p50, p90, p99, max) = match guard.as_deref() {
        Ok(Some(h)) => (
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.9)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
        ),
        _ => (0.0, 0.0, 0.0, 0.0),
    };
    Some(RouteSnapshot {
        route,
        method: None,
        count,
        errors: f.errors.load(Ordering::Relaxed),
        bytes_in: f.bytes_in.load(Ordering::Relaxed),
        bytes_out: f.bytes_out.load(Ordering::Relaxed),
        latency_ms: Latency { p50, p90, p99, max },
    })
}

/// One route's figures as `/performance/metrics` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct RouteSnapshot {
    /// The route template, or `unmatched` for requests no route took (404,
    /// 405).
    pub route: &'static str,
    /// The route's method (`GET|HEAD` for `/health`); none for `unmatched`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Requests answered.
    pub count: u64,
    /// Requests answered with a 5xx status.
    pub errors: u64,
    /// Request body bytes read.
    pub bytes_in: u64,
    /// Response body bytes produced.
    pub bytes_out: u64,
    /// Latency quantiles in milliseconds.
    pub latency_ms: Latency,
}

/// Latency quantiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest seen.
    pub max: f64,
}

/// Process figures from `/proc/self`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcessStats {
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// User plus system CPU time in seconds.
    pub cpu_seconds: f64,
}

impl ProcessStats {
    /// Reads the figures; zeros where `/proc` is unavailable.
    pub fn read() -> Self {
        // SAFETY: sysconf only reads a system constant; it has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        // SAFETY: as above.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let page = u64::try_from(page).unwrap_or(4096);
        let rss_bytes = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |pages| pages * page);
        let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| parse_cpu_ticks(&s))
            .map_or(0.0, |t| t as f64 / ticks.max(1) as f64);
        Self {
            rss_bytes,
            cpu_seconds,
        }
    }
}

/// utime + stime from `/proc/self/stat` (fields 14 and 15, counted after the
/// parenthesised command name, which may itself hold spaces).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_parse_after_command_name() {
        let stat = "42 (my (odd) cmd) S 1 2 3 4 5 6 7 8 9 10 111 222 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(333));
    }

    #[test]
    fn process_stats_are_read() {
        let p = ProcessStats::read();
        assert!(p.rss_bytes > 1024 * 1024, "{p:?}");
    }

    #[test]
    fn handle_cache_counts_each_label_set_in_one_series() {
        prometheus();
        let cache = HandleCache::default();
        let engine = "handle-cache-test";
        let count = |route, method, status| {
            cache.with(route, method, status, engine, |h| h.requests.increment(1));
        };
        // GET 200 takes the lock-free path, the rest the map; each twice.
        for _ in 0..2 {
            count(Some(Route::Health), "GET", 200);
            count(Some(Route::Health), "HEAD", 200);
            count(Some(Route::Health), "GET", 503);
            count(None, "GET", 404);
        }
        count(Some(Route::Health), "GET", 200);
        let text = render_prometheus();
        let value = |route: &str, method: &str, status: &str| -> Vec<&str> {
            text.lines()
                .filter(|l| {
                    l.starts_with("http_requests_total{")
                        && l.contains(&format!("engine=\"{engine}\""))
                        && l.contains(&format!("route=\"{route}\""))
                        && l.contains(&format!("method=\"{method}\""))
                        && l.contains(&format!("status=\"{status}\""))
                })
                .filter_map(|l| l.rsplit(' ').next())
                .collect()
        };
        assert_eq!(value("/health", "GET", "200"), ["3"], "{text}");
        assert_eq!(value("/health", "HEAD", "200"), ["2"]);
        assert_eq!(value("/health", "GET", "503"), ["2"]);
        assert_eq!(value("unmatched", "GET", "404"), ["2"]);
    }

    #[test]
    fn stats_record_quantiles_and_rate() {
        let s = RequestStats::new();
        let at = Instant::now();
        for ms in 1..=100u64 {
            s.record(
                Some(Route::Health),
                200,
                at..at + Duration::from_millis(ms),
                0,
            );
        }
        s.record(
            Some(Route::Ready),
            503,
            at..at + Duration::from_millis(1),
            7,
        );
        let snap = s.snapshot();
        let health = snap.iter().find(|r| r.route == "/health").unwrap();
        assert_eq!(health.count, 100);
        assert!((health.latency_ms.p50 - 50.0).abs() < 1.0, "{health:?}");
        assert!((health.latency_ms.max - 100.0).abs() < 1.0);
        let ready = snap.iter().find(|r| r.route == "/ready").unwrap();
        assert_eq!((ready.errors, ready.bytes_in), (1, 7));
        assert!(s.requests_per_second() >= 101.0 / 60.0);
    }
}
