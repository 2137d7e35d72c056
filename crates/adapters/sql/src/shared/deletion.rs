//! Account deletion's store side: the saga's row (its step, failures,
//! back-off and lease) and the batch removals its steps run. Follows and
//! posts go through the graph's and the posts' own writes (their events
//! and counters), so only what has no such write is here.
//!
//! One implementation for both engines (see `shared/mod.rs`).

/// `mod deletion` with `impl DeletionStore` for `$store`.
macro_rules! deletion_store {
    ($store:ident) => {
        mod deletion {
            use async_trait::async_trait;
            use starling_app::ports::{DeletionRecord, DeletionStep, DeletionStore, StoreError};
            use starling_domain::{PostId, Timestamp, UserId};

            use super::{$store, translate};
            use crate::limit_param;

            const BEGIN: &str = "UPDATE users SET status = 'deleting' WHERE id = $1 AND status = 'active'";
            const FORGET_PASSWORD: &str = "DELETE FROM credentials WHERE user_id = $1";
            const INSERT: &str = "INSERT INTO account_deletions (user_id, step, started_at, next_attempt_at) \
                 VALUES ($1, $2, $3, $3)";
            const COLUMNS: &str = "user_id, step, attempts, last_error, started_at, next_attempt_at, finished_at";
            const CLAIM: &str = "UPDATE account_deletions SET lease_until = $3 \
                 WHERE user_id = $1 AND finished_at IS NULL AND (lease_until IS NULL OR lease_until <= $2)";
            const RENEW: &str = "UPDATE account_deletions SET lease_until = $2 WHERE user_id = $1 AND finished_at IS NULL";
            // The lease goes with the step: the runner takes the next one
            // afresh (or leaves it, due later, to whoever comes then).
            const ADVANCE: &str = "UPDATE account_deletions SET step = $3, attempts = 0, last_error = NULL, \
                 next_attempt_at = $4, finished_at = $5, lease_until = NULL WHERE user_id = $1 AND step = $2";
            const FINISHED: &str = "UPDATE users SET status = 'deleted' WHERE id = $1";
            const FAILED: &str = "UPDATE account_deletions SET attempts = attempts + 1, last_error = $3, \
                 next_attempt_at = $4, lease_until = NULL WHERE user_id = $1 AND step = $2";
            const REVOKE_KEYS: &str = "UPDATE api_keys SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL";
            const FOLLOWS: &str = "SELECT follower_id, followee_id FROM follows WHERE follower_id = $1 \
                 UNION ALL SELECT follower_id, followee_id FROM follows WHERE followee_id = $1 LIMIT $2";
            const LIKED: &str = "SELECT post_id FROM likes WHERE user_id = $1 LIMIT $2";
            const UNLIKE: &str = "DELETE FROM likes WHERE user_id = $1 AND post_id = $2";
            const UNCOUNT_LIKE: &str = "UPDATE posts SET like_count = like_count - 1 WHERE id = $1 AND like_count > 0";
            const RELATED: &str = "SELECT blocked_id FROM blocks WHERE blocker_id = $1 \
                 UNION SELECT blocker_id FROM blocks WHERE blocked_id = $1 \
                 UNION SELECT muter_id FROM mutes WHERE muted_id = $1";
            const UNRELATE: [&str; 5] = [
                "DELETE FROM blocks WHERE blocker_id = $1 OR blocked_id = $1",
                "DELETE FROM mutes WHERE muter_id = $1 OR muted_id = $1",
                "DELETE FROM notifications WHERE recipient_id = $1",
                "DELETE FROM notifications WHERE actor_id = $1",
                "DELETE FROM notification_reads WHERE user_id = $1",
            ];
            const RELEASE_HANDLE: &str = "UPDATE users SET handle_key = '~' || CAST(id AS TEXT) WHERE id = $1";
            const SCRUB: &str = "UPDATE users SET email = 'deleted-' || CAST(id AS TEXT) || '@deleted.invalid', \
                 display_name = '', bio = '', updated_at = $2 WHERE id = $1";

            type Row = (i64, String, i64, Option<String>, i64, i64, Option<i64>);

            fn record(row: Row) -> Result<DeletionRecord, StoreError> {
                let (user_id, step, attempts, last_error, started_at, next_attempt_at, finished_at) = row;
                let step = DeletionStep::parse(&step).ok_or_else(|| {
                    StoreError::Unexpected(anyhow::anyhow!("the deletion of {user_id} is at an unknown step {step:?}"))
                })?;
                Ok(DeletionRecord {
                    user_id: UserId(user_id),
                    step,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    last_error,
                    started_at: Timestamp(started_at),
                    next_attempt_at: Timestamp(next_attempt_at),
                    finished_at: finished_at.map(Timestamp),
                })
            }

            #[async_trait]
            impl DeletionStore for $store {
                async fn begin_deletion(&self, user: UserId, now: Timestamp) -> Result<Option<Vec<i64>>, StoreError> {
                    let mut tx = self.begin().await?;
                    let started = sqlx::query(BEGIN)
                        .bind(user.get())
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?
                        .rows_affected();
                    if started == 0 {
                        return Ok(None);
                    }
                    sqlx::query(FORGET_PASSWORD)
                        .bind(user.get())
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?;
                    sqlx::query(INSERT)
                        .bind(user.get())
                        .bind(DeletionStep::RevokeCredentials.as_str())
                        .bind(now.millis())
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?;
                    let ended = super::tokens::revoke_others(&mut tx, user, None, now).await?;
                    tx.commit().await.map_err(translate)?;
                    Ok(Some(ended))
                }

                async fn deletion_of(&self, user: UserId) -> Result<Option<DeletionRecord>, StoreError> {
                    let statement = format!("SELECT {COLUMNS} FROM account_deletions WHERE user_id = $1");
                    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(statement))
                        .bind(user.get())
                        .fetch_optional(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    row.map(record).transpose()
                }

                async fn due_deletions(&self, now: Timestamp, limit: usize) -> Result<Vec<DeletionRecord>, StoreError> {
                    let statement = format!(
                        "SELECT {COLUMNS} FROM account_deletions WHERE finished_at IS NULL AND next_attempt_at <= $1 \
                         AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at LIMIT $2"
                    );
                    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(statement))
                        .bind(now.millis())
                        .bind(limit_param(limit))
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    rows.into_iter().map(record).collect()
                }

                async fn claim_deletion(&self, user: UserId, now: Timestamp, until: Timestamp) -> Result<bool, StoreError> {
                    let claimed = sqlx::query(CLAIM)
                        .bind(user.get())
                        .bind(now.millis())
                        .bind(until.millis())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?
                        .rows_affected();
                    Ok(claimed > 0)
                }

                async fn renew_deletion_lease(&self, user: UserId, until: Timestamp) -> Result<(), StoreError> {
                    sqlx::query(RENEW)
                        .bind(user.get())
                        .bind(until.millis())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?;
                    Ok(())
                }

                async fn advance_deletion(
                    &self,
                    user: UserId,
                    from: DeletionStep,
                    to: DeletionStep,
                    due: Timestamp,
                    now: Timestamp,
                ) -> Result<bool, StoreError> {
                    let done = to == DeletionStep::Done;
                    let mut tx = self.begin().await?;
                    let moved = sqlx::query(ADVANCE)
                        .bind(user.get())
                        .bind(from.as_str())
                        .bind(to.as_str())
                        .bind(due.millis())
                        .bind(done.then_some(now.millis()))
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?
                        .rows_affected();
                    if moved > 0 && done {
                        sqlx::query(FINISHED)
                            .bind(user.get())
                            .execute(&mut *tx)
                            .await
                            .map_err(translate)?;
                    }
                    tx.commit().await.map_err(translate)?;
                    Ok(moved > 0)
                }

                async fn deletion_failed(
                    &self,
                    user: UserId,
                    step: DeletionStep,
                    error: &str,
                    retry_at: Timestamp,
                ) -> Result<(), StoreError> {
                    sqlx::query(FAILED)
                        .bind(user.get())
                        .bind(step.as_str())
                        .bind(error)
                        .bind(retry_at.millis())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?;
                    Ok(())
                }

                async fn revoke_api_keys_of(&self, user: UserId, now: Timestamp) -> Result<u64, StoreError> {
                    let revoked = sqlx::query(REVOKE_KEYS)
                        .bind(user.get())
                        .bind(now.millis())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?
                        .rows_affected();
                    Ok(revoked)
                }

                async fn follows_of(&self, user: UserId, limit: usize) -> Result<Vec<(UserId, UserId)>, StoreError> {
                    let rows: Vec<(i64, i64)> = sqlx::query_as(FOLLOWS)
                        .bind(user.get())
                        .bind(limit_param(limit))
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(rows
                        .into_iter()
                        .map(|(follower, followee)| (UserId(follower), UserId(followee)))
                        .collect())
                }

                async fn remove_likes_of(&self, user: UserId, limit: usize) -> Result<Vec<PostId>, StoreError> {
                    let mut tx = self.begin().await?;
                    let posts: Vec<i64> = sqlx::query_scalar(LIKED)
                        .bind(user.get())
                        .bind(limit_param(limit))
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(translate)?;
                    for post in &posts {
                        let removed = sqlx::query(UNLIKE)
                            .bind(user.get())
                            .bind(*post)
                            .execute(&mut *tx)
                            .await
                            .map_err(translate)?
                            .rows_affected();
                        if removed > 0 {
                            sqlx::query(UNCOUNT_LIKE)
                                .bind(*post)
                                .execute(&mut *tx)
                                .await
                                .map_err(translate)?;
                        }
                    }
                    tx.commit().await.map_err(translate)?;
                    Ok(posts.into_iter().map(PostId).collect())
                }

                async fn remove_relations_of(&self, user: UserId) -> Result<Vec<UserId>, StoreError> {
                    let mut tx = self.begin().await?;
                    let related: Vec<i64> = sqlx::query_scalar(RELATED)
                        .bind(user.get())
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(translate)?;
                    for statement in UNRELATE {
                        sqlx::query(statement)
                            .bind(user.get())
                            .execute(&mut *tx)
                            .await
                            .map_err(translate)?;
                    }
                    tx.commit().await.map_err(translate)?;
                    Ok(related.into_iter().map(UserId).collect())
                }

                async fn release_handle(&self, user: UserId) -> Result<(), StoreError> {
                    sqlx::query(RELEASE_HANDLE)
                        .bind(user.get())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?;
                    Ok(())
                }

                async fn scrub_account(&self, user: UserId) -> Result<(), StoreError> {
                    sqlx::query(SCRUB)
                        .bind(user.get())
                        .bind(Timestamp::now().millis())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?;
                    Ok(())
                }
            }
        }
    };
}
pub(crate) use deletion_store;
