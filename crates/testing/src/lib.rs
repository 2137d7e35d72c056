//! Test support shared by the adapters' and the binary's tests: finding the
//! services a test needs, and giving each test its own isolated piece of them
//! (a database, a key prefix, a stream name), and servers of its own to
//! break on purpose (fault injection).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod browser;
mod clusters;
mod fault_proxy;
mod postgres;
mod processes;
pub mod skips;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use browser::{Browser, RenderedPage};
pub use clusters::{OwnNatsCluster, OwnPostgresHa, OwnRedisCluster};
pub use fault_proxy::FaultProxy;
pub use postgres::{OwnReplica, TestDatabase, test_database};
pub use processes::{OwnServer, S3Server, program, spare_port, wait_for_port};

/// The URL in `variable`, or `None` with the reason printed, so the test
/// skips (and the run's end counts it, see [`skips`]). With
/// `STARLING_REQUIRE_SERVICES=1` (as in CI) a missing service fails the
/// test instead.
pub fn service_url(variable: &str, service: &str) -> Option<String> {
    let url = configured(variable, service);
    if url.is_none() {
        eprintln!("skipped: set {variable} to run the {service} tests");
        skips::record(variable, service);
    }
    url
}

/// The URL in `variable` for a test that goes on without the service
/// (in a smaller setting, asserting only what that setting shows): `None`
/// is printed, not counted as a skip; with `STARLING_REQUIRE_SERVICES=1` a
/// missing service fails.
pub fn optional_service_url(variable: &str, service: &str) -> Option<String> {
    let url = configured(variable, service);
    if url.is_none() {
        eprintln!("{variable} is not set: this test runs without {service}");
    }
    url
}

fn configured(variable: &str, service: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if services_required() {
                panic!("{variable} ({service}) is not set and STARLING_REQUIRE_SERVICES=1");
            }
            None
        }
    }
}

/// Whether a missing service fails a test rather than skipping it.
pub(crate) fn services_required() -> bool {
    std::env::var("STARLING_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// `STARLING_TEST_REDIS_URL`, or `None` (skip) as [`service_url`] decides.
pub fn redis_url() -> Option<String> {
    service_url("STARLING_TEST_REDIS_URL", "Redis")
}

/// `STARLING_TEST_NATS_URL`, or `None` (skip) as [`service_url`] decides.
pub fn nats_url() -> Option<String> {
    service_url("STARLING_TEST_NATS_URL", "NATS")
}

/// A name no other test (in this process or another) uses: `prefix`, the
/// time, the process id and a counter; letters, digits and underscores only.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!(
        "{prefix}_{nanos:x}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `work` on a runtime of its own, on a thread of its own: for clean-up
/// in `Drop`, which may run inside or outside a test's runtime (and after
/// that runtime's connections are gone).
pub(crate) fn run_detached<F>(work: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let _ = std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            runtime.block_on(work);
        }
    })
    .join();
}

/// A Redis key prefix of a test's own; its keys are deleted when dropped.
pub struct RedisPrefix {
    /// The single Redis, or the cluster's seed nodes (see `nodes`).
    pub url: String,
    pub prefix: String,
    /// Every node holding keys: the one Redis, or each cluster master.
    pub nodes: Vec<String>,
}

impl RedisPrefix {
    /// A fresh prefix on `STARLING_TEST_REDIS_URL`, or `None` (skip).
    pub fn new() -> Option<Self> {
        let url = redis_url()?;
        Some(Self {
            nodes: vec![url.clone()],
            url,
            prefix: format!("{}:", unique_name("starling_test")),
        })
    }

    /// A fresh prefix on the Redis Cluster whose masters
    /// `STARLING_TEST_REDIS_CLUSTER_URLS` lists (comma-separated; started by
    /// `.ci/start-redis-cluster`), or `None` (skip).
    pub fn on_cluster() -> Option<Self> {
        let urls = service_url("STARLING_TEST_REDIS_CLUSTER_URLS", "Redis Cluster")?;
        Some(Self {
            nodes: urls.split(',').map(str::to_owned).collect(),
            url: urls,
            prefix: format!("{}:", unique_name("starling_test")),
        })
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let (nodes, pattern) = (self.nodes.clone(), format!("{}*", self.prefix));
        run_detached(async move {
            for node in nodes {
                let Ok(client) = redis::Client::open(node) else {
                    continue;
                };
                let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
                    continue;
                };
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(&pattern)
                    .query_async(&mut connection)
                    .await
                    .unwrap_or_default();
                // One key per command: a cluster node refuses keys of
                // different slots in one command.
                for key in keys {
                    let _: redis::RedisResult<()> = redis::cmd("UNLINK")
                        .arg(&key)
                        .query_async(&mut connection)
                        .await;
                }
            }
        });
    }
}

/// JetStream stream and subject names of a test's own; the streams
/// (`<stream>` and `<stream>_DEAD`) are deleted when dropped.
pub struct NatsStream {
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
}

impl NatsStream {
    /// Fresh names on `STARLING_TEST_NATS_URL`, or `None` (skip).
    pub fn new() -> Option<Self> {
        let name = unique_name("starling_test");
        Some(Self {
            url: nats_url()?,
            stream: name.to_uppercase(),
            subject_prefix: name,
        })
    }
}

impl Drop for NatsStream {
    fn drop(&mut self) {
        let (url, stream) = (self.url.clone(), self.stream.clone());
        run_detached(async move {
            if let Ok(client) = async_nats::connect(url).await {
                let context = async_nats::jetstream::new(client);
                // The stream and its companions (`<stream>_DEAD`, `_LIVE`,
                // `_LEASES`: starling_nats::streams_of, which this crate
                // cannot name: it is one of the crates it tests).
                let companion = format!("{stream}_");
                let names: Vec<String> =
                    futures::StreamExt::collect::<Vec<_>>(context.stream_names())
                        .await
                        .into_iter()
                        .filter_map(Result::ok)
                        .filter(|name| *name == stream || name.starts_with(&companion))
                        .collect();
                for name in names {
                    let _ = context.delete_stream(name).await;
                }
            }
        });
    }
}
