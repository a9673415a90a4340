//! Request heads: httparse's result turned into an `http::request::Parts`
//! plus the body framing, or the protocol error to answer.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

/// How many headers one request may carry; one more answers 431.
pub(crate) const MAX_HEADERS: usize = 100;

/// A protocol error found before the handler runs: answered, then the
/// connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {detail}")]
pub(crate) struct ProtocolError {
    /// The status to answer.
    pub(crate) status: StatusCode,
    /// What was wrong, for the problem document.
    pub(crate) detail: &'static str,
}

impl ProtocolError {
    fn bad(detail: &'static str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            detail,
        }
    }
}

/// How the request body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// A chunked body follows the head.
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Head {
    /// Method, URI, version and headers.
    pub(crate) parts: http::request::Parts,
    /// How the body is delimited.
    pub(crate) framing: Framing,
    /// Whether the connection stays open after this exchange (as far as the
    /// request goes; the response may still close it).
    pub(crate) keep_alive: bool,
    /// Whether the client waits for `100 Continue` before sending the body.
    pub(crate) expect_continue: bool,
}

/// The outcome of trying to parse a head from the start of `buf`.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A complete head of this many bytes.
    Complete(Box<Head>, usize),
    /// More bytes are needed.
    Partial,
}

/// One field line as `http` takes it (hyper's rules for names and values,
/// headers and chunked trailers alike); the error says which part is bad.
pub(crate) fn field(h: &httparse::Header<'_>) -> Result<(HeaderName, HeaderValue), &'static str> {
    let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| "invalid header name")?;
    let value = HeaderValue::from_bytes(h.value).map_err(|_| "invalid header value")?;
    Ok((name, value))
}

/// Parses one request head from the front of `buf`.
///
/// `max_head` bounds the head's size (431 past it). A declared body past
/// `max_request_body_size` is the connection's to refuse, through the
/// application, once the head is known.
pub(crate) fn parse_head(buf: &[u8], max_head: usize) -> Result<Parsed, ProtocolError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let status = match req.parse(buf) {
        Ok(status) => status,
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ProtocolError {
                status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                detail: "too many header fields",
            });
        }
        Err(httparse::Error::Version) => match unsupported_version(buf) {
            VersionError::Unsupported => {
                return Err(ProtocolError {
                    status: StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                    detail: "only HTTP/1.0 and HTTP/1.1 are served",
                });
            }
            VersionError::Malformed => return Err(malformed_head()),
            VersionError::Partial => httparse::Status::Partial,
        },
        Err(_) => return Err(malformed_head()),
    };
    let len = match status {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => {
            if buf.len() >= max_head {
                return Err(too_large_head());
            }
            return Ok(Parsed::Partial);
        }
    };
    if len > max_head {
        return Err(too_large_head());
    }
    let method = req
        .method
        .ok_or_else(|| ProtocolError::bad("missing method"))
        .and_then(|m| {
            Method::from_bytes(m.as_bytes()).map_err(|_| ProtocolError::bad("invalid method"))
        })?;
    let uri: Uri = req
        .path
        .ok_or_else(|| ProtocolError::bad("missing request target"))?
        .parse()
        .map_err(|_| ProtocolError::bad("invalid request target"))?;
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut map = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let (name, value) = field(h).map_err(ProtocolError::bad)?;
        map.append(name, value);
    }
    let framing = framing(&map, version)?;
    let keep_alive = keep_alive(&map, version);
    let expect_continue = version == Version::HTTP_11
        && map
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = map;
    Ok(Parsed::Complete(
        Box::new(Head {
            parts,
            framing,
            keep_alive,
            expect_continue,
        }),
        len,
    ))
}

fn malformed_head() -> ProtocolError {
    ProtocolError::bad("malformed request head")
}

/// What a request line httparse refused for its version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionError {
    /// `method SP target SP HTTP/d.d` with a version other than 1.0 and 1.1
    /// (`HTTP/1.2`, `HTTP/2.0`): 505.
    Unsupported,
    /// Not a request line (`GET /he alth HTTP/1.1`, `http/1.1`,
    /// `HTTP/1.10`): a syntax error, 400, as hyper answers.
    Malformed,
    /// The line has not ended and may still become [`Self::Unsupported`].
    Partial,
}

/// Tells a well-formed request line with an unsupported version (RFC 9112
/// section 2.3: `HTTP-version = "HTTP/" DIGIT "." DIGIT`, case-sensitive)
/// from a malformed one, for a `buf` httparse refused with
/// `Error::Version`: by then the method and target have parsed, so what
/// follows the target's space is the version, and must be all that is left
/// of the line.
fn unsupported_version(buf: &[u8]) -> VersionError {
    // httparse skips empty lines before the request line.
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = &buf[start..];
    let (line, ended) = match rest.iter().position(|&b| b == b'\n') {
        Some(end) => (&rest[..end], true),
        None => (rest, false),
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(_method), Some(_target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return VersionError::Malformed;
    };
    const SHAPE: &[u8; 8] = b"HTTP/d.d";
    let fits = version.len() <= SHAPE.len()
        && version.iter().zip(SHAPE).all(|(&b, &want)| match want {
            b'd' => b.is_ascii_digit(),
            _ => b == want,
        });
    match (fits, version.len() == SHAPE.len(), ended) {
        (true, true, true) => VersionError::Unsupported,
        (true, _, false) => VersionError::Partial,
        _ => VersionError::Malformed,
    }
}

fn too_large_head() -> ProtocolError {
    ProtocolError {
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        detail: recon_service::problem::HEAD_TOO_LARGE,
    }
}

/// Decides the body framing from `Content-Length` and `Transfer-Encoding`
/// (RFC 9112 section 6), refusing anything ambiguous.
fn framing(headers: &HeaderMap, version: Version) -> Result<Framing, ProtocolError> {
    let has_te = headers.contains_key(header::TRANSFER_ENCODING);
    let has_cl = headers.contains_key(header::CONTENT_LENGTH);
    if has_te && has_cl {
        return Err(ProtocolError::bad(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if has_te {
        if version == Version::HTTP_10 {
            return Err(ProtocolError::bad(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        let mut codings = Vec::new();
        for value in headers.get_all(header::TRANSFER_ENCODING) {
            let text = value
                .to_str()
                .map_err(|_| ProtocolError::bad("invalid Transfer-Encoding"))?;
            codings.extend(text.split(',').map(str::trim).filter(|c| !c.is_empty()));
        }
        return match codings.split_last() {
            Some((last, [])) if last.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            Some((last, _)) if last.eq_ignore_ascii_case("chunked") => Err(ProtocolError {
                status: StatusCode::NOT_IMPLEMENTED,
                detail: recon_service::problem::ONLY_CHUNKED,
            }),
            _ => Err(ProtocolError::bad(
                "Transfer-Encoding must end with chunked",
            )),
        };
    }
    if !has_cl {
        return Ok(Framing::Empty);
    }
    // A list (`8, 8`) is refused even when its values agree (RFC 9110
    // section 8.6 lets a recipient reject it or take the one value): hyper,
    // the async engine's parser, refuses it, so both engines answer 400.
    // Repeated field lines of one value are taken as that value, as hyper
    // does; lines that differ are refused.
    let mut length: Option<u64> = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        if value.as_bytes().contains(&b',') {
            return Err(ProtocolError::bad("Content-Length must be one number"));
        }
        let n = parse_length(value.as_bytes().trim_ascii())
            .ok_or_else(|| ProtocolError::bad("invalid Content-Length"))?;
        match length {
            Some(prev) if prev != n => {
                return Err(ProtocolError::bad("conflicting Content-Length values"));
            }
            _ => length = Some(n),
        }
    }
    match length {
        None => Err(ProtocolError::bad("invalid Content-Length")),
        Some(0) => Ok(Framing::Empty),
        Some(n) => Ok(Framing::Length(n)),
    }
}

/// A decimal length: digits only (no sign, no spaces), any number of them
/// (RFC 9112 allows leading zeros: `00000000000000000008` is 8, as hyper
/// reads it), whose value fits a `u64`.
fn parse_length(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// HTTP/1.1 keeps the connection unless `Connection: close`; HTTP/1.0 closes
/// it unless `Connection: keep-alive`.
fn keep_alive(headers: &HeaderMap, version: Version) -> bool {
    let has = |token: &str| {
        headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if version == Version::HTTP_10 {
        has("keep-alive") && !has("close")
    } else {
        !has("close")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_HEAD: usize = 8 * 1024;

    fn check(input: &str) -> Result<Option<(Framing, bool, bool, usize)>, StatusCode> {
        match parse_head(input.as_bytes(), MAX_HEAD) {
            Ok(Parsed::Complete(h, n)) => Ok(Some((h.framing, h.keep_alive, h.expect_continue, n))),
            Ok(Parsed::Partial) => Ok(None),
            Err(e) => Err(e.status),
        }
    }

    #[test]
    fn framing_and_keep_alive() {
        let get = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            check(get),
            Ok(Some((Framing::Empty, true, false, get.len())))
        );
        let post = "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(
            check(post),
            Ok(Some((Framing::Length(5), true, false, post.len() - 5)))
        );
        let close = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
        assert_eq!(check(close).map(|o| o.map(|t| t.1)), Ok(Some(false)));
        let ten = "GET / HTTP/1.0\r\n\r\n";
        assert_eq!(check(ten).map(|o| o.map(|t| t.1)), Ok(Some(false)));
        let ten_ka = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
        assert_eq!(check(ten_ka).map(|o| o.map(|t| t.1)), Ok(Some(true)));
        let chunked =
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n";
        assert_eq!(
            check(chunked).map(|o| o.map(|t| (t.0, t.2))),
            Ok(Some((Framing::Chunked, true)))
        );
        let same = "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(
            check(same).map(|o| o.map(|t| t.0)),
            Ok(Some(Framing::Length(3)))
        );
        assert_eq!(check("GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        // Any number of digits, as hyper reads them; only the value counts.
        for (cl, n) in [
            ("00000000000000000008", 8),
            ("000000000000000000000000000000", 0),
            ("018446744073709551615", u64::MAX),
        ] {
            let req = format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
            let want = if n == 0 {
                Framing::Empty
            } else {
                Framing::Length(n)
            };
            assert_eq!(check(&req).map(|o| o.map(|t| t.0)), Ok(Some(want)), "{cl}");
        }
    }

    #[test]
    fn versions() {
        let status = |line: &str| check(&format!("{line}\r\nHost: a\r\n\r\n"));
        // A well-formed version other than 1.0 and 1.1.
        for line in [
            "GET / HTTP/1.2",
            "GET / HTTP/2.0",
            "PRI * HTTP/2.0",
            "\r\nGET / HTTP/9.9",
        ] {
            assert_eq!(
                status(line),
                Err(StatusCode::HTTP_VERSION_NOT_SUPPORTED),
                "{line:?}"
            );
        }
        // Not a request line: a syntax error, as hyper answers.
        for line in [
            "GET /he alth HTTP/1.1",
            "GET / http/1.1",
            "GET / HTTP/1.10",
            "GET / HTTP/1.",
            "GET / HTTP/12.0",
            "GET / HTTP/2.0 ",
            "GET / HTTPS/1.1",
            "GET / HTTP/2.0\rX",
        ] {
            assert_eq!(status(line), Err(StatusCode::BAD_REQUEST), "{line:?}");
        }
        // A line that has not ended and may still be well-formed waits;
        // one that cannot be refused at once.
        for partial in ["GET / HTTP/2", "GET / HTTP/2.0", "GET / HTTP/2.0\r"] {
            assert_eq!(check(partial), Ok(None), "{partial:?}");
        }
        for refused in ["GET / http", "GET / HTTP/2.0x", "GET /a b"] {
            assert_eq!(check(refused), Err(StatusCode::BAD_REQUEST), "{refused:?}");
        }
    }

    #[test]
    fn malformed_heads_are_refused() {
        let bad = StatusCode::BAD_REQUEST;
        for input in [
            "POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 00018446744073709551616\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 8, 8\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 8,8\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 8\r\nContent-Length: 8, 8\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            "GET / HTTP/1.1\r\n: empty\r\n\r\n",
            "GARBAGE\r\n\r\n",
        ] {
            assert_eq!(check(input), Err(bad), "{input:?}");
        }
        assert_eq!(
            check("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Err(StatusCode::NOT_IMPLEMENTED)
        );
        let list = parse_head(b"POST / HTTP/1.1\r\nContent-Length: 8, 8\r\n\r\n", MAX_HEAD);
        assert_eq!(
            list.map(|_| ()).map_err(|e| e.detail),
            Err("Content-Length must be one number")
        );
    }

    #[test]
    fn limits() {
        // The body limit is the connection's (conn.rs), not the parser's.
        assert!(matches!(
            check("POST / HTTP/1.1\r\nContent-Length: 1000000000\r\n\r\n"),
            Ok(Some((Framing::Length(1_000_000_000), true, false, _)))
        ));
        let many: String = (0..=MAX_HEADERS)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect();
        assert_eq!(
            check(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let twenty: String = (0..20).map(|i| format!("X-H{i}: v\r\n")).collect();
        assert!(matches!(
            check(&format!("GET / HTTP/1.1\r\n{twenty}\r\n")),
            Ok(Some(_))
        ));
        let long = format!("GET / HTTP/1.1\r\nX-Big: {}", "a".repeat(MAX_HEAD));
        assert_eq!(
            check(&long),
            Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }
}
