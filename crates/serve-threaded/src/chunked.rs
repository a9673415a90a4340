//! An incremental decoder of chunked request bodies (RFC 9112 section 7.1),
//! strict about line endings so nothing ambiguous reaches the handler.
//!
//! What it accepts is what hyper (the async engine) accepts, so both engines
//! store the same bodies: a chunk size of any number of hex digits whose
//! value fits a `u64` (`00000000000000000004` is 4), and trailers that are
//! field lines as hyper reads them (httparse's `parse_headers`, then `http`'s
//! name and value rules). It is stricter than hyper in two ways: a bare LF
//! ends no line, trailers included (hyper waits there for more input); and
//! one body's chunk extensions, trailers and size digits past the 16th share
//! one 8 KiB budget ([`MAX_META`]), where hyper allows 16 KiB of extensions
//! and 16 KiB of trailers and any number of leading zeros.

use std::ops::Range;

use crate::parse::MAX_HEADERS;

/// Most bytes of chunk extensions, trailers and size digits past the 16th
/// one body may carry.
const MAX_META: usize = 8 * 1024;

/// Size digits that count against nothing: 16 hex digits hold any `u64`.
/// Leading zeros past them count against [`MAX_META`], so a client cannot
/// hold the connection with an endless size line.
const FREE_SIZE_DIGITS: u8 = 16;

/// A malformed chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChunkError {
    /// A chunk size that is not hexadecimal or overflows a `u64`.
    #[error("invalid chunk size")]
    Size,
    /// A missing CRLF where one is required.
    #[error("missing CRLF in chunked body")]
    LineEnding,
    /// Extensions, trailers and long sizes past the limit.
    #[error("chunk extensions or trailers too large")]
    TooLarge,
    /// A trailer line that is not a field line (`name: value`), a field
    /// name or value with a byte it may not hold, or more than
    /// [`MAX_HEADERS`] trailer fields.
    #[error("malformed trailer field")]
    Trailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a size line (`digits` read so far, saturating).
    Size { digits: u8 },
    /// Skipping a chunk extension up to CR.
    Extension,
    /// After the size line's CR, expecting LF.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// After chunk data, expecting CR.
    DataCr,
    /// After chunk data and CR, expecting LF.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer line, up to CR.
    Trailer,
    /// After a trailer line's CR, expecting LF.
    TrailerLf,
    /// After the final empty line's CR, expecting LF.
    EndLf,
    /// The body is complete.
    Done,
}

/// The result of one decoding step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// Input bytes consumed (framing and data).
    pub(crate) consumed: usize,
    /// Body data found in the input, as a range of it.
    pub(crate) data: Option<Range<usize>>,
}

/// Decodes a chunked body incrementally: feed it whatever bytes have arrived.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// Bytes left in the current chunk (or the size being read).
    remaining: u64,
    meta: usize,
    /// The trailer section as sent (lines and their CRLFs), checked whole
    /// at its end; empty (and unallocated) for a body without trailers.
    trailers: Vec<u8>,
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub(crate) fn new() -> Self {
        Self {
            state: State::Size { digits: 0 },
            remaining: 0,
            meta: 0,
            trailers: Vec::new(),
        }
    }

    /// Whether the terminating chunk and trailers have been read.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes framing from `input` until it finds data (returned as a range
    /// of `input`), runs out of input, or the body ends.
    pub(crate) fn step(&mut self, input: &[u8]) -> Result<Step, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => break,
                State::Data => {
                    let avail = (input.len() - i) as u64;
                    let take = avail.min(self.remaining) as usize;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Step {
                        consumed: i + take,
                        data: Some(i..i + take),
                    });
                }
                State::Size { digits } => {
                    if let Some(d) = hex(b) {
                        if digits >= FREE_SIZE_DIGITS {
                            self.count_meta()?;
                        }
                        self.remaining = self
                            .remaining
                            .checked_mul(16)
                            .map(|r| r | u64::from(d))
                            .ok_or(ChunkError::Size)?;
                        self.state = State::Size {
                            digits: digits.saturating_add(1),
                        };
                    } else if digits == 0 {
                        return Err(ChunkError::Size);
                    } else if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if b == b';' || b == b' ' || b == b'\t' {
                        self.state = State::Extension;
                    } else {
                        return Err(ChunkError::Size);
                    }
                }
                State::Extension => {
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if b == b'\n' {
                        return Err(ChunkError::LineEnding);
                    } else {
                        self.count_meta()?;
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::LineEnding);
                    }
                    self.state = if self.remaining == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::LineEnding);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::LineEnding);
                    }
                    self.remaining = 0;
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => {
                    if b == b'\r' {
                        self.state = State::EndLf;
                    } else if b == b'\n' {
                        return Err(ChunkError::LineEnding);
                    } else {
                        self.count_meta()?;
                        self.trailers.push(b);
                        self.state = State::Trailer;
                    }
                }
                State::Trailer => {
                    if b == b'\r' {
                        self.state = State::TrailerLf;
                    } else if b == b'\n' {
                        return Err(ChunkError::LineEnding);
                    } else {
                        self.count_meta()?;
                        self.trailers.push(b);
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError::LineEnding);
                    }
                    self.trailers.extend_from_slice(b"\r\n");
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(ChunkError::LineEnding);
                    }
                    self.check_trailers()?;
                    self.state = State::Done;
                    i += 1;
                    break;
                }
            }
            i += 1;
        }
        Ok(Step {
            consumed: i,
            data: None,
        })
    }

    /// Checks the trailer section read so far as hyper's `decode_trailers`
    /// does (hyper 1.12, `proto/h1/decode.rs`), and frees it: the fields
    /// are not passed on (no handler reads trailers).
    fn check_trailers(&mut self) -> Result<(), ChunkError> {
        if self.trailers.is_empty() {
            return Ok(());
        }
        let mut section = std::mem::take(&mut self.trailers);
        section.extend_from_slice(b"\r\n");
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::parse_headers(&section, &mut fields) {
            Ok(httparse::Status::Complete((_, fields))) => {
                if fields.iter().all(|f| crate::parse::field(f).is_ok()) {
                    Ok(())
                } else {
                    Err(ChunkError::Trailer)
                }
            }
            Ok(httparse::Status::Partial) | Err(_) => Err(ChunkError::Trailer),
        }
    }

    fn count_meta(&mut self) -> Result<(), ChunkError> {
        self.meta += 1;
        if self.meta > MAX_META {
            return Err(ChunkError::TooLarge);
        }
        Ok(())
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `piece` bytes; returns the body and
    /// the bytes left after it.
    fn decode(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut dec = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut pos = 0;
        while !dec.is_done() && pos < input.len() {
            let end = (pos + piece).min(input.len());
            let step = dec.step(&input[pos..end])?;
            if let Some(r) = step.data {
                out.extend_from_slice(&input[pos + r.start..pos + r.end]);
            }
            pos += step.consumed;
        }
        assert!(dec.is_done(), "body incomplete");
        Ok((out, input.len() - pos))
    }

    #[test]
    fn decodes_in_any_piece_size() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nGET";
        for piece in [1, 2, 3, 7, 64] {
            let (out, rest) = decode(body, piece).unwrap();
            assert_eq!(out, b"hello world0123456789");
            assert_eq!(rest, 3, "piece {piece}");
        }
    }

    #[test]
    fn sizes_are_their_value_however_long() {
        // RFC 9112's chunk-size is 1*HEXDIG: leading zeros past 16 digits
        // are still the value, as hyper reads them.
        let body = b"00000000000000000004\r\nabcd\r\n00000000000000000000\r\n\r\n";
        for piece in [1, 5, 64] {
            assert_eq!(decode(body, piece), Ok((b"abcd".to_vec(), 0)));
        }
        let max = b"000ffffffffffffffff\r\n";
        let mut dec = ChunkedDecoder::new();
        assert_eq!(dec.step(max).map(|s| s.consumed), Ok(max.len()));
        assert_eq!(dec.remaining, u64::MAX);
        // Zeros past the 16th count against the extension and trailer
        // bound, so a size line cannot go on forever.
        let mut dec = ChunkedDecoder::new();
        let zeros = vec![b'0'; 16 + MAX_META + 1];
        assert_eq!(dec.step(&zeros), Err(ChunkError::TooLarge));
    }

    #[test]
    fn trailers_are_field_lines() {
        // Exactly hyper's limit of fields (its limit on header fields),
        // empty and blank-padded values included.
        let mut fields: String = (2..MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        fields.push_str("X-E:\r\nX-S:\t a b \r\n");
        let body = format!("1\r\na\r\n0\r\n{fields}\r\n");
        assert_eq!(decode(body.as_bytes(), 3), Ok((b"a".to_vec(), 0)));
        // One more is refused.
        let over = format!("0\r\n{fields}X-Last: v\r\n\r\n");
        let mut dec = ChunkedDecoder::new();
        assert_eq!(
            dec.step(over.as_bytes()).map(|_| ()),
            Err(ChunkError::Trailer)
        );
        // obs-text is a valid value byte.
        assert_eq!(
            decode(b"0\r\nX: caf\xc3\xa9\r\n\r\n", 2),
            Ok((Vec::new(), 0))
        );
    }

    #[test]
    fn refuses_malformed() {
        for (input, err) in [
            (&b"x\r\n"[..], ChunkError::Size),
            (b"\r\n", ChunkError::Size),
            (b"5\nhello\r\n0\r\n\r\n", ChunkError::Size),
            (b"5\r\nhelloXX0\r\n\r\n", ChunkError::LineEnding),
            (b"11111111111111111\r\n", ChunkError::Size),
            (b"10000000000000000\r\n", ChunkError::Size),
            (b"0000ffffffffffffffff0\r\n", ChunkError::Size),
            (b"0\r\n\n", ChunkError::LineEnding),
            (b"0\r\nX: 1\n\r\n", ChunkError::LineEnding),
            (b"0\r\nnot a field line\r\n\r\n", ChunkError::Trailer),
            (b"0\r\nX Y: 1\r\n\r\n", ChunkError::Trailer),
            (b"0\r\nX: a\x01b\r\n\r\n", ChunkError::Trailer),
            (b"0\r\nX: a\x7fb\r\n\r\n", ChunkError::Trailer),
            (b"0\r\n: 1\r\n\r\n", ChunkError::Trailer),
            (b"0\r\nX: 1\r\n folded\r\n\r\n", ChunkError::Trailer),
            (b"0\r\nX-T : 1\r\n\r\n", ChunkError::Trailer),
        ] {
            let mut dec = ChunkedDecoder::new();
            let mut pos = 0;
            let got = loop {
                match dec.step(&input[pos..]) {
                    Ok(s) if s.consumed == 0 => break Ok(()),
                    Ok(s) => pos += s.consumed,
                    Err(e) => break Err(e),
                }
            };
            assert_eq!(got, Err(err), "{input:?}");
        }
    }
}
