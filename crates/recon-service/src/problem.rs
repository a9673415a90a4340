//! RFC 9457 problem details: the one shape every error response takes.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use crate::{Response, ResponseBody};

/// The media type of a problem document.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// The detail of the 501 both engines answer a `Transfer-Encoding` other
/// than one `chunked` with (RFC 9112 section 6.1), before any handler runs.
pub const ONLY_CHUNKED: &str = "only the chunked transfer coding is supported";

/// The detail of the 431 both engines answer a request head (request line
/// and header fields) larger than `max_request_header_size` with.
pub const HEAD_TOO_LARGE: &str = "request head exceeds max_request_header_size";

/// The text of the body read error both engines give a malformed chunked
/// body (`io::ErrorKind::InvalidData`), which the application answers 400.
pub const MALFORMED_CHUNKED: &str = "malformed chunked request body";

/// The answer to a client arriving past `connection_limit` with
/// `overload = "reject"`: 503 with `Retry-After: 1`, the same from both
/// engines (each closes the connection after it).
pub fn connection_limit() -> Response {
    let mut res = response(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is at its connection limit; retry later",
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

/// A problem response: `type` is `about:blank`, `title` the status's reason,
/// `detail` says what was wrong in words a client can act on.
pub fn response(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let mut res = Response::new(ResponseBody::Full(bytes));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    res
}
