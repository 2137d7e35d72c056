//! Trace context across process boundaries: W3C `traceparent` read from
//! requests, stored with each outbox event, and restored by the consumer, so
//! one trace follows a post from its request to the last follower's timeline.
//!
//! Off unless the binary turns it on (when an OTLP endpoint is configured):
//! then every function here returns at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::Context;
use opentelemetry::propagation::Extractor;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns propagation on; the caller has installed an OpenTelemetry layer and
/// a global text-map propagator.
pub fn enable_propagation() {
    ENABLED.store(true, Ordering::Release);
}

pub fn propagation_enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// The current span's context as a `traceparent` value, to store with an event.
pub fn current_traceparent() -> Option<String> {
    if !propagation_enabled() {
        return None;
    }
    let context = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut carrier);
    });
    carrier.remove("traceparent")
}

/// Makes `span` a child of the remote context carried by `headers`
/// (`traceparent`, `tracestate`), when there is one.
pub fn adopt_remote_parent(span: &tracing::Span, headers: &dyn Extractor) {
    if !propagation_enabled() {
        return;
    }
    let context = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract_with_context(&Context::new(), headers)
    });
    let _ = span.set_parent(context);
}

/// Makes `span` a child of a stored `traceparent`.
pub fn adopt_traceparent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    adopt_remote_parent(span, &SingleHeader(traceparent));
}

struct SingleHeader<'a>(&'a str);

impl Extractor for SingleHeader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}
