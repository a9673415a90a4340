//! A server started in-process and a raw-socket client with bounded reads.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use recon_service::{App, Shutdown};
use serve_threaded::ServeError;
use tuning::Config;

/// How long any single read in a test may wait.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server; dropping it shuts it down.
pub struct Server {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    shutdown: Shutdown,
    handle: Option<JoinHandle<Result<(), ServeError>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server with the defaults changed by `tweak`.
    pub fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            engine: tuning::Engine::Threaded,
            ..Config::default()
        };
        config.server.threads = std::num::NonZeroUsize::new(2).unwrap();
        config.shutdown_timeout = Duration::from_secs(5);
        tweak(&mut config);
        let app = Arc::new(App::new(Arc::new(config), vec![]).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let handle = {
            let app = Arc::clone(&app);
            let shutdown = shutdown.clone();
            std::thread::spawn(move || serve_threaded::serve(app, listener, shutdown))
        };
        Self {
            addr,
            app,
            shutdown,
            handle: Some(handle),
            _dir: dir,
        }
    }

    /// Triggers shutdown and waits for `serve` to return.
    pub fn stop(mut self) -> Result<(), ServeError> {
        self.shutdown.trigger();
        self.handle.take().unwrap().join().unwrap()
    }

    /// A connected raw client.
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One parsed response.
#[derive(Debug)]
pub struct Resp {
    pub version: u8,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// A header's value (first of that name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A raw TCP client that keeps what it read past one response.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> &mut Self {
        self.stream.write_all(bytes).unwrap();
        self
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response (Content-Length, chunked or until close).
    /// `head_request`: the response to a HEAD carries no body.
    pub fn response_to(&mut self, head_request: bool) -> Resp {
        let (mut resp, used) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut headers);
            match r.parse(&self.buf).unwrap() {
                httparse::Status::Complete(n) => {
                    let resp = Resp {
                        version: r.version.unwrap(),
                        status: r.code.unwrap(),
                        reason: r.reason.unwrap().to_owned(),
                        headers: r
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_owned(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                        body: Vec::new(),
                    };
                    break (resp, n);
                }
                httparse::Status::Partial => {
                    assert!(
                        self.fill().unwrap() > 0,
                        "closed before a full response head"
                    );
                }
            }
        };
        self.buf.drain(..used);
        if head_request || resp.status == 204 || resp.status == 304 || resp.status < 200 {
            return resp;
        }
        if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                assert!(self.fill().unwrap() > 0, "closed mid-body");
            }
            resp.body = self.buf.drain(..len).collect();
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    assert!(self.fill().unwrap() > 0, "closed mid-chunk");
                };
                let size =
                    usize::from_str_radix(std::str::from_utf8(&self.buf[..line_end]).unwrap(), 16)
                        .unwrap();
                self.buf.drain(..line_end + 2);
                while self.buf.len() < size + 2 {
                    assert!(self.fill().unwrap() > 0, "closed mid-chunk");
                }
                resp.body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
                if size == 0 {
                    break;
                }
            }
        } else {
            while self.fill().unwrap() > 0 {}
            resp.body = std::mem::take(&mut self.buf);
        }
        resp
    }

    /// Reads one response to a request that was not HEAD.
    pub fn response(&mut self) -> Resp {
        self.response_to(false)
    }

    /// Whether the server closed the connection (EOF or reset) within the
    /// read timeout, with nothing more sent.
    pub fn is_closed(&mut self) -> bool {
        match self.fill() {
            Ok(0) => self.buf.is_empty(),
            Ok(_) => false,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
        }
    }

    /// Waits for the server to close the connection; returns how long it took.
    pub fn time_to_close(&mut self) -> Duration {
        let started = Instant::now();
        loop {
            match self.fill() {
                Ok(0) => return started.elapsed(),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return started.elapsed(),
                Err(e) => panic!("connection not closed: {e}"),
            }
        }
    }

    /// Bytes read but not yet parsed.
    pub fn leftover(&self) -> &[u8] {
        &self.buf
    }
}
