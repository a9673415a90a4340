//! Streaming a job's results: the stored `results.csv`, filtered by status and
//! converted to NDJSON on the fly, a buffer at a time, never whole in memory.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::error::ApiError;

/// Result formats a client can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    /// CSV, as stored.
    Csv,
    /// Newline-delimited JSON objects keyed by the CSV header.
    Json,
    /// Apache Parquet (written by the job at completion).
    Parquet,
}

impl ResultFormat {
    /// Parses the `format` query value (`csv` when absent).
    ///
    /// # Errors
    /// [`ApiError::BadRequest`] for an unknown format.
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value.unwrap_or("csv") {
            "csv" => Ok(Self::Csv),
            "json" | "ndjson" => Ok(Self::Json),
            "parquet" => Ok(Self::Parquet),
            other => Err(ApiError::BadRequest(format!(
                "unknown format {other:?}; expected csv, json or parquet"
            ))),
        }
    }

    /// The response's media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv",
            Self::Json => "application/x-ndjson",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// Roughly how many bytes a [`ResultStream`] produces per refill.
const REFILL: usize = 64 * 1024;

/// A reader of `results.csv` rows that keeps those whose `status` column is in
/// the filter, written back as CSV or as NDJSON.
#[derive(Debug)]
pub struct ResultStream {
    reader: csv::Reader<File>,
    headers: csv::StringRecord,
    status_col: Option<usize>,
    filter: Vec<String>,
    json: bool,
    writer: csv::Writer<Vec<u8>>,
    record: csv::StringRecord,
    out: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ResultStream {
    /// Opens `path` (a results CSV with a header naming a `status` column).
    ///
    /// # Errors
    /// 500 when the file cannot be read; 400 when a filter is given but the file has no `status` column.
    pub fn open(path: &Path, filter: Vec<String>, format: ResultFormat) -> Result<Self, ApiError> {
        let at = |e| ApiError::internal_at(path, e);
        let file = File::open(path).map_err(at)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(file);
        let headers = reader
            .headers()
            .map_err(|e| ApiError::internal_at(path, e))?
            .clone();
        let status_col = headers.iter().position(|h| h == "status");
        if !filter.is_empty() && status_col.is_none() {
            return Err(ApiError::BadRequest(
                "these results have no status column to filter on".to_owned(),
            ));
        }
        let json = format == ResultFormat::Json;
        let mut writer = csv::Writer::from_writer(Vec::with_capacity(REFILL + 1024));
        if !json {
            writer.write_record(&headers).map_err(ApiError::internal)?;
        }
        Ok(Self {
            reader,
            headers,
            status_col,
            filter,
            json,
            writer,
            record: csv::StringRecord::new(),
            out: Vec::with_capacity(REFILL + 1024),
            pos: 0,
            done: false,
        })
    }

    fn keep(&self) -> bool {
        match self.status_col {
            Some(i) if !self.filter.is_empty() => {
                let s = self.record.get(i).unwrap_or("");
                self.filter.iter().any(|f| f == s)
            }
            _ => true,
        }
    }

    fn write_json(&mut self) -> io::Result<()> {
        self.out.push(b'{');
        for (i, (h, v)) in self.headers.iter().zip(self.record.iter()).enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            serde_json::to_writer(&mut self.out, h)?;
            self.out.push(b':');
            serde_json::to_writer(&mut self.out, v)?;
        }
        self.out.extend_from_slice(b"}\n");
        Ok(())
    }

    fn refill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.pos = 0;
        loop {
            let produced = if self.json {
                self.out.len()
            } else {
                self.writer.get_ref().len()
            };
            if produced >= REFILL {
                break;
            }
            if !self
                .reader
                .read_record(&mut self.record)
                .map_err(io::Error::other)?
            {
                self.done = true;
                break;
            }
            if !self.keep() {
                continue;
            }
            if self.json {
                self.write_json()?;
            } else {
                self.writer
                    .write_record(&self.record)
                    .map_err(io::Error::other)?;
            }
        }
        if !self.json {
            let fresh = csv::Writer::from_writer(Vec::with_capacity(REFILL + 1024));
            let full = std::mem::replace(&mut self.writer, fresh);
            self.out = full
                .into_inner()
                .map_err(|e| io::Error::other(e.error().to_string()))?;
        }
        Ok(())
    }
}

impl Read for ResultStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = (self.out.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Splits `status` query values (`a,b` or repeated) into a filter list.
pub fn status_filter(values: impl IntoIterator<Item = String>) -> Vec<String> {
    values
        .into_iter()
        .flat_map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(filter: &[&str], format: ResultFormat) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("results.csv");
        let mut csv = String::from("status,left_id,note\n");
        for i in 0..5000 {
            let s = ["matched", "unmatched_left", "break"][i % 3];
            csv.push_str(&format!("{s},{i},\"a, \"\"q\"\"\"\n"));
        }
        std::fs::write(&p, csv).unwrap();
        let filter = status_filter(filter.iter().map(|s| s.to_string()));
        let mut s = ResultStream::open(&p, filter, format).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn csv_filter_keeps_header_and_matching_rows() {
        let all = run(&[], ResultFormat::Csv);
        assert_eq!(all.lines().count(), 5001);
        let some = run(&["matched,break"], ResultFormat::Csv);
        assert_eq!(some.lines().count(), 1 + 1667 + 1666);
        assert!(some.starts_with("status,left_id,note\n"));
        assert!(!some.contains("unmatched_left"));
        assert!(some.contains("\"a, \"\"q\"\"\""));
    }

    #[test]
    fn json_rows_are_objects() {
        let out = run(&["unmatched_left"], ResultFormat::Json);
        let rows: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 1667);
        assert_eq!(rows[0]["status"], "unmatched_left");
        assert_eq!(rows[0]["left_id"], "1");
        assert_eq!(rows[0]["note"], "a, \"q\"");
    }

    #[test]
    fn formats_parse() {
        assert_eq!(ResultFormat::parse(None).unwrap(), ResultFormat::Csv);
        assert_eq!(ResultFormat::parse(Some("xml")).unwrap_err().status(), 400);
    }
}
