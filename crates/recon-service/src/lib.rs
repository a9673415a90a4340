//! recon-service: the one HTTP application both engines serve.
//!
//! Routes, handlers, the dataset store, the job runner, auth, limits
//! bookkeeping and metrics live here, written against the `http` crate's types
//! and a blocking, streaming body ([`RequestBody`], [`ResponseBody`]). This crate
//! knows nothing of tokio, hyper or may: an engine adapts sockets and a runtime
//! to [`App`], and nothing more.
//!
//! # The engine contract
//! - An engine calls [`App::dispatch`] with the request line; [`Dispatch::Inline`]
//!   routes (health, readiness, metrics) are cheap and never block, so they may run
//!   on the I/O thread; [`Dispatch::Blocking`] routes must run on a worker thread.
//! - [`App::handle`] takes the request with its body as a blocking [`std::io::Read`]
//!   and returns the response; it records per-request metrics itself.
//! - The engine reports connections, busy workers and queue length through
//!   [`App::state`], and answers protocol errors with [`problem::response`] so
//!   both engines' error bodies are identical.
//!
//! # Where things are
//! [`router`] (the route table; templates label metrics), `handlers` (one method per
//! endpoint), [`error`] (the one mapping of errors to problem responses), [`auth`],
//! [`store`] (datasets), [`upload`] (body limit, media types, streaming multipart),
//! [`jobs`] and [`reconcile`] (the job threads and their one call into recon-core),
//! [`results`] and [`events`] (streamed bodies), [`telemetry`] (Prometheus,
//! per-route latency, `/proc` figures), [`openapi`], [`durable`] (fsync + rename),
//! [`ids`] and [`owner`] (who may clean up after whom). docs/api.md is the user's view.

pub mod app;
pub mod auth;
pub mod body;
pub mod durable;
pub mod error;
pub mod events;
mod handlers;
pub mod ids;
pub mod jobs;
pub mod openapi;
pub mod owner;
mod page;
pub mod problem;
pub mod reconcile;
pub mod results;
pub mod router;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod upload;

pub use app::{App, AppError, SettingEntry};
pub use body::{RequestBody, ResponseBody};
pub use error::ApiError;
pub use shutdown::Shutdown;
pub use state::ServerState;

/// A request as the application sees it.
pub type Request = http::Request<RequestBody>;
/// A response as the application produces it.
pub type Response = http::Response<ResponseBody>;

/// Where an engine should run a route's handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// Cheap, never blocks, no body to read: may run on the I/O thread.
    Inline,
    /// May read a body, touch the disk or wait: run on a worker thread.
    Blocking,
}
