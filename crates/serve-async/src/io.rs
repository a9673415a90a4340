//! The connection's socket wrapped with Waitress's `channel_timeout`.
//!
//! One deadline per connection, `channel_timeout` after the last byte read or
//! written. A pending write past it (a client that stopped reading) fails with
//! [`io::ErrorKind::TimedOut`]; so does a pending read while no request is in
//! flight (an idle keep-alive connection, a client that connected and sent
//! nothing, a slow-loris head). A read pending while a request is in flight
//! pushes the deadline on: the handler is working, the client is not idle, and
//! a stalled request body is cut by the body pump instead.

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
            in_flight,
        }
    }

    fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// Polls the deadline; `Ready` means the connection has timed out.
    /// `extend_when_busy` is set for reads: a request in flight is not idleness.
    fn poll_expired(&mut self, cx: &mut Context<'_>, extend_when_busy: bool) -> Poll<()> {
        loop {
            let due = self.last + self.timeout;
            if self.deadline.deadline() != due {
                self.deadline.as_mut().reset(due);
            }
            if self.deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if extend_when_busy && self.in_flight.any() {
                self.touch();
                continue;
            }
            return Poll::Ready(());
        }
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
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match this.poll_expired(cx, true) {
                Poll::Ready(()) => Poll::Ready(Err(timed_out("idle"))),
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
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match this.poll_expired(cx, false) {
                Poll::Ready(()) => Poll::Ready(Err(timed_out("write stalled"))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match this.poll_expired(cx, false) {
                Poll::Ready(()) => Poll::Ready(Err(timed_out("write stalled"))),
                Poll::Pending => Poll::Pending,
            },
        }
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
