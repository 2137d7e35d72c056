//! Latency summaries and result files.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::machine::Machine;

/// Latencies are recorded in microseconds, 1 µs to 60 s, 3 significant figures.
#[allow(clippy::expect_used)]
pub fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds: this cannot fail.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            count: histogram.len(),
            mean_ms: histogram.mean() / 1000.0,
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// One request type's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpReport {
    pub name: String,
    pub completed: u64,
    pub ok: u64,
    /// `"status 503"`, `"transport"`, ... and how many.
    pub errors: BTreeMap<String, u64>,
    pub throughput_per_s: f64,
    pub latency: LatencySummary,
}

/// The requests due in one second of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SecondReport {
    /// Seconds since the run started.
    pub second: u64,
    pub requests: u64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Percentiles estimated from a Prometheus histogram's bucket counts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LagSummary {
    pub count: u64,
    pub p50_s: f64,
    pub p90_s: f64,
    pub p99_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub machine: Machine,
    /// `open` (fixed arrival rate) or `closed` (fixed concurrency).
    pub pacing: String,
    pub target_rate_per_s: Option<f64>,
    pub duration_s: f64,
    pub throughput_per_s: f64,
    pub errors: u64,
    pub overall: LatencySummary,
    pub ops: Vec<OpReport>,
    /// Latency second by second (by when each request was due).
    #[serde(default)]
    pub seconds: Vec<SecondReport>,
    /// Server-side fan-out lag over the run (from `/metrics`), when measured.
    pub fanout_lag: Option<LagSummary>,
}

/// A second whose p99 passes this is named in the printed report.
const SLOW_SECOND_MS: f64 = 50.0;

impl RunReport {
    pub fn print(&self, title: &str) {
        println!("\n{title}");
        println!(
            "  {} pacing{}, {:.1} s, {:.0} requests/s, {} errors; machine: {}",
            self.pacing,
            self.target_rate_per_s
                .map(|rate| format!(" at {rate:.0}/s"))
                .unwrap_or_default(),
            self.duration_s,
            self.throughput_per_s,
            self.errors,
            self.machine.describe()
        );
        println!(
            "  {:<12} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
            "request", "count", "per s", "p50 ms", "p90 ms", "p99 ms", "p99.9", "max ms", "errors"
        );
        for op in &self.ops {
            let errors: u64 = op.errors.values().sum();
            println!(
                "  {:<12} {:>9} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>9}",
                op.name,
                op.completed,
                op.throughput_per_s,
                op.latency.p50_ms,
                op.latency.p90_ms,
                op.latency.p99_ms,
                op.latency.p999_ms,
                op.latency.max_ms,
                errors
            );
            for (kind, count) in &op.errors {
                println!("  {:<12}   {count} × {kind}", "");
            }
        }
        let slow: Vec<String> = self
            .seconds
            .iter()
            .filter(|second| second.p99_ms > SLOW_SECOND_MS)
            .map(|second| format!("{}s: p99 {:.0} ms", second.second, second.p99_ms))
            .collect();
        if !slow.is_empty() {
            println!(
                "  seconds with p99 over {SLOW_SECOND_MS} ms: {}",
                slow.join(", ")
            );
        }
        if let Some(lag) = &self.fanout_lag {
            println!(
                "  fan-out lag (server): {} posts, p50 {:.3} s, p90 {:.3} s, p99 {:.3} s",
                lag.count, lag.p50_s, lag.p90_s, lag.p99_s
            );
        }
    }
}

/// Writes `value` as pretty JSON to `path`, creating its directory.
pub fn write_json(path: &std::path::Path, value: &impl Serialize) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, serde_json::to_vec_pretty(value)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_report_milliseconds() {
        let mut histogram = new_histogram();
        for micros in 1..=1000u64 {
            histogram.record(micros * 10).unwrap();
        }
        let summary = LatencySummary::of(&histogram);
        assert_eq!(summary.count, 1000);
        assert!((summary.p50_ms - 5.0).abs() < 0.01, "{summary:?}");
        assert!((summary.p99_ms - 9.9).abs() < 0.02, "{summary:?}");
        assert!((summary.max_ms - 10.0).abs() < 0.02, "{summary:?}");
    }
}
