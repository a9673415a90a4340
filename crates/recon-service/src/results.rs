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
    /// Newline-delimited JSON objects, as recon-core's
    /// `write_results_ndjson` writes them (see [`Column`]).
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
    /// How each column is written as JSON.
    columns: Vec<Column>,
    side_col: Option<usize>,
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
        let columns = headers.iter().map(Column::of).collect();
        let side_col = headers.iter().position(|h| h == "side");
        let mut writer = csv::Writer::from_writer(Vec::with_capacity(REFILL + 1024));
        if !json {
            writer.write_record(&headers).map_err(ApiError::internal)?;
        }
        Ok(Self {
            reader,
            headers,
            columns,
            side_col,
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

    /// Writes the current row as recon-core's NDJSON rows are: the
    /// result columns typed (`null` where the CSV is empty), then an
    /// `extra` object of the row's own side's extra columns by name.
    fn write_json(&mut self) -> io::Result<()> {
        let out = &mut self.out;
        let side = self
            .side_col
            .and_then(|i| self.record.get(i))
            .unwrap_or_default();
        out.push(b'{');
        let mut first = true;
        for ((h, v), column) in self
            .headers
            .iter()
            .zip(self.record.iter())
            .zip(&self.columns)
        {
            let value = match column {
                Column::Extra { .. } => continue,
                Column::Text => Some(v),
                Column::Optional | Column::Number => (!v.is_empty()).then_some(v),
            };
            if !first {
                out.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut *out, h)?;
            out.push(b':');
            match value {
                None => out.extend_from_slice(b"null"),
                // Our own writer's numbers; anything else stays text.
                Some(v) if *column == Column::Number && is_json_number(v) => {
                    out.extend_from_slice(v.as_bytes());
                }
                Some(v) => serde_json::to_writer(&mut *out, v)?,
            }
        }
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(b"\"extra\":{");
        let mut first = true;
        for (v, column) in self.record.iter().zip(&self.columns) {
            let Column::Extra { side: of, name } = column else {
                continue;
            };
            if of != side {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            serde_json::to_writer(&mut *out, name)?;
            out.push(b':');
            if v.is_empty() {
                out.extend_from_slice(b"null");
            } else {
                serde_json::to_writer(&mut *out, v)?;
            }
        }
        out.extend_from_slice(b"}}\n");
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

/// How a `results.csv` column is written as JSON, by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    /// Always text: `side`, `record_id`, `status`, `amount`, `currency`.
    Text,
    /// Text, `null` when empty: `rule`, `amount_diff` (an exact decimal,
    /// kept as text like `amount`).
    Optional,
    /// A number, `null` when empty: `match_id`, `line`, `score` (as the
    /// CSV rounds it), `date_diff_days`.
    Number,
    /// An `extra` column (`left_<name>`, `right_<name>`): in the row's
    /// `extra` object under `name` when the row is of `side`.
    Extra { side: String, name: String },
}

impl Column {
    fn of(header: &str) -> Self {
        match header {
            "match_id" | "line" | "score" | "date_diff_days" => Self::Number,
            "rule" | "amount_diff" => Self::Optional,
            "side" | "record_id" | "status" | "amount" | "currency" => Self::Text,
            other => match ["left", "right"]
                .into_iter()
                .find_map(|side| Some((side, other.strip_prefix(side)?.strip_prefix('_')?)))
            {
                Some((side, name)) => Self::Extra {
                    side: side.to_owned(),
                    name: name.to_owned(),
                },
                None => Self::Optional,
            },
        }
    }
}

/// Whether `v` is a JSON number as recon writes them: an optional minus,
/// digits, an optional fraction.
fn is_json_number(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(int) && all_digits(frac) && (int == "0" || !int.starts_with('0'))
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
    fn json_rows_are_recon_cores_ndjson_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("results.csv");
        std::fs::write(
            &p,
            "match_id,side,record_id,line,status,rule,score,amount,currency,amount_diff,\
             date_diff_days,left_note,left_right_x,right_branch\n\
             1,left,L1,2,matched,ref,1.0000,10.00,EUR,-0.50,-3,\"a, \"\"q\"\"\",,\n\
             1,right,B1,7,matched,ref,1.0000,9.50,EUR,-0.50,-3,,,Main\n\
             ,left,L2,3,unmatched,,,0.00,JPY,,,,x,\n",
        )
        .unwrap();
        let mut s = ResultStream::open(&p, Vec::new(), ResultFormat::Json).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let rows: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            rows,
            [
                serde_json::json!({"match_id": 1, "side": "left", "record_id": "L1", "line": 2,
                    "status": "matched", "rule": "ref", "score": 1.0, "amount": "10.00",
                    "currency": "EUR", "amount_diff": "-0.50", "date_diff_days": -3,
                    "extra": {"note": "a, \"q\"", "right_x": null}}),
                serde_json::json!({"match_id": 1, "side": "right", "record_id": "B1", "line": 7,
                    "status": "matched", "rule": "ref", "score": 1.0, "amount": "9.50",
                    "currency": "EUR", "amount_diff": "-0.50", "date_diff_days": -3,
                    "extra": {"branch": "Main"}}),
                serde_json::json!({"match_id": null, "side": "left", "record_id": "L2", "line": 3,
                    "status": "unmatched", "rule": null, "score": null, "amount": "0.00",
                    "currency": "JPY", "amount_diff": null, "date_diff_days": null,
                    "extra": {"note": null, "right_x": "x"}}),
            ]
        );
        // Numbers as written: the score keeps the CSV's four decimals.
        assert!(out.contains("\"score\":1.0000,"), "{out}");
    }

    #[test]
    fn numbers_are_only_what_recon_writes() {
        for ok in ["0", "7", "-3", "1.0000", "0.25", "120"] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in [
            "", "-", "01", "1.", ".5", "1e3", "NaN", "+1", "1.2.3", "--1",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn formats_parse() {
        assert_eq!(ResultFormat::parse(None).unwrap(), ResultFormat::Csv);
        assert_eq!(ResultFormat::parse(Some("xml")).unwrap_err().status(), 400);
    }
}
