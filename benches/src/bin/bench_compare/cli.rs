//! Command-line arguments of `bench-compare` and the plan they resolve to.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Compare recon's two engines with bare hello-world ceilings and, with
/// `--peers`, with Waitress and Uvicorn. Builds nothing: point it at built
/// binaries (`just bench-compare` builds them first).
#[derive(Debug, Parser)]
#[command(name = "bench-compare", version)]
pub struct Args {
    /// Everything in well under a minute, to prove the harness works (not to judge numbers).
    #[arg(long)]
    pub quick: bool,
    /// Also run the Python peers (Flask on Waitress, FastAPI on Uvicorn).
    #[arg(long)]
    pub peers: bool,
    /// The `recon` binary (default: beside bench-compare).
    #[arg(long)]
    pub recon: Option<PathBuf>,
    /// The bare hyper hello-world binary (default: beside bench-compare).
    #[arg(long)]
    pub hello_hyper: Option<PathBuf>,
    /// The bare may_minihttp hello-world binary (default: beside bench-compare).
    #[arg(long)]
    pub hello_may: Option<PathBuf>,
    /// Python interpreter with the peers' packages (`just bench-peers-setup`).
    #[arg(long, default_value = "target/peers-venv/bin/python")]
    pub python: PathBuf,
    /// Directory of the peers' Python apps.
    #[arg(long, default_value = "benches/peers")]
    pub peers_dir: PathBuf,
    /// The load generator (wrk).
    #[arg(long, default_value = "wrk")]
    pub wrk: PathBuf,
    /// Output directory: results.json, chart.svg, server logs, generated data.
    #[arg(long, default_value = "target/bench-compare")]
    pub out: PathBuf,
    /// Worker threads of every Rust server (recon engines and hello-worlds).
    /// Default: the number of CPUs given to the server.
    #[arg(long)]
    pub workers: Option<NonZeroUsize>,
    /// Handler threads of the threaded engine (Waitress's `threads`).
    #[arg(long, default_value = "8")]
    pub threads: NonZeroUsize,
    /// CPU pinning of server and load generator with taskset.
    #[arg(long, value_enum, default_value_t = Pin::Auto)]
    pub pin: Pin,
    /// Run only these servers (threaded, async, hello-may, hello-hyper, waitress, uvicorn).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Extra argument passed to every `recon serve` (repeatable).
    #[arg(long = "recon-arg", allow_hyphen_values = true)]
    pub recon_args: Vec<String>,
    /// Seconds of each GET /health run at 50 and 200 connections (default 10, quick 1).
    #[arg(long)]
    pub load_secs: Option<u64>,
    /// The issues' own setup ("this 2-core machine, load generator sharing
    /// the cores"): server, wrk and the upload/reconciliation client share
    /// every CPU (no taskset), Rust servers with one worker per CPU, plus
    /// hello-may with the threaded engine's single may worker. Runs startup,
    /// GET /health at 50 and 200 connections, the upload and the
    /// reconciliation (recon engines and Python peers) and memory; no
    /// concurrency sweep. `--rounds` times, servers taking turns.
    #[arg(long)]
    pub unpinned: bool,
    /// Rounds of the scenarios, servers taking turns each round; the table
    /// shows each GET /health and memory figure's median over the rounds and
    /// the median of every round's uploads and reconciliations pooled
    /// (default 1, with `--unpinned` 5).
    #[arg(long)]
    pub rounds: Option<NonZeroUsize>,
    /// Run only these scenarios: `health` (GET /health at fixed connections,
    /// plus the concurrency sweep unless `--unpinned`), `upload`,
    /// `reconcile`. Startup and memory come with every server start and
    /// always run. Default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<Scenario>,
}

/// A scenario `--scenarios` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// GET /health under wrk at fixed connections, and the sweep when pinned.
    Health,
    /// The large CSV upload.
    Upload,
    /// Upload both sides, reconcile with `?wait`, fetch the summary.
    Reconcile,
}

impl Args {
    /// A sibling binary: the given path, or `name` in bench-compare's own
    /// directory (so `$CARGO_TARGET_DIR/release/bench-compare` finds its
    /// neighbours wherever the target directory is).
    pub fn binary(given: Option<&PathBuf>, name: &str) -> PathBuf {
        if let Some(p) = given {
            return p.clone();
        }
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join(name)))
            .unwrap_or_else(|| PathBuf::from("target/release").join(name))
    }
}

/// Where server and load generator run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pin {
    /// Split the CPUs in two halves with taskset when taskset exists and there are 2+ CPUs.
    Auto,
    /// No pinning: server and load generator share every CPU.
    Off,
}

/// What each scenario does, resolved from the arguments.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Startups measured (median reported).
    pub startup_runs: usize,
    /// Connections of the fixed GET /health runs.
    pub health_connections: Vec<usize>,
    /// Duration of each fixed GET /health run.
    pub health_duration: Duration,
    /// Concurrency steps of the search for the largest p99 < 100 ms.
    pub sweep_steps: Vec<usize>,
    /// Duration of each sweep step.
    pub sweep_duration: Duration,
    /// p99 bound of the sweep.
    pub sweep_p99_limit: Duration,
    /// Target size of the upload file in bytes (MB here are 10^6 bytes).
    pub upload_bytes: u64,
    /// Uploads measured (median reported).
    pub upload_runs: usize,
    /// Records per side of the reconciliation case.
    pub recon_records: usize,
    /// Reconciliations measured (median reported).
    pub recon_runs: usize,
    /// Longest time a server may take to answer its first /health.
    pub startup_timeout: Duration,
    /// GET /health at the fixed connection counts (`--scenarios health`).
    pub health: bool,
    /// The concurrency sweep: with `health`, and not under `--unpinned`.
    pub sweep: bool,
    /// The upload (`--scenarios upload`), for recon engines and peers.
    pub upload: bool,
    /// The reconciliation (`--scenarios reconcile`), for recon engines and peers.
    pub reconcile: bool,
    /// Rounds of every scenario, servers taking turns; figures are medians.
    pub rounds: usize,
}

impl Plan {
    /// The plan of a full or a `--quick` run.
    pub fn new(args: &Args) -> Self {
        let wants = |s: Scenario| args.scenarios.is_empty() || args.scenarios.contains(&s);
        let health = wants(Scenario::Health);
        let sweep = health && !args.unpinned;
        let upload = wants(Scenario::Upload);
        let reconcile = wants(Scenario::Reconcile);
        let default_rounds = if args.unpinned { 5 } else { 1 };
        let rounds = args.rounds.map_or(default_rounds, NonZeroUsize::get);
        if args.quick {
            Self {
                startup_runs: 2,
                health_connections: vec![50, 200],
                health_duration: Duration::from_secs(args.load_secs.unwrap_or(1)),
                sweep_steps: vec![50, 200, 400],
                sweep_duration: Duration::from_secs(1),
                sweep_p99_limit: Duration::from_millis(100),
                upload_bytes: 5_000_000,
                upload_runs: 2,
                recon_records: 5_000,
                recon_runs: 2,
                startup_timeout: Duration::from_secs(20),
                health,
                sweep,
                upload,
                reconcile,
                rounds,
            }
        } else {
            Self {
                startup_runs: 5,
                health_connections: vec![50, 200],
                health_duration: Duration::from_secs(args.load_secs.unwrap_or(10)),
                sweep_steps: vec![50, 100, 200, 400, 800, 1600, 3200],
                sweep_duration: Duration::from_secs(5),
                sweep_p99_limit: Duration::from_millis(100),
                upload_bytes: 100_000_000,
                upload_runs: 3,
                recon_records: 50_000,
                recon_runs: 3,
                startup_timeout: Duration::from_secs(30),
                health,
                sweep,
                upload,
                reconcile,
                rounds,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Args, Plan};

    fn plan(args: &[&str]) -> Plan {
        Plan::new(
            &Args::try_parse_from(std::iter::once("bench-compare").chain(args.iter().copied()))
                .unwrap(),
        )
    }

    #[test]
    fn pinned_default_runs_everything_once() {
        let p = plan(&[]);
        assert!(p.health && p.sweep && p.upload && p.reconcile);
        assert_eq!(p.rounds, 1);
        assert_eq!(p.upload_bytes, 100_000_000);
        assert_eq!(p.recon_records, 50_000);
    }

    #[test]
    fn unpinned_drops_only_the_sweep() {
        let p = plan(&["--unpinned"]);
        assert!(!p.sweep);
        assert!(p.health && p.upload && p.reconcile);
        assert_eq!(p.rounds, 5);
        assert_eq!(p.health_connections, vec![50, 200]);
        assert_eq!((p.upload_runs, p.recon_runs), (3, 3));
        assert_eq!(p.recon_records, 50_000);
        let q = plan(&["--unpinned", "--quick", "--rounds", "2"]);
        assert!(!q.sweep && q.health && q.upload && q.reconcile);
        assert_eq!(q.rounds, 2);
        assert_eq!(q.recon_records, 5_000);
    }

    #[test]
    fn scenarios_select() {
        let p = plan(&["--unpinned", "--scenarios", "reconcile"]);
        assert!(p.reconcile);
        assert!(!p.health && !p.sweep && !p.upload);
        let p = plan(&["--scenarios", "health,upload"]);
        assert!(p.health && p.sweep && p.upload);
        assert!(!p.reconcile);
        assert!(Args::try_parse_from(["bench-compare", "--scenarios", "sweep"]).is_err());
    }
}
