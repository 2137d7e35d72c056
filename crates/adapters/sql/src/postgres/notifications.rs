//! Notifications on PostgreSQL: written by the notifier, read by their
//! recipient, always on the primary (the read position must be exact).

use async_trait::async_trait;
use starling_app::ports::{NotificationState, NotificationStore, StoreError};
use starling_domain::{Notification, NotificationId, NotificationKind, PostId, Timestamp, UserId};

use super::{PostgresStore, translate};
use crate::NotificationRow;

/// One statement for a whole batch; rows already notified are skipped.
const INSERT: &str = "INSERT INTO notifications \
     (id, recipient_id, kind, actor_id, post_id, created_at) \
     SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[], $6::BIGINT[]) \
     ON CONFLICT DO NOTHING RETURNING id";
/// The notifications already stored for what happened, by the index of
/// each in the arrays (a redelivery's, rarely asked).
const EXISTING: &str = "SELECT wanted.i, n.id FROM \
     UNNEST($1::BIGINT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[]) WITH ORDINALITY \
       AS wanted (recipient_id, kind, actor_id, post_id, i) \
     JOIN notifications n USING (recipient_id, kind, actor_id, post_id)";
/// `$2`: the kinds, or NULL for every kind.
const LIST: &str = "SELECT id, recipient_id, kind, actor_id, post_id, created_at \
     FROM notifications WHERE recipient_id = $1 \
     AND ($2::TEXT[] IS NULL OR kind = ANY($2)) \
     AND id < $3 ORDER BY id DESC LIMIT $4";
/// Never beyond the newest notification: a position from the future would
/// mark notifications read before they exist.
const MARK_READ: &str = "INSERT INTO notification_reads (user_id, read_through) \
     SELECT $1, LEAST(coalesce($2, newest), newest) FROM \
     (SELECT coalesce(max(id), 0) AS newest FROM notifications WHERE recipient_id = $1) AS latest \
     ON CONFLICT (user_id) DO UPDATE \
     SET read_through = GREATEST(notification_reads.read_through, EXCLUDED.read_through) \
     RETURNING read_through";
const READ_THROUGH: &str =
    "SELECT coalesce((SELECT read_through FROM notification_reads WHERE user_id = $1), 0)";
const UNREAD: &str = "SELECT count(*) FROM (SELECT 1 FROM notifications \
     WHERE recipient_id = $1 AND id > $2 LIMIT $3) AS unread";
const WITHDRAW: &str = "DELETE FROM notifications \
     WHERE post_id = $3 AND actor_id = $2 AND kind = $1 AND created_at >= $4";
const REMOVE_FOR_POST: &str = "DELETE FROM notifications WHERE post_id = $1";

#[async_trait]
impl NotificationStore for PostgresStore {
    async fn add_notifications(
        &self,
        notifications: &[Notification],
    ) -> Result<Vec<NotificationId>, StoreError> {
        if notifications.is_empty() {
            return Ok(Vec::new());
        }
        let column =
            |get: fn(&Notification) -> i64| notifications.iter().map(get).collect::<Vec<_>>();
        let kinds: Vec<&str> = notifications.iter().map(|n| n.kind.as_str()).collect();
        let added: Vec<i64> = sqlx::query_scalar(INSERT)
            .bind(column(|n| n.id.get()))
            .bind(column(|n| n.recipient.get()))
            .bind(&kinds)
            .bind(column(|n| n.actor.get()))
            .bind(column(|n| n.post.map_or(0, PostId::get)))
            .bind(column(|n| n.created_at.millis()))
            .fetch_all(self.pool())
            .await
            .map_err(translate)?;
        let mut stored: Vec<NotificationId> = notifications.iter().map(|n| n.id).collect();
        if added.len() < notifications.len() {
            let existing: Vec<(i64, i64)> = sqlx::query_as(EXISTING)
                .bind(column(|n| n.recipient.get()))
                .bind(&kinds)
                .bind(column(|n| n.actor.get()))
                .bind(column(|n| n.post.map_or(0, PostId::get)))
                .fetch_all(self.pool())
                .await
                .map_err(translate)?;
            for (index, id) in existing {
                if let Some(slot) = usize::try_from(index - 1)
                    .ok()
                    .and_then(|index| stored.get_mut(index))
                {
                    *slot = NotificationId(id);
                }
            }
        }
        Ok(stored)
    }

    async fn notifications(
        &self,
        recipient: UserId,
        kinds: &[NotificationKind],
        before: Option<NotificationId>,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let kinds: Option<Vec<&str>> =
            (!kinds.is_empty()).then(|| kinds.iter().map(|kind| kind.as_str()).collect());
        let rows: Vec<NotificationRow> = sqlx::query_as(LIST)
            .bind(recipient.get())
            .bind(kinds)
            .bind(before.map_or(i64::MAX, NotificationId::get))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(self.pool())
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
            .fetch_one(self.pool())
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
            .fetch_one(self.pool())
            .await
            .map_err(translate)?;
        let unread: i64 = sqlx::query_scalar(UNREAD)
            .bind(recipient.get())
            .bind(read_through)
            .bind(i64::try_from(cap).unwrap_or(i64::MAX))
            .fetch_one(self.pool())
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
            .execute(self.pool())
            .await
            .map_err(translate)?
            .rows_affected())
    }

    async fn remove_post_notifications(&self, post: PostId) -> Result<u64, StoreError> {
        Ok(sqlx::query(REMOVE_FOR_POST)
            .bind(post.get())
            .execute(self.pool())
            .await
            .map_err(translate)?
            .rows_affected())
    }
}
