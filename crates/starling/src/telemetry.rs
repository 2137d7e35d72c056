//! Logs and metrics set-up.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Latency buckets (seconds) for every `*_seconds` histogram: fine below
/// 10 ms where a healthy API lives, coarse up to the request timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// Installs the global log subscriber. `RUST_LOG` overrides `level`.
pub fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .map_err(|error| anyhow::anyhow!("invalid log level {level:?}: {error}"))?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(tracing_subscriber::fmt::layer()).try_init(),
    };
    result.map_err(|error| anyhow::anyhow!("cannot install the log subscriber: {error}"))
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
