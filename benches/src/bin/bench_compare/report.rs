//! The Markdown table, the headline ratios and results.json.

use std::fmt::Write as _;

use serde::Serialize;

use crate::cli::Plan;
use crate::scenarios::ServerResult;
use crate::server::Kind;

/// Where and how the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs available to the harness.
    pub nproc: usize,
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Total memory, MiB.
    pub mem_total_mib: u64,
    /// CPUs of the servers (taskset), if pinned.
    pub server_cpus: Option<String>,
    /// CPUs of wrk (taskset), if pinned.
    pub load_cpus: Option<String>,
    /// 1-minute load average when the run started (other work on the box).
    pub loadavg_at_start: String,
}

/// The whole run, as written to results.json.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The command line.
    pub command: String,
    /// Seconds since the Unix epoch at the start.
    pub started_unix: u64,
    /// Whole-run wall time, seconds.
    pub wall_s: f64,
    /// `--quick` or not.
    pub quick: bool,
    /// The machine.
    pub machine: Machine,
    /// The load generator.
    pub load_generator: String,
    /// Where server and client ran for the uploads and reconciliations
    /// (pinned, or sharing every CPU), as [`api_setup`] words it.
    pub api_setup: String,
    /// Why the peers did not run, when they did not.
    pub peers_note: Option<String>,
    /// Per server.
    pub servers: Vec<ServerResult>,
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn secs(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.1} s")
    } else if v >= 1.0 {
        format!("{v:.2} s")
    } else {
        format!("{:.0} ms", v * 1e3)
    }
}

fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn mib(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 / 1024.0)
}

/// A cell: the value, `n/a` when the kind does not take the scenario, `failed` otherwise.
fn cell(r: &ServerResult, api_only: bool, value: Option<String>) -> String {
    match value {
        Some(v) => v,
        None if api_only && r.kind == Kind::Hello => "n/a".to_owned(),
        None => "failed".to_owned(),
    }
}

/// Where the server and its client ran for the uploads and reconciliations.
/// The client is bench-compare itself (one connection at a time), never
/// pinned; wrk is idle then.
pub fn api_setup(machine: &Machine) -> String {
    match &machine.server_cpus {
        Some(cpus) => format!(
            "server pinned to CPU {cpus} of {}, client (bench-compare) not pinned",
            machine.nproc
        ),
        None => format!(
            "server and client (bench-compare) sharing all {} CPUs, no pinning",
            machine.nproc
        ),
    }
}

/// `median of 3` for one round, `median of 15: 3 runs x 5 rounds` for several.
fn runs_of(runs: usize, rounds: usize) -> String {
    if rounds > 1 {
        format!("median of {}: {runs} runs x {rounds} rounds", runs * rounds)
    } else {
        format!("median of {runs}")
    }
}

/// The Markdown comparison table.
pub fn table(plan: &Plan, machine: &Machine, servers: &[ServerResult]) -> String {
    let mut out = String::new();
    let _ = write!(out, "| Metric |");
    for s in servers {
        let _ = write!(out, " {} |", s.label);
    }
    out.push_str("\n|---|");
    for _ in servers {
        out.push_str("---:|");
    }
    out.push('\n');
    let mut row = |name: String, f: &dyn Fn(&ServerResult) -> String| {
        let _ = write!(out, "| {name} |");
        for s in servers {
            let _ = write!(out, " {} |", f(s));
        }
        out.push('\n');
    };
    row("Tuning".to_owned(), &|s| s.tuning.clone());
    row(
        format!(
            "Startup, spawn to first 200 on /health (median of {})",
            plan.startup_runs * plan.rounds
        ),
        &|s| {
            cell(
                s,
                false,
                s.startup_median_ms.map(|v| format!("{} ms", ms(v))),
            )
        },
    );
    if plan.rounds > 1 {
        row(
            format!(
                "Rounds (GET /health figures and RSS: medians of the {} rounds; upload and reconciliation: medians of all rounds' runs)",
                plan.rounds
            ),
            &|s| s.health_rounds.len().to_string(),
        );
    }
    let health_connections: &[usize] = if plan.health {
        &plan.health_connections
    } else {
        &[]
    };
    for (i, &c) in health_connections.iter().enumerate() {
        let get = move |s: &ServerResult| s.health.get(i).filter(|l| l.connections == c).cloned();
        row(format!("GET /health, {c} conns: requests/s"), &|s| {
            cell(s, false, get(s).map(|l| thousands(l.rps)))
        });
        row(
            format!("GET /health, {c} conns: avg / p50 / p99 / max ms"),
            &|s| {
                cell(
                    s,
                    false,
                    get(s).map(|l| {
                        format!(
                            "{} / {} / {} / {}",
                            ms(l.mean_ms),
                            ms(l.p50_ms),
                            ms(l.p99_ms),
                            ms(l.max_ms)
                        )
                    }),
                )
            },
        );
        if plan.rounds > 1 {
            row(
                format!("GET /health, {c} conns: p99 of each round, ms"),
                &|s| {
                    let each: Vec<String> = s
                        .health_rounds
                        .iter()
                        .filter_map(|round| round.get(i).filter(|l| l.connections == c))
                        .map(|l| ms(l.p99_ms))
                        .collect();
                    cell(s, false, (!each.is_empty()).then(|| each.join(", ")))
                },
            );
        }
        row(format!("GET /health, {c} conns: errors"), &|s| {
            cell(s, false, get(s).map(|l| l.errors.to_string()))
        });
        row(
            format!(
                "GET /health, {c} conns: a new connection's first answer (slowest of 3 probes)"
            ),
            &|s| {
                cell(
                    s,
                    false,
                    get(s).map(|l| {
                        l.probe_ms
                            .map_or("no answer".to_owned(), |p| format!("{} ms", ms(p)))
                    }),
                )
            },
        );
    }
    if plan.sweep {
        sweep_row(plan, &mut row);
    }
    api_rows(plan, &api_setup(machine), servers, &mut row);
    row("RSS idle (VmRSS after start)".to_owned(), &|s| {
        cell(s, false, s.rss_idle.map(|m| mib(m.rss_kib)))
    });
    row("RSS peak over the run (VmHWM)".to_owned(), &|s| {
        cell(s, false, s.rss_end.map(|m| mib(m.hwm_kib)))
    });
    out
}

/// The row of the concurrency sweep.
fn sweep_row(plan: &Plan, row: &mut impl FnMut(String, &dyn Fn(&ServerResult) -> String)) {
    let limit = plan.sweep_p99_limit.as_millis();
    row(
        format!(
            "Concurrent connections with p99 < {limit} ms, no errors, new connections served < {limit} ms"
        ),
        &|s| {
            if s.sweep.is_empty() {
                return cell(s, false, None);
            }
            match s.max_concurrency {
                Some(c) if s.max_concurrency_capped => format!("≥ {c}"),
                Some(c) => c.to_string(),
                None => format!("< {}", plan.sweep_steps.first().copied().unwrap_or(0)),
            }
        },
    );
}

/// The rows of the upload and the reconciliation, each naming `setup`
/// (pinned or shared CPUs) so a figure is never read as the other setup's.
fn api_rows(
    plan: &Plan,
    setup: &str,
    servers: &[ServerResult],
    row: &mut impl FnMut(String, &dyn Fn(&ServerResult) -> String),
) {
    if plan.upload {
        upload_row(plan, setup, servers, row);
    }
    if plan.reconcile {
        reconcile_rows(plan, setup, row);
    }
}

/// The upload row.
fn upload_row(
    plan: &Plan,
    setup: &str,
    servers: &[ServerResult],
    row: &mut impl FnMut(String, &dyn Fn(&ServerResult) -> String),
) {
    let upload_mb = servers
        .iter()
        .find_map(|s| s.upload.as_ref())
        .map_or(plan.upload_bytes as f64 / 1e6, |u| u.bytes as f64 / 1e6);
    row(
        format!(
            "Upload {upload_mb:.0} MB CSV, parsed and stored ({}; {setup})",
            runs_of(plan.upload_runs, plan.rounds)
        ),
        &|s| {
            cell(
                s,
                true,
                s.upload
                    .as_ref()
                    .map(|u| format!("{} ({:.0} MB/s)", secs(u.median_s), u.mb_per_s)),
            )
        },
    );
}

/// The reconciliation rows (run, end to end).
fn reconcile_rows(
    plan: &Plan,
    setup: &str,
    row: &mut impl FnMut(String, &dyn Fn(&ServerResult) -> String),
) {
    let k = plan.recon_records / 1000;
    row(
        format!(
            "Reconciliation {k}k x {k}k of stored datasets, POST ?wait ({}; {setup})",
            runs_of(plan.recon_runs, plan.rounds)
        ),
        &|s| cell(s, true, s.reconcile.as_ref().map(|x| secs(x.median_run_s))),
    );
    row(
        format!(
            "Reconciliation {k}k end to end: upload both, run, fetch summary ({}; {setup})",
            runs_of(plan.recon_runs, plan.rounds)
        ),
        &|s| {
            cell(
                s,
                true,
                s.reconcile.as_ref().map(|x| secs(x.median_end_to_end_s)),
            )
        },
    );
}

/// requests/s at `c` connections, from the fixed runs or the sweep.
fn rps_at(s: &ServerResult, c: usize) -> Option<f64> {
    s.health
        .iter()
        .chain(&s.sweep)
        .find(|l| l.connections == c)
        .map(|l| l.rps)
}

/// The headline ratios, as Markdown bullets.
pub fn ratios(plan: &Plan, servers: &[ServerResult]) -> String {
    let find = |key: &str| servers.iter().find(|s| s.key == key);
    let mut out = String::new();
    let pairs = [
        ("threaded", "waitress", "recon threaded vs Waitress"),
        ("async", "uvicorn", "recon async vs Uvicorn"),
        ("threaded", "async", "threaded vs async"),
        (
            "threaded",
            "hello-may",
            "threaded vs its ceiling (hello-may)",
        ),
        (
            "threaded",
            "hello-may-1",
            "threaded vs hello-may with its one may worker",
        ),
        ("async", "hello-hyper", "async vs its ceiling (hello-hyper)"),
    ];
    for (a, b, name) in pairs {
        let (Some(x), Some(y)) = (find(a), find(b)) else {
            continue;
        };
        let mut parts = Vec::new();
        for &c in &plan.health_connections {
            if let (Some(p), Some(q)) = (rps_at(x, c), rps_at(y, c))
                && q > 0.0
            {
                parts.push(format!("{:.2}x requests/s at {c} conns", p / q));
            }
        }
        if let (Some(p), Some(q)) = (&x.reconcile, &y.reconcile)
            && p.median_run_s > 0.0
        {
            parts.push(format!(
                "{:.1}x faster reconciliation",
                q.median_run_s / p.median_run_s
            ));
        }
        if let (Some(p), Some(q)) = (&x.upload, &y.upload)
            && p.median_s > 0.0
        {
            parts.push(format!("{:.1}x faster upload", q.median_s / p.median_s));
        }
        if let (Some(p), Some(q)) = (x.rss_idle, y.rss_idle)
            && q.rss_kib > 0
            && y.kind != Kind::Hello
        {
            parts.push(format!(
                "{:.2}x the idle RSS",
                p.rss_kib as f64 / q.rss_kib as f64
            ));
        }
        if !parts.is_empty() {
            let _ = writeln!(out, "- {name}: {}", parts.join(", "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Machine, table};
    use crate::cli::{Args, Plan};

    fn machine(server_cpus: Option<&str>) -> Machine {
        Machine {
            nproc: 2,
            cpu_model: "test".into(),
            kernel: "6".into(),
            mem_total_mib: 1024,
            server_cpus: server_cpus.map(Into::into),
            load_cpus: server_cpus.map(|_| "1".into()),
            loadavg_at_start: "0 0 0".into(),
        }
    }

    fn plan(args: &[&str]) -> Plan {
        Plan::new(
            &Args::try_parse_from(std::iter::once("bench-compare").chain(args.iter().copied()))
                .unwrap(),
        )
    }

    /// The table's rows that start with `what`.
    fn rows<'a>(t: &'a str, what: &str) -> Vec<&'a str> {
        t.lines()
            .filter(|l| l.starts_with(&format!("| {what}")))
            .collect()
    }

    #[test]
    fn api_rows_name_the_cpu_setup() {
        let shared = table(&plan(&["--unpinned"]), &machine(None), &[]);
        let recon = rows(&shared, "Reconciliation 50k");
        assert_eq!(recon.len(), 2);
        for row in recon.iter().chain(&rows(&shared, "Upload 100 MB")) {
            assert!(row.contains("sharing all 2 CPUs, no pinning"), "{row}");
            assert!(row.contains("median of 15: 3 runs x 5 rounds"), "{row}");
        }
        assert!(rows(&shared, "Concurrent connections").is_empty());
        assert_eq!(rows(&shared, "GET /health, 50 conns").len(), 5);

        let pinned = table(&plan(&[]), &machine(Some("0")), &[]);
        let recon = rows(&pinned, "Reconciliation 50k");
        assert_eq!(recon.len(), 2);
        for row in recon.iter().chain(&rows(&pinned, "Upload 100 MB")) {
            assert!(row.contains("server pinned to CPU 0 of 2"), "{row}");
            assert!(row.contains("(median of 3;"), "{row}");
        }
        assert_eq!(rows(&pinned, "Concurrent connections").len(), 1);
    }

    #[test]
    fn scenarios_leave_out_rows() {
        let t = table(
            &plan(&["--unpinned", "--scenarios", "reconcile"]),
            &machine(None),
            &[],
        );
        assert_eq!(rows(&t, "Reconciliation 50k").len(), 2);
        assert!(rows(&t, "Upload").is_empty());
        assert!(rows(&t, "GET /health").is_empty());
        assert_eq!(rows(&t, "RSS").len(), 2);
    }
}
