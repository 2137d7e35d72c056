//! SQLite's batch insert of notifications (the rest is `crate::shared`):
//! a statement per row inside the one writer's transaction.

use starling_app::ports::StoreError;
use starling_domain::{Notification, NotificationId, PostId};

use super::{SqliteStore, translate};

const INSERT: &str = "INSERT INTO notifications \
     (id, recipient_id, kind, actor_id, post_id, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id";
/// The notification already stored for what happened.
const EXISTING: &str = "SELECT id FROM notifications \
     WHERE recipient_id = $1 AND kind = $2 AND actor_id = $3 AND post_id = $4";

impl SqliteStore {
    /// Stores `notifications` (not empty); answers each one's id, the id
    /// stored before for one already notified.
    pub(super) async fn insert_notifications(
        &self,
        notifications: &[Notification],
    ) -> Result<Vec<NotificationId>, StoreError> {
        let mut tx = self.begin().await?;
        let mut stored = Vec::with_capacity(notifications.len());
        for notification in notifications {
            // The stored form of "no post" is 0 (see the migration).
            let post = notification.post.map_or(0, PostId::get);
            let added: Option<i64> = sqlx::query_scalar(INSERT)
                .bind(notification.id.get())
                .bind(notification.recipient.get())
                .bind(notification.kind.as_str())
                .bind(notification.actor.get())
                .bind(post)
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
                    .bind(post)
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
}
