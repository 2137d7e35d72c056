//! The outbox read as a log, consumer checkpoints and dead letters, and the
//! store's health checks.
//!
//! How the log is read (`read_outbox`) is each engine's own: SQLite's one
//! writer gives rows their log position (`sequence`) as they are inserted;
//! PostgreSQL's transactions commit out of order, so a sequencer gives
//! `position`s afterwards (`postgres/outbox_log.rs`). The rest is written once
//! for both and instantiated in each engine's `mod.rs` (see
//! `crate::shared`); `dialect!(position)` names the position column.

/// `mod outbox` and `mod health` for `$store`.
macro_rules! outbox_store {
    ($store:ident) => {
        mod outbox {
            use async_trait::async_trait;
            use starling_app::ports::{NewEvent, OutboxStore, StoreError, UndecodableEvent};
            use starling_domain::{Event, EventEnvelope, EventId, Timestamp};

            use super::{append_event, translate, $store};

            const CHECKPOINT: &str = concat!(
                "SELECT ",
                dialect!(position),
                " FROM consumer_checkpoints WHERE consumer = $1"
            );
            const SAVE_CHECKPOINT: &str = concat!(
                "INSERT INTO consumer_checkpoints (consumer, ",
                dialect!(position),
                ", updated_at) VALUES ($1, $2, $3) ON CONFLICT (consumer) DO UPDATE SET ",
                dialect!(position),
                " = ",
                dialect!(greatest),
                "(consumer_checkpoints.",
                dialect!(position),
                ", excluded.",
                dialect!(position),
                "), updated_at = excluded.updated_at"
            );
            const DEAD_LETTER: &str = concat!(
                "INSERT INTO dead_letters (consumer, ",
                dialect!(position),
                ", event_id, kind, payload, error, failed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (consumer, ",
                dialect!(position),
                ") DO UPDATE SET error = excluded.error, failed_at = excluded.failed_at"
            );
            const PRUNE: &str = concat!(
                "DELETE FROM outbox WHERE ",
                dialect!(position),
                " <= $1 AND occurred_at < $2"
            );
            // Rows not positioned yet (PostgreSQL) are waiting too.
            const BACKLOG: &str = concat!(
                "SELECT count(*), min(occurred_at) FROM outbox WHERE ",
                dialect!(position),
                " IS NULL OR ",
                dialect!(position),
                " > (SELECT coalesce(max(",
                dialect!(position),
                "), 0) FROM consumer_checkpoints WHERE consumer = $1)"
            );

            impl $store {
                #[allow(clippy::too_many_arguments)]
                async fn park(
                    &self,
                    consumer: &str,
                    position: i64,
                    event_id: EventId,
                    kind: &str,
                    payload: &str,
                    error: &str,
                    now: Timestamp,
                ) -> Result<(), StoreError> {
                    sqlx::query(DEAD_LETTER)
                        .bind(consumer)
                        .bind(position)
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
            impl OutboxStore for $store {
                async fn events_after(
                    &self,
                    after: i64,
                    limit: usize,
                ) -> Result<Vec<Result<EventEnvelope, UndecodableEvent>>, StoreError> {
                    let rows = self.read_outbox(after, limit).await?;
                    Ok(rows.into_iter().map(crate::OutboxRow::decode).collect())
                }

                async fn checkpoint(&self, consumer: &str) -> Result<i64, StoreError> {
                    let found: Option<i64> = sqlx::query_scalar(CHECKPOINT)
                        .bind(consumer)
                        .fetch_optional(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(found.unwrap_or(0))
                }

                async fn save_checkpoint(
                    &self,
                    consumer: &str,
                    sequence: i64,
                ) -> Result<(), StoreError> {
                    sqlx::query(SAVE_CHECKPOINT)
                        .bind(consumer)
                        .bind(sequence)
                        .bind(Timestamp::now().millis())
                        .execute(&mut *self.write().await?)
                        .await
                        .map_err(translate)?;
                    Ok(())
                }

                async fn backlog(
                    &self,
                    consumer: &str,
                ) -> Result<(u64, Option<Timestamp>), StoreError> {
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
                    // Outside any request: no trace to join.
                    let event = NewEvent::new(id, event.clone(), None);
                    append_event(&mut tx, &event, now).await?;
                    tx.commit().await.map_err(translate)?;
                    self.commits.committed();
                    Ok(())
                }

                fn notify_commits(&self, listener: starling_app::ports::CommitListener) {
                    self.commits.connect(listener);
                }
            }
        }

        mod health {
            use starling_app::ports::{StoreError, StoreHealth};

            use super::{translate, $store};

            const HIGHEST_ID: &str = concat!(
                "SELECT ",
                dialect!(greatest),
                "( \
                 (SELECT coalesce(max(id), 0) FROM users), \
                 (SELECT coalesce(max(id), 0) FROM posts), \
                 (SELECT coalesce(max(follow_id), 0) FROM follows), \
                 (SELECT coalesce(max(event_id), 0) FROM outbox), \
                 (SELECT coalesce(max(id), 0) FROM notifications), \
                 (SELECT coalesce(max(family_id), 0) FROM refresh_tokens), \
                 (SELECT coalesce(max(id), 0) FROM sessions), \
                 (SELECT coalesce(max(id), 0) FROM api_keys), \
                 (SELECT coalesce(max(id), 0) FROM audit_log), \
                 (SELECT coalesce(max(id), 0) FROM exports))"
            );

            #[async_trait::async_trait]
            impl StoreHealth for $store {
                async fn ping(&self) -> Result<(), StoreError> {
                    sqlx::query("SELECT 1")
                        .execute(&mut *self.read().await?)
                        .await
                        .map_err(translate)?;
                    Ok(())
                }

                async fn highest_id(&self) -> Result<i64, StoreError> {
                    sqlx::query_scalar(HIGHEST_ID)
                        .fetch_one(&mut *self.read().await?)
                        .await
                        .map_err(translate)
                }
            }
        }
    };
}
pub(crate) use outbox_store;
