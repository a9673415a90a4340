//! tuning's integration tests: detection on fixture trees, layering with an explicit environment.

// Test helpers outside #[test] fns unwrap too; a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod detect;
mod docs;
mod layering;
