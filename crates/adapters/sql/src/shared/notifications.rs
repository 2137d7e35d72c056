//! Notifications: written by the notifier, read by their recipient, always
//! on the primary (the read position must be exact). How a batch is
//! inserted is each engine's own (`insert_notifications`: one `UNNEST`
//! statement on PostgreSQL, a statement per row in SQLite's transaction).
//!
//! Written once for both engines and instantiated in each engine's
//! `mod.rs` (see `crate::shared`).

/// `mod notifications` for `$store`.
macro_rules! notification_store {
    ($store:ident) => {
        mod notifications {
            use async_trait::async_trait;
            use starling_app::ports::{NotificationState, NotificationStore, StoreError};
            use starling_domain::{Notification, NotificationId, NotificationKind, PostId, Timestamp, UserId};

            use super::{$store, text_list, translate};
            use crate::NotificationRow;

            /// `$2`: the kinds, or NULL for every kind.
            const LIST: &str = concat!(
                "SELECT id, recipient_id, kind, actor_id, post_id, created_at \
                 FROM notifications WHERE recipient_id = $1 \
                 AND (",
                dialect!(texts 2),
                " IS NULL OR kind ",
                dialect!(any 2),
                ") AND id < $3 ORDER BY id DESC LIMIT $4"
            );
            /// Never beyond the newest notification: a position from the future would
            /// mark notifications read before they exist. (`WHERE true` lets SQLite
            /// parse the upsert after a SELECT.)
            const MARK_READ: &str = concat!(
                "INSERT INTO notification_reads (user_id, read_through) \
                 SELECT $1, ",
                dialect!(least),
                "(coalesce($2, newest), newest) FROM \
                 (SELECT coalesce(max(id), 0) AS newest FROM notifications WHERE recipient_id = $1) AS latest \
                 WHERE true ON CONFLICT (user_id) DO UPDATE \
                 SET read_through = ",
                dialect!(greatest),
                "(notification_reads.read_through, EXCLUDED.read_through) \
                 RETURNING read_through"
            );
            const READ_THROUGH: &str =
                "SELECT coalesce((SELECT read_through FROM notification_reads WHERE user_id = $1), 0)";
            const UNREAD: &str = "SELECT count(*) FROM (SELECT 1 FROM notifications \
                 WHERE recipient_id = $1 AND id > $2 LIMIT $3) AS unread";
            const WITHDRAW: &str = "DELETE FROM notifications \
                 WHERE post_id = $3 AND actor_id = $2 AND kind = $1 AND created_at >= $4";
            const REMOVE_FOR_POST: &str = "DELETE FROM notifications WHERE post_id = $1";

            #[async_trait]
            impl NotificationStore for $store {
                async fn add_notifications(
                    &self,
                    notifications: &[Notification],
                ) -> Result<Vec<NotificationId>, StoreError> {
                    if notifications.is_empty() {
                        return Ok(Vec::new());
                    }
                    self.insert_notifications(notifications).await
                }

                async fn notifications(
                    &self,
                    recipient: UserId,
                    kinds: &[NotificationKind],
                    before: Option<NotificationId>,
                    limit: usize,
                ) -> Result<Vec<Notification>, StoreError> {
                    let kinds: Vec<&str> = kinds.iter().map(|kind| kind.as_str()).collect();
                    let kinds = (!kinds.is_empty()).then(|| text_list(&kinds));
                    let rows: Vec<NotificationRow> = sqlx::query_as(LIST)
                        .bind(recipient.get())
                        .bind(kinds)
                        .bind(before.map_or(i64::MAX, NotificationId::get))
                        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                        .fetch_all(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    rows.into_iter().map(Notification::try_from).collect()
                }

                async fn mark_notifications_read(
                    &self,
                    recipient: UserId,
                    through: Option<NotificationId>,
                ) -> Result<i64, StoreError> {
                    sqlx::query_scalar(MARK_READ)
                        .bind(recipient.get())
                        .bind(through.map(NotificationId::get))
                        .fetch_one(&mut *self.write().await?)
                        .await
                        .map_err(translate)
                }

                async fn notification_state(
                    &self,
                    recipient: UserId,
                    cap: u64,
                ) -> Result<NotificationState, StoreError> {
                    let read_through: i64 = sqlx::query_scalar(READ_THROUGH)
                        .bind(recipient.get())
                        .fetch_one(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    let unread: i64 = sqlx::query_scalar(UNREAD)
                        .bind(recipient.get())
                        .bind(read_through)
                        .bind(i64::try_from(cap).unwrap_or(i64::MAX))
                        .fetch_one(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(NotificationState {
                        read_through,
                        unread: u64::try_from(unread).unwrap_or(0),
                    })
                }

                async fn withdraw_notification(
                    &self,
                    kind: NotificationKind,
                    actor: UserId,
                    post: PostId,
                    since: Timestamp,
                ) -> Result<u64, StoreError> {
                    Ok(sqlx::query(WITHDRAW)
                        .bind(kind.as_str())
                        .bind(actor.get())
                        .bind(post.get())
                        .bind(since.millis())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?
                        .rows_affected())
                }

                async fn remove_post_notifications(&self, post: PostId) -> Result<u64, StoreError> {
                    Ok(sqlx::query(REMOVE_FOR_POST)
                        .bind(post.get())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?
                        .rows_affected())
                }
            }
        }
    };
}
pub(crate) use notification_store;
