//! `recon match`: reconcile two files with a rules file, write the results
//! and print the summary as a table.
//!
//! Glue only: the loading, matching and writing are `recon_core`'s. This file
//! parses the arguments, shows progress on large inputs, turns errors into
//! exit codes and renders the summary for a terminal.

use std::fmt::Write as _;
use std::io::{BufWriter, IsTerminal as _, Write as _};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use recon_core::input::{SideLoad, write_rejects_csv};
use recon_core::matcher::{NoProgress, Progress, Reconciler};
use recon_core::outcome::{Outcome, RunInfo, SideName, SideSummary, Status, Summary};
use recon_core::output::{self, StatusFilter};
use recon_core::rules::Rules;
use recon_core::side::Side;
use recon_service::durable::{Staged, StagedFile};

/// Inputs larger than this (both files together) get progress bars when
/// stderr is a terminal.
const PROGRESS_BYTES: u64 = 5 << 20;

/// Exit codes, documented in `--help`.
const EXIT_CONFIG: u8 = 2;
/// Exit code for unreadable or invalid input data.
const EXIT_INPUT: u8 = 3;

/// Arguments of `recon match`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Writes into --out: results.csv (one row per input record: match_id, side, record_id, \
status, rule, score, amount_diff, date_diff_days), summary.json, results.parquet with \
--parquet, and rejects_left.csv / rejects_right.csv when rows were quarantined.

Exit codes:
  0  reconciled (whatever the match rate)
  1  could not write the results, or an internal error
  2  bad arguments or an invalid rules file (the message names line and column)
  3  an input file is missing, unreadable or holds a bad value (the message names
     file, line, column and value)")]
pub struct Args {
    /// The left file, e.g. the ledger (CSV, Parquet, Arrow IPC or JSON Lines).
    #[arg(long)]
    left: PathBuf,
    /// The right file, e.g. the bank statement.
    #[arg(long)]
    right: PathBuf,
    /// The rules file (TOML): both sides' mappings and the matching passes.
    #[arg(long)]
    rules: PathBuf,
    /// Directory for the results (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Also write results.parquet.
    #[arg(long)]
    parquet: bool,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<NonZeroUsize>,
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn fail(code: u8) -> impl FnOnce(anyhow::Error) -> Failure {
    move |error| Failure { code, error }
}

/// Runs `recon match`.
///
/// # Errors
/// Never: failures are printed here and returned as exit codes (see `--help`).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match reconcile(&args) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(Failure { code, error }) => {
            eprintln!("error: {error:#}");
            Ok(ExitCode::from(code))
        }
    }
}

fn reconcile(args: &Args) -> Result<(), Failure> {
    let started = Instant::now();
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.get())
            .build_global()
            .context("starting the worker threads")
            .map_err(fail(1))?;
    }
    let rules = Rules::from_path(&args.rules)
        .map_err(anyhow::Error::from)
        .map_err(fail(EXIT_CONFIG))?;

    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let show_progress =
        std::io::stderr().is_terminal() && size(&args.left) + size(&args.right) > PROGRESS_BYTES;

    // Both sides load at once: one MultiProgress keeps their spinners apart.
    // Only the roles the rules read are built (the others' columns are still
    // checked to exist). Each file's SHA-256 for the audit block is of the
    // bytes loaded (a CSV is hashed as it is read).
    let bars = indicatif::MultiProgress::new();
    let load = |path: &Path, name: SideName| -> Result<(Side, String), Failure> {
        let spinner = show_progress.then(|| spinner(&bars, format!("loading {}", path.display())));
        let side = SideLoad::new(path, rules.mapping(name))
            .roles(rules.roles(name))
            .load_digested()
            .map_err(anyhow::Error::from)
            .map_err(fail(EXIT_INPUT));
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        side
    };
    let (left, right) = rayon::join(
        || load(&args.left, SideName::Left),
        || load(&args.right, SideName::Right),
    );
    let ((left, left_sha256), (right, right_sha256)) = (left?, right?);
    let loaded = started.elapsed();
    let info = RunInfo {
        run_id: run_id(),
        left_sha256: Some(left_sha256),
        right_sha256: Some(right_sha256),
    };
    let progress = show_progress.then(|| BarProgress::new(left.len() + right.len()));
    let reconciler = Reconciler::new(rules);
    let outcome = match &progress {
        Some(p) => reconciler.run_with(&left, &right, &info, p),
        None => reconciler.run_with(&left, &right, &info, &NoProgress),
    }
    .map_err(anyhow::Error::from)
    .map_err(fail(1))?;
    if let Some(p) = progress {
        p.bar.finish_and_clear();
    }
    let matched = started.elapsed();

    let written = write_outputs(args, &left, &right, &outcome).map_err(fail(1))?;
    let mut table = render_summary(&outcome.summary);
    let _ = writeln!(
        table,
        "\ntime: {} load, {} match, {} write",
        ms(loaded),
        ms(matched - loaded),
        ms(started.elapsed() - matched)
    );
    let _ = writeln!(table, "wrote:");
    for path in written {
        let _ = writeln!(table, "  {}", path.display());
    }
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) is not a failed reconciliation.
    let _ = stdout.write_all(table.as_bytes());
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// A run id unique enough for an audit trail: time and process id.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("cli-{nanos:x}-{:x}", std::process::id())
}

/// Writes `path` whole or not at all, through the service's staged files: a
/// file beside it (`.NAME.ID.tmp`) renamed over `path` once complete. A run
/// failing mid-write removes its temporary file and leaves the previous file
/// (or none) in place, never a truncated one; a killed run leaves the
/// temporary file behind under its dot name. Not fsynced: the CLI's outputs
/// are as durable as any file a program writes and closes.
fn write_whole(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<StagedFile>) -> Result<(), output::OutputError>,
) -> anyhow::Result<()> {
    Staged::write_with(path, |w| write(w).map_err(std::io::Error::other))
        .and_then(|mut staged| staged.commit())
        .with_context(|| format!("writing {}", path.display()))
}

fn write_outputs(
    args: &Args,
    left: &Side,
    right: &Side,
    outcome: &Outcome,
) -> anyhow::Result<Vec<PathBuf>> {
    let dir = &args.out;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();

    let path = dir.join("results.csv");
    write_whole(&path, |w| {
        output::write_results_csv(outcome, left, right, w, &StatusFilter::ALL)
    })?;
    written.push(path);

    if args.parquet {
        let path = dir.join("results.parquet");
        write_whole(&path, |w| {
            output::write_results_parquet(outcome, left, right, w, &StatusFilter::ALL)
        })?;
        written.push(path);
    }

    let path = dir.join("summary.json");
    write_whole(&path, |w| output::write_summary_json(&outcome.summary, w))?;
    written.push(path);

    for (name, side) in [("rejects_left.csv", left), ("rejects_right.csv", right)] {
        if side.rejects.is_empty() {
            continue;
        }
        let path = dir.join(name);
        write_whole(&path, |w| Ok(write_rejects_csv(side, w)?))?;
        written.push(path);
    }
    Ok(written)
}

fn spinner(bars: &indicatif::MultiProgress, message: String) -> indicatif::ProgressBar {
    let s = bars.add(indicatif::ProgressBar::new_spinner());
    s.set_message(message);
    s.enable_steady_tick(Duration::from_millis(120));
    s
}

/// Matching progress on a bar (large inputs on a terminal only).
struct BarProgress {
    bar: indicatif::ProgressBar,
}

impl BarProgress {
    fn new(records: usize) -> Self {
        let bar = indicatif::ProgressBar::new(records as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg:>12} [{bar:40}] {pos}/{len} records ({elapsed})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message("matching");
        Self { bar }
    }
}

impl Progress for BarProgress {
    fn update(&self, done: u64, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(done);
    }
}

/// Renders the summary as a plain-text table: per status and currency the
/// counts and exact totals of both sides, then the match rates and what each
/// rule did.
fn render_summary(s: &Summary) -> String {
    let mut out = String::new();
    let name = s.name.as_deref().unwrap_or("reconciliation");
    let _ = writeln!(
        out,
        "{name}: {} left records ({}), {} right records ({})",
        s.left.records, s.left.source, s.right.records, s.right.source
    );
    for (label, side) in [("left", &s.left), ("right", &s.right)] {
        if side.rejects > 0 {
            let _ = writeln!(out, "  {} {label} rows quarantined", side.rejects);
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<10} {:<4} {:>9} {:>18} {:>9} {:>18}",
        "status", "ccy", "left", "left total", "right", "right total"
    );
    let mut currencies: Vec<&String> = s.left.totals.keys().chain(s.right.totals.keys()).collect();
    currencies.sort();
    currencies.dedup();
    let cell = |side: &SideSummary, status: Status, ccy: &str| {
        side.by_status
            .get(&status)
            .and_then(|m| m.get(ccy))
            .map(|t| (t.count, t.amount.clone()))
    };
    for status in Status::ALL {
        for ccy in &currencies {
            let l = cell(&s.left, status, ccy);
            let r = cell(&s.right, status, ccy);
            if l.is_none() && r.is_none() {
                continue;
            }
            let (lc, lt) = l.unwrap_or((0, String::new()));
            let (rc, rt) = r.unwrap_or((0, String::new()));
            let _ = writeln!(
                out,
                "{:<10} {:<4} {:>9} {:>18} {:>9} {:>18}",
                status.as_str(),
                ccy,
                lc,
                lt,
                rc,
                rt
            );
        }
    }
    for ccy in &currencies {
        let total = |side: &SideSummary| {
            side.totals
                .get(ccy.as_str())
                .map(|t| (t.count, t.amount.clone()))
                .unwrap_or((0, String::new()))
        };
        let (lc, lt) = total(&s.left);
        let (rc, rt) = total(&s.right);
        let _ = writeln!(
            out,
            "{:<10} {:<4} {:>9} {:>18} {:>9} {:>18}",
            "total", ccy, lc, lt, rc, rt
        );
    }
    let _ = writeln!(
        out,
        "\nmatch rate: left {:.1}%, right {:.1}%, overall {:.1}%",
        s.left.match_rate * 100.0,
        s.right.match_rate * 100.0,
        s.match_rate * 100.0
    );
    let _ = writeln!(out);
    let width = s
        .rules
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:<width$} {:<5} {:>9} {:>9} {:>9} {:>9}",
        "rule", "kind", "groups", "ambiguous", "left", "right"
    );
    for r in &s.rules {
        let _ = writeln!(
            out,
            "{:<width$} {:<5} {:>9} {:>9} {:>9} {:>9}",
            r.name, r.kind, r.groups, r.ambiguous_groups, r.left, r.right
        );
    }
    out
}
