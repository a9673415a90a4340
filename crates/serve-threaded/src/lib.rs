//! serve-threaded: Waitress's model for recon, one may I/O dispatcher feeding a fixed pool of worker threads.
//!
//! (Being built: the public entry point is [`serve`].)

use std::sync::Arc;

use recon_service::{App, Shutdown};

/// Why the threaded engine stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listening socket could not be prepared or handed to may.
    #[error("listener: {0}")]
    Listener(#[source] std::io::Error),
    /// A worker thread could not be started.
    #[error("starting worker thread: {0}")]
    Worker(#[source] std::io::Error),
}

/// Serves `app` on `listener` until `shutdown` is triggered, then drains.
///
/// # Errors
/// When the listener cannot be handed to may or a worker thread cannot start.
pub fn serve(
    app: Arc<App>,
    listener: std::net::TcpListener,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let _ = (app, listener, shutdown);
    Err(ServeError::Listener(std::io::Error::other(
        "threaded engine not built yet",
    )))
}
