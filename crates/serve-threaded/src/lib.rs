//! serve-threaded: Waitress's model for recon, one may I/O dispatcher feeding
//! a fixed pool of worker threads.
//!
//! - One may worker thread (`may::config().set_workers(1)`, not pinned) runs
//!   every coroutine: the accept loop, one coroutine per connection, and the
//!   sweeper. It is Waitress's single I/O dispatcher. Because there is one
//!   worker, a coroutine resumes on the thread it started on, so the
//!   thread-local storage that std, tracing and metrics use stays sound. (A
//!   timed wait is the exception: may resumes it on its timer thread, and the
//!   coroutine yields back to the worker at once, `resume_on_worker`.)
//! - `threads` OS threads run the handlers of [`Dispatch::Blocking`] routes,
//!   taking requests from one queue (its length is `requests_queued`). Body
//!   pieces and response chunks cross between them and the connection's
//!   coroutine over may channels, on demand, so a slow client applies
//!   back-pressure to the handler.
//! - [`Dispatch::Inline`] routes without a body are answered on the
//!   connection's coroutine.
//!
//! The HTTP/1.1 loop is this crate's own, on `may::net` and `httparse`
//! (docs/threaded-engine.md says why not may_minihttp).
//!
//! [`Dispatch::Blocking`]: recon_service::Dispatch::Blocking
//! [`Dispatch::Inline`]: recon_service::Dispatch::Inline

mod chunked;
mod conn;
mod parse;
mod pool;
mod registry;
mod write;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use may::coroutine;
use may::sync::{Semphore, mpsc};
use recon_service::{App, Shutdown};
use std::sync::mpsc::RecvTimeoutError;
use tuning::{Overload, ServerSettings};

use crate::conn::Conn;
use crate::pool::{Dispatcher, Pool};
use crate::registry::{Registry, Slot};

/// Coroutine stack size in bytes. Measured with may's stack usage report
/// (`examples/stack_probe.rs`, docs/threaded-engine.md): the deepest path is
/// an inline `/openapi.json` at about 90 KiB in a debug build (may's default
/// 32 KiB overflows there). 256 KiB leaves 2.8 times that, because an
/// overflow abandons the connection; untouched stack pages are never
/// resident, so the cost is address space, not RSS.
pub const STACK_SIZE: usize = 256 * 1024;

/// Most coroutines may keeps ready for reuse (its pool). may creates them
/// all at start, each touching about 8 KiB of its stack, and a pooled
/// coroutine keeps the stack pages its last connection touched. 16 covers
/// the accept loop, the sweeper and a burst of short connections; a
/// connection past it maps a fresh stack and unmaps it when it closes.
/// (128 cost 1 MB of idle RSS.)
const POOL_MAX: usize = 16;

/// Why the threaded engine stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listening socket could not be prepared or handed to may.
    #[error("listener: {0}")]
    Listener(#[source] io::Error),
    /// A worker thread could not be started.
    #[error("starting worker thread: {0}")]
    Worker(#[source] io::Error),
    /// A coroutine (accept loop or sweeper) could not be started.
    #[error("starting coroutine: {0}")]
    Coroutine(#[source] io::Error),
}

/// Engine options that are not server settings: for measurement and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Coroutine stack size in bytes. An odd number of machine words makes
    /// may report each coroutine's peak stack use on stdout when it ends
    /// (`examples/stack_probe.rs`).
    pub stack_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            stack_bytes: STACK_SIZE,
        }
    }
}

/// State every coroutine of one server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) app: Arc<App>,
    pub(crate) settings: ServerSettings,
    pub(crate) server_header: String,
    pub(crate) jobs: Dispatcher,
    pub(crate) registry: Registry,
    stopping: AtomicBool,
}

impl Shared {
    /// Whether shutdown has begun: no new requests on any connection.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }
}

/// What the sweeper is told besides its periodic sweep.
#[derive(Debug, Clone, Copy)]
enum SweepCommand {
    CloseIdle,
    CloseAll,
    Stop,
}

/// Serves `app` on `listener` until `shutdown` is triggered, then drains:
/// stops accepting, lets in-flight requests finish (bounded by
/// `shutdown_timeout`) and returns.
///
/// Call it from an OS thread (not a may coroutine); it blocks until shutdown.
/// The listener is bound by the caller (with its backlog) and is closed
/// before this returns.
///
/// # Errors
/// When the listener cannot be handed to may, or a worker thread or coroutine
/// cannot start.
pub fn serve(
    app: Arc<App>,
    listener: std::net::TcpListener,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    serve_with_options(app, listener, shutdown, Options::default())
}

/// The threaded engine is the one for memory-constrained boxes, so it caps
/// glibc's malloc arenas (by default up to eight per core, each keeping the
/// memory its threads freed) at two, the usual `MALLOC_ARENA_MAX=2` of
/// memory-bound servers. Handlers run on `threads` workers and jobs on the job
/// pool, so without the cap every thread that ever allocated holds on to its
/// own arena's high-water mark. An operator's `MALLOC_ARENA_MAX` wins.
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes an allocator tunable; glibc takes its
        // own lock for it, and a limit lowered at run time only stops new
        // arenas from being created.
        let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
        tracing::debug!(applied = ok == 1, "malloc arenas capped at 2");
    }
}

/// [`serve`] with engine [`Options`].
///
/// # Errors
/// As [`serve`].
pub fn serve_with_options(
    app: Arc<App>,
    listener: std::net::TcpListener,
    shutdown: Shutdown,
    options: Options,
) -> Result<(), ServeError> {
    if let Ok(addr) = listener.local_addr() {
        app.state().set_listening(addr);
    }
    let words = options.stack_bytes.div_ceil(size_of::<usize>()).max(1024);
    // Only the first configuration before the scheduler starts takes effect
    // for the worker count; the stack size applies to every later spawn.
    let config = app.config();
    // may pre-creates its pool of coroutines (default 1000, each with a
    // stack whose first pages are touched): ~8 MB of idle RSS. Keep only
    // POOL_MAX; connections past it get a fresh coroutine, created once per
    // connection, not per request.
    let pool_capacity = (config.server.connection_limit.get() + 2).min(POOL_MAX);
    cap_malloc_arenas();
    may::config()
        .set_workers(1)
        .set_stack_size(words)
        .set_pool_capacity(pool_capacity);
    may::config().set_worker_pin(false);

    let settings = config.server.clone();
    let overload = config.overload;
    let shutdown_timeout = config.shutdown_timeout;
    let local = listener.local_addr().map_err(ServeError::Listener)?;
    let listener = into_may_listener(listener).map_err(ServeError::Listener)?;
    let pool = Pool::start(
        &app,
        settings.threads.get(),
        settings.send_bytes.get(),
        settings.channel_timeout + Duration::from_secs(1),
    )
    .map_err(ServeError::Worker)?;
    let shared = Arc::new(Shared {
        server_header: config.server_header.clone(),
        app: Arc::clone(&app),
        settings,
        jobs: pool.sender(),
        registry: Registry::default(),
        stopping: AtomicBool::new(false),
    });
    let slots = Arc::new(Semphore::new(shared.settings.connection_limit.get()));
    app.state().set_idle_probe({
        // Weak: the state lives in the app, which `shared` holds.
        let shared = Arc::downgrade(&shared);
        move || {
            shared
                .upgrade()
                .is_some_and(|s| s.registry.any_kept_alive())
        }
    });

    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
    shutdown.on_trigger(move || {
        let _ = stop_tx.try_send(());
    });
    let (accept_done_tx, accept_done_rx) = crossbeam_channel::bounded::<()>(1);
    let acceptor = {
        let shared = Arc::clone(&shared);
        let slots = Arc::clone(&slots);
        spawn_coroutine("recon-accept", move || {
            accept_loop(&shared, &listener, &slots, overload);
            drop(listener);
            let _ = accept_done_tx.send(());
        })
    };
    if let Err(e) = acceptor {
        pool.stop();
        return Err(ServeError::Coroutine(e));
    }
    let (sweep_tx, sweep_rx) = mpsc::channel::<SweepCommand>();
    let sweeper = {
        let shared = Arc::clone(&shared);
        let slots = (overload == Overload::Queue).then(|| Arc::clone(&slots));
        spawn_coroutine("recon-sweep", move || {
            sweep_loop(&shared, &sweep_rx, slots.as_deref());
        })
    };
    if let Err(e) = sweeper {
        stop_accepting(&shared, local, &slots);
        pool.stop();
        return Err(ServeError::Coroutine(e));
    }
    tracing::info!(engine = "threaded", addr = %local, threads = app.state().workers_total(), "serving");

    let _ = stop_rx.recv();
    tracing::info!(engine = "threaded", "draining");
    app.state().start_draining();
    stop_accepting(&shared, local, &slots);
    let deadline = Instant::now() + shutdown_timeout;
    let _ = accept_done_rx.recv_deadline(deadline);
    let _ = sweep_tx.send(SweepCommand::CloseIdle);
    while app.state().connections_open() > 0 && Instant::now() < deadline {
        // Connections finishing a request close themselves; one that was
        // mid-head when draining began is idle again by now.
        std::thread::sleep(Duration::from_millis(10));
        let _ = sweep_tx.send(SweepCommand::CloseIdle);
    }
    if app.state().connections_open() > 0 {
        tracing::warn!(
            engine = "threaded",
            open = app.state().connections_open(),
            "shutdown_timeout passed; closing connections with requests in flight"
        );
        let _ = sweep_tx.send(SweepCommand::CloseAll);
        let grace = Instant::now() + Duration::from_secs(1);
        while app.state().connections_open() > 0 && Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = sweep_tx.send(SweepCommand::Stop);
    pool.stop();
    tracing::info!(engine = "threaded", "stopped");
    Ok(())
}

/// Hands a bound std listener to may.
fn into_may_listener(listener: std::net::TcpListener) -> io::Result<may::net::TcpListener> {
    listener.set_nonblocking(true)?;
    let fd = listener.into_raw_fd();
    // SAFETY: `fd` comes from `into_raw_fd` on a listening socket we own, so
    // it is open, of the right kind, and nothing else will close it; may takes
    // ownership and registers it with its event loop. (may panics if that
    // registration fails; it only fails when epoll itself is broken.)
    Ok(unsafe { may::net::TcpListener::from_raw_fd(fd) })
}

/// Spawns a coroutine on the single may worker.
fn spawn_coroutine<F>(name: &str, f: F) -> io::Result<coroutine::JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    let builder = coroutine::Builder::new().name(name.to_owned());
    // SAFETY: may marks spawning unsafe because a coroutine that migrates
    // between OS threads can observe thread-local storage of the wrong thread
    // and because thread-blocking calls stall the scheduler. This engine runs
    // may with exactly one worker (set in `serve_with_options` before the first
    // spawn), so a coroutine resumes on the thread it started on, except after
    // a timed wait, which every coroutine here follows with
    // `resume_on_worker` before anything else runs; and the coroutines here
    // only block through may's own I/O and channels, never holding a std lock
    // across a yield.
    unsafe { builder.spawn(f) }
}

/// Brings a coroutine back onto the may worker after a timed wait
/// (`coroutine::sleep`, a may channel's `recv_timeout`, a semaphore's
/// `wait_timeout`; socket timeouts are the worker's own).
///
/// may resumes a coroutine whose timed wait expired on its timer thread, and
/// the coroutine runs there, beside the worker, until it next yields: the
/// one-worker argument of [`spawn_coroutine`] does not hold for that run.
/// Yielding at once queues it for the worker again. (The sweeper, resumed by
/// its interval's timeout, once looked at the registry from the timer thread
/// while the worker was inside a live connection's inline handler, and
/// reaped that connection as abandoned.)
fn resume_on_worker() {
    coroutine::yield_now();
}

/// Marks the server as stopping and wakes the accept loop.
fn stop_accepting(shared: &Shared, local: SocketAddr, slots: &Semphore) {
    shared.stopping.store(true, Ordering::Release);
    // The accept loop may wait for a free slot or in accept(): post a slot
    // and connect once so it looks at the flag.
    slots.post();
    let target = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), local.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), local.port())
        }
        _ => local,
    };
    let _ = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(1));
}

/// How often a client waiting at the connection limit (`Overload::Queue`)
/// looks for a connection that has gone idle since, to take its place.
const RECLAIM_POLL: Duration = Duration::from_millis(50);

/// Accepts connections until stopping, at most `connection_limit` open.
///
/// A client arriving at the limit first takes the place of the connection
/// kept alive longest (idle between requests), which is closed for it: a
/// pool of idle connections (a proxy's, a client library's) never holds the
/// server's every slot while a client waits. With none idle it waits for a
/// slot (`Overload::Queue`; later clients wait in the listen backlog) or is
/// answered 503 (`Overload::Reject`).
fn accept_loop(
    shared: &Arc<Shared>,
    listener: &may::net::TcpListener,
    slots: &Arc<Semphore>,
    overload: Overload,
) {
    let state = shared.app.state();
    loop {
        if shared.is_stopping() {
            return;
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(engine = "threaded", error = %e, "accept failed");
                // Out of descriptors or similar: give the system a moment.
                coroutine::sleep(Duration::from_millis(10));
                resume_on_worker();
                continue;
            }
        };
        if shared.is_stopping() {
            return;
        }
        let free = match overload {
            Overload::Queue => slots.try_wait(),
            Overload::Reject => !state.at_connection_limit(),
        };
        if !free {
            let reclaimed = shared.registry.close_longest_kept_alive();
            if reclaimed {
                tracing::debug!(
                    engine = "threaded",
                    "at connection_limit: closed the connection kept alive longest for a new client"
                );
            }
            match overload {
                Overload::Queue => {
                    // The closed connection's coroutine (or any other that
                    // ends) posts its slot. Without one closed, a connection
                    // that goes idle while this client waits gives its place
                    // too: looked for every `RECLAIM_POLL`.
                    let mut closing = reclaimed;
                    loop {
                        if closing {
                            slots.wait();
                            break;
                        }
                        let got = slots.wait_timeout(RECLAIM_POLL);
                        resume_on_worker();
                        if got || shared.is_stopping() {
                            break;
                        }
                        closing = shared.registry.close_longest_kept_alive();
                    }
                    if shared.is_stopping() {
                        return;
                    }
                }
                // Its slot is freed as its coroutine wakes to the close: over
                // the limit by that one connection for that moment.
                Overload::Reject if reclaimed => {}
                Overload::Reject => {
                    reject(shared, stream);
                    continue;
                }
            }
        }
        open_connection(shared, stream, slots, overload);
    }
}

/// Answers 503 on a connection past the limit (`Overload::Reject`).
fn reject(shared: &Arc<Shared>, stream: may::net::TcpStream) {
    let Ok(dup) = stream.inner().try_clone() else {
        return;
    };
    let _ = stream.set_write_timeout(Some(shared.settings.channel_timeout));
    let conn = Conn::new(Arc::clone(shared), Arc::new(Slot::new(dup)), stream);
    let _ = spawn_coroutine("recon-reject", move || conn.reject());
}

/// Registers a connection and starts its coroutine.
fn open_connection(
    shared: &Arc<Shared>,
    stream: may::net::TcpStream,
    slots: &Arc<Semphore>,
    overload: Overload,
) {
    let release = |slots: &Semphore| {
        if overload == Overload::Queue {
            slots.post();
        }
    };
    let timeout = Some(shared.settings.channel_timeout);
    let prepared = stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(timeout))
        .and_then(|()| stream.set_write_timeout(timeout))
        .and_then(|()| stream.inner().try_clone());
    let dup = match prepared {
        Ok(dup) => dup,
        Err(e) => {
            tracing::warn!(engine = "threaded", error = %e, "preparing connection failed");
            release(slots);
            return;
        }
    };
    let slot = Arc::new(Slot::new(dup));
    let id = shared.registry.insert(Arc::clone(&slot));
    shared.app.state().connection_opened();
    let guard = ConnGuard {
        shared: Arc::clone(shared),
        slots: (overload == Overload::Queue).then(|| Arc::clone(slots)),
        id,
    };
    let conn = Conn::new(Arc::clone(shared), slot, stream);
    if let Err(e) = spawn_coroutine("recon-conn", move || {
        let _guard = guard;
        conn.run();
    }) {
        // The closure (and the guard in it) was dropped: the slot is released.
        tracing::warn!(engine = "threaded", error = %e, "starting connection coroutine failed");
    }
}

/// Releases a connection's registry entry, count and slot, even on panic.
struct ConnGuard {
    shared: Arc<Shared>,
    slots: Option<Arc<Semphore>>,
    id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        // The sweeper may have reaped (and released) it already.
        if self.shared.registry.remove(self.id) {
            release_connection(&self.shared, self.slots.as_deref());
        }
    }
}

/// Counts a connection as closed and frees its `connection_limit` slot.
fn release_connection(shared: &Shared, slots: Option<&Semphore>) {
    shared.app.state().connection_closed();
    if let Some(slots) = slots {
        slots.post();
    }
}

/// Closes idle connections every `cleanup_interval`, and on command; reaps
/// connections abandoned by a stack overflow (releasing their slot in
/// `slots`, the accept loop's semaphore when overload queues).
fn sweep_loop(shared: &Shared, commands: &mpsc::Receiver<SweepCommand>, slots: Option<&Semphore>) {
    let interval = shared
        .settings
        .cleanup_interval
        .max(Duration::from_millis(10));
    loop {
        let reaped = shared.registry.reap_abandoned();
        if reaped > 0 {
            tracing::error!(
                engine = "threaded",
                reaped,
                "a connection's coroutine overflowed its stack in an inline handler; \
                 closed it and released its connection slot"
            );
            for _ in 0..reaped {
                release_connection(shared, slots);
            }
        }
        let command = commands.recv_timeout(interval);
        resume_on_worker();
        match command {
            Err(RecvTimeoutError::Timeout) => {
                let closed = shared.registry.sweep();
                if closed > 0 {
                    tracing::debug!(engine = "threaded", closed, "closed idle connections");
                }
            }
            Ok(SweepCommand::CloseIdle) => shared.registry.close_idle(),
            Ok(SweepCommand::CloseAll) => shared.registry.close_all(),
            Ok(SweepCommand::Stop) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_wait_resumes_on_the_worker() {
        // The engine's setting; nothing else in this test binary starts may's
        // scheduler.
        may::config().set_workers(1).set_worker_pin(false);
        let (tx, rx) = mpsc::channel::<()>();
        let (seen_tx, seen) = std::sync::mpsc::channel();
        spawn_coroutine("timed-wait", move || {
            let worker = std::thread::current().id();
            let mut after = Vec::new();
            for _ in 0..3 {
                let _ = rx.recv_timeout(Duration::from_millis(5));
                let woken = std::thread::current().id();
                resume_on_worker();
                after.push((woken, std::thread::current().id()));
            }
            coroutine::sleep(Duration::from_millis(5));
            resume_on_worker();
            after.push((worker, std::thread::current().id()));
            let _ = seen_tx.send((worker, after));
        })
        .unwrap();
        let (worker, after) = seen.recv_timeout(Duration::from_secs(10)).unwrap();
        drop(tx);
        for (woken, resumed) in after {
            assert_eq!(
                resumed, worker,
                "woken on {woken:?}, still off the worker after the yield"
            );
        }
    }
}
