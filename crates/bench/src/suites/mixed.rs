//! Benchmark 4: the reference's workload mix (`starling-bench run`), open loop at
//! rising rates; the figure is the highest rate that keeps p99 of all
//! requests under 50 ms with no errors, and fan-out lag p99 under a second.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::{Capacity, SuiteArgs};
use crate::machine::Machine;
use crate::manifest::Manifest;
use crate::report::{RunReport, write_json};
use crate::run::{RunArgs, run as run_mix};
use crate::seed::{SeedArgs, seed};
use crate::server::start_starling;

/// The service-level objective of the ramp: requests answered within 50 ms
/// at p99, and followers seeing new posts within a second at p99 with the
/// fan-out worker keeping up (a worker falling behind would only show its
/// lag after the step ends).
const P99_LIMIT_MS: f64 = 50.0;
const FANOUT_LAG_LIMIT_S: f64 = 1.0;

fn keeps_up_with_posts(report: &RunReport) -> bool {
    let posted: u64 = report
        .ops
        .iter()
        .filter(|op| op.name == "post")
        .map(|op| op.ok)
        .sum();
    match &report.fanout_lag {
        Some(lag) => lag.p99_s < FANOUT_LAG_LIMIT_S && lag.count as f64 >= posted as f64 * 0.95,
        // Every post may have come from an account above the threshold.
        None => true,
    }
}

/// Rising open-loop rates of the mix until one misses the objective.
pub(crate) struct Ramp {
    pub(crate) start_rate: f64,
    /// Each next rate is this many times the last.
    pub(crate) step: f64,
    pub(crate) max_rate: f64,
    /// Seconds per rate.
    pub(crate) duration: u64,
    pub(crate) results: PathBuf,
    /// Result files are `{name}-{rate}.json`.
    pub(crate) name: &'static str,
}

impl Ramp {
    /// The highest rate that met the objective, and every step's report.
    /// Fan-out lag is read from `lag_metrics` (the target's own by default).
    pub(crate) async fn run(
        &self,
        target: &str,
        manifest: &std::path::Path,
        lag_metrics: Option<String>,
    ) -> anyhow::Result<(Option<f64>, Vec<RunReport>)> {
        let mut steps = Vec::new();
        let mut best = None;
        let mut rate = self.start_rate;
        while rate <= self.max_rate {
            let mut run_args =
                RunArgs::defaults_for(target.to_owned(), manifest.to_owned(), rate, self.duration);
            run_args.out = self.results.join(format!("{}-{rate:.0}.json", self.name));
            run_args.lag_metrics = lag_metrics.clone();
            let report = run_mix(&run_args).await?;
            report.print(&format!(
                "Mixed workload ({}) at {rate:.0} requests/s",
                self.name
            ));
            let passed = meets_objective(&report);
            steps.push(report);
            if !passed {
                break;
            }
            best = Some(rate);
            rate *= self.step;
            // Let queues drain between steps.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok((best, steps))
    }
}

/// No errors, p99 under the limit, and the fan-out keeping up.
pub(crate) fn meets_objective(report: &RunReport) -> bool {
    report.errors == 0 && report.overall.p99_ms < P99_LIMIT_MS && keeps_up_with_posts(report)
}

#[derive(Debug, Clone, clap::Args)]
pub struct MixedArgs {
    #[command(flatten)]
    pub suite: SuiteArgs,
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    #[arg(long, default_value_t = 200.0)]
    pub follows_mean: f64,
    #[arg(long, default_value_t = 100_000)]
    pub posts: usize,
    /// Accounts acting during the run.
    #[arg(long, default_value_t = 2_000)]
    pub active: usize,
    /// First rate tried (requests/s).
    #[arg(long, default_value_t = 250.0)]
    pub start_rate: f64,
    /// Each next rate is this many times the last.
    #[arg(long, default_value_t = 1.4)]
    pub step: f64,
    /// Never try more than this (requests/s).
    #[arg(long, default_value_t = 50_000.0)]
    pub max_rate: f64,
    /// Keep the data here instead of a temporary directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Steady state has the active readers' timelines in memory; a restart
/// does not. Reading each once first measures the rebuilds on their own.
struct Warmup {
    count: usize,
    elapsed: Duration,
    per_rebuild_ms: f64,
}

async fn warm_timelines(base: &str, manifest: &Manifest) -> anyhow::Result<Warmup> {
    let http = crate::load::client(4)?;
    let started = std::time::Instant::now();
    let url = format!("{base}/api/v1/feed?limit=20");
    let mut pending = spawn_warm_reads(manifest, &http, &url);
    while let Some(done) = pending.join_next().await {
        done??;
    }
    let count = manifest.users.len();
    let elapsed = started.elapsed();
    Ok(Warmup {
        count,
        elapsed,
        per_rebuild_ms: elapsed.as_secs_f64() * 1000.0 * 4.0 / count.max(1) as f64,
    })
}

/// Reads every seeded reader's feed, four at a time.
fn spawn_warm_reads(
    manifest: &Manifest,
    http: &reqwest::Client,
    url: &str,
) -> tokio::task::JoinSet<anyhow::Result<()>> {
    let mut tasks = tokio::task::JoinSet::new();
    let tokens: Vec<String> = manifest
        .users
        .iter()
        .map(|user| user.token.clone())
        .collect();
    let chunk = tokens.len().div_ceil(4).max(1);
    for part in tokens.chunks(chunk) {
        let (http, url, part) = (http.clone(), url.to_owned(), part.to_vec());
        tasks.spawn(async move {
            for token in part {
                let response = http.get(&url).bearer_auth(&token).send().await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "warm-up read failed: {}",
                    response.status()
                );
                response.bytes().await?;
            }
            Ok(())
        });
    }
    tasks
}

pub(crate) fn print_best(best: Option<f64>, start_rate: f64) {
    match best {
        Some(rate) => println!(
            "  highest rate with p99 < {P99_LIMIT_MS} ms, no errors and fan-out lag p99 < {FANOUT_LAG_LIMIT_S} s: {rate:.0} requests/s"
        ),
        None => println!(
            "  even {start_rate:.0} requests/s missed p99 < {P99_LIMIT_MS} ms, had errors or lagged"
        ),
    }
}

#[derive(Debug, Serialize)]
pub struct MixedResult {
    pub machine: Machine,
    /// Milliseconds per cold timeline rebuild during the warm-up.
    pub rebuild_ms: f64,
    pub best_rate_per_s: Option<f64>,
    pub steps: Vec<RunReport>,
}

pub async fn run(args: &MixedArgs) -> anyhow::Result<MixedResult> {
    let temporary = crate::server::data_dir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temporary.path().to_owned());
    println!(
        "seeding {} accounts, ~{} follows each, {} posts ...",
        args.users, args.follows_mean, args.posts
    );
    let seed_args = SeedArgs {
        data_dir: data_dir.clone(),
        users: args.users,
        follows_mean: args.follows_mean,
        posts: args.posts,
        days: 7,
        active: args.active,
        popularity_skew: 1.0,
        rng_seed: 17,
        manifest: None,
    };
    let seeded = seed(&seed_args).await?;
    println!(
        "seeded in {:.1} s: {} follows; most followed: {:?}",
        seeded.elapsed.as_secs_f64(),
        seeded.follows,
        seeded
            .most_followed
            .iter()
            .take(3)
            .map(|(_, count)| count)
            .collect::<Vec<_>>()
    );
    let starling = start_starling(&data_dir, &[]).await?;
    let warm = warm_timelines(&starling.base, &seeded.manifest).await?;
    println!(
        "warmed {} timelines in {:.1} s ({:.1} ms per cold rebuild, 4 at a time)",
        warm.count,
        warm.elapsed.as_secs_f64(),
        warm.per_rebuild_ms
    );

    let ramp = Ramp {
        start_rate: args.start_rate,
        step: args.step,
        max_rate: args.max_rate,
        duration: args.suite.duration,
        results: args.suite.results.clone(),
        name: "mixed",
    };
    let (best, steps) = ramp
        .run(&starling.base, &seed_args.manifest_path(), None)
        .await?;
    starling.stop().await?;
    let result = MixedResult {
        machine: Machine::this(),
        rebuild_ms: warm.per_rebuild_ms,
        best_rate_per_s: best,
        steps,
    };
    println!("\nMixed workload ({}):", result.machine.describe());
    print_best(best, args.start_rate);
    write_json(&args.suite.results.join("mixed.json"), &result)?;
    Capacity::record(&args.suite.results.join("capacity.json"), |capacity| {
        capacity.mixed_requests_per_s = best;
    })?;
    Ok(result)
}
