//! PostgreSQL adapter of the SQL store port, for the scaled-out mode:
//! connection set-up, error translation and shared helpers. The queries
//! mirror the SQLite adapter's; both pass the same contract suite.

#[macro_use]
mod dialect;
mod group_commit;
mod notification_batch;
mod outbox_log;
mod primary;
mod replicas;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use starling_app::ports::{NewEvent, StoreError};
use starling_domain::Timestamp;

use crate::{encode_event, record_acquire};
use dialect::Tx;
pub(crate) use dialect::{
    Db, HOME_ENTRIES, ROW_LOCKS, email_conflict, id_list, lock_file, text_list,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// Statements running longer are cancelled by the server.
    pub statement_timeout: Duration,
    /// A replica further behind than this serves no reads.
    pub replica_max_lag: Duration,
    /// New posts written per transaction at most (group commit); 1: a
    /// transaction per post.
    pub post_batch: usize,
    /// Transactions writing new posts at once.
    pub post_writers: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(15),
            replica_max_lag: Duration::from_secs(1),
            post_batch: crate::group_commit::MAX_BATCH,
            post_writers: 2,
        }
    }
}

/// The PostgreSQL store: a pool on the primary, and one per read replica.
#[derive(Clone)]
pub struct PostgresStore {
    primary: PgPool,
    replicas: Arc<replicas::Replicas>,
    /// New posts queue here for group commit.
    posts: crate::group_commit::PostQueue,
    /// Told after each commit that appended events.
    commits: crate::CommitSignal,
    /// Every outbox row of a transaction id below this has its position
    /// (as far as this process's sequencing knows): where the sequencer's
    /// scans start (`outbox_log.rs`).
    sequenced_below: Arc<std::sync::atomic::AtomicI64>,
}

impl PostgresStore {
    /// Connects to `url` and applies migrations.
    pub async fn open(url: &str, options: &PostgresOptions) -> anyhow::Result<Self> {
        let primary = pool(url, options).await?;
        MIGRATOR
            .run(&primary)
            .await
            .context("applying PostgreSQL migrations")?;
        Ok(Self::on(primary, options))
    }

    /// Connects without migrating (for roles that must not change the schema).
    pub async fn connect(url: &str, options: &PostgresOptions) -> anyhow::Result<Self> {
        Ok(Self::on(pool(url, options).await?, options))
    }

    fn on(primary: PgPool, options: &PostgresOptions) -> Self {
        let commits = crate::CommitSignal::default();
        let posts = crate::group_commit::PostQueue::start(
            Arc::new(group_commit::PgBatches(primary.clone())),
            options.post_writers,
            options.post_batch,
            commits.clone(),
        );
        Self {
            primary,
            replicas: replicas::Replicas::new(Vec::new(), Duration::ZERO),
            posts,
            commits,
            sequenced_below: Arc::new(std::sync::atomic::AtomicI64::new(0)),
        }
    }

    /// Sends lag-tolerant reads to the replicas at `urls` while they keep
    /// within `options.replica_max_lag`. A replica that is down at start is
    /// tried again by the monitor; it does not stop the start.
    pub fn with_replicas(
        mut self,
        urls: &[String],
        options: &PostgresOptions,
    ) -> anyhow::Result<Self> {
        let mut members = Vec::with_capacity(urls.len());
        for url in urls {
            let connect: PgConnectOptions = url
                .parse()
                .with_context(|| "parsing a replica's PostgreSQL URL".to_owned())?;
            let name = format!("{}:{}", connect.get_host(), connect.get_port());
            let statement_timeout = options.statement_timeout.as_millis().to_string();
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(Duration::from_secs(2))
                .connect_lazy_with(
                    connect.options([("statement_timeout", statement_timeout.as_str())]),
                );
            members.push((name, pool));
        }
        self.replicas = replicas::Replicas::new(members, options.replica_max_lag);
        Ok(self)
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
        self.replicas.close().await;
        self.primary.close().await;
    }

    /// Connections: `(pool, open, idle)`; replicas' pools summed.
    pub fn pool_usage(&self) -> Vec<(&'static str, u32, usize)> {
        let mut usage = vec![("primary", self.primary.size(), self.primary.num_idle())];
        if !self.replicas.members().is_empty() {
            let (open, idle) =
                self.replicas
                    .members()
                    .iter()
                    .fold((0, 0), |(open, idle), replica| {
                        (open + replica.pool.size(), idle + replica.pool.num_idle())
                    });
            usage.push(("replica", open, idle));
        }
        usage
    }

    /// Reads served by replicas since the store opened.
    pub fn replica_reads(&self) -> u64 {
        self.replicas.served()
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

    /// A primary connection for one statement that writes.
    async fn write(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        self.read().await
    }

    /// A primary connection for reads that must see the latest writes.
    async fn read(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        let started = std::time::Instant::now();
        let connection = self.primary.acquire().await.map_err(translate)?;
        record_acquire("primary", started);
        Ok(connection)
    }
}

/// The primary's pool. A URL of several hosts (`postgres://u@h1,h2/db`)
/// connects to the writable one and follows it through failovers
/// ([`primary`]).
async fn pool(url: &str, options: &PostgresOptions) -> anyhow::Result<PgPool> {
    let statement_timeout = options.statement_timeout.as_millis().to_string();
    let mut hosts: Vec<PgConnectOptions> = primary::hosts(url)?
        .into_iter()
        .map(|host| host.options([("statement_timeout", statement_timeout.as_str())]))
        .collect();
    let pool_options = PgPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout);
    if hosts.len() == 1 {
        return pool_options
            .connect_with(hosts.remove(0))
            .await
            .context("connecting to PostgreSQL");
    }
    let primary = primary::Primary::new(hosts);
    let first = primary.locate(options.acquire_timeout).await?;
    let seen = primary.clone();
    let pool = pool_options
        .after_connect(move |connection, _| {
            let seen = seen.clone();
            Box::pin(async move {
                if primary::writable(connection).await? {
                    return Ok(());
                }
                seen.read_only_seen();
                // Refused like a server that is not up: the pool tries
                // again (where the watcher points it) until its acquire
                // timeout, and a request that cannot wait answers 503.
                Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "the server is read-only: not the primary",
                )))
            })
        })
        .connect_with(first)
        .await
        .context("connecting to the PostgreSQL primary")?;
    primary.watch(pool.clone());
    Ok(pool)
}

/// Driver errors to port errors. Connection trouble, a full pool, a
/// cancelled statement, a deadlock or a serialisation failure, a server
/// shutting down or starting up (57P0x), a write on a server that became
/// read-only under us (25006: a primary demoted by its HA manager) are
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
                "40001" | "40P01" | "57014" | "57P01" | "57P02" | "57P03" | "53300" | "25006"
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

/// Appends `event` to the outbox inside the caller's transaction.
pub(crate) async fn append_event(
    tx: &mut Tx,
    event: &NewEvent,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outbox (event_id, kind, payload, occurred_at, trace_parent) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(event.id.get())
    .bind(event.event.kind())
    .bind(encode_event(&event.event)?)
    .bind(now.millis())
    .bind(&event.trace_parent)
    .execute(&mut **tx)
    .await
    .map_err(translate)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sqlx::Connection;
    use sqlx::postgres::PgConnection;
    use starling_app::ports::{AccountStore, NewUser, Store};
    use starling_domain::{Email, Event, EventId, Handle, IdGenerator, UserId};

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

    /// Resumes replay on the replica when the test ends, however it ends.
    struct ReplayPaused(String);

    impl ReplayPaused {
        async fn pause(admin_url: &str) -> Self {
            let mut admin = PgConnection::connect(admin_url).await.unwrap();
            sqlx::query("SELECT pg_wal_replay_pause()")
                .execute(&mut admin)
                .await
                .unwrap();
            Self(admin_url.to_owned())
        }
    }

    impl Drop for ReplayPaused {
        fn drop(&mut self) {
            let url = self.0.clone();
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let mut admin = PgConnection::connect(&url).await.unwrap();
                    sqlx::query("SELECT pg_wal_replay_resume()")
                        .execute(&mut admin)
                        .await
                        .unwrap();
                });
            })
            .join();
        }
    }

    async fn wait_until<F, Fut>(what: &str, mut condition: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !condition().await {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn new_user(ids: &IdGenerator, handle: &str) -> NewUser {
        let id = ids.next_user_id();
        NewUser {
            id,
            handle: Handle::parse(handle).unwrap(),
            email: Email::parse(&format!("{handle}@example.org")).unwrap(),
            display_name: handle.to_owned(),
            password_hash: "hash".to_owned(),
            created_at: Timestamp::now(),
            event: NewEvent::new(
                ids.next_event_id(),
                Event::UserRegistered { user_id: id },
                None,
            ),
        }
    }

    /// A profile read for `reader`, which replicas may serve.
    async fn name_of(store: &PostgresStore, reader: Option<UserId>, handle: &str) -> String {
        store
            .user_by_handle(reader, handle)
            .await
            .unwrap()
            .unwrap()
            .display_name
    }

    /// One test, in steps, because it pauses the shared replica.
    #[tokio::test]
    async fn replicas_serve_tolerant_reads_and_never_hide_a_callers_writes() {
        let Some(database) = test_database().await else {
            return;
        };
        let Some(replica_url) = database.on_replica() else {
            return;
        };
        let replica_admin = std::env::var("STARLING_TEST_REPLICA_URL").unwrap();
        let options = PostgresOptions {
            replica_max_lag: Duration::from_millis(300),
            ..PostgresOptions::default()
        };
        let store = PostgresStore::open(&database.url, &options)
            .await
            .unwrap()
            .with_replicas(std::slice::from_ref(&replica_url), &options)
            .unwrap();
        let ids = IdGenerator::new(3);
        let ada = store.create_user(new_user(&ids, "ada")).await.unwrap();

        // A replica in step serves reads.
        wait_until("the replica serves a read", || async {
            let before = store.replica_reads();
            store.user_by_handle(None, "ada").await.unwrap().is_some()
                && store.replica_reads() > before
        })
        .await;

        let paused = ReplayPaused::pause(&replica_admin).await;
        // The account that writes reads its write back at once...
        store
            .update_profile(
                ada.id,
                Some("Ada Lovelace".to_owned()),
                None,
                NewEvent::new(
                    ids.next_event_id(),
                    Event::ProfileUpdated { user_id: ada.id },
                    None,
                ),
                Timestamp::now(),
            )
            .await
            .unwrap();
        assert_eq!(name_of(&store, Some(ada.id), "ada").await, "Ada Lovelace");
        // ...an account created meanwhile is found by anyone (a replica
        // miss asks the primary)...
        let bob = store.create_user(new_user(&ids, "bob")).await.unwrap();
        assert_eq!(
            store
                .user_by_handle(None, "bob")
                .await
                .unwrap()
                .map(|user| user.id),
            Some(bob.id)
        );
        // ...and once the replica is further behind than allowed, nobody
        // is served its stale rows.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let served = store.replica_reads();
        assert_eq!(name_of(&store, None, "ada").await, "Ada Lovelace");
        assert_eq!(
            store.replica_reads(),
            served,
            "a lagging replica served a read"
        );

        drop(paused);
        wait_until("the replica catches up and serves again", || async {
            let before = store.replica_reads();
            name_of(&store, None, "ada").await == "Ada Lovelace" && store.replica_reads() > before
        })
        .await;
        store.close().await;

        // A replica that is down: every read goes to the primary.
        let unreachable = "postgres://postgres@127.0.0.1:1/nothing".to_owned();
        let store = PostgresStore::open(&database.url, &options)
            .await
            .unwrap()
            .with_replicas(&[unreachable], &options)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(name_of(&store, None, "ada").await, "Ada Lovelace");
        assert!(store.user_by_handle(None, "bob").await.unwrap().is_some());
        assert_eq!(store.replica_reads(), 0);
        store.close().await;
    }

    /// A URL naming a standby first and the primary second (an HA pair
    /// after a failover, say): the store writes to the primary, and its new
    /// connections never go to the standby.
    #[tokio::test]
    async fn a_url_of_several_hosts_writes_on_the_one_that_takes_writes() {
        let Some(database) = test_database().await else {
            return;
        };
        let Some(replica_url) = database.on_replica() else {
            return;
        };
        let host_of = |url: &str| {
            let options: PgConnectOptions = url.parse().unwrap();
            format!("{}:{}", options.get_host(), options.get_port())
        };
        let both = format!(
            "postgres://postgres@{},{}/{}",
            host_of(&replica_url),
            host_of(&database.url),
            database.url.rsplit_once('/').unwrap().1
        );
        let options = PostgresOptions {
            max_connections: 4,
            ..PostgresOptions::default()
        };
        let store = PostgresStore::open(&both, &options).await.unwrap();
        let ids = IdGenerator::new(7);
        store.create_user(new_user(&ids, "carol")).await.unwrap();
        let port: i32 = sqlx::query_scalar("SELECT inet_server_port()")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let primary: PgConnectOptions = database.url.parse().unwrap();
        assert_eq!(port, i32::from(primary.get_port()));
        store.close().await;
    }

    /// A transaction that began before others and commits after them: its
    /// event is positioned after theirs once it commits, never skipped,
    /// however far the sequencer's scans have moved their start meanwhile.
    #[tokio::test]
    async fn an_event_committed_late_by_an_older_transaction_is_not_skipped() {
        use starling_app::ports::OutboxStore;
        let Some(database) = test_database().await else {
            return;
        };
        let store = PostgresStore::open(&database.url, &PostgresOptions::default())
            .await
            .unwrap();
        let event = |id: i64| Event::ProfileUpdated {
            user_id: starling_domain::UserId(id),
        };
        let ids_after = |after: i64| {
            let store = store.clone();
            async move {
                store
                    .events_after(after, 100)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|row| row.unwrap())
                    .map(|envelope| (envelope.id, envelope.sequence))
                    .collect::<Vec<_>>()
            }
        };
        // What the log shows after `after`, once it shows `count` events:
        // a commit shows once no older transaction of the cluster is open,
        // and other tests' transactions share the cluster.
        let shown_after = |after: i64, count: usize| {
            let ids_after = &ids_after;
            async move {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                loop {
                    let shown = ids_after(after).await;
                    if shown.len() >= count || std::time::Instant::now() > deadline {
                        return shown;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        };
        store
            .append_event(EventId(1), &event(1), Timestamp::now())
            .await
            .unwrap();
        let first = shown_after(0, 1).await;
        assert_eq!(
            first.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![EventId(1)]
        );

        // An older transaction, still open, has written its event.
        let mut older = PgConnection::connect(&database.url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut older).await.unwrap();
        sqlx::query(
            "INSERT INTO outbox (event_id, kind, payload, occurred_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(2_i64)
        .bind(event(2).kind())
        .bind(encode_event(&event(2)).unwrap())
        .bind(Timestamp::now().millis())
        .execute(&mut older)
        .await
        .unwrap();
        // Later ones commit and are read (or waited for) meanwhile.
        for id in 3..6 {
            store
                .append_event(EventId(id), &event(id), Timestamp::now())
                .await
                .unwrap();
            let _ = ids_after(first[0].1).await;
        }
        sqlx::query("COMMIT").execute(&mut older).await.unwrap();
        let rest = shown_after(first[0].1, 4).await;
        let ids: Vec<i64> = rest.iter().map(|(id, _)| id.get()).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![2, 3, 4, 5], "every event, once: {ids:?}");
        assert!(rest.windows(2).all(|pair| pair[0].1 < pair[1].1));
        store.close().await;
    }
}

// Written once for both engines (`crate::shared`).
crate::shared::accounts::account_store!(PostgresStore);
crate::shared::admin::admin_store!(PostgresStore);
crate::shared::api_keys::api_key_store!(PostgresStore);
crate::shared::deletion::deletion_store!(PostgresStore);
crate::shared::exports::export_store!(PostgresStore);
crate::shared::graph::graph_store!(PostgresStore);
crate::shared::idempotency::idempotency_store!(PostgresStore);
crate::shared::media::media_store!(PostgresStore);
crate::shared::notifications::notification_store!(PostgresStore);
crate::shared::outbox::outbox_store!(PostgresStore);
crate::shared::posts::post_store!(PostgresStore);
crate::shared::relations::relation_store!(PostgresStore);
crate::shared::tokens::token_store!(PostgresStore);
