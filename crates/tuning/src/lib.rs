//! tuning: from vCPUs and RAM to every server setting, and recon's one layered configuration.
//!
//! [`config::Config`] is the typed configuration every entry point uses;
//! [`load`] builds it from defaults, the tuning recommendation, a TOML file,
//! the environment and flags, remembering where each value came from. The
//! tuning half ([`Resources`], [`Profile`], [`recommend`], the instance
//! [`catalog`]) is pure; only the [`detect`] module reads cgroup and proc files.

pub mod catalog;
pub mod config;
pub mod detect;
mod error;
mod load;
pub mod recommend;
mod resources;
mod settings;
pub mod units;

pub use config::{ApiKey, Config, Engine, Overload, ServerSettings};
pub use error::ConfigError;
pub use load::{
    CONFIG_ENV, DEFAULT_CONFIG_FILE, Entry, LoadOptions, Loaded, Overrides, Provenance, Source,
    load, load_from,
};
pub use recommend::{Recommendation, Recommended, recommend};
pub use resources::{Profile, Resources, UnknownProfile, parse_vcpus};
pub use settings::{env_names, setting_keys};
