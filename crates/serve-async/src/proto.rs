//! HTTP/1.1 and HTTP/2 over cleartext (prior knowledge) on one port, each
//! connection served by hyper's own builder for its protocol.
//!
//! hyper-util's `auto::Builder` does the same detection (its `read_version`:
//! a connection opening with the HTTP/2 preface is HTTP/2, any other is
//! HTTP/1) but hides hyper's HTTP/1 `max_header_size`, the one exact head
//! limit hyper has: it counts a head as httparse parsed it (request line,
//! header lines and the blank line, line breaks included) and answers 431
//! past `max_request_header_size`, as the threaded engine does with the same
//! parser and the same rule. Its `max_buf_size` is no such limit: hyper reads
//! into whatever capacity its buffer has, so a head somewhat past it is
//! still taken.

use std::error::Error as StdError;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use hyper::body::Incoming;
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tuning::Config;

use crate::body::OutBody;

/// What a client speaking HTTP/2 with prior knowledge sends first (RFC 9113
/// section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// hyper's smallest allowed read buffer (`max_buf_size` panics below it).
const MIN_BUF_SIZE: usize = 8192;

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.0 or HTTP/1.1.
    Http1,
    /// HTTP/2 over cleartext, by prior knowledge.
    Http2,
}

/// A connection's error, whichever protocol it spoke.
pub(crate) type ConnError = Box<dyn StdError + Send + Sync>;

/// hyper's builders for both protocols, configured from the settings.
#[derive(Debug, Clone)]
pub(crate) struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    /// The builders for `config`: keep-alive, half-close, the head limit
    /// (HTTP/1 `max_header_size`, HTTP/2 `max_header_list_size`) and no
    /// per-request header timer (the connection's idle deadline bounds a
    /// head's arrival; see the `io` module).
    pub(crate) fn new(config: &Config) -> Self {
        let max_head = config.server.max_request_header_size;
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .keep_alive(true)
            // A client may shut down its write side once its request is sent
            // (`shutdown(SHUT_WR)`, as `nc -N` does) and still read the
            // answer, as from the threaded engine. Without this hyper takes
            // that EOF for a dropped connection and answers nothing. A client
            // that closes mid-body still fails the body read (the request
            // was cut off).
            .half_close(true)
            // `TimedIo`'s idle deadline already bounds a head's arrival (it
            // runs from the last response, and a head's bytes do not push it
            // on); hyper's header timer would register a timer per request.
            .header_read_timeout(None)
            // The exact head limit: 431 once a head is longer, whatever the
            // size of hyper's read buffer.
            .max_header_size(max_head)
            // The buffer itself must hold a head at the limit (and may not
            // be smaller than hyper's minimum).
            .max_buf_size(max_head.max(MIN_BUF_SIZE));
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(max_head).unwrap_or(u32::MAX));
        Self { http1, http2 }
    }

    /// The same builders, but HTTP/1 connections close after one answer.
    pub(crate) fn closing(&self) -> Self {
        let mut closing = self.clone();
        closing.http1.keep_alive(false);
        closing
    }

    /// Serves `service` on `io`, a connection whose first bytes [`sniff`]
    /// has read, with the protocol it found; `watcher`, when given, lets a
    /// graceful shutdown finish the connection's requests and close it.
    ///
    /// # Errors
    /// hyper's error when the connection ends badly (a protocol error, a
    /// timeout, a reset).
    pub(crate) async fn serve<T, S>(
        &self,
        protocol: Protocol,
        io: Rewind<T>,
        service: S,
        watcher: Option<Watcher>,
    ) -> Result<(), ConnError>
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
        S: HttpService<Incoming, ResBody = OutBody>,
        S::Error: Into<ConnError>,
        TokioExecutor: Http2ServerConnExec<S::Future, OutBody>,
    {
        let io = TokioIo::new(io);
        match (protocol, watcher) {
            (Protocol::Http1, Some(watcher)) => {
                watcher
                    .watch(self.http1.serve_connection(io, service))
                    .await?;
            }
            (Protocol::Http1, None) => self.http1.serve_connection(io, service).await?,
            (Protocol::Http2, Some(watcher)) => {
                watcher
                    .watch(self.http2.serve_connection(io, service))
                    .await?;
            }
            (Protocol::Http2, None) => self.http2.serve_connection(io, service).await?,
        }
        Ok(())
    }
}

/// Reads a connection's first bytes until they are the HTTP/2 preface or
/// cannot become it (hyper-util's rule: HTTP/2 only with the whole preface,
/// HTTP/1 at the first byte that differs or at end of stream), and hands
/// them back in front of the rest of the stream.
///
/// # Errors
/// The read's error (a reset, the idle deadline).
pub(crate) async fn sniff<T: AsyncRead + Unpin>(mut io: T) -> io::Result<(Protocol, Rewind<T>)> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    let protocol = loop {
        let n = io.read(&mut buf[filled..]).await?;
        filled += n;
        if n == 0 || buf[..filled] != H2_PREFACE[..filled] {
            break Protocol::Http1;
        }
        if filled == H2_PREFACE.len() {
            break Protocol::Http2;
        }
    };
    let pre = Bytes::copy_from_slice(&buf[..filled]);
    Ok((protocol, Rewind { pre, inner: io }))
}

/// A stream whose first reads return bytes already read from it.
#[derive(Debug)]
pub(crate) struct Rewind<T> {
    pre: Bytes,
    inner: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pre.has_remaining() && buf.remaining() > 0 {
            let n = this.pre.len().min(buf.remaining());
            buf.put_slice(&this.pre[..n]);
            this.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Sniffs what a client writes in `pieces` (the write side then
    /// closed), and reads the whole stream back through the rewind.
    fn sniffed(pieces: &[&[u8]]) -> (Protocol, Vec<u8>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (mut client, server) = tokio::io::duplex(64);
            let pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
            let writer = tokio::spawn(async move {
                for piece in pieces {
                    client.write_all(&piece).await.expect("write");
                    client.flush().await.expect("flush");
                    tokio::task::yield_now().await;
                }
            });
            let (protocol, mut io) = sniff(server).await.expect("sniff");
            writer.await.expect("writer");
            let mut all = Vec::new();
            io.read_to_end(&mut all).await.expect("read back");
            (protocol, all)
        })
    }

    #[test]
    fn the_preface_in_pieces_is_http2_and_replayed() {
        let mut sent = H2_PREFACE.to_vec();
        sent.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0");
        let (protocol, all) = sniffed(&[&sent[..3], &sent[3..20], &sent[20..]]);
        assert_eq!(protocol, Protocol::Http2);
        assert_eq!(all, sent);
    }

    #[test]
    fn anything_else_is_http1_and_replayed() {
        let get = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
        for pieces in [&[&get[..]][..], &[&get[..1], &get[1..]][..]] {
            let (protocol, all) = sniffed(pieces);
            assert_eq!(protocol, Protocol::Http1);
            assert_eq!(all, get);
        }
        // A preface cut short by the end of the stream is not HTTP/2.
        let (protocol, all) = sniffed(&[&H2_PREFACE[..10]]);
        assert_eq!(protocol, Protocol::Http1);
        assert_eq!(all, &H2_PREFACE[..10]);
        let (protocol, all) = sniffed(&[]);
        assert_eq!(protocol, Protocol::Http1);
        assert!(all.is_empty());
    }
}
