//! recon-core: the record-matching engine.
//!
//! Two record sets (a *left* and a *right* side, e.g. an internal ledger and a
//! bank statement) are loaded into typed, columnar [`Side`]s, then matched by an
//! ordered cascade of rule passes ([`Rules`], run by a [`Reconciler`]). Every
//! input record ends up in exactly one result row with a [`Status`]; money is
//! exact (integer minor units, never `f64`); the same inputs and rules give
//! byte-identical results whatever the thread count.
//!
//! This crate knows nothing of HTTP, async runtimes or servers: it depends on
//! no HTTP crate and no async runtime (no tokio, no may). The rules file format
//! is documented in `docs/rules.md`.
//!
//! # Example
//!
//! ```
//! use recon_core::{Reconciler, Rules, NoProgress, Status, load_side};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let ledger = dir.path().join("ledger.csv");
//! let bank = dir.path().join("bank.csv");
//! std::fs::write(&ledger, "id,amount,ref\nL1,100.00,INV-001\nL2,50.00,INV-002\n")?;
//! std::fs::write(&bank, "id,amount,ref\nB1,100.00,inv 001\nB2,7.00,X\n")?;
//!
//! let rules = Rules::from_toml_str(
//!     r#"
//!     [left]
//!     id = "id"
//!     amount = "amount"
//!     currency_value = "EUR"
//!     reference = "ref"
//!     [right]
//!     id = "id"
//!     amount = "amount"
//!     currency_value = "EUR"
//!     reference = "ref"
//!     [normalize]
//!     strip_prefixes = ["INV"]
//!     [[pass]]
//!     name = "by-reference"
//!     reference = "normalized"
//!     amount = { abs = "0.01" }
//!     "#,
//!     "rules.toml",
//! )?;
//! let left = load_side(&ledger, &rules.left)?;
//! let right = load_side(&bank, &rules.right)?;
//! let outcome = Reconciler::new(rules).run(&left, &right, &NoProgress)?;
//!
//! assert_eq!(outcome.left[0].status(), Status::Matched);
//! assert_eq!(outcome.left[1].status(), Status::Unmatched);
//! assert_eq!(outcome.summary.left.totals["EUR"].amount, "150.00");
//! assert_eq!(outcome.summary.rules[0].groups, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Progress and stopping
//!
//! A run reports through a [`Progress`], which may also stop it: once its
//! `cancelled` answers `true` (a deadline passed, a user asked) the run ends
//! with [`ReconError::Cancelled`] and nothing of it is kept. It is polled
//! before any work, between passes and, while a pass works, every 16k
//! candidates; the linear steps between passes (reference and name
//! keys, duplicates) run to their end first.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use recon_core::{Progress, ReconError, Reconciler, Rules, Side};
//!
//! struct Deadline(Instant);
//!
//! impl Progress for Deadline {
//!     fn update(&self, _done: u64, _total: u64) {}
//!     fn cancelled(&self) -> bool {
//!         Instant::now() >= self.0
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rules = Rules::from_toml_str(
//!     "[left]\nid = \"id\"\namount = \"amount\"\ncurrency_value = \"EUR\"\n\
//!      [right]\nid = \"id\"\namount = \"amount\"\ncurrency_value = \"EUR\"\n\
//!      [[pass]]\nname = \"amount\"\nreference = \"ignore\"\namount = { abs = \"0.00\" }\n",
//!     "rules.toml",
//! )?;
//! let (left, right) = (Side::default(), Side::default());
//! let reconciler = Reconciler::new(rules);
//! // A deadline of now has passed by the first poll: no pass runs.
//! let now = Deadline(Instant::now());
//! let run = reconciler.run(&left, &right, &now);
//! assert!(matches!(run, Err(ReconError::Cancelled)));
//! // An hour is plenty.
//! let hour = Deadline(Instant::now() + Duration::from_secs(3600));
//! assert!(reconciler.run(&left, &right, &hour).is_ok());
//! # Ok(())
//! # }
//! ```

pub mod date;
pub mod error;
pub mod input;
pub mod mapping;
pub mod matcher;
pub mod money;
pub mod outcome;
pub mod output;
pub mod rules;
pub mod side;
pub mod synth;
pub mod text;

pub use error::InputError;
pub use input::{PendingDigest, SideLoad, load_side};
pub use mapping::SideMapping;
pub use matcher::{NoProgress, Progress, Reconciler};
pub use money::Currency;
pub use outcome::{
    Assignment, Outcome, ReconError, RunInfo, SideName, Status, Summary, sha256_hex, sha256_reader,
};
pub use output::{
    OutputError, StatusFilter, write_results_csv, write_results_ndjson, write_results_parquet,
    write_summary_json,
};
pub use rules::{Role, RoleSet, Rules, RulesError};
pub use side::{Reject, Side, TextColumn};
