//! The follow graph, with exact follower/following counters.
//!
//! Written once for both engines and instantiated in each engine's
//! `mod.rs` (see `crate::shared`).

/// `mod graph` for `$store`.
macro_rules! graph_store {
    ($store:ident) => {
        mod graph {
            use async_trait::async_trait;
            use starling_app::ports::{Announce, FollowOutcome, GraphStore, Missing, NewEvent, StoreError, UnfollowOutcome};
            use starling_domain::{Timestamp, User, UserId};

            use super::{$store, Db, ROW_LOCKS, Tx, append_event, translate};
            use crate::{UserRow, limit_param};

            const IS_FOLLOWING: &str =
                "SELECT EXISTS (SELECT 1 FROM follows WHERE follower_id = $1 AND followee_id = $2)";
            const USER_EXISTS: &str = "SELECT 1 FROM users WHERE id = $1";
            // No follow between accounts where either blocks the other: checked in
            // the insert itself, so a block committed just before cannot be raced.
            const INSERT_FOLLOW: &str = "INSERT INTO follows (follower_id, followee_id, follow_id, created_at) \
                 SELECT CAST($1 AS BIGINT), CAST($2 AS BIGINT), CAST($3 AS BIGINT), CAST($4 AS BIGINT) WHERE NOT EXISTS (SELECT 1 FROM blocks \
                 WHERE (blocker_id = $1 AND blocked_id = $2) OR (blocker_id = $2 AND blocked_id = $1)) \
                 ON CONFLICT DO NOTHING";
            const DELETE_FOLLOW: &str = "DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2";
            // PostgreSQL: both accounts locked first, in id order, in a statement
            // of their own: an UPDATE locks rows in whatever order its plan meets
            // them (a sequential scan: where their latest versions lie), so follows
            // crossing at once deadlocked (measured: seeding 1,000 accounts through
            // the API). Locking in the UPDATE's own statement (a CTE) is not
            // enough: its snapshot can predate a version the lock moved on to, and
            // rechecking that version queued behind another follow waiting for this
            // one. `NO KEY UPDATE` is the lock the update takes; foreign-key checks
            // pass it. (Skipped on SQLite, `ROW_LOCKS`: its one writer serialises
        // the transaction whole.)
            const LOCK_BOTH: &str = concat!(
                "SELECT id FROM users WHERE id IN ($1, $2) ORDER BY id",
                dialect!(for_no_key_update)
            );
            const SHIFT_FOLLOW_COUNTERS: &str = "UPDATE users SET \
                 followers_count = followers_count + CASE WHEN id = $2 THEN $3 ELSE 0 END, \
                 following_count = following_count + CASE WHEN id = $1 THEN $3 ELSE 0 END \
                 WHERE id IN ($1, $2) RETURNING id, followers_count";

            #[derive(sqlx::FromRow)]
            struct PositionedUser {
                position: i64,
                #[sqlx(flatten)]
                user: UserRow,
            }

            const FOLLOWERS: &str = "SELECT f.follow_id AS position, u.id, u.handle, u.display_name, u.bio, \
                 u.created_at, u.followers_count, u.following_count, u.posts_count, u.role, u.status \
                 FROM follows f JOIN users u ON u.id = f.follower_id \
                 WHERE f.followee_id = $1 AND f.follow_id < $2 AND u.status = 'active' ORDER BY f.follow_id DESC LIMIT $3";
            const FOLLOWING: &str = "SELECT f.follow_id AS position, u.id, u.handle, u.display_name, u.bio, \
                 u.created_at, u.followers_count, u.following_count, u.posts_count, u.role, u.status \
                 FROM follows f JOIN users u ON u.id = f.followee_id \
                 WHERE f.follower_id = $1 AND f.follow_id < $2 AND u.status = 'active' ORDER BY f.follow_id DESC LIMIT $3";
            const FOLLOWER_IDS: &str = "SELECT follow_id, follower_id FROM follows \
                 WHERE followee_id = $1 AND follow_id > $2 ORDER BY follow_id LIMIT $3";
            const FOLLOWED_WITH_FOLLOWERS_AT_LEAST: &str = "SELECT f.followee_id FROM follows f \
                 JOIN users u ON u.id = f.followee_id WHERE f.follower_id = $1 AND u.followers_count >= $2";

            impl $store {
                /// Runs `change` (inserting or deleting one follow row); when it changed
                /// a row, moves both counters by `delta` and commits with the event
                /// `announce` makes of the followee's new follower count, which it
                /// answers. `None`: nothing to change, nothing committed.
                async fn change_follow<'q>(
                    &self,
                    follower: UserId,
                    followee: UserId,
                    change: sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments>,
                    delta: i64,
                    now: Timestamp,
                    announce: impl FnOnce(i64) -> Option<NewEvent> + Send,
                ) -> Result<Option<i64>, StoreError> {
                    self.wrote(follower);
                    let mut tx = self.begin().await?;
                    let exists: Option<i32> = sqlx::query_scalar(USER_EXISTS)
                        .bind(followee.get())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(translate)?;
                    if exists.is_none() {
                        return Err(StoreError::NotFound(Missing::Account));
                    }
                    let changed = change.execute(&mut *tx).await.map_err(translate)?;
                    if changed.rows_affected() == 0 {
                        return Ok(None);
                    }
                    let followee_followers = shift_follow_counters(&mut tx, follower, followee, delta).await?;
                    if let Some(event) = announce(followee_followers) {
                        append_event(&mut tx, &event, now).await?;
                    }
                    tx.commit().await.map_err(translate)?;
                    self.commits.committed();
                    Ok(Some(followee_followers))
                }

                async fn follow_list(
                    &self,
                    query: &'static str,
                    reader: Option<UserId>,
                    user: UserId,
                    before: Option<i64>,
                    limit: usize,
                ) -> Result<Vec<(i64, User)>, StoreError> {
                    // Tolerates replica lag (an account that just followed reads from
                    // the primary).
                    let rows: Vec<PositionedUser> = self
                        .read_tolerant(reader, |pool| async move {
                            sqlx::query_as(query)
                                .bind(user.get())
                                .bind(before.unwrap_or(i64::MAX))
                                .bind(limit_param(limit))
                                .fetch_all(&pool)
                                .await
                        })
                        .await?;
                    Ok(rows
                        .into_iter()
                        .map(|row| (row.position, row.user.into()))
                        .collect())
                }
            }

            /// Moves both counters by `delta`; answers the followee's new follower count.
            async fn shift_follow_counters(
                tx: &mut Tx,
                follower: UserId,
                followee: UserId,
                delta: i64,
            ) -> Result<i64, StoreError> {
                if ROW_LOCKS {
                    sqlx::query(LOCK_BOTH)
                        .bind(follower.get())
                        .bind(followee.get())
                        .fetch_all(&mut **tx)
                        .await
                        .map_err(translate)?;
                }
                let rows: Vec<(i64, i64)> = sqlx::query_as(SHIFT_FOLLOW_COUNTERS)
                    .bind(follower.get())
                    .bind(followee.get())
                    .bind(delta)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(translate)?;
                rows.into_iter()
                    .find(|(id, _)| *id == followee.get())
                    .map(|(_, followers)| followers)
                    .ok_or(StoreError::UnknownAccount)
            }

            #[async_trait]
            impl GraphStore for $store {
                async fn follow(
                    &self,
                    follower: UserId,
                    followee: UserId,
                    follow_id: i64,
                    announce: Announce<FollowOutcome>,
                    now: Timestamp,
                ) -> Result<FollowOutcome, StoreError> {
                    let change = sqlx::query(INSERT_FOLLOW)
                        .bind(follower.get())
                        .bind(followee.get())
                        .bind(follow_id)
                        .bind(now.millis());
                    let changed = self
                        .change_follow(follower, followee, change, 1, now, |followee_followers| {
                            announce.event_for(&FollowOutcome::Followed { followee_followers })
                        })
                        .await?;
                    Ok(match changed {
                        Some(followee_followers) => FollowOutcome::Followed { followee_followers },
                        None => FollowOutcome::AlreadyFollowing,
                    })
                }

                async fn unfollow(
                    &self,
                    follower: UserId,
                    followee: UserId,
                    announce: Announce<UnfollowOutcome>,
                    now: Timestamp,
                ) -> Result<UnfollowOutcome, StoreError> {
                    let change = sqlx::query(DELETE_FOLLOW)
                        .bind(follower.get())
                        .bind(followee.get());
                    let changed = self
                        .change_follow(follower, followee, change, -1, now, |followee_followers| {
                            announce.event_for(&UnfollowOutcome::Unfollowed { followee_followers })
                        })
                        .await?;
                    Ok(match changed {
                        Some(followee_followers) => UnfollowOutcome::Unfollowed { followee_followers },
                        None => UnfollowOutcome::NotFollowing,
                    })
                }

                async fn followers(
                    &self,
                    reader: Option<UserId>,
                    user: UserId,
                    before: Option<i64>,
                    limit: usize,
                ) -> Result<Vec<(i64, User)>, StoreError> {
                    self.follow_list(FOLLOWERS, reader, user, before, limit).await
                }

                async fn following(
                    &self,
                    reader: Option<UserId>,
                    user: UserId,
                    before: Option<i64>,
                    limit: usize,
                ) -> Result<Vec<(i64, User)>, StoreError> {
                    self.follow_list(FOLLOWING, reader, user, before, limit).await
                }

                async fn follower_ids(
                    &self,
                    user: UserId,
                    after: Option<i64>,
                    limit: usize,
                ) -> Result<Vec<(i64, UserId)>, StoreError> {
                    let rows: Vec<(i64, i64)> = sqlx::query_as(FOLLOWER_IDS)
                        .bind(user.get())
                        .bind(after.unwrap_or(i64::MIN))
                        .bind(limit_param(limit))
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(rows
                        .into_iter()
                        .map(|(position, follower)| (position, UserId(follower)))
                        .collect())
                }

                async fn is_following(&self, follower: UserId, followee: UserId) -> Result<bool, StoreError> {
                    sqlx::query_scalar(IS_FOLLOWING)
                        .bind(follower.get())
                        .bind(followee.get())
                        .fetch_one(&mut *self.read().await?)
                        .await
                        .map_err(translate)
                }

                async fn followed_with_followers_at_least(
                    &self,
                    user: UserId,
                    threshold: i64,
                ) -> Result<Vec<UserId>, StoreError> {
                    let rows: Vec<i64> = sqlx::query_scalar(FOLLOWED_WITH_FOLLOWERS_AT_LEAST)
                        .bind(user.get())
                        .bind(threshold)
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(rows.into_iter().map(UserId).collect())
                }
            }
        }
    };
}
pub(crate) use graph_store;
