//! PostgreSQL adapter of the SQL store port, for the scaled-out mode:
//! connection set-up, error translation and shared helpers. The queries
//! mirror the SQLite adapter's; both pass the same contract suite.

mod accounts;
mod graph;
mod outbox;
mod posts;
mod tokens;

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use starling_app::ports::StoreError;
use starling_domain::{Event, EventId, Timestamp};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// Statements running longer are cancelled by the server.
    pub statement_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(15),
        }
    }
}

/// The PostgreSQL store: one pool on the primary.
#[derive(Clone)]
pub struct PostgresStore {
    primary: PgPool,
}

type Tx = Transaction<'static, Postgres>;

impl PostgresStore {
    /// Connects to `url` and applies migrations.
    pub async fn open(url: &str, options: &PostgresOptions) -> anyhow::Result<Self> {
        let primary = pool(url, options).await?;
        MIGRATOR
            .run(&primary)
            .await
            .context("applying PostgreSQL migrations")?;
        Ok(Self { primary })
    }

    /// Connects without migrating (for roles that must not change the schema).
    pub async fn connect(url: &str, options: &PostgresOptions) -> anyhow::Result<Self> {
        Ok(Self {
            primary: pool(url, options).await?,
        })
    }

    /// Applies the migrations this build knows to the database at `url`.
    pub async fn migrate(url: &str) -> anyhow::Result<()> {
        let primary = pool(url, &PostgresOptions::default()).await?;
        MIGRATOR
            .run(&primary)
            .await
            .context("applying PostgreSQL migrations")?;
        primary.close().await;
        Ok(())
    }

    pub async fn close(&self) {
        self.primary.close().await;
    }

    /// Connections: `(pool, open, idle)`.
    pub fn pool_usage(&self) -> [(&'static str, u32, usize); 1] {
        [("primary", self.primary.size(), self.primary.num_idle())]
    }

    async fn begin(&self) -> Result<Tx, StoreError> {
        let started = std::time::Instant::now();
        let tx = self.primary.begin().await.map_err(translate)?;
        record_acquire("primary", started);
        Ok(tx)
    }

    fn pool(&self) -> &PgPool {
        &self.primary
    }
}

async fn pool(url: &str, options: &PostgresOptions) -> anyhow::Result<PgPool> {
    let connect: PgConnectOptions = url
        .parse()
        .with_context(|| "parsing the PostgreSQL URL".to_owned())?;
    let statement_timeout = options.statement_timeout.as_millis().to_string();
    PgPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect.options([("statement_timeout", statement_timeout.as_str())]))
        .await
        .context("connecting to PostgreSQL")
}

fn record_acquire(pool: &'static str, started: std::time::Instant) {
    metrics::histogram!("starling_db_pool_acquire_seconds", "pool" => pool)
        .record(started.elapsed().as_secs_f64());
}

#[async_trait::async_trait]
impl starling_app::ports::StoreHealth for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(self.pool())
            .await
            .map_err(translate)?;
        Ok(())
    }

    async fn highest_id(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "SELECT GREATEST( \
               (SELECT coalesce(max(id), 0) FROM users), \
               (SELECT coalesce(max(id), 0) FROM posts), \
               (SELECT coalesce(max(follow_id), 0) FROM follows), \
               (SELECT coalesce(max(event_id), 0) FROM outbox), \
               (SELECT coalesce(max(family_id), 0) FROM refresh_tokens))",
        )
        .fetch_one(self.pool())
        .await
        .map_err(translate)
    }
}

/// Driver errors to port errors. Connection trouble, a full pool, a
/// cancelled statement, a deadlock or a serialisation failure are
/// "unavailable" (retryable); a missing foreign key is an unknown acting
/// account; the rest is a bug.
pub(crate) fn translate(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => StoreError::Unavailable(error.into()),
        sqlx::Error::Database(ref database) => {
            let code = database
                .code()
                .map(|code| code.into_owned())
                .unwrap_or_default();
            if matches!(
                code.as_str(),
                "40001" | "40P01" | "57014" | "57P01" | "53300"
            ) || code.starts_with("08")
            {
                return StoreError::Unavailable(error.into());
            }
            if database.is_foreign_key_violation() {
                return StoreError::UnknownAccount;
            }
            StoreError::Unexpected(error.into())
        }
        other => StoreError::Unexpected(other.into()),
    }
}

pub(crate) fn encode_event(event: &Event) -> Result<String, StoreError> {
    serde_json::to_string(event).map_err(|error| {
        StoreError::Unexpected(anyhow::Error::new(error).context("encoding an event"))
    })
}

/// Appends `event` to the outbox inside the caller's transaction.
pub(crate) async fn append_event(
    tx: &mut Tx,
    id: EventId,
    event: &Event,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outbox (event_id, kind, payload, occurred_at, trace_parent) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.get())
    .bind(event.kind())
    .bind(encode_event(event)?)
    .bind(now.millis())
    .bind(starling_app::telemetry::current_traceparent())
    .execute(&mut **tx)
    .await
    .map_err(translate)?;
    Ok(())
}

pub(crate) fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Ids as the `BIGINT[]` `= ANY($n)` takes.
pub(crate) fn id_array<T>(ids: &[T], raw: impl Fn(&T) -> i64) -> Vec<i64> {
    ids.iter().map(raw).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use starling_app::ports::Store;

    use super::*;
    use starling_testing::{TestDatabase, test_database};

    async fn make() -> Option<(Arc<dyn Store>, TestDatabase)> {
        let database = test_database().await?;
        let store = PostgresStore::open(&database.url, &PostgresOptions::default())
            .await
            .expect("open the PostgreSQL store");
        Some((Arc::new(store), database))
    }

    starling_app::store_contract!(make);
}
