//! Request and response bodies: blocking and streaming, never held whole in memory.

use std::fmt;
use std::io::{self, Read};

use bytes::Bytes;

/// A request body as a blocking reader.
///
/// Engines feed it from the socket. A read that stalls past the channel
/// timeout fails with [`io::ErrorKind::TimedOut`]; a body cut short by the
/// client fails with [`io::ErrorKind::UnexpectedEof`]. The application maps
/// both to the right status.
pub struct RequestBody {
    reader: Box<dyn Read + Send>,
    len: Option<u64>,
}

impl RequestBody {
    /// A body with nothing in it.
    pub fn empty() -> Self {
        Self {
            reader: Box::new(io::empty()),
            len: Some(0),
        }
    }

    /// A body read from `reader`; `len` is the declared `Content-Length`, if any.
    pub fn from_reader(reader: impl Read + Send + 'static, len: Option<u64>) -> Self {
        Self {
            reader: Box::new(reader),
            len,
        }
    }

    /// A body held in memory (tests, small bodies).
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        let bytes: Bytes = bytes.into();
        let len = bytes.len() as u64;
        Self {
            reader: Box::new(io::Cursor::new(bytes)),
            len: Some(len),
        }
    }

    /// The declared length, when the client sent `Content-Length`.
    pub fn declared_len(&self) -> Option<u64> {
        self.len
    }
}

impl Read for RequestBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// A response body.
pub enum ResponseBody {
    /// No body.
    Empty,
    /// A small body, complete in memory.
    Full(Bytes),
    /// A streamed body: the engine reads it in `send_bytes` pieces and writes
    /// each as it comes (chunked when no `Content-Length` is set), so a slow
    /// client applies back-pressure to the reader.
    Stream(Box<dyn Read + Send>),
}

impl ResponseBody {
    /// A streamed body from any blocking reader.
    pub fn stream(reader: impl Read + Send + 'static) -> Self {
        ResponseBody::Stream(Box::new(reader))
    }

    /// The exact length when it is known up front.
    pub fn len_hint(&self) -> Option<u64> {
        match self {
            ResponseBody::Empty => Some(0),
            ResponseBody::Full(b) => Some(b.len() as u64),
            ResponseBody::Stream(_) => None,
        }
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseBody::Empty => f.write_str("Empty"),
            ResponseBody::Full(b) => write!(f, "Full({} bytes)", b.len()),
            ResponseBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl From<Bytes> for ResponseBody {
    fn from(b: Bytes) -> Self {
        ResponseBody::Full(b)
    }
}

impl From<Vec<u8>> for ResponseBody {
    fn from(b: Vec<u8>) -> Self {
        ResponseBody::Full(Bytes::from(b))
    }
}

impl From<String> for ResponseBody {
    fn from(s: String) -> Self {
        ResponseBody::Full(Bytes::from(s))
    }
}

impl From<&'static str> for ResponseBody {
    fn from(s: &'static str) -> Self {
        ResponseBody::Full(Bytes::from_static(s.as_bytes()))
    }
}
