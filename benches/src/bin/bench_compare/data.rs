//! The input files of the upload and reconciliation scenarios, generated
//! with recon-core's seeded generator (the one behind `recon gen`) and cached
//! under the output directory.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use recon_core::synth::{self, GenOptions};

/// Seed of every generated case, so runs compare like with like.
const SEED: u64 = 20_260_125;

/// One generated case on disk.
#[derive(Debug, Clone)]
pub struct CaseFiles {
    /// Records per side asked for.
    pub records: usize,
    /// The ledger side.
    pub left: PathBuf,
    /// The bank side.
    pub right: PathBuf,
    /// The rules text (`rules.toml`).
    pub rules: String,
}

/// The upload file.
#[derive(Debug, Clone)]
pub struct UploadFile {
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Generates (or reuses) the case of `records` records per side under `dir`.
///
/// # Errors
/// When the files cannot be written or read back.
pub fn case(dir: &Path, records: usize) -> anyhow::Result<CaseFiles> {
    let case_dir = dir.join(format!("case-{records}"));
    let left = case_dir.join("left.csv");
    let right = case_dir.join("right.csv");
    let rules_path = case_dir.join("rules.toml");
    if !(left.exists() && right.exists() && rules_path.exists()) {
        let options = GenOptions {
            records,
            seed: SEED,
            ..GenOptions::default()
        };
        synth::generate(&options)
            .write(&case_dir)
            .with_context(|| format!("writing the case under {}", case_dir.display()))?;
    }
    let rules = fs::read_to_string(&rules_path)
        .with_context(|| format!("reading {}", rules_path.display()))?;
    Ok(CaseFiles {
        records,
        left,
        right,
        rules,
    })
}

/// A ledger CSV of about `target` bytes: the left side of a case sized from
/// a small sample's bytes per record.
///
/// # Errors
/// When the files cannot be written or measured.
pub fn upload_file(dir: &Path, target: u64) -> anyhow::Result<UploadFile> {
    let sample = case(dir, 2_000)?;
    let sample_bytes = fs::metadata(&sample.left)
        .with_context(|| format!("measuring {}", sample.left.display()))?
        .len()
        .max(1);
    let per_record = sample_bytes as f64 / 2_000.0;
    let records = ((target as f64 / per_record).ceil() as usize).max(1);
    let big = case(dir, records)?;
    let bytes = fs::metadata(&big.left)
        .with_context(|| format!("measuring {}", big.left.display()))?
        .len();
    Ok(UploadFile {
        path: big.left,
        bytes,
    })
}
