//! SQLite adapter: connection set-up, error translation and shared helpers.

mod bulk;
#[macro_use]
mod dialect;
mod group_commit;
mod notification_batch;
mod outbox_log;

pub use bulk::{BulkFollow, BulkLoad, BulkPost, BulkUser};

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use starling_app::ports::{NewEvent, StoreError};
use starling_domain::Timestamp;

use crate::{encode_event, record_acquire};
pub(crate) use dialect::{
    Db, HOME_ENTRIES, ROW_LOCKS, Tx, email_conflict, id_list, lock_file, text_list,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// When a commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync at WAL checkpoints only: a commit survives a crash or `kill -9`
    /// of the process; the last commits may be lost if the machine loses power.
    #[default]
    Normal,
    /// fsync on every commit: survives power loss too, at the cost of one
    /// disk flush per write.
    Full,
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    pub read_connections: u32,
    pub busy_timeout: Duration,
    pub acquire_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Normal,
            read_connections: 4,
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// The SQLite store: one writer connection, a pool of readers.
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// New posts queue here for group commit.
    posts: crate::group_commit::PostQueue,
    /// Told after each commit that appended events.
    commits: crate::CommitSignal,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub async fn open(path: &Path, options: &SqliteOptions) -> anyhow::Result<Self> {
        let base = SqliteConnectOptions::from_str("sqlite://")
            .context("building SQLite options")?
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.synchronous {
                Synchronous::Normal => SqliteSynchronous::Normal,
                Synchronous::Full => SqliteSynchronous::Full,
            })
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true)
            .pragma("cache_size", "-32000")
            .pragma("temp_store", "memory");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(base.clone().create_if_missing(true))
            .await
            .with_context(|| format!("opening {} for writing", path.display()))?;
        MIGRATOR
            .run(&writer)
            .await
            .context("applying SQLite migrations")?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.read_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(base.read_only(true))
            .await
            .with_context(|| format!("opening {} for reading", path.display()))?;
        let commits = crate::CommitSignal::default();
        let posts = crate::group_commit::PostQueue::start(
            std::sync::Arc::new(group_commit::SqliteBatches(writer.clone())),
            1,
            crate::group_commit::MAX_BATCH,
            commits.clone(),
        );
        Ok(Self {
            writer,
            reader,
            posts,
            commits,
        })
    }

    /// Waits for in-flight queries and closes every connection.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// A write transaction on the single writer connection.
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        let started = Instant::now();
        let tx = self.writer.begin().await.map_err(translate)?;
        record_acquire("writer", started);
        Ok(tx)
    }

    /// The writer connection, for single-statement writes.
    async fn write(&self) -> Result<PoolConnection<Sqlite>, StoreError> {
        let started = Instant::now();
        let connection = self.writer.acquire().await.map_err(translate)?;
        record_acquire("writer", started);
        Ok(connection)
    }

    /// A read-only connection.
    async fn read(&self) -> Result<PoolConnection<Sqlite>, StoreError> {
        let started = Instant::now();
        let connection = self.reader.acquire().await.map_err(translate)?;
        record_acquire("reader", started);
        Ok(connection)
    }

    /// Connections per pool: `(pool, open, idle)`.
    pub fn pool_usage(&self) -> [(&'static str, u32, usize); 2] {
        [
            ("writer", self.writer.size(), self.writer.num_idle()),
            ("reader", self.reader.size(), self.reader.num_idle()),
        ]
    }
}

/// Driver errors to port errors: a pool that cannot hand out a connection or
/// an I/O failure means the store is unavailable; anything else is a bug.
pub(crate) fn translate(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(error.into())
        }
        sqlx::Error::Database(ref database) => {
            // sqlx reports SQLite's extended result code; its low byte is the
            // primary code.
            let primary = database
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                .map(|code| code & 0xff);
            match primary {
                // BUSY / LOCKED: the database stayed locked past busy_timeout.
                Some(SQLITE_BUSY | SQLITE_LOCKED) => StoreError::Unavailable(error.into()),
                // The one foreign key a write can miss after its checks is its
                // actor's: a token signed for an account this database lacks.
                _ if database.is_foreign_key_violation() => StoreError::UnknownAccount,
                _ => StoreError::Unexpected(error.into()),
            }
        }
        other => StoreError::Unexpected(other.into()),
    }
}

const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;

/// Appends `event` to the outbox inside the caller's transaction.
pub(crate) async fn append_event(
    tx: &mut Transaction<'static, Sqlite>,
    event: &NewEvent,
    now: Timestamp,
) -> Result<i64, StoreError> {
    let payload = encode_event(&event.event)?;
    let sequence: i64 = sqlx::query_scalar(
        "INSERT INTO outbox (event_id, kind, payload, occurred_at, trace_parent) \
         VALUES (?1, ?2, ?3, ?4, ?5) RETURNING sequence",
    )
    .bind(event.id.get())
    .bind(event.event.kind())
    .bind(payload)
    .bind(now.millis())
    .bind(&event.trace_parent)
    .fetch_one(&mut **tx)
    .await
    .map_err(translate)?;
    Ok(sequence)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use starling_app::ports::{AccountStore, OutboxStore, Store};
    use starling_domain::{Event, EventId, UserId};

    use super::*;

    async fn make() -> Option<(Arc<dyn Store>, tempfile::TempDir)> {
        let (store, dir) = make_sqlite().await;
        Some((Arc::new(store), dir))
    }

    async fn make_sqlite() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("starling.db"), &SqliteOptions::default())
            .await
            .expect("open store");
        (store, dir)
    }

    starling_app::store_contract!(make);

    #[tokio::test]
    async fn reopening_keeps_data_and_reapplies_no_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("starling.db");
        let store = SqliteStore::open(&path, &SqliteOptions::default())
            .await
            .unwrap();
        starling_app::ports::OutboxStore::append_event(
            &store,
            EventId(1),
            &Event::UserRegistered {
                user_id: starling_domain::UserId(1),
            },
            Timestamp::now(),
        )
        .await
        .unwrap();
        store.close().await;
        let reopened = SqliteStore::open(&path, &SqliteOptions::default())
            .await
            .unwrap();
        let events = starling_app::ports::OutboxStore::events_after(&reopened, 0, 10)
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].as_ref().unwrap().id, EventId(1));
    }

    #[tokio::test]
    async fn a_bulk_load_builds_again_every_index_it_dropped_and_recounts() {
        let (store, _dir) = make_sqlite().await;
        let indexes = |store: &SqliteStore| {
            let reader = store.reader.clone();
            async move {
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name",
                )
                .fetch_all(&reader)
                .await
                .unwrap();
                rows
            }
        };
        let before = indexes(&store).await;
        assert!(before.iter().any(|(name, _)| name == "posts_by_author"));
        let load = store.begin_bulk_load().await.unwrap();
        let during = indexes(&store).await;
        assert!(
            !during
                .iter()
                .any(|(name, _)| name.starts_with("follows_") || name.starts_with("posts_")),
            "the follow graph's and the posts' indexes are dropped: {during:?}"
        );
        assert!(
            during.iter().any(|(name, _)| name == "notifications_once"),
            "other tables' indexes stay"
        );
        let (ada, bob) = (UserId(1_001), UserId(1_002));
        let user = |id: UserId, handle: &str| BulkUser {
            id,
            handle: handle.to_owned(),
            email: format!("{handle}@example.test"),
            display_name: handle.to_owned(),
            password_hash: "not a hash".to_owned(),
            created_at: Timestamp(1),
        };
        store
            .bulk_insert_users(&[user(ada, "ada"), user(bob, "bob")])
            .await
            .unwrap();
        store
            .bulk_insert_follows(&[BulkFollow {
                follower: bob,
                followee: ada,
                follow_id: 1,
                created_at: Timestamp(2),
            }])
            .await
            .unwrap();
        store
            .bulk_insert_posts(&[BulkPost {
                id: starling_domain::PostId(5_000),
                author: ada,
                text: "history".to_owned(),
                created_at: Timestamp(3),
            }])
            .await
            .unwrap();
        store.finish_bulk_load(load).await.unwrap();
        assert_eq!(
            indexes(&store).await,
            before,
            "the same indexes, the same definitions"
        );
        let ada = store.user_by_id(ada).await.unwrap().unwrap();
        assert_eq!((ada.followers_count, ada.posts_count), (1, 1));
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
            "EXPLAIN QUERY PLAN SELECT id FROM posts WHERE author_id = 1001 AND deleted_at IS NULL ORDER BY id DESC",
        )
        .fetch_all(&store.reader)
        .await
        .unwrap();
        assert!(
            plan.iter().any(|row| row.3.contains("posts_by_author")),
            "reads use the rebuilt index: {plan:?}"
        );
    }

    #[tokio::test]
    async fn a_damaged_outbox_row_comes_back_as_undecodable_in_its_place() {
        let (store, _dir) = make_sqlite().await;
        let now = Timestamp::now();
        let event = Event::UserRegistered {
            user_id: starling_domain::UserId(1),
        };
        store.append_event(EventId(1), &event, now).await.unwrap();
        sqlx::query(
            "INSERT INTO outbox (event_id, kind, payload, occurred_at) VALUES (2, 'from_the_future', '{\"type\":\"from_the_future\"}', 0)",
        )
        .execute(&store.writer)
        .await
        .unwrap();
        store.append_event(EventId(3), &event, now).await.unwrap();
        let rows = store.events_after(0, 10).await.unwrap();
        assert_eq!(rows.len(), 3);
        assert!(rows[0].is_ok() && rows[2].is_ok());
        let bad = rows[1].clone().unwrap_err();
        assert_eq!((bad.id, bad.kind.as_str()), (EventId(2), "from_the_future"));
        store
            .dead_letter_undecodable("fanout", &bad, now)
            .await
            .unwrap();
        let parked: (String, String) =
            sqlx::query_as("SELECT kind, payload FROM dead_letters WHERE consumer = 'fanout'")
                .fetch_one(&store.reader)
                .await
                .unwrap();
        assert_eq!(parked, (bad.kind, bad.payload));
    }
}

// Written once for both engines (`crate::shared`).
crate::shared::accounts::account_store!(SqliteStore);
crate::shared::admin::admin_store!(SqliteStore);
crate::shared::api_keys::api_key_store!(SqliteStore);
crate::shared::deletion::deletion_store!(SqliteStore);
crate::shared::exports::export_store!(SqliteStore);
crate::shared::graph::graph_store!(SqliteStore);
crate::shared::idempotency::idempotency_store!(SqliteStore);
crate::shared::media::media_store!(SqliteStore);
crate::shared::notifications::notification_store!(SqliteStore);
crate::shared::outbox::outbox_store!(SqliteStore);
crate::shared::posts::post_store!(SqliteStore);
crate::shared::relations::relation_store!(SqliteStore);
crate::shared::tokens::token_store!(SqliteStore);
