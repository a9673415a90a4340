//! Horizontal scaling for real: three `recon serve` replicas (both engines
//! mixed) on 127.0.0.1 behind a real nginx, one shared data directory. Upload
//! through the balancer, reconcile, read results and events from every
//! replica, SIGKILL one mid-run, and check the others keep serving and nothing
//! completed is lost. Then the shipped `deploy/nginx/nginx.conf` in front of
//! one replica: its idle upstream pool does not hold requests queued at the
//! replica's `connection_limit` for long, and request heads up to recon's
//! `max_request_header_size` reach recon. Needs `nginx` on PATH (`.ci/run`
//! installs it); runs with the slow suites (RECON_SLOW_TESTS=1).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{self, ENGINES, Engine, Raw, Server};

/// A real nginx balancing over the given upstreams, stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> PathBuf {
    for candidate in [
        "/usr/sbin/nginx",
        "/usr/local/sbin/nginx",
        "/usr/local/bin/nginx",
    ] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("nginx is not installed: `apt-get install nginx-light` (.ci/run does)");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    /// nginx with a config of the test's own: its upstream lists `upstreams`.
    fn start(upstreams: &[SocketAddr]) -> Nginx {
        let dir = TempDir::new().unwrap();
        let port = free_port();
        let servers: String = upstreams
            .iter()
            .map(|a| format!("    server {a} max_fails=1 fail_timeout=30s;\n"))
            .collect();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             upstream recon {{\n{servers}    keepalive 8;\n  }}\n\
             server {{\n    listen 127.0.0.1:{port};\n    client_max_body_size 0;\n    proxy_request_buffering off;\n\
             proxy_buffering off;\n    proxy_http_version 1.1;\n    proxy_set_header Connection \"\";\n\
             proxy_next_upstream error timeout http_502;\n    proxy_connect_timeout 2s;\n\
             location / {{ proxy_pass http://recon; }}\n  }}\n}}\n"
        );
        Nginx::run(dir, port, &conf)
    }

    /// nginx with the shipped `deploy/nginx/nginx.conf`, changed only where a
    /// test must: one worker process in the foreground, files under a temporary
    /// directory, the listen address, and the upstream `recon:8000` replaced by
    /// `upstream`. Its upstream pool (`keepalive`, `keepalive_timeout`) and
    /// every proxy setting are the shipped ones.
    fn shipped(upstream: SocketAddr) -> Nginx {
        let dir = TempDir::new().unwrap();
        let port = free_port();
        let d = dir.path().display();
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nginx/nginx.conf"),
        )
        .unwrap();
        let mut conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n{shipped}"
        );
        for (from, to) in [
            (
                "worker_connections 4096;",
                "worker_connections 256;".to_owned(),
            ),
            (
                "http {\n",
                format!(
                    "http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
                     fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n"
                ),
            ),
            ("server recon:8000 ", format!("server {upstream} ")),
            ("listen 8000;", format!("listen 127.0.0.1:{port};")),
        ] {
            assert!(
                conf.contains(from),
                "deploy/nginx/nginx.conf has no `{from}`"
            );
            conf = conf.replacen(from, &to, 1);
        }
        Nginx::run(dir, port, &conf)
    }

    /// Writes `conf` into `dir` and starts nginx on it, listening on `port`.
    fn run(dir: TempDir, port: u16, conf: &str) -> Nginx {
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {:?}",
                std::fs::read_to_string(dir.path().join("error.log"))
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

fn body_text(res: ureq::http::Response<ureq::Body>) -> (u16, String) {
    let status = res.status().as_u16();
    let mut text = String::new();
    res.into_body()
        .into_reader()
        .read_to_string(&mut text)
        .unwrap();
    (status, text)
}

fn get(agent: &ureq::Agent, url: &str) -> (u16, String) {
    body_text(agent.get(url).call().unwrap())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn upload(agent: &ureq::Agent, nginx: &Nginx, path: &Path, name: &str) -> String {
    let bytes = std::fs::read(path).unwrap();
    let res = agent
        .post(&nginx.url(&format!("/v1/datasets?name={name}")))
        .header("Content-Type", "text/csv")
        .send(&bytes[..])
        .unwrap();
    let (status, text) = body_text(res);
    assert_eq!(status, 201, "upload of {name}: {text}");
    json(&text)["id"].as_str().unwrap().to_owned()
}

/// `recon gen` into `dir`: the real binary writes the case.
fn generate(dir: &Path, records: u32, seed: u32) {
    let status = Command::new(env!("CARGO_BIN_EXE_recon"))
        .args([
            "gen",
            "--records",
            &records.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "recon gen failed");
}

/// Starts a reconciliation at `base` (the balancer or one replica).
fn start_job(
    agent: &ureq::Agent,
    base: &str,
    left: &str,
    right: &str,
    rules: &str,
    wait: u32,
) -> Value {
    let body = serde_json::json!({"left": left, "right": right, "rules": rules}).to_string();
    let res = agent
        .post(&format!("{base}/v1/reconciliations?wait={wait}"))
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .unwrap();
    let (status, text) = body_text(res);
    assert!(
        status == 200 || status == 202,
        "reconciliation: {status} {text}"
    );
    json(&text)
}

#[test]
fn replicas_behind_nginx_share_datasets_jobs_and_results() {
    if !support::slow_tests() {
        eprintln!("skipped: set RECON_SLOW_TESTS=1 (CI does) to run the three-replica nginx test");
        return;
    }
    support::within(Duration::from_secs(180), || {
        let shared = Arc::new(TempDir::new().unwrap());
        let mut replicas: Vec<Server> = [Engine::Async, Engine::Threaded, Engine::Async]
            .into_iter()
            .map(|e| Server::builder(e).data_dir(Arc::clone(&shared)).start())
            .collect();
        let nginx = Nginx::start(&replicas.iter().map(Server::addr).collect::<Vec<_>>());
        let agent = support::agent_with_timeout(Duration::from_secs(60));

        // A realistic generated case, written by the real binary.
        let case = TempDir::new().unwrap();
        generate(case.path(), 3000, 11);
        let rules = std::fs::read_to_string(case.path().join("rules.toml")).unwrap();

        // Upload through the balancer: round robin spreads the two uploads.
        let left = upload(&agent, &nginx, &case.path().join("left.csv"), "left");
        let right = upload(&agent, &nginx, &case.path().join("right.csv"), "right");
        for _ in 0..6 {
            let (status, text) = get(&agent, &nginx.url(&format!("/v1/datasets/{left}")));
            assert_eq!(status, 200, "dataset not visible on every replica: {text}");
        }
        // Each replica directly, too.
        for r in &replicas {
            let (status, _) = get(&agent, &r.url(&format!("/v1/datasets/{right}")));
            assert_eq!(
                status,
                200,
                "{} does not see the dataset",
                r.engine().as_str()
            );
        }

        // Reconcile, then read the job, its results and its events from every replica.
        let job = start_job(&agent, &nginx.url(""), &left, &right, &rules, 60);
        assert_eq!(job["state"], "succeeded", "{job}");
        let id = job["id"].as_str().unwrap().to_owned();
        let (status, reference) = get(
            &agent,
            &nginx.url(&format!("/v1/reconciliations/{id}/results?format=csv")),
        );
        assert_eq!(status, 200);
        let records =
            data_lines(&case.path().join("left.csv")) + data_lines(&case.path().join("right.csv"));
        assert_eq!(
            reference.lines().count(),
            1 + records - count_missing(&job),
            "one row per accepted record plus a header"
        );
        for r in &replicas {
            let (status, text) = get(&agent, &r.url(&format!("/v1/reconciliations/{id}")));
            assert_eq!(status, 200);
            assert_eq!(json(&text)["state"], "succeeded");
            let (status, results) = get(
                &agent,
                &r.url(&format!("/v1/reconciliations/{id}/results?format=csv")),
            );
            assert_eq!(status, 200);
            assert_eq!(results, reference, "results differ between replicas");
            let (status, events) = get(&agent, &r.url(&format!("/v1/reconciliations/{id}/events")));
            assert_eq!(status, 200);
            assert!(
                events.contains("succeeded"),
                "events end without the final state: {events}"
            );
        }

        // A job big enough to be caught running, started directly on replica 0,
        // which is SIGKILLed while the job runs.
        let big = TempDir::new().unwrap();
        generate(big.path(), 150_000, 12);
        let big_left = upload(&agent, &nginx, &big.path().join("left.csv"), "big-left");
        let big_right = upload(&agent, &nginx, &big.path().join("right.csv"), "big-right");
        let big_rules = std::fs::read_to_string(big.path().join("rules.toml")).unwrap();
        let victim = replicas[0].base_url();
        let started = start_job(&agent, &victim, &big_left, &big_right, &big_rules, 0);
        let big_id = started["id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, text) = get(
                &agent,
                &replicas[0].url(&format!("/v1/reconciliations/{big_id}")),
            );
            match json(&text)["state"].as_str().unwrap() {
                "running" => break,
                "queued" => {}
                other => panic!(
                    "the job finished ({other}) before it could be interrupted; make the case bigger"
                ),
            }
            assert!(Instant::now() < deadline, "the job never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        replicas[0].kill();

        // The survivors keep serving, and the completed result is untouched.
        for _ in 0..12 {
            let (status, _) = get(&agent, &nginx.url("/health"));
            assert_eq!(
                status, 200,
                "the balancer stopped serving after one replica died"
            );
            let (status, results) = get(
                &agent,
                &nginx.url(&format!("/v1/reconciliations/{id}/results?format=csv")),
            );
            assert_eq!(status, 200);
            assert_eq!(results, reference, "a completed result changed or was lost");
        }
        let (status, _) = get(
            &agent,
            &nginx.url(&format!("/v1/reconciliations/{big_id}/results?format=csv")),
        );
        assert_ne!(
            status, 200,
            "a job whose process died must never serve results"
        );

        // Once the dead replica's data directory is opened again (it restarts), the
        // interrupted job reads as failed everywhere: never stuck, never half-written.
        let restarted = replicas.remove(0).restart();
        replicas.push(restarted);
        let deadline = Instant::now() + Duration::from_secs(60);
        let final_state = loop {
            let (status, text) = get(&agent, &nginx.url(&format!("/v1/reconciliations/{big_id}")));
            assert_eq!(status, 200);
            let job = json(&text);
            if job["state"] != "running" && job["state"] != "queued" {
                break job;
            }
            assert!(Instant::now() < deadline, "job stuck: {job}");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(final_state["state"], "failed", "{final_state}");
        assert!(
            final_state["error"].to_string().contains("interrupted"),
            "{final_state}"
        );
        for r in &replicas {
            let (status, _) = get(
                &agent,
                &r.url(&format!("/v1/reconciliations/{big_id}/results?format=csv")),
            );
            assert_ne!(
                status,
                200,
                "{} serves results of an interrupted job",
                r.engine().as_str()
            );
        }
    });
}

/// Data rows of a generated CSV (no quoted newlines in generated files).
fn data_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count() - 1
}

/// Records quarantined by the rules are not result rows; the summary counts them.
fn count_missing(job: &Value) -> usize {
    let rejects = |side: &str| job["summary"][side]["rejects"].as_u64().unwrap_or(0) as usize;
    rejects("left") + rejects("right")
}

/// Runs `check` on every engine at once, each on its own thread, and fails
/// with the first failure.
fn on_every_engine(check: fn(Engine)) {
    let runs: Vec<_> = ENGINES
        .iter()
        .map(|&engine| std::thread::spawn(move || check(engine)))
        .collect();
    for run in runs {
        if let Err(panic) = run.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Idle connections in nginx's upstream pool count against a replica's
/// `connection_limit`. With the limit at 4 and 8 slow uploads at once, the
/// replica serves 4 while nginx's other 4 connections wait (`overload =
/// queue`); when the first 4 end, nginx keeps their connections idle in its
/// pool, and the replica closes them, longest idle first, for the waiting
/// ones (the test takes under 2 s; before recon did so, the last four
/// waited for nginx's `keepalive_timeout`). The shipped config's own numbers
/// are checked by `deploy_files::nginx_limits_fit_the_replicas_behind_it`.
/// A liveness bound, not a timing goal: 30 s.
#[test]
fn queued_uploads_behind_nginx_take_the_places_of_its_idle_pooled_connections() {
    if !support::slow_tests() {
        eprintln!("skipped: set RECON_SLOW_TESTS=1 (CI does) to run the nginx pool test");
        return;
    }
    support::within(Duration::from_secs(120), || {
        on_every_engine(queued_uploads_finish);
    });
}

fn queued_uploads_finish(engine: Engine) {
    const UPLOADS: usize = 8;
    const BOUND: Duration = Duration::from_secs(30);
    let server = Server::builder(engine)
        .arg("--connection-limit", "4")
        .arg("--overload", "queue")
        .arg("--threads", "8")
        .start();
    let nginx = Nginx::shipped(server.addr());
    let start = Arc::new(Barrier::new(UPLOADS));
    let started = Instant::now();
    let uploads: Vec<_> = (0..UPLOADS)
        .map(|i| {
            let start = Arc::clone(&start);
            let addr = nginx.addr();
            std::thread::spawn(move || {
                start.wait();
                slow_upload(addr, i, started + BOUND)
            })
        })
        .collect();
    for (i, upload) in uploads.into_iter().enumerate() {
        let status = upload.join().unwrap();
        assert_eq!(
            status,
            Some(201),
            "{}: upload {i} through nginx got no 201 within {BOUND:?} \
             (None: no answer; nginx's idle pool holding the replica's slots stalls queued requests)",
            engine.as_str()
        );
    }
}

/// Uploads a small CSV through `addr` the way a slow client does: the head,
/// then the body in pieces over about 1.5 s (the pauses pace the client, they
/// wait for nothing). The status, or `None` when no answer came by `deadline`.
fn slow_upload(addr: SocketAddr, n: usize, deadline: Instant) -> Option<u16> {
    const PIECES: usize = 6;
    let mut body = String::from("id,date,amount,description\n");
    for row in 0..60 {
        body.push_str(&format!("U{n}-{row:04},2024-01-01,{row}.50,slow upload\n"));
    }
    let mut raw = Raw::connect(addr);
    let head = format!(
        "POST /v1/datasets?name=slow-{n} HTTP/1.1\r\nHost: recon\r\nContent-Type: text/csv\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    raw.send(head.as_bytes()).ok()?;
    let bytes = body.as_bytes();
    let piece = bytes.len().div_ceil(PIECES);
    for chunk in bytes.chunks(piece) {
        std::thread::sleep(Duration::from_millis(250));
        raw.send(chunk).ok()?;
    }
    raw.read_response(deadline.saturating_duration_since(Instant::now()))
        .map(|res| res.status)
}

/// nginx's default `large_client_header_buffers` (8 KiB a line) would answer
/// a large header line with its own 400. The shipped config passes any head
/// recon accepts (up to `max_request_header_size`, 64 KiB by default), and
/// one past it reaches recon, which answers 431.
#[test]
fn shipped_nginx_passes_request_heads_up_to_recons_limit() {
    if !support::slow_tests() {
        eprintln!("skipped: set RECON_SLOW_TESTS=1 (CI does) to run the nginx header test");
        return;
    }
    support::within(Duration::from_secs(60), || {
        on_every_engine(large_heads_reach_recon);
    });
}

fn large_heads_reach_recon(engine: Engine) {
    let server = Server::start(engine);
    let nginx = Nginx::shipped(server.addr());
    let status = |headers: &str| {
        let mut raw = Raw::connect(nginx.addr());
        raw.send(
            format!("GET /health HTTP/1.1\r\nHost: recon\r\n{headers}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        raw.read_response(Duration::from_secs(10))
            .expect("an answer")
            .status
    };
    let line = |name: &str, len: usize| format!("{name}: {}\r\n", "a".repeat(len));
    assert_eq!(
        status(&line("X-Big", 12_000)),
        200,
        "{}: a 12,000-byte header line, far below 64 KiB",
        engine.as_str()
    );
    assert_eq!(
        status(&line("X-Big", 60_000)),
        200,
        "{}: a 60,000-byte header line, below 64 KiB",
        engine.as_str()
    );
    assert_eq!(
        status(&(line("X-One", 40_000) + &line("X-Two", 40_000))),
        431,
        "{}: a head past 64 KiB must get recon's 431, not nginx's 400",
        engine.as_str()
    );
}
