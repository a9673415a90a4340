//! Bodies across the runtime boundary.
//!
//! A request body is pumped from hyper's [`Incoming`] into a bounded channel by
//! an async task and read on a worker thread as a blocking [`Read`]; a streamed
//! response body is read on a blocking thread in `send_bytes` pieces into a
//! bounded channel that feeds hyper. The channels hold a few chunks, so a slow
//! side holds the other back.

use std::io::{self, Read};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{mpsc, oneshot};

use crate::io::InFlightGuard;

/// Chunks buffered between the socket and a blocking reader or writer.
const CHANNEL_CHUNKS: usize = 4;

type Chunk = io::Result<Bytes>;

/// The worker-thread side of a request body: a blocking reader over the chunks
/// the pump sends.
#[derive(Debug)]
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<Chunk>,
    current: Bytes,
    /// Starts the pump on the first read; dropped unsent, it stops it.
    start: Option<oneshot::Sender<()>>,
    /// Set by the pump at the body's real end: a channel closed without it
    /// (the pump's task dropped, as the runtime does to its tasks when
    /// `shutdown_timeout` runs out) is a body cut off, never its end.
    end: BodyEnd,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(start) = self.start.take() {
            let _ = start.send(());
        }
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(err)) => return Err(err),
                None if self.end.reached() => return Ok(0),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the request body was cut off: the server stopped reading it",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Most unread request-body bytes the connection is kept for, as the
/// threaded engine drains: a body the handler left unread with a declared
/// length up to this is read and discarded so the next request on the
/// connection is served; a longer (or chunked) one closes the connection.
pub(crate) const DRAIN_LIMIT: u64 = 64 * 1024;

/// Reads and discards the rest of `incoming`, stopping past `limit` bytes or
/// a stall of `stall`: while it reads, hyper delivers the body to it, and
/// once the body has ended hyper keeps the connection for the next request
/// (dropped unfinished, hyper closes it). Returns whether the body ended.
pub(crate) async fn discard(mut incoming: Incoming, limit: u64, stall: Duration) -> bool {
    let mut discarded = 0u64;
    loop {
        match tokio::time::timeout(stall, incoming.frame()).await {
            Ok(None) => return true,
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    discarded += data.len() as u64;
                    if discarded > limit {
                        return false;
                    }
                }
            }
            Ok(Some(Err(_))) | Err(_) => return false,
        }
    }
}

/// Limits the pump enforces on a request body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PumpLimits {
    /// A body stalled this long fails with `TimedOut`.
    pub(crate) stall: Duration,
    /// A declared length past this is answered 413 unread; bodies without a
    /// declared length are bounded by the application as it reads.
    pub(crate) max_len: u64,
}

/// Whether a request body was read from the socket to its end: set by the
/// pump when hyper delivers the body's last frame. A response to a request
/// whose body was not (the handler stopped early, refused it, or it was
/// malformed) closes the connection, as on the threaded engine, instead of
/// leaving hyper to read and discard the rest.
#[derive(Debug, Clone, Default)]
pub(crate) struct BodyEnd(Arc<AtomicBool>);

impl BodyEnd {
    /// Whether the body was read to its end.
    pub(crate) fn reached(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Returns the blocking reader of `incoming`, which starts pumping it into
/// a channel on its first read, and the flag that tells whether the body was
/// read to its end.
///
/// Nothing polls the body before the handler reads it: hyper answers a
/// client's `Expect: 100-continue` on the first poll, so a request the
/// handler refuses unread (a wrong key, an unknown parameter) gets its
/// answer without `100 Continue` and its body is never sent, as on the
/// threaded engine.
///
/// When the handler leaves the body unread and `drain` allows it (a
/// declared length within [`DRAIN_LIMIT`]), the pump discards the rest
/// ([`discard`]) so the connection serves its next request.
///
/// Must be called within the runtime.
pub(crate) fn request_reader(
    incoming: Incoming,
    limits: PumpLimits,
    drain: bool,
) -> (ChannelReader, BodyEnd) {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let (start, started) = oneshot::channel();
    let end = BodyEnd::default();
    tokio::spawn(pump(incoming, tx, limits, end.clone(), started, drain));
    let reader = ChannelReader {
        rx,
        current: Bytes::new(),
        start: Some(start),
        end: end.clone(),
    };
    (reader, end)
}

async fn pump(
    mut incoming: Incoming,
    tx: mpsc::Sender<Chunk>,
    limits: PumpLimits,
    end: BodyEnd,
    started: oneshot::Receiver<()>,
    drain: bool,
) {
    // The reader dropped before its first read: the body stays unread
    // (discarded when small, so the connection goes on).
    if started.await.is_err() {
        if drain {
            discard(incoming, DRAIN_LIMIT, limits.stall).await;
        }
        return;
    }
    loop {
        let frame = tokio::select! {
            frame = tokio::time::timeout(limits.stall, incoming.frame()) => frame,
            // The reader is gone (handler finished): stop reading for it.
            () = tx.closed() => {
                if drain {
                    discard(incoming, DRAIN_LIMIT, limits.stall).await;
                }
                return;
            }
        };
        let chunk = match frame {
            Err(_elapsed) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request body stalled past channel_timeout",
            )),
            Ok(None) => {
                end.0.store(true, Ordering::Release);
                return;
            }
            Ok(Some(Err(err))) => Err(body_error(err)),
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => Ok(data),
                // Trailers: nothing the application reads.
                Err(_trailers) => continue,
            },
        };
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            return;
        }
    }
}

/// The error a handler reads for a request body hyper could not deliver,
/// with the kind and text the threaded engine gives the same failure.
///
/// hyper fails a body with a body-kind [`hyper::Error`] whose source is its
/// decoder's [`io::Error`]: `InvalidInput` or `InvalidData` when the chunked
/// framing is malformed (a size that is not hex or overflows, a missing
/// CRLF, extensions or trailers past its limits), `UnexpectedEof` when the
/// socket ended first, the socket's own error when reading it failed. A
/// connection that failed elsewhere gives no `io::Error` at all. Everything
/// but malformed framing reads as a body cut off.
fn body_error(err: hyper::Error) -> io::Error {
    let cause = std::error::Error::source(&err).and_then(|e| e.downcast_ref::<io::Error>());
    match cause {
        Some(cause)
            if matches!(
                cause.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData
            ) =>
        {
            tracing::debug!(error = %cause, "malformed chunked request body");
            io::Error::new(
                io::ErrorKind::InvalidData,
                recon_service::problem::MALFORMED_CHUNKED,
            )
        }
        _ => io::Error::new(io::ErrorKind::UnexpectedEof, err),
    }
}

/// The body hyper writes: empty, one buffer, or chunks from a blocking reader.
#[derive(Debug)]
pub(crate) struct OutBody {
    kind: Kind,
    /// Keeps the connection's request counted until the body is written.
    _in_flight: Option<InFlightGuard>,
}

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Chunk>),
}

impl OutBody {
    /// A complete body (empty when `bytes` is).
    pub(crate) fn full(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full(Some(bytes)),
            _in_flight: None,
        }
    }

    /// Streams `reader` in `chunk`-sized reads on a blocking thread.
    ///
    /// Must be called within the runtime.
    pub(crate) fn stream(reader: Box<dyn Read + Send>, chunk: usize) -> Self {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        tokio::task::spawn_blocking(move || read_into(reader, chunk, &tx));
        Self {
            kind: Kind::Stream(rx),
            _in_flight: None,
        }
    }

    /// Ties the body's life to a request counted in flight.
    pub(crate) fn with_guard(mut self, guard: InFlightGuard) -> Self {
        self._in_flight = Some(guard);
        self
    }
}

fn read_into(mut reader: Box<dyn Read + Send>, chunk: usize, tx: &mpsc::Sender<Chunk>) {
    let mut buf = BytesMut::zeroed(chunk);
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let data = buf.split_to(n).freeze();
                buf.resize(chunk, 0);
                if tx.blocking_send(Ok(data)).is_err() {
                    return;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                tracing::warn!(error = %err, "response stream failed; aborting the response");
                let _ = tx.blocking_send(Err(err));
                return;
            }
        }
    }
}

impl Body for OutBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            Kind::Stream(rx) => rx.poll_recv(cx).map(|c| c.map(|c| c.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            Kind::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader over `chunks`, then the channel closed; `end` says whether
    /// the pump saw the body's end.
    fn reader_until(chunks: Vec<Chunk>, end: BodyEnd) -> ChannelReader {
        let (tx, rx) = mpsc::channel(chunks.len().max(1));
        for chunk in chunks {
            tx.try_send(chunk).unwrap();
        }
        ChannelReader {
            rx,
            current: Bytes::new(),
            start: None,
            end,
        }
    }

    /// A reader over a whole body of `chunks`.
    fn reader(chunks: Vec<Chunk>) -> ChannelReader {
        let end = BodyEnd::default();
        end.0.store(true, Ordering::Release);
        reader_until(chunks, end)
    }

    #[test]
    fn reads_chunks_then_eof() {
        let mut r = reader(vec![
            Ok(Bytes::from_static(b"ab")),
            Ok(Bytes::from_static(b"cde")),
        ]);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "abcde");
    }

    #[test]
    fn a_pump_gone_before_the_end_is_a_body_cut_off() {
        // The runtime dropped the pump's task (a stop past shutdown_timeout):
        // what arrived is not the body, whatever the handler does with it.
        let mut r = reader_until(vec![Ok(Bytes::from_static(b"a,b\n1,"))], BodyEnd::default());
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(out, b"a,b\n1,");
    }

    #[test]
    fn passes_errors_through_with_their_kind() {
        let stalled = io::Error::new(io::ErrorKind::TimedOut, "stalled");
        let mut r = reader(vec![Ok(Bytes::from_static(b"ab")), Err(stalled)]);
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(out, b"ab");
    }

    /// Has hyper's HTTP/1 server read `request` (the client half-closes after
    /// it) and returns the error the request's body failed with, as a
    /// handler reads it.
    fn body_failure(request: &[u8]) -> io::Error {
        use tokio::io::AsyncWriteExt;

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (mut client, server) = tokio::io::duplex(4096);
            let (tx, rx) = tokio::sync::oneshot::channel();
            let tx = std::sync::Mutex::new(Some(tx));
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let tx = tx.lock().unwrap().take();
                async move {
                    if let (Some(tx), Err(err)) = (tx, req.into_body().collect().await) {
                        let _ = tx.send(body_error(err));
                    }
                    Ok::<_, std::convert::Infallible>(http::Response::new(OutBody::full(
                        Bytes::new(),
                    )))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .serve_connection(hyper_util::rt::TokioIo::new(server), service);
            tokio::spawn(conn);
            client.write_all(request).await.unwrap();
            client.shutdown().await.unwrap();
            rx.await.expect("the body did not fail")
        })
    }

    #[test]
    fn malformed_chunks_read_as_the_threaded_engine_words_them() {
        let head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        for body in [
            "zz\r\n",
            "5\r\nhelloXX0\r\n\r\n",
            "5\nhello\r\n0\r\n\r\n",
            "11111111111111111\r\n",
        ] {
            let err = body_failure(format!("{head}{body}").as_bytes());
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{body:?}: {err}");
            assert_eq!(
                err.to_string(),
                recon_service::problem::MALFORMED_CHUNKED,
                "{body:?}"
            );
        }
    }

    #[test]
    fn a_body_cut_off_reads_as_unexpected_eof() {
        for request in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n",
        ] {
            let err = body_failure(request);
            assert_eq!(
                err.kind(),
                io::ErrorKind::UnexpectedEof,
                "{}: {err}",
                String::from_utf8_lossy(request)
            );
        }
    }

    #[test]
    fn full_body_reports_its_exact_length() {
        let body = OutBody::full(Bytes::from_static(b"hello"));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        assert!(OutBody::full(Bytes::new()).is_end_stream());
    }
}
