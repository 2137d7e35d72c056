//! Benchmark 1: authenticated home-timeline reads of 20 hydrated posts.
//! Ceiling: the minimal axum handler of `baseline.rs` answering a body of
//! the same size, through the same HTTP stack and the same load engine.
//! Reported: maximum throughput (closed loop), and p99 at half of it (open
//! loop), for both.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::Method;
use serde::Serialize;

use super::{Capacity, SuiteArgs, ratio};
use crate::load::{Limits, Pacing, Request, RequestSource, client, drive};
use crate::machine::Machine;
use crate::report::{RunReport, write_json};
use crate::seed::{SeedArgs, seed};
use crate::server::{start_baseline, start_starling};

#[derive(Debug, Clone, clap::Args)]
pub struct FeedReadArgs {
    #[command(flatten)]
    pub suite: SuiteArgs,
    /// Accounts in the seeded graph.
    #[arg(long, default_value_t = 5_000)]
    pub users: usize,
    #[arg(long, default_value_t = 100.0)]
    pub follows_mean: f64,
    #[arg(long, default_value_t = 100_000)]
    pub posts: usize,
    /// Distinct readers the load rotates through (their timelines are warm).
    #[arg(long, default_value_t = 1_000)]
    pub readers: usize,
    /// Connections for the maximum-throughput measurement.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Keep the data here instead of a temporary directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// `KEY=VALUE` for the server's environment, after the benchmark's own
    /// (repeatable): measures what a setting costs, e.g. the edge layers
    /// with `STARLING_RATE_LIMITS__ENABLED=true` or `STARLING_HTTP__MAX_IN_FLIGHT=0`.
    #[arg(long = "server-env", value_parser = parse_env_pair)]
    pub server_env: Vec<(String, String)>,
}

fn parse_env_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

#[derive(Debug, Serialize)]
pub struct FeedReadResult {
    pub machine: Machine,
    pub page_bytes: usize,
    pub starling_max: RunReport,
    pub baseline_max: RunReport,
    pub starling_half: RunReport,
    pub baseline_half: RunReport,
    pub throughput_ratio: f64,
}

pub async fn run(args: &FeedReadArgs) -> anyhow::Result<FeedReadResult> {
    let temporary = crate::server::data_dir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temporary.path().to_owned());
    println!(
        "seeding {} accounts, ~{} follows each, {} posts ...",
        args.users, args.follows_mean, args.posts
    );
    let seeded = seed(&SeedArgs {
        data_dir: data_dir.clone(),
        users: args.users,
        follows_mean: args.follows_mean,
        posts: args.posts,
        days: 7,
        active: args.readers,
        popularity_skew: 1.0,
        rng_seed: 11,
        manifest: None,
    })
    .await?;
    let server_env: Vec<(&str, String)> = args
        .server_env
        .iter()
        .map(|(key, value)| (key.as_str(), value.clone()))
        .collect();
    let starling = start_starling(&data_dir, &server_env).await?;
    let http = client(args.connections * 2)?;

    // Warm every reader's timeline and keep those whose first page is full.
    let mut readers = Vec::new();
    let mut page_bytes = Vec::new();
    for user in &seeded.manifest.users {
        let response = http
            .get(format!("{}/api/v1/feed?limit=20", starling.base))
            .bearer_auth(&user.token)
            .send()
            .await?;
        let body = response.bytes().await?;
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        if page["data"]
            .as_array()
            .is_some_and(|posts| posts.len() == 20)
        {
            readers.push(user.token.clone());
            page_bytes.push(body.len());
        }
    }
    anyhow::ensure!(
        !readers.is_empty(),
        "no reader has a full page; seed more posts"
    );
    page_bytes.sort_unstable();
    let page_size = page_bytes[page_bytes.len() / 2];
    println!(
        "{} readers with full pages; median page {page_size} bytes",
        readers.len()
    );
    let baseline = start_baseline(page_size).await?;

    let readers = Arc::new(readers);
    let feed_source = |path: &'static str| -> RequestSource {
        let readers = readers.clone();
        Arc::new(move |rng| Request {
            op: "feed",
            method: Method::GET,
            path: path.to_owned(),
            token: Some(readers[rng.gen_range(0..readers.len())].clone()),
            body: None,
        })
    };
    let starling_source = feed_source("/api/v1/feed?limit=20");
    let baseline_source = feed_source("/feed");
    let duration = Duration::from_secs(args.suite.duration);
    let closed = Pacing::Closed {
        connections: args.connections,
    };
    let limits = Limits {
        duration,
        max_requests: None,
    };

    let starling_max = drive(&starling.address, starling_source.clone(), closed, limits).await;
    let baseline_max = drive(&baseline.address, baseline_source.clone(), closed, limits).await;
    let half = |report: &RunReport| Pacing::Open {
        rate: (report.throughput_per_s / 2.0).max(1.0),
        // Enough connections that the server, not the generator, sets the pace.
        max_in_flight: args.connections * 4,
    };
    let starling_half = drive(
        &starling.address,
        starling_source,
        half(&starling_max),
        limits,
    )
    .await;
    let baseline_half = drive(
        &baseline.address,
        baseline_source,
        half(&baseline_max),
        limits,
    )
    .await;
    starling.stop().await?;
    baseline.stop().await?;

    let result = FeedReadResult {
        machine: Machine::this(),
        page_bytes: page_size,
        throughput_ratio: ratio(starling_max.throughput_per_s, baseline_max.throughput_per_s),
        starling_max,
        baseline_max,
        starling_half,
        baseline_half,
    };
    result
        .starling_max
        .print("Starling GET /api/v1/feed (20 posts), closed loop");
    result
        .baseline_max
        .print("Baseline minimal handler, same body size, closed loop");
    result
        .starling_half
        .print("Starling at half its maximum, open loop");
    result
        .baseline_half
        .print("Baseline at half its maximum, open loop");
    println!("\nHome timeline read ({}):", result.machine.describe());
    println!(
        "  max throughput: Starling {:.0}/s vs ceiling {:.0}/s -> ratio {:.2}",
        result.starling_max.throughput_per_s,
        result.baseline_max.throughput_per_s,
        result.throughput_ratio
    );
    println!(
        "  p99 at half rate: Starling {:.2} ms at {:.0}/s vs ceiling {:.2} ms at {:.0}/s",
        result.starling_half.overall.p99_ms,
        result.starling_half.throughput_per_s,
        result.baseline_half.overall.p99_ms,
        result.baseline_half.throughput_per_s
    );
    write_json(&args.suite.results.join("feed-read.json"), &result)?;
    Capacity::record(&args.suite.results.join("capacity.json"), |capacity| {
        capacity.feed_reads_per_s = Some(result.starling_max.throughput_per_s);
    })?;
    Ok(result)
}
