//! Cross-cutting request handling: one log line and RED metrics per request
//! (by route template), request ids, problem documents for every error
//! produced outside the handlers (routing, timeouts, panics).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use starling_domain::UserId;
use tower_http::request_id::{MakeRequestId, RequestId};
use tracing::Instrument;

use crate::problem::{PROBLEM_JSON, generic_problem};

pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// Where the authentication step records who is calling, for the request
/// log (a request extension; nothing else reads it).
#[derive(Clone, Default)]
pub(crate) struct CallerSlot(Arc<OnceLock<UserId>>);

impl CallerSlot {
    /// Records the authenticated caller (the first one recorded stays).
    pub(crate) fn set(&self, caller: UserId) {
        let _ = self.0.set(caller);
    }

    fn get(&self) -> Option<UserId> {
        self.0.get().copied()
    }
}

/// The caller's id in a log line, written only if the line is (empty when anonymous).
struct CallerId(Option<UserId>);

impl std::fmt::Display for CallerId {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(id) => write!(out, "{id}"),
            None => Ok(()),
        }
    }
}

/// Logs and measures each request, and turns bare error responses into problem documents.
pub(crate) async fn observe(
    State(metrics): State<Arc<RequestMetrics>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    // The span records its fields as it is made (nothing, when the log
    // level leaves it out), so they are borrowed, not copied.
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!("request", %method, route, request_id);
    starling_app::telemetry::adopt_remote_parent(&span, &HeaderCarrier(request.headers()));
    // Where the auth extractor records who is calling, for the log line.
    let caller = CallerSlot::default();
    request.extensions_mut().insert(caller.clone());

    metrics.in_flight.increment(1.0);
    let response = next.run(request).instrument(span.clone()).await;
    metrics.in_flight.decrement(1.0);
    let response = problem_for_bare_errors(response);

    let status = response.status();
    let elapsed = started.elapsed();
    let outcome = metrics.outcome(&method, route, status.as_u16());
    outcome.requests.increment(1);
    outcome.duration.record(elapsed.as_secs_f64());
    span.in_scope(|| {
        let user_id = CallerId(caller.get());
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), latency_ms, %user_id, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), latency_ms, %user_id, "request");
        }
    });
    response
}

/// The request metrics' handles, resolved once per method, route and
/// status: looked up in the recorder's registry by their labels on every
/// request, with three label strings made for it, they cost most of the
/// metrics share of a warm feed read's CPU (BENCHMARKS.md §1).
pub(crate) struct RequestMetrics {
    in_flight: metrics::Gauge,
    by_outcome: quick_cache::sync::Cache<OutcomeKey, OutcomeHandles>,
}

/// Method, route template, status.
#[derive(Clone, PartialEq, Eq, Hash)]
struct OutcomeKey(Method, Box<str>, u16);

/// `OutcomeKey` borrowed from the request, for lookups that allocate nothing.
/// Hashes as `OutcomeKey` does (a tuple hashes its fields in order).
#[derive(Hash)]
struct OutcomeRef<'a>(&'a Method, &'a str, u16);

impl quick_cache::Equivalent<OutcomeKey> for OutcomeRef<'_> {
    fn equivalent(&self, key: &OutcomeKey) -> bool {
        *self.0 == key.0 && self.1 == &*key.1 && self.2 == key.2
    }
}

#[derive(Clone)]
struct OutcomeHandles {
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

impl RequestMetrics {
    pub(crate) fn new() -> Self {
        Self {
            in_flight: metrics::gauge!(starling_app::metric::HTTP_REQUESTS_IN_FLIGHT),
            // Routes × methods × statuses: a few hundred at most; past the
            // bound a handle is resolved again, nothing is lost.
            by_outcome: quick_cache::sync::Cache::new(4096),
        }
    }

    fn outcome(&self, method: &Method, route: &str, status: u16) -> OutcomeHandles {
        if let Some(handles) = self.by_outcome.get(&OutcomeRef(method, route, status)) {
            return handles;
        }
        let labels = [
            ("method", method.as_str().to_owned()),
            ("route", route.to_owned()),
            ("status", status.to_string()),
        ];
        let handles = OutcomeHandles {
            requests: metrics::counter!(starling_app::metric::HTTP_REQUESTS_TOTAL, &labels),
            duration: metrics::histogram!(
                starling_app::metric::HTTP_REQUEST_DURATION_SECONDS,
                &labels
            ),
        };
        self.by_outcome.insert(
            OutcomeKey(method.clone(), route.into(), status),
            handles.clone(),
        );
        handles
    }
}

/// Error responses made outside our handlers (405 from routing, 503 from the
/// timeout, 500 from a caught panic) come without a body we chose: give them one.
fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes() == PROBLEM_JSON.as_bytes());
    if is_problem {
        return response;
    }
    let kept_headers: Vec<(header::HeaderName, HeaderValue)> = [header::ALLOW, header::RETRY_AFTER]
        .into_iter()
        .filter_map(|name| {
            response
                .headers()
                .get(&name)
                .map(|value| (name, value.clone()))
        })
        .collect();
    let mut replaced = generic_problem(status).into_response();
    for (name, value) in kept_headers {
        replaced.headers_mut().insert(name, value);
    }
    replaced
}

/// The answer to a panic inside a handler: a plain 500 problem (the panic
/// itself is logged).
pub(crate) fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "handler panicked");
    generic_problem(StatusCode::INTERNAL_SERVER_ERROR).into_response()
}

/// Request ids for requests that come without one: 128 random bits, hex.
#[derive(Clone, Copy, Default)]
pub(crate) struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let id: u128 = rand::random();
        HeaderValue::from_str(&format!("{id:032x}"))
            .ok()
            .map(RequestId::new)
    }
}

/// Reads W3C trace context (`traceparent`, `tracestate`) from request headers.
struct HeaderCarrier<'a>(&'a axum::http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_is_resolved_once_and_found_by_its_borrowed_key() {
        let metrics = RequestMetrics::new();
        metrics.outcome(&Method::GET, "/api/v1/feed", 200);
        // The borrowed key must hash and compare as the stored one: a
        // mismatch would resolve the handles again on every request.
        assert!(
            metrics
                .by_outcome
                .get(&OutcomeRef(&Method::GET, "/api/v1/feed", 200))
                .is_some()
        );
        metrics.outcome(&Method::GET, "/api/v1/feed", 200);
        assert_eq!(
            metrics.by_outcome.len(),
            1,
            "the second request found the first's handles"
        );
        metrics.outcome(&Method::GET, "/api/v1/feed", 304);
        metrics.outcome(&Method::POST, "/api/v1/feed", 200);
        assert_eq!(
            metrics.by_outcome.len(),
            3,
            "method and status each make their own"
        );
    }
}
