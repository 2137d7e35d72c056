//! `starling-bench scale`: what one embedded node costs as its community
//! grows. For each size (accounts) it seeds a community through the bulk
//! path (Zipf popularity, log-normal follows, `--posts-per-account` posts
//! each), starts the server, and reports:
//! - seed time and the SQLite file's size;
//! - the server's resident memory at rest and after the active readers'
//!   timelines are warmed, as bytes per account and per timeline entry;
//! - feed reads cold (the timeline rebuilt from SQL) and warm, and post
//!   creations, p50 and p99, with the fan-out lag they caused;
//! - after `kill -9`: the time to the first 200 of a feed read, and until
//!   the p99 of each second of reads is back under 10 ms (timelines rebuild
//!   lazily, on their reader's first read, so none is rebuilt at start);
//! - the most-followed account's posts (about 100,000 followers at a
//!   million accounts): the time from each post until a follower's feed
//!   shows it, as the server is configured (above `timeline.fanout_threshold`
//!   they are merged at read) and with fan-out forced for that account (the
//!   threshold raised above its followers), with the fan-out lag.
//!
//! The baseline of each figure is the same figure at the smallest size,
//! measured in the same run: the curves are the point.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::SuiteArgs;
use crate::load::{Limits, Pacing, Request, RequestSource, client, drive};
use crate::machine::Machine;
use crate::plot::{self, Panel, Series};
use crate::report::{LagSummary, LatencySummary, RunReport, new_histogram, write_json};
use crate::run::{lag_between, scrape_lag};
use crate::seed::{SeedArgs, seed};
use crate::server::{Spawned, start_starling};

/// A second of reads whose p99 is under this counts as recovered.
const RECOVERED_P99_MS: f64 = 10.0;
/// Timeline entries a reader's stored timeline holds at most (`timeline.cap`).
const TIMELINE_CAP: i64 = 800;
/// Posts the most-followed account makes in each of its measurements.
const CELEBRITY_POSTS: usize = 30;

#[derive(Debug, Clone, clap::Args)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub suite: SuiteArgs,
    /// Community sizes in accounts, each measured on a fresh data directory.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub sizes: Vec<usize>,
    /// Mean accounts each account follows (log-normal, popularity by Zipf).
    #[arg(long, default_value_t = 50.0)]
    pub follows_mean: f64,
    /// Posts of history per account (authors by Zipf activity).
    #[arg(long, default_value_t = 20)]
    pub posts_per_account: usize,
    /// Active readers: their timelines are warmed and their feeds read.
    #[arg(long, default_value_t = 5_000)]
    pub readers: usize,
    /// Feed reads per second while measuring warm reads (open loop); one
    /// request in ten is a post.
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,
    /// The server's `timeline.max_cached_timelines`: timelines held in
    /// memory at most, the rest rebuilt on their reader's next read. Below
    /// `--readers` it shows the bound holding [default: the server's].
    #[arg(long)]
    pub max_cached_timelines: Option<u64>,
    /// Where the data directories are made (each is removed after its
    /// size) [default: the system's temporary directory].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Measure nothing: draw `scale.svg` again from the `scale.json` in `--results`.
    #[arg(long)]
    pub replot: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SizeResult {
    pub accounts: usize,
    pub follows: u64,
    pub posts: usize,
    pub seed_s: f64,
    /// `starling.db` and its write-ahead log.
    pub database_bytes: u64,
    pub rss_at_rest_bytes: u64,
    pub rss_warm_bytes: u64,
    pub readers_warmed: usize,
    /// Timelines the store held after the warming (the bound at work when
    /// it is below `readers_warmed`).
    pub timelines_held: Option<u64>,
    /// Entries the warmed timelines hold, from SQL (each reader's and
    /// followees' posts, up to the cap); an upper bound, since posts of
    /// accounts above the fan-out threshold are merged at read time instead.
    pub timeline_entries: u64,
    pub bytes_per_account_at_rest: f64,
    pub bytes_per_timeline_entry: f64,
    /// First read of each reader: the timeline rebuilt from SQL.
    pub cold_feed: LatencySummary,
    pub warm_feed: LatencySummary,
    pub post: LatencySummary,
    pub fanout_lag: Option<LagSummary>,
    /// From `kill -9` and restart to the first 200 of a feed read.
    pub restart_first_read_s: f64,
    /// ... to the first second after which every second's read p99 stayed
    /// under 10 ms; `None` if it did not within the measurement.
    pub restart_p99_recovered_s: Option<f64>,
    /// The most-followed account's posts reaching a follower (absent in
    /// results recorded before it was measured).
    #[serde(default)]
    pub celebrity: Option<CelebrityResult>,
}

/// The most-followed account posting, one post at a time, each read back
/// from a follower's feed until it shows.
#[derive(Debug, Serialize, Deserialize)]
pub struct CelebrityResult {
    pub followers: u64,
    /// As the server is configured: merged at read when `followers` is above
    /// `timeline.fanout_threshold` (`merged_at_read`), else fanned out.
    pub configured: Visibility,
    /// With `timeline.fanout_threshold` at twice `followers` (above the band
    /// in which posts are merged at read too): every post written into the
    /// materialised timelines of all its followers, and seen only there.
    pub fanned_out: Visibility,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Visibility {
    /// Whether the server merged these posts at read instead of fanning them
    /// out (its `starling_fanout_skipped_high_fanout_total` counted them).
    pub merged_at_read: bool,
    /// From sending the post to the first feed read of a follower that
    /// shows it (reads one after another, 1 ms apart).
    pub visible: LatencySummary,
    /// The server's own fan-out lag for these posts (commit to the last
    /// timeline written); `None` when they were merged at read.
    pub fanout_lag: Option<LagSummary>,
    /// Timelines the store held while they were posted.
    pub timelines_held: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ScaleResult {
    pub machine: Machine,
    pub follows_mean: f64,
    pub posts_per_account: usize,
    pub sizes: Vec<SizeResult>,
}

pub async fn run(args: &ScaleArgs) -> anyhow::Result<ScaleResult> {
    if args.replot {
        let recorded: ScaleResult =
            serde_json::from_slice(&std::fs::read(args.suite.results.join("scale.json"))?)?;
        std::fs::write(args.suite.results.join("scale.svg"), curves_svg(&recorded))?;
        return Ok(recorded);
    }
    let mut result = ScaleResult {
        machine: Machine::this(),
        follows_mean: args.follows_mean,
        posts_per_account: args.posts_per_account,
        sizes: Vec::new(),
    };
    for &accounts in &args.sizes {
        let size = measure_size(args, accounts).await?;
        print_size(&size);
        result.sizes.push(size);
        // Written after each size: the large ones take a while.
        write_json(&args.suite.results.join("scale.json"), &result)?;
        std::fs::write(args.suite.results.join("scale.svg"), curves_svg(&result))?;
    }
    print_curves(&result);
    println!("curves: {}", args.suite.results.join("scale.svg").display());
    Ok(result)
}

/// The figures against size, as the chart BENCHMARKS.md shows.
fn curves_svg(result: &ScaleResult) -> String {
    let mib = |bytes: u64| bytes as f64 / 1_048_576.0;
    let line = |name: &str, value: &dyn Fn(&SizeResult) -> f64| Series {
        name: name.to_owned(),
        points: result
            .sizes
            .iter()
            .map(|size| (size.accounts as f64, value(size)))
            .collect(),
    };
    let panels = [
        Panel {
            title: "Memory of the server".to_owned(),
            unit: "MiB".to_owned(),
            series: vec![
                line("at rest", &|size| mib(size.rss_at_rest_bytes)),
                line("active readers' timelines warm", &|size| {
                    mib(size.rss_warm_bytes)
                }),
            ],
        },
        Panel {
            title: "Database and seeding".to_owned(),
            unit: "MiB, s".to_owned(),
            series: vec![
                line("database (MiB)", &|size| mib(size.database_bytes)),
                line("bulk seed (s)", &|size| size.seed_s),
            ],
        },
        Panel {
            title: "Latency p99".to_owned(),
            unit: "ms".to_owned(),
            series: vec![
                line("feed, cold (rebuilt)", &|size| size.cold_feed.p99_ms),
                line("feed, warm", &|size| size.warm_feed.p99_ms),
                line("post", &|size| size.post.p99_ms),
            ],
        },
        Panel {
            title: "Most-followed account's post seen by a follower, p99".to_owned(),
            unit: "ms".to_owned(),
            series: vec![
                line("hybrid (default)", &|size| {
                    size.celebrity
                        .as_ref()
                        .map_or(0.0, |celebrity| celebrity.configured.visible.p99_ms)
                }),
                line("fanned out", &|size| {
                    size.celebrity
                        .as_ref()
                        .map_or(0.0, |celebrity| celebrity.fanned_out.visible.p99_ms)
                }),
                line("its fan-out lag", &|size| {
                    size.celebrity
                        .as_ref()
                        .and_then(|celebrity| celebrity.fanned_out.fanout_lag.as_ref())
                        .map_or(0.0, |lag| lag.p99_s * 1000.0)
                }),
            ],
        },
        Panel {
            title: "After kill -9".to_owned(),
            unit: "s".to_owned(),
            series: vec![
                line("to the first feed read", &|size| size.restart_first_read_s),
                line("until each second's p99 < 10 ms", &|size| {
                    size.restart_p99_recovered_s.unwrap_or(0.0)
                }),
            ],
        },
    ];
    plot::svg(
        "One embedded Starling node against community size",
        &format!(
            "{}; {} follows per account on average (Zipf popularity), {} posts per account; 5,000 active readers",
            result.machine.describe(),
            result.follows_mean,
            result.posts_per_account
        ),
        "accounts",
        &panels,
        2,
    )
}

async fn measure_size(args: &ScaleArgs, accounts: usize) -> anyhow::Result<SizeResult> {
    let parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix("starling-scale-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Private, as Starling asks of a data directory.
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    let data = builder.tempdir_in(&parent)?;
    let data_dir = data.path().to_owned();
    let posts = accounts * args.posts_per_account;
    println!(
        "\n{accounts} accounts: seeding ~{} follows each, {posts} posts ...",
        args.follows_mean
    );
    let seeded = seed(&SeedArgs {
        data_dir: data_dir.clone(),
        users: accounts,
        follows_mean: args.follows_mean,
        posts,
        days: 7,
        active: args.readers.min(accounts),
        popularity_skew: 1.0,
        rng_seed: 17,
        manifest: None,
    })
    .await?;
    let seed_s = seeded.elapsed.as_secs_f64();
    let database_bytes = database_bytes(&data_dir);
    let tokens: Vec<String> = seeded
        .manifest
        .users
        .iter()
        .map(|user| user.token.clone())
        .collect();
    let reader_ids: Vec<i64> = seeded
        .manifest
        .users
        .iter()
        .filter_map(|user| user.id.parse().ok())
        .collect();
    let timeline_entries = timeline_entries(&data_dir, &reader_ids).await?;
    println!(
        "  seeded in {seed_s:.1} s: {} follows, database {:.0} MiB",
        seeded.follows,
        database_bytes as f64 / 1_048_576.0
    );

    let server_env: Vec<(&str, String)> = args
        .max_cached_timelines
        .map(|bound| ("STARLING_TIMELINE__MAX_CACHED_TIMELINES", bound.to_string()))
        .into_iter()
        .collect();
    let starling = start_starling(&data_dir, &server_env).await?;
    let http = client(64)?;
    let rss_at_rest_bytes = resident_bytes(&starling);

    // Every reader's first read rebuilds their timeline from SQL.
    let cold_feed = first_reads(&http, &starling.base, &tokens, 4).await?;
    let rss_warm_bytes = resident_bytes(&starling);
    let timelines_held = gauge(
        &http,
        &format!("{}/metrics", starling.base),
        "starling_timelines_materialised",
    )
    .await;

    let tokens = Arc::new(tokens);
    let metrics_url = format!("{}/metrics", starling.base);
    let lag_before = scrape_lag(&http, &metrics_url).await;
    let warm = open_loop(&starling, &tokens, 10, args.rate, args.suite.duration).await;
    let lag_after = scrape_lag(&http, &metrics_url).await;
    let fanout_lag = match (lag_before, lag_after) {
        (Some(before), Some(after)) => lag_between(&before, &after),
        _ => None,
    };
    let celebrity_follower = tokens.first().cloned().unwrap_or_default();
    let celebrity = match seeded.manifest.most_followed.first() {
        Some((id, followers)) => Some((
            id.clone(),
            *followers,
            celebrity_token(&http, &starling.base, id, &celebrity_follower).await?,
        )),
        None => None,
    };
    let configured = match &celebrity {
        Some((id, _, token)) => {
            Some(celebrity_posts(&http, &starling.base, id, token, &celebrity_follower).await?)
        }
        None => None,
    };
    let op = |report: &RunReport, name: &str| {
        report
            .ops
            .iter()
            .find(|op| op.name == name)
            .map(|op| op.latency.clone())
            .unwrap_or_default()
    };

    // Restart at size: kill -9, start again, read.
    let restarted = Instant::now();
    starling.kill().await?;
    let starling = start_starling(&data_dir, &server_env).await?;
    let first_token = tokens.first().cloned().unwrap_or_default();
    loop {
        let response = http
            .get(format!("{}/api/v1/feed?limit=20", starling.base))
            .bearer_auth(&first_token)
            .send()
            .await?;
        if response.status().is_success() {
            break;
        }
        anyhow::ensure!(
            restarted.elapsed() < Duration::from_secs(300),
            "no feed read succeeded within 5 minutes of the restart: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let restart_first_read_s = restarted.elapsed().as_secs_f64();
    let recovery = open_loop(&starling, &tokens, 0, args.rate, args.suite.duration * 3).await;
    let recovered_after =
        recovered_second(&recovery).map(|second| restart_first_read_s + second as f64);
    starling.stop().await?;

    // The most-followed account again, with fan-out forced for it: the
    // readers' timelines warmed first, as the fan-out writes only into
    // timelines that are materialised.
    let celebrity = match (celebrity, configured) {
        (Some((id, followers, token)), Some(configured)) => {
            // Twice its followers: above the band below the threshold in
            // which posts are merged at read as well as fanned out, so the
            // follower sees the post only through its timeline.
            let mut forced = server_env.clone();
            forced.push((
                "STARLING_TIMELINE__FANOUT_THRESHOLD",
                (followers * 2 + 2).to_string(),
            ));
            let starling = start_starling(&data_dir, &forced).await?;
            first_reads(&http, &starling.base, &tokens, 4).await?;
            let fanned_out =
                celebrity_posts(&http, &starling.base, &id, &token, &celebrity_follower).await?;
            starling.stop().await?;
            Some(CelebrityResult {
                followers,
                configured,
                fanned_out,
            })
        }
        _ => None,
    };

    let readers_warmed = cold_feed.count as usize;
    Ok(SizeResult {
        accounts,
        follows: seeded.follows,
        posts: seeded.posts,
        seed_s,
        database_bytes,
        rss_at_rest_bytes,
        rss_warm_bytes,
        readers_warmed,
        timelines_held,
        timeline_entries,
        bytes_per_account_at_rest: rss_at_rest_bytes as f64 / accounts as f64,
        bytes_per_timeline_entry: rss_warm_bytes.saturating_sub(rss_at_rest_bytes) as f64
            / timeline_entries.max(1) as f64,
        cold_feed,
        warm_feed: op(&warm, "feed"),
        post: op(&warm, "post"),
        fanout_lag,
        restart_first_read_s,
        restart_p99_recovered_s: recovered_after,
        celebrity,
    })
}

/// A token of the account `id` (seeded accounts share one password), once
/// `follower` (a token) follows it.
async fn celebrity_token(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    follower: &str,
) -> anyhow::Result<String> {
    let followed = http
        .post(format!("{base}/api/v1/users/{id}/follow"))
        .bearer_auth(follower)
        .send()
        .await?;
    anyhow::ensure!(
        followed.status().is_success(),
        "following the most-followed account failed: {}",
        followed.status()
    );
    let profile: serde_json::Value = http
        .get(format!("{base}/api/v1/users/{id}"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let handle = profile["handle"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the profile of {id} has no handle"))?;
    let session: serde_json::Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"login": handle, "password": crate::seed::BENCH_PASSWORD}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    session["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("the login of {handle} gave no access token"))
}

/// `CELEBRITY_POSTS` posts by the account, one at a time, each followed by
/// the follower's feed reads until it shows.
async fn celebrity_posts(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    token: &str,
    follower: &str,
) -> anyhow::Result<Visibility> {
    let metrics_url = format!("{base}/metrics");
    let skipped = "starling_fanout_skipped_high_fanout_total";
    let skipped_before = gauge(http, &metrics_url, skipped).await.unwrap_or(0);
    let lag_before = scrape_lag(http, &metrics_url).await;
    let timelines_held = gauge(http, &metrics_url, "starling_timelines_materialised").await;
    // The follower's timeline is materialised before the first post.
    http.get(format!("{base}/api/v1/feed?limit=20"))
        .bearer_auth(follower)
        .send()
        .await?
        .error_for_status()?;
    let mut visible = new_histogram();
    for index in 0..CELEBRITY_POSTS {
        let started = Instant::now();
        let post: serde_json::Value = http
            .post(format!("{base}/api/v1/posts"))
            .bearer_auth(token)
            .json(&json!({"text": format!("a post by the most-followed account, {index}")}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let post_id = post["id"].clone();
        loop {
            let feed: serde_json::Value = http
                .get(format!("{base}/api/v1/feed?limit=20"))
                .bearer_auth(follower)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let shown = feed["data"]
                .as_array()
                .is_some_and(|posts| posts.iter().any(|shown| shown["id"] == post_id));
            if shown {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "a post of {id} did not reach a follower's feed within a minute"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        visible.record(started.elapsed().as_micros() as u64)?;
    }
    // The fan-out of the last post may still be writing the other timelines.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let skipped_after = gauge(http, &metrics_url, skipped).await.unwrap_or(0);
    let lag_after = scrape_lag(http, &metrics_url).await;
    Ok(Visibility {
        merged_at_read: skipped_after > skipped_before,
        visible: LatencySummary::of(&visible),
        fanout_lag: match (lag_before, lag_after) {
            (Some(before), Some(after)) => lag_between(&before, &after),
            _ => None,
        },
        timelines_held,
    })
}

/// `rate` requests a second for `seconds` (open loop): feed reads, and one
/// post in `post_every` (none when 0).
async fn open_loop(
    server: &Spawned,
    tokens: &Arc<Vec<String>>,
    post_every: u32,
    rate: f64,
    seconds: u64,
) -> RunReport {
    drive(
        &server.address,
        reads_and_posts(tokens.clone(), post_every),
        Pacing::Open {
            rate,
            max_in_flight: 256,
        },
        Limits {
            duration: Duration::from_secs(seconds),
            max_requests: None,
        },
    )
    .await
}

/// Feed reads by the readers at random, and one post in `post_every`
/// requests (none when 0).
fn reads_and_posts(tokens: Arc<Vec<String>>, post_every: u32) -> RequestSource {
    Arc::new(move |rng| {
        let token = Some(tokens[rng.gen_range(0..tokens.len())].clone());
        if post_every > 0 && rng.gen_range(0..post_every) == 0 {
            Request {
                op: "post",
                method: Method::POST,
                path: "/api/v1/posts".to_owned(),
                token,
                body: Some(json!({"text": format!("scale post {}", rng.r#gen::<u64>())})),
            }
        } else {
            Request {
                op: "feed",
                method: Method::GET,
                path: "/api/v1/feed?limit=20".to_owned(),
                token,
                body: None,
            }
        }
    })
}

/// Each reader's first feed read, `parallel` at a time: their latencies.
async fn first_reads(
    http: &reqwest::Client,
    base: &str,
    tokens: &[String],
    parallel: usize,
) -> anyhow::Result<LatencySummary> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tokens: Arc<Vec<String>> = Arc::new(tokens.to_vec());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..parallel.max(1) {
        let (http, base, tokens, next) =
            (http.clone(), base.to_owned(), tokens.clone(), next.clone());
        tasks.spawn(async move {
            let mut latencies = new_histogram();
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(token) = tokens.get(index) else {
                    return anyhow::Ok(latencies);
                };
                let started = Instant::now();
                let response = http
                    .get(format!("{base}/api/v1/feed?limit=20"))
                    .bearer_auth(token)
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "a first feed read failed: {}",
                    response.status()
                );
                response.bytes().await?;
                latencies.record(started.elapsed().as_micros() as u64)?;
            }
        });
    }
    let mut all = new_histogram();
    while let Some(done) = tasks.join_next().await {
        all.add(done??)?;
    }
    Ok(LatencySummary::of(&all))
}

/// A gauge's value from the server's `/metrics`, `None` if absent.
async fn gauge(http: &reqwest::Client, url: &str, name: &str) -> Option<u64> {
    let text = http.get(url).send().await.ok()?.text().await.ok()?;
    text.lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with([' ', '{']))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse::<f64>().ok())
        .map(|value| value as u64)
}

/// The first second from which every second's p99 stayed under the mark.
fn recovered_second(report: &RunReport) -> Option<u64> {
    let seconds = &report.seconds;
    (0..seconds.len())
        .find(|&from| {
            seconds[from..]
                .iter()
                .all(|second| second.requests == 0 || second.p99_ms < RECOVERED_P99_MS)
        })
        .map(|from| seconds[from].second)
}

fn database_bytes(data_dir: &Path) -> u64 {
    ["starling.db", "starling.db-wal"]
        .iter()
        .filter_map(|name| std::fs::metadata(data_dir.join(name)).ok())
        .map(|metadata| metadata.len())
        .sum()
}

/// The server's resident memory (`VmRSS`), 0 where /proc is not there.
fn resident_bytes(server: &Spawned) -> u64 {
    let Some(pid) = server.child.id() else {
        return 0;
    };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Entries the readers' stored timelines hold once warmed: their own and
/// their followees' posts, up to the cap each.
async fn timeline_entries(data_dir: &Path, readers: &[i64]) -> anyhow::Result<u64> {
    let pool = crate::server::read_only_database(data_dir).await?;
    let mut total = 0u64;
    for reader in readers {
        let held: i64 = sqlx::query_scalar(
            // By the partial index on (author_id, id): no scan of the table.
            "SELECT count(*) FROM (SELECT 1 FROM posts WHERE deleted_at IS NULL AND author_id IN \
               (SELECT followee_id FROM follows WHERE follower_id = ?1 UNION ALL SELECT ?1) LIMIT ?2)",
        )
        .bind(reader)
        .bind(TIMELINE_CAP)
        .fetch_one(&pool)
        .await?;
        total += held as u64;
    }
    pool.close().await;
    Ok(total)
}

fn print_size(size: &SizeResult) {
    let mib = |bytes: u64| bytes as f64 / 1_048_576.0;
    println!(
        "  {} accounts ({} follows, {} posts):",
        size.accounts, size.follows, size.posts
    );
    println!(
        "    seed {:.1} s; database {:.0} MiB",
        size.seed_s,
        mib(size.database_bytes)
    );
    println!(
        "    memory at rest {:.0} MiB ({:.0} B per account); after warming {} timelines ({} held; {} entries) {:.0} MiB ({:.0} B per entry)",
        mib(size.rss_at_rest_bytes),
        size.bytes_per_account_at_rest,
        size.readers_warmed,
        size.timelines_held
            .map_or_else(|| "?".to_owned(), |held| held.to_string()),
        size.timeline_entries,
        mib(size.rss_warm_bytes),
        size.bytes_per_timeline_entry
    );
    println!(
        "    feed cold p50 {:.2} ms p99 {:.2} ms; warm p50 {:.2} ms p99 {:.2} ms; post p99 {:.2} ms; fan-out lag p99 {}",
        size.cold_feed.p50_ms,
        size.cold_feed.p99_ms,
        size.warm_feed.p50_ms,
        size.warm_feed.p99_ms,
        size.post.p99_ms,
        size.fanout_lag
            .as_ref()
            .map_or_else(|| "n/a".to_owned(), |lag| format!("{:.3} s", lag.p99_s))
    );
    println!(
        "    after kill -9: first feed read in {:.2} s; p99 under {RECOVERED_P99_MS} ms from {}",
        size.restart_first_read_s,
        size.restart_p99_recovered_s.map_or_else(
            || "never, within the run".to_owned(),
            |s| format!("{s:.1} s")
        )
    );
    if let Some(celebrity) = &size.celebrity {
        let lag = |visibility: &Visibility| {
            visibility.fanout_lag.as_ref().map_or_else(
                || "none".to_owned(),
                |lag| format!("p50 {:.3} s p99 {:.3} s", lag.p50_s, lag.p99_s),
            )
        };
        let how = |visibility: &Visibility| {
            if visibility.merged_at_read {
                "merged at read"
            } else {
                "fanned out"
            }
        };
        println!(
            "    most-followed account ({} followers), post to a follower's feed: as configured ({}) p50 {:.2} ms p99 {:.2} ms, fan-out lag {}; fan-out forced p50 {:.2} ms p99 {:.2} ms, fan-out lag {}",
            celebrity.followers,
            how(&celebrity.configured),
            celebrity.configured.visible.p50_ms,
            celebrity.configured.visible.p99_ms,
            lag(&celebrity.configured),
            celebrity.fanned_out.visible.p50_ms,
            celebrity.fanned_out.visible.p99_ms,
            lag(&celebrity.fanned_out),
        );
    }
}

/// Each figure against the smallest size's, measured in the same run.
fn print_curves(result: &ScaleResult) {
    let Some(base) = result.sizes.first() else {
        return;
    };
    println!(
        "\nCost against size (× the {} account figure):",
        base.accounts
    );
    println!(
        "  accounts   database   memory/account   warm feed p99   cold feed p99   restart to first read"
    );
    let times = |value: f64, baseline: f64| {
        if baseline > 0.0 {
            value / baseline
        } else {
            0.0
        }
    };
    for size in &result.sizes {
        println!(
            "  {:>8}   {:>7.1}×   {:>14.2}×   {:>13.2}×   {:>13.2}×   {:>21.2}×",
            size.accounts,
            times(size.database_bytes as f64, base.database_bytes as f64),
            times(
                size.bytes_per_account_at_rest,
                base.bytes_per_account_at_rest
            ),
            times(size.warm_feed.p99_ms, base.warm_feed.p99_ms),
            times(size.cold_feed.p99_ms, base.cold_feed.p99_ms),
            times(size.restart_first_read_s, base.restart_first_read_s),
        );
    }
}
