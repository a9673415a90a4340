//! `bench-compare`: recon's threaded and async engines side by side with bare
//! hyper and may_minihttp hello-worlds (their ceilings) and, with `--peers`,
//! with a Flask app on Waitress and a FastAPI app on Uvicorn.
//!
//! It builds nothing (`just bench-compare` builds the release binaries
//! first). Each server runs as a real process on 127.0.0.1, one at a time,
//! through the same scenarios: startup, GET /health under wrk at fixed and
//! rising concurrency, a large CSV upload, a reconciliation over HTTP, and
//! memory from /proc. Output: a Markdown table on stdout,
//! `target/bench-compare/results.json` and `target/bench-compare/chart.svg`.
//!
//! By default (`--pin auto`) servers get half the CPUs and wrk the other
//! half. `--unpinned` is the issues' setup instead: server, wrk and the
//! upload/reconciliation client share every CPU, and everything but the
//! concurrency sweep runs, `--rounds` times (default 5), servers taking turns;
//! GET /health and memory figures are medians over the rounds, uploads and
//! reconciliations the medians of every round's runs pooled. The table says
//! on each upload and reconciliation row whether the server was pinned.
//! `--scenarios health,upload,reconcile` runs a subset (startup and memory
//! always come with a server's start).
//! Exits non-zero when a recon engine or a ceiling fails; a peer's failure is
//! reported, not fatal. docs/benchmarks.md records a full run.

#[path = "bench_compare/api.rs"]
mod api;
#[path = "bench_compare/chart.rs"]
mod chart;
#[path = "bench_compare/cli.rs"]
mod cli;
#[path = "bench_compare/data.rs"]
mod data;
#[path = "bench_compare/load.rs"]
mod load;
#[path = "bench_compare/peers.rs"]
mod peers;
#[path = "bench_compare/report.rs"]
mod report;
#[path = "bench_compare/scenarios.rs"]
mod scenarios;
#[path = "bench_compare/server.rs"]
mod server;

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;

use crate::cli::{Args, Pin, Plan};
use crate::report::{Machine, Report};
use crate::server::{Kind, ServerSpec};

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("bench-compare: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// CPU split between servers and wrk.
#[derive(Debug, Clone)]
struct Pinning {
    server: Option<String>,
    load: Option<String>,
    server_cpus: usize,
    load_cpus: usize,
}

/// The CPUs this process may run on (`Cpus_allowed_list`, e.g. `0-1` or
/// `2,5-6`), so pinning stays inside a container's cpuset.
fn allowed_cpus() -> Vec<usize> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(list) = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
    else {
        return Vec::new();
    };
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    cpus.extend(a..=b);
                }
            }
            None => cpus.extend(part.parse::<usize>().ok()),
        }
    }
    cpus
}

/// `0,1,2` for a list of CPUs, as taskset takes it.
fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether `taskset -c cpus` works here (it is missing, or refused in some containers).
fn taskset_works(cpus: &str) -> bool {
    Command::new("taskset")
        .args(["-c", cpus, "true"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn pinning(pin: Pin, nproc: usize) -> Pinning {
    let shared = Pinning {
        server: None,
        load: None,
        server_cpus: nproc,
        load_cpus: nproc,
    };
    if pin == Pin::Off {
        return shared;
    }
    let cpus = allowed_cpus();
    let half = cpus.len() / 2;
    let (server, load) = cpus.split_at(half);
    let (server, load) = (cpu_list(server), cpu_list(load));
    if half == 0 || !taskset_works(&server) || !taskset_works(&load) {
        eprintln!(
            "bench-compare: not pinning ({} usable CPUs, taskset {}): server and wrk share the CPUs",
            cpus.len(),
            if taskset_works(&cpu_list(&cpus)) {
                "works"
            } else {
                "unavailable"
            }
        );
        return shared;
    }
    Pinning {
        server_cpus: half,
        load_cpus: cpus.len() - half,
        server: Some(server),
        load: Some(load),
    }
}

fn machine(p: &Pinning, nproc: usize) -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_total_mib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    Machine {
        nproc,
        cpu_model,
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        mem_total_mib,
        server_cpus: p.server.clone(),
        load_cpus: p.load.clone(),
        loadavg_at_start: fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// `1 worker`, `2 workers`.
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn wanted(args: &Args, key: &str) -> bool {
    args.only.is_empty() || args.only.iter().any(|k| k == key)
}

fn rust_specs(args: &Args, pin: &Pinning, logs: &Path, data: &Path) -> Vec<ServerSpec> {
    let workers = args.workers.map_or(pin.server_cpus.max(1), |w| w.get());
    let threads = args.threads.get();
    let mut specs = Vec::new();
    for engine in ["threaded", "async"] {
        let mut a: Vec<String> = vec![
            "serve".into(),
            "--engine".into(),
            engine.into(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            "0".into(),
            "--data-dir".into(),
            data.join(engine).display().to_string(),
            "--workers".into(),
            workers.to_string(),
            "--threads".into(),
            threads.to_string(),
        ];
        a.extend(args.recon_args.iter().cloned());
        specs.push(ServerSpec {
            key: engine.to_owned(),
            label: format!("recon {engine}"),
            kind: Kind::Recon,
            program: Args::binary(args.recon.as_ref(), "recon"),
            args: a.into_iter().map(Into::into).collect(),
            // recon's own defaults: it logs no line per request at `info`.
            env: Vec::new(),
            fixed_port: None,
            cpus: pin.server.clone(),
            log: logs.join(format!("{engine}.log")),
            // The threaded engine runs one may worker whatever `--workers`
            // says (docs/threaded-engine.md); `threads` run its blocking handlers.
            tuning: if engine == "threaded" {
                format!("1 may worker, {threads} threads")
            } else {
                format!("{}, {threads} threads", plural(workers, "worker"))
            },
        });
    }
    // (column key, label, binary, its --binary flag, workers)
    let mut hellos = vec![
        (
            "hello-may",
            "hello-may",
            "hello-may",
            &args.hello_may,
            workers,
        ),
        (
            "hello-hyper",
            "hello-hyper",
            "hello-hyper",
            &args.hello_hyper,
            workers,
        ),
    ];
    if args.unpinned && workers > 1 {
        // The threaded engine serves every connection on one may worker
        // whatever `workers` says: its like-for-like ceiling has one too.
        hellos.insert(
            1,
            (
                "hello-may-1",
                "hello-may, 1 worker",
                "hello-may",
                &args.hello_may,
                1,
            ),
        );
    }
    for (key, label, binary, given, n) in hellos {
        specs.push(ServerSpec {
            key: key.to_owned(),
            label: label.to_owned(),
            kind: Kind::Hello,
            program: Args::binary(given.as_ref(), binary),
            args: ["--port", "0", "--workers", &n.to_string()]
                .into_iter()
                .map(Into::into)
                .collect(),
            env: Vec::new(),
            fixed_port: None,
            cpus: pin.server.clone(),
            log: logs.join(format!("{key}.log")),
            tuning: plural(n, "worker"),
        });
    }
    specs.retain(|s| wanted(args, &s.key));
    specs
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let plan = Plan::new(&args);
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = pinning(if args.unpinned { Pin::Off } else { args.pin }, nproc);
    let logs = args.out.join("logs");
    let data = args.out.join("data");
    let serve_data = args.out.join("serve");
    for dir in [&args.out, &logs, &data] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Each run starts from empty data directories and logs.
    let _ = fs::remove_dir_all(&serve_data);
    for entry in fs::read_dir(&logs).into_iter().flatten().flatten() {
        let _ = fs::remove_file(entry.path());
    }
    let loader = load::Loader::new(&args.wrk, &args.out, pin.load.clone(), pin.load_cpus)?;

    let mut specs = rust_specs(&args, &pin, &logs, &serve_data);
    let mut peers_note = None;
    if args.peers {
        match peers::specs(&args, pin.server.clone(), &logs, &serve_data) {
            Ok(p) => specs.extend(p.into_iter().filter(|s| wanted(&args, &s.key))),
            Err(why) => {
                let note = format!("Python peers not run: {why:#}");
                eprintln!("bench-compare: {note}");
                peers_note = Some(note);
            }
        }
    }
    if specs.is_empty() {
        anyhow::bail!("no server selected");
    }

    let needs_api = specs.iter().any(|s| s.kind != Kind::Hello);
    if needs_api && (plan.upload || plan.reconcile) {
        eprintln!("bench-compare: preparing data under {}", data.display());
    }
    let upload = if needs_api && plan.upload {
        Some(data::upload_file(&data, plan.upload_bytes)?)
    } else {
        None
    };
    let case = if needs_api && plan.reconcile {
        Some(data::case(&data, plan.recon_records)?)
    } else {
        None
    };
    let cx = scenarios::Context {
        plan: &plan,
        loader: &loader,
        upload: upload.as_ref(),
        case: case.as_ref(),
    };
    // Servers take turns each round, so slow drifts in the machine's load
    // fall on every column alike.
    let mut rounds: Vec<Vec<scenarios::ServerResult>> = specs.iter().map(|_| Vec::new()).collect();
    for round in 0..plan.rounds {
        if plan.rounds > 1 {
            eprintln!("bench-compare: round {} of {}", round + 1, plan.rounds);
        }
        for (spec, out) in specs.iter().zip(&mut rounds) {
            out.push(scenarios::run(spec, &cx));
        }
    }
    let results: Vec<_> = rounds
        .into_iter()
        .filter_map(scenarios::merge_rounds)
        .collect();

    let machine = machine(&pin, nproc);
    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(started.elapsed().as_secs()),
        wall_s: started.elapsed().as_secs_f64(),
        quick: args.quick,
        api_setup: report::api_setup(&machine),
        machine,
        load_generator: format!(
            "wrk, {} thread(s){}",
            pin.load_cpus,
            pin.load
                .as_ref()
                .map_or(String::new(), |c| format!(", pinned to CPU {c}"))
        ),
        peers_note,
        servers: results,
    };
    let json_path = args.out.join("results.json");
    fs::write(
        &json_path,
        serde_json::to_vec_pretty(&report).context("encoding results")?,
    )
    .with_context(|| format!("writing {}", json_path.display()))?;
    let chart_path = args.out.join("chart.svg");
    let title = format!(
        "recon bench-compare on {}, {nproc} CPUs",
        report.machine.cpu_model
    );
    // The chart is of GET /health: without it, an older chart stays as it was.
    if plan.health
        && let Err(e) = chart::draw(&chart_path, &report.servers, &title)
    {
        eprintln!("bench-compare: chart: {e:#}");
    }

    println!("{}", report::table(&plan, &report.machine, &report.servers));
    let ratios = report::ratios(&plan, &report.servers);
    if !ratios.is_empty() {
        println!("Ratios between the servers of this run:\n{ratios}");
    }
    let health_setup = match &report.machine.server_cpus {
        _ if !plan.health => String::new(),
        Some(cpus) => format!(
            " GET /health: servers on CPU {cpus}, {}.",
            report.load_generator
        ),
        None => format!(
            " GET /health: servers and {} sharing all {nproc} CPUs.",
            report.load_generator
        ),
    };
    let api_setup = if plan.upload || plan.reconcile {
        format!(" Uploads and reconciliations: {}.", report.api_setup)
    } else {
        String::new()
    };
    println!(
        "Machine: {} CPUs ({}), {} MiB.{health_setup}{api_setup} Wall time {:.0} s.",
        report.machine.nproc, report.machine.cpu_model, report.machine.mem_total_mib, report.wall_s
    );
    if let Some(note) = &report.peers_note {
        println!("{note}");
    }
    if plan.health {
        println!(
            "Wrote {} and {}.",
            json_path.display(),
            chart_path.display()
        );
    } else {
        println!(
            "Wrote {} (no chart without GET /health).",
            json_path.display()
        );
    }
    let failed: Vec<&str> = report
        .servers
        .iter()
        .filter(|s| !s.ok && s.kind != Kind::Peer)
        .map(|s| s.key.as_str())
        .collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("bench-compare: failed: {}", failed.join(", "));
        Ok(ExitCode::from(1))
    }
}
