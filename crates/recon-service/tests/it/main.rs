//! In-process tests of the application: requests go straight to `App::handle`
//! with in-memory bodies (the socket-level suite lives with the engines).

#![allow(clippy::unwrap_used)]

mod auth;
mod datasets;
mod ops;
mod reconcile;
mod restart;
mod scale;

use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use recon_service::{App, RequestBody, ResponseBody};
use tuning::Config;

/// `batch` as the bytes of a Parquet file.
pub fn parquet_of(batch: &arrow_array::RecordBatch) -> Vec<u8> {
    let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.into_inner().unwrap()
}

/// A test application over its own data directory.
#[derive(Debug)]
pub struct TestApp {
    pub app: App,
    pub dir: tempfile::TempDir,
}

/// An answer with its body read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        self
    }
}

pub fn config_in(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    }
}

pub fn app() -> TestApp {
    app_with(|_| {})
}

pub fn app_with(f: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_in(dir.path());
    f(&mut config);
    let app = App::new(Arc::new(config), Vec::new()).unwrap();
    TestApp { app, dir }
}

impl TestApp {
    pub fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: RequestBody,
    ) -> Answer {
        send(&self.app, method, uri, headers, body)
    }

    pub fn get(&self, uri: &str) -> Answer {
        self.send(Method::GET, uri, &[], RequestBody::empty())
    }

    pub fn upload(&self, uri: &str, content_type: &str, body: impl Into<Bytes>) -> Answer {
        self.send(
            Method::POST,
            uri,
            &[("content-type", content_type)],
            RequestBody::from_bytes(body),
        )
    }
}

pub fn send(
    app: &App,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: RequestBody,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = app.handle(req.body(body).unwrap());
    let (parts, body) = res.into_parts();
    let body = match body {
        ResponseBody::Empty => Bytes::new(),
        ResponseBody::Full(b) => b,
        ResponseBody::Stream(mut r) => {
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap();
            Bytes::from(v)
        }
    };
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// One multipart part: name, file name, content type, data.
pub type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A multipart body of `parts`.
pub fn multipart(boundary: &str, parts: &[Part<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, filename, ct, data) in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disp = format!("Content-Disposition: form-data; name=\"{name}\"");
        if let Some(f) = filename {
            disp.push_str(&format!("; filename=\"{f}\""));
        }
        out.extend_from_slice(disp.as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(ct) = ct {
            out.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// A body that yields `data`, then fails with `kind` (a stalled or cut-off client).
#[derive(Debug)]
pub struct FailingBody {
    data: io::Cursor<Vec<u8>>,
    kind: io::ErrorKind,
}

impl FailingBody {
    pub fn new(data: &[u8], kind: io::ErrorKind) -> Self {
        Self {
            data: io::Cursor::new(data.to_vec()),
            kind,
        }
    }
}

impl Read for FailingBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.data.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(self.kind, "test body failure"));
        }
        Ok(n)
    }
}

/// Ledger and bank CSVs small enough to check by eye.
pub const LEDGER: &str = "id,date,amount,currency,ref\n\
L1,2024-01-02,100.00,EUR,INV-1\n\
L2,2024-01-03,-25.50,EUR,INV-2\n\
L3,2024-01-04,10.00,EUR,INV-3\n";

pub const BANK: &str = "id,date,amount,currency,ref\n\
B1,2024-01-02,100.00,EUR,INV-1\n\
B2,2024-01-03,-25.50,EUR,INV-2\n\
B9,2024-01-09,77.00,EUR,OTHER\n";
