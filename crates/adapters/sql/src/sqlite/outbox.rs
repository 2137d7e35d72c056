//! The outbox read as a log, consumer checkpoints and dead letters.

use async_trait::async_trait;
use starling_app::ports::{OutboxStore, StoreError};
use starling_domain::{Event, EventEnvelope, EventId, Timestamp};

use super::{SqliteStore, append_event, limit_param, translate};

const EVENTS_AFTER: &str = "SELECT sequence, event_id, payload, occurred_at, trace_parent FROM outbox \
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

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn events_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<EventEnvelope>, StoreError> {
        let rows: Vec<(i64, i64, String, i64, Option<String>)> = sqlx::query_as(EVENTS_AFTER)
            .bind(after)
            .bind(limit_param(limit))
            .fetch_all(&mut *self.read().await?)
            .await
            .map_err(translate)?;
        rows.into_iter()
            .map(|(sequence, event_id, payload, occurred_at, trace_parent)| {
                let event: Event = serde_json::from_str(&payload).map_err(|error| {
                    StoreError::Unexpected(
                        anyhow::Error::new(error)
                            .context(format!("decoding outbox event at sequence {sequence}")),
                    )
                })?;
                Ok(EventEnvelope {
                    id: EventId(event_id),
                    sequence,
                    occurred_at: Timestamp(occurred_at),
                    event,
                    trace_parent,
                })
            })
            .collect()
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

    async fn dead_letter(
        &self,
        consumer: &str,
        envelope: &EventEnvelope,
        error: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let payload = serde_json::to_string(&envelope.event)
            .map_err(|encode| StoreError::Unexpected(encode.into()))?;
        sqlx::query(DEAD_LETTER)
            .bind(consumer)
            .bind(envelope.sequence)
            .bind(envelope.id.get())
            .bind(envelope.event.kind())
            .bind(payload)
            .bind(error)
            .bind(now.millis())
            .execute(&mut *self.write().await?)
            .await
            .map_err(translate)?;
        Ok(())
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
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let sequence = append_event(&mut tx, id, event, now).await?;
        tx.commit().await.map_err(translate)?;
        Ok(sequence)
    }
}
