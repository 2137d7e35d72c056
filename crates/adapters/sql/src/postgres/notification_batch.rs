//! PostgreSQL's batch insert of notifications (the rest is
//! `crate::shared`): one statement for the whole batch.

use starling_app::ports::StoreError;
use starling_domain::{Notification, NotificationId, PostId};

use super::{PostgresStore, translate};

/// Rows already notified are skipped.
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

impl PostgresStore {
    /// Stores `notifications` (not empty); answers each one's id, the id
    /// stored before for one already notified.
    pub(super) async fn insert_notifications(
        &self,
        notifications: &[Notification],
    ) -> Result<Vec<NotificationId>, StoreError> {
        let column =
            |get: fn(&Notification) -> i64| notifications.iter().map(get).collect::<Vec<_>>();
        let kinds: Vec<&str> = notifications.iter().map(|n| n.kind.as_str()).collect();
        // The stored form of "no post" is 0 (see the migration).
        let posts = column(|n| n.post.map_or(0, PostId::get));
        let added: Vec<i64> = sqlx::query_scalar(INSERT)
            .bind(column(|n| n.id.get()))
            .bind(column(|n| n.recipient.get()))
            .bind(&kinds)
            .bind(column(|n| n.actor.get()))
            .bind(&posts)
            .bind(column(|n| n.created_at.millis()))
            .fetch_all(&mut *self.write().await?)
            .await
            .map_err(translate)?;
        let mut stored: Vec<NotificationId> = notifications.iter().map(|n| n.id).collect();
        if added.len() < notifications.len() {
            let existing: Vec<(i64, i64)> = sqlx::query_as(EXISTING)
                .bind(column(|n| n.recipient.get()))
                .bind(&kinds)
                .bind(column(|n| n.actor.get()))
                .bind(&posts)
                .fetch_all(&mut *self.read().await?)
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
}
