//! The engines a configuration names: SQLite or PostgreSQL for the store, the
//! process or Redis for timelines, the outbox alone or with NATS JetStream
//! for events. Each is embedded when its URL is unset.

use std::sync::Arc;
use std::time::Duration;

use starling_app::Caches;
use starling_app::ports::{
    BlobStore, LiveLog, LoginFailures, RateLimiter, RateLimits, Store, TimelineStore,
};
use starling_local::{
    LocalLiveLog, LocalLoginFailures, LocalRateLimiter, LocalTimelines, MemoryCache,
};
use starling_nats::{JetStream, JetStreamOptions};
use starling_redis::{
    BroadcastCache, InvalidationBus, RedisConnection, RedisLoginFailures, RedisOptions,
    RedisRateLimiter, RedisTimelines, TieredCache,
};
use starling_sql::{PostgresOptions, PostgresStore, SqliteOptions, SqliteStore};

use crate::config::Config;

/// The SQL store in use.
#[derive(Clone)]
pub enum SqlStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl SqlStore {
    /// Opens the configured store. PostgreSQL is migrated here only when
    /// `postgres.migrate_on_start` is set; SQLite always is.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        if let Some(url) = &config.database_url {
            let options = postgres_options(config);
            let store = if config.postgres.migrate_on_start {
                PostgresStore::open(url, &options).await?
            } else {
                PostgresStore::connect(url, &options).await?
            };
            let store = store.with_replicas(&config.replica_urls(), &options)?;
            return Ok(Self::Postgres(store));
        }
        let store = SqliteStore::open(
            &config.data_dir.join("starling.db"),
            &SqliteOptions {
                synchronous: config.sqlite.synchronous,
                read_connections: config.sqlite.read_connections,
                ..SqliteOptions::default()
            },
        )
        .await?;
        Ok(Self::Sqlite(store))
    }

    /// Applies the migrations this build knows (`starling migrate`).
    pub async fn migrate(config: &Config) -> anyhow::Result<()> {
        match &config.database_url {
            Some(url) => PostgresStore::migrate(url).await,
            // Opening SQLite migrates it.
            None => {
                Self::open(config).await?.close().await;
                Ok(())
            }
        }
    }

    pub fn port(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
        }
    }

    /// Connections per pool: `(pool, open, idle)`.
    pub fn pool_usage(&self) -> Vec<(&'static str, u32, usize)> {
        match self {
            Self::Sqlite(store) => store.pool_usage().to_vec(),
            Self::Postgres(store) => store.pool_usage(),
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(store) => store.close().await,
            Self::Postgres(store) => store.close().await,
        }
    }
}

fn postgres_options(config: &Config) -> PostgresOptions {
    PostgresOptions {
        max_connections: config.postgres.max_connections,
        replica_max_lag: Duration::from_millis(config.postgres.replica_max_lag_ms),
        post_batch: config.postgres.post_batch,
        post_writers: config.postgres.post_writers,
        ..PostgresOptions::default()
    }
}

/// Lifetime of a reader's cached list of followed high-fan-out accounts.
const HIGH_FANOUT_LIST_TTL: Duration = Duration::from_secs(30);
/// Lifetime of an author's cached recent post ids (read-time merge).
const AUTHOR_RECENT_TTL: Duration = Duration::from_secs(10);

/// Redis, when `redis_url` is set.
pub struct Redis {
    connection: RedisConnection,
    /// Where the cache invalidation subscription connects (a single Redis,
    /// or one node of the cluster).
    pubsub_url: String,
}

pub async fn redis(config: &Config) -> anyhow::Result<Option<Redis>> {
    let urls = config.redis_urls();
    let Some(first) = urls.first() else {
        return Ok(None);
    };
    let connection = RedisConnection::connect(
        &urls,
        &RedisOptions {
            cluster: config.redis.cluster,
            response_timeout: Duration::from_millis(config.redis.response_timeout_ms),
            ..RedisOptions::default()
        },
    )
    .await?;
    Ok(Some(Redis {
        pubsub_url: first.clone(),
        connection,
    }))
}

/// The edge's rate limiter, when limits are on: shared through Redis when
/// configured (with the in-process one as its fallback), else in process.
/// The in-process limiter comes back too, for its periodic clean-up.
pub fn rate_limiter(config: &Config, redis: Option<&Redis>) -> Option<RateLimiting> {
    let limits = config.rate_limits.limits()?;
    let local = LocalRateLimiter::new(&limits);
    let limiter: Arc<dyn RateLimiter> = match redis {
        Some(redis) => Arc::new(RedisRateLimiter::new(
            redis.connection.clone(),
            &config.redis.key_prefix,
            limits,
            local.clone(),
        )),
        None => Arc::new(local.clone()),
    };
    Some(RateLimiting {
        limiter,
        limits,
        local,
    })
}

pub struct RateLimiting {
    pub limiter: Arc<dyn RateLimiter>,
    pub limits: RateLimits,
    pub local: LocalRateLimiter,
}

/// Failed logins per account: in Redis when configured (one back-off for
/// all instances), else in process.
pub fn login_failures(config: &Config, redis: Option<&Redis>) -> Arc<dyn LoginFailures> {
    match redis {
        Some(redis) => Arc::new(RedisLoginFailures::new(
            redis.connection.clone(),
            &config.redis.key_prefix,
        )),
        None => Arc::new(LocalLoginFailures::default()),
    }
}

/// The timeline store: Redis when configured, else process memory.
pub fn timelines(config: &Config, redis: Option<&Redis>) -> Arc<dyn TimelineStore> {
    match redis {
        Some(redis) => Arc::new(RedisTimelines::new(
            redis.connection.clone(),
            &config.redis.key_prefix,
            config.timeline.cap,
            Duration::from_secs(config.redis.timeline_idle_ttl_secs),
        )),
        None => Arc::new(LocalTimelines::new(
            config.timeline.cap,
            config.timeline.max_cached_timelines,
        )),
    }
}

/// The read-side caches. Each process has its own memory tier; with Redis,
/// posts and authors also have a shared tier there, and every cache's
/// changes reach the other processes' memory tiers.
pub async fn caches(config: &Config, redis: Option<&Redis>) -> anyhow::Result<Caches> {
    let ttl = Duration::from_secs(config.cache.ttl_secs);
    let (posts_capacity, users_capacity) =
        (config.cache.posts_capacity, config.cache.users_capacity);
    let posts = MemoryCache::new("posts", posts_capacity, ttl);
    let users = MemoryCache::new("users", users_capacity, ttl);
    // Invalidated on change, but a reload racing the change can store a
    // stale copy: short lives bound that.
    let high_fanout = MemoryCache::new(
        "high_fanout_followees",
        users_capacity,
        HIGH_FANOUT_LIST_TTL,
    );
    let author_recent = MemoryCache::new("author_recent", users_capacity, AUTHOR_RECENT_TTL);
    let likes = MemoryCache::new("likes", users_capacity, ttl);
    // Invalidated on every change; short lives bound a reload racing one.
    let hidden = MemoryCache::new("hidden", users_capacity, HIGH_FANOUT_LIST_TTL);
    let Some(redis) = redis else {
        return Ok(Caches {
            posts: Arc::new(posts),
            users: Arc::new(users),
            high_fanout_followees: Arc::new(high_fanout),
            author_recent: Arc::new(author_recent),
            likes: Arc::new(likes),
            hidden: Arc::new(hidden),
        });
    };
    let prefix = &config.redis.key_prefix;
    let bus = InvalidationBus::start(redis.connection.clone(), &redis.pubsub_url, prefix).await?;
    Ok(Caches {
        posts: Arc::new(TieredCache::new(
            BroadcastCache::new("posts", posts, bus.clone()),
            redis.connection.clone(),
            prefix,
            ttl,
        )),
        users: Arc::new(TieredCache::new(
            BroadcastCache::new("users", users, bus.clone()),
            redis.connection.clone(),
            prefix,
            ttl,
        )),
        high_fanout_followees: Arc::new(BroadcastCache::new(
            "high_fanout_followees",
            high_fanout,
            bus.clone(),
        )),
        author_recent: Arc::new(BroadcastCache::new(
            "author_recent",
            author_recent,
            bus.clone(),
        )),
        likes: Arc::new(BroadcastCache::new("likes", likes, bus.clone())),
        hidden: Arc::new(BroadcastCache::new("hidden", hidden, bus)),
    })
}

/// JetStream, when `nats_url` is set.
pub async fn jetstream(config: &Config) -> anyhow::Result<Option<JetStream>> {
    let Some(url) = &config.nats_url else {
        return Ok(None);
    };
    let nats = &config.nats;
    let options = JetStreamOptions {
        stream: nats.stream.clone(),
        subject_prefix: nats.subject_prefix.clone(),
        partitions: nats.partitions,
        max_deliveries: nats.max_deliveries,
        max_in_flight: nats.max_in_flight,
        ack_wait: Duration::from_secs(nats.ack_wait_secs),
        lease_ttl: Duration::from_secs(nats.lease_secs),
        call_timeout: Duration::from_millis(nats.call_timeout_ms.max(1)),
        replicas: nats.replicas,
        ..JetStreamOptions::default()
    };
    Ok(Some(JetStream::connect(url, options).await?))
}

/// The live-update log: a JetStream stream when scaled out (workers
/// and API instances are other processes), else rings in this process.
pub async fn live_log(
    config: &Config,
    jetstream: Option<&JetStream>,
) -> anyhow::Result<Arc<dyn LiveLog>> {
    let retention = Duration::from_secs(config.stream.retention_secs);
    Ok(match jetstream {
        Some(jetstream) => Arc::new(
            jetstream
                .live(retention, config.stream.nats_max_bytes)
                .await?,
        ),
        None => Arc::new(LocalLiveLog::new(retention, config.stream.topic_capacity)),
    })
}

/// Where image files go: the configured S3-compatible bucket, else
/// `<data_dir>/media`.
pub fn blobs(config: &Config) -> anyhow::Result<Arc<dyn BlobStore>> {
    let media = &config.media;
    Ok(match &media.s3_bucket {
        Some(bucket) => Arc::new(starling_objects::ObjectBlobs::s3(
            &starling_objects::S3Settings {
                bucket: bucket.clone(),
                endpoint: media.s3_endpoint.clone(),
                region: media.s3_region.clone(),
                access_key_id: media.s3_access_key_id.clone(),
                secret_access_key: media.s3_secret_access_key.clone(),
                allow_http: media
                    .s3_endpoint
                    .as_deref()
                    .is_some_and(|endpoint| endpoint.starts_with("http://")),
            },
        )?),
        None => Arc::new(starling_objects::ObjectBlobs::local(
            &config.data_dir.join("media"),
        )?),
    })
}
