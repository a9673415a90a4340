//! One request: adapt hyper's request to the application's, run the handler
//! where [`App::dispatch`] says, and adapt the response back.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use recon_service::{App, Dispatch, RequestBody, ResponseBody, ServerState, problem};
use tokio::sync::Semaphore;

use crate::body::{DRAIN_LIMIT, OutBody, PumpLimits, discard, request_reader};
use crate::io::InFlight;

/// What every request on every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) app: Arc<App>,
    /// Permits for handlers running on blocking threads (`threads`).
    pub(crate) workers: Arc<Semaphore>,
    pub(crate) server_header: Option<HeaderValue>,
    pub(crate) limits: PumpLimits,
    pub(crate) send_bytes: usize,
}

/// Serves one request; never fails (errors are responses).
pub(crate) async fn serve_request(
    shared: Arc<Shared>,
    in_flight: Arc<InFlight>,
    req: Request<Incoming>,
) -> Result<Response<OutBody>, Infallible> {
    let guard = in_flight.enter();
    let version = req.version();
    let mut response = respond(&shared, req).await;
    if version == http::Version::HTTP_10 {
        if close_delimited(&response) {
            // 1.0 has no chunks: this body ends with the connection.
            response = closing(response);
        }
        if response.headers().contains_key(header::CONNECTION) {
            // To an HTTP/1.0 client asking for keep-alive, hyper adds
            // `keep-alive` to a 1.1 response's `connection: close` (and
            // then closes); a 1.0 response without `keep-alive` it closes
            // with the header as written, as the threaded engine does.
            *response.version_mut() = http::Version::HTTP_10;
        }
    }
    let mut response = into_hyper(response, shared.send_bytes);
    if let Some(server) = &shared.server_header {
        response
            .headers_mut()
            .insert(header::SERVER, server.clone());
    }
    let (parts, body) = response.into_parts();
    Ok(Response::from_parts(parts, body.with_guard(guard)))
}

/// The answer to a client arriving past `connection_limit` with `Overload::Reject`.
pub(crate) async fn reject(
    server_header: Option<HeaderValue>,
    _req: Request<Incoming>,
) -> Result<Response<OutBody>, Infallible> {
    let mut response = into_hyper(problem::connection_limit(), 0);
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Some(server) = server_header {
        headers.insert(header::SERVER, server);
    }
    Ok(response)
}

/// Whether `Transfer-Encoding` names anything but one `chunked`, which the
/// threaded engine refuses with 501 (RFC 9112 section 6.1: a coding the
/// server does not understand).
///
/// hyper has already answered a bare 400 when the last coding is not
/// `chunked` or the request is HTTP/1.0, and decodes `gzip, chunked` as plain
/// chunks: without this the gzip bytes would reach the handler as the body.
/// When `Content-Length` came too, hyper has dropped it and will close the
/// connection after the response (the RFC's other choice), so that request
/// cannot be told from plain chunked here.
fn unsupported_coding(headers: &HeaderMap) -> bool {
    let mut codings = 0;
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        let Ok(text) = value.to_str() else {
            return true;
        };
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            codings += 1;
            if !coding.eq_ignore_ascii_case("chunked") {
                return true;
            }
        }
    }
    codings > 1
}

/// A problem answered before dispatch because the request's framing is
/// refused; the connection closes after it, as on the threaded engine (the
/// body is left unread).
fn refuse_framing(status: StatusCode, detail: &str) -> recon_service::Response {
    closing(problem::response(status, detail))
}

fn declared_len(req: &Request<Incoming>) -> Result<Option<u64>, ()> {
    match req.headers().get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or(()),
    }
}

async fn respond(shared: &Shared, req: Request<Incoming>) -> recon_service::Response {
    let app = &shared.app;
    // A head past `max_request_header_size` never gets here: hyper has
    // answered it 431 (see the `proto` module).
    if unsupported_coding(req.headers()) {
        return refuse_framing(StatusCode::NOT_IMPLEMENTED, problem::ONLY_CHUNKED);
    }
    let Ok(declared) = declared_len(&req) else {
        return refuse_framing(StatusCode::BAD_REQUEST, "invalid Content-Length");
    };
    if declared.is_some_and(|len| len >= shared.limits.max_len) {
        // The body is left unread: the connection closes after the answer.
        return closing(app.refuse_too_large(req.method(), req.uri().path(), req.headers()));
    }
    let dispatch = app.dispatch(req.method(), req.uri().path());
    // A body left unread is discarded, as the threaded engine drains it, when
    // its declared length is small and its client is not waiting for a
    // `100 Continue` (which never comes for an unread body); else the
    // connection closes after the answer.
    let drainable = declared.is_some_and(|n| n <= DRAIN_LIMIT) && !expects_continue(req.headers());
    let (parts, incoming) = req.into_parts();
    match dispatch {
        Dispatch::Inline => {
            // Inline routes read no body: one sent anyway is left unread.
            let unread = declared != Some(0) && !http_body::Body::is_end_stream(&incoming);
            let req = Request::from_parts(parts, RequestBody::empty());
            let response = std::panic::catch_unwind(AssertUnwindSafe(|| app.handle(req)))
                .unwrap_or_else(|_| handler_panicked());
            match (unread, drainable) {
                (false, _) => response,
                (true, true) => {
                    tokio::spawn(discard(incoming, DRAIN_LIMIT, shared.limits.stall));
                    response
                }
                (true, false) => closing(response),
            }
        }
        Dispatch::Blocking => {
            let (body, end) = if declared == Some(0) || http_body::Body::is_end_stream(&incoming) {
                (RequestBody::empty(), None)
            } else {
                let (reader, end) = request_reader(incoming, shared.limits, drainable);
                (RequestBody::from_reader(reader, declared), Some(end))
            };
            let req = Request::from_parts(parts, body);
            let permit = {
                let _queued = Queued::enter(app.state());
                Arc::clone(&shared.workers).acquire_owned().await
            };
            let Ok(permit) = permit else {
                return problem::response(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
            };
            let app = Arc::clone(app);
            let joined = tokio::task::spawn_blocking(move || {
                let _busy = Busy::enter(app.state());
                let response = app.handle(req);
                drop(permit);
                response
            })
            .await;
            let response = from_joined(joined);
            // A body refused as too large closes the connection even when
            // hyper happened to have read it all, as on the threaded engine.
            let refused = response.status() == StatusCode::PAYLOAD_TOO_LARGE;
            match end {
                Some(end) if refused || (!end.reached() && !drainable) => closing(response),
                _ => response,
            }
        }
    }
}

/// Whether the client sent `Expect: 100-continue` (it may hold the body
/// back until asked for it).
fn expects_continue(headers: &HeaderMap) -> bool {
    headers.get_all(header::EXPECT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.trim().eq_ignore_ascii_case("100-continue"))
    })
}

/// Whether `response` is streamed with no length given: to an HTTP/1.0
/// client it can only end with the connection.
fn close_delimited(response: &recon_service::Response) -> bool {
    matches!(response.body(), ResponseBody::Stream(_))
        && !response.headers().contains_key(header::CONTENT_LENGTH)
}

/// `response` with `Connection: close`: hyper closes the connection after
/// writing it instead of reading (and discarding) an unread request body to
/// reach the next request.
fn closing(mut response: recon_service::Response) -> recon_service::Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The response of a handler run on a blocking thread: a panic (or a
/// cancelled task) becomes a generic 500, and the process keeps serving.
fn from_joined(
    joined: Result<recon_service::Response, tokio::task::JoinError>,
) -> recon_service::Response {
    match joined {
        Ok(response) => response,
        Err(err) if err.is_panic() => handler_panicked(),
        Err(err) => {
            tracing::error!(error = %err, "handler task was cancelled");
            problem::response(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

fn handler_panicked() -> recon_service::Response {
    tracing::error!("a request handler panicked");
    problem::response(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

fn into_hyper(response: recon_service::Response, send_bytes: usize) -> Response<OutBody> {
    let (parts, body) = response.into_parts();
    let body = match body {
        ResponseBody::Empty => OutBody::full(bytes::Bytes::new()),
        ResponseBody::Full(bytes) => OutBody::full(bytes),
        ResponseBody::Stream(reader) => OutBody::stream(reader, send_bytes.max(1)),
    };
    Response::from_parts(parts, body)
}

/// Counts a request waiting for a worker until dropped.
struct Queued<'a>(&'a ServerState);

impl<'a> Queued<'a> {
    fn enter(state: &'a ServerState) -> Self {
        state.request_queued();
        Self(state)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.request_dequeued();
    }
}

/// Counts a busy worker until dropped (also when the handler panics).
struct Busy<'a>(&'a ServerState);

impl<'a> Busy<'a> {
    fn enter(state: &'a ServerState) -> Self {
        state.worker_busy();
        Self(state)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.worker_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lone_chunked_coding_is_served() {
        let check = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(header::TRANSFER_ENCODING, HeaderValue::from_str(v).unwrap());
            }
            unsupported_coding(&headers)
        };
        assert!(!check(&[]));
        assert!(!check(&["chunked"]));
        assert!(!check(&["Chunked"]));
        assert!(!check(&[", chunked"]));
        assert!(check(&["gzip, chunked"]));
        assert!(check(&["gzip", "chunked"]));
        assert!(check(&["chunked, chunked"]));
        assert!(check(&["chunked", "chunked"]));
    }

    #[test]
    fn a_panicking_handler_answers_500() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let joined = runtime.block_on(async {
            tokio::task::spawn_blocking(|| -> recon_service::Response { panic!("handler bug") })
                .await
        });
        let response = from_joined(joined);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            problem::CONTENT_TYPE
        );
    }
}
