//! Server-Sent Events of a job's progress, read from `job.json` on disk so any
//! replica sharing the data directory can serve them (the instance running
//! the job first looks in its memory for an end it could not write, as `GET`
//! does).
//!
//! The stream is a blocking reader (it runs on a worker thread): each read
//! polls the job file until its state or progress changes, then yields one
//! `event: progress` (or, at the end, `event: end`) with the job's JSON. The
//! end comes once the job has ended and every result file is in place. A
//! comment line is sent every 15 s of silence so proxies keep the stream open.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use crate::jobs::{JobState, ParquetState, Progress, RecordLookup};

/// How often the job file is polled.
const POLL: Duration = Duration::from_millis(100);
/// Silence after which a keep-alive comment is sent.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A blocking SSE body for one job.
#[derive(Debug)]
pub struct EventStream {
    lookup: RecordLookup,
    last: Option<(JobState, Progress, Option<ParquetState>)>,
    out: Vec<u8>,
    pos: usize,
    ended: bool,
    last_sent: Instant,
}

impl EventStream {
    /// Events of the job `lookup` reads.
    pub fn new(lookup: RecordLookup) -> Self {
        Self {
            lookup,
            last: None,
            out: Vec::new(),
            pos: 0,
            ended: false,
            last_sent: Instant::now(),
        }
    }

    /// Waits for the next change and renders it into `out`.
    fn next_event(&mut self) -> io::Result<()> {
        self.out.clear();
        self.pos = 0;
        loop {
            let Some(rec) = self.lookup.record() else {
                // Deleted underneath us: end the stream.
                self.out.extend_from_slice(b"event: end\ndata: {}\n\n");
                self.ended = true;
                return Ok(());
            };
            let now = (rec.state, rec.progress, rec.parquet);
            if self.last != Some(now) {
                self.last = Some(now);
                let settled = rec.parquet != Some(ParquetState::Pending);
                let name = if rec.state.is_terminal() && settled {
                    self.ended = true;
                    "end"
                } else {
                    "progress"
                };
                let data = serde_json::to_string(&rec.to_api_json()).map_err(io::Error::other)?;
                self.out
                    .extend_from_slice(format!("event: {name}\ndata: {data}\n\n").as_bytes());
                self.last_sent = Instant::now();
                return Ok(());
            }
            if self.last_sent.elapsed() >= KEEP_ALIVE {
                self.out.extend_from_slice(b": keep-alive\n\n");
                self.last_sent = Instant::now();
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Read for EventStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.out.len() {
            if self.ended {
                return Ok(0);
            }
            self.next_event()?;
        }
        let n = (self.out.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
