//! The `recon` binary's integration tests: the real binary, real files, real
//! sockets on 127.0.0.1. One binary, one module per area.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_config;
mod cli_match;
mod conformance;
mod deploy_files;
mod horizontal;
mod raw_http;
mod support;
