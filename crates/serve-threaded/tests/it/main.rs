//! serve-threaded's integration tests: `serve` started in-process on a
//! 127.0.0.1:0 listener, driven by a raw TCP client (bytes in, bytes out).

// Test helpers fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

mod http1;
mod limits;
mod support;
mod waitress;
