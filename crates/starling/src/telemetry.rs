//! Logs, traces and metrics set-up.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{LogFormat, TracesConfig};

/// Latency buckets (seconds) for every `*_seconds` histogram: fine below
/// 10 ms where a healthy API lives, coarse up to the request timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// What traces record: our spans at info and above; the libraries below
/// only when they warn.
const TRACE_FILTER: &str =
    "info,sqlx=warn,hyper=warn,hyper_util=warn,h2=warn,tower=warn,reqwest=warn";

/// Keeps the trace exporter alive; `shutdown` flushes spans still buffered.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("starling: flushing traces failed: {error}");
        }
    }
}

/// Installs the global log subscriber (`RUST_LOG` overrides `level`) and,
/// when an OTLP endpoint is configured, OpenTelemetry trace export and
/// W3C trace-context propagation. With no endpoint, no tracing layer exists.
pub fn init(
    format: LogFormat,
    level: &str,
    traces: &TracesConfig,
) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .map_err(|error| anyhow::anyhow!("invalid log level {level:?}: {error}"))?;
    // Each output filters on its own: the log level must not decide which
    // spans a trace gets.
    let fmt_layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_filter(filter).boxed(),
    };
    let tracer_provider = match traces.otlp_endpoint.as_deref() {
        Some(endpoint) => Some(otlp_tracer_provider(endpoint, traces)?),
        None => None,
    };
    let otel_layer = tracer_provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("starling"))
            .with_filter(EnvFilter::new(TRACE_FILTER))
    });
    tracing_subscriber::registry()
        .with(otel_layer)
        .with(fmt_layer)
        .try_init()
        .map_err(|error| anyhow::anyhow!("cannot install the log subscriber: {error}"))?;
    if tracer_provider.is_some() {
        install_propagation();
    }
    Ok(TelemetryGuard { tracer_provider })
}

/// W3C trace context in and out: requests' `traceparent` is honoured and
/// stored with outbox events. Call once an OpenTelemetry layer is installed.
pub fn install_propagation() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    starling_app::telemetry::enable_propagation();
}

fn otlp_tracer_provider(
    endpoint: &str,
    traces: &TracesConfig,
) -> anyhow::Result<SdkTracerProvider> {
    let endpoint = endpoint.trim_end_matches('/');
    let endpoint = if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
        .map_err(|error| anyhow::anyhow!("cannot build the OTLP exporter: {error}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            traces.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(traces.service_name.clone())
                .build(),
        )
        .build())
}

/// The Prometheus recorder. The `metrics` facade has one recorder per
/// process, so every application built in this process shares it.
pub fn metrics_handle() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
        .map_err(|error| anyhow::anyhow!("invalid histogram buckets: {error}"))?
        .build_recorder();
    let handle = recorder.handle();
    if HANDLE.set(handle.clone()).is_ok() {
        metrics::set_global_recorder(recorder)
            .map_err(|error| anyhow::anyhow!("cannot install the metrics recorder: {error}"))?;
        return Ok(handle);
    }
    // Another thread won the race; use its handle.
    HANDLE
        .get()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("metrics recorder vanished"))
}

/// Gives every metric its help text and creates the counters at zero, so
/// that they are exported (and `rate()` sees their first increment) before
/// anything happens.
pub fn describe_metrics(consumers: &[&'static str], caches: &[&'static str]) {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

    describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request"
    );
    describe_gauge!("http_requests_in_flight", "HTTP requests being answered");
    describe_histogram!(
        "starling_fanout_lag_seconds",
        Unit::Seconds,
        "From a post's commit to its arrival in its last follower's timeline"
    );
    describe_counter!(
        "starling_fanout_posts_total",
        "Posts fanned out to followers' timelines"
    );
    describe_counter!(
        "starling_fanout_timeline_inserts_total",
        "Timeline inserts made by fan-out"
    );
    describe_counter!(
        "starling_fanout_skipped_high_fanout_total",
        "Posts of high-fan-out accounts, merged at read time instead"
    );
    describe_counter!(
        "starling_timeline_rebuilds_total",
        "Home timelines rebuilt from SQL"
    );
    describe_counter!(
        "starling_feed_sql_fallbacks_total",
        "Feed pages served from SQL because the timeline store failed"
    );
    describe_counter!(
        "starling_readiness_checks_total",
        "Readiness checks that asked the store (at most one a second, however many probes arrive)"
    );
    describe_counter!(
        "starling_feed_pages_cut_short_total",
        "Feed pages cut short (with a cursor that goes on) after looking at their scan budget of hidden or deleted posts"
    );
    describe_counter!(
        "starling_logins_backed_off_total",
        "Logins refused unchecked because their account's failed logins back off"
    );
    describe_counter!(
        "starling_login_failures_fallbacks_total",
        "Failed logins counted in process because Redis could not answer"
    );
    describe_counter!(
        "starling_password_hashing_saturated_total",
        "Logins and registrations refused because every hashing slot stayed busy"
    );
    describe_counter!(
        "starling_events_handled_total",
        "Events handled, by consumer and kind"
    );
    describe_counter!(
        "starling_event_retries_total",
        "Event handling attempts that failed and were retried"
    );
    describe_counter!(
        "starling_rate_limited_total",
        "Requests refused with 429, by route class"
    );
    describe_counter!(
        "starling_rate_limit_fallbacks_total",
        "Requests judged by the local limiter because the shared one (Redis) failed or its breaker was open"
    );
    describe_gauge!(
        "starling_breaker_state",
        "Circuit breaker per dependency: 0 closed, 1 half-open, 2 open"
    );
    describe_counter!(
        "starling_breaker_transitions_total",
        "Circuit breaker state changes, by dependency and new state"
    );
    describe_counter!(
        "starling_breaker_rejections_total",
        "Calls failed at once by an open circuit breaker"
    );
    describe_counter!(
        "starling_bulkhead_rejections_total",
        "Calls failed at once because a dependency had too many in flight"
    );
    describe_counter!(
        "starling_dependency_retries_total",
        "Idempotent calls to a dependency sent again after a failure"
    );
    describe_counter!(
        "starling_retry_budget_exhausted_total",
        "Failed idempotent calls not retried because retries were over budget"
    );
    describe_counter!(
        "starling_dependency_timeouts_total",
        "Calls to a dependency that got no answer within their timeout"
    );
    describe_counter!(
        "starling_cache_loads_total",
        "SQL loads on cache misses (one query each, shared by concurrent misses)"
    );
    describe_counter!(
        "starling_cache_loads_coalesced_total",
        "Cache misses that joined a load already in flight instead of querying"
    );
    describe_counter!(
        "starling_idempotent_replays_total",
        "Creates answered from an idempotency key's kept answer"
    );
    describe_counter!(
        "starling_requests_shed_total",
        "API requests answered 503 at once because too many were in flight"
    );
    describe_counter!(
        "starling_notifications_created_total",
        "Notifications stored by the notifier (repeats of one already stored not counted)"
    );
    describe_counter!(
        "starling_events_dead_lettered_total",
        "Events parked after failing for good"
    );
    describe_gauge!(
        "starling_stream_connections",
        "Live streams (Server-Sent Events) open on this instance"
    );
    describe_counter!(
        "starling_stream_events_total",
        "Events sent on live streams, by type"
    );
    describe_counter!(
        "starling_stream_dropped_total",
        "Live streams ended by the server: slow (a client not reading filled its queue) or gap (an update never arrived)"
    );
    describe_counter!(
        "starling_stream_resumes_total",
        "Streams opened with Last-Event-ID: replayed, reset (position outside the window) or failed"
    );
    describe_counter!(
        "starling_stream_refused_total",
        "Streams refused: the account or the instance holds as many as allowed"
    );
    describe_counter!(
        "starling_media_uploaded_total",
        "Images accepted by POST /api/v1/media, by kind detected from their bytes"
    );
    describe_counter!(
        "starling_media_thumbnails_total",
        "Thumbnails made by the thumbnailer"
    );
    describe_counter!(
        "starling_media_swept_total",
        "Uploads removed because no post attached them within a day"
    );
    describe_counter!(
        "starling_media_served_total",
        "GET /media/{hash} answers, by status (200, 206, 304, 404, 416)"
    );
    describe_counter!(
        "starling_live_published_total",
        "Live updates published by the workers (one per topic)"
    );
    describe_counter!(
        "starling_event_pulls_unfinished_total",
        "Pulls from the event stream that the broker did not end by their expiry"
    );
    describe_counter!(
        "starling_events_redelivered_total",
        "Events the stream delivered again (their worker died, or a delivery was lost)"
    );
    describe_histogram!(
        "starling_event_batch_events",
        Unit::Count,
        "Events a consumer took from the log at once"
    );
    describe_histogram!(
        "starling_event_handling_lag_seconds",
        Unit::Seconds,
        "From an event's commit to its handling"
    );
    describe_counter!(
        "starling_cache_hits_total",
        "Cache lookups that found the key"
    );
    describe_counter!("starling_cache_misses_total", "Cache lookups that did not");
    describe_histogram!(
        "starling_db_pool_acquire_seconds",
        Unit::Seconds,
        "Time spent waiting for a database connection"
    );
    describe_counter!(
        "starling_db_primary_changes_total",
        "Times the PostgreSQL primary moved to another of the database URL's hosts (a failover)"
    );
    describe_gauge!(
        "starling_db_pool_connections",
        "Database connections, by pool and state"
    );
    describe_gauge!(
        "starling_outbox_backlog_events",
        "Outbox events a consumer has not handled yet"
    );
    describe_gauge!(
        "starling_outbox_oldest_unhandled_age_seconds",
        Unit::Seconds,
        "Age of the oldest event a consumer has not handled"
    );
    describe_gauge!(
        "starling_timelines_materialised",
        "Home timelines held by the timeline store"
    );
    describe_gauge!("starling_runtime_workers", "Async runtime worker threads");
    describe_gauge!("starling_runtime_alive_tasks", "Async tasks alive");
    describe_gauge!(
        "starling_runtime_global_queue_depth",
        "Tasks waiting in the runtime's global queue"
    );
    describe_gauge!(
        "starling_runtime_busy_ratio",
        "Share of time the runtime's workers were busy since the last scrape"
    );

    for name in [
        "starling_fanout_posts_total",
        "starling_fanout_timeline_inserts_total",
        "starling_fanout_skipped_high_fanout_total",
        "starling_timeline_rebuilds_total",
        "starling_feed_sql_fallbacks_total",
        "starling_feed_pages_cut_short_total",
        "starling_logins_backed_off_total",
        "starling_login_failures_fallbacks_total",
        "starling_password_hashing_saturated_total",
        "starling_requests_shed_total",
        "starling_idempotent_replays_total",
        "starling_rate_limit_fallbacks_total",
        "starling_live_published_total",
        "starling_media_thumbnails_total",
        "starling_media_swept_total",
        "starling_db_primary_changes_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for reason in ["slow", "gap"] {
        metrics::counter!("starling_stream_dropped_total", "reason" => reason).increment(0);
    }
    for outcome in ["replayed", "reset", "failed"] {
        metrics::counter!("starling_stream_resumes_total", "outcome" => outcome).increment(0);
    }
    for class in starling_app::ports::RouteClass::ALL {
        metrics::counter!("starling_rate_limited_total", "class" => class.as_str()).increment(0);
    }
    for name in [
        "starling_cache_loads_total",
        "starling_cache_loads_coalesced_total",
    ] {
        metrics::counter!(name, "cache" => "posts").increment(0);
    }
    for consumer in consumers {
        for name in [
            "starling_event_retries_total",
            "starling_events_dead_lettered_total",
        ] {
            metrics::counter!(name, "consumer" => *consumer).increment(0);
        }
    }
    for cache in caches {
        for name in ["starling_cache_hits_total", "starling_cache_misses_total"] {
            metrics::counter!(name, "cache" => *cache).increment(0);
        }
    }
}
