//! Notifications: written by the notifier, read by their recipient.

use async_trait::async_trait;
use starling_app::ports::{NotificationState, NotificationStore, StoreError};
use starling_domain::{Notification, NotificationId, NotificationKind, PostId, Timestamp, UserId};

use super::{SqliteStore, limit_param, translate};
use crate::NotificationRow;

const INSERT: &str = "INSERT INTO notifications \
     (id, recipient_id, kind, actor_id, post_id, created_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING RETURNING id";
/// The notification already stored for what happened.
const EXISTING: &str = "SELECT id FROM notifications \
     WHERE recipient_id = ?1 AND kind = ?2 AND actor_id = ?3 AND post_id = ?4";
/// `?2`: the kinds as a JSON array, or NULL for every kind.
const LIST: &str = "SELECT id, recipient_id, kind, actor_id, post_id, created_at \
     FROM notifications WHERE recipient_id = ?1 \
     AND (?2 IS NULL OR kind IN (SELECT value FROM json_each(?2))) \
     AND id < ?3 ORDER BY id DESC LIMIT ?4";
/// Never beyond the newest notification: a position from the future would
/// mark notifications read before they exist. (`WHERE true` lets SQLite
/// parse the upsert after a SELECT.)
const MARK_READ: &str = "INSERT INTO notification_reads (user_id, read_through) \
     SELECT ?1, min(coalesce(?2, newest), newest) FROM \
     (SELECT coalesce(max(id), 0) AS newest FROM notifications WHERE recipient_id = ?1) \
     WHERE true \
     ON CONFLICT (user_id) DO UPDATE SET read_through = max(read_through, excluded.read_through) \
     RETURNING read_through";
const READ_THROUGH: &str =
    "SELECT coalesce((SELECT read_through FROM notification_reads WHERE user_id = ?1), 0)";
const UNREAD: &str = "SELECT count(*) FROM (SELECT 1 FROM notifications \
     WHERE recipient_id = ?1 AND id > ?2 LIMIT ?3)";
const WITHDRAW: &str = "DELETE FROM notifications \
     WHERE post_id = ?3 AND actor_id = ?2 AND kind = ?1 AND created_at >= ?4";
const REMOVE_FOR_POST: &str = "DELETE FROM notifications WHERE post_id = ?1";

/// The stored form of "no post" (see the migration).
fn post_column(notification: &Notification) -> i64 {
    notification.post.map_or(0, PostId::get)
}

/// The kinds filter as the JSON array the list query expands; `None` for all.
fn kinds_filter(kinds: &[NotificationKind]) -> Option<String> {
    // Kinds serialise as their stored names.
    (!kinds.is_empty()).then(|| {
        serde_json::Value::from(kinds.iter().map(|kind| kind.as_str()).collect::<Vec<_>>())
            .to_string()
    })
}

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn add_notifications(
        &self,
        notifications: &[Notification],
    ) -> Result<Vec<NotificationId>, StoreError> {
        if notifications.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let mut stored = Vec::with_capacity(notifications.len());
        for notification in notifications {
            let added: Option<i64> = sqlx::query_scalar(INSERT)
                .bind(notification.id.get())
                .bind(notification.recipient.get())
                .bind(notification.kind.as_str())
                .bind(notification.actor.get())
                .bind(post_column(notification))
                .bind(notification.created_at.millis())
                .fetch_optional(&mut *tx)
                .await
                .map_err(translate)?;
            let id = match added {
                Some(id) => id,
                None => sqlx::query_scalar(EXISTING)
                    .bind(notification.recipient.get())
                    .bind(notification.kind.as_str())
                    .bind(notification.actor.get())
                    .bind(post_column(notification))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(translate)?
                    .unwrap_or(notification.id.get()),
            };
            stored.push(NotificationId(id));
        }
        tx.commit().await.map_err(translate)?;
        Ok(stored)
    }

    async fn notifications(
        &self,
        recipient: UserId,
        kinds: &[NotificationKind],
        before: Option<NotificationId>,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let rows: Vec<NotificationRow> = sqlx::query_as(LIST)
            .bind(recipient.get())
            .bind(kinds_filter(kinds))
            .bind(before.map_or(i64::MAX, NotificationId::get))
            .bind(limit_param(limit))
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
        let mut connection = self.read().await?;
        let read_through: i64 = sqlx::query_scalar(READ_THROUGH)
            .bind(recipient.get())
            .fetch_one(&mut *connection)
            .await
            .map_err(translate)?;
        let unread = unread(&mut connection, recipient, read_through, cap).await?;
        Ok(NotificationState {
            read_through,
            unread,
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

async fn unread(
    connection: &mut sqlx::SqliteConnection,
    recipient: UserId,
    read_through: i64,
    cap: u64,
) -> Result<u64, StoreError> {
    let count: i64 = sqlx::query_scalar(UNREAD)
        .bind(recipient.get())
        .bind(read_through)
        .bind(i64::try_from(cap).unwrap_or(i64::MAX))
        .fetch_one(connection)
        .await
        .map_err(translate)?;
    Ok(u64::try_from(count).unwrap_or(0))
}
