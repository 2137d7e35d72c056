//! How PostgreSQL reads the outbox as a log (the rest is `crate::shared`).
//!
//! Rows get their log `position` from a sequencer, not at insert: see the
//! migration. Any reader may sequence; an advisory lock makes it one at a time.

use starling_app::ports::StoreError;

use super::{PostgresStore, translate};
use crate::{OutboxRow, limit_param};

/// Advisory lock key of the outbox sequencer ("STARLING" in ASCII hex, roughly).
const SEQUENCER_LOCK: i64 = 0x5354_4152_4c49;
/// Rows sequenced per pass.
const SEQUENCE_BATCH: i64 = 10_000;

/// How long a read waits for committed rows to become positionable.
const CATCH_UP: std::time::Duration = std::time::Duration::from_millis(200);

const TRY_SEQUENCER_LOCK: &str = "SELECT pg_try_advisory_xact_lock($1)";
// Positioning a row leaves its old version's entry in the partial index
// `outbox_unpositioned`, dead, until a vacuum may remove it: autovacuum
// visits a database about once a minute, and a standby's
// `hot_standby_feedback` holds the horizon back by seconds more. Tens of
// thousands of dead entries at a few thousand posts a second, which every
// scan from the index's start visited (2–3 ms a call, the write path's
// costliest statements in `starling-bench scaled`). The scans therefore start at
// the transaction id below which everything has its position (the
// sequencer's last horizon, kept by the store), past the dead entries.
const UNPOSITIONED: &str = "SELECT EXISTS (SELECT 1 FROM outbox \
     WHERE position IS NULL AND xid >= $1::bigint::text::xid8)";
// Positions for rows whose transactions have all finished (xid below the
// snapshot's xmin: no transaction still running can add a row before them),
// in transaction order, continuing after the highest position given.
// Answers the horizon, how many rows it positioned and the highest
// transaction id among them: everything below the horizon has a position
// unless the limit cut the pass short, and then everything below that id.
const SEQUENCE: &str = "WITH horizon AS ( \
         SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin \
     ), pending AS ( \
         SELECT sequence, xid, row_number() OVER (ORDER BY xid, sequence) AS rank \
         FROM outbox, horizon \
         WHERE position IS NULL AND xid >= $2::bigint::text::xid8 AND xid < horizon.xmin \
         ORDER BY xid, sequence LIMIT $1 \
     ), top AS (SELECT coalesce(max(position), 0) AS position FROM outbox), \
     moved AS ( \
         UPDATE outbox SET position = top.position + pending.rank \
         FROM pending, top WHERE outbox.sequence = pending.sequence \
         RETURNING pending.xid \
     ) \
     SELECT (SELECT xmin::text::bigint FROM horizon), count(*), max(xid::text::bigint) FROM moved";
const EVENTS_AFTER: &str = "SELECT position, event_id, kind, payload, occurred_at, trace_parent \
     FROM outbox WHERE position > $1 ORDER BY position LIMIT $2";

impl PostgresStore {
    /// Gives positions to finished rows, unless another reader is doing so.
    async fn sequence_outbox(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let mut tx = self.begin().await?;
        let locked: bool = sqlx::query_scalar(TRY_SEQUENCER_LOCK)
            .bind(SEQUENCER_LOCK)
            .fetch_one(&mut *tx)
            .await
            .map_err(translate)?;
        let mut done_below = None;
        if locked {
            let from = self.sequenced_below.load(Ordering::Relaxed);
            let (horizon, moved, highest): (i64, i64, Option<i64>) = sqlx::query_as(SEQUENCE)
                .bind(SEQUENCE_BATCH)
                .bind(from)
                .fetch_one(&mut *tx)
                .await
                .map_err(translate)?;
            // Cut short by the limit: rows of the last transaction id may
            // be left, so the next pass starts at it (inclusive).
            done_below = Some(match highest {
                Some(highest) if moved >= SEQUENCE_BATCH => highest,
                _ => horizon,
            });
        }
        tx.commit().await.map_err(translate)?;
        // Only once committed: a pass rolled back positioned nothing.
        if let Some(done_below) = done_below {
            self.sequenced_below
                .fetch_max(done_below, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl PostgresStore {
    /// Up to `limit` rows after log position `after`, once the rows that
    /// committed before this call have their positions.
    pub(super) async fn read_outbox(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let started = std::time::Instant::now();
        loop {
            self.sequence_outbox().await?;
            let rows: Vec<OutboxRow> = sqlx::query_as(EVENTS_AFTER)
                .bind(after)
                .bind(limit_param(limit))
                .fetch_all(self.pool())
                .await
                .map_err(translate)?;
            // Committed rows still without a position wait for a transaction
            // that began before them (anywhere in the cluster) to end. Give
            // it a moment, so that what committed before this call is read.
            let waiting = rows.len() < limit
                && started.elapsed() < CATCH_UP
                && sqlx::query_scalar::<_, bool>(UNPOSITIONED)
                    .bind(
                        self.sequenced_below
                            .load(std::sync::atomic::Ordering::Relaxed),
                    )
                    .fetch_one(self.pool())
                    .await
                    .map_err(translate)?;
            if !waiting {
                return Ok(rows);
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
