//! What SQLite says differently from PostgreSQL, for the statements and
//! code written once in `crate::shared`: its half of the dialect seam
//! (`postgres/dialect.rs` is the other).

use sqlx::error::DatabaseError;
use sqlx::{Sqlite, SqlitePool, Transaction};
use starling_app::ports::StoreError;
use starling_domain::UserId;

use super::{SqliteStore, translate};

/// Fragments of the shared statements, spliced in with `concat!`.
macro_rules! dialect {
    // `IN` the list bound at `$n` (`id_list`, `text_list`): a JSON array
    // that `json_each` expands, so one prepared statement serves any length.
    (any $n:literal) => {
        concat!("IN (SELECT value FROM json_each($", $n, "))")
    };
    // A list bound at `$n` that may be NULL.
    (texts $n:literal) => {
        concat!("$", $n)
    };
    // Row locks: SQLite's one writer connection serialises every write
    // transaction whole, so there is nothing to lock.
    (for_update) => {
        ""
    };
    (for_no_key_update) => {
        ""
    };
    (skip_locked) => {
        ""
    };
    // The larger and the smaller of two values (SQLite's scalar max/min).
    // The outbox's log position column (given at insert by the one writer).
    (position) => {
        "sequence"
    };
    (greatest) => {
        "max"
    };
    (least) => {
        "min"
    };
}

/// Whether reads that decide a write take row locks: no, the one writer
/// connection serialises every write transaction whole (a statement run
/// only to lock would be wasted).
pub(crate) const ROW_LOCKS: bool = false;

pub(crate) type Db = Sqlite;
pub(crate) type Tx = Transaction<'static, Sqlite>;

/// Ids as the JSON array `dialect!(any n)` expands.
pub(crate) fn id_list<T>(ids: &[T], raw: impl Fn(&T) -> i64) -> String {
    let mut json = String::from("[");
    for (index, id) in ids.iter().enumerate() {
        if index > 0 {
            json.push(',');
        }
        json.push_str(&raw(id).to_string());
    }
    json.push(']');
    json
}

/// Texts as the JSON array `dialect!(any n)` expands.
pub(crate) fn text_list(texts: &[impl AsRef<str>]) -> String {
    let texts: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
    // Encoding a list of strings cannot fail.
    serde_json::to_string(&texts).unwrap_or_else(|_| String::from("[]"))
}

/// Nothing to take: the transaction is the one writer's (see `shared/media.rs`).
pub(crate) async fn lock_file(_tx: &mut Tx, _hash: &str) -> Result<(), StoreError> {
    Ok(())
}

/// Whether a unique violation is the email's (else the handle's).
pub(crate) fn email_conflict(database: &dyn DatabaseError) -> bool {
    database.message().contains("users.email")
}

// Fan-out on read. The correlated subquery takes at most $4 rows per source
// account from `posts_by_author`, so the cost is bounded by
// (accounts followed x page size), not by how much each of them ever posted.
// (SQLite has no LATERAL.)
pub(crate) const HOME_ENTRIES: &str = "WITH sources (author_id) AS ( \
         SELECT $1 \
         UNION \
         SELECT f.followee_id FROM follows f JOIN users u ON u.id = f.followee_id \
         WHERE f.follower_id = $1 AND u.followers_count < $3 \
     ) \
     SELECT p.id, p.author_id FROM sources s JOIN posts p ON p.id IN ( \
         SELECT id FROM posts WHERE author_id = s.author_id AND deleted_at IS NULL AND id < $2 \
         ORDER BY id DESC LIMIT $4 \
     ) \
     ORDER BY p.id DESC LIMIT $4";

impl SqliteStore {
    /// A read that would tolerate replica lag: SQLite has no replicas, so
    /// on the read-only pool.
    pub(crate) async fn read_tolerant<T, F, Fut>(
        &self,
        _reader: Option<UserId>,
        query: F,
    ) -> Result<T, StoreError>
    where
        F: Fn(SqlitePool) -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        query(self.reader.clone()).await.map_err(translate)
    }

    /// A read that tolerates lag but not absence: here the same as
    /// `read_tolerant`.
    pub(crate) async fn read_found<T, F, Fut>(
        &self,
        reader: Option<UserId>,
        query: F,
    ) -> Result<Option<T>, StoreError>
    where
        F: Fn(SqlitePool) -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, sqlx::Error>>,
    {
        self.read_tolerant(reader, query).await
    }

    /// An account wrote: nothing to remember with no replicas.
    pub(crate) fn wrote(&self, _actor: UserId) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_json_arrays() {
        assert_eq!(id_list(&[] as &[i64], |id| *id), "[]");
        assert_eq!(id_list(&[1, 22, 333], |id| *id), "[1,22,333]");
        assert_eq!(text_list(&["a", "b\"c"]), r#"["a","b\"c"]"#);
    }
}
