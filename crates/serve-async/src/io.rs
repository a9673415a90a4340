//! The connection's socket wrapped with Waitress's `channel_timeout`.
//!
//! Two deadlines per connection. The idle deadline is `channel_timeout` after
//! the last byte written (or the connection's start): a read pending past it
//! while no request is in flight (an idle keep-alive connection, a client that
//! connected and sent nothing, a slow-loris head) fails with
//! [`io::ErrorKind::TimedOut`]. Bytes read do not push it on, so the next
//! request's head must arrive whole within `channel_timeout` of the last
//! response however it trickles in: this is the header-read timeout too, and
//! hyper's own (a timer registered per request) is switched off. While a
//! request is in flight the deadline is pushed on (the handler is working, and
//! a stalled request body is cut by the body pump instead). The write deadline is
//! `channel_timeout` after a write first found the socket full: a client that
//! stopped reading is cut even while its response is in flight. They are kept
//! apart so hyper's reads during a response never push the write deadline on.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Requests in flight on one connection, shared by the socket wrapper and the
/// service that counts them, and how many have ended.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    now: AtomicUsize,
    ended: AtomicUsize,
    /// When the last request ended, in [`END_ORDER`]'s numbering (0: none
    /// has).
    last_end: AtomicU64,
}

/// Numbers request ends across connections, from 1: the connection whose
/// last request ended first has been idle longest.
static END_ORDER: AtomicU64 = AtomicU64::new(1);

impl InFlight {
    /// Counts a request until the returned guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.now.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(Arc::clone(self))
    }

    fn any(&self) -> bool {
        self.now.load(Ordering::Acquire) > 0
    }

    fn ended(&self) -> usize {
        self.ended.load(Ordering::Acquire)
    }
}

/// Keeps a request counted as in flight while alive.
#[derive(Debug)]
pub(crate) struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let f = &self.0;
        f.last_end
            .store(END_ORDER.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        f.ended.fetch_add(1, Ordering::Release);
        f.now.fetch_sub(1, Ordering::Release);
    }
}

/// The open connections, so the accept loop can close the one kept alive
/// longest (a request served, none in flight, nothing of the next read) for
/// a client waiting at `connection_limit` ([`KeptAlive::close_longest`]).
#[derive(Debug, Default)]
pub(crate) struct KeptAlive {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Watch>>>,
}

/// One connection as [`KeptAlive`] sees it.
#[derive(Debug)]
struct Watch {
    in_flight: Arc<InFlight>,
    /// How many requests had ended when bytes were last read: more have
    /// ended since means nothing of the next request has been read.
    read_at: AtomicUsize,
    /// Set by the accept loop: the connection's next read ends it.
    close: AtomicBool,
    /// The connection speaks HTTP/2: its client sends frames between
    /// requests (window updates, pings), so bytes read say nothing of a
    /// next request; only streams in flight do.
    multiplexed: AtomicBool,
    /// The connection task's waker, from its last pending read.
    waker: Mutex<Option<Waker>>,
}

impl Watch {
    /// When its last request ended, if it is kept alive now.
    fn idle_since(&self) -> Option<u64> {
        let f = &self.in_flight;
        let since = if self.multiplexed.load(Ordering::Relaxed) {
            0
        } else {
            self.read_at.load(Ordering::Relaxed)
        };
        (!f.any() && f.ended() > since).then(|| f.last_end.load(Ordering::Relaxed))
    }
}

impl KeptAlive {
    /// Enters a connection whose requests `in_flight` counts; it leaves
    /// when the registration is dropped.
    pub(crate) fn register(self: &Arc<Self>, in_flight: &Arc<InFlight>) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let watch = Arc::new(Watch {
            in_flight: Arc::clone(in_flight),
            read_at: AtomicUsize::new(0),
            close: AtomicBool::new(false),
            multiplexed: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        self.with_conns(|c| c.insert(id, Arc::clone(&watch)));
        Registration {
            registry: Arc::clone(self),
            id,
            watch,
            waker: None,
        }
    }

    fn with_conns<R>(&self, f: impl FnOnce(&mut HashMap<u64, Arc<Watch>>) -> R) -> R {
        f(&mut self.conns.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether some connection is kept alive now (and not already closing):
    /// a new client at the limit would take its place.
    pub(crate) fn any_idle(&self) -> bool {
        self.with_conns(|c| {
            c.values()
                .any(|w| !w.close.load(Ordering::Relaxed) && w.idle_since().is_some())
        })
    }

    /// Ends the connection kept alive longest: its pending read returns end
    /// of stream and hyper closes it, which frees its `connection_limit`
    /// permit. `false` when no connection is kept alive. Only a connection
    /// between requests is ever closed, never one with a request under way.
    pub(crate) fn close_longest(&self) -> bool {
        let longest = self.with_conns(|c| {
            c.values()
                .filter(|w| !w.close.load(Ordering::Relaxed))
                .filter_map(|w| w.idle_since().map(|since| (since, w)))
                .min_by_key(|&(since, _)| since)
                .map(|(_, w)| Arc::clone(w))
        });
        let Some(watch) = longest else {
            return false;
        };
        watch.close.store(true, Ordering::Release);
        let waker = watch
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }
}

/// A connection's place in [`KeptAlive`], left when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    registry: Arc<KeptAlive>,
    id: u64,
    watch: Arc<Watch>,
    /// The waker last handed to the watch (compared without a lock).
    waker: Option<Waker>,
}

impl Registration {
    /// A read is pending: the accept loop wakes `waker` to close it.
    fn waiting(&mut self, waker: &Waker) {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.waker = Some(waker.clone());
            *self
                .watch
                .waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(waker.clone());
        }
    }

    /// Bytes arrived.
    fn read(&self) {
        self.watch
            .read_at
            .store(self.watch.in_flight.ended(), Ordering::Relaxed);
    }

    fn closed(&self) -> bool {
        self.watch.close.load(Ordering::Acquire)
    }

    /// A handle that says which protocol the connection speaks, once sniffed.
    pub(crate) fn protocol_mark(&self) -> ProtocolMark {
        ProtocolMark(Arc::clone(&self.watch))
    }
}

/// Tells [`KeptAlive`] a connection speaks HTTP/2 ([`Registration::protocol_mark`]).
#[derive(Debug)]
pub(crate) struct ProtocolMark(Arc<Watch>);

impl ProtocolMark {
    /// The connection speaks HTTP/2: it is idle whenever no stream is in
    /// flight (after its first), whatever frames its client sends between.
    pub(crate) fn multiplexed(&self) {
        self.0.multiplexed.store(true, Ordering::Relaxed);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.with_conns(|c| c.remove(&self.id));
    }
}

/// A TCP stream that times out when idle or stalled.
#[derive(Debug)]
pub(crate) struct TimedIo {
    inner: TcpStream,
    timeout: Duration,
    last: Instant,
    deadline: Pin<Box<Sleep>>,
    /// When a write first found the socket full, while it stays full.
    write_stalled: Option<Instant>,
    write_deadline: Pin<Box<Sleep>>,
    in_flight: Arc<InFlight>,
    /// Where the accept loop finds this connection when it is kept alive
    /// (none for a connection answered 503 and closed).
    kept: Option<Registration>,
}

impl TimedIo {
    pub(crate) fn new(
        inner: TcpStream,
        timeout: Duration,
        in_flight: Arc<InFlight>,
        kept: Option<Registration>,
    ) -> Self {
        let now = Instant::now();
        Self {
            inner,
            timeout,
            last: now,
            deadline: Box::pin(tokio::time::sleep_until(now + timeout)),
            write_stalled: None,
            write_deadline: Box::pin(tokio::time::sleep_until(now + timeout)),
            in_flight,
            kept,
        }
    }

    fn touch(&mut self) {
        self.last = Instant::now();
    }

    fn wrote(&mut self) {
        self.touch();
        self.write_stalled = None;
    }

    /// Polls the idle deadline on a pending read; `Ready` means the
    /// connection has been idle past `channel_timeout` with no request in flight.
    ///
    /// The timer is armed at or before the real deadline (`last` plus the
    /// timeout) and moved on only when it fires early: activity just records
    /// `last`. Resetting it on every request took a lock of the runtime's
    /// timer wheel each time, a cost bare hyper does not pay.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = self.last + self.timeout;
            if due > self.deadline.deadline() {
                self.deadline.as_mut().reset(due);
                continue;
            }
            if self.in_flight.any() {
                self.touch();
                continue;
            }
            return Poll::Ready(());
        }
    }

    /// Polls the write deadline on a pending write; `Ready` means the socket
    /// has stayed full past `channel_timeout`.
    fn poll_write_stalled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let since = *self.write_stalled.get_or_insert_with(Instant::now);
        let due = since + self.timeout;
        if self.write_deadline.deadline() != due {
            self.write_deadline.as_mut().reset(due);
        }
        self.write_deadline.as_mut().poll(cx)
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("channel_timeout: {what}"))
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.kept.as_ref().is_some_and(Registration::closed) {
            // Closed for a client waiting at the connection limit: end of
            // stream, and hyper closes the connection between requests.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => match this.poll_idle(cx) {
                Poll::Ready(()) => Poll::Ready(Err(timed_out("idle"))),
                Poll::Pending => {
                    if let Some(kept) = &mut this.kept {
                        kept.waiting(cx.waker());
                    }
                    Poll::Pending
                }
            },
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                if let Some(kept) = &this.kept {
                    kept.read();
                }
                Poll::Ready(Ok(()))
            }
            ready => ready,
        }
    }
}

impl TimedIo {
    /// After a write attempt: progress re-arms the write deadline; a write
    /// still pending past it fails with `TimedOut`.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    self.wrote();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.poll_write_stalled(cx) {
                Poll::Ready(()) => Poll::Ready(Err(timed_out("write stalled"))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
