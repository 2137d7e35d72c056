//! Load shedding: past a number of requests in flight, a request waits a
//! short while for a slot and is then answered 503 with `Retry-After` at
//! once, instead of queueing until it times out (which would slow every
//! request, the ones that could still be served included).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::problem::ApiError;

/// How many API requests may run at once, and how long one may wait for a
/// slot before it is shed.
#[derive(Debug, Clone)]
pub struct LoadShedding {
    pub max_in_flight: usize,
    pub max_queue_wait: Duration,
}

pub(crate) struct Shedder {
    slots: Arc<Semaphore>,
    max_queue_wait: Duration,
}

impl Shedder {
    pub(crate) fn new(settings: &LoadShedding) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            max_queue_wait: settings.max_queue_wait,
        })
    }
}

pub(crate) async fn shed_load(
    State(shedder): State<Arc<Shedder>>,
    request: Request,
    next: Next,
) -> Response {
    let slot = match shedder.slots.clone().try_acquire_owned() {
        Ok(slot) => Some(slot),
        Err(_) => tokio::time::timeout(
            shedder.max_queue_wait,
            shedder.slots.clone().acquire_owned(),
        )
        .await
        .ok()
        .and_then(Result::ok),
    };
    let Some(_slot) = slot else {
        metrics::counter!(starling_app::metric::REQUESTS_SHED_TOTAL).increment(1);
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the server is at capacity; retry in a moment",
        )
        .into_response();
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        return response;
    };
    next.run(request).await
}
