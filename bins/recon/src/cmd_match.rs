//! `recon match`: reconcile two files with a rules file, write the results
//! and print the summary as a table.
//!
//! Glue only: the loading, matching and writing are `recon_core`'s. This file
//! parses the arguments, shows progress on large inputs, turns errors into
//! exit codes and renders the summary for a terminal.

use std::fmt::Write as _;
use std::io::{BufWriter, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use recon_core::InputError;
use recon_core::input::{PendingDigest, SideLoad, write_rejects_csv};
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
line, status, rule, score, amount, currency, amount_diff, date_diff_days, then the \
rules' `extra` columns as left_<name> / right_<name>), summary.json, results.parquet \
with --parquet, and rejects_left.csv / rejects_right.csv when rows were quarantined. \
Those of an earlier run that this one does not write are removed once its outputs are \
in place, so --out always describes one run.

Exit codes:
  0  reconciled (whatever the match rate)
  1  could not write the results, or an internal error
  2  bad arguments (an --out that is not a directory, or that holds an input as one
     of the files a run writes) or an invalid rules file (the message names line
     and column)
  3  an input file is missing, unreadable or holds a bad value (the message names
     file, line, column and value), or was written to or replaced during the run
")]
pub struct Args {
    /// The left file, e.g. the ledger: CSV, Parquet, Arrow IPC (file or
    /// stream) or JSON Lines, by the mapping's `format`, else the extension.
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
    /// Worker threads, 1 to 1024 (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
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
            crate::report(&error);
            Ok(ExitCode::from(code))
        }
    }
}

fn reconcile(args: &Args) -> Result<(), Failure> {
    let started = Instant::now();
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(usize::from(n))
            .build_global()
            .context("starting the worker threads")
            .map_err(fail(1))?;
    }
    let rules = Rules::from_path(&args.rules)
        .map_err(anyhow::Error::from)
        .map_err(fail(EXIT_CONFIG))?;
    // A run can take minutes: say now, not after it, that its results
    // have nowhere to go.
    check_out_dir(&args.out, &[&args.left, &args.right, &args.rules]).map_err(fail(EXIT_CONFIG))?;

    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let show_progress =
        std::io::stderr().is_terminal() && size(&args.left) + size(&args.right) > PROGRESS_BYTES;

    // Both sides load at once: one MultiProgress keeps their spinners apart.
    // Only the roles the rules read are built (the others' columns are still
    // checked to exist). Each file's SHA-256 for the audit block is read
    // once the file is loaded, on a thread that runs only when a core is
    // idle (see `start_digest`): the first file's can start while the
    // other is still loading.
    let bars = indicatif::MultiProgress::new();
    let load = |path: &Path, name: SideName| -> Result<(Side, Digest), Failure> {
        let spinner = show_progress.then(|| spinner(&bars, format!("loading {}", path.display())));
        let loaded = SideLoad::new(path, rules.mapping(name))
            .roles(rules.roles(name))
            .load_digest_later()
            .map_err(anyhow::Error::from)
            .map_err(fail(EXIT_INPUT));
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        let (side, pending) = loaded?;
        Ok((side, start_digest(pending).map_err(fail(1))?))
    };
    let (left, right) = rayon::join(
        || load(&args.left, SideName::Left),
        || load(&args.right, SideName::Right),
    );
    let ((left, left_digest), (right, right_digest)) = (left?, right?);
    let loaded = started.elapsed();
    let digests = [left_digest, right_digest];
    // The digests are filled in once read, before summary.json is written.
    let info = RunInfo {
        run_id: run_id(),
        left_sha256: None,
        right_sha256: None,
    };
    let progress = show_progress.then(|| BarProgress::new(left.len() + right.len()));
    let reconciler = Reconciler::new(rules);
    let mut outcome = match &progress {
        Some(p) => reconciler.run_with(&left, &right, &info, p),
        None => reconciler.run_with(&left, &right, &info, &NoProgress),
    }
    .map_err(anyhow::Error::from)
    .map_err(fail(1))?;
    if let Some(p) = progress {
        p.bar.finish_and_clear();
    }
    let matched = started.elapsed();

    // Results are staged first, so a file that changed under the run
    // (its digest refused) replaces no earlier output.
    let staged = stage_results(args, &left, &right, &outcome).map_err(fail(1))?;
    let [left_sha256, right_sha256] = digests.map(Digest::finish);
    outcome.summary.audit.left_sha256 = Some(left_sha256?);
    outcome.summary.audit.right_sha256 = Some(right_sha256?);
    let staged = stage_rest(args, staged, &left, &right, &outcome).map_err(fail(1))?;
    let mut table = render_summary(&outcome.summary);
    // At 1M records, freeing the sides and results (hundreds of MB) and
    // putting the outputs in place (renaming over an earlier results.csv
    // drops its page cache) each keep one core busy for tens of ms: at once.
    let written = std::thread::scope(|scope| {
        scope.spawn(move || drop((left, right, outcome)));
        staged.commit()
    })
    .map_err(fail(1))?;
    remove_stale_outputs(&args.out, &written);
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

/// A file's SHA-256 being read on a thread of its own.
struct Digest(std::thread::JoinHandle<Result<String, InputError>>);

impl Digest {
    /// The digest, once read: a file changed or unreadable meanwhile is the
    /// input's failure (exit 3), a thread that panicked an internal one.
    fn finish(self) -> Result<String, Failure> {
        let digest = self.0.join().map_err(|_| {
            fail(1)(anyhow::anyhow!(
                "the thread reading an input's digest panicked"
            ))
        })?;
        digest
            .map_err(anyhow::Error::from)
            .map_err(fail(EXIT_INPUT))
    }
}

/// Starts reading a file's SHA-256 on a thread that runs only when a core
/// would otherwise idle: matching and writing leave gaps (a pass's
/// sequential steps, the writer's waits) that the hashing fills, instead of
/// lengthening the load as hashing on the reading thread did. When the
/// digest is needed and not done, the waiting frees a core for it.
fn start_digest(pending: PendingDigest) -> anyhow::Result<Digest> {
    std::thread::Builder::new()
        .name("digest".into())
        .spawn(move || {
            run_only_when_idle();
            pending.compute()
        })
        .map(Digest)
        .context("starting a thread to read an input's digest")
}

/// Moves the calling thread to Linux's idle scheduling class (`SCHED_IDLE`):
/// it runs only on a core no other thread wants, and any other thread waking
/// takes the core back at once. Elsewhere, or if refused, nothing changes.
fn run_only_when_idle() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is an initialised `sched_param` that outlives the
        // call; pid 0 names the calling thread, whose scheduling class is
        // all the call changes.
        let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    }
}

/// Writes `path`'s content to a file beside it (`.NAME.ID.tmp`), through the
/// service's staged files, to be renamed over `path` by
/// [`Staged::commit`]; dropped uncommitted, the temporary file is removed.
/// A run failing mid-write thus leaves the previous file (or none) in
/// place, never a truncated one; a killed run leaves the temporary file
/// behind under its dot name. Not fsynced: the CLI's outputs are as durable
/// as any file a program writes and closes.
fn stage(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<StagedFile>) -> Result<(), output::OutputError>,
) -> anyhow::Result<Staged> {
    Staged::write_with(path, |w| write(w).map_err(std::io::Error::other))
        .with_context(|| format!("writing {}", path.display()))
}

/// The Parquet results, written with `--parquet`.
const PARQUET: &str = "results.parquet";

/// The rejects files of the left and right sides, written when rows were
/// quarantined.
const REJECTS: [&str; 2] = ["rejects_left.csv", "rejects_right.csv"];

/// The outputs a run writes only sometimes.
const OPTIONAL_OUTPUTS: [&str; 3] = [PARQUET, REJECTS[0], REJECTS[1]];

/// Removes from `dir` the optional outputs of an earlier run that this run,
/// which wrote `written`, did not: a rejects file left from a run with bad
/// rows would otherwise sit beside results that have none. The results are
/// in place by now, so a file that cannot be removed is a warning.
fn remove_stale_outputs(dir: &Path, written: &[PathBuf]) {
    for name in OPTIONAL_OUTPUTS {
        let path = dir.join(name);
        if written.contains(&path) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                crate::warn(format_args!(
                    "{} is from an earlier run and could not be removed: {e}",
                    path.display()
                ));
            }
            _ => {}
        }
    }
}

/// Fails when `--out` names something other than a directory (it need not
/// exist yet: it is created when the results are written), or when one of
/// the files a run writes or removes there is one of its `inputs` (an input
/// named `results.csv` in the output directory): the run would replace or
/// delete its own input. Checked before the inputs are read; should `--out`
/// be replaced by a file meanwhile, creating it fails when the results are
/// written.
fn check_out_dir(dir: &Path, inputs: &[&Path]) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            anyhow::bail!("--out {} exists and is not a directory", dir.display())
        }
        Ok(_) => {}
        Err(_) => return Ok(()),
    }
    for name in ["results.csv", "summary.json"]
        .into_iter()
        .chain(OPTIONAL_OUTPUTS)
    {
        let output = dir.join(name);
        if let Some(input) = inputs.iter().find(|input| same_file(input, &output)) {
            anyhow::bail!(
                "--out {} holds the input {} as {name}, which this run would replace or \
                 remove: choose another --out, or move the input",
                dir.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// Whether two paths name one existing file (through links too).
fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
    }
}

/// Outputs written but not yet in place.
struct StagedOutputs {
    files: Vec<(PathBuf, Staged)>,
}

/// Stages results.csv (and results.parquet with `--parquet`).
fn stage_results(
    args: &Args,
    left: &Side,
    right: &Side,
    outcome: &Outcome,
) -> anyhow::Result<StagedOutputs> {
    let dir = &args.out;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = Vec::new();
    let path = dir.join("results.csv");
    let staged = stage(&path, |w| {
        output::write_results_csv(outcome, left, right, w, &StatusFilter::ALL)
    })?;
    files.push((path, staged));
    if args.parquet {
        let path = dir.join(PARQUET);
        let staged = stage(&path, |w| {
            output::write_results_parquet(outcome, left, right, w, &StatusFilter::ALL)
        })?;
        files.push((path, staged));
    }
    Ok(StagedOutputs { files })
}

/// Stages summary.json and any rejects files after `staged`.
fn stage_rest(
    args: &Args,
    staged: StagedOutputs,
    left: &Side,
    right: &Side,
    outcome: &Outcome,
) -> anyhow::Result<StagedOutputs> {
    let dir = &args.out;
    let mut files = staged.files;
    let path = dir.join("summary.json");
    let summary = stage(&path, |w| output::write_summary_json(&outcome.summary, w))?;
    files.push((path, summary));
    for (name, side) in REJECTS.into_iter().zip([left, right]) {
        if side.rejects.is_empty() {
            continue;
        }
        let path = dir.join(name);
        let rejects = stage(&path, |w| Ok(write_rejects_csv(side, w)?))?;
        files.push((path, rejects));
    }
    Ok(StagedOutputs { files })
}

impl StagedOutputs {
    /// Puts every output in place, in order (results first); returns their
    /// paths.
    fn commit(self) -> anyhow::Result<Vec<PathBuf>> {
        let mut written = Vec::with_capacity(self.files.len());
        for (path, mut file) in self.files {
            file.commit()
                .with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
        }
        Ok(written)
    }
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
