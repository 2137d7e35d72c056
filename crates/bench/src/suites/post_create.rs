//! Benchmark 2: accepted, durable post creations per second (201 = the post,
//! its counters and its outbox event are committed), against the raw rate of
//! single-row INSERT transactions into the same `posts` table with the same
//! durability settings (WAL, synchronous = NORMAL, one writer connection).

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
    pub starling: RunReport,
    pub posts_stored: i64,
    /// One row per transaction, from as many tasks as Starling had connections.
    pub raw_inserts_per_s: f64,
    /// As many rows per transaction as Starling had connections: the ceiling
    /// for group commit.
    pub raw_batched_inserts_per_s: f64,
    pub ratio: f64,
}

pub async fn run(args: &PostCreateArgs) -> anyhow::Result<PostCreateResult> {
    let data = crate::server::data_dir()?;
    let starling = start_starling(data.path(), &[]).await?;
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
    let duration = Duration::from_secs(args.suite.duration);
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
        "{accepted} posts were acknowledged but {posts_stored} are stored"
    );

    let raw = raw_insert_rate(args.connections, duration).await?;
    let raw_batched = raw_batched_insert_rate(args.connections, duration).await?;
    let accepted_rate = accepted as f64 / report.duration_s;
    let result = PostCreateResult {
        machine: Machine::this(),
        posts_stored,
        raw_inserts_per_s: raw,
        raw_batched_inserts_per_s: raw_batched,
        ratio: ratio(accepted_rate, raw),
        starling: report,
    };
    result
        .starling
        .print("Starling POST /api/v1/posts, closed loop");
    println!("\nPost creation ({}):", result.machine.describe());
    println!(
        "  Starling: {:.0} accepted durable posts/s ({} stored, all acknowledged ones present)",
        accepted_rate, result.posts_stored
    );
    println!("  raw SQLite single-row INSERT transactions, same settings: {raw:.0}/s");
    println!(
        "  raw SQLite {}-row INSERT transactions (the group-commit ceiling): {raw_batched:.0}/s",
        args.connections
    );
    println!(
        "  ratio: {:.2} of single-row inserts, {:.2} of batched inserts",
        result.ratio,
        ratio(accepted_rate, raw_batched)
    );
    write_json(&args.suite.results.join("post-create.json"), &result)?;
    Capacity::record(&args.suite.results.join("capacity.json"), |capacity| {
        capacity.posts_per_s = Some(accepted_rate);
    })?;
    Ok(result)
}

async fn count_posts(data_dir: &std::path::Path) -> anyhow::Result<i64> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::from_str("sqlite://")?
                .filename(data_dir.join("starling.db"))
                .read_only(true),
        )
        .await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM posts")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    Ok(count)
}

/// A writer connection to a fresh database with Starling's schema, indexes
/// and pragmas, holding one author.
async fn raw_database() -> anyhow::Result<(tempfile::TempDir, sqlx::SqlitePool)> {
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
                .synchronous(SqliteSynchronous::Normal)
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
    let (_dir, pool) = raw_database().await?;
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
async fn raw_insert_rate(writers: usize, duration: Duration) -> anyhow::Result<f64> {
    let (_dir, pool) = raw_database().await?;
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
