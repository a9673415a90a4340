//! Starting a server as a real process, waiting for its first 200 on
//! `/health`, reading its memory from /proc, and stopping it.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

/// What kind of server a column is, which decides the scenarios it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A recon engine: every scenario; a failure fails the run.
    Recon,
    /// A bare hello-world ceiling: startup, GET load and memory only.
    Hello,
    /// A Python peer: every scenario; a failure is reported, not fatal.
    Peer,
}

/// How to start one server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Short key (column id): `threaded`, `async`, `hello-may`, ...
    pub key: String,
    /// Column header of the table.
    pub label: String,
    /// What it is.
    pub kind: Kind,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// A port chosen by the harness, or `None` when the server binds port 0
    /// and prints `listening on http://ADDR`.
    pub fixed_port: Option<u16>,
    /// CPUs for taskset, e.g. `0` or `0-1`.
    pub cpus: Option<String>,
    /// Where the server's stdout and stderr go.
    pub log: PathBuf,
    /// The worker/thread settings, as shown in the report.
    pub tuning: String,
}

/// A started server.
#[derive(Debug)]
pub struct Running {
    child: Child,
    /// Address it listens on.
    pub addr: SocketAddr,
    /// The line it announced itself with (engine and effective settings).
    pub announced: Option<String>,
    stopped: bool,
}

/// Resident memory of a process tree, in KiB.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Rss {
    /// Sum of VmRSS.
    pub rss_kib: u64,
    /// Sum of VmHWM (peak resident set) of each process.
    pub hwm_kib: u64,
    /// Processes counted.
    pub processes: usize,
}

impl ServerSpec {
    /// Starts the server and waits for its first 200 on `/health`, returning
    /// it with the time from spawn to that 200.
    ///
    /// # Errors
    /// When the program cannot be spawned, exits early, or does not answer in `timeout`.
    pub fn start(&self, timeout: Duration) -> anyhow::Result<(Running, Duration)> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let stderr = log.try_clone().context("cloning the log handle")?;
        let mut cmd = match &self.cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let t0 = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.program.display()))?;
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            // Forwards stdout to the log and reports the first address line;
            // it keeps draining so a chatty server never blocks on a full pipe.
            let mut log = log;
            thread::spawn(move || {
                let mut sent = false;
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(log, "{line}");
                    if !sent && let Some(addr) = parse_listening(&line) {
                        sent = tx.send((addr, line)).is_ok();
                    }
                }
            });
        }
        let mut running = Running {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], self.fixed_port.unwrap_or(0))),
            announced: None,
            stopped: false,
        };
        let deadline = t0 + timeout;
        if self.fixed_port.is_none() {
            (running.addr, running.announced) = loop {
                match rx.recv_timeout(Duration::from_millis(5)) {
                    Ok((addr, line)) => break (addr, Some(line)),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        bail!(
                            "{} closed stdout without a `listening on http://` line; log: {}",
                            self.key,
                            log_tail(&self.log)
                        )
                    }
                }
                running.check_alive(&self.log)?;
                if Instant::now() > deadline {
                    bail!("{} printed no address within {timeout:?}", self.key);
                }
            };
        }
        loop {
            if health_status(running.addr) == Some(200) {
                return Ok((running, t0.elapsed()));
            }
            running.check_alive(&self.log)?;
            if Instant::now() > deadline {
                bail!(
                    "{} gave no 200 on /health within {timeout:?}; log: {}",
                    self.key,
                    log_tail(&self.log)
                );
            }
            thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Running {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has exited.
    ///
    /// # Errors
    /// When it has exited (with its status and the log's tail) or cannot be polled.
    pub fn check_alive(&mut self, log: &Path) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("polling the server")? {
            bail!("server exited with {status}; log: {}", log_tail(log));
        }
        Ok(())
    }

    /// Resident memory of the server and its child processes.
    pub fn rss(&self) -> Rss {
        let mut total = Rss::default();
        for pid in process_tree(self.pid()) {
            if let Some((rss, hwm)) = read_status(pid) {
                total.rss_kib += rss;
                total.hwm_kib += hwm;
                total.processes += 1;
            }
        }
        total
    }

    /// Stops the server: SIGTERM to it, then SIGKILL to anything of its tree
    /// still alive after `grace`.
    ///
    /// # Errors
    /// When the process cannot be waited for.
    pub fn stop(mut self, grace: Duration) -> anyhow::Result<()> {
        self.stopped = true;
        let tree = process_tree(self.pid());
        signal(self.pid(), "TERM");
        let deadline = Instant::now() + grace;
        while self
            .child
            .try_wait()
            .context("waiting for the server")?
            .is_none()
        {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                self.child.wait().context("reaping the server")?;
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        for pid in tree.into_iter().skip(1) {
            if Path::new(&format!("/proc/{pid}")).exists() {
                signal(pid, "KILL");
            }
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.stopped {
            for pid in process_tree(self.child.id()).into_iter().skip(1) {
                signal(pid, "KILL");
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends a signal with kill(1): no `unsafe` for a harness.
fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The address of a `... listening on http://127.0.0.1:PORT ...` line.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("listening on http://")?;
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '/')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The status of one `GET /health` on a fresh connection, `None` when the
/// server does not answer (yet).
pub fn health_status(addr: SocketAddr) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = [0u8; 256];
    let mut len = 0;
    while len < 12 {
        let n = stream.read(&mut buf[len..]).ok()?;
        if n == 0 {
            return None;
        }
        len += n;
    }
    let head = std::str::from_utf8(&buf[..len]).ok()?;
    head.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

/// `pid` and all its descendants, parents first.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) {
            for task in tasks.flatten() {
                let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
                out.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
        i += 1;
    }
    out
}

/// VmRSS and VmHWM of one process, in KiB.
fn read_status(pid: u32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The last lines of a server log, for error messages.
pub fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(8);
    lines[start..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_lines() {
        let addr =
            parse_listening("recon listening on http://127.0.0.1:41234 (engine=async, workers=2)");
        assert_eq!(addr, Some(SocketAddr::from(([127, 0, 0, 1], 41234))));
        assert_eq!(
            parse_listening("hello-may listening on http://127.0.0.1:80"),
            Some(SocketAddr::from(([127, 0, 0, 1], 80)))
        );
        assert_eq!(parse_listening("starting"), None);
    }
}
