//! The application: routing and handlers.
//!
//! (Skeleton: `/health` and `/ready` only; the full service is being built.)

use std::sync::Arc;

use http::{Method, StatusCode, header};
use tuning::Config;

use crate::state::ServerState;
use crate::{Dispatch, Request, Response, ResponseBody, problem};

/// One effective setting as `/debug/status` shows it: secrets already redacted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SettingEntry {
    /// The setting's key, e.g. `threads`.
    pub key: String,
    /// Its value as text.
    pub value: String,
    /// Where it came from: `default`, `tuning`, a file path, an env var name or a flag.
    pub source: String,
}

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The data directory could not be created or opened.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The application both engines serve.
#[derive(Debug)]
pub struct App {
    config: Arc<Config>,
    settings: Vec<SettingEntry>,
    state: ServerState,
}

impl App {
    /// Builds the application from its configuration and the report of where
    /// each setting came from (shown by `/debug/status`).
    ///
    /// # Errors
    /// When the data directory cannot be prepared.
    pub fn new(config: Arc<Config>, settings: Vec<SettingEntry>) -> Result<Self, AppError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| AppError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let state = ServerState::new(config.engine.as_str(), config.server.connection_limit.get());
        Ok(Self {
            config,
            settings,
            state,
        })
    }

    /// The effective settings with their sources.
    pub fn settings(&self) -> &[SettingEntry] {
        &self.settings
    }

    /// The configuration the application runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Live figures the engine updates.
    pub fn state(&self) -> &ServerState {
        &self.state
    }

    /// Where a request's handler should run.
    pub fn dispatch(&self, _method: &Method, path: &str) -> Dispatch {
        match path {
            "/health" | "/ready" => Dispatch::Inline,
            _ => Dispatch::Blocking,
        }
    }

    /// Handles one request.
    pub fn handle(&self, req: Request) -> Response {
        let json = |status: StatusCode, body: &'static str| {
            let mut res = Response::new(ResponseBody::from(body));
            *res.status_mut() = status;
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            res
        };
        match (req.method(), req.uri().path()) {
            (&Method::GET | &Method::HEAD, "/health") => json(StatusCode::OK, r#"{"status":"ok"}"#),
            (&Method::GET, "/ready") => {
                if self.state.is_draining() || self.state.at_connection_limit() {
                    json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        r#"{"status":"unavailable"}"#,
                    )
                } else {
                    json(StatusCode::OK, r#"{"status":"ready"}"#)
                }
            }
            _ => problem::response(StatusCode::NOT_FOUND, "no such route"),
        }
    }
}
