//! The fixed pool of `threads` OS worker threads that run blocking handlers,
//! and the messages that cross between them and the connection coroutines.
//!
//! Every channel here is may's mpsc, which blocks a coroutine by yielding and
//! an OS thread by parking, so either side may wait on it. Jobs go through a
//! [`Dispatcher`]: a coroutine hands a job to the worker that went idle
//! last, or queues it (never blocks); a worker takes the oldest queued job,
//! or parks until handed one.
//!
//! Why last-idle-first: each thread that allocates gets its own glibc malloc
//! arena, which keeps memory it has freed. Handing sequential requests to
//! worker after worker (a FIFO of waiting threads, as a shared channel does)
//! spread an upload-and-reconcile sequence over all `threads` arenas: 86 MB
//! peak after three 50k reconciliations vs 79 MB on the async engine. The
//! most recently idle worker keeps the load on as few threads (and arenas,
//! and warm caches) as the concurrency needs.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use may::sync::mpsc;
use recon_service::error::TooLarge;
use recon_service::{App, Request, Response, ResponseBody, problem};
use std::sync::mpsc::RecvTimeoutError;

/// Chunks a streamed response may have in flight before the worker waits for
/// the connection to write them: the back-pressure window.
const STREAM_WINDOW: usize = 2;

/// What a worker tells the connection coroutine.
#[derive(Debug)]
pub(crate) enum FromWorker {
    /// The handler wants the next piece of the request body.
    Pull,
    /// The response head, with the body when it is complete in memory.
    Head(http::response::Parts, HeadBody),
    /// The next piece of a streamed body.
    Chunk(Bytes),
    /// The streamed body ended.
    End,
    /// The streamed body failed; the response cannot be completed.
    Abort,
}

/// The body that comes with [`FromWorker::Head`].
#[derive(Debug)]
pub(crate) enum HeadBody {
    /// No body.
    Empty,
    /// The whole body.
    Full(Bytes),
    /// [`FromWorker::Chunk`]s follow, then [`FromWorker::End`].
    Stream,
}

/// A piece of request body from the connection coroutine.
#[derive(Debug)]
pub(crate) enum BodyPiece {
    /// Body bytes.
    Data(Bytes),
    /// The body is complete.
    Eof,
    /// The body could not be read.
    Failed(io::ErrorKind, &'static str),
    /// The body reached max_request_body_size (chunked bodies).
    TooLarge,
}

/// One request handed to the pool.
#[derive(Debug)]
pub(crate) struct Job {
    /// The request; its body pulls from the connection.
    pub(crate) request: Request,
    /// Where the response goes.
    pub(crate) events: mpsc::Sender<FromWorker>,
    /// One message per streamed chunk written to the socket.
    pub(crate) written: mpsc::Receiver<()>,
}

/// The request body as a handler reads it: each read with nothing buffered
/// asks the connection for the next piece and waits for it.
pub(crate) struct ChannelBody {
    events: mpsc::Sender<FromWorker>,
    pieces: mpsc::Receiver<BodyPiece>,
    pending: Bytes,
    done: bool,
    timeout: Duration,
}

impl ChannelBody {
    /// A body fed by the connection that owns `events`' receiver and
    /// `pieces`' sender. `timeout` bounds each wait.
    pub(crate) fn new(
        events: mpsc::Sender<FromWorker>,
        pieces: mpsc::Receiver<BodyPiece>,
        timeout: Duration,
    ) -> Self {
        Self {
            events,
            pieces,
            pending: Bytes::new(),
            done: false,
            timeout,
        }
    }
}

impl Read for ChannelBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pending.is_empty() {
            if self.done {
                return Ok(0);
            }
            if self.events.send(FromWorker::Pull).is_err() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the body ended",
                ));
            }
            match self.pieces.recv_timeout(self.timeout) {
                Ok(BodyPiece::Data(bytes)) => self.pending = bytes,
                Ok(BodyPiece::Eof) => self.done = true,
                Ok(BodyPiece::Failed(kind, msg)) => {
                    self.done = true;
                    return Err(io::Error::new(kind, msg));
                }
                Ok(BodyPiece::TooLarge) => {
                    self.done = true;
                    // The application's marker, so it answers 413.
                    return Err(io::Error::new(io::ErrorKind::InvalidData, TooLarge));
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request body stalled past channel_timeout",
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.done = true;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before the body ended",
                    ));
                }
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}

/// Jobs waiting for a worker, and the workers waiting for a job.
#[derive(Debug, Default)]
struct Queue {
    /// Idle workers, the most recently idle last; each waits on its receiver.
    idle: Vec<crossbeam_channel::Sender<Job>>,
    /// Jobs no worker was free for, oldest first.
    waiting: VecDeque<Job>,
    closed: bool,
}

/// The pool has stopped taking jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stopped;

/// Hands jobs to workers, most recently idle first (see the module doc).
///
/// Its lock is held for a few instructions by a coroutine (to hand over or
/// queue a job) or a worker (to take one or register as idle), never across
/// a yield or a wait.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dispatcher {
    queue: Arc<Mutex<Queue>>,
}

impl Dispatcher {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        match self.queue.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Hands `job` to an idle worker or queues it; never blocks.
    ///
    /// # Errors
    /// [`Stopped`] when the pool has stopped (the job is dropped).
    pub(crate) fn send(&self, job: Job) -> Result<(), Stopped> {
        let mut q = self.lock();
        if q.closed {
            return Err(Stopped);
        }
        let mut job = job;
        while let Some(worker) = q.idle.pop() {
            match worker.send(job) {
                Ok(()) => return Ok(()),
                // That worker is gone; try the next.
                Err(e) => job = e.into_inner(),
            }
        }
        q.waiting.push_back(job);
        Ok(())
    }

    /// The next job for a worker: the oldest queued one, else waits to be
    /// handed one. `None` once the pool stops.
    fn next(&self) -> Option<Job> {
        let handed = {
            let mut q = self.lock();
            if let Some(job) = q.waiting.pop_front() {
                return Some(job);
            }
            if q.closed {
                return None;
            }
            let (tx, rx) = crossbeam_channel::bounded(1);
            q.idle.push(tx);
            rx
        };
        // Closing drops the sender: `recv` then fails and the worker ends.
        handed.recv().ok()
    }

    /// Stops the pool: idle workers end now, busy ones after their job;
    /// queued jobs are dropped (their connections answer 500).
    fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        q.idle.clear();
        q.waiting.clear();
    }
}

/// The worker threads and the dispatcher that feeds them.
#[derive(Debug)]
pub(crate) struct Pool {
    jobs: Dispatcher,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `threads` workers running `app`'s handlers.
    pub(crate) fn start(
        app: &Arc<App>,
        threads: usize,
        send_bytes: usize,
        timeout: Duration,
    ) -> io::Result<Self> {
        let jobs = Dispatcher::default();
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let app = Arc::clone(app);
            let queue = jobs.clone();
            let handle = std::thread::Builder::new()
                .name(format!("recon-worker-{i}"))
                .spawn(move || {
                    while let Some(job) = queue.next() {
                        let state = app.state();
                        state.request_dequeued();
                        state.worker_busy();
                        run_job(|req| app.handle(req), job, send_bytes, timeout);
                        state.worker_idle();
                    }
                })?;
            handles.push(handle);
        }
        app.state().set_workers_total(threads);
        Ok(Self {
            jobs,
            threads: handles,
        })
    }

    /// A handle to queue jobs with.
    pub(crate) fn sender(&self) -> Dispatcher {
        self.jobs.clone()
    }

    /// Stops taking jobs; joins the workers that have finished and leaves
    /// any still stuck in a handler to finish alone.
    pub(crate) fn stop(self) {
        self.jobs.close();
        for t in self.threads {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Runs one handler, catching a panic as a 500, and streams its response.
fn run_job(
    handler: impl FnOnce(Request) -> Response,
    job: Job,
    send_bytes: usize,
    timeout: Duration,
) {
    let Job {
        request,
        events,
        written,
    } = job;
    let response = catch_unwind(AssertUnwindSafe(|| handler(request))).unwrap_or_else(|_| {
        tracing::error!(engine = "threaded", "handler panicked; answering 500");
        problem::response(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
    });
    let (parts, body) = response.into_parts();
    let mut reader = match body {
        ResponseBody::Empty => {
            let _ = events.send(FromWorker::Head(parts, HeadBody::Empty));
            return;
        }
        ResponseBody::Full(bytes) => {
            let _ = events.send(FromWorker::Head(parts, HeadBody::Full(bytes)));
            return;
        }
        ResponseBody::Stream(reader) => reader,
    };
    if events
        .send(FromWorker::Head(parts, HeadBody::Stream))
        .is_err()
    {
        return;
    }
    let mut in_flight = 0usize;
    loop {
        let mut buf = BytesMut::zeroed(send_bytes);
        let read = catch_unwind(AssertUnwindSafe(|| read_some(&mut reader, &mut buf)));
        let n = match read {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::warn!(engine = "threaded", error = %e, "response stream failed");
                let _ = events.send(FromWorker::Abort);
                return;
            }
            Err(_) => {
                tracing::error!(engine = "threaded", "response stream panicked");
                let _ = events.send(FromWorker::Abort);
                return;
            }
        };
        if n == 0 {
            let _ = events.send(FromWorker::End);
            return;
        }
        buf.truncate(n);
        if events.send(FromWorker::Chunk(buf.freeze())).is_err() {
            return;
        }
        in_flight += 1;
        while in_flight >= STREAM_WINDOW {
            match written.recv_timeout(timeout) {
                Ok(()) => in_flight -= 1,
                Err(_) => return,
            }
        }
    }
}

/// Reads until `buf` holds something or the stream ends, retrying interrupts.
fn read_some(reader: &mut (dyn Read + Send), buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use recon_service::RequestBody;

    use super::*;

    fn job(request: Request) -> (Job, mpsc::Receiver<FromWorker>, mpsc::Sender<()>) {
        let (events, events_rx) = mpsc::channel();
        let (written_tx, written) = mpsc::channel();
        (
            Job {
                request,
                events,
                written,
            },
            events_rx,
            written_tx,
        )
    }

    /// A bodiless request for `path`.
    fn request(path: &str) -> http::Request<RequestBody> {
        http::Request::builder()
            .uri(path)
            .body(RequestBody::empty())
            .unwrap()
    }

    #[test]
    fn the_most_recently_idle_worker_takes_the_next_job() {
        let dispatcher = Dispatcher::default();
        // Three workers go idle in turn, each recording which jobs it ran.
        let (ran_tx, ran) = std::sync::mpsc::channel::<(usize, &'static str)>();
        let mut workers = Vec::new();
        for w in 0..3 {
            let queue = dispatcher.clone();
            let ran_tx = ran_tx.clone();
            workers.push(std::thread::spawn(move || {
                while let Some(job) = queue.next() {
                    let path = if job.request.uri().path() == "/a" {
                        "a"
                    } else {
                        "b"
                    };
                    ran_tx.send((w, path)).unwrap();
                }
            }));
        }
        // Wait until all three are registered as idle.
        while dispatcher.lock().idle.len() < 3 {
            std::thread::yield_now();
        }
        let (a, _a_events, _a_written) = job(request("/a"));
        dispatcher.send(a).unwrap();
        let (first_worker, path) = ran.recv().unwrap();
        assert_eq!(path, "a");
        // That worker goes idle again at the top of the stack: the next job is
        // its, not another thread's.
        while dispatcher.lock().idle.len() < 3 {
            std::thread::yield_now();
        }
        let (b, _b_events, _b_written) = job(request("/b"));
        dispatcher.send(b).unwrap();
        assert_eq!(ran.recv().unwrap(), (first_worker, "b"));
        dispatcher.close();
        for w in workers {
            w.join().unwrap();
        }
        let (c, _c_events, _c_written) = job(request("/c"));
        assert!(dispatcher.send(c).is_err(), "a stopped pool takes no job");
    }

    #[test]
    fn jobs_wait_in_order_when_no_worker_is_idle() {
        let dispatcher = Dispatcher::default();
        let (a, _ae, _aw) = job(request("/first"));
        let (b, _be, _bw) = job(request("/second"));
        dispatcher.send(a).unwrap();
        dispatcher.send(b).unwrap();
        assert_eq!(dispatcher.next().unwrap().request.uri().path(), "/first");
        assert_eq!(dispatcher.next().unwrap().request.uri().path(), "/second");
    }

    #[test]
    fn a_panicking_handler_answers_500() {
        let (job, events, _written) = job(http::Request::new(RequestBody::empty()));
        run_job(|_| panic!("boom"), job, 16, Duration::from_secs(1));
        match events.recv() {
            Ok(FromWorker::Head(parts, HeadBody::Full(body))) => {
                assert_eq!(parts.status, StatusCode::INTERNAL_SERVER_ERROR);
                assert!(!String::from_utf8_lossy(&body).contains("boom"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn streams_in_send_bytes_pieces_with_a_window() {
        let (job, events, written) = job(http::Request::new(RequestBody::empty()));
        let worker = std::thread::spawn(move || {
            run_job(
                |_| Response::new(ResponseBody::stream(io::Cursor::new(vec![7u8; 40]))),
                job,
                16,
                Duration::from_secs(5),
            );
        });
        assert!(matches!(
            events.recv(),
            Ok(FromWorker::Head(_, HeadBody::Stream))
        ));
        let mut sizes = Vec::new();
        loop {
            match events.recv() {
                Ok(FromWorker::Chunk(b)) => {
                    sizes.push(b.len());
                    let _ = written.send(());
                }
                Ok(FromWorker::End) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(sizes, [16, 16, 8]);
        worker.join().unwrap();
    }

    #[test]
    fn the_body_pulls_pieces_and_reports_stalls() {
        let (events_tx, events) = mpsc::channel();
        let (pieces_tx, pieces) = mpsc::channel();
        let mut body = ChannelBody::new(events_tx, pieces, Duration::from_millis(200));
        let feeder = std::thread::spawn(move || {
            assert!(matches!(events.recv(), Ok(FromWorker::Pull)));
            pieces_tx
                .send(BodyPiece::Data(Bytes::from_static(b"hello")))
                .unwrap();
            assert!(matches!(events.recv(), Ok(FromWorker::Pull)));
            pieces_tx.send(BodyPiece::Eof).unwrap();
        });
        let mut out = String::new();
        body.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello");
        feeder.join().unwrap();

        let (events_tx, _events) = mpsc::channel();
        let (_pieces_tx, pieces) = mpsc::channel::<BodyPiece>();
        let mut body = ChannelBody::new(events_tx, pieces, Duration::from_millis(50));
        let err = body.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
