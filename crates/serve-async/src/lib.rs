//! serve-async: Uvicorn's model for recon, the application served by tokio + hyper.
//!
//! This crate only adapts sockets and a runtime to [`recon_service::App`]: a
//! tokio multi-thread runtime with `workers` threads, hyper 1.x through
//! hyper-util's auto builder (HTTP/1.1 with keep-alive, and HTTP/2 over
//! cleartext with prior knowledge), and the tuning settings with Waitress's
//! meanings:
//!
//! - `connection_limit`: a permit is taken *before* `accept`, so a client past
//!   the limit waits in the listen backlog ([`Overload::Queue`]), or is
//!   accepted and answered 503 ([`Overload::Reject`]).
//! - `channel_timeout`: a connection idle that long, a head or body stalled
//!   that long, or a client that stops reading for that long is cut off
//!   (per-connection deadlines; see the `io` module). Deadlines are exact
//!   tokio timers, so `cleanup_interval` (Waitress's sweep period) has nothing
//!   to pace here; the threaded engine sweeps.
//! - `threads`: at most this many handlers run at once on blocking threads;
//!   requests past it wait and are counted as queued.
//! - `recv_bytes` / `send_bytes`: socket buffers and response chunk size;
//!   `max_request_header_size` bounds hyper's read buffer (at least 8 KiB;
//!   a bare 431 past it) and each head as read (a 431 problem past it);
//!   a declared body at or past `max_request_body_size` is answered 413 unread.
//!
//! Graceful shutdown: when the [`Shutdown`] triggers, the state drains
//! (`/ready` answers 503), the listener closes, in-flight requests finish and
//! idle connections close, bounded by `shutdown_timeout`.

mod body;
mod io;
mod service;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use recon_service::{App, Shutdown};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;
use tuning::{Config, Overload};

use crate::body::PumpLimits;
use crate::io::{InFlight, TimedIo};
use crate::service::Shared;

/// hyper's smallest allowed read buffer.
const MIN_BUF_SIZE: usize = 8192;

/// Why the server could not bind or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listening socket could not be created, configured, bound or listened on.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The tokio runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The listener handed to [`serve`] could not be registered with the runtime.
    #[error("cannot use the listener: {0}")]
    Listener(#[source] std::io::Error),
}

/// Binds the configured `host:port` with the configured backlog, `SO_REUSEADDR`
/// (never `SO_REUSEPORT`: two processes must not silently share a port) and
/// receive/send buffers of `recv_bytes`/`send_bytes`.
///
/// # Errors
/// [`ServeError::Bind`] when the socket cannot be created, configured or bound.
pub fn bind(config: &Config) -> Result<TcpListener, ServeError> {
    let addr = SocketAddr::new(config.host, config.port);
    let err = |source| ServeError::Bind { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket
        .set_recv_buffer_size(config.server.recv_bytes.get())
        .map_err(err)?;
    socket
        .set_send_buffer_size(config.server.send_bytes.get())
        .map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    let backlog = i32::try_from(config.server.backlog).unwrap_or(i32::MAX);
    socket.listen(backlog).map_err(err)?;
    Ok(socket.into())
}

/// Serves `app` on `listener` until `shutdown` triggers and the drain ends.
///
/// Blocks the calling thread; builds its own runtime with `workers` threads.
///
/// # Errors
/// When the runtime cannot start or the listener cannot be registered with it.
///
/// # Panics
/// When called from inside an async runtime (it blocks on its own).
pub fn serve(app: Arc<App>, listener: TcpListener, shutdown: Shutdown) -> Result<(), ServeError> {
    if let Ok(addr) = listener.local_addr() {
        app.state().set_listening(addr);
    }
    let settings = &app.config().server;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.workers.get())
        .thread_name("recon-async")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let result = runtime.block_on(accept_loop(app, listener, shutdown));
    // Handlers still running past the drain are abandoned, not waited for.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

fn builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let settings = &config.server;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        // A client may shut down its write side once its request is sent
        // (`shutdown(SHUT_WR)`, as `nc -N` does) and still read the answer, as
        // from the threaded engine. Without this hyper takes that EOF for a
        // dropped connection and answers nothing. A client that closes
        // mid-body still fails the body read (the request was cut off).
        .half_close(true)
        // `TimedIo`'s idle deadline already bounds a head's arrival (it runs
        // from the last response, and a head's bytes do not push it on);
        // hyper's header timer would register a timer per request.
        .header_read_timeout(None)
        .max_buf_size(settings.max_request_header_size.max(MIN_BUF_SIZE));
    let header_list = u32::try_from(settings.max_request_header_size).unwrap_or(u32::MAX);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(header_list);
    builder
}

async fn accept_loop(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let config = app.config();
    let settings = &config.server;
    listener
        .set_nonblocking(true)
        .map_err(ServeError::Listener)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(ServeError::Listener)?;

    let (stop_tx, mut stop_rx) = watch::channel(false);
    {
        let app = Arc::clone(&app);
        shutdown.on_trigger(move || {
            app.state().start_draining();
            let _ = stop_tx.send(true);
        });
    }

    app.state().set_workers_total(settings.threads.get());
    // Empty: no `Server` header at all, as on the threaded engine.
    let server_header = match HeaderValue::from_str(&config.server_header) {
        Ok(_) if config.server_header.is_empty() => None,
        Ok(value) => Some(value),
        Err(_) => {
            tracing::warn!(value = %config.server_header, "server_header is not a valid header value; not sending it");
            None
        }
    };
    let shared = Arc::new(Shared {
        app: Arc::clone(&app),
        workers: Arc::new(Semaphore::new(settings.threads.get())),
        server_header: server_header.clone(),
        limits: PumpLimits {
            stall: settings.channel_timeout,
            max_len: settings.max_request_body_size,
        },
        send_bytes: settings.send_bytes.get(),
        max_head: (settings.max_request_header_size < MIN_BUF_SIZE)
            .then_some(settings.max_request_header_size),
    });
    let connections = Arc::new(Semaphore::new(settings.connection_limit.get()));
    let builder = builder(config);
    let graceful = GracefulShutdown::new();
    let timeout = settings.channel_timeout;

    loop {
        let permit = match config.overload {
            Overload::Queue => tokio::select! {
                permit = Arc::clone(&connections).acquire_owned() => permit.ok(),
                _ = stop_rx.wait_for(|stop| *stop) => break,
            },
            Overload::Reject => None,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop_rx.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors or an aborted handshake: back off briefly.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let permit = match permit {
            Some(permit) => permit,
            None => match Arc::clone(&connections).try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    tracing::debug!(%peer, "at connection limit; rejecting");
                    let mut reject = builder.clone();
                    reject.http1().keep_alive(false);
                    let header = server_header.clone();
                    let io = TokioIo::new(TimedIo::new(stream, timeout, Arc::default()));
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            service::reject(header.clone(), req)
                        });
                        let _ = reject.serve_connection(io, service).await;
                    });
                    continue;
                }
            },
        };

        app.state().connection_opened();
        let in_flight = Arc::new(InFlight::default());
        let io = TokioIo::new(TimedIo::new(stream, timeout, Arc::clone(&in_flight)));
        let shared = Arc::clone(&shared);
        let service = hyper::service::service_fn(move |req| {
            service::serve_request(Arc::clone(&shared), Arc::clone(&in_flight), req)
        });
        let conn = graceful.watch(builder.serve_connection(io, service).into_owned());
        let app = Arc::clone(&app);
        let span = tracing::debug_span!("connection", %peer);
        tokio::spawn(
            async move {
                if let Err(err) = conn.await {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                app.state().connection_closed();
                drop(permit);
            }
            .instrument(span),
        );
    }

    app.state().start_draining();
    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "draining: finishing in-flight requests"
    );
    if tokio::time::timeout(config.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            timeout = ?config.shutdown_timeout,
            "shutdown timeout passed with requests still in flight"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_on(port: u16) -> Config {
        Config {
            port,
            ..Config::default()
        }
    }

    #[test]
    fn bind_picks_a_port_and_never_shares_it() {
        let first = bind(&config_on(0)).unwrap();
        let port = first.local_addr().unwrap().port();
        assert_ne!(port, 0);
        // No SO_REUSEPORT: a second listener on the same port is refused.
        let second = bind(&config_on(port));
        assert!(
            matches!(second, Err(ServeError::Bind { source, .. }) if source.kind() == std::io::ErrorKind::AddrInUse)
        );
    }

    #[test]
    fn bind_sets_buffer_sizes() {
        let mut config = config_on(0);
        config.server.recv_bytes = std::num::NonZeroUsize::new(32 * 1024).unwrap();
        let listener = bind(&config).unwrap();
        let socket = socket2::SockRef::from(&listener);
        // Linux doubles the requested size for bookkeeping.
        let got = socket.recv_buffer_size().unwrap();
        assert!((32 * 1024..=64 * 1024).contains(&got), "{got}");
    }
}
