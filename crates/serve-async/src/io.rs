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

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Requests in flight on one connection, shared by the socket wrapper and the
/// service that counts them.
#[derive(Debug, Default)]
pub(crate) struct InFlight(AtomicUsize);

impl InFlight {
    /// Counts a request until the returned guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(Arc::clone(self))
    }

    fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

/// Keeps a request counted as in flight while alive.
#[derive(Debug)]
pub(crate) struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
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
}

impl TimedIo {
    pub(crate) fn new(inner: TcpStream, timeout: Duration, in_flight: Arc<InFlight>) -> Self {
        let now = Instant::now();
        Self {
            inner,
            timeout,
            last: now,
            deadline: Box::pin(tokio::time::sleep_until(now + timeout)),
            write_stalled: None,
            write_deadline: Box::pin(tokio::time::sleep_until(now + timeout)),
            in_flight,
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
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => match this.poll_idle(cx) {
                Poll::Ready(()) => Poll::Ready(Err(timed_out("idle"))),
                Poll::Pending => Poll::Pending,
            },
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
