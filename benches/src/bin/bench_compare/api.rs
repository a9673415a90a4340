//! The few API calls the upload and reconciliation scenarios make, over ureq.
//!
//! The same calls go to recon and to the Python peers, which serve the same
//! routes: `POST /v1/datasets` (text/csv body) and `POST /v1/reconciliations`
//! (`{left, right, rules}` with `?wait=SECONDS`), then
//! `GET /v1/reconciliations/{id}`.

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// A blocking API client of one server.
#[derive(Debug)]
pub struct Api {
    agent: ureq::Agent,
    base: String,
}

/// How long one reconciliation may take before the harness gives up.
const JOB_TIMEOUT: Duration = Duration::from_secs(300);

impl Api {
    /// A client of the server at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .new_agent();
        Self {
            agent,
            base: format!("http://{addr}"),
        }
    }

    /// Uploads a CSV file as a dataset; returns the dataset's id.
    ///
    /// # Errors
    /// On transport errors, a status other than 200/201, or a body without `id`.
    pub fn upload_csv(&self, path: &Path) -> anyhow::Result<String> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut res = self
            .agent
            .post(format!("{}/v1/datasets", self.base))
            .query("name", &name)
            .header("Content-Type", "text/csv")
            .send(file)
            .context("POST /v1/datasets")?;
        let status = res.status().as_u16();
        let body = res.body_mut().read_to_string().unwrap_or_default();
        if status != 201 && status != 200 {
            bail!("POST /v1/datasets answered {status}: {}", clip(&body));
        }
        let v: Value = serde_json::from_str(&body).context("parsing the dataset answer")?;
        v.get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .context("the dataset answer has no id")
    }

    /// Runs a reconciliation with `?wait` (polling when it is still running
    /// after that), then fetches the job with its summary. Returns the time
    /// from the POST to the job's end, and the final job JSON.
    ///
    /// # Errors
    /// On transport errors, unexpected statuses, a failed job or a timeout.
    pub fn reconcile(
        &self,
        left: &str,
        right: &str,
        rules: &str,
    ) -> anyhow::Result<(Duration, Value)> {
        let body = serde_json::json!({ "left": left, "right": right, "rules": rules });
        let bytes = serde_json::to_vec(&body).context("encoding the request")?;
        let t0 = Instant::now();
        let mut res = self
            .agent
            .post(format!("{}/v1/reconciliations", self.base))
            .query("wait", "120")
            .header("Content-Type", "application/json")
            .send(&bytes[..])
            .context("POST /v1/reconciliations")?;
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().unwrap_or_default();
        if !matches!(status, 200..=202) {
            bail!(
                "POST /v1/reconciliations answered {status}: {}",
                clip(&text)
            );
        }
        let mut job: Value = serde_json::from_str(&text).context("parsing the job answer")?;
        let id = job
            .get("id")
            .and_then(Value::as_str)
            .context("the job answer has no id")?
            .to_owned();
        let deadline = t0 + JOB_TIMEOUT;
        while !is_terminal(&job) {
            if Instant::now() > deadline {
                bail!("job {id} still running after {JOB_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(2));
            job = self.job(&id)?;
        }
        let ran = t0.elapsed();
        // Fetching the summary is part of the flow, also when ?wait ended it.
        let job = self.job(&id)?;
        match job.get("state").and_then(Value::as_str) {
            Some("succeeded") => Ok((ran, job)),
            _ => bail!("job {id} did not succeed: {}", clip(&job.to_string())),
        }
    }

    /// `GET /v1/reconciliations/{id}`.
    fn job(&self, id: &str) -> anyhow::Result<Value> {
        let mut res = self
            .agent
            .get(format!("{}/v1/reconciliations/{id}", self.base))
            .call()
            .context("GET /v1/reconciliations/{id}")?;
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().unwrap_or_default();
        if status != 200 {
            bail!(
                "GET /v1/reconciliations/{id} answered {status}: {}",
                clip(&text)
            );
        }
        serde_json::from_str(&text).context("parsing the job")
    }
}

/// Whether a job JSON is in an end state.
fn is_terminal(job: &Value) -> bool {
    matches!(
        job.get("state").and_then(Value::as_str),
        Some("succeeded" | "failed")
    )
}

/// The first 300 characters of a body, for error messages.
fn clip(text: &str) -> String {
    text.chars().take(300).collect()
}
