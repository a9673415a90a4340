//! tuning's integration tests: detection on fixture trees, layering with an explicit environment.

mod detect;
mod layering;
