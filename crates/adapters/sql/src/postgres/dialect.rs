//! What PostgreSQL says differently from SQLite, for the statements and
//! code written once in `crate::shared`: its half of the dialect seam
//! (`sqlite/dialect.rs` is the other).

use sqlx::error::DatabaseError;
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Transaction};
use starling_app::ports::StoreError;
use starling_domain::UserId;

use super::{PostgresStore, translate};

/// Fragments of the shared statements, spliced in with `concat!`.
macro_rules! dialect {
    // `IN` the array bound at `$n` (`id_list`, `text_list`).
    (any $n:literal) => {
        concat!("= ANY($", $n, ")")
    };
    // A text array bound at `$n` that may be NULL (typed, for `IS NULL`).
    (texts $n:literal) => {
        concat!("$", $n, "::TEXT[]")
    };
    // Row locks taken by the reads that decide a write.
    (for_update) => {
        " FOR UPDATE"
    };
    (for_no_key_update) => {
        " FOR NO KEY UPDATE"
    };
    (skip_locked) => {
        " FOR UPDATE SKIP LOCKED"
    };
    // The outbox's log position column (given after commit by the sequencer, `outbox_log.rs`).
    (position) => {
        "position"
    };
    (greatest) => {
        "GREATEST"
    };
    (least) => {
        "LEAST"
    };
}

/// Whether reads that decide a write take row locks (`dialect!(for_update)`
/// and friends, and statements run only to lock): yes.
pub(crate) const ROW_LOCKS: bool = true;

pub(crate) type Db = Postgres;
pub(crate) type Tx = Transaction<'static, Postgres>;

/// Ids as the `BIGINT[]` `dialect!(any n)` takes.
pub(crate) fn id_list<T>(ids: &[T], raw: impl Fn(&T) -> i64) -> Vec<i64> {
    ids.iter().map(raw).collect()
}

/// Texts as the `TEXT[]` `dialect!(any n)` takes.
pub(crate) fn text_list(texts: &[impl AsRef<str>]) -> Vec<String> {
    texts.iter().map(|text| text.as_ref().to_owned()).collect()
}

const LOCK_FILE: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))";

/// A transaction-scoped advisory lock on a file's hash (see
/// `shared/media.rs`).
pub(crate) async fn lock_file(tx: &mut Tx, hash: &str) -> Result<(), StoreError> {
    sqlx::query(LOCK_FILE)
        .bind(hash)
        .execute(&mut **tx)
        .await
        .map_err(translate)?;
    Ok(())
}

/// Whether a unique violation is the email's (else the handle's).
pub(crate) fn email_conflict(database: &dyn DatabaseError) -> bool {
    database.constraint() == Some("users_email_unique")
}

// Fan-out on read: for each source account, its newest $4 posts below $2
// from `posts_by_author` (LATERAL top-N), then the newest $4 of those. The
// cost is bounded by accounts followed x page size, whatever anyone posted.
pub(crate) const HOME_ENTRIES: &str = "SELECT p.id, p.author_id FROM ( \
         SELECT $1::BIGINT AS author_id \
         UNION \
         SELECT f.followee_id FROM follows f JOIN users u ON u.id = f.followee_id \
         WHERE f.follower_id = $1 AND u.followers_count < $3 \
     ) s \
     CROSS JOIN LATERAL ( \
         SELECT id, author_id FROM posts \
         WHERE author_id = s.author_id AND deleted_at IS NULL AND id < $2 \
         ORDER BY id DESC LIMIT $4 \
     ) p \
     ORDER BY p.id DESC LIMIT $4";

impl PostgresStore {
    /// Runs a read that tolerates replica lag: on a fit replica, else on
    /// the primary.
    pub(crate) async fn read_tolerant<T, F, Fut>(
        &self,
        reader: Option<UserId>,
        query: F,
    ) -> Result<T, StoreError>
    where
        F: Fn(PgPool) -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        self.replicas
            .read(reader, &self.primary, query)
            .await
            .map_err(translate)
    }

    /// A read that tolerates lag but not absence: what a replica does not
    /// have (yet) is asked of the primary before answering that there is
    /// none.
    pub(crate) async fn read_found<T, F, Fut>(
        &self,
        reader: Option<UserId>,
        query: F,
    ) -> Result<Option<T>, StoreError>
    where
        F: Fn(PgPool) -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, sqlx::Error>>,
    {
        match self.read_tolerant(reader, &query).await? {
            Some(found) => Ok(Some(found)),
            None => query(self.primary.clone()).await.map_err(translate),
        }
    }

    /// `actor` reads from the primary for a while (read-your-writes).
    pub(crate) fn wrote(&self, actor: UserId) {
        self.replicas.wrote(actor);
    }
}
