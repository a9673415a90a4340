//! One connection's HTTP/1.1 loop, run on a coroutine of the single may
//! worker: read a head, answer inline or hand the request to the pool, feed
//! the body on demand, write the response, repeat while keep-alive holds.
//!
//! Buffers are per connection and reused across requests. Every socket
//! operation yields the coroutine, never the OS thread.

use std::io::{self, Read, Write};
use std::net::Shutdown as SocketShutdown;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode, Version, header};
use may::net::TcpStream;
use may::sync::mpsc;
use recon_service::{Dispatch, RequestBody, ResponseBody, problem};

use crate::Shared;
use crate::chunked::ChunkedDecoder;
use crate::parse::{Framing, Head, Parsed, ProtocolError, parse_head};
use crate::pool::{BodyPiece, ChannelBody, FromWorker, HeadBody, Job};
use crate::registry::Slot;
use crate::write::{self, DateCache, HeadMeta, OutFraming};

/// Most unread body bytes drained after a response to keep the connection;
/// past this the connection is closed instead.
const DRAIN_LIMIT: u64 = 64 * 1024;

/// How long a closing connection keeps reading (and discarding) what the
/// client still sends, so the close does not reset the last response.
const LINGER: Duration = Duration::from_secs(1);

/// Most bytes read while lingering.
const LINGER_BYTES: usize = 256 * 1024;

/// Size of the read buffer, and capacity of the write buffer, of a
/// connection waiting for its next request. A request head of a few hundred
/// bytes fits; the read buffer grows (doubling) up to
/// `max_request_header_size` for a larger head and to `recv_bytes` while a
/// body is read, the write buffer up to about `send_bytes` while a response
/// is written, and both shrink back here once the connection is idle again.
/// Sizing them at `recv_bytes`/`send_bytes` (64 KiB each by default) made
/// every open connection hold 128 KiB of touched heap, most of the threaded
/// engine's RSS at a full connection limit.
const IDLE_BUFFER: usize = 4 * 1024;

/// The request body as seen from the socket side.
#[derive(Debug)]
struct BodyState {
    /// Bytes left of a `Content-Length` body.
    remaining: u64,
    decoder: Option<ChunkedDecoder>,
    /// Decoded bytes so far (chunked bodies are bounded by max_request_body_size).
    total: u64,
    done: bool,
    /// The body is broken; the connection cannot be reused.
    broken: bool,
    expect_continue: bool,
    continue_sent: bool,
}

impl BodyState {
    /// The client waits for `100 Continue` that was never sent: it may or
    /// may not send the body, so the connection cannot be reused.
    fn awaits_continue(&self) -> bool {
        self.expect_continue && !self.continue_sent
    }

    fn new(head: &Head) -> Self {
        let (remaining, decoder) = match head.framing {
            Framing::Empty => (0, None),
            Framing::Length(n) => (n, None),
            Framing::Chunked => (0, Some(ChunkedDecoder::new())),
        };
        Self {
            remaining,
            decoder,
            total: 0,
            done: head.framing == Framing::Empty,
            broken: false,
            expect_continue: head.expect_continue,
            continue_sent: false,
        }
    }
}

/// What one request needs to know when its response is written.
#[derive(Debug, Clone, Copy)]
struct Exchange {
    version: Version,
    head_request: bool,
    keep_alive: bool,
}

/// How a streamed response is being framed.
#[derive(Debug, Clone, Copy)]
struct StreamOut {
    framing: OutFraming,
    /// Bytes still allowed for a `Content-Length` stream.
    left: u64,
}

/// Why the connection loop stops.
#[derive(Debug)]
enum Close {
    /// Close at once (EOF, timeout, socket error).
    Now,
    /// Close after lingering, the response having been written.
    AfterResponse,
}

pub(crate) struct Conn {
    shared: Arc<Shared>,
    slot: Arc<Slot>,
    stream: TcpStream,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    wbuf: Vec<u8>,
    date: DateCache,
    /// A response has been written: from then on, waiting for a head with
    /// nothing buffered, the connection is kept alive between requests.
    served: bool,
}

impl Conn {
    /// Prepares a connection; `stream`'s timeouts are set by the caller.
    pub(crate) fn new(shared: Arc<Shared>, slot: Arc<Slot>, stream: TcpStream) -> Self {
        Self {
            shared,
            slot,
            stream,
            rbuf: vec![0; IDLE_BUFFER],
            rstart: 0,
            rend: 0,
            wbuf: Vec::with_capacity(IDLE_BUFFER),
            date: DateCache::new(),
            served: false,
        }
    }

    /// Answers 503 at once (connection limit with `Overload::Reject`), as
    /// the async engine does.
    pub(crate) fn reject(mut self) {
        self.write_closing(problem::connection_limit(), Version::HTTP_11, false);
        self.linger();
    }

    /// Serves requests until the connection closes.
    pub(crate) fn run(mut self) {
        match self.serve_requests() {
            Close::Now => {
                let _ = self.stream.shutdown(SocketShutdown::Both);
            }
            Close::AfterResponse => self.linger(),
        }
    }

    fn serve_requests(&mut self) -> Close {
        loop {
            let head = match self.read_head() {
                Ok(Some(head)) => head,
                Ok(None) => return Close::Now,
                Err(e) => {
                    self.write_error(Version::HTTP_11, &e);
                    return Close::AfterResponse;
                }
            };
            self.slot.set_busy();
            let exchange = Exchange {
                version: head.parts.version,
                head_request: head.parts.method == Method::HEAD,
                keep_alive: head.keep_alive && !self.shared.is_stopping(),
            };
            if let Framing::Length(n) = head.framing
                && n >= self.shared.settings.max_request_body_size
            {
                // Refused unread, as Waitress does; the body is never drained.
                let response = self.shared.app.refuse_too_large(
                    &head.parts.method,
                    head.parts.uri.path(),
                    &head.parts.headers,
                );
                self.write_closing(response, exchange.version, exchange.head_request);
                return Close::AfterResponse;
            }
            let mut body = BodyState::new(&head);
            let dispatch = self
                .shared
                .app
                .dispatch(&head.parts.method, head.parts.uri.path());
            let keep = if dispatch == Dispatch::Inline && head.framing == Framing::Empty {
                self.serve_inline(*head, exchange)
            } else {
                self.serve_blocking(*head, exchange, &mut body)
            };
            let keep = match keep {
                Ok(keep) => keep,
                Err(close) => return close,
            };
            if !keep {
                let _ = self.flush();
                return Close::AfterResponse;
            }
            if !body.done && !self.drain(&mut body) {
                let _ = self.flush();
                return Close::AfterResponse;
            }
            self.served = true;
            let more_buffered = self.rend > self.rstart;
            if (!more_buffered || self.wbuf.len() >= self.shared.settings.send_bytes.get())
                && self.flush().is_err()
            {
                return Close::Now;
            }
        }
    }

    /// Reads one request head; `None` when the client closed, went idle past
    /// channel_timeout or the server is stopping between requests.
    fn read_head(&mut self) -> Result<Option<Box<Head>>, ProtocolError> {
        let settings = &self.shared.settings;
        let max_head = settings.max_request_header_size;
        let mut waiting = false;
        loop {
            if self.rend > self.rstart {
                match parse_head(&self.rbuf[self.rstart..self.rend], max_head)? {
                    Parsed::Complete(head, len) => {
                        self.rstart += len;
                        return Ok(Some(head));
                    }
                    Parsed::Partial => {}
                }
            }
            if !waiting {
                // The response before this head is out: from here the
                // connection is idle, and channel_timeout runs from now.
                if self.flush().is_err() {
                    return Ok(None);
                }
                if self.shared.is_stopping() && self.rend == self.rstart {
                    return Ok(None);
                }
                self.shrink_idle();
                let timeout = self.shared.settings.channel_timeout;
                if self.served && self.rend == self.rstart {
                    // Nothing of a next request yet: at the connection limit
                    // the accept loop may close this one for a new client.
                    let order = self.shared.registry.kept_alive_order();
                    self.slot.set_kept_alive(timeout, order);
                } else {
                    self.slot.set_idle(timeout);
                }
                waiting = true;
            }
            let limit = max_head.saturating_add(1);
            match self.read_more(limit) {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => self.slot.set_receiving(),
            }
        }
    }

    /// Gives back what a large head, body or response grew the buffers to,
    /// once nothing is buffered: an idle connection holds [`IDLE_BUFFER`]
    /// bytes of each.
    fn shrink_idle(&mut self) {
        if self.rstart == self.rend && self.rbuf.len() > IDLE_BUFFER {
            self.rstart = 0;
            self.rend = 0;
            self.rbuf.truncate(IDLE_BUFFER);
            self.rbuf.shrink_to_fit();
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > IDLE_BUFFER {
            self.wbuf.shrink_to(IDLE_BUFFER);
        }
    }

    /// Reads more bytes into the buffer, growing it up to `limit` bytes of
    /// unconsumed data. Returns the bytes read (0: end of stream).
    fn read_more(&mut self, limit: usize) -> io::Result<usize> {
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
        if self.rend == self.rbuf.len() {
            if self.rstart > 0 {
                self.rbuf.copy_within(self.rstart..self.rend, 0);
                self.rend -= self.rstart;
                self.rstart = 0;
            } else if self.rbuf.len() < limit {
                let grown = (self.rbuf.len() * 2).min(limit);
                self.rbuf.resize(grown, 0);
            } else {
                return Err(io::Error::other("buffer limit reached"));
            }
        }
        let recv = self.shared.settings.recv_bytes.get();
        let end = self.rbuf.len().min(self.rend + recv);
        loop {
            match self.stream.read(&mut self.rbuf[self.rend..end]) {
                Ok(n) => {
                    self.rend += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs a cheap handler here on the coroutine. `Ok(keep_alive)`.
    fn serve_inline(&mut self, head: Head, exchange: Exchange) -> Result<bool, Close> {
        let request = http::Request::from_parts(head.parts, RequestBody::empty());
        let app = &self.shared.app;
        // Marked for the sweeper: a coroutine still in here when it looks
        // was abandoned by a stack overflow (registry.rs).
        self.slot.set_inline();
        let response = catch_unwind(AssertUnwindSafe(|| app.handle(request)));
        self.slot.set_busy();
        let response = response.unwrap_or_else(|_| {
            tracing::error!(
                engine = "threaded",
                "inline handler panicked; answering 500"
            );
            problem::response(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
        });
        let (parts, body) = response.into_parts();
        match body {
            ResponseBody::Empty => self.write_full(&parts, &Bytes::new(), exchange, true),
            ResponseBody::Full(bytes) => self.write_full(&parts, &bytes, exchange, true),
            ResponseBody::Stream(mut reader) => {
                let (mut out, keep) = self.start_stream(&parts, exchange, true);
                let mut buf = vec![0; self.shared.settings.send_bytes.get()];
                loop {
                    self.slot.set_inline();
                    let read = reader.read(&mut buf);
                    self.slot.set_busy();
                    match read {
                        Ok(0) => break,
                        Ok(n) => {
                            if self.write_piece(&mut out, &buf[..n]).is_err() {
                                return Err(Close::Now);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Err(Close::Now),
                    }
                }
                self.end_stream(out, keep)
            }
        }
    }

    /// Hands the request to the worker pool and serves its body pulls and
    /// response messages until the response is written. `Ok(keep_alive)`.
    fn serve_blocking(
        &mut self,
        head: Head,
        exchange: Exchange,
        body: &mut BodyState,
    ) -> Result<bool, Close> {
        if self.flush().is_err() {
            return Err(Close::Now);
        }
        let timeout = self.shared.settings.channel_timeout + Duration::from_secs(1);
        let (events_tx, events) = mpsc::channel::<FromWorker>();
        let (written, written_rx) = mpsc::channel::<()>();
        let (pieces_tx, pieces) = match head.framing {
            Framing::Empty => (None, None),
            Framing::Length(_) | Framing::Chunked => {
                let (tx, rx) = mpsc::channel::<BodyPiece>();
                (Some(tx), Some(rx))
            }
        };
        let declared = match head.framing {
            Framing::Length(n) => Some(n),
            Framing::Empty => Some(0),
            Framing::Chunked => None,
        };
        let request_body = match pieces {
            Some(rx) => {
                RequestBody::from_reader(ChannelBody::new(events_tx.clone(), rx, timeout), declared)
            }
            None => RequestBody::empty(),
        };
        let job = Job {
            request: http::Request::from_parts(head.parts, request_body),
            events: events_tx,
            written: written_rx,
        };
        let state = self.shared.app.state();
        state.request_queued();
        if self.shared.jobs.send(job).is_err() {
            state.request_dequeued();
            self.write_error(
                exchange.version,
                &ProtocolError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    detail: "server is shutting down",
                },
            );
            return Ok(false);
        }
        let mut stream_out: Option<(StreamOut, bool)> = None;
        loop {
            let Ok(event) = events.recv() else {
                // The worker vanished without finishing: nothing more can be
                // said on this connection.
                if stream_out.is_none() {
                    self.write_error(
                        exchange.version,
                        &ProtocolError {
                            status: StatusCode::INTERNAL_SERVER_ERROR,
                            detail: "internal server error",
                        },
                    );
                    return Ok(false);
                }
                return Err(Close::Now);
            };
            match event {
                FromWorker::Pull => {
                    let piece = self.next_body_piece(body);
                    if let Some(tx) = &pieces_tx {
                        let _ = tx.send(piece);
                    }
                }
                FromWorker::Head(parts, HeadBody::Empty) => {
                    let keep = self.response_keep(&parts, exchange, body);
                    return self.write_full(&parts, &Bytes::new(), exchange, keep);
                }
                FromWorker::Head(parts, HeadBody::Full(bytes)) => {
                    let keep = self.response_keep(&parts, exchange, body);
                    return self.write_full(&parts, &bytes, exchange, keep);
                }
                FromWorker::Head(parts, HeadBody::Stream) => {
                    let keep = self.response_keep(&parts, exchange, body);
                    stream_out = Some(self.start_stream(&parts, exchange, keep));
                }
                FromWorker::Chunk(bytes) => {
                    let Some((out, _)) = stream_out.as_mut() else {
                        return Err(Close::Now);
                    };
                    let mut out_copy = *out;
                    if self.write_piece(&mut out_copy, &bytes).is_err() {
                        return Err(Close::Now);
                    }
                    *out = out_copy;
                    let _ = written.send(());
                }
                FromWorker::End => {
                    let Some((out, keep)) = stream_out else {
                        return Err(Close::Now);
                    };
                    return self.end_stream(out, keep);
                }
                FromWorker::Abort => {
                    let _ = self.flush();
                    return Err(Close::Now);
                }
            }
        }
    }

    /// Whether the connection may stay open after this response, given the
    /// request, the response's own `Connection` header and the body left.
    fn response_keep(
        &self,
        parts: &http::response::Parts,
        exchange: Exchange,
        body: &BodyState,
    ) -> bool {
        let closes = parts.headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
        });
        let body_ok =
            body.done || (!body.broken && !body.awaits_continue() && body.remaining <= DRAIN_LIMIT);
        exchange.keep_alive && !closes && body_ok && !self.shared.is_stopping()
    }

    /// Reads the next piece of request body for the handler.
    fn next_body_piece(&mut self, body: &mut BodyState) -> BodyPiece {
        if body.done {
            return BodyPiece::Eof;
        }
        if body.broken {
            return BodyPiece::Failed(io::ErrorKind::InvalidData, "request body unreadable");
        }
        if body.expect_continue && !body.continue_sent {
            body.continue_sent = true;
            if self
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .is_err()
            {
                body.broken = true;
                return BodyPiece::Failed(io::ErrorKind::UnexpectedEof, "connection closed");
            }
        }
        let piece = self.read_body(body);
        if let BodyPiece::Failed(..) | BodyPiece::TooLarge = piece {
            body.broken = true;
        }
        piece
    }

    fn read_body(&mut self, body: &mut BodyState) -> BodyPiece {
        let recv = self.shared.settings.recv_bytes.get();
        loop {
            let buffered = self.rend - self.rstart;
            if buffered > 0 {
                if let Some(decoder) = body.decoder.as_mut() {
                    let input = &self.rbuf[self.rstart..self.rend];
                    match decoder.step(input) {
                        Err(_) => {
                            return BodyPiece::Failed(
                                io::ErrorKind::InvalidData,
                                recon_service::problem::MALFORMED_CHUNKED,
                            );
                        }
                        Ok(step) => {
                            let data = step
                                .data
                                .map(|r| Bytes::copy_from_slice(&input[r.start..r.end]));
                            self.rstart += step.consumed;
                            if decoder.is_done() {
                                body.done = true;
                            }
                            if let Some(data) = data {
                                body.total += data.len() as u64;
                                if body.total >= self.shared.settings.max_request_body_size {
                                    return BodyPiece::TooLarge;
                                }
                                return BodyPiece::Data(data);
                            }
                            if body.done {
                                return BodyPiece::Eof;
                            }
                            if step.consumed > 0 {
                                continue;
                            }
                        }
                    }
                } else {
                    let take = (buffered as u64).min(body.remaining).min(recv as u64) as usize;
                    let data = Bytes::copy_from_slice(&self.rbuf[self.rstart..self.rstart + take]);
                    self.rstart += take;
                    body.remaining -= take as u64;
                    body.total += take as u64;
                    if body.remaining == 0 {
                        body.done = true;
                    }
                    return BodyPiece::Data(data);
                }
            }
            // Body pieces are read `recv_bytes` at a time: a buffer still at
            // its idle size would cut them into small pieces.
            if self.rbuf.len() < recv {
                self.rbuf.resize(recv, 0);
            }
            let limit = self.rbuf.len();
            match self.read_more(limit) {
                Ok(0) => {
                    return BodyPiece::Failed(
                        io::ErrorKind::UnexpectedEof,
                        "client closed the connection mid-body",
                    );
                }
                Ok(_) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::TimedOut
                        || e.kind() == io::ErrorKind::WouldBlock =>
                {
                    return BodyPiece::Failed(
                        io::ErrorKind::TimedOut,
                        "request body stalled past channel_timeout",
                    );
                }
                Err(_) => {
                    return BodyPiece::Failed(
                        io::ErrorKind::UnexpectedEof,
                        "connection failed mid-body",
                    );
                }
            }
        }
    }

    /// Discards a body the handler left unread, up to [`DRAIN_LIMIT`].
    /// Returns whether the connection can be reused.
    fn drain(&mut self, body: &mut BodyState) -> bool {
        if body.broken || body.awaits_continue() {
            return false;
        }
        let start = body.total;
        while !body.done {
            if body.total - start > DRAIN_LIMIT {
                return false;
            }
            match self.read_body(body) {
                BodyPiece::Data(_) => {}
                BodyPiece::Eof => return true,
                BodyPiece::Failed(..) | BodyPiece::TooLarge => return false,
            }
        }
        true
    }

    /// Appends a response head to the output; returns whether the
    /// connection stays open after it.
    fn put_head(
        &mut self,
        parts: &http::response::Parts,
        exchange: Exchange,
        framing: OutFraming,
        head_len: Option<u64>,
        keep: bool,
    ) -> bool {
        let keep_alive = keep
            && exchange.keep_alive
            && !self.shared.is_stopping()
            && framing != OutFraming::UntilClose;
        let meta = HeadMeta {
            version: exchange.version,
            status: parts.status,
            server: &self.shared.server_header,
            framing,
            head_len,
            keep_alive,
        };
        write::write_head(&mut self.wbuf, meta, &parts.headers, self.date.now());
        keep_alive
    }

    /// Writes a response whose body is in memory. `Ok(keep_alive)`.
    fn write_full(
        &mut self,
        parts: &http::response::Parts,
        bytes: &Bytes,
        exchange: Exchange,
        keep: bool,
    ) -> Result<bool, Close> {
        let len = bytes.len() as u64;
        let framing = write::out_framing(
            exchange.head_request,
            parts.status,
            exchange.version,
            None,
            Some(len),
        );
        // A HEAD response announces the length the GET would have: the
        // handler's own header, else the body it returned, if any.
        let head_len = declared_length(parts).or((len > 0).then_some(len));
        let keep = self.put_head(parts, exchange, framing, head_len, keep);
        if framing == OutFraming::Length(len) {
            if self.wbuf.len() + bytes.len() <= self.shared.settings.send_bytes.get() {
                self.wbuf.extend_from_slice(bytes);
            } else {
                if self.flush().is_err() {
                    return Err(Close::Now);
                }
                if self.write_all_sized(bytes).is_err() {
                    return Err(Close::Now);
                }
            }
        }
        Ok(keep)
    }

    /// Writes a streamed response's head; the pieces follow.
    fn start_stream(
        &mut self,
        parts: &http::response::Parts,
        exchange: Exchange,
        keep: bool,
    ) -> (StreamOut, bool) {
        let declared = declared_length(parts);
        let framing = write::out_framing(
            exchange.head_request,
            parts.status,
            exchange.version,
            declared,
            None,
        );
        let keep = self.put_head(parts, exchange, framing, declared, keep);
        let left = match framing {
            OutFraming::Length(n) => n,
            _ => 0,
        };
        (StreamOut { framing, left }, keep)
    }

    /// Writes one piece of a streamed body.
    fn write_piece(&mut self, out: &mut StreamOut, data: &[u8]) -> io::Result<()> {
        match out.framing {
            OutFraming::NoBody => return Ok(()),
            OutFraming::Length(_) => {
                let take = (data.len() as u64).min(out.left) as usize;
                out.left -= take as u64;
                self.wbuf.extend_from_slice(&data[..take]);
            }
            OutFraming::Chunked => {
                write::chunk_start(&mut self.wbuf, data.len());
                self.wbuf.extend_from_slice(data);
                self.wbuf.extend_from_slice(write::CHUNK_END);
            }
            OutFraming::UntilClose => self.wbuf.extend_from_slice(data),
        }
        self.flush()
    }

    /// Ends a streamed body. `Ok(keep_alive)`.
    fn end_stream(&mut self, out: StreamOut, keep: bool) -> Result<bool, Close> {
        match out.framing {
            OutFraming::Chunked => self.wbuf.extend_from_slice(write::LAST_CHUNK),
            OutFraming::Length(_) if out.left > 0 => {
                // The stream ended short of its declared length: the only
                // honest signal left is to close.
                let _ = self.flush();
                return Err(Close::Now);
            }
            _ => {}
        }
        Ok(keep && out.framing != OutFraming::UntilClose)
    }

    /// Writes a problem response that closes the connection.
    fn write_error(&mut self, version: Version, err: &ProtocolError) {
        tracing::debug!(engine = "threaded", status = %err.status, detail = err.detail, "protocol error");
        self.write_closing(problem::response(err.status, err.detail), version, false);
    }

    /// Writes an in-memory response that closes the connection, and flushes it.
    fn write_closing(
        &mut self,
        response: recon_service::Response,
        version: Version,
        head_request: bool,
    ) {
        let (parts, body) = response.into_parts();
        let bytes = match body {
            ResponseBody::Full(b) => b,
            _ => Bytes::new(),
        };
        let exchange = Exchange {
            version,
            head_request,
            keep_alive: false,
        };
        let _ = self.write_full(&parts, &bytes, exchange, false);
        let _ = self.flush();
    }

    /// Writes out the buffered output.
    fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.wbuf);
        self.wbuf.clear();
        result
    }

    /// Writes `bytes` in send_bytes pieces.
    fn write_all_sized(&mut self, bytes: &[u8]) -> io::Result<()> {
        for piece in bytes.chunks(self.shared.settings.send_bytes.get()) {
            self.stream.write_all(piece)?;
        }
        Ok(())
    }

    /// Half-closes, then reads and discards what the client still sends for
    /// a moment, so the close does not reset the response in flight.
    fn linger(&mut self) {
        let _ = self.flush();
        let _ = self.stream.shutdown(SocketShutdown::Write);
        let _ = self
            .stream
            .set_read_timeout(Some(LINGER.min(self.shared.settings.channel_timeout)));
        let mut seen = 0;
        while seen < LINGER_BYTES {
            match self.stream.read(&mut self.rbuf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen += n,
            }
        }
    }
}

/// The `Content-Length` a handler set on its response, if valid.
fn declared_length(parts: &http::response::Parts) -> Option<u64> {
    parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
}
