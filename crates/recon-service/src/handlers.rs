//! The route handlers: one method per endpoint, each returning a response or
//! an [`ApiError`] that the request frame turns into a problem document.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use recon_core::input::Format;
use recon_core::outcome::SideName;
use serde::Deserialize;
use serde_json::json;

use crate::app::{App, Counted};
use crate::error::ApiError;
use crate::events::EventStream;
use crate::jobs::{JobRecord, JobState, Naming};
use crate::page::Page;
use crate::results::{ResultFormat, ResultStream, status_filter};
use crate::router::{Matched, Route};
use crate::store::{DatasetMeta, UploadOptions};
use crate::telemetry::{self, ProcessStats};
use crate::upload::{self, BodyKind, LimitedReader, Multipart, PartHeaders};
use crate::{Response, ResponseBody};

/// Largest JSON request body (a reconciliation request holds the rules text).
const MAX_JSON_BODY: u64 = 16 * 1024 * 1024;
/// Largest text form field (names, options, rules).
const MAX_FIELD: usize = 1024 * 1024;
/// How long a request for Parquet results waits for the file being written.
const PARQUET_WAIT: Duration = Duration::from_secs(10);

/// Longest `?wait=` accepted, in seconds.
const MAX_WAIT_SECS: u64 = 300;
/// How long `/v1/reconcile` waits for its job by default, in seconds.
const ONE_SHOT_WAIT_SECS: u64 = 60;

/// A JSON response with `status`.
fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    with_type(status, ResponseBody::from(bytes), "application/json")
}

fn with_type(status: StatusCode, body: ResponseBody, media_type: &'static str) -> Response {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    res
}

fn with_location(mut res: Response, location: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// The body of `POST /v1/reconciliations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconciliationRequest {
    left: String,
    right: String,
    rules: String,
}

impl App {
    /// Runs the handler of a matched, authorised request.
    pub(crate) fn route(
        &self,
        m: Matched<'_>,
        parts: &Parts,
        body: &mut Counted<'_>,
    ) -> Result<Response, ApiError> {
        let id = m.id.unwrap_or("");
        let query = parts.uri.query();
        check_query(m.route, query)?;
        if matches!(
            m.route,
            Route::CreateDataset | Route::CreateReconciliation | Route::Reconcile
        ) {
            check_content_encoding(parts)?;
        }
        match m.route {
            Route::Health => Ok(with_type(
                StatusCode::OK,
                ResponseBody::from(r#"{"status":"ok"}"#),
                "application/json",
            )),
            Route::Ready => Ok(self.ready()),
            Route::DebugStatus => Ok(json_response(StatusCode::OK, &self.debug_status())),
            Route::PerformanceMetrics => Ok(json_response(StatusCode::OK, &self.performance())),
            Route::Metrics => Ok(with_type(
                StatusCode::OK,
                ResponseBody::from(telemetry::render_prometheus()),
                "text/plain; version=0.0.4; charset=utf-8",
            )),
            Route::OpenApi => {
                let doc = self.openapi.get_or_init(|| {
                    let v = crate::openapi::document(env!("CARGO_PKG_VERSION"));
                    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
                });
                Ok(with_type(
                    StatusCode::OK,
                    ResponseBody::Full(doc.clone()),
                    "application/json",
                ))
            }
            Route::CreateDataset => self.create_dataset(parts, body),
            Route::ListDatasets => {
                let page = Page::from_query(query)?;
                let (items, next) = page.take(self.store.list(), |m| (&m.created, &m.id));
                let next = next.map(|c| page.next_link("/v1/datasets", &c, &[]));
                Ok(json_response(
                    StatusCode::OK,
                    &json!({ "datasets": items, "next": next }),
                ))
            }
            Route::GetDataset => Ok(json_response(StatusCode::OK, &json!(self.store.get(id)?))),
            Route::DeleteDataset => {
                // An accepted job that has not read its data yet would fail
                // for want of it: the dataset stays until the job has ended.
                if let Some(job) = self.jobs.unfinished_naming(id) {
                    return Err(ApiError::Conflict(format!(
                        "dataset {id:?} is used by reconciliation {:?}, which is {}: delete \
                         the dataset once the job has ended",
                        job.id,
                        job.state.as_str()
                    )));
                }
                self.store.delete(id)?;
                let mut res = Response::new(ResponseBody::Empty);
                *res.status_mut() = StatusCode::NO_CONTENT;
                Ok(res)
            }
            Route::CreateReconciliation => self.create_reconciliation(parts, body),
            Route::Reconcile => self.reconcile_one_shot(parts, body),
            Route::ListReconciliations => {
                let page = Page::from_query(query)?;
                let state = match upload::query_value(query, "state") {
                    None => None,
                    Some(name) => Some(JobState::from_name(&name).ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "state must be queued, running, succeeded or failed, not {name:?}"
                        ))
                    })?),
                };
                let mut all = self.jobs.list();
                if let Some(state) = state {
                    all.retain(|j| j.state == state);
                }
                let (items, next) = page.take(all, |j| (&j.created, &j.id));
                let keep: Vec<String> = state
                    .map(|s| format!("state={}", s.as_str()))
                    .into_iter()
                    .collect();
                let next = next.map(|c| page.next_link("/v1/reconciliations", &c, &keep));
                let items: Vec<_> = items.iter().map(JobRecord::to_api_json).collect();
                Ok(json_response(
                    StatusCode::OK,
                    &json!({ "reconciliations": items, "next": next }),
                ))
            }
            Route::GetReconciliation => Ok(json_response(
                StatusCode::OK,
                &self.jobs.get(id)?.to_api_json(),
            )),
            Route::Results => self.results(id, query),
            Route::Rejects => self.rejects(id, query),
            Route::CancelReconciliation => {
                let slot = self.wait_slot(wait_param(query, 0)?);
                Ok(job_answer(&self.jobs.cancel(id, slot.wait)?))
            }
            Route::Events => {
                let (_, lookup) = self.jobs.get_with_lookup(id)?;
                let mut res = with_type(
                    StatusCode::OK,
                    ResponseBody::stream(EventStream::new(lookup)),
                    "text/event-stream",
                );
                res.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                Ok(res)
            }
        }
    }

    fn ready(&self) -> Response {
        let (status, body) = if self.state.is_draining() {
            (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"draining"}"#)
        } else if !self.state.takes_new_clients() {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"status":"at_connection_limit"}"#,
            )
        } else {
            (StatusCode::OK, r#"{"status":"ready"}"#)
        };
        with_type(status, ResponseBody::from(body), "application/json")
    }

    fn debug_status(&self) -> serde_json::Value {
        let s = &self.state;
        let (datasets, dataset_bytes) = self.store.usage();
        let workers_total = s.workers_total();
        let busy = s.workers_busy();
        json!({
            "engine": s.engine(),
            "version": env!("CARGO_PKG_VERSION"),
            "listening": s.listening().map(|a| a.to_string()),
            "uptime_seconds": self.stats.uptime().as_secs_f64(),
            "settings": self.settings,
            "connections": {
                "open": s.connections_open(),
                "total": s.connections_total(),
                "limit": self.config.server.connection_limit.get(),
            },
            "workers": {
                "total": workers_total,
                "busy": busy,
                "idle": workers_total.saturating_sub(busy),
            },
            "requests_queued": s.requests_queued(),
            "draining": s.is_draining(),
            "jobs": self.jobs.counts(),
            "datasets": { "count": datasets, "bytes": dataset_bytes },
            "process": ProcessStats::read(),
        })
    }

    fn performance(&self) -> serde_json::Value {
        let routes = self.stats.snapshot();
        let sum = |f: fn(&telemetry::RouteSnapshot) -> u64| routes.iter().map(f).sum::<u64>();
        json!({
            "uptime_seconds": self.stats.uptime().as_secs_f64(),
            "requests_per_second_1m": self.stats.requests_per_second(),
            "totals": {
                "requests": sum(|r| r.count),
                "errors": sum(|r| r.errors),
                "bytes_in": sum(|r| r.bytes_in),
                "bytes_out": sum(|r| r.bytes_out),
            },
            "routes": routes,
            "process": ProcessStats::read(),
        })
    }

    fn body_limit(&self) -> u64 {
        self.config.server.max_request_body_size
    }

    /// 413 before reading when the declared length is past the limit.
    fn check_declared(&self, body: &Counted<'_>) -> Result<(), ApiError> {
        let limit = self.body_limit();
        match body.declared_len() {
            Some(len) if len >= limit => Err(ApiError::PayloadTooLarge { limit }),
            _ => Ok(()),
        }
    }

    fn create_dataset(&self, parts: &Parts, body: &mut Counted<'_>) -> Result<Response, ApiError> {
        self.check_declared(body)?;
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let kind = upload::body_kind(content_type)?;
        let mut opts = upload_options(parts.uri.query())?;
        let in_query: Vec<String> = upload::query_pairs(parts.uri.query())
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let limit = self.body_limit();
        let mut limited = LimitedReader::new(body, limit);
        let meta = match kind {
            BodyKind::Raw(format) => {
                let given = in_query.iter().any(|k| k == "encoding");
                apply_charset(&mut opts, content_type, format, given, "the body")?;
                self.store.create(&mut limited, format, &opts)?
            }
            BodyKind::Multipart(boundary) => {
                let mp = Multipart::new(limited, &boundary, self.config.server.recv_bytes.get());
                self.create_dataset_multipart(mp, opts, in_query)?
            }
        };
        let res = json_response(StatusCode::CREATED, &json!(meta));
        Ok(with_location(res, &format!("/v1/datasets/{}", meta.id)))
    }

    /// Stores the one file part of a multipart dataset upload. Text fields
    /// before it (`name`, `delimiter`, `has_header`, `encoding`, each at most once, and
    /// not also in the query: `in_query`) set options; any other part, or
    /// any part after the file, is refused (400,
    /// naming the part) and nothing is kept.
    fn create_dataset_multipart(
        &self,
        mut mp: Multipart<LimitedReader<&mut Counted<'_>>>,
        mut opts: UploadOptions,
        in_query: Vec<String>,
    ) -> Result<DatasetMeta, ApiError> {
        let limit = self.body_limit();
        let io = |e: std::io::Error| ApiError::from_body_io(&e, limit);
        let mut fields: Vec<String> = Vec::new();
        let built = loop {
            let part = mp.next_part().map_err(io)?.ok_or_else(|| {
                ApiError::BadRequest("the multipart body has no file part".to_owned())
            })?;
            let name = part.name.as_deref().unwrap_or("");
            if part.filename.is_some() || name == "file" {
                let format = part_format(&part)?;
                let given = fields.iter().chain(&in_query).any(|k| k == "encoding");
                apply_part_charset(&mut opts, &part, format, given)?;
                if opts.name.is_none() {
                    opts.name = part.filename.clone();
                }
                if opts.name.is_none() {
                    opts.source = Some(format!("part {name:?}"));
                }
                break self.store.build(&mut mp, format, &opts);
            }
            if !UPLOAD_FIELDS.contains(&name) {
                return Err(ApiError::BadRequest(format!(
                    "unknown part {name:?}; a dataset upload takes the fields {}, then one file part",
                    UPLOAD_FIELDS.join(", ")
                )));
            }
            if fields.iter().any(|f| f == name) {
                return Err(given_twice("part", name));
            }
            if in_query.iter().any(|k| k == name) {
                return Err(ApiError::BadRequest(format!(
                    "option {name:?} is given both in the query and as a part; give it once"
                )));
            }
            fields.push(name.to_owned());
            let value = upload::read_small_part(&mut mp, MAX_FIELD).map_err(io)?;
            apply_option(&mut opts, name, &value)?;
        };
        // Nothing may follow the file part but the closing boundary: a second
        // file, or a field that came too late to apply, is refused rather
        // than dropped, and the dataset built with it is never published.
        // That is the request's own mistake, said first even when the file
        // was refused too (read in the options the late field would have
        // changed, it may well have been).
        let late = match mp.next_part() {
            Ok(None) => return self.store.publish(built?),
            Ok(Some(part)) => ApiError::BadRequest(format!(
                "part {:?}{} follows the file part; a dataset upload takes one file part, \
                 after its fields ({})",
                part.name.as_deref().unwrap_or(""),
                part.filename
                    .as_deref()
                    .map(|f| format!(" ({f})"))
                    .unwrap_or_default(),
                UPLOAD_FIELDS.join(", ")
            )),
            Err(e) => {
                // The body broke off: the file's own error if it had one.
                built?;
                io(e)
            }
        };
        Err(late)
    }

    fn create_reconciliation(
        &self,
        parts: &Parts,
        body: &mut Counted<'_>,
    ) -> Result<Response, ApiError> {
        // The JSON request has its own, smaller cap: named as such when it
        // is the one that applies.
        let limit = self.body_limit().min(MAX_JSON_BODY);
        let too_large = || {
            if limit < self.body_limit() {
                ApiError::JsonTooLarge { limit }
            } else {
                ApiError::PayloadTooLarge { limit }
            }
        };
        if body.declared_len().is_some_and(|n| n >= limit) {
            return Err(too_large());
        }
        let essence = parts
            .headers
            .get(header::CONTENT_TYPE)
            .map(|ct| upload::essence(ct.to_str().unwrap_or("")));
        match essence {
            Some(e) if e.eq_ignore_ascii_case("application/json") => {}
            Some(e) => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "send the request as application/json, not {e:?}"
                )));
            }
            None => {
                return Err(ApiError::UnsupportedMediaType(
                    "send the request as application/json (the Content-Type header is missing)"
                        .to_owned(),
                ));
            }
        }
        let wait = wait_param(parts.uri.query(), 0)?;
        let mut bytes = Vec::new();
        LimitedReader::new(body, limit)
            .read_to_end(&mut bytes)
            .map_err(|e| match ApiError::from_body_io(&e, limit) {
                ApiError::PayloadTooLarge { .. } => too_large(),
                other => other,
            })?;
        // An object only: serde would also take the fields as an array, in
        // order, which no one means (and its error names our type).
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::BadRequest(
                "invalid reconciliation request: expected a JSON object \
                 {\"left\": dataset id, \"right\": dataset id, \"rules\": rules TOML}"
                    .to_owned(),
            ));
        }
        let req: ReconciliationRequest = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::BadRequest(format!("invalid reconciliation request: {e}")))?;
        let slot = self.wait_slot(wait);
        let rec = self
            .jobs
            .submit(&req.left, &req.right, &req.rules, slot.wait, Naming::ById)?;
        Ok(job_answer(&rec))
    }

    /// How long a request asking to wait `wait` for its job may: all of it
    /// while fewer than half the handler threads (`threads`, at least one)
    /// are waiting, else not at all (the job is answered at once, 202, and
    /// the client polls or follows its events). A wait holds a handler
    /// thread; without this bound a few waiting clients would leave none for
    /// anyone else's requests. The slot is held until the guard drops.
    fn wait_slot(&self, wait: Duration) -> WaitSlot<'_> {
        let most = (self.config.server.threads.get() / 2).max(1);
        let taken = !wait.is_zero()
            && self
                .waiting
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < most).then_some(n + 1)
                })
                .is_ok();
        if !wait.is_zero() && !taken {
            tracing::debug!(
                most,
                "a wait answered at once: half the handler threads are waiting"
            );
        }
        WaitSlot {
            waiting: taken.then_some(&self.waiting),
            wait: if taken { wait } else { Duration::ZERO },
        }
    }

    fn reconcile_one_shot(
        &self,
        parts: &Parts,
        body: &mut Counted<'_>,
    ) -> Result<Response, ApiError> {
        self.check_declared(body)?;
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let boundary = match content_type.and_then(upload::multipart_boundary) {
            Some(boundary) => boundary?,
            None => {
                let what = match content_type {
                    Some(ct) => format!(", not {:?}", upload::essence(ct)),
                    None => "; the request has no Content-Type".to_owned(),
                };
                return Err(ApiError::UnsupportedMediaType(format!(
                    "POST /v1/reconcile takes multipart/form-data with the files `left` and \
                     `right` and the field `rules`{what}"
                )));
            }
        };
        let wait = wait_param(parts.uri.query(), ONE_SHOT_WAIT_SECS)?;
        let limit = self.body_limit();
        let limited = LimitedReader::new(body, limit);
        let mut mp = Multipart::new(limited, &boundary, self.config.server.recv_bytes.get());
        // The files are built in scratch space and published only once the
        // whole request is read: a request that fails or dies half-way
        // (even SIGKILL) leaves no dataset listed.
        let mut left: Option<crate::store::Built> = None;
        let mut right: Option<crate::store::Built> = None;
        let mut rules: Option<String> = None;
        let mut parsed: Option<recon_core::rules::Rules> = None;
        let io = |e: std::io::Error| ApiError::from_body_io(&e, limit);
        let outcome = (|| {
            while let Some(part) = mp.next_part().map_err(io)? {
                let name = part.name.as_deref().unwrap_or("");
                let twice = match name {
                    "left" => left.is_some(),
                    "right" => right.is_some(),
                    "rules" => rules.is_some(),
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "unknown part {name:?}; POST /v1/reconcile takes the files `left` \
                             and `right` and the field `rules`"
                        )));
                    }
                };
                if twice {
                    return Err(given_twice("part", name));
                }
                if name == "rules" {
                    let text = upload::read_small_part(&mut mp, MAX_FIELD).map_err(io)?;
                    // Read now, so the files after it are read as it says;
                    // invalid rules are refused when the job is submitted.
                    parsed = crate::reconcile::parse_rules(&text).ok();
                    rules = Some(text);
                    continue;
                }
                // The rules' reading keys for this side, when the rules came
                // first (as `recon match` reads the files); else the defaults,
                // and a rules part that disagrees is refused at submission.
                let mapping = parsed.as_ref().map(|r| {
                    r.mapping(if name == "left" {
                        SideName::Left
                    } else {
                        SideName::Right
                    })
                });
                let mut opts = UploadOptions {
                    name: part.filename.clone().or_else(|| Some(name.to_owned())),
                    source: Some(
                        (part.filename.clone()).unwrap_or_else(|| format!("part {name:?}")),
                    ),
                    ..UploadOptions::default()
                };
                // The part's own checks (a content encoding, a type that
                // names no format) hold whatever the rules say.
                let mut format = part_format(&part)?;
                if let Some(m) = mapping {
                    opts.delimiter = recon_core::mapping::delimiter_byte(m.delimiter)
                        .map_err(|e| ApiError::Unprocessable(format!("[{name}]: {e}")))?;
                    opts.has_header = m.has_header;
                    opts.encoding = m.encoding;
                    format = m.format.unwrap_or(format);
                }
                // The rules' `encoding`, when not UTF-8, is the option a
                // part's charset must agree with.
                let given = !opts.encoding.is_utf8();
                apply_part_charset(&mut opts, &part, format, given)?;
                let built = self.store.build(&mut mp, format, &opts)?;
                if name == "left" {
                    left = Some(built);
                } else {
                    right = Some(built);
                }
            }
            Ok::<(), ApiError>(())
        })();
        // Unpublished files are removed as they are dropped.
        outcome?;
        let absent = [left.is_none(), right.is_none(), rules.is_none()];
        let (Some(l), Some(r), Some(rules)) = (left, right, &rules) else {
            let missing: Vec<&str> = ["`left`", "`right`", "`rules`"]
                .into_iter()
                .zip(absent)
                .filter_map(|(part, absent)| absent.then_some(part))
                .collect();
            return Err(ApiError::BadRequest(format!(
                "the multipart body has no {}; it needs the files `left` and `right` and the \
                 field `rules`",
                missing.join(" or ")
            )));
        };
        // Checked before anything is published: a refused request's files
        // are never listed, not even for a moment.
        self.jobs.check(
            [l.meta(), r.meta()],
            rules,
            Naming::AsParts,
            |side, mapping| match side {
                SideName::Left => l.check_columns(mapping),
                SideName::Right => r.check_columns(mapping),
            },
        )?;
        let l = self.store.publish(l)?;
        let r = match self.store.publish(r) {
            Ok(r) => r,
            Err(e) => {
                let _ = self.store.delete(&l.id);
                return Err(e);
            }
        };
        let slot = self.wait_slot(wait);
        let rec = match self
            .jobs
            .submit(&l.id, &r.id, rules, slot.wait, Naming::AsParts)
        {
            Ok(rec) => rec,
            Err(e) => {
                // Refused: the files it stored for the request go again.
                for id in [&l.id, &r.id] {
                    let _ = self.store.delete(id);
                }
                return Err(e);
            }
        };
        Ok(job_answer(&rec))
    }

    /// One side's quarantined rows as the CLI's CSV (`line,column,value,reason`).
    fn rejects(&self, id: &str, query: Option<&str>) -> Result<Response, ApiError> {
        let (rec, dir) = self.jobs.get_with_dir(id)?;
        let side = match upload::query_value(query, "side").as_deref() {
            Some("left") => SideName::Left,
            Some("right") => SideName::Right,
            other => {
                return Err(ApiError::BadRequest(match other {
                    None => "say which side's rejects: ?side=left or ?side=right".to_owned(),
                    Some(v) => format!("side must be left or right, not {v:?}"),
                }));
            }
        };
        if rec.state != JobState::Succeeded {
            return Err(ApiError::Conflict(unsucceeded(id, &rec, "rejects")));
        }
        let name = crate::reconcile::rejects_file(side);
        let path = dir.join(name);
        let file = std::fs::File::open(&path).map_err(|e| {
            match e.kind() {
                // A job that succeeded before rejects were kept.
                std::io::ErrorKind::NotFound => ApiError::NotFound(format!(
                    "reconciliation {id} has no stored rejects (it ran before they were kept)"
                )),
                _ => ApiError::internal_at(&path, e),
            }
        })?;
        let mut res = with_type(StatusCode::OK, ResponseBody::stream(file), "text/csv");
        if let Ok(v) = HeaderValue::from_str(&format!(
            "attachment; filename=\"rejects-{}-{id}.csv\"",
            side.as_str()
        )) {
            res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
        Ok(res)
    }

    fn results(&self, id: &str, query: Option<&str>) -> Result<Response, ApiError> {
        let (rec, dir) = self.jobs.get_with_dir(id)?;
        if rec.state != JobState::Succeeded {
            return Err(ApiError::Conflict(unsucceeded(id, &rec, "results")));
        }
        let pairs = upload::query_pairs(query);
        let format = ResultFormat::parse(
            pairs
                .iter()
                .find_map(|(k, v)| (k == "format").then_some(v.as_str())),
        )?;
        let asked: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k == "status")
            .map(|(_, v)| v.clone())
            .collect();
        let asked_any = !asked.is_empty();
        let filter = status_filter(asked);
        if asked_any && filter.is_empty() {
            return Err(ApiError::BadRequest(
                "the status list is empty; give one or more of matched, break, ambiguous, \
                 unmatched or duplicate (comma-separated or repeated), or leave status out \
                 for every row"
                    .to_owned(),
            ));
        }
        crate::reconcile::check_statuses(&filter).map_err(ApiError::BadRequest)?;
        let body = match format {
            ResultFormat::Parquet => {
                if !filter.is_empty() {
                    return Err(ApiError::BadRequest(
                        "status filtering is offered for csv and json; parquet results are served whole"
                            .to_owned(),
                    ));
                }
                let pending = Some(crate::jobs::ParquetState::Pending);
                if rec.parquet == pending
                    && self.jobs.wait_parquet(id, PARQUET_WAIT)?.parquet == pending
                {
                    return Err(ApiError::Conflict(
                        "the parquet results are being written; retry in a moment \
                         (the events stream ends when they are in place)"
                            .to_owned(),
                    ));
                }
                let file = std::fs::File::open(dir.join("results.parquet")).map_err(|_| {
                    ApiError::NotFound("this reconciliation has no parquet results".to_owned())
                })?;
                ResponseBody::stream(file)
            }
            ResultFormat::Csv if filter.is_empty() => {
                let path = dir.join("results.csv");
                let file =
                    std::fs::File::open(&path).map_err(|e| ApiError::internal_at(&path, e))?;
                ResponseBody::stream(file)
            }
            _ => ResponseBody::stream(ResultStream::open(
                &dir.join("results.csv"),
                filter,
                format,
            )?),
        };
        let mut res = with_type(StatusCode::OK, body, format.media_type());
        let ext = match format {
            ResultFormat::Csv => "csv",
            ResultFormat::Json => "ndjson",
            ResultFormat::Parquet => "parquet",
        };
        if let Ok(v) =
            HeaderValue::from_str(&format!("attachment; filename=\"results-{id}.{ext}\""))
        {
            res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
        Ok(res)
    }
}

/// A request's turn to wait for its job (see `App::wait_slot`).
struct WaitSlot<'a> {
    /// The count it was taken from, given back on drop; `None` when it waits
    /// not at all.
    waiting: Option<&'a AtomicUsize>,
    /// How long it may wait.
    wait: Duration,
}

impl Drop for WaitSlot<'_> {
    fn drop(&mut self) {
        if let Some(waiting) = self.waiting {
            waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The query parameters an API route takes: (each at most once, repeatable).
/// `None` for the probes and operations endpoints, which ignore their query
/// (a load balancer's or scraper's cache-buster is no mistake there).
fn query_keys(route: Route) -> Option<(&'static [&'static str], &'static [&'static str])> {
    match route {
        Route::Health
        | Route::Ready
        | Route::DebugStatus
        | Route::PerformanceMetrics
        | Route::Metrics
        | Route::OpenApi => None,
        Route::CreateDataset => Some((&UPLOAD_FIELDS, &[])),
        Route::CreateReconciliation | Route::Reconcile | Route::CancelReconciliation => {
            Some((&["wait"], &[]))
        }
        Route::Results => Some((&["format"], &["status"])),
        Route::Rejects => Some((&["side"], &[])),
        Route::ListDatasets => Some((&["limit", "after"], &[])),
        Route::ListReconciliations => Some((&["limit", "after", "state"], &[])),
        Route::GetDataset | Route::DeleteDataset | Route::GetReconciliation | Route::Events => {
            Some((&[], &[]))
        }
    }
}

/// Refuses an API request whose query has a parameter its route does not
/// take, or one it takes once given twice: a misspelt `?statuss=unmatched`
/// must not quietly answer every row.
///
/// # Errors
/// [`ApiError::BadRequest`] naming the parameter and what the route takes.
fn check_query(route: Route, query: Option<&str>) -> Result<(), ApiError> {
    let Some((once, repeatable)) = query_keys(route) else {
        return Ok(());
    };
    let pairs = upload::query_pairs(query);
    for (i, (key, _)) in pairs.iter().enumerate() {
        if repeatable.contains(&key.as_str()) {
            continue;
        }
        if !once.contains(&key.as_str()) {
            let takes: Vec<&str> = once.iter().chain(repeatable).copied().collect();
            return Err(ApiError::BadRequest(if takes.is_empty() {
                format!("unknown query parameter {key:?}; this endpoint takes none")
            } else {
                format!(
                    "unknown query parameter {key:?}; this endpoint takes {}",
                    takes.join(", ")
                )
            }));
        }
        if pairs[..i].iter().any(|(k, _)| k == key) {
            return Err(given_twice("query parameter", key));
        }
    }
    Ok(())
}

/// Refuses a body sent with a content coding (`Content-Encoding: gzip`):
/// recon reads bodies as they are, and would otherwise take compressed bytes
/// for the data itself.
///
/// # Errors
/// [`ApiError::UnsupportedMediaType`] naming the coding.
fn check_content_encoding(parts: &Parts) -> Result<(), ApiError> {
    for value in parts.headers.get_all(header::CONTENT_ENCODING) {
        let text = value.to_str().unwrap_or("?");
        if text
            .split(',')
            .any(|c| !c.trim().is_empty() && !c.trim().eq_ignore_ascii_case("identity"))
        {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Encoding {:?} is not supported; send the body uncompressed",
                text.trim()
            )));
        }
    }
    Ok(())
}

/// A request that names one part or parameter twice.
fn given_twice(what: &str, name: &str) -> ApiError {
    ApiError::BadRequest(format!("{what} {name:?} is given twice"))
}

/// The form fields a multipart dataset upload takes before its file part.
const UPLOAD_FIELDS: [&str; 4] = ["name", "delimiter", "has_header", "encoding"];

/// The format of a multipart file part: its `Content-Type` when that names a
/// format recon reads, else its file name's extension. A generic type
/// (`application/octet-stream`, `text/plain`) leaves it to the extension.
///
/// # Errors
/// [`ApiError::UnsupportedMediaType`] for a type naming another format (e.g.
/// `application/json`), a type and an extension naming two formats,
/// neither naming one, or a part with an encoding (`gzip`, `base64`).
fn part_format(part: &PartHeaders) -> Result<Format, ApiError> {
    let name = part.name.as_deref().unwrap_or("");
    // As for a whole body's Content-Encoding: compressed or encoded bytes
    // would be read as the data itself.
    if let Some(encoding) = part.encoding.as_deref().filter(|e| {
        !["identity", "binary", "8bit", "7bit"]
            .iter()
            .any(|plain| e.trim().eq_ignore_ascii_case(plain))
    }) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "part {name:?} has the encoding {encoding:?}, which recon does not undo; send it \
             as it is (binary)"
        )));
    }
    let essence = part
        .content_type
        .as_deref()
        .map(|ct| upload::essence(ct).to_ascii_lowercase());
    let by_type = match essence.as_deref() {
        None | Some("" | "application/octet-stream" | "text/plain") => None,
        Some(essence) => Some(Format::from_media_type(essence).ok_or_else(|| {
            ApiError::UnsupportedMediaType(format!(
                "part {name:?} has Content-Type {essence:?}, which is not a format recon reads; \
                 send text/csv, application/vnd.apache.parquet, \
                 application/vnd.apache.arrow.stream, application/vnd.apache.arrow.file or \
                 application/x-ndjson, or application/octet-stream to go by the file name's \
                 extension"
            ))
        })?),
    };
    // `.txt` is read as CSV when nothing else says, but is no claim to a
    // format that could contradict the part's type.
    let filename = part.filename.as_deref().unwrap_or("");
    let by_name = Format::from_path(std::path::Path::new(filename));
    let ext_claims = !std::path::Path::new(filename)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("txt"));
    match (by_type, by_name) {
        (Some(t), Some(n)) if t != n && ext_claims => Err(ApiError::UnsupportedMediaType(format!(
            "part {name:?} has Content-Type {:?} ({}) but its file name {filename:?} says {}; \
             make them agree, or send application/octet-stream to go by the file name",
            essence.as_deref().unwrap_or(""),
            t.name(),
            n.name(),
        ))),
        (Some(f), _) | (None, Some(f)) => Ok(f),
        (None, None) => Err(ApiError::UnsupportedMediaType(format!(
            "cannot tell the format of part {name:?} (content type {:?}, file name {filename:?}); \
             give it a format's Content-Type or a file name ending in .csv (.txt), .parquet \
             (.pq), .arrow (.feather, .ipc), .arrows or .ndjson (.jsonl)",
            part.content_type.as_deref().unwrap_or(""),
        ))),
    }
}

/// Applies the `charset` of an upload's content type (the body's, or its
/// file part's): for CSV, the encoding it is read in, unless the upload's
/// `encoding` option (`given`) names it already; a CSV in the option's
/// encoding and a charset naming another is refused, as is JSON Lines in any
/// charset but UTF-8. The other formats are binary: a charset says nothing.
///
/// # Errors
/// [`ApiError::UnsupportedMediaType`] for a charset recon does not know,
/// one the option contradicts, or a JSON Lines charset other than UTF-8.
fn apply_charset(
    opts: &mut UploadOptions,
    content_type: Option<&str>,
    format: Format,
    given: bool,
    called: &str,
) -> Result<(), ApiError> {
    if !matches!(format, Format::Csv | Format::Ndjson) {
        return Ok(());
    }
    let labels = content_type.map_or_else(Vec::new, |ct| upload::parameters(ct, "charset"));
    let label = match labels.as_slice() {
        [] => return Ok(()),
        [one] => one,
        _ => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "{called} gives a charset {} times ({}); give one",
                labels.len(),
                labels.join(", ")
            )));
        }
    };
    let charset = recon_core::mapping::TextEncoding::from_label(label).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "{called} has the charset {label:?}, which recon does not know; send a WHATWG \
             label (utf-8, windows-1252, iso-8859-15, utf-16le, shift_jis, ...)"
        ))
    })?;
    if format == Format::Ndjson && !charset.is_utf8() {
        return Err(ApiError::UnsupportedMediaType(format!(
            "{called} has the charset {label:?}, but JSON Lines is UTF-8; send it as UTF-8"
        )));
    }
    if given && opts.encoding != charset {
        return Err(ApiError::UnsupportedMediaType(format!(
            "{called} has the charset {label:?} ({charset}) but the `encoding` option says {}; \
             give one, or make them agree",
            opts.encoding
        )));
    }
    opts.encoding = charset;
    Ok(())
}

/// [`apply_charset`] for a multipart file part, named by its part name.
fn apply_part_charset(
    opts: &mut UploadOptions,
    part: &PartHeaders,
    format: Format,
    given: bool,
) -> Result<(), ApiError> {
    let called = format!("part {:?}", part.name.as_deref().unwrap_or(""));
    apply_charset(opts, part.content_type.as_deref(), format, given, &called)
}

/// Upload options from the query: `name`, `delimiter`, `has_header`, `encoding`.
fn upload_options(query: Option<&str>) -> Result<UploadOptions, ApiError> {
    let mut opts = UploadOptions::default();
    for (k, v) in upload::query_pairs(query) {
        apply_option(&mut opts, &k, &v)?;
    }
    Ok(opts)
}

/// Why a job has no `what` (results, rejects) yet, or never will.
fn unsucceeded(id: &str, rec: &JobRecord, what: &str) -> String {
    match rec.state {
        JobState::Failed => format!(
            "reconciliation {id} failed ({}); it has no {what}",
            rec.error.as_deref().unwrap_or("no error recorded")
        ),
        state => format!(
            "reconciliation {id} is {}; its {what} exist once it has succeeded",
            state.as_str()
        ),
    }
}

/// Applies one upload option (from the query or a form field). Callers pass
/// only the keys of [`UPLOAD_FIELDS`] (checked before), so others are no-ops.
fn apply_option(opts: &mut UploadOptions, key: &str, value: &str) -> Result<(), ApiError> {
    match key {
        "name" => {
            let name = value.trim();
            if !name.is_empty() {
                opts.name = Some(name.chars().take(256).collect());
            }
        }
        "delimiter" => {
            let mut chars = value.chars();
            let d = match (value, chars.next(), chars.next()) {
                ("\\t" | "tab", _, _) => b'\t',
                // recon-core's own check: one ASCII character, not a line
                // break or the quote, with its words.
                (_, Some(c), None) => recon_core::mapping::delimiter_byte(c)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?,
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "delimiter must be one ASCII character, not {value:?}"
                    )));
                }
            };
            opts.delimiter = d;
        }
        "encoding" => {
            opts.encoding = value
                .parse()
                .map_err(|e: recon_core::mapping::MappingError| {
                    ApiError::BadRequest(e.to_string())
                })?;
        }
        "has_header" => {
            opts.has_header = match value {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "has_header must be true or false (or 1 or 0, yes or no), not {value:?}"
                    )));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Answers with a submitted job: 200 when it has ended, else 202.
fn job_answer(rec: &JobRecord) -> Response {
    let status = if rec.state.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let res = json_response(status, &rec.to_api_json());
    with_location(res, &format!("/v1/reconciliations/{}", rec.id))
}

/// The `wait` query parameter: whole seconds from 0 to [`MAX_WAIT_SECS`]
/// (`default` when absent).
///
/// # Errors
/// [`ApiError::BadRequest`] for anything else (a fraction, a sign, more than
/// the maximum): refused rather than rounded or capped, so a client never
/// waits other than it asked.
fn wait_param(query: Option<&str>, default: u64) -> Result<Duration, ApiError> {
    let secs = match upload::query_value(query, "wait") {
        None => default,
        Some(v) => Some(v.as_str())
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|s| *s <= MAX_WAIT_SECS)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "wait must be whole seconds from 0 to {MAX_WAIT_SECS}, not {v:?}"
                ))
            })?,
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_with_threads(threads: usize) -> (tempfile::TempDir, App) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = tuning::Config {
            data_dir: dir.path().to_path_buf(),
            ..tuning::Config::default()
        };
        config.server.threads = std::num::NonZeroUsize::new(threads).unwrap();
        let app = App::new(std::sync::Arc::new(config), Vec::new()).unwrap();
        (dir, app)
    }

    #[test]
    fn at_most_half_the_threads_wait() {
        let secs = Duration::from_secs;
        let (_dir, app) = app_with_threads(4);
        let a = app.wait_slot(secs(30));
        let b = app.wait_slot(secs(30));
        let c = app.wait_slot(secs(30));
        assert_eq!(
            [a.wait, b.wait, c.wait],
            [secs(30), secs(30), Duration::ZERO]
        );
        // Not waiting takes no slot.
        let none = app.wait_slot(Duration::ZERO);
        assert!(none.waiting.is_none());
        drop((a, c, none));
        assert_eq!(app.wait_slot(secs(5)).wait, secs(5));
        assert_eq!(app.waiting.load(Ordering::Acquire), 1);
        drop(b);
        assert_eq!(app.waiting.load(Ordering::Acquire), 0);
        // One thread: its one request may still wait.
        let (_dir, app) = app_with_threads(1);
        assert_eq!(app.wait_slot(secs(3)).wait, secs(3));
    }

    #[test]
    fn wait_and_options_parse() {
        assert_eq!(wait_param(None, 2).unwrap(), Duration::from_secs(2));
        assert_eq!(wait_param(Some("wait=0"), 2).unwrap(), Duration::ZERO);
        assert_eq!(
            wait_param(Some("wait=300"), 0).unwrap(),
            Duration::from_secs(300)
        );
        for bad in ["301", "1.5", "1e9", "-1", "", "5s", "soon"] {
            let err = wait_param(Some(&format!("wait={bad}")), 0).unwrap_err();
            assert_eq!(err.status(), 400, "{bad:?}");
            assert_eq!(
                err.to_string(),
                format!("wait must be whole seconds from 0 to 300, not {bad:?}")
            );
        }
        let o = upload_options(Some("name=a%20b&delimiter=%3B&has_header=false")).unwrap();
        assert_eq!(
            (o.name.as_deref(), o.delimiter, o.has_header),
            (Some("a b"), b';', false)
        );
        assert_eq!(
            upload_options(Some("delimiter=ab")).unwrap_err().status(),
            400
        );
        for (query, said) in [
            (
                "delimiter=%22",
                "delimiter \"\\\"\" cannot be a line break or the quote character",
            ),
            ("delimiter=%0A", "delimiter \"\\n\" cannot be a line break"),
            (
                "delimiter=%C3%A9",
                "delimiter \"é\" must be one ASCII character",
            ),
        ] {
            let err = upload_options(Some(query)).unwrap_err();
            assert_eq!(err.status(), 400, "{query}");
            assert!(err.to_string().starts_with(said), "{query}: {err}");
        }
    }
}
