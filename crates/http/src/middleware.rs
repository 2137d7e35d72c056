//! Cross-cutting request handling: one log line and RED metrics per request
//! (by route template), request ids, problem documents for every error
//! produced outside the handlers (routing, timeouts, panics).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
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

/// Logs and measures each request, and turns bare error responses into problem documents.
pub(crate) async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // Where the auth extractor records who is calling, for the log line.
    let caller = CallerSlot::default();
    request.extensions_mut().insert(caller.clone());

    let span = tracing::info_span!("request", %method, %route, %request_id);
    starling_app::telemetry::adopt_remote_parent(&span, &HeaderCarrier(request.headers()));
    let in_flight = metrics::gauge!(starling_app::metric::HTTP_REQUESTS_IN_FLIGHT);
    in_flight.increment(1.0);
    let response = next.run(request).instrument(span.clone()).await;
    in_flight.decrement(1.0);
    let response = problem_for_bare_errors(response);

    let status = response.status();
    let elapsed = started.elapsed();
    let labels = [
        ("method", method),
        ("route", route),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!(starling_app::metric::HTTP_REQUESTS_TOTAL, &labels).increment(1);
    metrics::histogram!(starling_app::metric::HTTP_REQUEST_DURATION_SECONDS, &labels)
        .record(elapsed.as_secs_f64());
    span.in_scope(|| {
        let user_id = caller.get().map(|id| id.to_string()).unwrap_or_default();
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), latency_ms, %user_id, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), latency_ms, %user_id, "request");
        }
    });
    response
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
