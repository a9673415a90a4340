//! The one adapter between jobs and recon-core's matcher: parse the rules, run
//! the reconciler over the two sides the job loaded, write the results.
//!
//! A run writes `results.csv` and `summary.json` (the two at once), and each
//! side's quarantined rows as `rejects_left.csv` / `rejects_right.csv` (the
//! CLI's files, header `line,column,value,reason`; header only when none were
//! set aside), each complete under a temporary name and then renamed into
//! place; the job runner
//! fsyncs them as it commits the job's end, which is what makes them served
//! (see [`crate::jobs`]). Filtered CSV and NDJSON are produced on request from
//! `results.csv` (see [`crate::results`]).
//! `results.parquet` is written just after (see [`Deferred`]), so a client
//! waiting for the summary does not wait for the Parquet encoder.

use std::io;
use std::path::Path;

use recon_core::input::write_rejects_csv;
use recon_core::matcher::{Progress, Reconciler};
use recon_core::outcome::{RunInfo, SideName, Status};
use recon_core::output::{
    OutputError, StatusFilter, write_results_csv, write_results_parquet, write_summary_json,
};
use recon_core::rules::Rules;
use recon_core::side::Side;

use crate::durable::{self, Staged, StagedFile};

/// What a finished reconciliation reports to the job runner.
#[derive(Debug)]
pub struct Finished {
    /// The summary as `summary.json` holds it.
    pub summary: serde_json::Value,
    /// Result rows by status, for `recon_records_total{status}`.
    pub records: Vec<(String, u64)>,
    /// Milliseconds per stage.
    pub stages: Stages,
    /// `results.csv`, `summary.json` and the two rejects files, in place,
    /// not yet fsynced.
    pub files: [Staged; 4],
}

/// Work left after a job is marked succeeded: writing `results.parquet`.
/// Owns the outcome and sides, so it can run after the job record is final,
/// on another thread (the job runner's background Parquet writer).
pub struct Deferred {
    outcome: recon_core::outcome::Outcome,
    left: Side,
    right: Side,
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred")
            .field("left", &self.left.len())
            .field("right", &self.right.len())
            .finish_non_exhaustive()
    }
}

impl Deferred {
    /// Writes `dir/results.parquet` durably.
    ///
    /// # Errors
    /// A message saying what failed.
    pub fn write_parquet(self, dir: &Path) -> Result<(), String> {
        write_durably(dir, "results.parquet", |w| {
            write_results_parquet(
                &self.outcome,
                &self.left,
                &self.right,
                w,
                &StatusFilter::ALL,
            )
        })
    }
}

/// Milliseconds spent per stage of a job, as `job.json` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stages {
    /// Reading both stored datasets and mapping them to typed sides (one
    /// pass: each side is built batch by batch as its file is read).
    pub load_map_ms: f64,
    /// The matcher.
    pub match_ms: f64,
    /// Writing `results.csv` and `summary.json` into place (their fsyncs
    /// are part of committing the job's end, logged as `commit_ms`).
    pub write_ms: f64,
}

fn ms_since(t: std::time::Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Facts of the run for the summary's audit block.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    /// The job id.
    pub run_id: String,
    /// SHA-256 of the left upload.
    pub left_sha256: Option<String>,
    /// SHA-256 of the right upload.
    pub right_sha256: Option<String>,
}

/// Parses and validates a rules text.
///
/// # Errors
/// The rules error's message (with line and column).
pub fn parse_rules(text: &str) -> Result<Rules, String> {
    Rules::from_toml_str(text, "rules").map_err(|e| e.to_string())
}

/// Checks status names for a results filter.
///
/// # Errors
/// The message naming the unknown status and the known ones.
pub fn check_statuses(names: &[String]) -> Result<(), String> {
    for name in names {
        name.parse::<Status>().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Runs a reconciliation of two sides under `rules` (whose mappings loaded
/// them), writing the results into `dir` (all but Parquet, which the returned
/// [`Deferred`] writes). `progress` hears as records get their status, and
/// may stop the matching ([`Progress::cancelled`]); `load_map_ms` is the time
/// it took to load the sides.
///
/// # Errors
/// A message saying what failed: matching (cancelled included) or writing.
pub fn execute(
    rules: Rules,
    (l, r): (Side, Side),
    load_map_ms: f64,
    facts: RunFacts,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<(Finished, Deferred), String> {
    let mut stages = Stages {
        load_map_ms,
        ..Stages::default()
    };
    let t = std::time::Instant::now();
    let info = RunInfo {
        run_id: facts.run_id,
        left_sha256: facts.left_sha256,
        right_sha256: facts.right_sha256,
    };
    let outcome = Reconciler::new(rules)
        .run_with(&l, &r, &info, progress)
        .map_err(|e| e.to_string())?;
    stages.match_ms = ms_since(t);
    let t = std::time::Instant::now();
    // The summary is written on a second thread while the results are.
    let (results, summary) = std::thread::scope(|s| {
        let summary = s.spawn(|| {
            stage(dir, "summary.json", |w| {
                write_summary_json(&outcome.summary, w)
            })
        });
        let results = stage(dir, "results.csv", |w| {
            write_results_csv(&outcome, &l, &r, w, &StatusFilter::ALL)
        });
        let summary = summary
            .join()
            .unwrap_or_else(|_| Err("writing summary.json panicked".to_owned()));
        (results, summary)
    });
    let rejects = |side: SideName, rows: &Side| {
        let name = rejects_file(side);
        Staged::write_with(&dir.join(name), |w| write_rejects_csv(rows, w))
            .map_err(|e| format!("writing {name}: {e}"))
    };
    let mut files = [
        results?,
        summary?,
        rejects(SideName::Left, &l)?,
        rejects(SideName::Right, &r)?,
    ];
    for f in &mut files {
        f.commit().map_err(|e| format!("writing results: {e}"))?;
    }
    stages.write_ms = ms_since(t);

    let mut counts = [0u64; Status::ALL.len()];
    for a in outcome.left.iter().chain(&outcome.right) {
        if let Some(i) = Status::ALL.iter().position(|s| *s == a.status()) {
            counts[i] += 1;
        }
    }
    let records = Status::ALL
        .iter()
        .zip(counts)
        .map(|(s, n)| (s.as_str().to_owned(), n))
        .collect();
    let summary = serde_json::to_value(&outcome.summary).map_err(|e| e.to_string())?;
    let finished = Finished {
        summary,
        records,
        stages,
        files,
    };
    Ok((
        finished,
        Deferred {
            outcome,
            left: l,
            right: r,
        },
    ))
}

/// The file in a job's directory holding one side's quarantined rows.
pub fn rejects_file(side: SideName) -> &'static str {
    match side {
        SideName::Left => "rejects_left.csv",
        SideName::Right => "rejects_right.csv",
    }
}

/// Writes `dir/name` under a temporary name (see [`Staged`]).
fn stage(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut io::BufWriter<StagedFile>) -> Result<(), OutputError>,
) -> Result<Staged, String> {
    Staged::write_with(&dir.join(name), |w| write(w).map_err(io::Error::other))
        .map_err(|e| format!("writing {name}: {e}"))
}

/// Writes `dir/name` durably: staged, renamed into place, directory fsynced.
fn write_durably(
    dir: &Path,
    name: &str,
    write: impl FnOnce(&mut io::BufWriter<StagedFile>) -> Result<(), OutputError>,
) -> Result<(), String> {
    let mut staged = stage(dir, name, write)?;
    staged
        .sync()
        .and_then(|()| staged.commit())
        .and_then(|()| durable::sync_dir(dir))
        .map_err(|e| format!("writing {name}: {e}"))
}
