//! Bulk loading for benchmarks and imports: many rows per statement, many
//! statements per transaction, counters recomputed once at the end. Writes
//! no outbox events: the rows are history, and timelines are rebuilt from
//! SQL on first read.
//!
//! Between `begin_bulk_load` and `finish_bulk_load` the secondary indexes of
//! the follow graph and the posts are dropped, and built again at the end,
//! each in one sorted pass. Kept, they cost a random B-tree insert per row
//! each: seeding 100,000 accounts took 29 times as long as 10,000 (the
//! indexes outgrew SQLite's page cache), where building them afterwards
//! grows as n log n.

use sqlx::{QueryBuilder, Sqlite};
use starling_app::ports::StoreError;
use starling_domain::{PostId, Timestamp, UserId};

use super::{SqliteStore, translate};

/// Rows per INSERT: 500 rows of up to 7 columns stay well under SQLite's
/// 32,766 bound variables.
const ROWS_PER_STATEMENT: usize = 500;
/// Statements per transaction.
const STATEMENTS_PER_TRANSACTION: usize = 40;

#[derive(Debug, Clone)]
pub struct BulkUser {
    pub id: UserId,
    pub handle: String,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy)]
pub struct BulkFollow {
    pub follower: UserId,
    pub followee: UserId,
    pub follow_id: i64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct BulkPost {
    pub id: PostId,
    pub author: UserId,
    pub text: String,
    pub created_at: Timestamp,
}

/// A bulk load under way: the indexes it dropped, built again by
/// `SqliteStore::finish_bulk_load`.
#[must_use = "finish_bulk_load builds the dropped indexes again"]
#[derive(Debug)]
pub struct BulkLoad {
    indexes: Vec<String>,
}

/// Page cache of the writer during a bulk load, in KiB (SQLite's default is 2 MiB).
const BULK_CACHE_KIB: i64 = 256 * 1024;

impl SqliteStore {
    /// Starts a bulk load: drops the non-unique secondary indexes of
    /// `follows` and `posts` (their definitions are kept to build them
    /// again) and gives the writer a large page cache.
    pub async fn begin_bulk_load(&self) -> Result<BulkLoad, StoreError> {
        let mut connection = self.write().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA cache_size = -{BULK_CACHE_KIB}"
        )))
        .execute(&mut *connection)
        .await
        .map_err(translate)?;
        let indexes: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
               AND tbl_name IN ('follows', 'posts') AND sql NOT LIKE 'CREATE UNIQUE%' \
             ORDER BY name",
        )
        .fetch_all(&mut *connection)
        .await
        .map_err(translate)?;
        for (name, _) in &indexes {
            // The name comes from sqlite_master, quoted as an identifier.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP INDEX \"{}\"",
                name.replace('"', "\"\"")
            )))
            .execute(&mut *connection)
            .await
            .map_err(translate)?;
        }
        Ok(BulkLoad {
            indexes: indexes.into_iter().map(|(_, sql)| sql).collect(),
        })
    }

    /// Ends a bulk load: builds the dropped indexes again, recounts every
    /// account's counters and refreshes the planner's statistics.
    pub async fn finish_bulk_load(&self, load: BulkLoad) -> Result<(), StoreError> {
        {
            let mut connection = self.write().await?;
            for sql in &load.indexes {
                // As SQLite stored it when the migration made the index.
                sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .execute(&mut *connection)
                    .await
                    .map_err(translate)?;
            }
        }
        self.recount().await
    }

    pub async fn bulk_insert_users(&self, users: &[BulkUser]) -> Result<(), StoreError> {
        self.bulk(users, "INSERT INTO users (id, handle, handle_key, email, display_name, created_at, updated_at) ", |row, user| {
            row.push_bind(user.id.get())
                .push_bind(user.handle.clone())
                .push_bind(user.handle.to_ascii_lowercase())
                .push_bind(user.email.clone())
                .push_bind(user.display_name.clone())
                .push_bind(user.created_at.millis())
                .push_bind(user.created_at.millis());
        })
        .await?;
        self.bulk(
            users,
            "INSERT INTO credentials (user_id, password_hash, updated_at) ",
            |row, user| {
                row.push_bind(user.id.get())
                    .push_bind(user.password_hash.clone())
                    .push_bind(user.created_at.millis());
            },
        )
        .await
    }

    /// Duplicates are ignored, as a follow would.
    pub async fn bulk_insert_follows(&self, follows: &[BulkFollow]) -> Result<(), StoreError> {
        self.bulk(
            follows,
            "INSERT OR IGNORE INTO follows (follower_id, followee_id, follow_id, created_at) ",
            |row, follow| {
                row.push_bind(follow.follower.get())
                    .push_bind(follow.followee.get())
                    .push_bind(follow.follow_id)
                    .push_bind(follow.created_at.millis());
            },
        )
        .await
    }

    pub async fn bulk_insert_posts(&self, posts: &[BulkPost]) -> Result<(), StoreError> {
        self.bulk(
            posts,
            "INSERT INTO posts (id, author_id, text, created_at) ",
            |row, post| {
                row.push_bind(post.id.get())
                    .push_bind(post.author.get())
                    .push_bind(post.text.clone())
                    .push_bind(post.created_at.millis());
            },
        )
        .await
    }

    /// Sets every account's follower, following and post counts from the
    /// rows, after a bulk load; then refreshes the query planner's statistics.
    pub async fn recount(&self) -> Result<(), StoreError> {
        let mut connection = self.write().await?;
        for statement in [
            "UPDATE users SET \
               followers_count = (SELECT count(*) FROM follows WHERE followee_id = users.id), \
               following_count = (SELECT count(*) FROM follows WHERE follower_id = users.id), \
               posts_count = (SELECT count(*) FROM posts WHERE author_id = users.id AND deleted_at IS NULL)",
            "ANALYZE",
        ] {
            sqlx::query(statement)
                .execute(&mut *connection)
                .await
                .map_err(translate)?;
        }
        Ok(())
    }

    async fn bulk<T>(
        &self,
        rows: &[T],
        insert: &str,
        mut bind: impl FnMut(&mut sqlx::query_builder::Separated<'_, Sqlite, &'static str>, &T),
    ) -> Result<(), StoreError> {
        for transaction_rows in rows.chunks(ROWS_PER_STATEMENT * STATEMENTS_PER_TRANSACTION) {
            let mut tx = self.begin().await?;
            for statement_rows in transaction_rows.chunks(ROWS_PER_STATEMENT) {
                let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(insert);
                builder.push_values(statement_rows, |mut row, value| bind(&mut row, value));
                builder.build().execute(&mut *tx).await.map_err(translate)?;
            }
            tx.commit().await.map_err(translate)?;
        }
        Ok(())
    }
}
