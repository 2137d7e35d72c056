//! Benchmark 6: live streams held by one embedded node. Measured: the
//! server's resident memory per open stream, against the memory per idle
//! keep-alive connection in the same run (the least any held connection
//! costs), and how long a post takes to reach every stream listening.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::SuiteArgs;
use crate::machine::Machine;
use crate::report::write_json;
use crate::server::start_starling;

#[derive(Debug, Clone, clap::Args)]
pub struct StreamsArgs {
    #[command(flatten)]
    pub suite: SuiteArgs,
    /// Streams held open at once.
    #[arg(long, default_value_t = 2_000)]
    pub streams: usize,
    /// Accounts holding them (each follows the author).
    #[arg(long, default_value_t = 100)]
    pub readers: usize,
    /// Posts whose delivery to every stream is timed.
    #[arg(long, default_value_t = 20)]
    pub posts: usize,
}

#[derive(Debug, Serialize)]
pub struct StreamsResult {
    pub machine: Machine,
    pub streams: usize,
    pub rss_idle_kib: u64,
    pub kib_per_stream: f64,
    pub kib_per_idle_connection: f64,
    pub deliveries: usize,
    pub delivery_p50_ms: f64,
    pub delivery_p99_ms: f64,
    pub delivery_max_ms: f64,
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/<pid>/status")
}

/// RSS once it has settled (allocators return memory lazily).
async fn settled_rss(pid: u32) -> anyhow::Result<u64> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    rss_kib(pid)
}

async fn register(
    http: &reqwest::Client,
    base: &str,
    handle: &str,
) -> anyhow::Result<(String, String)> {
    let reply: serde_json::Value = http
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"handle": handle, "email": format!("{handle}@bench.example"), "password": "benchmark password"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok((
        reply["user"]["id"].as_str().context("id")?.to_owned(),
        reply["access_token"].as_str().context("token")?.to_owned(),
    ))
}

/// Opens a stream over a raw connection and reads until `ready`.
async fn open_stream(address: &str, token: &str) -> anyhow::Result<TcpStream> {
    let mut connection = TcpStream::connect(address).await?;
    connection
        .write_all(
            format!(
                "GET /api/v1/stream HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !seen.windows(12).any(|w| w == b"event: ready") {
        let read = connection.read(&mut buffer).await?;
        anyhow::ensure!(read > 0, "the stream closed before it was ready");
        seen.extend_from_slice(&buffer[..read]);
    }
    Ok(connection)
}

/// The least a held connection costs: the memory `count` idle keep-alive
/// connections take on a server of their own (allocators keep what they
/// once held, so one server cannot measure both fairly), in KiB each.
async fn idle_connection_kib(count: usize) -> anyhow::Result<f64> {
    let data = crate::server::data_dir()?;
    let server = start_starling(
        data.path(),
        &[("STARLING_HTTP__MAX_IN_FLIGHT", "0".to_owned())],
    )
    .await?;
    let pid = server.child.id().context("the server's pid")?;
    let before = settled_rss(pid).await?;
    let mut plain = Vec::with_capacity(count);
    for _ in 0..count {
        let mut connection = TcpStream::connect(&server.address).await?;
        connection
            .write_all(
                format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.address).as_bytes(),
            )
            .await?;
        let mut buffer = [0u8; 1024];
        let _ = connection.read(&mut buffer).await?;
        plain.push(connection);
    }
    let after = settled_rss(pid).await?;
    drop(plain);
    server.stop().await?;
    Ok(after.saturating_sub(before) as f64 / count.max(1) as f64)
}

pub async fn run(args: &StreamsArgs) -> anyhow::Result<StreamsResult> {
    let kib_per_idle_connection = idle_connection_kib(args.streams).await?;
    let data = crate::server::data_dir()?;
    let starling = start_starling(
        data.path(),
        &[
            ("STARLING_STREAM__MAX_PER_ACCOUNT", args.streams.to_string()),
            (
                "STARLING_STREAM__MAX_CONNECTIONS",
                (args.streams * 2).to_string(),
            ),
            ("STARLING_HTTP__MAX_IN_FLIGHT", "0".to_owned()),
        ],
    )
    .await?;
    let pid = starling.child.id().context("the server's pid")?;
    let http = reqwest::Client::new();
    let base = starling.base.clone();
    let (author_id, author_token) = register(&http, &base, "author").await?;
    let mut tokens = Vec::new();
    for index in 0..args.readers.max(1) {
        let (_, token) = register(&http, &base, &format!("reader{index}")).await?;
        http.post(format!("{base}/api/v1/users/{author_id}/follow"))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?;
        tokens.push(token);
    }
    // Warm the per-reader caches the streams use.
    for token in &tokens {
        drop(open_stream(&starling.address, token).await?);
    }
    let idle = settled_rss(pid).await?;

    let before_streams = idle;
    let mut streams = Vec::with_capacity(args.streams);
    for index in 0..args.streams {
        streams.push(open_stream(&starling.address, &tokens[index % tokens.len()]).await?);
    }
    let with_streams = settled_rss(pid).await?;

    // Time each post from its 201 to its arrival on every stream.
    let sent: Arc<parking_lot::Mutex<Vec<Instant>>> = Arc::default();
    let mut readers = Vec::with_capacity(streams.len());
    for mut connection in streams {
        let posts = args.posts;
        readers.push(tokio::spawn(async move {
            let mut arrivals = Vec::with_capacity(posts);
            let mut buffer = vec![0u8; 16 * 1024];
            let mut carry = Vec::new();
            while arrivals.len() < posts {
                let Ok(Ok(read)) =
                    tokio::time::timeout(Duration::from_secs(30), connection.read(&mut buffer))
                        .await
                else {
                    break;
                };
                if read == 0 {
                    break;
                }
                let now = Instant::now();
                carry.extend_from_slice(&buffer[..read]);
                let found = carry.windows(11).filter(|w| *w == b"event: post").count();
                for _ in 0..found {
                    arrivals.push(now);
                }
                // Keep a tail that may hold the start of a marker.
                let keep = carry.len().saturating_sub(10);
                carry.drain(..keep);
            }
            arrivals
        }));
    }
    for index in 0..args.posts {
        http.post(format!("{base}/api/v1/posts"))
            .bearer_auth(&author_token)
            .json(&json!({"text": format!("live update {index}")}))
            .send()
            .await?
            .error_for_status()?;
        sent.lock().push(Instant::now());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut latencies = Vec::new();
    for reader in readers {
        let arrivals = reader.await?;
        let sent = sent.lock().clone();
        for (arrival, sent) in arrivals.iter().zip(&sent) {
            latencies.push(arrival.saturating_duration_since(*sent).as_secs_f64() * 1000.0);
        }
    }
    starling.stop().await?;
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        latencies[((latencies.len() - 1) as f64 * q).round() as usize]
    };
    let per = |with: u64, without: u64| {
        (with.saturating_sub(without)) as f64 / args.streams.max(1) as f64
    };
    let result = StreamsResult {
        machine: Machine::this(),
        streams: args.streams,
        rss_idle_kib: idle,
        kib_per_stream: per(with_streams, before_streams),
        kib_per_idle_connection,
        deliveries: latencies.len(),
        delivery_p50_ms: quantile(0.5),
        delivery_p99_ms: quantile(0.99),
        delivery_max_ms: quantile(1.0),
    };
    println!(
        "\nLive streams held by one node ({}):",
        result.machine.describe()
    );
    println!(
        "  {} streams: {:.1} KiB of server memory each; idle keep-alive connection (same run): {:.1} KiB each",
        result.streams, result.kib_per_stream, result.kib_per_idle_connection
    );
    println!(
        "  a post reaching all {} streams: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} of {} deliveries)",
        result.streams,
        result.delivery_p50_ms,
        result.delivery_p99_ms,
        result.delivery_max_ms,
        result.deliveries,
        args.streams * args.posts
    );
    write_json(&args.suite.results.join("streams.json"), &result)?;
    Ok(result)
}
