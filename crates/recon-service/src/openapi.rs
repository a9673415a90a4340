//! The OpenAPI 3.1 description served at `/openapi.json`.
//!
//! Written by hand (one entry per operation), and kept true by a test that
//! compares its operations with the router's [`ROUTES`](crate::router::ROUTES)
//! in both directions.

use serde_json::{Value, json};

fn problem(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

fn ok_json(desc: &str, schema: Value) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": schema}}})
}

/// `limit` and `after`, the list endpoints' paging parameters.
fn page_params() -> Value {
    json!([
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}, "description": "at most this many items; the answer's `next` links to the page after (without it the list is whole)"},
        {"name": "after", "in": "query", "schema": {"type": "string"}, "description": "the cursor of a previous answer's `next` link"}
    ])
}

/// A list's `next` link: the next page's path and query, null on the last.
fn next_link() -> Value {
    json!({"type": ["string", "null"], "description": "the next page (same limit and filter), or null when this page is the last or no limit was given"})
}

fn id_param() -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f-]{36}$"}})
}

/// The document. Every operation under `/v1/` answers 401 and 403 when keys
/// are configured; those two are added to each here rather than written out.
pub fn document(version: &str) -> Value {
    let mut doc = operations(version);
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut().filter(|(p, _)| p.starts_with("/v1/")) {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut().filter(|(m, _)| *m != "parameters") {
                let Some(responses) = op["responses"].as_object_mut() else {
                    tracing::warn!(path, method, "an OpenAPI operation without responses");
                    continue;
                };
                responses
                    .entry("401")
                    .or_insert_with(|| problem("no key (when keys are configured)"));
                responses
                    .entry("403")
                    .or_insert_with(|| problem("a key that matches none configured"));
            }
        }
    }
    doc
}

/// Every operation as written.
fn operations(version: &str) -> Value {
    let dataset = json!({"$ref": "#/components/schemas/Dataset"});
    let job = json!({"$ref": "#/components/schemas/Job"});
    let upload_body = json!({
        "required": true,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/vnd.apache.parquet": {"schema": {"type": "string", "contentMediaType": "application/vnd.apache.parquet"}},
            "application/vnd.apache.arrow.stream": {"schema": {"type": "string"}},
            "application/vnd.apache.arrow.file": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
            "multipart/form-data": {"schema": {"type": "object", "description": "the option fields first, then one file part (any field name, with a filename)", "properties": {
                "name": {"type": "string"},
                "delimiter": {"type": "string", "description": "one ASCII character, or `tab`"},
                "has_header": {"type": "boolean"},
                "encoding": {"type": "string", "description": "a CSV's character encoding, a WHATWG label (default utf-8; or the file part's charset)"},
                "file": {"type": "string", "contentMediaType": "application/octet-stream"}
            }, "required": ["file"]}}
        }
    });
    let mut job_list_params = page_params();
    if let Some(list) = job_list_params.as_array_mut() {
        list.push(json!({"name": "state", "in": "query", "schema": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]}, "description": "only jobs in this state"}));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "recon",
            "version": version,
            "description": "Reconciles two record sets (ledger vs bank statement). Errors are RFC 9457 problem documents."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Problem": {"type": "object", "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"},
                    "status": {"type": "integer"}, "detail": {"type": "string"}
                }},
                "Dataset": {"type": "object", "properties": {
                    "id": {"type": "string"}, "name": {"type": "string"},
                    "format": {"type": "string", "enum": ["csv", "parquet", "arrow", "arrow-stream", "ndjson"]},
                    "rows": {"type": "integer"}, "columns": {"type": "array", "items": {"type": "string"}},
                    "bytes": {"type": "integer"}, "sha256": {"type": "string"}, "created": {"type": "string", "format": "date-time"},
                    "stored_bytes": {"type": "integer"},
                    "unreadable_columns": {"type": "array", "items": {"type": "string"},
                        "description": "columns stored empty: their values (nested structs, maps, unions) have no text form, or one of them has none (a binary value that is not UTF-8, a date outside the calendar); a reconciliation mapping one is refused (422)"},
                    "delimiter": {"type": "string", "description": "a CSV upload's delimiter as it was read (CSV only)"},
                    "has_header": {"type": "boolean", "description": "whether a CSV upload's first line named its columns (CSV only)"},
                    "encoding": {"type": "string", "description": "a CSV upload's character encoding as it was read, by its WHATWG name (CSV only)"}
                }},
                "Job": {"type": "object", "properties": {
                    "id": {"type": "string"},
                    "state": {"type": "string", "enum": ["queued", "running", "succeeded", "failed"]},
                    "left": {"type": "string"}, "right": {"type": "string"}, "rules_sha256": {"type": "string"},
                    "progress": {"type": "object", "properties": {"done": {"type": "integer"}, "total": {"type": "integer"}}},
                    "error": {"type": "string"}, "created": {"type": "string", "format": "date-time"},
                    "started": {"type": "string", "format": "date-time"},
                    "finished": {"type": "string", "format": "date-time"}, "duration_ms": {"type": "integer"},
                    "parquet": {"type": "string", "enum": ["pending", "ready", "failed"], "description": "a succeeded job's results.parquet"},
                    "stages": {"type": "object", "description": "a succeeded job's timings by stage, in milliseconds"},
                    "summary": {"type": "object"}, "links": {"type": "object"}
                }},
                "ReconciliationRequest": {"type": "object", "required": ["left", "right", "rules"], "properties": {
                    "left": {"type": "string", "description": "left dataset id"},
                    "right": {"type": "string", "description": "right dataset id"},
                    "rules": {"type": "string", "description": "the rules file's TOML text"}
                }}
            }
        },
        "paths": {
            "/health": {
                "get": {"summary": "Liveness", "responses": {"200": ok_json("serving", json!({"type": "object"}))}}
            },
            "/ready": {
                "get": {"summary": "Readiness", "responses": {
                    "200": ok_json("accepting work", json!({"type": "object"})),
                    "503": ok_json("draining or at the connection limit", json!({"type": "object"}))
                }}
            },
            "/debug/status": {
                "get": {"summary": "Engine, settings with sources, connections, workers, jobs, datasets, RSS",
                    "security": [{"bearer": []}],
                    "responses": {"200": ok_json("status", json!({"type": "object"})), "401": problem("no key"), "403": problem("wrong key")}}
            },
            "/performance/metrics": {
                "get": {"summary": "Per-route counts, errors, latency quantiles, req/s, bytes, RSS, CPU",
                    "security": [{"bearer": []}],
                    "responses": {"200": ok_json("figures", json!({"type": "object"})), "401": problem("no key"), "403": problem("wrong key")}}
            },
            "/metrics": {
                "get": {"summary": "Prometheus text exposition",
                    "security": [{"bearer": []}],
                    "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": problem("no key"), "403": problem("wrong key")}}
            },
            "/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": ok_json("OpenAPI 3.1", json!({"type": "object"}))}}
            },
            "/v1/datasets": {
                "post": {"summary": "Upload a dataset (streamed to disk, validated, stored as Arrow IPC)",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {"name": "name", "in": "query", "schema": {"type": "string"}},
                        {"name": "delimiter", "in": "query", "schema": {"type": "string"}, "description": "one ASCII character, or `tab`"},
                        {"name": "has_header", "in": "query", "schema": {"type": "boolean"}},
                        {"name": "encoding", "in": "query", "schema": {"type": "string"}, "description": "a CSV's character encoding, a WHATWG label (default utf-8, or the Content-Type's charset)"}
                    ],
                    "requestBody": upload_body,
                    "responses": {
                        "201": ok_json("stored", dataset.clone()),
                        "400": problem("body cut short, malformed multipart, a part other than the fields and one file, or a query parameter other than these (or repeated, or also sent as a part)"),
                        "408": problem("body stalled past channel_timeout"),
                        "413": problem("body at or past max_request_body_size"),
                        "415": problem("unknown media type, or a file part whose type and name disagree"),
                        "422": problem("malformed content: line, column and value")
                    }},
                "get": {"summary": "List datasets, oldest first, whole or a page at a time", "security": [{"bearer": []}],
                    "parameters": page_params(),
                    "responses": {"400": problem("a limit outside 1..1000, a cursor no `next` link gave, or another query parameter"), "200": ok_json("datasets", json!({"type": "object", "properties": {"datasets": {"type": "array", "items": dataset.clone()}, "next": next_link()}}))}}
            },
            "/v1/datasets/{id}": {
                "parameters": [id_param()],
                "get": {"summary": "One dataset", "security": [{"bearer": []}],
                    "responses": {"400": problem("a query parameter: this endpoint takes none"), "200": ok_json("the dataset", dataset), "404": problem("unknown id")}},
                "delete": {"summary": "Delete a dataset", "security": [{"bearer": []}],
                    "responses": {"400": problem("a query parameter: this endpoint takes none"), "204": {"description": "deleted"}, "404": problem("unknown id"), "409": problem("a queued or running reconciliation names the dataset")}}
            },
            "/v1/reconciliations": {
                "post": {"summary": "Start a reconciliation of two stored datasets", "security": [{"bearer": []}],
                    "parameters": [{"name": "wait", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 300}, "description": "whole seconds to wait for the job to end; anything else is 400"}],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReconciliationRequest"}}}},
                    "responses": {
                        "200": ok_json("finished within ?wait", job.clone()),
                        "202": ok_json("queued", job.clone()),
                        "400": problem("bad JSON or wait, or another query parameter"),
                        "408": problem("body stalled past channel_timeout"),
                        "413": problem("the request at or past 16 MiB (or max_request_body_size if less)"),
                        "415": problem("not application/json, or no Content-Type"),
                        "422": problem("unknown dataset, invalid rules, or a mapped column a dataset lacks")
                    }},
                "get": {"summary": "List reconciliations, oldest first, whole or a page at a time", "security": [{"bearer": []}],
                    "parameters": job_list_params,
                    "responses": {"400": problem("a limit outside 1..1000, a cursor no `next` link gave, an unknown state, or another query parameter"), "200": ok_json("jobs", json!({"type": "object", "properties": {"reconciliations": {"type": "array", "items": job.clone()}, "next": next_link()}}))}}
            },
            "/v1/reconcile": {
                "post": {"summary": "One shot: multipart with files `left`, `right` and field `rules`; answers with the summary and links",
                    "security": [{"bearer": []}],
                    "parameters": [{"name": "wait", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 300, "default": 60}, "description": "whole seconds to wait for the job to end; anything else is 400"}],
                    "requestBody": {"required": true, "content": {"multipart/form-data": {"schema": {"type": "object", "required": ["left", "right", "rules"], "properties": {
                        "left": {"type": "string"}, "right": {"type": "string"}, "rules": {"type": "string"}
                    }}}}},
                    "responses": {
                        "200": ok_json("finished", job.clone()), "202": ok_json("still running", job.clone()),
                        "400": problem("a part missing, unknown or given twice; bad wait, or another query parameter"),
                        "408": problem("body stalled past channel_timeout"),
                        "413": problem("too large"), "415": problem("not multipart/form-data, or a file part of an unknown format"),
                        "422": problem("malformed content, invalid rules, or a mapped column a file lacks")
                    }}
            },
            "/v1/reconciliations/{id}": {
                "parameters": [id_param()],
                "get": {"summary": "A reconciliation's state, progress and summary", "security": [{"bearer": []}],
                    "responses": {"400": problem("a query parameter: this endpoint takes none"), "200": ok_json("the job", job.clone()), "404": problem("unknown id")}}
            },
            "/v1/reconciliations/{id}/results": {
                "parameters": [id_param()],
                "get": {"summary": "Result rows, streamed", "security": [{"bearer": []}],
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"type": "array", "items": {"type": "string", "enum": ["matched", "break", "ambiguous", "unmatched", "duplicate"]}}, "style": "form", "explode": true, "description": "statuses to keep, comma-separated or repeated; an empty list is 400"},
                        {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["csv", "json", "parquet"]}}
                    ],
                    "responses": {
                        "200": {"description": "rows", "content": {
                            "text/csv": {"schema": {"type": "string"}},
                            "application/x-ndjson": {"schema": {"type": "string"}},
                            "application/vnd.apache.parquet": {"schema": {"type": "string"}}
                        }},
                        "400": problem("unknown format or status, an empty status list, or another query parameter"),
                        "404": problem("unknown id"), "409": problem("the job has not succeeded")
                    }}
            },
            "/v1/reconciliations/{id}/rejects": {
                "parameters": [id_param()],
                "get": {"summary": "Rows one side's mapping set aside (`on_error = \"quarantine\"`), as CSV `line,column,value,reason`", "security": [{"bearer": []}],
                    "parameters": [
                        {"name": "side", "in": "query", "required": true, "schema": {"type": "string", "enum": ["left", "right"]}}
                    ],
                    "responses": {
                        "200": {"description": "rows", "content": {"text/csv": {"schema": {"type": "string"}}}},
                        "400": problem("side missing or not left or right, or another query parameter"),
                        "404": problem("unknown id"), "409": problem("the job has not succeeded")
                    }}
            },
            "/v1/reconciliations/{id}/cancel": {
                "parameters": [id_param()],
                "post": {"summary": "Ask a queued or running reconciliation to stop: it fails with `error` starting `cancelled`, or ends as it would if it was already writing its results", "security": [{"bearer": []}],
                    "parameters": [{"name": "wait", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 300}, "description": "whole seconds to wait for the job to end; anything else is 400"}],
                    "responses": {
                        "200": ok_json("ended within ?wait", job.clone()),
                        "202": ok_json("asked to stop, not ended yet", job.clone()),
                        "400": problem("bad wait, or another query parameter"),
                        "404": problem("unknown id"),
                        "409": problem("the job has already ended")
                    }}
            },
            "/v1/reconciliations/{id}/events": {
                "parameters": [id_param()],
                "get": {"summary": "Server-Sent Events: `progress` until the job ends, then `end`", "security": [{"bearer": []}],
                    "responses": {"400": problem("a query parameter: this endpoint takes none"), "200": {"description": "event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}, "404": problem("unknown id")}}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::router::ROUTES;

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let doc = document("test");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if method != "parameters" {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p, _)| (m.as_str().to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(documented, routed);
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
