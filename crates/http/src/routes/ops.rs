//! Operations endpoints: liveness, readiness, metrics.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::problem::ApiError;
use crate::state::HttpState;

/// Liveness: the process answers.
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the store answers and the server is not draining.
pub(crate) async fn readyz(State(state): State<HttpState>) -> Response {
    if state.is_draining() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "shutting down",
        )
        .into_response();
    }
    match state.app.ports().store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(error) => {
            tracing::warn!(error = %error, "readiness check failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store is not answering",
            )
            .into_response()
        }
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
