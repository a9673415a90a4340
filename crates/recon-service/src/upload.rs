//! Reading request bodies: the size limit, media types, query strings, and a
//! small streaming `multipart/form-data` reader.
//!
//! Why our own multipart reader rather than multer: multer is async (a `Stream`
//! of `Bytes`), and the application reads bodies as a blocking [`Read`]. Driving
//! multer would need an executor and a thread hop per chunk; the format itself
//! is simple (find `\r\n--boundary` with memchr's `memmem`, parse a few header
//! lines), so a blocking reader over any `Read` is less code and streams a part
//! straight to disk with one buffer of `recv_bytes`.

use std::io::{self, Read};

use memchr::memmem;
use recon_core::input::Format;

use crate::error::{ApiError, TooLarge};

/// A reader that fails with [`TooLarge`] once more than `limit` bytes passed.
#[derive(Debug)]
pub struct LimitedReader<R> {
    inner: R,
    limit: u64,
    read: u64,
}

impl<R: Read> LimitedReader<R> {
    /// Wraps `inner`, allowing at most `limit` bytes.
    pub fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            limit,
            read: 0,
        }
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read >= self.limit {
            return Err(io::Error::other(TooLarge));
        }
        Ok(n)
    }
}

/// What a body holds, by its `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKind {
    /// A raw file of this format.
    Raw(Format),
    /// `multipart/form-data` with this boundary.
    Multipart(String),
}

/// Classifies a body by its `Content-Type`.
///
/// # Errors
/// [`ApiError::UnsupportedMediaType`] for a missing or unknown type.
pub fn body_kind(content_type: Option<&str>) -> Result<BodyKind, ApiError> {
    let ct = content_type.ok_or_else(|| {
        ApiError::UnsupportedMediaType(
            "missing Content-Type; send text/csv, application/vnd.apache.parquet, \
             application/vnd.apache.arrow.stream, application/vnd.apache.arrow.file, \
             application/x-ndjson or multipart/form-data"
                .to_owned(),
        )
    })?;
    let essence = essence(ct);
    if let Some(boundary) = multipart_boundary(ct) {
        return boundary.map(BodyKind::Multipart);
    }
    Format::from_media_type(ct).map(BodyKind::Raw).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "unsupported media type {essence:?}; send text/csv, application/vnd.apache.parquet, \
             application/vnd.apache.arrow.stream, application/vnd.apache.arrow.file, \
             application/x-ndjson or multipart/form-data"
        ))
    })
}

/// A media type without its parameters (`text/csv; charset=utf-8` is
/// `text/csv`), as written (compare it case-insensitively).
pub fn essence(ct: &str) -> &str {
    ct.split(';').next().unwrap_or("").trim()
}

/// The boundary of a `multipart/form-data` content type: `None` when `ct`
/// is another type.
///
/// # Errors
/// [`ApiError::BadRequest`] for `multipart/form-data` without a usable boundary.
pub fn multipart_boundary(ct: &str) -> Option<Result<String, ApiError>> {
    essence(ct)
        .eq_ignore_ascii_case("multipart/form-data")
        .then(|| {
            boundary(ct).ok_or_else(|| {
                ApiError::BadRequest("multipart/form-data without a boundary".to_owned())
            })
        })
}

/// The `boundary` parameter of a multipart content type.
fn boundary(ct: &str) -> Option<String> {
    parameters(ct, "boundary")
        .into_iter()
        .next()
        .filter(|b| !b.is_empty() && b.len() <= 200)
}

/// Every value a content type gives a parameter (ASCII case-insensitive
/// name), unquoted, in order: `charset` of `text/csv; charset=windows-1252`.
pub fn parameters(ct: &str, name: &str) -> Vec<String> {
    ct.split(';')
        .skip(1)
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().trim_matches('"').to_owned())
        })
        .collect()
}

/// Decoded `key=value` pairs of a query string (`+` is a space, `%XX` decoded).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// The first value of `key` in a query string.
pub fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    query_pairs(query)
        .into_iter()
        .find_map(|(k, v)| (k == key).then_some(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The headers of one multipart part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartHeaders {
    /// The form field name.
    pub name: Option<String>,
    /// The file name, when the part is a file.
    pub filename: Option<String>,
    /// The part's `Content-Type`.
    pub content_type: Option<String>,
    /// The part's `Content-Encoding` or `Content-Transfer-Encoding` (a
    /// compression or `base64`), which recon does not undo.
    pub encoding: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first boundary.
    Preamble,
    /// Inside a part's data.
    Body,
    /// A part's data ended at a delimiter not yet consumed.
    AtDelimiter,
    /// The closing boundary was read.
    Done,
}

/// Most bytes of one part's headers.
const MAX_PART_HEADERS: usize = 16 * 1024;

/// A streaming `multipart/form-data` reader over any [`Read`].
///
/// Call [`Multipart::next_part`] for each part's headers, then read the part's
/// data through [`Read`] (it ends at the part's boundary). Unread data of a part
/// is skipped by the next `next_part`.
#[derive(Debug)]
pub struct Multipart<R> {
    inner: R,
    /// `\r\n--boundary`.
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    state: State,
}

impl<R: Read> Multipart<R> {
    /// A reader of parts separated by `boundary`, reading `inner` in `chunk`-byte reads.
    pub fn new(inner: R, boundary: &str, chunk: usize) -> Self {
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        let cap = chunk.max(4096) + delimiter.len() + MAX_PART_HEADERS;
        let mut buf = vec![0u8; cap];
        // The stream is read as if preceded by CRLF, so the first boundary
        // line matches the same delimiter as every later one.
        buf[..2].copy_from_slice(b"\r\n");
        Self {
            inner,
            delimiter,
            buf,
            start: 0,
            end: 2,
            eof: false,
            state: State::Preamble,
        }
    }

    /// Reads more bytes into the buffer; `false` at end of input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 && (self.end == self.buf.len() || self.start == self.end) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Ok(true);
        }
        let n = self.inner.read(&mut self.buf[self.end..])?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.end += n;
        Ok(true)
    }

    fn malformed(what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("malformed multipart body: {what}"),
        )
    }

    /// Advances to the next part and returns its headers; `None` after the last part.
    ///
    /// # Errors
    /// The body's I/O errors, or `InvalidData` for a malformed body.
    pub fn next_part(&mut self) -> io::Result<Option<PartHeaders>> {
        if self.state == State::Body || self.state == State::Preamble {
            // Skip the rest of the current part (or the preamble).
            let mut sink = [0u8; 8192];
            while self.read_data(&mut sink)? > 0 {}
        }
        if self.state == State::Done {
            return Ok(None);
        }
        // At a delimiter: consume it, then `--` (end) or CRLF (a part follows).
        let need = self.delimiter.len() + 2;
        while self.end - self.start < need {
            if !self.fill()? {
                return Err(Self::malformed("ends inside a boundary"));
            }
        }
        self.start += self.delimiter.len();
        if &self.buf[self.start..self.start + 2] == b"--" {
            self.start += 2;
            self.state = State::Done;
            return Ok(None);
        }
        // Tolerate transport padding (spaces or tabs) before the CRLF.
        loop {
            while self.end - self.start < 2 {
                if !self.fill()? {
                    return Err(Self::malformed("ends after a boundary"));
                }
            }
            match self.buf[self.start] {
                b' ' | b'\t' => self.start += 1,
                _ => break,
            }
        }
        if &self.buf[self.start..self.start + 2] != b"\r\n" {
            return Err(Self::malformed("boundary not followed by CRLF"));
        }
        self.start += 2;
        let headers = loop {
            if let Some(i) = memmem::find(&self.buf[self.start..self.end], b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&self.buf[self.start..self.start + i]);
                let headers = parse_part_headers(&text);
                self.start += i + 4;
                break headers;
            }
            if self.end - self.start > MAX_PART_HEADERS {
                return Err(Self::malformed("part headers too long"));
            }
            if !self.fill()? {
                // Headers of an empty-body part with no blank line are malformed.
                return Err(Self::malformed("ends inside part headers"));
            }
        };
        self.state = State::Body;
        Ok(Some(headers))
    }

    /// Reads part data into `out`; 0 at the part's end.
    fn read_data(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if !matches!(self.state, State::Body | State::Preamble) || out.is_empty() {
            return Ok(0);
        }
        loop {
            let avail = &self.buf[self.start..self.end];
            if let Some(i) = memmem::find(avail, &self.delimiter) {
                if i == 0 {
                    self.state = State::AtDelimiter;
                    return Ok(0);
                }
                let n = i.min(out.len());
                out[..n].copy_from_slice(&avail[..n]);
                self.start += n;
                return Ok(n);
            }
            // Bytes that cannot begin a delimiter are safe to hand out.
            let safe = avail.len().saturating_sub(self.delimiter.len() - 1);
            if safe > 0 && (safe >= out.len() || self.end == self.buf.len() || self.eof) {
                let n = safe.min(out.len());
                out[..n].copy_from_slice(&avail[..n]);
                self.start += n;
                return Ok(n);
            }
            if !self.fill()? {
                if safe > 0 {
                    continue;
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "multipart body ended before its closing boundary",
                ));
            }
        }
    }
}

impl<R: Read> Read for Multipart<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.state != State::Body {
            return Ok(0);
        }
        self.read_data(out)
    }
}

fn parse_part_headers(text: &str) -> PartHeaders {
    let mut h = PartHeaders::default();
    for line in text.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-disposition") {
            for param in value.split(';').skip(1) {
                let Some((k, v)) = param.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"').to_owned();
                match k.trim().to_ascii_lowercase().as_str() {
                    "name" => h.name = Some(v),
                    "filename" => h.filename = Some(v),
                    _ => {}
                }
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            h.content_type = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("content-encoding")
            || name.eq_ignore_ascii_case("content-transfer-encoding")
        {
            h.encoding = Some(value.to_owned());
        }
    }
    h
}

/// Reads a small text part whole (form fields such as `name` or `rules`).
///
/// # Errors
/// The body's I/O errors; `InvalidData` past `limit` bytes or for non-UTF-8.
pub fn read_small_part(part: &mut impl Read, limit: usize) -> Result<String, io::Error> {
    let mut out = Vec::new();
    part.take(limit as u64 + 1).read_to_end(&mut out)?;
    if out.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a form field is longer than {limit} bytes"),
        ));
    }
    String::from_utf8(out)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a form field is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader handing out at most `step` bytes per read, to cross buffer edges.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn parts(body: &[u8], step: usize) -> io::Result<Vec<(PartHeaders, Vec<u8>)>> {
        let mut mp = Multipart::new(Trickle(body, step), "XyZ", 16);
        let mut out = Vec::new();
        while let Some(h) = mp.next_part()? {
            let mut data = Vec::new();
            mp.read_to_end(&mut data)?;
            out.push((h, data));
        }
        Ok(out)
    }

    #[test]
    fn multipart_parts_split_at_every_read_size() {
        let big: Vec<u8> = (0..5000u32).map(|i| b"ab\r\n-X"[i as usize % 6]).collect();
        let mut body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nledger\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\nContent-Type: text/csv\r\n\r\n"
            .to_vec();
        body.extend_from_slice(&big);
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        for step in [1, 3, 7, 64, 100_000] {
            let got = parts(&body, step).unwrap();
            assert_eq!(got.len(), 2, "step {step}");
            assert_eq!(got[0].0.name.as_deref(), Some("name"));
            assert_eq!(got[0].1, b"ledger");
            assert_eq!(got[1].0.filename.as_deref(), Some("a.csv"));
            assert_eq!(got[1].0.content_type.as_deref(), Some("text/csv"));
            assert_eq!(got[1].1, big, "step {step}");
        }
    }

    #[test]
    fn multipart_without_closing_boundary_is_unexpected_eof() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nabc";
        let err = parts(body, 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn unread_parts_are_skipped() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1111\r\n--XyZ\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n22\r\n--XyZ--";
        let mut mp = Multipart::new(&body[..], "XyZ", 16);
        assert_eq!(mp.next_part().unwrap().unwrap().name.as_deref(), Some("a"));
        let h = mp.next_part().unwrap().unwrap();
        assert_eq!(h.name.as_deref(), Some("b"));
        assert_eq!(read_small_part(&mut mp, 10).unwrap(), "22");
        assert!(mp.next_part().unwrap().is_none());
    }

    #[test]
    fn media_types_and_queries() {
        assert_eq!(
            body_kind(Some("text/csv; charset=utf-8")).unwrap(),
            BodyKind::Raw(Format::Csv)
        );
        assert_eq!(
            body_kind(Some("multipart/form-data; boundary=\"ab\"")).unwrap(),
            BodyKind::Multipart("ab".into())
        );
        assert_eq!(body_kind(Some("image/png")).unwrap_err().status(), 415);
        assert_eq!(body_kind(None).unwrap_err().status(), 415);
        assert_eq!(
            query_value(Some("a=1&name=my%20file+x&z"), "name").as_deref(),
            Some("my file x")
        );
        assert_eq!(query_value(Some("n=%zz%4"), "n").as_deref(), Some("%zz%4"));
    }

    #[test]
    fn limited_reader_stops_past_limit() {
        let mut r = LimitedReader::new(&[0u8; 100][..], 50);
        let mut v = Vec::new();
        let err = r.read_to_end(&mut v).unwrap_err();
        assert!(crate::error::is_too_large(&err));
    }
}
