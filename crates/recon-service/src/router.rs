//! The route table: every endpoint's method and path template in one list.
//!
//! The template (e.g. `/v1/datasets/{id}`) is the route's label in metrics, so
//! a metric's cardinality is bounded by this table, never by client paths.
//! `/openapi.json` is checked against [`ROUTES`] by a test.

use http::Method;

/// One endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `GET|HEAD /health`: liveness.
    Health,
    /// `GET|HEAD /ready`: readiness.
    Ready,
    /// `GET /debug/status`: engine, settings and live figures.
    DebugStatus,
    /// `GET /performance/metrics`: per-route latency and throughput as JSON.
    PerformanceMetrics,
    /// `GET /metrics`: Prometheus text exposition.
    Metrics,
    /// `GET /openapi.json`: this API's description.
    OpenApi,
    /// `POST /v1/datasets`: upload a dataset.
    CreateDataset,
    /// `GET /v1/datasets`: list datasets.
    ListDatasets,
    /// `GET /v1/datasets/{id}`: one dataset's metadata.
    GetDataset,
    /// `DELETE /v1/datasets/{id}`: delete a dataset.
    DeleteDataset,
    /// `POST /v1/reconciliations`: start a job over two stored datasets.
    CreateReconciliation,
    /// `POST /v1/reconcile`: one-shot upload of two files and rules.
    Reconcile,
    /// `GET /v1/reconciliations`: list jobs.
    ListReconciliations,
    /// `GET /v1/reconciliations/{id}`: a job's state.
    GetReconciliation,
    /// `GET /v1/reconciliations/{id}/results`: a job's result rows.
    Results,
    /// `GET /v1/reconciliations/{id}/rejects?side=left|right`: rows a side's
    /// mapping set aside (`on_error = "quarantine"`).
    Rejects,
    /// `POST /v1/reconciliations/{id}/cancel`: ask a queued or running job
    /// to stop.
    CancelReconciliation,
    /// `GET /v1/reconciliations/{id}/events`: Server-Sent Events of progress.
    Events,
}

/// Every route: method, path template, route. `HEAD` is not listed: it
/// takes every `GET` route (see [`route`]).
pub const ROUTES: &[(Method, &str, Route)] = &[
    (Method::GET, "/health", Route::Health),
    (Method::GET, "/ready", Route::Ready),
    (Method::GET, "/debug/status", Route::DebugStatus),
    (
        Method::GET,
        "/performance/metrics",
        Route::PerformanceMetrics,
    ),
    (Method::GET, "/metrics", Route::Metrics),
    (Method::GET, "/openapi.json", Route::OpenApi),
    (Method::POST, "/v1/datasets", Route::CreateDataset),
    (Method::GET, "/v1/datasets", Route::ListDatasets),
    (Method::GET, "/v1/datasets/{id}", Route::GetDataset),
    (Method::DELETE, "/v1/datasets/{id}", Route::DeleteDataset),
    (
        Method::POST,
        "/v1/reconciliations",
        Route::CreateReconciliation,
    ),
    (
        Method::GET,
        "/v1/reconciliations",
        Route::ListReconciliations,
    ),
    (Method::POST, "/v1/reconcile", Route::Reconcile),
    (
        Method::GET,
        "/v1/reconciliations/{id}",
        Route::GetReconciliation,
    ),
    (
        Method::GET,
        "/v1/reconciliations/{id}/results",
        Route::Results,
    ),
    (
        Method::GET,
        "/v1/reconciliations/{id}/rejects",
        Route::Rejects,
    ),
    (
        Method::POST,
        "/v1/reconciliations/{id}/cancel",
        Route::CancelReconciliation,
    ),
    (
        Method::GET,
        "/v1/reconciliations/{id}/events",
        Route::Events,
    ),
];

/// Which protection a route has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Always open (`/health`, `/ready`, `/openapi.json`).
    Open,
    /// Operator routes: protected when keys exist and `protect_ops` is set.
    Ops,
    /// The API (`/v1/*`): protected whenever keys exist.
    Api,
}

impl Route {
    /// The route's path template, its label in metrics.
    pub fn template(self) -> &'static str {
        ROUTES
            .iter()
            .find(|(_, _, r)| *r == self)
            .map_or("unmatched", |(_, t, _)| t)
    }

    /// Its protection class.
    pub fn access(self) -> Access {
        match self {
            Route::Health | Route::Ready | Route::OpenApi => Access::Open,
            Route::DebugStatus | Route::PerformanceMetrics | Route::Metrics => Access::Ops,
            _ => Access::Api,
        }
    }

    /// Whether the route is cheap and never blocks (may run on an I/O thread).
    pub fn is_inline(self) -> bool {
        matches!(
            self,
            Route::Health | Route::Ready | Route::Metrics | Route::OpenApi
        )
    }

    /// A dense index, for per-route counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// How many routes exist (the length of per-route arrays).
    pub const COUNT: usize = Route::Events as usize + 1;
}

/// A matched request: the route and its `{id}`, when the template has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched<'a> {
    /// The route.
    pub route: Route,
    /// The `{id}` segment, unvalidated.
    pub id: Option<&'a str>,
}

/// Why a request matched no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// No template matches the path.
    NotFound,
    /// A template matches, but not with this method; the allowed ones.
    MethodNotAllowed(Vec<Method>),
}

/// Finds the route for `method` and `path` (without the query).
///
/// # Errors
/// [`Miss`] when nothing matches.
///
/// `HEAD` takes every `GET` route (RFC 9110: a server that answers GET answers
/// HEAD), so `Allow` lists it wherever it lists `GET`.
pub fn route<'a>(method: &Method, path: &'a str) -> Result<Matched<'a>, Miss> {
    let mut allowed = Vec::new();
    for (m, template, r) in ROUTES {
        if let Some(id) = match_template(template, path) {
            if m == method || (*method == Method::HEAD && *m == Method::GET) {
                return Ok(Matched { route: *r, id });
            }
            allowed.push(m.clone());
        }
    }
    if allowed.contains(&Method::GET) {
        allowed.push(Method::HEAD);
    }
    if allowed.is_empty() {
        Err(Miss::NotFound)
    } else {
        Err(Miss::MethodNotAllowed(allowed))
    }
}

/// Matches one template; `Some(id)` on a match (`id` is `None` without `{id}`).
fn match_template<'a>(template: &str, path: &'a str) -> Option<Option<&'a str>> {
    let mut id = None;
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(id),
            (Some("{id}"), Some(seg)) if !seg.is_empty() => id = Some(seg),
            (Some(a), Some(b)) if a == b => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, path: &str, expect: Result<(Route, Option<&str>), Miss>) {
        let got = route(&method, path).map(|m| (m.route, m.id));
        assert_eq!(got, expect, "{method} {path}");
    }

    #[test]
    fn routes_match_templates() {
        check(Method::GET, "/health", Ok((Route::Health, None)));
        check(Method::HEAD, "/health", Ok((Route::Health, None)));
        check(
            Method::GET,
            "/v1/datasets/abc",
            Ok((Route::GetDataset, Some("abc"))),
        );
        check(
            Method::DELETE,
            "/v1/datasets/abc",
            Ok((Route::DeleteDataset, Some("abc"))),
        );
        check(
            Method::GET,
            "/v1/reconciliations/x/results",
            Ok((Route::Results, Some("x"))),
        );
        check(Method::GET, "/v1/datasets/", Err(Miss::NotFound));
        check(Method::GET, "/v1/datasets/a/b", Err(Miss::NotFound));
        check(Method::GET, "/nope", Err(Miss::NotFound));
        check(
            Method::PUT,
            "/v1/datasets",
            Err(Miss::MethodNotAllowed(vec![
                Method::POST,
                Method::GET,
                Method::HEAD,
            ])),
        );
        check(
            Method::HEAD,
            "/v1/reconciliations/x/results",
            Ok((Route::Results, Some("x"))),
        );
        check(
            Method::HEAD,
            "/v1/reconcile",
            Err(Miss::MethodNotAllowed(vec![Method::POST])),
        );
    }

    #[test]
    fn every_route_has_a_template_and_index() {
        let mut seen = [false; Route::COUNT];
        for (_, t, r) in ROUTES {
            assert_eq!(r.template(), *t);
            seen[r.index()] = true;
        }
        assert!(seen.iter().all(|s| *s), "a route is missing from ROUTES");
    }
}
