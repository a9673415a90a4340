//! The application: construction, dispatch, and the per-request frame around
//! every handler (routing, auth, panic guard, metrics).

use std::cell::Cell;
use std::io::{self, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header};
use tuning::Config;

use crate::error::ApiError;
use crate::jobs::Jobs;
use crate::owner::{self, Lease, Owner};
use crate::router::{self, Miss};
use crate::state::ServerState;
use crate::store::DatasetStore;
use crate::telemetry::{self, HandleCache, RequestStats};
use crate::{Dispatch, Request, RequestBody, Response, ResponseBody, auth};

/// One effective setting as `/debug/status` shows it: secrets already redacted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SettingEntry {
    /// The setting's key, e.g. `threads`.
    pub key: String,
    /// Its value as text.
    pub value: String,
    /// Where it came from: `default`, `tuning`, a file path, an env var name or a flag.
    pub source: String,
}

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The data directory could not be created or opened.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The application both engines serve.
#[derive(Debug)]
pub struct App {
    pub(crate) config: Arc<Config>,
    pub(crate) settings: Vec<SettingEntry>,
    pub(crate) state: ServerState,
    pub(crate) stats: RequestStats,
    pub(crate) store: Arc<DatasetStore>,
    pub(crate) jobs: Jobs,
    pub(crate) openapi: OnceLock<Bytes>,
    /// Requests now waiting (`?wait=`) for a job's end, each holding a
    /// handler thread: see `App::wait_slot`.
    pub(crate) waiting: AtomicUsize,
    handles: HandleCache,
    owner: Owner,
    /// This instance's lease (see [`crate::owner`]): held while the app lives,
    /// or until [`App::close`].
    lease: std::sync::Mutex<Option<Lease>>,
}

impl App {
    /// Builds the application from its configuration and the report of where
    /// each setting came from (shown by `/debug/status`).
    ///
    /// Prepares the data directory: sweeps scratch files left by a dead
    /// instance (a killed upload) and marks jobs it left unfinished as failed
    /// (`interrupted`). Installs the Prometheus recorder once per process.
    ///
    /// # Errors
    /// When the data directory cannot be prepared.
    pub fn new(config: Arc<Config>, settings: Vec<SettingEntry>) -> Result<Self, AppError> {
        let data_err = |source| AppError::DataDir {
            path: config.data_dir.clone(),
            source,
        };
        crate::durable::create_dir_all(&config.data_dir).map_err(data_err)?;
        telemetry::prometheus();
        let leases = owner::leases_dir(&config.data_dir);
        let (owner, lease) = Owner::register(&leases).map_err(data_err)?;
        let store = DatasetStore::open(
            &config.data_dir,
            &owner,
            config.server.recv_bytes.get(),
            config.server.max_request_body_size,
        )
        .map(Arc::new)
        .map_err(data_err)?;
        let jobs = Jobs::open(
            &config.data_dir,
            owner.clone(),
            Arc::clone(&store),
            config.job_threads.get(),
        )
        .map_err(data_err)?
        .with_time_limit(config.job_timeout);
        // Dead instances' work is recovered and swept by now: their leases go.
        owner::sweep_leases(&leases);
        let state = ServerState::new(config.engine.as_str(), config.server.connection_limit.get());
        Ok(Self {
            config,
            settings,
            state,
            stats: RequestStats::new(),
            store,
            jobs,
            openapi: OnceLock::new(),
            waiting: AtomicUsize::new(0),
            handles: HandleCache::default(),
            owner,
            lease: std::sync::Mutex::new(Some(lease)),
        })
    }

    /// The end of a graceful stop, once the engine has stopped and
    /// [`App::interrupt_unfinished_jobs`] has run: removes this instance's
    /// scratch directory and gives up its lease, so the next start does not
    /// take a clean stop for a crash ("sweeping scratch left by a dead
    /// instance"). The process may exit without dropping the application
    /// (threads still hold it), so this is not left to `Drop`.
    ///
    /// Only a clean stop is closed: while a handler still runs (a drain cut
    /// short by `shutdown_timeout`: an upload may still write into the
    /// scratch directory), a Parquet write is unfinished or a job's end is
    /// still being committed (a hung disk), both are kept,
    /// and the lease's lock goes with the process, so the next start (or a
    /// live replica) recovers them as a dead instance's at once. Returns
    /// whether it closed. Nothing may be served afterwards.
    pub fn close(&self) -> bool {
        let lease = self
            .lease
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let busy = self.state.workers_busy();
        let unwritten = self.jobs.finish_parquet_writes(Instant::now());
        let committing = self.jobs.committing();
        if busy > 0 || unwritten > 0 || committing > 0 {
            tracing::warn!(
                busy,
                unwritten,
                committing,
                "work still in flight at the end of the stop: scratch and lease kept for recovery"
            );
            // The lease file must outlive the application (dropped as the
            // process ends, it would take the file with it): its lock goes
            // with the process, leaving the file free, so the next start,
            // even as the same pid in a new container, recovers at once.
            std::mem::forget(lease);
            return false;
        }
        let scratch = self.store.scratch();
        if let Err(e) = std::fs::remove_dir_all(scratch)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %scratch.display(), error = %e, "could not remove the scratch directory");
        }
        self.owner.unregister();
        // The lease file goes with the lease.
        drop(lease);
        true
    }

    /// The effective settings with their sources.
    pub fn settings(&self) -> &[SettingEntry] {
        &self.settings
    }

    /// The configuration the application runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Live figures the engine updates.
    pub fn state(&self) -> &ServerState {
        &self.state
    }

    /// Once the engine has drained its requests at a stop: the job threads
    /// start no more queued jobs (see [`App::interrupt_unfinished_jobs`]), so
    /// the wait for Parquet writes that follows is not spent on new jobs.
    pub fn stop_starting_jobs(&self) {
        self.jobs.stop_starting();
    }

    /// Once no queued job starts at a stop: waits until the jobs this
    /// instance is running have ended, or until `deadline`; returns how many
    /// have not (the stop marks them interrupted).
    pub fn finish_running_jobs(&self, deadline: std::time::Instant) -> usize {
        self.jobs.finish_running(deadline)
    }

    /// At the end of a stop: marks the jobs this instance accepted and did not
    /// finish failed (`interrupted`) and returns their ids, for the log.
    pub fn interrupt_unfinished_jobs(&self) -> Vec<String> {
        self.jobs.interrupt_own_unfinished()
    }

    /// Waits until the `results.parquet` files of jobs that succeeded here are
    /// written, or until `deadline`; returns how many are still unwritten. For
    /// the end of a graceful stop, once the engine has drained its requests.
    pub fn finish_parquet_writes(&self, deadline: std::time::Instant) -> usize {
        self.jobs.finish_parquet_writes(deadline)
    }

    /// Where a request's handler should run: `Inline` for cheap routes that
    /// never block (health, readiness, metrics, the OpenAPI document, and
    /// answers for unknown routes), `Blocking` for everything else.
    pub fn dispatch(&self, method: &Method, path: &str) -> Dispatch {
        match router::route(method, path) {
            Ok(m) if !m.route.is_inline() => Dispatch::Blocking,
            _ => Dispatch::Inline,
        }
    }

    /// Answers a request whose declared body is at or past
    /// `max_request_body_size` before anything reads it: the application's own
    /// 413 problem document, counted in the metrics under the request's
    /// route. Both engines call this, so both answer such a request alike.
    ///
    /// The key is checked first, as for any request: a client without one
    /// gets its 401 or 403, not a hint of the server's limits.
    pub fn refuse_too_large(&self, method: &Method, path: &str, headers: &HeaderMap) -> Response {
        let started = Instant::now();
        let matched = router::route(method, path);
        let route = matched.as_ref().ok().map(|m| m.route);
        let error = match self.authorize(&matched, path, headers) {
            Err(denied) => denied,
            Ok(()) => ApiError::PayloadTooLarge {
                limit: self.config.server.max_request_body_size,
            },
        };
        let mut res = error.into_response();
        self.record(method, route, &mut res, started, 0);
        res
    }

    /// Handles one request: routing, auth, the handler (a panic becomes a 500),
    /// then metrics (count, duration, bytes in and out).
    pub fn handle(&self, req: Request) -> Response {
        let started = Instant::now();
        let (parts, body) = req.into_parts();
        let bytes_in = Cell::new(0u64);
        let mut body = Counted {
            inner: body,
            n: &bytes_in,
        };
        let matched = router::route(&parts.method, parts.uri.path());
        let route = matched.as_ref().ok().map(|m| m.route);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            self.authorize(&matched, parts.uri.path(), &parts.headers)?;
            let m = matched.map_err(|miss| match miss {
                Miss::NotFound => ApiError::NotFound(format!("no route for {}", parts.uri.path())),
                Miss::MethodNotAllowed(allowed) => ApiError::MethodNotAllowed {
                    allow: allowed
                        .iter()
                        .map(Method::as_str)
                        .collect::<Vec<_>>()
                        .join(", "),
                },
            })?;
            self.route(m, &parts, &mut body)
        }));
        let mut res = match outcome {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => e.into_response(),
            Err(_) => {
                tracing::error!(path = parts.uri.path(), "handler panicked");
                ApiError::Internal("handler panicked".to_owned()).into_response()
            }
        };
        if parts.method == Method::HEAD {
            // The length the GET would have, when known before the body is
            // made (not for a stream: no header rather than a wrong one).
            match res.body().len_hint() {
                Some(len) => {
                    res.headers_mut()
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                }
                None => {
                    res.headers_mut().remove(header::CONTENT_LENGTH);
                }
            }
            *res.body_mut() = ResponseBody::Empty;
        }
        self.record(&parts.method, route, &mut res, started, bytes_in.get());
        res
    }

    /// Checks the request's key for what it asks: its route's access, or
    /// under `/v1/` the API's even when no route matched, so a client without
    /// a key learns nothing of which paths or methods exist.
    fn authorize(
        &self,
        matched: &Result<router::Matched<'_>, Miss>,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<(), ApiError> {
        let access = match matched {
            Ok(m) => m.route.access(),
            Err(_) if is_api_path(path) => router::Access::Api,
            Err(_) => return Ok(()),
        };
        auth::check(&self.config, access, headers)
    }

    /// Records one request's metrics; wraps a streamed body so its bytes count as sent.
    fn record(
        &self,
        method: &Method,
        route: Option<router::Route>,
        res: &mut Response,
        started: Instant,
        bytes_in: u64,
    ) {
        // One clock read for both figures.
        let finished = Instant::now();
        let elapsed = finished.saturating_duration_since(started);
        let status = res.status().as_u16();
        self.stats
            .record(route, status, started..finished, bytes_in);
        // A full body is counted now; a stream as it is read.
        let body = std::mem::replace(res.body_mut(), ResponseBody::Empty);
        let full = match &body {
            ResponseBody::Stream(_) => None,
            other => Some(other.len_hint().unwrap_or(0)),
        };
        let counter = self.handles.with(
            route,
            method_label(method),
            status,
            self.state.engine(),
            |h| {
                h.requests.increment(1);
                h.duration.record(elapsed.as_secs_f64());
                if bytes_in > 0 {
                    h.body_in.increment(bytes_in);
                }
                match full {
                    Some(n) => {
                        h.body_out.increment(n);
                        None
                    }
                    None => Some(h.body_out.clone()),
                }
            },
        );
        *res.body_mut() = match (body, counter) {
            (ResponseBody::Stream(inner), Some(counter)) => {
                ResponseBody::Stream(Box::new(CountedStream {
                    inner,
                    out: self.stats.bytes_out(route),
                    counter,
                }))
            }
            (other, _) => {
                self.stats.add_bytes_out(route, full.unwrap_or(0));
                other
            }
        };
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.owner.unregister();
    }
}

/// Whether `path` is under the API's prefix (`/v1` or below), where every
/// answer needs the key when keys are configured.
fn is_api_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// A `'static` label for a method (unknown methods share one label, bounding cardinality).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The request body, counting the bytes read.
pub(crate) struct Counted<'a> {
    inner: RequestBody,
    n: &'a Cell<u64>,
}

impl Counted<'_> {
    /// The declared `Content-Length`.
    pub(crate) fn declared_len(&self) -> Option<u64> {
        self.inner.declared_len()
    }
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.set(self.n.get() + n as u64);
        Ok(n)
    }
}

/// A streamed response body that counts what the engine reads from it.
struct CountedStream {
    inner: Box<dyn Read + Send>,
    out: Arc<AtomicU64>,
    counter: metrics::Counter,
}

impl Read for CountedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.fetch_add(n as u64, Ordering::Relaxed);
        self.counter.increment(n as u64);
        Ok(n)
    }
}
