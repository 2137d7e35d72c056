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

/// Gives every metric its help text (from `starling_app::metric`, where
/// each is named once) and creates the counters at zero, labelled ones for
/// each label value known at start, so that they are exported (and
/// `rate()` sees their first increment) before anything happens.
pub fn describe_metrics(consumers: &[&'static str], caches: &[&'static str]) {
    use starling_app::metric;

    metric::describe_all();
    for reason in ["slow", "gap"] {
        metrics::counter!(metric::STREAM_DROPPED_TOTAL, "reason" => reason).increment(0);
    }
    for outcome in ["replayed", "reset", "failed"] {
        metrics::counter!(metric::STREAM_RESUMES_TOTAL, "outcome" => outcome).increment(0);
    }
    for class in starling_app::ports::RouteClass::ALL {
        metrics::counter!(metric::RATE_LIMITED_TOTAL, "class" => class.as_str()).increment(0);
    }
    for name in [
        metric::CACHE_LOADS_TOTAL,
        metric::CACHE_LOADS_COALESCED_TOTAL,
    ] {
        metrics::counter!(name, "cache" => "posts").increment(0);
    }
    for consumer in consumers {
        for name in [
            metric::EVENT_RETRIES_TOTAL,
            metric::EVENTS_DEAD_LETTERED_TOTAL,
        ] {
            metrics::counter!(name, "consumer" => *consumer).increment(0);
        }
    }
    for cache in caches {
        for name in [metric::CACHE_HITS_TOTAL, metric::CACHE_MISSES_TOTAL] {
            metrics::counter!(name, "cache" => *cache).increment(0);
        }
    }
}
