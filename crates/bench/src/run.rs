//! `starling-bench run`: the reference's workload mix against a running
//! Starling, open loop at a target rate.
//!
//! Per active user per day the reference has 2 posts and 10 home-timeline
//! reads; user-timeline reads, likes and follows come on top at weights you
//! choose. Each request acts as a random seeded account (tokens from the
//! manifest). Fan-out lag comes from the server's own histogram, read from
//! `/metrics` before and after the run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use reqwest::Method;
use serde_json::json;

use crate::load::{Limits, Pacing, Request, RequestSource, client, drive};
use crate::manifest::Manifest;
use crate::report::{LagSummary, RunReport, write_json};
use crate::target::{loopback_url, socket_address};

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The Starling to drive (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// The manifest `starling-bench seed` wrote.
    #[arg(long, default_value = "./bench-data/bench-manifest.json")]
    pub manifest: PathBuf,
    /// Requests per second, all types together.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Seconds to run.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Stop after this many requests, even if time remains.
    #[arg(long)]
    pub max_requests: Option<u64>,
    /// Requests outstanding at most (each waits for a slot, and the wait counts).
    #[arg(long, default_value_t = 512)]
    pub max_in_flight: usize,
    #[arg(long, default_value_t = 10.0)]
    pub feed_weight: f64,
    #[arg(long, default_value_t = 2.0)]
    pub post_weight: f64,
    #[arg(long, default_value_t = 2.0)]
    pub user_posts_weight: f64,
    #[arg(long, default_value_t = 1.0)]
    pub like_weight: f64,
    #[arg(long, default_value_t = 0.2)]
    pub follow_weight: f64,
    /// Where to write the JSON result.
    #[arg(long, default_value = "./bench-results/run.json")]
    pub out: PathBuf,
    /// The `/metrics` to read fan-out lag from: the target's own by
    /// default; scaled out, the fan-out worker's.
    #[arg(long)]
    pub lag_metrics: Option<String>,
}

impl RunArgs {
    pub fn defaults_for(target: String, manifest: PathBuf, rate: f64, duration: u64) -> Self {
        Self {
            target,
            manifest,
            rate,
            duration,
            max_requests: None,
            max_in_flight: 512,
            feed_weight: 10.0,
            post_weight: 2.0,
            user_posts_weight: 2.0,
            like_weight: 1.0,
            follow_weight: 0.2,
            out: PathBuf::from("./bench-results/run.json"),
            lag_metrics: None,
        }
    }
}

/// The mixed request source over a manifest.
pub fn mixed_source(manifest: Arc<Manifest>, args: &RunArgs) -> anyhow::Result<RequestSource> {
    if manifest.users.is_empty() || manifest.sample_posts.is_empty() {
        bail!("the manifest has no accounts or posts to act on");
    }
    let weights = [
        ("feed", args.feed_weight),
        ("post", args.post_weight),
        ("user_posts", args.user_posts_weight),
        ("like", args.like_weight),
        ("follow", args.follow_weight),
    ];
    let total: f64 = weights.iter().map(|(_, weight)| weight.max(0.0)).sum();
    if total <= 0.0 {
        bail!("every request weight is zero");
    }
    Ok(Arc::new(move |rng: &mut StdRng| {
        let mut draw = rng.gen_range(0.0..total);
        let mut op = "feed";
        for (name, weight) in weights {
            if draw < weight.max(0.0) {
                op = name;
                break;
            }
            draw -= weight.max(0.0);
        }
        let actor = &manifest.users[rng.gen_range(0..manifest.users.len())];
        let token = Some(actor.token.clone());
        let pick = |rng: &mut StdRng, ids: &[String]| ids.choose(rng).cloned().unwrap_or_default();
        match op {
            "post" => Request {
                op,
                method: Method::POST,
                path: "/api/v1/posts".to_owned(),
                token,
                body: Some(json!({"text": format!("load test post {}", rng.r#gen::<u32>())})),
            },
            "user_posts" => Request {
                op,
                method: Method::GET,
                path: format!(
                    "/api/v1/users/{}/posts?limit=20",
                    pick(rng, &manifest.all_user_ids)
                ),
                token,
                body: None,
            },
            "like" => Request {
                op,
                method: Method::POST,
                path: format!("/api/v1/posts/{}/like", pick(rng, &manifest.sample_posts)),
                token,
                body: None,
            },
            "follow" => {
                let mut followee = pick(rng, &manifest.all_user_ids);
                if followee == actor.id {
                    followee = pick(rng, &manifest.all_user_ids);
                }
                Request {
                    op,
                    method: Method::POST,
                    path: format!("/api/v1/users/{followee}/follow"),
                    token,
                    body: None,
                }
            }
            _ => Request {
                op: "feed",
                method: Method::GET,
                path: "/api/v1/feed?limit=20".to_owned(),
                token,
                body: None,
            },
        }
    }))
}

/// Runs the mix once and returns its report (with server-side fan-out lag).
pub async fn run(args: &RunArgs) -> anyhow::Result<RunReport> {
    let target = loopback_url(&args.target)?;
    let base = target.as_str().trim_end_matches('/').to_owned();
    let manifest = Arc::new(Manifest::load(&args.manifest)?);
    let source = mixed_source(manifest, args)?;
    let client = client(4)?;
    let metrics_url = match &args.lag_metrics {
        Some(url) => loopback_url(url)?.to_string(),
        None => format!("{base}/metrics"),
    };
    let before = scrape_lag(&client, &metrics_url).await;
    let mut report = drive(
        &socket_address(&target)?,
        source,
        Pacing::Open {
            rate: args.rate,
            max_in_flight: args.max_in_flight,
        },
        Limits {
            duration: Duration::from_secs(args.duration),
            max_requests: args.max_requests,
        },
    )
    .await;
    // Let the last fan-outs land before reading the lag.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = scrape_lag(&client, &metrics_url).await;
    if let (Some(before), Some(after)) = (before, after) {
        report.fanout_lag = lag_between(&before, &after);
    }
    write_json(&args.out, &report)?;
    Ok(report)
}

/// Cumulative bucket counts of `starling_fanout_lag_seconds`: (upper bound, count).
pub type Buckets = Vec<(f64, u64)>;

pub async fn scrape_lag(client: &reqwest::Client, url: &str) -> Option<Buckets> {
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    Some(parse_buckets(&text, "starling_fanout_lag_seconds_bucket"))
}

pub fn parse_buckets(text: &str, series: &str) -> Buckets {
    let mut buckets: Buckets = text
        .lines()
        .filter(|line| line.starts_with(series))
        .filter_map(|line| {
            let le = line.split("le=\"").nth(1)?.split('"').next()?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = line.rsplit(' ').next()?.parse::<f64>().ok()? as u64;
            Some((bound, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// Percentiles of what was observed between two scrapes, interpolating
/// linearly inside a bucket (as Prometheus' histogram_quantile does).
pub fn lag_between(before: &Buckets, after: &Buckets) -> Option<LagSummary> {
    let delta: Buckets = after
        .iter()
        .map(|(bound, count)| {
            let earlier = before
                .iter()
                .find(|(other, _)| other == bound)
                .map_or(0, |(_, count)| *count);
            (*bound, count.saturating_sub(earlier))
        })
        .collect();
    let total = delta.last()?.1;
    if total == 0 {
        return None;
    }
    let quantile = |q: f64| {
        let rank = q * total as f64;
        let mut lower = (0.0, 0u64);
        for (bound, count) in &delta {
            if *count as f64 >= rank {
                if bound.is_infinite() {
                    return lower.0;
                }
                let within = (*count - lower.1) as f64;
                let fraction = if within > 0.0 {
                    (rank - lower.1 as f64) / within
                } else {
                    1.0
                };
                return lower.0 + (bound - lower.0) * fraction;
            }
            lower = (*bound, *count);
        }
        lower.0
    };
    Some(LagSummary {
        count: total,
        p50_s: quantile(0.5),
        p90_s: quantile(0.9),
        p99_s: quantile(0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_percentiles_come_from_bucket_deltas() {
        let metrics_before = "starling_fanout_lag_seconds_bucket{le=\"0.001\"} 10\n\
            starling_fanout_lag_seconds_bucket{le=\"0.01\"} 10\n\
            starling_fanout_lag_seconds_bucket{le=\"+Inf\"} 10\n";
        let metrics_after = "starling_fanout_lag_seconds_bucket{le=\"0.001\"} 60\n\
            starling_fanout_lag_seconds_bucket{le=\"0.01\"} 110\n\
            starling_fanout_lag_seconds_bucket{le=\"+Inf\"} 110\n";
        let before = parse_buckets(metrics_before, "starling_fanout_lag_seconds_bucket");
        let after = parse_buckets(metrics_after, "starling_fanout_lag_seconds_bucket");
        let lag = lag_between(&before, &after).unwrap();
        assert_eq!(lag.count, 100);
        // 50 of 100 within 1 ms: the median sits at the first bound.
        assert!((lag.p50_s - 0.001).abs() < 1e-9, "{lag:?}");
        // p90: 40 of the 50 in (1 ms, 10 ms] -> 1 + 9 * 0.8 = 8.2 ms.
        assert!((lag.p90_s - 0.0082).abs() < 1e-9, "{lag:?}");
        assert!(lag_between(&after, &after).is_none());
    }
}
