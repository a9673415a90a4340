//! The application's error type and the one place it becomes an HTTP response.
//!
//! Handlers return [`ApiError`]; [`ApiError::into_response`] turns it into an
//! RFC 9457 problem document. Client errors (4xx) are logged at `debug`; server
//! errors (5xx) are logged with their detail at `error` and answered with a
//! generic sentence, so no internal path or message leaks to a client.

use std::io;

use http::{HeaderValue, StatusCode, header};

use crate::{Response, problem};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (bad JSON, bad query, client cut the body short).
    #[error("{0}")]
    BadRequest(String),
    /// No usable `Authorization: Bearer` header on a protected route.
    #[error("missing bearer token")]
    Unauthorized,
    /// A bearer token was sent but matches no configured key.
    #[error("the API key is not valid")]
    Forbidden,
    /// The route or the resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not for this method.
    #[error("method not allowed; allowed: {allow}")]
    MethodNotAllowed {
        /// The methods the route accepts, comma-separated.
        allow: String,
    },
    /// The client stalled past the channel timeout while sending the body.
    #[error("the request body was not received in time")]
    RequestTimeout,
    /// The resource is not in a state that allows the request (e.g. results of an unfinished job).
    #[error("{0}")]
    Conflict(String),
    /// The body is at or past `max_request_body_size` (declared or read).
    #[error("the request body must be smaller than max_request_body_size ({limit} bytes)")]
    PayloadTooLarge {
        /// The configured limit in bytes.
        limit: u64,
    },
    /// A reconciliation request (JSON) at or past its own cap, which is
    /// smaller than `max_request_body_size`: rules belong in it, data in
    /// datasets.
    #[error(
        "a reconciliation request must be smaller than {limit} bytes; upload the data as datasets and send their ids"
    )]
    JsonTooLarge {
        /// The cap in bytes.
        limit: u64,
    },
    /// The body's media type is not one the route reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The content is well-formed HTTP but not valid data (names line, column and value).
    #[error("{0}")]
    Unprocessable(String),
    /// The server cannot take work now.
    #[error("{0}")]
    Unavailable(String),
    /// Something failed on the server; the detail is logged, never sent.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } | ApiError::JsonTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// An internal error from anything displayable (logged, never sent).
    pub fn internal(what: impl std::fmt::Display) -> Self {
        ApiError::Internal(what.to_string())
    }

    /// An internal error about a file, naming it for the log (never sent).
    pub fn internal_at(path: &std::path::Path, what: impl std::fmt::Display) -> Self {
        ApiError::Internal(format!("{}: {what}", path.display()))
    }

    /// Maps an error reading the request body: a stall past the channel timeout
    /// is 408, a body cut short is 400, the body limit is 413, anything else 500.
    pub fn from_body_io(err: &io::Error, limit: u64) -> Self {
        if is_too_large(err) {
            return ApiError::PayloadTooLarge { limit };
        }
        match err.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ApiError::RequestTimeout,
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => {
                ApiError::BadRequest("the request body ended before it was complete".to_owned())
            }
            io::ErrorKind::InvalidData => ApiError::BadRequest(err.to_string()),
            _ => ApiError::Internal(format!("reading the request body: {err}")),
        }
    }

    /// The problem+json response; logs the error as its class deserves.
    pub fn into_response(self) -> Response {
        let status = self.status();
        let mut res = if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self, "request failed");
            let generic = match &self {
                ApiError::Unavailable(detail) => detail.as_str(),
                _ => "internal error; the server log has the detail",
            };
            problem::response(status, generic)
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request rejected");
            problem::response(status, &self.to_string())
        };
        match &self {
            ApiError::Unauthorized | ApiError::Forbidden => {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"recon\""),
                );
            }
            ApiError::MethodNotAllowed { allow } => {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    res.headers_mut().insert(header::ALLOW, v);
                }
            }
            _ => {}
        }
        res
    }
}

/// The marker inside the `io::Error` a [`LimitedReader`](crate::upload::LimitedReader)
/// returns when the body passes its limit.
#[derive(Debug, thiserror::Error)]
#[error("the request body exceeds its limit")]
pub struct TooLarge;

/// Whether `err` is the body-limit marker.
pub fn is_too_large(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<TooLarge>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_errors_map_to_statuses() {
        let check = |e: io::Error, s: u16| {
            assert_eq!(ApiError::from_body_io(&e, 10).status().as_u16(), s, "{e}");
        };
        check(io::Error::new(io::ErrorKind::TimedOut, "slow"), 408);
        check(io::Error::new(io::ErrorKind::UnexpectedEof, "cut"), 400);
        check(io::Error::other(TooLarge), 413);
        check(io::Error::other("disk"), 500);
    }

    #[test]
    fn server_errors_hide_detail_and_401_asks_for_bearer() {
        let res = ApiError::Internal("/secret/path broke".into()).into_response();
        assert_eq!(res.status(), 500);
        let crate::ResponseBody::Full(b) = res.body() else {
            panic!("full body expected")
        };
        assert!(!String::from_utf8_lossy(b).contains("secret"));
        let res = ApiError::Unauthorized.into_response();
        assert_eq!(res.status(), 401);
        assert!(res.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
