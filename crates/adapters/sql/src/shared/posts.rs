//! Posts and likes, with exact post/reply/like counters.
//!
//! Written once for both engines and instantiated in each engine's
//! `mod.rs` (see `crate::shared`).

/// `mod posts` for `$store`.
macro_rules! post_store {
    ($store:ident) => {
        mod posts {
            use async_trait::async_trait;
            use starling_app::ports::{
                Announce, DeleteOutcome, LikeOutcome, Missing, NewEvent, NewPost, PostDeleter, PostStore, StoreError, TimelineEntry,
                UnlikeOutcome,
            };
            use starling_domain::{Post, PostId, PostText, Timestamp, UserId};

            use super::{$store, Db, HOME_ENTRIES, Tx, append_event, id_list, translate};
            use crate::limit_param;

            macro_rules! post_columns {
                () => {
                    "id, author_id, text, reply_to, created_at, deleted_at, like_count, reply_count, mentions, media"
                };
            }

            #[derive(sqlx::FromRow)]
            struct PostRow {
                id: i64,
                author_id: i64,
                text: String,
                reply_to: Option<i64>,
                created_at: i64,
                deleted_at: Option<i64>,
                like_count: i64,
                reply_count: i64,
                mentions: String,
                media: String,
            }

            impl From<PostRow> for Post {
                fn from(row: PostRow) -> Self {
                    Post {
                        id: PostId(row.id),
                        author_id: UserId(row.author_id),
                        text: PostText::stored(row.text),
                        reply_to: row.reply_to.map(PostId),
                        created_at: Timestamp(row.created_at),
                        like_count: row.like_count,
                        reply_count: row.reply_count,
                        deleted: row.deleted_at.is_some(),
                        mentions: crate::decode_mentions(row.id, &row.mentions),
                        media: crate::decode_media(row.id, &row.media),
                    }
                }
            }

            pub(crate) const COUNT_REPLY: &str =
                "UPDATE posts SET reply_count = reply_count + $2 WHERE id = $1 AND deleted_at IS NULL";
            const ATTACH_MEDIA: &str = concat!(
                "UPDATE media SET post_id = $1 WHERE id ",
                dialect!(any 2),
                " AND owner_id = $3 AND post_id IS NULL AND state = 'ready'"
            );
            /// A deleted post's images go to the sweep.
            const DETACH_MEDIA: &str = "UPDATE media SET post_id = NULL, created_at = 0 WHERE post_id = $1";
            const COUNT_POST: &str = "UPDATE users SET posts_count = posts_count + $2 WHERE id = $1";
            // FOR UPDATE: a concurrent delete or like waits, so counters stay exact.
            const POST_FOR_DELETE: &str = concat!(
                "SELECT author_id, reply_to FROM posts WHERE id = $1 AND deleted_at IS NULL",
                dialect!(for_update)
            );
            const TOMBSTONE_POST: &str =
                "UPDATE posts SET deleted_at = $2, text = '', mentions = '[]', media = '[]' WHERE id = $1";
            const POSTS_BY_IDS: &str =
                concat!("SELECT ", post_columns!(), " FROM posts WHERE id ", dialect!(any 1));
            const POSTS_BY_AUTHOR: &str = concat!(
                "SELECT ",
                post_columns!(),
                " FROM posts WHERE author_id = $1 AND deleted_at IS NULL AND id < $2 ORDER BY id DESC LIMIT $3"
            );
            const REPLIES: &str = concat!(
                "SELECT ",
                post_columns!(),
                " FROM posts WHERE reply_to = $1 AND deleted_at IS NULL AND id > $2 ORDER BY id LIMIT $3"
            );
            const AUTHOR_ENTRIES: &str = "SELECT id, author_id FROM posts \
                 WHERE author_id = $1 AND deleted_at IS NULL AND id < $2 ORDER BY id DESC LIMIT $3";
            // No row lock here: the like's foreign key takes a key-share lock and the
            // counter update a no-key-update lock, which do not conflict, so concurrent
            // likes of one post do not deadlock; the update re-checks that it is live.
            const LIVE_POST_AUTHOR: &str = "SELECT author_id FROM posts WHERE id = $1 AND deleted_at IS NULL";
            const INSERT_LIKE: &str =
                "INSERT INTO likes (user_id, post_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
            const DELETE_LIKE: &str = "DELETE FROM likes WHERE user_id = $1 AND post_id = $2";
            const COUNT_LIKE: &str =
                "UPDATE posts SET like_count = like_count + $2 WHERE id = $1 AND deleted_at IS NULL";
            const LIKED_AMONG: &str =
                concat!("SELECT post_id FROM likes WHERE user_id = $1 AND post_id ", dialect!(any 2));
            const RECENT_LIKES: &str =
                "SELECT post_id FROM likes WHERE user_id = $1 ORDER BY post_id DESC LIMIT $2";

            async fn live_post_author(tx: &mut Tx, post: PostId) -> Result<UserId, StoreError> {
                let author: Option<i64> = sqlx::query_scalar(LIVE_POST_AUTHOR)
                    .bind(post.get())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(translate)?;
                author.map(UserId).ok_or(StoreError::NotFound(Missing::Post))
            }

            pub(crate) async fn shift(
                tx: &mut Tx,
                statement: &'static str,
                id: i64,
                delta: i64,
            ) -> Result<u64, StoreError> {
                let done = sqlx::query(statement)
                    .bind(id)
                    .bind(delta)
                    .execute(&mut **tx)
                    .await
                    .map_err(translate)?;
                Ok(done.rows_affected())
            }

            /// Undoes an attach of a post that is not written after all.
            const UNDO_ATTACH: &str = "UPDATE media SET post_id = NULL WHERE post_id = $1";

            /// Attaches a new post's uploads (in its group commit) if every one
            /// is still the author's, ready and unattached; otherwise attaches
            /// none and answers false.
            pub(crate) async fn attach_media(tx: &mut Tx, post: &NewPost) -> Result<bool, StoreError> {
                let attached = sqlx::query(ATTACH_MEDIA)
                    .bind(post.id.get())
                    .bind(id_list(&post.media, |media| media.id.get()))
                    .bind(post.author_id.get())
                    .execute(&mut **tx)
                    .await
                    .map_err(translate)?;
                if attached.rows_affected() == post.media.len() as u64 {
                    return Ok(true);
                }
                undo_attach(tx, post).await?;
                Ok(false)
            }

            /// Undoes `attach_media` for a post that is not written after all.
            pub(crate) async fn undo_attach(tx: &mut Tx, post: &NewPost) -> Result<(), StoreError> {
                if post.media.is_empty() {
                    return Ok(());
                }
                sqlx::query(UNDO_ATTACH)
                    .bind(post.id.get())
                    .execute(&mut **tx)
                    .await
                    .map_err(translate)?;
                Ok(())
            }

            /// The posts of a group commit's `batch` that can be written, after
            /// attaching their uploads and counting their replies in `tx`, and
            /// each post's outcome (one refused fails alone, its attach undone).
            pub(crate) async fn accept<'a>(
                tx: &mut Tx,
                batch: &'a [crate::group_commit::Pending],
            ) -> Result<(Vec<Result<Post, StoreError>>, Vec<&'a crate::group_commit::Pending>), StoreError> {
                let mut outcomes = Vec::with_capacity(batch.len());
                let mut accepted = Vec::with_capacity(batch.len());
                for entry in batch {
                    let post = &entry.post;
                    if !post.media.is_empty() && !attach_media(tx, post).await? {
                        outcomes.push(Err(StoreError::MediaUnavailable));
                        continue;
                    }
                    if let Some(parent) = post.reply_to
                        && shift(tx, COUNT_REPLY, parent.get(), 1).await? == 0
                    {
                        undo_attach(tx, post).await?;
                        outcomes.push(Err(StoreError::NotFound(Missing::Post)));
                        continue;
                    }
                    outcomes.push(Ok(crate::group_commit::written(post)));
                    accepted.push(entry);
                }
                Ok((outcomes, accepted))
            }

            fn entries(rows: Vec<(i64, i64)>) -> Vec<TimelineEntry> {
                rows.into_iter()
                    .map(|(post, author)| TimelineEntry {
                        post_id: PostId(post),
                        author_id: UserId(author),
                    })
                    .collect()
            }

            impl $store {
                /// Runs `change` (inserting or deleting one like of a live post); when it
                /// changed a row, moves the post's like count by `delta` and commits with
                /// the event `announce` makes of the post's author, which it answers.
                /// `None`: nothing to change, nothing committed.
                async fn change_like(
                    &self,
                    post: PostId,
                    change: sqlx::query::Query<'_, Db, <Db as sqlx::Database>::Arguments>,
                    delta: i64,
                    now: Timestamp,
                    announce: impl FnOnce(UserId) -> Option<NewEvent> + Send,
                ) -> Result<Option<UserId>, StoreError> {
                    let mut tx = self.begin().await?;
                    let post_author_id = live_post_author(&mut tx, post).await?;
                    let changed = change.execute(&mut *tx).await.map_err(translate)?;
                    if changed.rows_affected() == 0 {
                        return Ok(None);
                    }
                    if shift(&mut tx, COUNT_LIKE, post.get(), delta).await? == 0 {
                        // Deleted while we liked it.
                        return Err(StoreError::NotFound(Missing::Post));
                    }
                    if let Some(event) = announce(post_author_id) {
                        append_event(&mut tx, &event, now).await?;
                    }
                    tx.commit().await.map_err(translate)?;
                    self.commits.committed();
                    Ok(Some(post_author_id))
                }
            }

            #[async_trait]
            impl PostStore for $store {
                async fn create_post(&self, new_post: NewPost) -> Result<Post, StoreError> {
                    // Its author reads from the primary for a while (read-your-writes).
                    self.wrote(new_post.author_id);
                    self.posts.create(new_post).await
                }

                async fn delete_post(
                    &self,
                    post: PostId,
                    requester: PostDeleter,
                    announce: Announce<DeleteOutcome>,
                    now: Timestamp,
                ) -> Result<DeleteOutcome, StoreError> {
                    if let PostDeleter::Author(author) = &requester {
                        self.wrote(*author);
                    }
                    let mut tx = self.begin().await?;
                    let row: Option<(i64, Option<i64>)> = sqlx::query_as(POST_FOR_DELETE)
                        .bind(post.get())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(translate)?;
                    let Some((author, reply_to)) = row else {
                        return Err(StoreError::NotFound(Missing::Post));
                    };
                    match &requester {
                        PostDeleter::Author(requester) if author != requester.get() => {
                            return Ok(DeleteOutcome::NotAuthor);
                        }
                        PostDeleter::Author(_) => {}
                        PostDeleter::Moderator(audit) => super::admin::record_audit(&mut tx, audit).await?,
                    }
                    sqlx::query(TOMBSTONE_POST)
                        .bind(post.get())
                        .bind(now.millis())
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?;
                    sqlx::query(DETACH_MEDIA)
                        .bind(post.get())
                        .execute(&mut *tx)
                        .await
                        .map_err(translate)?;
                    shift(&mut tx, COUNT_POST, author, -1).await?;
                    if let Some(parent) = reply_to {
                        shift(&mut tx, COUNT_REPLY, parent, -1).await?;
                    }
                    let outcome = DeleteOutcome::Deleted {
                        author: UserId(author),
                        reply_to: reply_to.map(PostId),
                    };
                    if let Some(event) = announce.event_for(&outcome) {
                        append_event(&mut tx, &event, now).await?;
                    }
                    tx.commit().await.map_err(translate)?;
                    self.commits.committed();
                    Ok(outcome)
                }

                async fn posts_by_ids(&self, ids: &[PostId]) -> Result<Vec<Post>, StoreError> {
                    if ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    // On the primary: what hydration loads is cached, and a row read
                    // from a replica a moment behind would be served stale for the
                    // cache's whole lifetime.
                    let rows: Vec<PostRow> = sqlx::query_as(POSTS_BY_IDS)
                        .bind(id_list(ids, |id| id.get()))
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(rows.into_iter().map(Post::from).collect())
                }

                async fn posts_by_author(
                    &self,
                    reader: Option<UserId>,
                    author: UserId,
                    before: Option<PostId>,
                    limit: usize,
                ) -> Result<Vec<Post>, StoreError> {
                    // A profile's posts tolerate replica lag (their author, having just
                    // posted, reads from the primary).
                    let rows: Vec<PostRow> = self
                        .read_tolerant(reader, |pool| async move {
                            sqlx::query_as(POSTS_BY_AUTHOR)
                                .bind(author.get())
                                .bind(before.map_or(i64::MAX, PostId::get))
                                .bind(limit_param(limit))
                                .fetch_all(&pool)
                                .await
                        })
                        .await?;
                    Ok(rows.into_iter().map(Post::from).collect())
                }

                async fn replies(
                    &self,
                    reader: Option<UserId>,
                    parent: PostId,
                    after: Option<PostId>,
                    limit: usize,
                ) -> Result<Vec<Post>, StoreError> {
                    // A thread tolerates replica lag like a profile's posts do.
                    let rows: Vec<PostRow> = self
                        .read_tolerant(reader, |pool| async move {
                            sqlx::query_as(REPLIES)
                                .bind(parent.get())
                                .bind(after.map_or(0, PostId::get))
                                .bind(limit_param(limit))
                                .fetch_all(&pool)
                                .await
                        })
                        .await?;
                    Ok(rows.into_iter().map(Post::from).collect())
                }

                async fn author_entries(
                    &self,
                    author: UserId,
                    before: Option<PostId>,
                    limit: usize,
                ) -> Result<Vec<TimelineEntry>, StoreError> {
                    let rows: Vec<(i64, i64)> = sqlx::query_as(AUTHOR_ENTRIES)
                        .bind(author.get())
                        .bind(before.map_or(i64::MAX, PostId::get))
                        .bind(limit_param(limit))
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(entries(rows))
                }

                async fn home_entries(
                    &self,
                    user: UserId,
                    exclude_followers_at_least: Option<i64>,
                    before: Option<PostId>,
                    limit: usize,
                ) -> Result<Vec<TimelineEntry>, StoreError> {
                    let rows: Vec<(i64, i64)> = sqlx::query_as(HOME_ENTRIES)
                        .bind(user.get())
                        .bind(before.map_or(i64::MAX, PostId::get))
                        .bind(exclude_followers_at_least.unwrap_or(i64::MAX))
                        .bind(limit_param(limit))
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(entries(rows))
                }

                async fn like(
                    &self,
                    user: UserId,
                    post: PostId,
                    announce: Announce<LikeOutcome>,
                    now: Timestamp,
                ) -> Result<LikeOutcome, StoreError> {
                    self.wrote(user);
                    let change = sqlx::query(INSERT_LIKE)
                        .bind(user.get())
                        .bind(post.get())
                        .bind(now.millis());
                    let changed = self
                        .change_like(post, change, 1, now, |post_author| {
                            announce.event_for(&LikeOutcome::Liked { post_author })
                        })
                        .await?;
                    Ok(match changed {
                        Some(post_author) => LikeOutcome::Liked { post_author },
                        None => LikeOutcome::AlreadyLiked,
                    })
                }

                async fn unlike(
                    &self,
                    user: UserId,
                    post: PostId,
                    announce: Announce<UnlikeOutcome>,
                    now: Timestamp,
                ) -> Result<UnlikeOutcome, StoreError> {
                    self.wrote(user);
                    let change = sqlx::query(DELETE_LIKE).bind(user.get()).bind(post.get());
                    let changed = self
                        .change_like(post, change, -1, now, |_| {
                            announce.event_for(&UnlikeOutcome::Unliked)
                        })
                        .await?;
                    Ok(match changed {
                        Some(_) => UnlikeOutcome::Unliked,
                        None => UnlikeOutcome::NotLiked,
                    })
                }

                async fn liked_among(&self, user: UserId, posts: &[PostId]) -> Result<Vec<PostId>, StoreError> {
                    if posts.is_empty() {
                        return Ok(Vec::new());
                    }
                    let rows: Vec<i64> = sqlx::query_scalar(LIKED_AMONG)
                        .bind(user.get())
                        .bind(id_list(posts, |id| id.get()))
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(rows.into_iter().map(PostId).collect())
                }

                async fn recent_likes(&self, user: UserId, limit: usize) -> Result<Vec<PostId>, StoreError> {
                    let rows: Vec<i64> = sqlx::query_scalar(RECENT_LIKES)
                        .bind(user.get())
                        .bind(limit_param(limit))
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(rows.into_iter().map(PostId).collect())
                }
            }
        }
    };
}
pub(crate) use post_store;
