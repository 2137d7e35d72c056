//! How SQLite reads the outbox as a log (the rest is `crate::shared`): a
//! row's `sequence` is given at insert by the one writer, in commit order,
//! so the log is read by it directly.

use super::{SqliteStore, translate};
use crate::{OutboxRow, limit_param};
use starling_app::ports::StoreError;

const EVENTS_AFTER: &str = "SELECT sequence AS position, event_id, kind, payload, occurred_at, trace_parent \
     FROM outbox WHERE sequence > $1 ORDER BY sequence LIMIT $2";

impl SqliteStore {
    /// Up to `limit` rows after log position `after`.
    pub(super) async fn read_outbox(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        sqlx::query_as(EVENTS_AFTER)
            .bind(after)
            .bind(limit_param(limit))
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(translate)
    }
}
