//! The six scenarios, run against one server process after another.

use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::api::Api;
use crate::cli::Plan;
use crate::data::{CaseFiles, UploadFile};
use crate::load::{LoadResult, Loader};
use crate::server::{Kind, Rss, Running, ServerSpec};

/// What the scenarios need besides the server.
#[derive(Debug)]
pub struct Context<'a> {
    /// Durations, steps and sizes.
    pub plan: &'a Plan,
    /// The load generator.
    pub loader: &'a Loader,
    /// The upload file (absent when no server takes uploads).
    pub upload: Option<&'a UploadFile>,
    /// The reconciliation case.
    pub case: Option<&'a CaseFiles>,
}

/// Uploads of one server.
#[derive(Debug, Clone, Serialize)]
pub struct UploadResult {
    /// Size of the file.
    pub bytes: u64,
    /// Each run, seconds.
    pub runs_s: Vec<f64>,
    /// Median, seconds.
    pub median_s: f64,
    /// Throughput at the median, MB/s (10^6 bytes).
    pub mb_per_s: f64,
}

/// Reconciliations of one server.
#[derive(Debug, Clone, Serialize)]
pub struct ReconResult {
    /// Records per side asked of the generator.
    pub records: usize,
    /// Upload both + run + fetch the summary, each run, seconds.
    pub end_to_end_s: Vec<f64>,
    /// POST with `?wait` until the job ended, each run, seconds.
    pub run_s: Vec<f64>,
    /// Median of `end_to_end_s`.
    pub median_end_to_end_s: f64,
    /// Median of `run_s`.
    pub median_run_s: f64,
    /// The last job's summary, as the server reported it.
    pub summary: Value,
}

impl UploadResult {
    /// The result of upload runs of `bytes` each, taking `runs_s` seconds.
    fn from_runs(bytes: u64, runs_s: Vec<f64>) -> Self {
        let median_s = median(&runs_s);
        Self {
            bytes,
            mb_per_s: bytes as f64 / 1e6 / median_s.max(1e-9),
            runs_s,
            median_s,
        }
    }
}

impl ReconResult {
    /// The result of reconciliation runs of `records` a side.
    fn from_runs(records: usize, end_to_end_s: Vec<f64>, run_s: Vec<f64>, summary: Value) -> Self {
        Self {
            records,
            median_end_to_end_s: median(&end_to_end_s),
            median_run_s: median(&run_s),
            end_to_end_s,
            run_s,
            summary,
        }
    }
}

/// Everything measured on one server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerResult {
    /// Column key.
    pub key: String,
    /// Column header.
    pub label: String,
    /// What it is.
    pub kind: Kind,
    /// Worker/thread settings.
    pub tuning: String,
    /// CPUs it was pinned to.
    pub cpus: Option<String>,
    /// Its `listening on` line (recon shows its effective settings there).
    pub announced: Option<String>,
    /// Whether every scenario it takes ran.
    pub ok: bool,
    /// What went wrong.
    pub errors: Vec<String>,
    /// Each startup, spawn to the first 200 on /health, ms.
    pub startup_ms: Vec<f64>,
    /// Median startup, ms.
    pub startup_median_ms: Option<f64>,
    /// GET /health at fixed connection counts (with several rounds, each
    /// figure is the median over the rounds).
    pub health: Vec<LoadResult>,
    /// Each round's GET /health runs, when there were several rounds.
    pub health_rounds: Vec<Vec<LoadResult>>,
    /// GET /health at rising concurrency, until p99 or errors fail.
    pub sweep: Vec<LoadResult>,
    /// Largest swept concurrency with p99 under the limit and no errors.
    pub max_concurrency: Option<usize>,
    /// Whether even the last step passed (the true figure is higher).
    pub max_concurrency_capped: bool,
    /// Uploads.
    pub upload: Option<UploadResult>,
    /// Reconciliations.
    pub reconcile: Option<ReconResult>,
    /// Memory after startup, before any load.
    pub rss_idle: Option<Rss>,
    /// Memory at the end; `hwm_kib` is the peak over the whole run.
    pub rss_end: Option<Rss>,
}

impl ServerResult {
    fn new(spec: &ServerSpec) -> Self {
        Self {
            key: spec.key.clone(),
            label: spec.label.clone(),
            kind: spec.kind,
            tuning: spec.tuning.clone(),
            cpus: spec.cpus.clone(),
            announced: None,
            ok: true,
            errors: Vec::new(),
            startup_ms: Vec::new(),
            startup_median_ms: None,
            health: Vec::new(),
            health_rounds: Vec::new(),
            sweep: Vec::new(),
            max_concurrency: None,
            max_concurrency_capped: false,
            upload: None,
            reconcile: None,
            rss_idle: None,
            rss_end: None,
        }
    }

    fn fail(&mut self, what: &str, err: &anyhow::Error) {
        let msg = format!("{what}: {err:#}");
        eprintln!("bench-compare: {}: {msg}", self.key);
        self.ok = false;
        self.errors.push(msg);
    }
}

/// The median of `xs` (mean of the middle two for an even count), 0 when empty.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs every scenario the server's kind takes; never panics on a server's failure.
pub fn run(spec: &ServerSpec, cx: &Context<'_>) -> ServerResult {
    let mut r = ServerResult::new(spec);
    eprintln!("bench-compare: {} ...", spec.key);
    let Some(mut srv) = startups(spec, cx.plan, &mut r) else {
        return r;
    };
    // Let lazy initialisation settle before reading idle memory.
    thread::sleep(Duration::from_millis(300));
    r.rss_idle = Some(srv.rss());

    if cx.plan.health && health_runs(spec, cx, &mut srv, &mut r).is_err() {
        return r;
    }
    if spec.kind != Kind::Hello {
        if cx.plan.upload {
            uploads(spec, cx, &mut srv, &mut r);
        }
        if cx.plan.reconcile {
            reconciliations(spec, cx, &mut srv, &mut r);
        }
    }
    r.rss_end = Some(srv.rss());
    if let Err(e) = srv.stop(STOP_GRACE) {
        r.fail("stop", &e);
    }
    r
}

/// One server's rounds folded into one result: every figure of the fixed
/// GET /health runs and the memory readings are medians over the rounds,
/// startups, uploads and reconciliations are pooled (the medians are of every
/// round's runs, the lists keep them all), and each round's GET /health runs
/// are kept in `health_rounds`.
pub fn merge_rounds(rounds: Vec<ServerResult>) -> Option<ServerResult> {
    let mut rounds = rounds.into_iter();
    let mut merged = rounds.next()?;
    let mut all = vec![merged.health.clone()];
    let mut idle = Vec::from_iter(merged.rss_idle);
    let mut end = Vec::from_iter(merged.rss_end);
    let mut uploads = Vec::from_iter(merged.upload.take());
    let mut recons = Vec::from_iter(merged.reconcile.take());
    for r in rounds {
        merged.ok &= r.ok;
        merged.errors.extend(r.errors);
        merged.startup_ms.extend(r.startup_ms);
        all.push(r.health);
        idle.extend(r.rss_idle);
        end.extend(r.rss_end);
        uploads.extend(r.upload);
        recons.extend(r.reconcile);
    }
    merged.upload = pool_uploads(uploads);
    merged.reconcile = pool_reconciliations(recons);
    if all.len() == 1 {
        return Some(merged);
    }
    merged.startup_median_ms = (!merged.startup_ms.is_empty()).then(|| median(&merged.startup_ms));
    merged.health = (0..merged.health.len())
        .filter_map(|i| {
            let runs: Vec<&LoadResult> = all.iter().filter_map(|round| round.get(i)).collect();
            LoadResult::median_of(&runs)
        })
        .collect();
    merged.health_rounds = all;
    merged.rss_idle = median_rss(&idle, |m| m.rss_kib);
    merged.rss_end = median_rss(&end, |m| m.hwm_kib);
    Some(merged)
}

/// The rounds' uploads as one: every run pooled, the median of them all.
fn pool_uploads(rounds: Vec<UploadResult>) -> Option<UploadResult> {
    let bytes = rounds.first()?.bytes;
    let runs_s = rounds.into_iter().flat_map(|u| u.runs_s).collect();
    Some(UploadResult::from_runs(bytes, runs_s))
}

/// The rounds' reconciliations as one: every run pooled, the medians of
/// them all, the last round's summary.
fn pool_reconciliations(rounds: Vec<ReconResult>) -> Option<ReconResult> {
    let records = rounds.first()?.records;
    let mut end_to_end_s = Vec::new();
    let mut run_s = Vec::new();
    let mut summary = Value::Null;
    for r in rounds {
        end_to_end_s.extend(r.end_to_end_s);
        run_s.extend(r.run_s);
        summary = r.summary;
    }
    Some(ReconResult::from_runs(
        records,
        end_to_end_s,
        run_s,
        summary,
    ))
}

/// The reading with the median `key` (the lower middle one for an even count).
fn median_rss(xs: &[Rss], key: impl Fn(&Rss) -> u64) -> Option<Rss> {
    let mut v = xs.to_vec();
    v.sort_by_key(|m| key(m));
    v.get(v.len().saturating_sub(1) / 2).copied()
}

/// Scenario 1: starts the server `startup_runs` times, keeps the last one.
fn startups(spec: &ServerSpec, plan: &Plan, r: &mut ServerResult) -> Option<Running> {
    for i in 0..plan.startup_runs {
        match spec.start(plan.startup_timeout) {
            Ok((srv, took)) => {
                r.startup_ms.push(took.as_secs_f64() * 1e3);
                if i + 1 == plan.startup_runs {
                    r.announced.clone_from(&srv.announced);
                    r.startup_median_ms = Some(median(&r.startup_ms));
                    return Some(srv);
                }
                if let Err(e) = srv.stop(STOP_GRACE) {
                    r.fail("stop after startup", &e);
                    return None;
                }
            }
            Err(e) => {
                r.fail("startup", &e);
                return None;
            }
        }
    }
    None
}

/// Scenarios 2 and 3: fixed-connection runs, then the concurrency sweep.
fn health_runs(
    spec: &ServerSpec,
    cx: &Context<'_>,
    srv: &mut Running,
    r: &mut ServerResult,
) -> Result<(), ()> {
    let plan = cx.plan;
    for &c in &plan.health_connections {
        match cx.loader.run(srv.addr, "/health", c, plan.health_duration) {
            Ok(l) => r.health.push(l),
            Err(e) => r.fail(&format!("GET /health at {c}"), &e),
        }
        if let Err(e) = srv.check_alive(&spec.log) {
            r.fail("after GET /health", &e);
            return Err(());
        }
    }
    if !plan.sweep {
        return Ok(());
    }
    let limit_ms = plan.sweep_p99_limit.as_secs_f64() * 1e3;
    r.max_concurrency_capped = true;
    for &c in &plan.sweep_steps {
        // A short breather so one step's closing connections do not count against the next.
        thread::sleep(Duration::from_millis(200));
        let step = cx.loader.run(srv.addr, "/health", c, plan.sweep_duration);
        if let Err(e) = srv.check_alive(&spec.log) {
            r.fail(&format!("sweep at {c}"), &e);
            return Err(());
        }
        match step {
            Ok(l) => {
                // A fresh connection must be served in time too: wrk's
                // latencies only cover the connections a server answers.
                let pass = l.errors == 0
                    && l.p99_ms < limit_ms
                    && l.probe_ms.is_some_and(|p| p < limit_ms);
                r.sweep.push(l);
                if !pass {
                    r.max_concurrency_capped = false;
                    break;
                }
                r.max_concurrency = Some(c);
            }
            Err(e) => {
                r.fail(&format!("sweep at {c}"), &e);
                r.max_concurrency_capped = false;
                break;
            }
        }
    }
    Ok(())
}

/// Scenario 4: the big CSV upload, parsed and stored by the server.
fn uploads(spec: &ServerSpec, cx: &Context<'_>, srv: &mut Running, r: &mut ServerResult) {
    let Some(file) = cx.upload else { return };
    let api = Api::new(srv.addr);
    let mut runs = Vec::new();
    for _ in 0..cx.plan.upload_runs {
        let t0 = Instant::now();
        match api.upload_csv(&file.path) {
            Ok(_) => runs.push(t0.elapsed().as_secs_f64()),
            Err(e) => {
                r.fail("upload", &e);
                let _ = srv.check_alive(&spec.log);
                return;
            }
        }
    }
    r.upload = Some(UploadResult::from_runs(file.bytes, runs));
}

/// Scenario 5: upload both sides, reconcile with `?wait`, fetch the summary.
fn reconciliations(spec: &ServerSpec, cx: &Context<'_>, srv: &mut Running, r: &mut ServerResult) {
    let Some(case) = cx.case else { return };
    let api = Api::new(srv.addr);
    let mut e2e = Vec::new();
    let mut run_s = Vec::new();
    let mut summary = Value::Null;
    for _ in 0..cx.plan.recon_runs {
        let t0 = Instant::now();
        let outcome = api.upload_csv(&case.left).and_then(|left| {
            let right = api.upload_csv(&case.right)?;
            api.reconcile(&left, &right, &case.rules)
        });
        match outcome {
            Ok((ran, job)) => {
                e2e.push(t0.elapsed().as_secs_f64());
                run_s.push(ran.as_secs_f64());
                summary = job.get("summary").cloned().unwrap_or(Value::Null);
            }
            Err(e) => {
                r.fail("reconciliation", &e);
                let _ = srv.check_alive(&spec.log);
                return;
            }
        }
    }
    r.reconcile = Some(ReconResult::from_runs(case.records, e2e, run_s, summary));
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use super::{ReconResult, ServerResult, UploadResult, median, merge_rounds};
    use crate::server::{Kind, Rss, ServerSpec};

    /// A round of `threaded` with these upload and reconciliation runs.
    fn round(upload: &[f64], e2e: &[f64], run: &[f64], matched: u64) -> ServerResult {
        let mut r = ServerResult::new(&ServerSpec {
            key: "threaded".into(),
            label: "recon threaded".into(),
            kind: Kind::Recon,
            program: PathBuf::from("recon"),
            args: Vec::new(),
            env: Vec::new(),
            fixed_port: None,
            cpus: None,
            log: PathBuf::from("threaded.log"),
            tuning: "1 may worker, 8 threads".into(),
        });
        r.startup_ms = vec![10.0];
        r.startup_median_ms = Some(10.0);
        r.rss_idle = Some(Rss {
            rss_kib: 1000 * matched,
            hwm_kib: 1000 * matched,
            processes: 1,
        });
        r.rss_end = r.rss_idle;
        r.upload = Some(UploadResult::from_runs(100_000_000, upload.to_vec()));
        r.reconcile = Some(ReconResult::from_runs(
            50_000,
            e2e.to_vec(),
            run.to_vec(),
            json!({ "matched": matched }),
        ));
        r
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn rounds_pool_uploads_and_reconciliations() {
        // Rounds skewed so that the median of the pooled runs differs from
        // the median of the rounds' medians.
        let merged = merge_rounds(vec![
            round(&[1.0, 1.0, 1.0], &[3.0, 3.0, 3.0], &[0.5, 0.5, 0.6], 1),
            round(&[2.0, 1.5, 8.0], &[4.0, 9.0, 9.0], &[0.7, 2.0, 2.0], 2),
            round(&[9.0, 9.0, 1.2], &[9.0, 9.0, 3.5], &[2.0, 0.4, 2.0], 3),
        ])
        .unwrap();
        let up = merged.upload.as_ref().unwrap();
        assert_eq!(up.runs_s, vec![1.0, 1.0, 1.0, 2.0, 1.5, 8.0, 9.0, 9.0, 1.2]);
        // Pooled: 1, 1, 1, 1.2, 1.5, 2, 8, 9, 9 -> 1.5 (the medians of the
        // rounds' medians would be 2.0).
        assert_eq!(up.median_s, 1.5);
        assert!((up.mb_per_s - 100.0 / 1.5).abs() < 1e-9);
        assert_eq!(up.bytes, 100_000_000);
        let rec = merged.reconcile.as_ref().unwrap();
        assert_eq!(rec.end_to_end_s.len(), 9);
        assert_eq!(rec.run_s, vec![0.5, 0.5, 0.6, 0.7, 2.0, 2.0, 2.0, 0.4, 2.0]);
        // Pooled e2e: 3, 3, 3, 3.5, 4, 9, 9, 9, 9 -> 4.0 (rounds' medians: 3, 9, 9).
        assert_eq!(rec.median_end_to_end_s, 4.0);
        // Pooled run: 0.4, 0.5, 0.5, 0.6, 0.7, 2, 2, 2, 2 -> 0.7 (rounds': 0.5, 2, 2).
        assert_eq!(rec.median_run_s, 0.7);
        assert_eq!(rec.records, 50_000);
        assert_eq!(rec.summary, json!({ "matched": 3 }));
        // Health and memory keep their per-round medians.
        assert_eq!(merged.rss_idle.unwrap().rss_kib, 2000);
        assert_eq!(merged.startup_ms.len(), 3);
        assert_eq!(merged.health_rounds.len(), 3);
    }

    #[test]
    fn rounds_pool_what_ran() {
        let mut failed = round(&[5.0], &[5.0], &[5.0], 1);
        failed.upload = None;
        failed.reconcile = None;
        let merged = merge_rounds(vec![
            failed,
            round(&[2.0, 4.0], &[6.0, 8.0], &[1.0, 3.0], 2),
        ])
        .unwrap();
        assert_eq!(merged.upload.as_ref().unwrap().runs_s, vec![2.0, 4.0]);
        assert_eq!(merged.upload.as_ref().unwrap().median_s, 3.0);
        assert_eq!(merged.reconcile.as_ref().unwrap().median_end_to_end_s, 7.0);
        assert_eq!(merged.reconcile.as_ref().unwrap().median_run_s, 2.0);
        let single = merge_rounds(vec![round(&[1.0, 3.0], &[2.0, 4.0], &[1.0, 2.0], 1)]).unwrap();
        assert_eq!(single.upload.unwrap().median_s, 2.0);
        assert_eq!(single.reconcile.unwrap().median_run_s, 1.5);
    }
}
