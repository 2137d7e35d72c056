//! Operations endpoints: liveness, readiness, metrics.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::problem::ApiError;
use crate::state::HttpState;

/// Liveness: the process answers.
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// How long a readiness answer stands. Probes come every few seconds; a
/// flood of them must not take the database pool from the API.
const READINESS_FRESH_FOR: Duration = Duration::from_secs(1);

/// Readiness: the store answers and the server is not draining. The store
/// is asked at most once per `READINESS_FRESH_FOR`, by one request at a
/// time (the others wait for its answer): probes cost the pool one
/// connection now and then, however many arrive.
pub(crate) async fn readyz(State(state): State<HttpState>) -> Response {
    if state.is_draining() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "shutting down",
        )
        .into_response();
    }
    let ready = {
        let mut last = state.readiness.lock().await;
        match *last {
            Some((at, ready)) if at.elapsed() < READINESS_FRESH_FOR => ready,
            _ => {
                let ready = match state.app.ports().store.ping().await {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::warn!(error = %error, "readiness check failed");
                        false
                    }
                };
                metrics::counter!(starling_app::metric::READINESS_CHECKS_TOTAL,
                    "outcome" => if ready { "ready" } else { "unavailable" })
                .increment(1);
                *last = Some((Instant::now(), ready));
                ready
            }
        }
    };
    if ready {
        "ready".into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the store is not answering",
        )
        .into_response()
    }
}

/// Prometheus text exposition.
pub(crate) async fn metrics(State(state): State<HttpState>) -> Response {
    let Some(handle) = state.metrics.as_ref() else {
        return ApiError::not_found("metrics").into_response();
    };
    if let Some(gauges) = &state.gauges {
        gauges.refresh().await;
    }

    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
