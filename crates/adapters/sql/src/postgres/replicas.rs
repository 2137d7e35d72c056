//! Read replicas: reads that tolerate a little lag go to a streaming replica
//! while it keeps up; everything else, and every read when no replica is
//! fit, goes to the primary.
//!
//! A monitor measures each replica's replay lag twice a second; a replica
//! further behind than the allowed lag, or one that fails a query or takes
//! longer than a second to answer, serves nothing until it measures healthy
//! again. Replica reads also pass a guard (timeout, bulkhead, breaker). Reads that must see the
//! reader's own writes (their account, their posts being created) stay on
//! the primary, and a replica read that misses rows asks the primary for
//! them, so a row just written is never reported missing.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sqlx::postgres::PgPool;
use starling_app::resilience::{Guard, GuardError, GuardSettings};
use starling_domain::UserId;

/// How often each replica's lag is measured.
const MONITOR_EVERY: Duration = Duration::from_millis(500);

/// Replay lag in seconds: 0 when everything received is replayed, `NULL`
/// when the server is not a standby at all.
const LAG: &str = "SELECT CASE \
       WHEN NOT pg_is_in_recovery() THEN NULL \
       WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
       ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END::float8";

pub(crate) struct Replica {
    pub(crate) name: String,
    pub(crate) pool: PgPool,
    healthy: AtomicBool,
}

pub(crate) struct Replicas {
    members: Vec<Replica>,
    next: AtomicUsize,
    max_lag: Duration,
    /// Callers who changed something lately, and when.
    recent_writers: quick_cache::sync::Cache<UserId, Instant>,
    served: std::sync::atomic::AtomicU64,
    /// Replica reads pass a client-side timeout (a frozen replica cannot
    /// enforce its own statement timeout), a bulkhead and a breaker; any
    /// refusal sends the read to the primary.
    guard: Guard,
}

/// A replica read taking longer is abandoned for the primary.
const REPLICA_READ_TIMEOUT: Duration = Duration::from_secs(1);

impl Replicas {
    pub(crate) fn new(members: Vec<(String, PgPool)>, max_lag: Duration) -> Arc<Self> {
        let replicas = Arc::new(Self {
            members: members
                .into_iter()
                .map(|(name, pool)| Replica {
                    name,
                    pool,
                    // Unproven until measured.
                    healthy: AtomicBool::new(false),
                })
                .collect(),
            next: AtomicUsize::new(0),
            max_lag,
            recent_writers: quick_cache::sync::Cache::new(100_000),
            served: std::sync::atomic::AtomicU64::new(0),
            guard: Guard::new(
                "replica",
                &GuardSettings {
                    timeout: REPLICA_READ_TIMEOUT,
                    ..GuardSettings::default()
                },
            ),
        });
        if !replicas.members.is_empty() {
            tokio::spawn(monitor(Arc::downgrade(&replicas)));
        }
        replicas
    }

    /// Notes that `actor` is changing something.
    pub(crate) fn wrote(&self, actor: UserId) {
        if !self.members.is_empty() {
            self.recent_writers.insert(actor, Instant::now());
        }
    }

    /// How long after a write its author's reads stay on the primary: longer
    /// than any replica in use can lag (the allowed lag, plus the time until
    /// the monitor notices it was exceeded), with a margin.
    fn read_your_writes_window(&self) -> Duration {
        self.max_lag + MONITOR_EVERY * 2 + Duration::from_millis(500)
    }

    /// Reads served by replicas so far.
    pub(crate) fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// A healthy replica, taking turns; `None` when there is none or the
    /// reader wrote lately.
    pub(crate) fn pick(&self, reader: Option<UserId>) -> Option<&Replica> {
        if self.members.is_empty() {
            return None;
        }
        if let Some(reader) = reader
            && let Some(wrote) = self.recent_writers.get(&reader)
            && wrote.elapsed() < self.read_your_writes_window()
        {
            return None;
        }
        let count = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| &self.members[(start + offset) % count])
            .find(|replica| replica.healthy.load(Ordering::Relaxed))
    }

    /// Runs `query` on a healthy replica, or on `primary` when there is
    /// none or the replica fails (which marks it unhealthy until the monitor
    /// sees it fit again).
    pub(crate) async fn read<T, F, Fut>(
        &self,
        reader: Option<UserId>,
        primary: &PgPool,
        query: F,
    ) -> Result<T, sqlx::Error>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        if let Some(replica) = self.pick(reader) {
            match self.guard.call(query(replica.pool.clone())).await {
                Ok(value) => {
                    self.served.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(starling_app::metric::DB_READS_TOTAL, "pool" => "replica")
                        .increment(1);
                    return Ok(value);
                }
                Err(error @ (GuardError::Failed(_) | GuardError::TimedOut(..))) => {
                    replica.healthy.store(false, Ordering::Relaxed);
                    tracing::warn!(replica = %replica.name, error = %error, "replica read failed; using the primary");
                }
                // The breaker is open or the bulkhead full: the primary.
                Err(GuardError::Open(_) | GuardError::Full(_)) => {}
            }
        }
        metrics::counter!(starling_app::metric::DB_READS_TOTAL, "pool" => "primary").increment(1);
        query(primary.clone()).await
    }

    pub(crate) fn members(&self) -> &[Replica] {
        &self.members
    }

    pub(crate) async fn close(&self) {
        for replica in &self.members {
            replica.pool.close().await;
        }
    }
}

/// Measures every replica until the store is gone.
async fn monitor(replicas: Weak<Replicas>) {
    loop {
        let Some(replicas) = replicas.upgrade() else {
            return;
        };
        for replica in &replicas.members {
            let lag = tokio::time::timeout(
                MONITOR_EVERY,
                sqlx::query_scalar::<_, Option<f64>>(LAG).fetch_one(&replica.pool),
            )
            .await;
            let healthy = match lag {
                Ok(Ok(lag)) => {
                    let lag = lag.unwrap_or(0.0);
                    metrics::gauge!(starling_app::metric::DB_REPLICA_LAG_SECONDS, "replica" => replica.name.clone())
                        .set(lag);
                    lag <= replicas.max_lag.as_secs_f64()
                }
                Ok(Err(_)) | Err(_) => false,
            };
            let was = replica.healthy.swap(healthy, Ordering::Relaxed);
            if was != healthy {
                tracing::info!(replica = %replica.name, healthy, "replica health changed");
            }
            metrics::gauge!(starling_app::metric::DB_REPLICA_HEALTHY, "replica" => replica.name.clone())
                .set(if healthy { 1.0 } else { 0.0 });
        }
        drop(replicas);
        tokio::time::sleep(MONITOR_EVERY).await;
    }
}
