//! The outbox read as a log, consumer checkpoints and dead letters.

use async_trait::async_trait;
use starling_app::ports::{OutboxStore, StoreError, UndecodableEvent};
use starling_domain::{Event, EventEnvelope, EventId, Timestamp};

use super::{SqliteStore, append_event, translate};
use crate::limit_param;

const EVENTS_AFTER: &str = "SELECT sequence, event_id, kind, payload, occurred_at, trace_parent FROM outbox \
     WHERE sequence > ?1 ORDER BY sequence LIMIT ?2";
const CHECKPOINT: &str = "SELECT sequence FROM consumer_checkpoints WHERE consumer = ?1";
const SAVE_CHECKPOINT: &str = "INSERT INTO consumer_checkpoints (consumer, sequence, updated_at) \
     VALUES (?1, ?2, ?3) \
     ON CONFLICT (consumer) DO UPDATE SET sequence = max(sequence, excluded.sequence), updated_at = excluded.updated_at";
const DEAD_LETTER: &str = "INSERT OR REPLACE INTO dead_letters \
     (consumer, sequence, event_id, kind, payload, error, failed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const PRUNE: &str = "DELETE FROM outbox WHERE sequence <= ?1 AND occurred_at < ?2";
const BACKLOG: &str = "SELECT count(*), min(occurred_at) FROM outbox WHERE sequence > \
     (SELECT coalesce(max(sequence), 0) FROM consumer_checkpoints WHERE consumer = ?1)";

#[derive(sqlx::FromRow)]
struct OutboxRow {
    sequence: i64,
    event_id: i64,
    kind: String,
    payload: String,
    occurred_at: i64,
    trace_parent: Option<String>,
}

impl OutboxRow {
    fn decode(self) -> Result<EventEnvelope, UndecodableEvent> {
        match serde_json::from_str::<Event>(&self.payload) {
            Ok(event) => Ok(EventEnvelope {
                id: EventId(self.event_id),
                sequence: self.sequence,
                occurred_at: Timestamp(self.occurred_at),
                event,
                trace_parent: self.trace_parent,
            }),
            Err(error) => Err(UndecodableEvent {
                sequence: self.sequence,
                id: EventId(self.event_id),
                kind: self.kind,
                payload: self.payload,
                error: error.to_string(),
            }),
        }
    }
}

impl SqliteStore {
    #[allow(clippy::too_many_arguments)]
    async fn park(
        &self,
        consumer: &str,
        sequence: i64,
        event_id: EventId,
        kind: &str,
        payload: &str,
        error: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(DEAD_LETTER)
            .bind(consumer)
            .bind(sequence)
            .bind(event_id.get())
            .bind(kind)
            .bind(payload)
            .bind(error)
            .bind(now.millis())
            .execute(&mut *self.write().await?)
            .await
            .map_err(translate)?;
        Ok(())
    }
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn events_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Result<EventEnvelope, UndecodableEvent>>, StoreError> {
        let rows: Vec<OutboxRow> = sqlx::query_as(EVENTS_AFTER)
            .bind(after)
            .bind(limit_param(limit))
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(translate)?;
        Ok(rows.into_iter().map(OutboxRow::decode).collect())
    }

    async fn checkpoint(&self, consumer: &str) -> Result<i64, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(CHECKPOINT)
            .bind(consumer)
            .fetch_optional(&mut *self.read().await?)
            .await
            .map_err(translate)?;
        Ok(found.unwrap_or(0))
    }

    async fn save_checkpoint(&self, consumer: &str, sequence: i64) -> Result<(), StoreError> {
        sqlx::query(SAVE_CHECKPOINT)
            .bind(consumer)
            .bind(sequence)
            .bind(Timestamp::now().millis())
            .execute(&mut *self.write().await?)
            .await
            .map_err(translate)?;
        Ok(())
    }

    async fn backlog(&self, consumer: &str) -> Result<(u64, Option<Timestamp>), StoreError> {
        let (count, oldest): (i64, Option<i64>) = sqlx::query_as(BACKLOG)
            .bind(consumer)
            .fetch_one(&mut *self.read().await?)
            .await
            .map_err(translate)?;
        Ok((u64::try_from(count).unwrap_or(0), oldest.map(Timestamp)))
    }

    async fn dead_letter_undecodable(
        &self,
        consumer: &str,
        row: &UndecodableEvent,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.park(
            consumer,
            row.sequence,
            row.id,
            &row.kind,
            &row.payload,
            &row.error,
            now,
        )
        .await
    }

    async fn dead_letter(
        &self,
        consumer: &str,
        envelope: &EventEnvelope,
        error: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let payload = serde_json::to_string(&envelope.event)
            .map_err(|encode| StoreError::Unexpected(encode.into()))?;
        let kind = envelope.event.kind();
        self.park(
            consumer,
            envelope.sequence,
            envelope.id,
            kind,
            &payload,
            error,
            now,
        )
        .await
    }

    async fn prune_outbox(
        &self,
        consumers: &[&str],
        older_than: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut handled_by_all = i64::MAX;
        for consumer in consumers {
            handled_by_all = handled_by_all.min(self.checkpoint(consumer).await?);
        }
        if consumers.is_empty() || handled_by_all == 0 {
            return Ok(0);
        }
        let done = sqlx::query(PRUNE)
            .bind(handled_by_all)
            .bind(older_than.millis())
            .execute(&mut *self.write().await?)
            .await
            .map_err(translate)?;
        Ok(done.rows_affected())
    }

    async fn append_event(
        &self,
        id: EventId,
        event: &Event,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        append_event(&mut tx, id, event, now).await?;
        tx.commit().await.map_err(translate)?;
        Ok(())
    }
}
