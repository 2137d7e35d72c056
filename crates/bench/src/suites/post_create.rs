//! Benchmark 2: accepted, durable post creations per second (201 = the post,
//! its counters and its outbox event are committed), against the raw rate of
//! single-row INSERT transactions into the same `posts` table with the same
//! durability settings (WAL, one writer connection). Measured twice in one
//! run: `synchronous = NORMAL` (the default: a 201 survives a crash of the
//! process) and `synchronous = FULL` (it survives a power cut too), each
//! beside raw inserts with the same setting.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::Method;
use serde::Serialize;
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use starling_sql::{SqliteOptions, SqliteStore};

use super::{Capacity, SuiteArgs, ratio};
use crate::load::{Limits, Pacing, Request, RequestSource, client, drive};
use crate::machine::Machine;
use crate::report::{RunReport, write_json};
use crate::server::start_starling;

#[derive(Debug, Clone, clap::Args)]
pub struct PostCreateArgs {
    #[command(flatten)]
    pub suite: SuiteArgs,
    /// Concurrent writers (connections).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Accounts the posts come from.
    #[arg(long, default_value_t = 32)]
    pub authors: usize,
}

#[derive(Debug, Serialize)]
pub struct PostCreateResult {
    pub machine: Machine,
    /// `sqlite.synchronous = normal` (the default): every 201 survives a
    /// crash or `kill -9` of the process.
    pub starling: RunReport,
    pub posts_stored: i64,
    /// `sqlite.synchronous = full`: every 201 survives a power cut too.
    pub starling_power_loss: RunReport,
    pub power_loss_posts_stored: i64,
    /// One row per transaction, from as many tasks as Starling had connections.
    pub raw_inserts_per_s: f64,
    /// The same with `synchronous = FULL`.
    pub raw_power_loss_inserts_per_s: f64,
    /// As many rows per transaction as Starling had connections: the ceiling
    /// for group commit.
    pub raw_batched_inserts_per_s: f64,
    pub ratio: f64,
}

/// One Starling run: `connections` writers posting for `duration` with the
/// database's `synchronous` setting, then the server stopped and every
/// acknowledged post counted in the file.
async fn measure(
    args: &PostCreateArgs,
    synchronous: &str,
    duration: Duration,
) -> anyhow::Result<(RunReport, i64)> {
    let data = crate::server::data_dir()?;
    let starling = start_starling(
        data.path(),
        &[("STARLING_SQLITE__SYNCHRONOUS", synchronous.to_owned())],
    )
    .await?;
    let http = client(args.connections * 2)?;
    let mut tokens = Vec::new();
    for index in 0..args.authors.max(1) {
        let response = http
            .post(format!("{}/api/v1/auth/register", starling.base))
            .json(&json!({"handle": format!("writer{index}"), "email": format!("writer{index}@bench.invalid"), "password": "bench-password"}))
            .send()
            .await?;
        let session: serde_json::Value = response.json().await?;
        let token = session["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        anyhow::ensure!(!token.is_empty(), "registration failed: {session}");
        tokens.push(token);
    }
    let tokens = Arc::new(tokens);
    let source: RequestSource = Arc::new(move |rng| Request {
        op: "post",
        method: Method::POST,
        path: "/api/v1/posts".to_owned(),
        token: Some(tokens[rng.gen_range(0..tokens.len())].clone()),
        body: Some(json!({"text": format!("benchmark post {}", rng.r#gen::<u64>())})),
    });
    let report = drive(
        &starling.address,
        source,
        Pacing::Closed {
            connections: args.connections,
        },
        Limits {
            duration,
            max_requests: None,
        },
    )
    .await;
    starling.stop().await?;

    // Every 201 must be in the database after the server is gone.
    let posts_stored = count_posts(data.path()).await?;
    let accepted: u64 = report.ops.iter().map(|op| op.ok).sum();
    anyhow::ensure!(
        posts_stored as u64 >= accepted,
        "{accepted} posts were acknowledged but {posts_stored} are stored (synchronous = {synchronous})"
    );
    Ok((report, posts_stored))
}

fn accepted_rate(report: &RunReport) -> f64 {
    report.ops.iter().map(|op| op.ok).sum::<u64>() as f64 / report.duration_s
}

pub async fn run(args: &PostCreateArgs) -> anyhow::Result<PostCreateResult> {
    let duration = Duration::from_secs(args.suite.duration);
    let (report, posts_stored) = measure(args, "normal", duration).await?;
    let (power_loss, power_loss_posts_stored) = measure(args, "full", duration).await?;

    let raw = raw_insert_rate(args.connections, duration, SqliteSynchronous::Normal).await?;
    let raw_power_loss =
        raw_insert_rate(args.connections, duration, SqliteSynchronous::Full).await?;
    let raw_batched = raw_batched_insert_rate(args.connections, duration).await?;
    let rate = accepted_rate(&report);
    let power_loss_rate = accepted_rate(&power_loss);
    let result = PostCreateResult {
        machine: Machine::this(),
        posts_stored,
        power_loss_posts_stored,
        raw_inserts_per_s: raw,
        raw_power_loss_inserts_per_s: raw_power_loss,
        raw_batched_inserts_per_s: raw_batched,
        ratio: ratio(rate, raw),
        starling: report,
        starling_power_loss: power_loss,
    };
    result
        .starling
        .print("Starling POST /api/v1/posts, closed loop, sqlite.synchronous = normal");
    result
        .starling_power_loss
        .print("Starling POST /api/v1/posts, closed loop, sqlite.synchronous = full");
    println!("\nPost creation ({}):", result.machine.describe());
    println!(
        "  Starling, crash-safe (synchronous = normal): {rate:.0} accepted durable posts/s ({} stored, all acknowledged ones present)",
        result.posts_stored
    );
    println!(
        "  Starling, power-loss-safe (synchronous = full): {power_loss_rate:.0} posts/s ({} stored, all acknowledged ones present)",
        result.power_loss_posts_stored
    );
    println!("  raw SQLite single-row INSERT transactions, synchronous = normal: {raw:.0}/s");
    println!(
        "  raw SQLite single-row INSERT transactions, synchronous = full: {raw_power_loss:.0}/s"
    );
    println!(
        "  raw SQLite {}-row INSERT transactions (the group-commit ceiling): {raw_batched:.0}/s",
        args.connections
    );
    println!(
        "  ratio: {:.2} of single-row inserts, {:.2} of batched inserts; power-loss-safe: {:.2} of single-row inserts with full",
        result.ratio,
        ratio(rate, raw_batched),
        ratio(power_loss_rate, raw_power_loss)
    );
    write_json(&args.suite.results.join("post-create.json"), &result)?;
    Capacity::record(&args.suite.results.join("capacity.json"), |capacity| {
        capacity.posts_per_s = Some(rate);
    })?;
    Ok(result)
}

async fn count_posts(data_dir: &std::path::Path) -> anyhow::Result<i64> {
    let pool = crate::server::read_only_database(data_dir).await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM posts")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    Ok(count)
}

/// A writer connection to a fresh database with Starling's schema, indexes
/// and pragmas, holding one author.
async fn raw_database(
    synchronous: SqliteSynchronous,
) -> anyhow::Result<(tempfile::TempDir, sqlx::SqlitePool)> {
    let dir = crate::server::data_dir()?;
    let path = dir.path().join("raw.db");
    // Applies Starling's migrations, so the table is the real one.
    SqliteStore::open(&path, &SqliteOptions::default())
        .await?
        .close()
        .await;
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::from_str("sqlite://")?
                .filename(&path)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(synchronous)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5)),
        )
        .await?;
    sqlx::query(
        "INSERT INTO users (id, handle, handle_key, email, display_name, created_at, updated_at) \
         VALUES (1, 'raw', 'raw', 'raw@bench.invalid', 'raw', 0, 0)",
    )
    .execute(&pool)
    .await?;
    Ok((dir, pool))
}

/// `rows` rows per INSERT transaction, back to back, for `duration`.
async fn raw_batched_insert_rate(rows: usize, duration: Duration) -> anyhow::Result<f64> {
    let (_dir, pool) = raw_database(SqliteSynchronous::Normal).await?;
    let started = Instant::now();
    let mut next_id = 1i64;
    let mut inserted = 0u64;
    while started.elapsed() < duration {
        let mut insert: sqlx::QueryBuilder<sqlx::Sqlite> =
            sqlx::QueryBuilder::new("INSERT INTO posts (id, author_id, text, created_at) ");
        insert.push_values(next_id..next_id + rows as i64, |mut row, id| {
            row.push_bind(id)
                .push_bind(1i64)
                .push_bind(format!("benchmark post {id}"))
                .push_bind(id);
        });
        insert.build().execute(&pool).await?;
        next_id += rows as i64;
        inserted += rows as u64;
    }
    let rate = inserted as f64 / started.elapsed().as_secs_f64();
    pool.close().await;
    Ok(rate)
}

/// Single-row INSERT transactions into Starling's own `posts` table (schema,
/// indexes and pragmas as the server has them), from `writers` tasks
/// sharing the one writer connection, for `duration`.
async fn raw_insert_rate(
    writers: usize,
    duration: Duration,
    synchronous: SqliteSynchronous,
) -> anyhow::Result<f64> {
    let (_dir, pool) = raw_database(synchronous).await?;
    let next_id = Arc::new(AtomicI64::new(1));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers.max(1) {
        let (pool, next_id) = (pool.clone(), next_id.clone());
        tasks.spawn(async move {
            let mut inserted = 0u64;
            while Instant::now() < deadline {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let done = sqlx::query(
                    "INSERT INTO posts (id, author_id, text, created_at) VALUES (?1, 1, ?2, ?3)",
                )
                .bind(id)
                .bind(format!("benchmark post {id}"))
                .bind(id)
                .execute(&pool)
                .await;
                if done.is_ok() {
                    inserted += 1;
                }
            }
            inserted
        });
    }
    let mut inserted = 0u64;
    while let Some(done) = tasks.join_next().await {
        inserted += done.unwrap_or(0);
    }
    let rate = inserted as f64 / started.elapsed().as_secs_f64();
    pool.close().await;
    Ok(rate)
}
