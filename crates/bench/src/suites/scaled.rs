//! Benchmark 5: scaled-out mode. The binary in roles (two API instances, a
//! relay, a fan-out worker) on PostgreSQL, Redis and NATS JetStream, behind
//! nginx with the shipped configuration. Measured in one run: home-timeline
//! reads and post creation through nginx to one API instance, then to two.
//! On one machine the instances share its cores with every engine, so the
//! second instance shows what the extra hop and coordination cost, not what
//! a second machine would add.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use rand::Rng;
use reqwest::Method;
use serde::Serialize;
use serde_json::json;
use sqlx::Connection;

use super::SuiteArgs;
use crate::load::{Limits, Pacing, Request, RequestSource, client, drive};
use crate::machine::Machine;
use crate::manifest::{Manifest, SeededUser};
use crate::nginx::Nginx;
use crate::report::{RunReport, write_json};
use crate::server::{Spawned, start_starling};

#[derive(Debug, Clone, clap::Args)]
pub struct ScaledArgs {
    #[command(flatten)]
    pub suite: SuiteArgs,
    /// A PostgreSQL database to create the benchmark's own database from.
    #[arg(
        long,
        env = "STARLING_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    #[arg(
        long,
        env = "STARLING_BENCH_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    #[arg(
        long,
        env = "STARLING_BENCH_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// The nginx binary.
    #[arg(long, env = "STARLING_BENCH_NGINX", default_value = "/usr/sbin/nginx")]
    pub nginx: String,
    /// Accounts seeded.
    #[arg(long, default_value_t = 1_000)]
    pub users: usize,
    /// Accounts each account follows.
    #[arg(long, default_value_t = 20)]
    pub follows: usize,
    #[arg(long, default_value_t = 20_000)]
    pub posts: usize,
    /// Connections of each closed-loop measurement.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Posts written while the fan-out worker is stopped, then fanned out
    /// by a fresh one: its sustained throughput.
    #[arg(long, default_value_t = 20_000)]
    pub burst_posts: usize,
    /// Posts per second, open loop, for the fan-out lag at a steady rate.
    #[arg(long, default_value_t = 1_000.0)]
    pub steady_rate: f64,
    /// The mixed workload's first rate (requests/s, through nginx to both
    /// API instances); each next is `--mixed-step` times the last.
    #[arg(long, default_value_t = 1_000.0)]
    pub mixed_start_rate: f64,
    #[arg(long, default_value_t = 1.4)]
    pub mixed_step: f64,
    /// Never try more than this (requests/s).
    #[arg(long, default_value_t = 50_000.0)]
    pub mixed_max_rate: f64,
}

#[derive(Debug, Serialize)]
pub struct ScaledResult {
    pub machine: Machine,
    pub users: usize,
    pub posts: usize,
    pub feed_one_instance: RunReport,
    pub feed_two_instances: RunReport,
    pub post_one_instance: RunReport,
    pub post_two_instances: RunReport,
    /// One instance writing each post in a transaction of its own
    /// (`postgres.post_batch = 1`): the baseline of group commit.
    pub post_one_instance_unbatched: RunReport,
    /// One instance, group commit, with the fan-out worker stopped (the
    /// burst's posts): the write path alone, as when the workers run on
    /// other machines.
    pub post_write_path: RunReport,
    /// A backlog of posts fanned out by a fresh worker process.
    pub fanout_burst: FanoutBurst,
    /// The same timeline inserts sent straight to Redis from this process
    /// (the worker's Redis work alone, no log, SQL or live updates).
    pub redis_inserts_alone: RedisInserts,
    /// Posts at a steady rate through nginx, with the fan-out lag.
    pub steady: RunReport,
    /// Events the fan-out worker was delivered again during the steady run.
    pub steady_redelivered: u64,
    /// The mixed workload (`starling-bench mixed`'s ramp) through nginx to both API
    /// instances, fan-out lag from the worker: the highest rate that met
    /// the objective, and every step.
    pub mixed_best_rate_per_s: Option<f64>,
    pub mixed_steps: Vec<RunReport>,
    /// The same through nginx to one API instance, the baseline.
    pub mixed_one_instance_best_rate_per_s: Option<f64>,
    pub mixed_one_instance_steps: Vec<RunReport>,
}

#[derive(Debug, Serialize)]
pub struct FanoutBurst {
    pub posts: u64,
    pub timeline_inserts: u64,
    pub seconds: f64,
    pub posts_per_s: f64,
    pub inserts_per_s: f64,
    /// Events the worker took from the log at once, on average.
    pub events_per_batch: f64,
    /// Events delivered again (each waited out the acknowledgement wait).
    pub redelivered: u64,
    /// Pulls the broker left unended, waited out to their expiry and grace
    /// (`starling_event_pulls_unfinished_total`, every consumer of the
    /// fresh worker).
    pub pulls_unfinished: u64,
}

#[derive(Debug, Serialize)]
pub struct RedisInserts {
    pub inserts: u64,
    pub seconds: f64,
    pub inserts_per_s: f64,
}

/// Names of the benchmark's own database, key prefix and streams.
struct Isolation {
    database: String,
    admin_url: String,
    database_url: String,
    redis_url: String,
    prefix: String,
    nats_url: String,
    stream: String,
}

impl Isolation {
    async fn create(args: &ScaledArgs) -> anyhow::Result<Self> {
        let unique = format!("starling_bench_{}", std::process::id());
        let mut admin = sqlx::postgres::PgConnection::connect(&args.database_url)
            .await
            .context("connecting to --database-url")?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {unique} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {unique}")))
            .execute(&mut admin)
            .await?;
        let (server, _) = args
            .database_url
            .rsplit_once('/')
            .context("--database-url must name a database")?;
        Ok(Self {
            database_url: format!("{server}/{unique}"),
            database: unique.clone(),
            admin_url: args.database_url.clone(),
            redis_url: args.redis_url.clone(),
            prefix: format!("{unique}:"),
            nats_url: args.nats_url.clone(),
            stream: unique.to_uppercase(),
        })
    }

    fn env(&self, node: u16, key_file: &str) -> Vec<(&'static str, String)> {
        vec![
            ("STARLING_DATABASE_URL", self.database_url.clone()),
            ("STARLING_REDIS_URL", self.redis_url.clone()),
            ("STARLING_REDIS__KEY_PREFIX", self.prefix.clone()),
            ("STARLING_NATS_URL", self.nats_url.clone()),
            ("STARLING_NATS__STREAM", self.stream.clone()),
            ("STARLING_NATS__SUBJECT_PREFIX", self.stream.to_lowercase()),
            ("STARLING_AUTH__SIGNING_KEY_FILE", key_file.to_owned()),
            ("STARLING_NODE_ID", node.to_string()),
            // Seeding registers many accounts: cheap hashes.
            (
                "STARLING_AUTH__PASSWORD_HASHING__MEMORY_KIB",
                "1024".to_owned(),
            ),
            (
                "STARLING_AUTH__PASSWORD_HASHING__ITERATIONS",
                "1".to_owned(),
            ),
        ]
    }

    async fn remove(self) {
        if let Ok(mut admin) = sqlx::postgres::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            )))
            .execute(&mut admin)
            .await;
        }
        if let Ok(client) = redis::Client::open(self.redis_url.as_str())
            && let Ok(mut connection) = client.get_multiplexed_async_connection().await
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.prefix))
                .query_async(&mut connection)
                .await
                .unwrap_or_default();
            for chunk in keys.chunks(1000) {
                let _: redis::RedisResult<()> = redis::cmd("DEL")
                    .arg(chunk)
                    .query_async(&mut connection)
                    .await;
            }
        }
        if let Ok(client) = async_nats::connect(self.nats_url.as_str()).await {
            let context = async_nats::jetstream::new(client);
            for stream in starling_nats::streams_of(&self.stream) {
                let _ = context.delete_stream(stream).await;
            }
        }
    }
}

async fn start_role(
    isolation: &Isolation,
    role: &str,
    node: u16,
    key_file: &str,
    extra: &[(&'static str, String)],
) -> anyhow::Result<(Spawned, tempfile::TempDir)> {
    let dir = crate::server::data_dir()?;
    let mut env = isolation.env(node, key_file);
    env.push(("STARLING_ROLES", format!("[\"{role}\"]")));
    env.extend_from_slice(extra);
    Ok((start_starling(dir.path(), &env).await?, dir))
}

/// Registers, follows and posts through `base`; answers the tokens.
async fn seed(
    http: &reqwest::Client,
    base: &str,
    args: &ScaledArgs,
) -> anyhow::Result<Vec<(String, String)>> {
    let users: Vec<(String, String)> = futures::stream::iter(0..args.users)
        .map(|index| async move {
            let session: serde_json::Value = http
                .post(format!("{base}/api/v1/auth/register"))
                .json(&json!({"handle": format!("user{index}"), "email": format!("user{index}@bench.invalid"), "password": "bench-password"}))
                .send()
                .await?
                .json()
                .await?;
            let id = session["user"]["id"].as_str().unwrap_or_default().to_owned();
            let token = session["access_token"].as_str().unwrap_or_default().to_owned();
            anyhow::ensure!(!token.is_empty() && !id.is_empty(), "registration failed: {session}");
            Ok((id, token))
        })
        .buffer_unordered(16)
        .collect::<Vec<anyhow::Result<_>>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let mut follows = Vec::new();
    {
        let mut rng = rand::thread_rng();
        for (index, _) in users.iter().enumerate() {
            for _ in 0..args.follows.min(args.users.saturating_sub(1)) {
                let mut other = rng.gen_range(0..users.len());
                if other == index {
                    other = (other + 1) % users.len();
                }
                follows.push((index, other));
            }
        }
    }
    let failures = count_failures(
        follows
            .into_iter()
            .map(|(follower, followee)| {
                http.post(format!("{base}/api/v1/users/{}/follow", users[followee].0))
                    .bearer_auth(&users[follower].1)
            })
            .collect(),
    )
    .await;
    anyhow::ensure!(failures == 0, "{failures} follows failed");
    // Timelines exist before the posts, so the posts arrive by fan-out.
    for (_, token) in users.iter() {
        http.get(format!("{base}/api/v1/feed"))
            .bearer_auth(token)
            .send()
            .await?;
    }
    let authors: Vec<usize> = {
        let mut rng = rand::thread_rng();
        (0..args.posts)
            .map(|_| rng.gen_range(0..users.len()))
            .collect()
    };
    let failures = count_failures(
        authors
            .into_iter()
            .enumerate()
            .map(|(index, author)| {
                http.post(format!("{base}/api/v1/posts"))
                    .bearer_auth(&users[author].1)
                    .json(&json!({"text": format!("seeded post {index}")}))
            })
            .collect(),
    )
    .await;
    anyhow::ensure!(failures == 0, "{failures} posts failed");
    Ok(users)
}

/// What `starling-bench run` needs to act as the seeded accounts: their ids and
/// tokens, and posts to like (the first accounts' latest); the counts are
/// the caller's to fill.
async fn manifest_of(
    http: &reqwest::Client,
    base: &str,
    users: &[(String, String)],
) -> anyhow::Result<Manifest> {
    let mut sample_posts = Vec::new();
    for (id, token) in users.iter().take(50) {
        let page: serde_json::Value = http
            .get(format!("{base}/api/v1/users/{id}/posts?limit=20"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        sample_posts.extend(
            page["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|post| post["id"].as_str().map(str::to_owned)),
        );
    }
    anyhow::ensure!(!sample_posts.is_empty(), "no seeded post to like");
    Ok(Manifest {
        users: users
            .iter()
            .enumerate()
            .map(|(index, (id, token))| SeededUser {
                id: id.clone(),
                handle: format!("user{index}"),
                token: token.clone(),
            })
            .collect(),
        all_user_ids: users.iter().map(|(id, _)| id.clone()).collect(),
        sample_posts,
        most_followed: Vec::new(),
        follows: 0,
        posts: 0,
    })
}

/// Sends every request, 32 at a time; answers how many did not succeed.
async fn count_failures(requests: Vec<reqwest::RequestBuilder>) -> usize {
    futures::stream::iter(requests)
        .map(|request| async move {
            request
                .send()
                .await
                .map(|response| response.status().is_success())
                .unwrap_or(false)
        })
        .buffer_unordered(32)
        .filter(|ok| futures::future::ready(!ok))
        .count()
        .await
}

/// Waits until the relay and the fan-out worker have no events left.
async fn wait_drained(
    http: &reqwest::Client,
    relay: &Spawned,
    fanout: &Spawned,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last_report = Instant::now();
    loop {
        let relay_metrics = http
            .get(format!("{}/metrics", relay.base))
            .send()
            .await?
            .text()
            .await?;
        let fanout_metrics = http
            .get(format!("{}/metrics", fanout.base))
            .send()
            .await?
            .text()
            .await?;
        let relayed = gauge(
            &relay_metrics,
            "starling_outbox_backlog_events{consumer=\"relay\"}",
        ) == Some(0.0);
        let fanned = gauge(
            &fanout_metrics,
            "starling_stream_backlog_events{consumer=\"fanout\"}",
        ) == Some(0.0);
        if relayed && fanned {
            return Ok(());
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            println!(
                "  backlog: relay {:?}, fan-out {:?}",
                gauge(
                    &relay_metrics,
                    "starling_outbox_backlog_events{consumer=\"relay\"}"
                ),
                gauge(
                    &fanout_metrics,
                    "starling_stream_backlog_events{consumer=\"fanout\"}"
                )
            );
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the workers did not drain in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A sample's value; `None` when absent or unknown (`NaN`: its source did
/// not answer).
fn gauge(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .filter(|value| !value.is_nan())
}

async fn scrape(http: &reqwest::Client, process: &Spawned) -> anyhow::Result<String> {
    Ok(http
        .get(format!("{}/metrics", process.base))
        .send()
        .await?
        .text()
        .await?)
}

/// Waits until the relay has moved every outbox event to the stream.
async fn wait_relayed(http: &reqwest::Client, relay: &Spawned) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while gauge(
        &scrape(http, relay).await?,
        "starling_outbox_backlog_events{consumer=\"relay\"}",
    ) != Some(0.0)
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the relay did not drain in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// The sum of a counter's samples whose labels contain each of `labels`.
fn counter(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Stops the fan-out worker, writes the burst's posts with `write` (a
/// measurement of the write path alone: API, PostgreSQL and the relay, as
/// when the workers run on other machines), lets the relay move them to
/// the stream, then starts a fresh worker and times it to the last post
/// fanned out.
async fn fanout_burst(
    http: &reqwest::Client,
    relay: &Spawned,
    fanout: Spawned,
    write: impl std::future::Future<Output = RunReport>,
    restart: impl std::future::Future<Output = anyhow::Result<(Spawned, tempfile::TempDir)>>,
) -> anyhow::Result<(FanoutBurst, RunReport, (Spawned, tempfile::TempDir))> {
    fanout.stop().await?;
    let written = write.await;
    anyhow::ensure!(written.errors == 0, "{} burst posts failed", written.errors);
    let burst_posts: u64 = written.ops.iter().map(|op| op.latency.count).sum();
    wait_relayed(http, relay).await?;
    let (fanout, dir) = restart.await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let handled = |metrics: &str| {
        counter(
            metrics,
            starling_app::metric::EVENTS_HANDLED_TOTAL,
            &["consumer=\"fanout\"", "kind=\"post_created\""],
        )
    };
    let mut last_report = Instant::now();
    let metrics = loop {
        let metrics = scrape(http, &fanout).await?;
        if handled(&metrics) >= burst_posts as f64 {
            break metrics;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            println!(
                "  {:.0} s: {} of {} posts fanned out",
                started.elapsed().as_secs_f64(),
                handled(&metrics),
                burst_posts
            );
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the fan-out worker did not get through the burst in 600 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let posts = handled(&metrics) as u64;
    let timeline_inserts = counter(
        &metrics,
        starling_app::metric::FANOUT_TIMELINE_INSERTS_TOTAL,
        &[],
    ) as u64;
    let batches = |part: &str| {
        counter(
            &metrics,
            &format!("starling_event_batch_events_{part}"),
            &["consumer=\"fanout\""],
        )
    };
    let events_per_batch = batches("sum") / batches("count").max(1.0);
    let redelivered = counter(
        &metrics,
        starling_app::metric::EVENTS_REDELIVERED_TOTAL,
        &["consumer=\"fanout\""],
    ) as u64;
    let pulls_unfinished = counter(
        &metrics,
        starling_app::metric::EVENT_PULLS_UNFINISHED_TOTAL,
        &[],
    ) as u64;
    Ok((
        FanoutBurst {
            posts,
            timeline_inserts,
            seconds,
            posts_per_s: posts as f64 / seconds,
            inserts_per_s: timeline_inserts as f64 / seconds,
            events_per_batch,
            redelivered,
            pulls_unfinished,
        },
        written,
        (fanout, dir),
    ))
}

/// `inserts` timeline inserts (entries of `posts` posts into `per_post`
/// timelines of `timelines` materialised ones) straight to Redis through
/// the adapter the worker uses, 16 posts at a time as the worker's
/// partitions are: the ceiling of the worker's Redis work.
async fn redis_inserts_alone(
    isolation: &Isolation,
    posts: usize,
    per_post: usize,
    timelines: usize,
) -> anyhow::Result<RedisInserts> {
    use starling_app::ports::{TimelineEntry, TimelineStore};
    use starling_domain::{PostId, UserId};
    let connection = starling_redis::RedisConnection::connect(
        std::slice::from_ref(&isolation.redis_url),
        &starling_redis::RedisOptions::default(),
    )
    .await?;
    let store = Arc::new(starling_redis::RedisTimelines::new(
        connection,
        &format!("{}ceiling:", isolation.prefix),
        800,
        Duration::from_secs(3600),
    ));
    for user in 1..=timelines {
        let user = UserId(user as i64);
        store.begin_rebuild(user).await?;
        store.finish_rebuild(user, &[], None).await?;
    }
    let started = Instant::now();
    let inserted: u64 = futures::stream::iter(0..posts)
        .map(|index| {
            let store = store.clone();
            async move {
                let audience: Vec<UserId> = {
                    let mut rng = rand::thread_rng();
                    (0..per_post)
                        .map(|_| UserId(rng.gen_range(1..=timelines) as i64))
                        .collect()
                };
                let entry = TimelineEntry {
                    post_id: PostId(1_000_000 + index as i64),
                    author_id: UserId(1),
                };
                store
                    .insert(&audience, entry)
                    .await
                    .map(|()| per_post as u64)
            }
        })
        .buffer_unordered(16)
        .try_fold(0, |sum, inserted| async move { Ok(sum + inserted) })
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(RedisInserts {
        inserts: inserted,
        seconds,
        inserts_per_s: inserted as f64 / seconds,
    })
}

pub async fn run(args: &ScaledArgs) -> anyhow::Result<ScaledResult> {
    let isolation = Isolation::create(args).await?;
    let outcome = measure(args, &isolation).await;
    isolation.remove().await;
    outcome
}

async fn measure(args: &ScaledArgs, isolation: &Isolation) -> anyhow::Result<ScaledResult> {
    let keys = crate::server::data_dir()?;
    let key_file = keys.path().join("jwt.pem");
    let key_file = key_file
        .to_str()
        .context("a temporary path that is not UTF-8")?;
    // The first instance migrates and creates the shared signing key.
    let (api_a, _a) = start_role(isolation, "api", 1, key_file, &[]).await?;
    let (api_b, _b) = start_role(isolation, "api", 2, key_file, &[]).await?;
    let (relay, _r) = start_role(isolation, "relay", 3, key_file, &[]).await?;
    let (fanout, _f) = start_role(isolation, "fanout", 4, key_file, &[]).await?;
    let unbatched_env = [("STARLING_POSTGRES__POST_BATCH", "1".to_owned())];
    let (api_c, _c) = start_role(isolation, "api", 5, key_file, &unbatched_env).await?;
    let one = Nginx::start(&args.nginx, std::slice::from_ref(&api_a.address)).await?;
    let unbatched = Nginx::start(&args.nginx, std::slice::from_ref(&api_c.address)).await?;
    let two = Nginx::start(&args.nginx, &[api_a.address.clone(), api_b.address.clone()]).await?;
    let http = client(64)?;

    println!(
        "seeding {} accounts following {} each and {} posts through the API ...",
        args.users, args.follows, args.posts
    );
    let started = Instant::now();
    let users = seed(&http, &api_a.base, args).await?;
    wait_drained(&http, &relay, &fanout).await?;
    println!(
        "seeded and fanned out in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let tokens: Arc<Vec<String>> = Arc::new(users.iter().map(|(_, token)| token.clone()).collect());
    let feed: RequestSource = {
        let tokens = tokens.clone();
        Arc::new(move |rng| Request {
            op: "feed",
            method: Method::GET,
            path: "/api/v1/feed?limit=20".to_owned(),
            token: Some(tokens[rng.gen_range(0..tokens.len())].clone()),
            body: None,
        })
    };
    let post: RequestSource = {
        let tokens = tokens.clone();
        Arc::new(move |rng| Request {
            op: "post",
            method: Method::POST,
            path: "/api/v1/posts".to_owned(),
            token: Some(tokens[rng.gen_range(0..tokens.len())].clone()),
            body: Some(json!({"text": format!("benchmark post {}", rng.r#gen::<u64>())})),
        })
    };
    let closed = Pacing::Closed {
        connections: args.connections,
    };
    let limits = Limits {
        duration: Duration::from_secs(args.suite.duration),
        max_requests: None,
    };
    // Warm both instances' caches with a short pass each.
    let warm = Limits {
        duration: Duration::from_secs(2),
        max_requests: None,
    };
    drive(&two.address, feed.clone(), closed, warm).await;
    let feed_one_instance = drive(&one.address, feed.clone(), closed, limits).await;
    let feed_two_instances = drive(&two.address, feed, closed, limits).await;
    let post_one_instance_unbatched = drive(&unbatched.address, post.clone(), closed, limits).await;
    let post_one_instance = drive(&one.address, post.clone(), closed, limits).await;
    let post_two_instances = drive(&two.address, post.clone(), closed, limits).await;
    // The workers catch up after the measurements; how long that takes is
    // reported, not required.
    let catching_up = Instant::now();
    match wait_drained(&http, &relay, &fanout).await {
        Ok(()) => println!(
            "the relay and the fan-out worker caught up {:.1} s after the last measurement",
            catching_up.elapsed().as_secs_f64()
        ),
        Err(error) => println!("note: {error:#}"),
    }

    println!(
        "fan-out of a backlog: {} posts while the worker is stopped ...",
        args.burst_posts
    );
    let burst_limits = Limits {
        duration: Duration::from_secs(600),
        max_requests: Some(args.burst_posts as u64),
    };
    let (fanout_burst, post_write_path, (fanout, _fanout_dir)) = fanout_burst(
        &http,
        &relay,
        fanout,
        drive(&one.address, post.clone(), closed, burst_limits),
        start_role(isolation, "fanout", 4, key_file, &[]),
    )
    .await?;
    let redis_inserts_alone =
        redis_inserts_alone(isolation, args.burst_posts, args.follows, args.users).await?;
    let lag_url = format!("{}/metrics", fanout.base);
    let redelivered = |metrics: &str| {
        counter(
            metrics,
            starling_app::metric::EVENTS_REDELIVERED_TOTAL,
            &["consumer=\"fanout\""],
        ) as u64
    };
    let redelivered_before = redelivered(&scrape(&http, &fanout).await?);
    let before = crate::run::scrape_lag(&http, &lag_url).await;
    let mut steady = drive(
        &one.address,
        post,
        Pacing::Open {
            rate: args.steady_rate,
            max_in_flight: 512,
        },
        limits,
    )
    .await;
    wait_drained(&http, &relay, &fanout).await?;
    let after = crate::run::scrape_lag(&http, &lag_url).await;
    if let (Some(before), Some(after)) = (before, after) {
        steady.fanout_lag = crate::run::lag_between(&before, &after);
    }
    let steady_redelivered =
        redelivered(&scrape(&http, &fanout).await?).saturating_sub(redelivered_before);

    println!("the mixed workload through nginx to one API instance, then to both ...");
    let manifest_dir = crate::server::data_dir()?;
    let manifest = manifest_dir.path().join("bench-manifest.json");
    let mut seeded = manifest_of(&http, &api_a.base, &users).await?;
    seeded.follows = (args.users * args.follows.min(args.users.saturating_sub(1))) as u64;
    seeded.posts = args.posts as u64;
    seeded.save(&manifest)?;
    let ramp = |name| super::mixed::Ramp {
        start_rate: args.mixed_start_rate,
        step: args.mixed_step,
        max_rate: args.mixed_max_rate,
        duration: args.suite.duration,
        results: args.suite.results.clone(),
        name,
    };
    let (mixed_one_instance_best_rate_per_s, mixed_one_instance_steps) = ramp("scaled-mixed-one")
        .run(&one.base, &manifest, Some(lag_url.clone()))
        .await?;
    let (mixed_best_rate_per_s, mixed_steps) = ramp("scaled-mixed")
        .run(&two.base, &manifest, Some(lag_url.clone()))
        .await?;

    drop((one, two, unbatched));
    for process in [api_a, api_b, api_c, relay, fanout] {
        process.stop().await?;
    }

    let result = ScaledResult {
        machine: Machine::this(),
        users: args.users,
        posts: args.posts,
        feed_one_instance,
        feed_two_instances,
        post_one_instance,
        post_two_instances,
        post_one_instance_unbatched,
        post_write_path,
        fanout_burst,
        redis_inserts_alone,
        steady,
        steady_redelivered,
        mixed_best_rate_per_s,
        mixed_steps,
        mixed_one_instance_best_rate_per_s,
        mixed_one_instance_steps,
    };
    result
        .feed_one_instance
        .print("GET /api/v1/feed through nginx, one API instance");
    result
        .feed_two_instances
        .print("GET /api/v1/feed through nginx, two API instances");
    result
        .post_one_instance_unbatched
        .print("POST /api/v1/posts through nginx, one API instance, a transaction per post");
    result
        .post_one_instance
        .print("POST /api/v1/posts through nginx, one API instance");
    result
        .post_two_instances
        .print("POST /api/v1/posts through nginx, two API instances");
    result.post_write_path.print(
        "POST /api/v1/posts through nginx, one API instance, the fan-out worker stopped (the write path alone)",
    );
    println!(
        "\nScaled out, PostgreSQL + Redis + JetStream + nginx ({}):",
        result.machine.describe()
    );
    for (what, one, two) in [
        (
            "feed reads",
            &result.feed_one_instance,
            &result.feed_two_instances,
        ),
        (
            "post creations",
            &result.post_one_instance,
            &result.post_two_instances,
        ),
    ] {
        println!(
            "  {what}: one instance {:.0}/s (p99 {:.1} ms), two instances {:.0}/s (p99 {:.1} ms) -> x{:.2}",
            one.throughput_per_s,
            one.overall.p99_ms,
            two.throughput_per_s,
            two.overall.p99_ms,
            super::ratio(two.throughput_per_s, one.throughput_per_s)
        );
    }
    println!(
        "  post creations, one instance: group commit {:.0}/s (p99 {:.1} ms), a transaction per post {:.0}/s (p99 {:.1} ms) -> x{:.2}",
        result.post_one_instance.throughput_per_s,
        result.post_one_instance.overall.p99_ms,
        result.post_one_instance_unbatched.throughput_per_s,
        result.post_one_instance_unbatched.overall.p99_ms,
        super::ratio(
            result.post_one_instance.throughput_per_s,
            result.post_one_instance_unbatched.throughput_per_s
        )
    );
    println!(
        "  post creations, one instance, group commit: the write path alone (fan-out worker stopped) {:.0}/s (p99 {:.1} ms), \
         with the fan-out worker on the same machine {:.0}/s -> x{:.2}",
        result.post_write_path.throughput_per_s,
        result.post_write_path.overall.p99_ms,
        result.post_one_instance.throughput_per_s,
        super::ratio(
            result.post_write_path.throughput_per_s,
            result.post_one_instance.throughput_per_s
        )
    );
    result.steady.print(&format!(
        "POST /api/v1/posts through nginx, one API instance, open loop at {:.0}/s",
        args.steady_rate
    ));
    let burst = &result.fanout_burst;
    let alone = &result.redis_inserts_alone;
    println!(
        "  fan-out of a backlog of {} posts ({} timeline inserts, {:.0} events a batch, {} delivered again, {} pulls left unended): {:.0} posts/s, \
         {:.0} inserts/s; the same number of inserts straight to Redis from one process: {:.0} /s -> x{:.2}",
        burst.posts,
        burst.timeline_inserts,
        burst.events_per_batch,
        burst.redelivered,
        burst.pulls_unfinished,
        burst.posts_per_s,
        burst.inserts_per_s,
        alone.inserts_per_s,
        super::ratio(burst.inserts_per_s, alone.inserts_per_s)
    );
    if let Some(lag) = &result.steady.fanout_lag {
        println!(
            "  at a steady {:.0} posts/s ({:.0} achieved, p99 {:.1} ms): fan-out lag p50 {:.3} s, p99 {:.3} s; \
             {} events delivered again",
            args.steady_rate,
            result.steady.throughput_per_s,
            result.steady.overall.p99_ms,
            lag.p50_s,
            lag.p99_s,
            result.steady_redelivered
        );
    }
    println!("  mixed workload through nginx to one API instance:");
    super::mixed::print_best(
        result.mixed_one_instance_best_rate_per_s,
        args.mixed_start_rate,
    );
    println!("  mixed workload through nginx to two API instances:");
    super::mixed::print_best(result.mixed_best_rate_per_s, args.mixed_start_rate);
    write_json(&args.suite.results.join("scaled.json"), &result)?;
    super::Capacity::record(&args.suite.results.join("capacity.json"), |capacity| {
        capacity.scaled = Some(super::ScaledCapacity {
            feed_reads_per_s: result.feed_one_instance.throughput_per_s,
            posts_per_s: result.post_write_path.throughput_per_s,
            fanout_inserts_per_s: result.fanout_burst.inserts_per_s,
            mixed_requests_per_s: result.mixed_best_rate_per_s,
        });
    })?;
    Ok(result)
}
