//! Blocks and mutes.
//!
//! One implementation for both engines: the statements are the same
//! (SQLite takes `$N` placeholders as PostgreSQL does), and so is the code
//! around them. Each engine's `mod.rs` instantiates it with the macro
//! below, which needs the store's `begin()` (a write transaction), `read()`
//! and `write()` (a connection for one statement) and `translate`.

/// `mod relations` with `impl RelationStore` for `$store`.
macro_rules! relation_store {
    ($store:ident) => {
        mod relations {
            use async_trait::async_trait;
            use starling_app::ports::{Hidden, Missing, Relation, RelationStore, StoreError};
            use starling_domain::{Timestamp, User, UserId};

            use crate::UserRow;
            use super::{$store, translate};

            const BLOCK_INSERT: &str = "INSERT INTO blocks (blocker_id, blocked_id, position, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
            const BLOCK_DELETE: &str = "DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2";
            const BLOCK_LIST: &str = "SELECT r.position, u.id, u.handle, u.display_name, u.bio, u.created_at, \
                 u.followers_count, u.following_count, u.posts_count, u.role, u.status \
                 FROM blocks r JOIN users u ON u.id = r.blocked_id \
                 WHERE r.blocker_id = $1 AND r.position < $2 ORDER BY r.position DESC LIMIT $3";
            const MUTE_INSERT: &str = "INSERT INTO mutes (muter_id, muted_id, position, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
            const MUTE_DELETE: &str = "DELETE FROM mutes WHERE muter_id = $1 AND muted_id = $2";
            const MUTE_LIST: &str = "SELECT r.position, u.id, u.handle, u.display_name, u.bio, u.created_at, \
                 u.followers_count, u.following_count, u.posts_count, u.role, u.status \
                 FROM mutes r JOIN users u ON u.id = r.muted_id \
                 WHERE r.muter_id = $1 AND r.position < $2 ORDER BY r.position DESC LIMIT $3";

            /// The statements of one relation: `(insert, delete, list)`.
            fn statements(relation: Relation) -> (&'static str, &'static str, &'static str) {
                match relation {
                    Relation::Block => (BLOCK_INSERT, BLOCK_DELETE, BLOCK_LIST),
                    Relation::Mute => (MUTE_INSERT, MUTE_DELETE, MUTE_LIST),
                }
            }

            const USER_EXISTS: &str = "SELECT 1 FROM users WHERE id = $1";
            const BLOCKED_EITHER_WAY: &str = "SELECT EXISTS (SELECT 1 FROM blocks WHERE (blocker_id = $1 AND blocked_id = $2) OR (blocker_id = $2 AND blocked_id = $1))";
            const BLOCKED: &str = "SELECT blocked_id FROM blocks WHERE blocker_id = $1 UNION SELECT blocker_id FROM blocks WHERE blocked_id = $1";
            const MUTED: &str = "SELECT muted_id FROM mutes WHERE muter_id = $1";

            #[derive(sqlx::FromRow)]
            struct PositionedUser {
                position: i64,
                #[sqlx(flatten)]
                user: UserRow,
            }

            #[async_trait]
            impl RelationStore for $store {
                async fn add_relation(
                    &self,
                    relation: Relation,
                    owner: UserId,
                    other: UserId,
                    position: i64,
                    now: Timestamp,
                ) -> Result<bool, StoreError> {
                    let (insert, _, _) = statements(relation);
                    self.wrote(owner);
                    let mut tx = self.begin().await?;
                    let exists: Option<i32> = sqlx::query_scalar(USER_EXISTS)
                        .bind(other.get())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(translate)?;
                    if exists.is_none() {
                        return Err(StoreError::NotFound(Missing::Account));
                    }
                    let added = sqlx::query(insert)
                        .bind(owner.get())
                        .bind(other.get())
                        .bind(position)
                        .bind(now.millis())
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?
                        .rows_affected();
                    tx.commit().await.map_err(translate)?;
                    Ok(added > 0)
                }

                async fn remove_relation(
                    &self,
                    relation: Relation,
                    owner: UserId,
                    other: UserId,
                ) -> Result<bool, StoreError> {
                    let (_, delete, _) = statements(relation);
                    self.wrote(owner);
                    Ok(sqlx::query(delete)
                        .bind(owner.get())
                        .bind(other.get())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?
                        .rows_affected()
                        > 0)
                }

                async fn relations(
                    &self,
                    relation: Relation,
                    owner: UserId,
                    before: Option<i64>,
                    limit: usize,
                ) -> Result<Vec<(i64, User)>, StoreError> {
                    let (_, _, list) = statements(relation);
                    let rows: Vec<PositionedUser> = sqlx::query_as(list)
                        .bind(owner.get())
                        .bind(before.unwrap_or(i64::MAX))
                        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(rows
                        .into_iter()
                        .map(|row| (row.position, row.user.into()))
                        .collect())
                }

                async fn blocked_either_way(&self, first: UserId, second: UserId) -> Result<bool, StoreError> {
                    sqlx::query_scalar(BLOCKED_EITHER_WAY)
                        .bind(first.get())
                        .bind(second.get())
                        .fetch_one(&mut *self.read().await?)
                        .await
                        .map_err(translate)
                }

                async fn hidden_from(&self, viewer: UserId) -> Result<Hidden, StoreError> {
                    let blocked: Vec<i64> = sqlx::query_scalar(BLOCKED)
                        .bind(viewer.get())
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    let muted: Vec<i64> = sqlx::query_scalar(MUTED)
                        .bind(viewer.get())
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(Hidden {
                        blocked: blocked.into_iter().map(UserId).collect(),
                        muted: muted.into_iter().map(UserId).collect(),
                    })
                }
            }
        }
    };
}
pub(crate) use relation_store;
