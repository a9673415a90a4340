//! An incremental decoder of chunked request bodies (RFC 9112 section 7.1),
//! strict about line endings so nothing ambiguous reaches the handler.

use std::ops::Range;

/// Most bytes of chunk extensions plus trailers one body may carry.
const MAX_META: usize = 8 * 1024;

/// A malformed chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChunkError {
    /// A chunk size that is not hexadecimal or overflows.
    #[error("invalid chunk size")]
    Size,
    /// A missing CRLF where one is required.
    #[error("missing CRLF in chunked body")]
    LineEnding,
    /// Extensions or trailers past the limit.
    #[error("chunk extensions or trailers too large")]
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a size line.
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
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub(crate) fn new() -> Self {
        Self {
            state: State::Size { digits: 0 },
            remaining: 0,
            meta: 0,
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
                        if digits >= 16 {
                            return Err(ChunkError::Size);
                        }
                        self.remaining = (self.remaining << 4) | u64::from(d);
                        self.state = State::Size { digits: digits + 1 };
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
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError::LineEnding);
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(ChunkError::LineEnding);
                    }
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
    fn refuses_malformed() {
        for (input, err) in [
            (&b"x\r\n"[..], ChunkError::Size),
            (b"\r\n", ChunkError::Size),
            (b"5\nhello\r\n0\r\n\r\n", ChunkError::Size),
            (b"5\r\nhelloXX0\r\n\r\n", ChunkError::LineEnding),
            (b"11111111111111111\r\n", ChunkError::Size),
            (b"0\r\n\n", ChunkError::LineEnding),
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
