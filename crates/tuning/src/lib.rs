//! tuning: from vCPUs and RAM to every server setting, and recon's one layered configuration.
//!
//! [`config::Config`] is the typed configuration every entry point uses. The
//! tuning half (resources, profiles, `recommend`) is pure; only the detection
//! module reads files.

pub mod config;

pub use config::{ApiKey, Config, Engine, Overload, ServerSettings};
