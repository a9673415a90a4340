//! serve-async: Uvicorn's model for recon, the application served by tokio + hyper.
//!
//! This crate only adapts sockets and a runtime to [`recon_service::App`]: a
//! tokio multi-thread runtime with `workers` threads, hyper 1.x's HTTP/1.1
//! (with keep-alive) and HTTP/2 over cleartext with prior knowledge on one
//! port (the `proto` module tells them apart), and the tuning settings with
//! Waitress's meanings:
//!
//! - `connection_limit`: a permit per open connection. A client accepted at
//!   the limit takes the place of the connection kept alive longest (idle
//!   between requests; closed for it, [`io::KeptAlive`]); with none, it waits
//!   for a permit while later clients wait in the listen backlog
//!   ([`Overload::Queue`]), or is answered 503 ([`Overload::Reject`]).
//! - `channel_timeout`: a connection idle that long, a head or body stalled
//!   that long, or a client that stops reading for that long is cut off
//!   (per-connection deadlines; see the `io` module). Deadlines are exact
//!   tokio timers, so `cleanup_interval` (Waitress's sweep period) has nothing
//!   to pace here; the threaded engine sweeps.
//! - `threads`: at most this many handlers run at once on blocking threads;
//!   requests past it wait and are counted as queued.
//! - `recv_bytes` / `send_bytes`: socket buffers and response chunk size.
//! - `max_request_header_size`: a request head (request line, header lines
//!   and the blank line, line breaks included) longer than this is answered
//!   431 by hyper (its exact HTTP/1 `max_header_size`, which hyper-util's
//!   auto builder does not expose), counted as the threaded engine counts
//!   it; a declared body at or past `max_request_body_size` is
//!   answered 413 unread.
//!
//! Graceful shutdown: when the [`Shutdown`] triggers, the state drains
//! (`/ready` answers 503), the listener closes, in-flight requests finish and
//! idle connections close, bounded by `shutdown_timeout`.

mod body;
mod io;
mod proto;
mod service;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper_util::server::graceful::GracefulShutdown;
use recon_service::{App, Shutdown};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;
use tuning::{Config, Overload};

use crate::body::PumpLimits;
use crate::io::{InFlight, KeptAlive, TimedIo};
use crate::proto::Protocols;
use crate::service::Shared;

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

/// How often a client waiting at the connection limit (`Overload::Queue`)
/// looks for a connection that has gone idle since, to take its place.
const RECLAIM_POLL: Duration = Duration::from_millis(50);

/// Longest a client accepted at the limit with `Overload::Reject` waits for
/// the place of the idle connection closed for it before it is answered 503.
const RECLAIM_WAIT: Duration = Duration::from_secs(1);

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
    });
    let connections = Arc::new(Semaphore::new(settings.connection_limit.get()));
    let protocols = Arc::new(Protocols::new(config));
    let rejecting = Arc::new(protocols.closing());
    let graceful = GracefulShutdown::new();
    let timeout = settings.channel_timeout;

    let kept_alive = Arc::new(KeptAlive::default());
    app.state().set_idle_probe({
        let kept_alive = Arc::clone(&kept_alive);
        move || kept_alive.any_idle()
    });

    'accept: loop {
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
        // At the limit, a new client first takes the place of the connection
        // kept alive longest, closed for it; with none idle it waits for a
        // permit (`Queue`; later clients wait in the listen backlog) or is
        // answered 503 (`Reject`).
        let permit = match Arc::clone(&connections).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                let reclaimed = kept_alive.close_longest();
                if reclaimed {
                    tracing::debug!(
                        %peer,
                        "at connection limit: closed the connection kept alive longest for a new client"
                    );
                }
                // Queue waits for a permit as long as it takes, closing a
                // connection that goes idle meanwhile (looked for every
                // `RECLAIM_POLL`); Reject waits only for the one it freed
                // (the closed connection's task ends as soon as it runs),
                // then answers 503 after all.
                let mut closing = reclaimed;
                loop {
                    let wait = match config.overload {
                        Overload::Queue if closing => Duration::MAX,
                        Overload::Queue => RECLAIM_POLL,
                        Overload::Reject if reclaimed => RECLAIM_WAIT,
                        Overload::Reject => Duration::ZERO,
                    };
                    let permit = tokio::select! {
                        permit = tokio::time::timeout(
                            wait,
                            Arc::clone(&connections).acquire_owned(),
                        ) => permit,
                        _ = stop_rx.wait_for(|stop| *stop) => break 'accept,
                    };
                    match permit {
                        Ok(permit) => break permit.ok(),
                        Err(_elapsed) if config.overload == Overload::Queue => {
                            closing = kept_alive.close_longest();
                        }
                        Err(_elapsed) => break None,
                    }
                }
            }
        };
        let Some(permit) = permit else {
            tracing::debug!(%peer, "at connection limit; rejecting");
            let header = server_header.clone();
            let io = TimedIo::new(stream, timeout, Arc::default(), None);
            let rejecting = Arc::clone(&rejecting);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req| service::reject(header.clone(), req));
                if let Ok((protocol, io)) = proto::sniff(io).await {
                    let _ = rejecting.serve(protocol, io, service, None).await;
                }
            });
            continue;
        };

        app.state().connection_opened();
        let in_flight = Arc::new(InFlight::default());
        let kept = kept_alive.register(&in_flight);
        let mark = kept.protocol_mark();
        let io = TimedIo::new(stream, timeout, Arc::clone(&in_flight), Some(kept));
        let shared = Arc::clone(&shared);
        let service = hyper::service::service_fn(move |req| {
            service::serve_request(Arc::clone(&shared), Arc::clone(&in_flight), req)
        });
        // Counted by the graceful shutdown from now: a connection still
        // sending its first bytes when the drain begins is closed.
        let watcher = graceful.watcher();
        let mut stop = stop_rx.clone();
        let protocols = Arc::clone(&protocols);
        let app = Arc::clone(&app);
        let span = tracing::debug_span!("connection", %peer);
        tokio::spawn(
            async move {
                let sniffed = tokio::select! {
                    sniffed = proto::sniff(io) => sniffed,
                    () = stopped(&mut stop) => Err(std::io::ErrorKind::Interrupted.into()),
                };
                let served = match sniffed {
                    Ok((protocol, io)) => {
                        if protocol == proto::Protocol::Http2 {
                            mark.multiplexed();
                        }
                        protocols.serve(protocol, io, service, Some(watcher)).await
                    }
                    Err(err) => Err(err.into()),
                };
                if let Err(err) = served {
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

/// Resolves once the server stops accepting (never, should the sender be
/// gone: the accept loop's own stop is then the runtime's end).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
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
