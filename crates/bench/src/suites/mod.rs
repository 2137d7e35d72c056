//! The benchmark suites behind BENCHMARKS.md. Each measures one figure of
//! Starling and, in the same run on the same machine, a ceiling or baseline
//! for it, and prints both with their ratio. Each records its figure in
//! `bench-results/capacity.json`, which `starling plan` reads.

pub mod fanout;
pub mod feed_read;
pub mod media;
pub mod mixed;
pub mod post_create;
pub mod scale;
pub mod scaled;
pub mod streams;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::machine::Machine;

/// Per-node capacities measured by the suites.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Capacity {
    pub machine: Option<Machine>,
    /// Home-timeline reads per second one node serves at most.
    pub feed_reads_per_s: Option<f64>,
    /// Durable post creations per second one node accepts.
    pub posts_per_s: Option<f64>,
    /// Timeline inserts per second one fan-out worker makes (in-process store).
    pub fanout_inserts_per_s: Option<f64>,
    /// Mixed-workload requests per second one node serves with p99 < 50 ms.
    pub mixed_requests_per_s: Option<f64>,
    /// Scaled out (`starling-bench scaled`): per process in its role.
    #[serde(default)]
    pub scaled: Option<ScaledCapacity>,
}

/// What one process in its role handles scaled out, measured by `bench
/// scaled` with every engine and role on one machine (so each figure is a
/// floor: the others shared its cores).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ScaledCapacity {
    /// Feed reads per second of one API instance behind nginx.
    pub feed_reads_per_s: f64,
    /// Post creations per second of one API instance on one PostgreSQL
    /// primary, the fan-out worker stopped (the write path alone).
    pub posts_per_s: f64,
    /// Timeline inserts per second of one fan-out worker into Redis.
    pub fanout_inserts_per_s: f64,
    /// Mixed-workload requests per second through nginx to two API
    /// instances with p99 < 50 ms.
    #[serde(default)]
    pub mixed_requests_per_s: Option<f64>,
}

impl Capacity {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Merges `update` into the file at `path` (created if absent).
    pub fn record(path: &Path, update: impl FnOnce(&mut Capacity)) -> anyhow::Result<()> {
        let mut capacity = Self::load(path).unwrap_or_default();
        capacity.machine = Some(Machine::this());
        update(&mut capacity);
        crate::report::write_json(path, &capacity)
    }
}

/// Options every suite takes.
#[derive(Debug, Clone, clap::Args)]
pub struct SuiteArgs {
    /// Directory for results (`<suite>.json`, `capacity.json`).
    #[arg(long, default_value = "./bench-results")]
    pub results: PathBuf,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
}

pub fn ratio(figure: f64, ceiling: f64) -> f64 {
    if ceiling > 0.0 { figure / ceiling } else { 0.0 }
}
