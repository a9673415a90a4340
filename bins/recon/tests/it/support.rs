//! Test fixtures shared by the HTTP suites: the real `recon serve` binary on
//! 127.0.0.1 port 0 ([`Server`]), a real HTTP client ([`agent`]), a raw-socket
//! client ([`Raw`]) for bytes-in/bytes-out checks, and [`engines!`], which
//! stamps one test over every engine in [`ENGINES`].

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server gets to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A server engine the suites run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// tokio + hyper.
    Async,
    /// may, Waitress's model.
    Threaded,
}

/// Every engine, for tests that loop; [`engines!`] stamps one test per entry
/// (keep the two in step when an engine is added).
pub const ENGINES: &[Engine] = &[Engine::Async, Engine::Threaded];

impl Engine {
    /// The `--engine` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Async => "async",
            Engine::Threaded => "threaded",
        }
    }
}

/// Stamps test functions `fn name(engine: Engine)` over every engine:
/// `engines!(health)` makes `health::async_` and `health::threaded`.
/// Each run is bounded by [`TEST_TIMEOUT`].
#[macro_export]
macro_rules! engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn async_() {
                $crate::support::run_on($crate::support::Engine::Async, super::$name);
            }
            #[test]
            fn threaded() {
                $crate::support::run_on($crate::support::Engine::Threaded, super::$name);
            }
        }
    )*};
}

/// The bound on one test on one engine.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `test` against `engine` on its own thread, bounded by [`TEST_TIMEOUT`].
pub fn run_on(engine: Engine, test: fn(Engine)) {
    within(TEST_TIMEOUT, move || test(engine));
}

/// Runs `f` on a new thread and fails if it panics or outlasts `limit`.
/// Servers started by a timed-out test die with the test process (their
/// parent-death signal), so nothing is left behind.
pub fn within(limit: Duration, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => {
            let _ = handle.join();
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("test did not finish within {limit:?}"),
    }
}

/// Whether the slow suites run (CI sets `RECON_SLOW_TESTS=1`).
pub fn slow_tests() -> bool {
    std::env::var("RECON_SLOW_TESTS").is_ok_and(|v| v == "1")
}

/// An HTTP client that never treats a status as an error and never waits
/// more than 30 s for anything.
pub fn agent() -> ureq::Agent {
    agent_with_timeout(Duration::from_secs(30))
}

/// [`agent`] with another overall timeout.
pub fn agent_with_timeout(limit: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(limit))
        .build()
        .into()
}

/// How to start a [`Server`].
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    engine: Engine,
    args: Vec<String>,
    env: Vec<(String, String)>,
    data_dir: Option<Arc<TempDir>>,
    engine_flag: bool,
    /// The open-file limits (soft, hard) the server starts with.
    open_files: Option<(u64, u64)>,
    /// Stderr is a pipe whose reading end is closed at once.
    stderr_closed: bool,
}

impl ServerBuilder {
    /// Leaves `--engine` off the command line, so the environment or config
    /// file chooses (the fixture's engine is then only a label).
    pub fn without_engine_flag(mut self) -> Self {
        self.engine_flag = false;
        self
    }

    /// Adds a flag and its value, e.g. `.arg("--connection-limit", "2")`.
    pub fn arg(mut self, flag: &str, value: &str) -> Self {
        self.args.push(flag.to_owned());
        self.args.push(value.to_owned());
        self
    }

    /// Sets an environment variable for the server.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts the server with these open-file limits (soft, hard), as a
    /// host's `ulimit -n` would.
    pub fn open_files(mut self, soft: u64, hard: u64) -> Self {
        self.open_files = Some((soft, hard));
        self
    }

    /// Starts the server with a stderr whose reader is gone (a log collector
    /// that died): every log line it writes fails.
    pub fn stderr_closed(mut self) -> Self {
        self.stderr_closed = true;
        self
    }

    /// Uses `dir` as the data directory, e.g. one shared by several replicas.
    pub fn data_dir(mut self, dir: Arc<TempDir>) -> Self {
        self.data_dir = Some(dir);
        self
    }

    /// Starts the server, panicking with its log when it does not come up.
    pub fn start(self) -> Server {
        match self.try_start() {
            Ok(server) => server,
            Err(err) => panic!("server did not start: {err}"),
        }
    }

    /// Starts the server, or says why it did not come up.
    pub fn try_start(self) -> Result<Server, String> {
        let data_dir = match self.data_dir.clone() {
            Some(dir) => dir,
            None => Arc::new(TempDir::new().map_err(|e| format!("tempdir: {e}"))?),
        };
        let log_dir = TempDir::new().map_err(|e| format!("tempdir: {e}"))?;
        let log_path = log_dir.path().join("stderr.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("log file: {e}"))?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_recon"));
        cmd.arg("serve");
        if self.engine_flag {
            cmd.args(["--engine", self.engine.as_str()]);
        }
        cmd.args(["--host", "127.0.0.1", "--port", "0"])
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(&self.args)
            .env_remove("RECON_CONFIG")
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(data_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if self.stderr_closed {
                Stdio::piped()
            } else {
                Stdio::from(log)
            });
        die_with_parent(&mut cmd);
        if let Some(limits) = self.open_files {
            limit_open_files(&mut cmd, limits);
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
        // Dropping the only reading end closes the pipe.
        drop(child.stderr.take());
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("no listening line; stderr:\n{log}"));
            }
        };
        let addr = parse_listening_line(&line).ok_or_else(|| format!("bad line: {line:?}"))?;
        Ok(Server {
            child,
            addr,
            line,
            builder: ServerBuilder {
                data_dir: Some(data_dir),
                ..self
            },
            _log_dir: log_dir,
            log_path,
        })
    }
}

/// The address in `recon listening on http://ADDR (engine=...)`.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("recon listening on http://")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Makes the child die with SIGKILL when the thread that spawned it ends, so
/// a test that panics or times out never leaves a server running.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // prctl, which is async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Starts the child with open-file limits `(soft, hard)`.
fn limit_open_files(cmd: &mut Command, (soft, hard): (u64, u64)) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // setrlimit, which is async-signal-safe, on a value on its own stack.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A running `recon serve`; killed when dropped.
///
/// The process also dies when the *thread* that started it ends (its
/// parent-death signal), so start servers on the thread that uses them.
#[derive(Debug)]
pub struct Server {
    child: Child,
    addr: SocketAddr,
    line: String,
    builder: ServerBuilder,
    _log_dir: TempDir,
    log_path: PathBuf,
}

impl Server {
    /// How to start a server on `engine` with a fresh data directory.
    pub fn builder(engine: Engine) -> ServerBuilder {
        ServerBuilder {
            engine,
            args: Vec::new(),
            env: Vec::new(),
            data_dir: None,
            engine_flag: true,
            open_files: None,
            stderr_closed: false,
        }
    }

    /// Starts a server on `engine` with defaults and a fresh data directory.
    pub fn start(engine: Engine) -> Server {
        Self::builder(engine).start()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The listening line the server printed.
    pub fn listening_line(&self) -> &str {
        &self.line
    }

    /// The engine it runs.
    pub fn engine(&self) -> Engine {
        self.builder.engine
    }

    /// The data directory (kept across [`Server::restart`]).
    pub fn data_dir(&self) -> &Path {
        self.builder
            .data_dir
            .as_ref()
            .map_or(Path::new("."), |d| d.path())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server logged to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A raw connection to the server.
    pub fn raw(&self) -> Raw {
        Raw::connect(self.addr)
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap_or(libc::pid_t::MAX);
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills this server and starts another with the same engine, flags,
    /// environment and data directory.
    pub fn restart(mut self) -> Server {
        self.kill();
        self.builder.clone().start()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- server stderr ---\n{}", self.log());
        }
    }
}

/// A raw TCP client: send bytes, read what comes back, each read bounded.
#[derive(Debug)]
pub struct Raw {
    stream: TcpStream,
}

/// A response read off a raw connection.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The status line, e.g. `HTTP/1.1 200 OK`.
    pub status_line: String,
    /// Headers as sent, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Raw {
    /// Connects with 10 s read and write timeouts.
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        stream.set_write_timeout(Some(Duration::from_secs(10))).ok();
        stream.set_nodelay(true).ok();
        Raw { stream }
    }

    /// The underlying stream.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Sets how long each read may wait.
    pub fn set_read_timeout(&self, limit: Duration) {
        self.stream.set_read_timeout(Some(limit)).ok();
    }

    /// Sends `bytes`; an error (e.g. the server closed) is returned, not a panic.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads until the peer closes or `limit` passes; returns what came.
    pub fn read_until_close(&mut self, limit: Duration) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            self.stream.set_read_timeout(Some(left)).ok();
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Whether the server closed the connection (EOF or reset) within `limit`,
    /// discarding any bytes it sent first.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 16 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).ok();
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }

    /// Reads one response (Content-Length, chunked, or until close), waiting
    /// at most `limit`. `None` when the connection closed or timed out first.
    pub fn read_response(&mut self, limit: Duration) -> Option<RawResponse> {
        self.read_response_to(limit, false)
    }

    /// [`Raw::read_response`] for a HEAD request (no body follows).
    pub fn read_head_response(&mut self, limit: Duration) -> Option<RawResponse> {
        self.read_response_to(limit, true)
    }

    fn read_response_to(&mut self, limit: Duration, head: bool) -> Option<RawResponse> {
        let deadline = Instant::now() + limit;
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(pos) = find(&buf, b"\r\n\r\n") {
                break pos + 4;
            }
            if !self.fill(&mut buf, deadline) {
                return None;
            }
        };
        let head_text = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next()?.to_owned();
        let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            })
            .collect();
        let mut response = RawResponse {
            status,
            status_line,
            headers,
            body: Vec::new(),
        };
        let mut rest = buf.split_off(head_end);
        if head || status == 204 || status == 304 || (100..200).contains(&status) {
            return Some(response);
        }
        if let Some(len) = response.header("content-length") {
            let len: usize = len.parse().ok()?;
            while rest.len() < len {
                if !self.fill(&mut rest, deadline) {
                    return None;
                }
            }
            rest.truncate(len);
            response.body = rest;
        } else if response
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(pos) = find(&rest, b"\r\n") {
                        break pos;
                    }
                    if !self.fill(&mut rest, deadline) {
                        return None;
                    }
                };
                let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
                let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
                rest.drain(..line_end + 2);
                if size == 0 {
                    // Trailers end with an empty line.
                    while find(&rest, b"\r\n").is_none() {
                        if !self.fill(&mut rest, deadline) {
                            return None;
                        }
                    }
                    break;
                }
                while rest.len() < size + 2 {
                    if !self.fill(&mut rest, deadline) {
                        return None;
                    }
                }
                body.extend_from_slice(&rest[..size]);
                rest.drain(..size + 2);
            }
            response.body = body;
        } else {
            while self.fill(&mut rest, deadline) {}
            response.body = rest;
        }
        Some(response)
    }

    /// Reads more into `buf`; false on close, error or deadline.
    fn fill(&mut self, buf: &mut Vec<u8>, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        self.stream.set_read_timeout(Some(left)).ok();
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
