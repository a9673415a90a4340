//! recon-core: the record-matching engine.
//!
//! Two record sets (a *left* and a *right* side, e.g. an internal ledger and a
//! bank statement) are loaded into typed, columnar [`Side`]s, then matched by an
//! ordered cascade of rule passes. Every input record ends up in exactly one
//! result row; money is exact (integer minor units, never `f64`).
//!
//! This crate knows nothing of HTTP, async runtimes or servers.

pub mod date;
pub mod error;
pub mod synth;
pub mod input;
pub mod mapping;
pub mod matcher;
pub mod money;
pub mod outcome;
pub mod output;
pub mod rules;
pub mod side;
pub mod text;

pub use money::Currency;
pub use side::{Reject, Side, TextColumn};
