//! Shared helpers of recon's benchmarks and the bench-compare harness.
//!
//! Seeded data: [`ensure_case`] writes a `recon gen` case (the same generator
//! the truth tests use) into a directory once and reuses it on later runs, so
//! benchmarks and peer comparisons (polars, DuckDB) read identical files.
//! [`load_case`] loads one into memory for matching benchmarks.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use recon_core::Side;
use recon_core::input::load_side;
use recon_core::rules::Rules;
use recon_core::synth::{self, CasePaths, GenOptions};

/// A generated case loaded into memory, ready to match.
#[derive(Debug)]
pub struct LoadedCase {
    /// The generated rules.
    pub rules: Rules,
    /// The ledger side.
    pub left: Side,
    /// The bank side.
    pub right: Side,
    /// Where the files are.
    pub paths: CasePaths,
    /// Size of `left.csv` plus `right.csv`, bytes.
    pub input_bytes: u64,
}

/// The directory a case of `options` is cached in under `root`, e.g.
/// `root/case-50000-seed-42`.
pub fn case_dir(root: &Path, options: &GenOptions) -> PathBuf {
    root.join(format!(
        "case-{}-seed-{}-{:?}",
        options.records, options.seed, options.bank_amounts
    ))
}

/// Writes the case of `options` under `root` unless a complete copy is there
/// already; returns its paths.
///
/// # Errors
/// When the case cannot be written.
pub fn ensure_case(root: &Path, options: &GenOptions) -> anyhow::Result<CasePaths> {
    let dir = case_dir(root, options);
    let done = dir.join(".complete");
    if done.exists() {
        return Ok(CasePaths {
            left: dir.join("left.csv"),
            right: dir.join("right.csv"),
            rules: dir.join("rules.toml"),
            truth: dir.join("truth.csv"),
        });
    }
    let (_, paths) = synth::write_case(options, &dir)
        .with_context(|| format!("generating a case into {}", dir.display()))?;
    std::fs::write(&done, b"").with_context(|| format!("writing {}", done.display()))?;
    Ok(paths)
}

/// Loads a case written by [`ensure_case`] with its generated rules.
///
/// # Errors
/// When the rules or either side cannot be read.
pub fn load_case(paths: CasePaths) -> anyhow::Result<LoadedCase> {
    let rules = Rules::from_path(&paths.rules)?;
    let left = load_side(&paths.left, &rules.left)?;
    let right = load_side(&paths.right, &rules.right)?;
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let input_bytes = size(&paths.left) + size(&paths.right);
    Ok(LoadedCase {
        rules,
        left,
        right,
        paths,
        input_bytes,
    })
}

/// Where benchmarks cache generated cases: `$RECON_BENCH_DATA`, else
/// `target/bench-data` of the workspace.
pub fn data_root() -> PathBuf {
    std::env::var_os("RECON_BENCH_DATA").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
                .join("bench-data")
        },
        PathBuf::from,
    )
}
