//! The engines a configuration names: SQLite or PostgreSQL for the store, the
//! process or Redis for timelines, the outbox alone or with NATS JetStream
//! for events. Each is embedded when its URL is unset.

use std::sync::Arc;
use std::time::Duration;

use starling_app::ports::{Store, TimelineStore};
use starling_local::LocalTimelines;
use starling_nats::{JetStream, JetStreamOptions};
use starling_redis::{RedisConnection, RedisOptions, RedisTimelines};
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
        ..PostgresOptions::default()
    }
}

/// The configured timeline store.
pub async fn timelines(config: &Config) -> anyhow::Result<Arc<dyn TimelineStore>> {
    let urls = config.redis_urls();
    if urls.is_empty() {
        return Ok(Arc::new(LocalTimelines::new(
            config.timeline.cap,
            config.timeline.max_cached_timelines,
        )));
    }
    let connection = RedisConnection::connect(
        &urls,
        &RedisOptions {
            cluster: config.redis.cluster,
            response_timeout: Duration::from_millis(config.redis.response_timeout_ms),
            ..RedisOptions::default()
        },
    )
    .await?;
    Ok(Arc::new(RedisTimelines::new(
        connection,
        &config.redis.key_prefix,
        config.timeline.cap,
        Duration::from_secs(config.redis.timeline_idle_ttl_secs),
    )))
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
        ..JetStreamOptions::default()
    };
    Ok(Some(JetStream::connect(url, options).await?))
}
