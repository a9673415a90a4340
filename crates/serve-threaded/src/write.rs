//! Response heads and body framing written into a reused buffer.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap};
use http::{StatusCode, Version};

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutFraming {
    /// No body bytes are sent (HEAD, 1xx, 204, 304); headers may still
    /// announce a length.
    NoBody,
    /// `Content-Length` bytes follow.
    Length(u64),
    /// Chunked transfer coding (HTTP/1.1, length unknown).
    Chunked,
    /// Bytes until the connection closes (HTTP/1.0, length unknown).
    UntilClose,
}

/// Chooses the framing of a response.
///
/// `declared` is a `Content-Length` the handler set, `known` the length the
/// body itself knows (full bodies).
pub(crate) fn out_framing(
    head_request: bool,
    status: StatusCode,
    version: Version,
    declared: Option<u64>,
    known: Option<u64>,
) -> OutFraming {
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return OutFraming::NoBody;
    }
    match known.or(declared) {
        Some(n) => OutFraming::Length(n),
        None if version == Version::HTTP_11 => OutFraming::Chunked,
        None => OutFraming::UntilClose,
    }
}

/// The `Date` header's value, formatted once per second.
#[derive(Debug, Clone)]
pub(crate) struct DateCache {
    second: u64,
    text: Vec<u8>,
}

impl DateCache {
    /// An empty cache; the first call formats.
    pub(crate) fn new() -> Self {
        Self {
            second: u64::MAX,
            text: Vec::with_capacity(29),
        }
    }

    /// The current time as an IMF-fixdate.
    pub(crate) fn now(&mut self) -> &[u8] {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if secs != self.second {
            self.second = secs;
            self.text.clear();
            imf_fixdate(secs, &mut self.text);
        }
        &self.text
    }
}

/// Formats seconds since the Unix epoch as `Sun, 06 Nov 1994 08:49:37 GMT`.
fn imf_fixdate(secs: u64, out: &mut Vec<u8>) {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), proleptic
/// Gregorian, by counting 400-year eras that start on 1 March.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// What the head writer needs besides the handler's headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadMeta<'a> {
    /// The request's version, echoed in the status line.
    pub(crate) version: Version,
    /// The response status.
    pub(crate) status: StatusCode,
    /// The `Server` header value (empty: none).
    pub(crate) server: &'a str,
    /// The body framing.
    pub(crate) framing: OutFraming,
    /// The length announced for a body not sent (HEAD), if any.
    pub(crate) head_len: Option<u64>,
    /// Whether the connection stays open afterwards.
    pub(crate) keep_alive: bool,
}

/// Appends a response head to `out`. Framing and connection headers are the
/// engine's: any the handler set are replaced.
pub(crate) fn write_head(out: &mut Vec<u8>, meta: HeadMeta<'_>, headers: &HeaderMap, date: &[u8]) {
    out.extend_from_slice(match meta.version {
        Version::HTTP_10 => b"HTTP/1.0 ",
        _ => b"HTTP/1.1 ",
    });
    out.extend_from_slice(meta.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        meta.status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    if !meta.server.is_empty() && !headers.contains_key(header::SERVER) {
        out.extend_from_slice(b"server: ");
        out.extend_from_slice(meta.server.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let skip_length = meta.status.is_informational() || meta.status == StatusCode::NO_CONTENT;
    match meta.framing {
        OutFraming::Length(n) => write_length(out, n),
        OutFraming::NoBody if !skip_length => {
            if let Some(n) = meta.head_len {
                write_length(out, n);
            }
        }
        OutFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        OutFraming::NoBody | OutFraming::UntilClose => {}
    }
    if !meta.keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if meta.version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn write_length(out: &mut Vec<u8>, n: u64) {
    let _ = write!(out, "content-length: {n}\r\n");
}

/// Appends the size line of a chunk of `len` bytes.
pub(crate) fn chunk_start(out: &mut Vec<u8>, len: usize) {
    let _ = write!(out, "{len:x}\r\n");
}

/// The CRLF that ends a chunk's data.
pub(crate) const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk of a chunked body, no trailers.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn head(meta: HeadMeta<'_>, headers: &HeaderMap) -> String {
        let mut out = Vec::new();
        write_head(&mut out, meta, headers, b"Thu, 01 Jan 1970 00:00:00 GMT");
        String::from_utf8(out).unwrap()
    }

    fn meta(
        version: Version,
        status: StatusCode,
        framing: OutFraming,
        keep_alive: bool,
    ) -> HeadMeta<'static> {
        HeadMeta {
            version,
            status,
            server: "recon",
            framing,
            head_len: None,
            keep_alive,
        }
    }

    #[test]
    fn heads() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        headers.insert(header::CONTENT_LENGTH, "999".parse().unwrap());
        assert_eq!(
            head(
                meta(
                    Version::HTTP_11,
                    StatusCode::OK,
                    OutFraming::Length(2),
                    true
                ),
                &headers
            ),
            "HTTP/1.1 200 OK\r\nserver: recon\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
             content-type: application/json\r\ncontent-length: 2\r\n\r\n"
        );
        assert_eq!(
            head(
                meta(
                    Version::HTTP_10,
                    StatusCode::NOT_FOUND,
                    OutFraming::UntilClose,
                    false
                ),
                &HeaderMap::new()
            ),
            "HTTP/1.0 404 Not Found\r\nserver: recon\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
             connection: close\r\n\r\n"
        );
        assert_eq!(
            head(
                meta(Version::HTTP_10, StatusCode::OK, OutFraming::Chunked, true),
                &HeaderMap::new()
            ),
            "HTTP/1.0 200 OK\r\nserver: recon\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
             transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
        );
        let mut m = meta(Version::HTTP_11, StatusCode::OK, OutFraming::NoBody, true);
        m.head_len = Some(15);
        m.server = "";
        assert_eq!(
            head(m, &HeaderMap::new()),
            "HTTP/1.1 200 OK\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\ncontent-length: 15\r\n\r\n"
        );
    }

    #[test]
    fn framing_choice() {
        let ok = StatusCode::OK;
        assert_eq!(
            out_framing(true, ok, Version::HTTP_11, None, Some(5)),
            OutFraming::NoBody
        );
        assert_eq!(
            out_framing(
                false,
                StatusCode::NO_CONTENT,
                Version::HTTP_11,
                None,
                Some(0)
            ),
            OutFraming::NoBody
        );
        assert_eq!(
            out_framing(false, ok, Version::HTTP_11, None, Some(5)),
            OutFraming::Length(5)
        );
        assert_eq!(
            out_framing(false, ok, Version::HTTP_11, Some(7), None),
            OutFraming::Length(7)
        );
        assert_eq!(
            out_framing(false, ok, Version::HTTP_11, None, None),
            OutFraming::Chunked
        );
        assert_eq!(
            out_framing(false, ok, Version::HTTP_10, None, None),
            OutFraming::UntilClose
        );
    }

    #[test]
    fn dates() {
        let mut out = Vec::new();
        imf_fixdate(784_111_777, &mut out);
        assert_eq!(out, b"Sun, 06 Nov 1994 08:49:37 GMT");
        out.clear();
        imf_fixdate(951_782_400, &mut out);
        assert_eq!(out, b"Tue, 29 Feb 2000 00:00:00 GMT");
        out.clear();
        imf_fixdate(0, &mut out);
        assert_eq!(out, b"Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
