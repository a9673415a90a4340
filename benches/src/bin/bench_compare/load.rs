//! HTTP load with wrk, driven as a subprocess.
//!
//! wrk is an established C load generator (epoll, one event loop per thread),
//! cheap enough per request that one pinned core of it can saturate a server
//! on the other. A Lua `done` hook prints its HdrHistogram-backed latency
//! percentiles as one JSON line, so nothing parses wrk's human output.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The Lua hook: one `BENCH_JSON {...}` line at the end of a run.
/// Latencies are in microseconds, as wrk records them.
const SCRIPT: &str = r#"-- Written by bench-compare: prints wrk's summary as one JSON line.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"mean_us":%.3f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"#;

/// How to run wrk.
#[derive(Debug, Clone)]
pub struct Loader {
    wrk: PathBuf,
    script: PathBuf,
    cpus: Option<String>,
    threads: usize,
}

/// wrk's raw summary.
#[derive(Debug, Deserialize)]
struct WrkSummary {
    requests: u64,
    duration_us: u64,
    connect: u64,
    read: u64,
    write: u64,
    status: u64,
    timeout: u64,
    mean_us: f64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
}

/// One load run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    /// Open connections.
    pub connections: usize,
    /// Measured duration, seconds.
    pub duration_s: f64,
    /// Completed requests.
    pub requests: u64,
    /// Requests per second.
    pub rps: f64,
    /// Mean latency, ms.
    pub mean_ms: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest request, ms.
    pub max_ms: f64,
    /// Socket errors (connect, read, write, timeout) plus non-2xx/3xx answers.
    pub errors: u64,
    /// Connections kept busy by Little's law (requests/s x mean latency):
    /// well under `connections` means some were never served (a connection
    /// limit), or wrk itself was the bottleneck.
    pub served_estimate: f64,
    /// Slowest of the probes: a fresh connection's `GET /health` made while
    /// the load runs, ms. A server that lets clients wait past a connection
    /// limit shows it here; wrk's own figures only cover requests answered.
    pub probe_ms: Option<f64>,
    /// The errors by kind, as wrk counts them.
    pub error_detail: String,
}

impl Loader {
    /// Writes the Lua hook under `dir` and checks that wrk runs.
    ///
    /// # Errors
    /// When the script cannot be written or wrk is missing.
    pub fn new(
        wrk: &Path,
        dir: &Path,
        cpus: Option<String>,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let script = dir.join("wrk-summary.lua");
        std::fs::write(&script, SCRIPT).with_context(|| format!("writing {}", script.display()))?;
        // wrk has no --version; -v prints its version and exits 1.
        Command::new(wrk).arg("-v").output().with_context(|| {
            format!(
                "running {} (install wrk: apt-get install wrk)",
                wrk.display()
            )
        })?;
        Ok(Self {
            wrk: wrk.to_path_buf(),
            script,
            cpus,
            threads: threads.max(1),
        })
    }

    /// Runs `GET path` with `connections` keep-alive connections for `duration`.
    ///
    /// # Errors
    /// When wrk fails or prints no summary.
    pub fn run(
        &self,
        addr: SocketAddr,
        path: &str,
        connections: usize,
        duration: Duration,
    ) -> anyhow::Result<LoadResult> {
        let mut cmd = match &self.cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(&self.wrk);
                c
            }
            None => Command::new(&self.wrk),
        };
        let threads = self.threads.min(connections).max(1);
        cmd.arg("-t")
            .arg(threads.to_string())
            .arg("-c")
            .arg(connections.to_string())
            .arg("-d")
            .arg(format!("{}s", duration.as_secs().max(1)))
            .arg("--timeout")
            .arg("5s")
            .arg("-s")
            .arg(&self.script)
            .arg(format!("http://{addr}{path}"));
        // Probes start once wrk's connections are up and stop before it ends.
        let probe = {
            let start = duration.mul_f64(0.25).min(Duration::from_secs(2));
            let wait = duration + Duration::from_secs(3);
            thread::spawn(move || probe_max(addr, start, PROBES, wait))
        };
        let out = cmd.output().context("running wrk")?;
        let probe_ms = probe.join().ok().flatten().map(|d| d.as_secs_f64() * 1e3);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let Some(json) = stdout.lines().find_map(|l| l.strip_prefix("BENCH_JSON ")) else {
            bail!(
                "wrk printed no summary ({}): {} {}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        };
        let s: WrkSummary = serde_json::from_str(json).context("parsing wrk's summary")?;
        let mut r = summarize(connections, &s);
        r.probe_ms = probe_ms;
        Ok(r)
    }
}

/// Fresh-connection probes per load run.
const PROBES: usize = 3;

/// After `start`, makes `count` probes one after another (a quarter second
/// apart) and returns the slowest; a probe not answered within `wait` counts
/// as `wait`. `None` when no probe could connect at all.
fn probe_max(addr: SocketAddr, start: Duration, count: usize, wait: Duration) -> Option<Duration> {
    thread::sleep(start);
    let mut worst: Option<Duration> = None;
    for i in 0..count {
        if i > 0 {
            thread::sleep(Duration::from_millis(250));
        }
        let took = probe_once(addr, wait)?;
        worst = Some(worst.map_or(took, |w| w.max(took)));
        if took >= wait {
            break;
        }
    }
    worst
}

/// Time from connect to the status line of one `GET /health` on a new connection.
fn probe_once(addr: SocketAddr, wait: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, wait).ok()?;
    stream.set_read_timeout(Some(wait)).ok()?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = [0u8; 64];
    // A read timeout, or a close without an answer, means the server never
    // served it: that counts as the whole wait.
    match stream.read(&mut buf) {
        Ok(n) if n > 0 => Some(t0.elapsed()),
        Ok(_) | Err(_) => Some(t0.elapsed().max(wait)),
    }
}

impl LoadResult {
    /// The median of each figure over several runs at the same connection
    /// count (errors are summed, the slowest probe is kept); `None` when
    /// there are no runs or their connection counts differ.
    pub fn median_of(runs: &[&LoadResult]) -> Option<LoadResult> {
        let first = runs.first()?;
        if runs.iter().any(|r| r.connections != first.connections) {
            return None;
        }
        let med = |f: fn(&LoadResult) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(|r| f(r)).collect();
            v.sort_by(f64::total_cmp);
            match v.len() {
                n if n % 2 == 1 => v[n / 2],
                n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
            }
        };
        Some(LoadResult {
            connections: first.connections,
            duration_s: med(|r| r.duration_s),
            requests: runs.iter().map(|r| r.requests).sum::<u64>() / runs.len() as u64,
            rps: med(|r| r.rps),
            mean_ms: med(|r| r.mean_ms),
            p50_ms: med(|r| r.p50_ms),
            p90_ms: med(|r| r.p90_ms),
            p99_ms: med(|r| r.p99_ms),
            max_ms: med(|r| r.max_ms),
            errors: runs.iter().map(|r| r.errors).sum(),
            served_estimate: med(|r| r.served_estimate),
            probe_ms: runs
                .iter()
                .filter_map(|r| r.probe_ms)
                .max_by(f64::total_cmp),
            error_detail: runs
                .iter()
                .map(|r| r.error_detail.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        })
    }
}

fn summarize(connections: usize, s: &WrkSummary) -> LoadResult {
    let secs = (s.duration_us as f64 / 1e6).max(1e-9);
    let ms = |us: u64| us as f64 / 1000.0;
    LoadResult {
        connections,
        duration_s: secs,
        requests: s.requests,
        rps: s.requests as f64 / secs,
        mean_ms: s.mean_us / 1000.0,
        p50_ms: ms(s.p50_us),
        p90_ms: ms(s.p90_us),
        p99_ms: ms(s.p99_us),
        max_ms: ms(s.max_us),
        errors: s.connect + s.read + s.write + s.status + s.timeout,
        served_estimate: s.requests as f64 / secs * s.mean_us / 1e6,
        probe_ms: None,
        error_detail: format!(
            "connect {}, read {}, write {}, non-2xx {}, timeout {}",
            s.connect, s.read, s.write, s.status, s.timeout
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_is_converted() {
        let s: WrkSummary = serde_json::from_str(
            r#"{"requests":2000,"duration_us":2000000,"bytes":1,"connect":0,"read":1,"write":0,"status":2,"timeout":0,"mean_us":1500.0,"p50_us":1000,"p90_us":2000,"p99_us":5000,"max_us":9000}"#,
        )
        .unwrap();
        let r = summarize(50, &s);
        assert_eq!(r.rps, 1000.0);
        assert_eq!(r.p99_ms, 5.0);
        assert_eq!(r.errors, 3);
    }

    #[test]
    fn medians_over_rounds() {
        let run = |p99_us: u64, rps_requests: u64| {
            let s: WrkSummary = serde_json::from_str(&format!(
                r#"{{"requests":{rps_requests},"duration_us":1000000,"bytes":1,"connect":0,"read":0,"write":0,"status":1,"timeout":0,"mean_us":1000.0,"p50_us":900,"p90_us":2000,"p99_us":{p99_us},"max_us":9000}}"#
            ))
            .unwrap();
            summarize(200, &s)
        };
        let (a, b, c) = (run(3000, 100), run(9000, 300), run(4000, 200));
        let m = LoadResult::median_of(&[&a, &b, &c]).unwrap();
        assert_eq!(m.p99_ms, 4.0);
        assert_eq!(m.rps, 200.0);
        assert_eq!(m.errors, 3);
        let other = summarize(50, &serde_json::from_str(r#"{"requests":1,"duration_us":1,"bytes":1,"connect":0,"read":0,"write":0,"status":0,"timeout":0,"mean_us":1.0,"p50_us":1,"p90_us":1,"p99_us":1,"max_us":1}"#).unwrap());
        assert!(LoadResult::median_of(&[&a, &other]).is_none());
        assert!(LoadResult::median_of(&[]).is_none());
    }
}
