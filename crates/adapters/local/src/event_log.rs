//! The event log of embedded mode: the SQL outbox itself, tailed in process.
//!
//! Each consumer keeps a checkpoint (the last sequence it handled) in SQL, so
//! after a crash it resumes where it stopped and events are replayed, never
//! lost. Writers call `wake` after committing; consumers also poll, so a
//! missed wake only delays delivery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use starling_app::ports::{
    EventLog, EventLogError, EventSubscription, OutboxStore, StoreError, UndecodableEvent,
};
use starling_domain::{EventEnvelope, Timestamp};
use tokio::sync::watch;

pub struct OutboxEventLog {
    store: Arc<dyn OutboxStore>,
    appended: watch::Sender<u64>,
    poll_interval: Duration,
    /// Tells readers in other processes too, when there are any.
    announce: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl OutboxEventLog {
    pub fn new(store: Arc<dyn OutboxStore>, poll_interval: Duration) -> Self {
        Self {
            store,
            appended: watch::Sender::new(0),
            poll_interval,
            announce: None,
        }
    }

    /// Also calls `announce` at each wake, so that readers in other
    /// processes (a relay, scaled out) learn of a commit without waiting
    /// for their next poll.
    #[must_use]
    pub fn announcing_with(mut self, announce: Arc<dyn Fn() + Send + Sync>) -> Self {
        self.announce = Some(announce);
        self
    }

    /// Wakes this process's readers: for a commit another process announced.
    pub fn wake_readers(&self) {
        self.appended
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// Deletes events that every one of `consumers` has handled and that are
    /// older than `retention`.
    pub async fn prune(
        &self,
        consumers: &[&str],
        retention: Duration,
    ) -> Result<u64, EventLogError> {
        let retention_secs = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        self.store
            .prune_outbox(consumers, Timestamp::now().plus_seconds(-retention_secs))
            .await
            .map_err(unavailable)
    }
}

fn unavailable(error: StoreError) -> EventLogError {
    EventLogError::Unavailable(Box::new(error))
}

#[async_trait]
impl EventLog for OutboxEventLog {
    async fn subscribe(&self, consumer: &str) -> Result<Box<dyn EventSubscription>, EventLogError> {
        let position = self.store.checkpoint(consumer).await.map_err(unavailable)?;
        Ok(Box::new(OutboxSubscription {
            store: self.store.clone(),
            consumer: consumer.to_owned(),
            position,
            appended: self.appended.subscribe(),
            poll_interval: self.poll_interval,
            acked: position,
            persisted: position,
            persisted_at: Instant::now(),
        }))
    }

    fn wake(&self) {
        self.wake_readers();
        if let Some(announce) = &self.announce {
            announce();
        }
    }
}

struct OutboxSubscription {
    store: Arc<dyn OutboxStore>,
    consumer: String,
    /// The last sequence handed out by `next_batch`.
    position: i64,
    appended: watch::Receiver<u64>,
    poll_interval: Duration,
    /// The last sequence acknowledged, and the last one written to SQL.
    acked: i64,
    persisted: i64,
    persisted_at: Instant,
}

/// Checkpoints are written at most this often: one write per event would
/// double the load on SQLite's single writer. A crash replays at most this
/// much, which idempotent handlers absorb.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

impl OutboxSubscription {
    async fn persist(&mut self) -> Result<(), EventLogError> {
        if self.acked > self.persisted {
            self.store
                .save_checkpoint(&self.consumer, self.acked)
                .await
                .map_err(unavailable)?;
            self.persisted = self.acked;
        }
        self.persisted_at = Instant::now();
        Ok(())
    }

    /// Dead-letters a row this version cannot decode and moves past it.
    async fn park(&mut self, row: &UndecodableEvent) -> Result<(), EventLogError> {
        tracing::error!(
            consumer = %self.consumer,
            sequence = row.sequence,
            kind = %row.kind,
            error = %row.error,
            "undecodable outbox event; dead-lettering it"
        );
        self.store
            .dead_letter_undecodable(&self.consumer, row, Timestamp::now())
            .await
            .map_err(unavailable)?;
        self.acked = self.acked.max(row.sequence);
        self.persist().await?;
        metrics::counter!(starling_app::metric::EVENTS_DEAD_LETTERED_TOTAL, "consumer" => self.consumer.clone())
            .increment(1);
        self.position = row.sequence;
        Ok(())
    }
}

#[async_trait]
impl EventSubscription for OutboxSubscription {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<EventEnvelope>, EventLogError> {
        loop {
            // Mark the current generation seen *before* reading, so a commit
            // that lands after the read still wakes the wait below.
            self.appended.borrow_and_update();
            let rows = self
                .store
                .events_after(self.position, max)
                .await
                .map_err(unavailable)?;
            if rows.is_empty() {
                // Caught up: make the acknowledgements so far durable before
                // waiting, or an idle consumer's checkpoint (and the backlog
                // and age that operators watch) would trail until the next
                // event arrives.
                if self.acked > self.persisted {
                    self.persist().await?;
                }
                // A closed channel means the log is gone; polling still works.
                let _ = tokio::time::timeout(self.poll_interval, self.appended.changed()).await;
                continue;
            }
            let mut batch = Vec::with_capacity(rows.len());
            for row in rows {
                match row {
                    Ok(envelope) => batch.push(envelope),
                    // Hand out what precedes a bad row first; it is parked
                    // when it comes first, so order is kept.
                    Err(_) if !batch.is_empty() => break,
                    Err(undecodable) => self.park(&undecodable).await?,
                }
            }
            if let Some(last) = batch.last() {
                self.position = last.sequence;
                return Ok(batch);
            }
        }
    }

    async fn ack_through(&mut self, envelope: &EventEnvelope) -> Result<(), EventLogError> {
        self.acked = self.acked.max(envelope.sequence);
        if self.persisted_at.elapsed() >= CHECKPOINT_EVERY {
            self.persist().await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<(), EventLogError> {
        self.persist().await
    }

    async fn dead_letter(
        &mut self,
        envelope: &EventEnvelope,
        error: &str,
    ) -> Result<(), EventLogError> {
        self.store
            .dead_letter(&self.consumer, envelope, error, Timestamp::now())
            .await
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use starling_app::ports::StoreResult;
    use starling_domain::{Event, EventId, UserId};

    use super::*;

    /// An outbox whose rows are given, with row 2 undecodable.
    #[derive(Default)]
    struct ScriptedOutbox {
        parked: Mutex<Vec<i64>>,
        checkpoint: Mutex<i64>,
    }

    fn row(sequence: i64) -> Result<EventEnvelope, UndecodableEvent> {
        if sequence == 2 {
            return Err(UndecodableEvent {
                sequence,
                id: EventId(sequence),
                kind: "from_the_future".to_owned(),
                payload: "{}".to_owned(),
                error: "unknown variant".to_owned(),
            });
        }
        Ok(EventEnvelope {
            id: EventId(sequence),
            sequence,
            occurred_at: Timestamp::now(),
            event: Event::UserRegistered {
                user_id: UserId(sequence),
            },
            trace_parent: None,
        })
    }

    #[async_trait]
    impl OutboxStore for ScriptedOutbox {
        async fn events_after(
            &self,
            after: i64,
            limit: usize,
        ) -> StoreResult<Vec<Result<EventEnvelope, UndecodableEvent>>> {
            Ok(((after + 1)..=4).take(limit).map(row).collect())
        }
        async fn checkpoint(&self, _: &str) -> StoreResult<i64> {
            Ok(*self.checkpoint.lock().unwrap())
        }
        async fn save_checkpoint(&self, _: &str, sequence: i64) -> StoreResult<()> {
            *self.checkpoint.lock().unwrap() = sequence;
            Ok(())
        }
        async fn backlog(&self, _: &str) -> StoreResult<(u64, Option<Timestamp>)> {
            Ok((0, None))
        }
        async fn dead_letter_undecodable(
            &self,
            _: &str,
            row: &UndecodableEvent,
            _: Timestamp,
        ) -> StoreResult<()> {
            self.parked.lock().unwrap().push(row.sequence);
            Ok(())
        }
        async fn dead_letter(
            &self,
            _: &str,
            _: &EventEnvelope,
            _: &str,
            _: Timestamp,
        ) -> StoreResult<()> {
            Ok(())
        }
        async fn prune_outbox(&self, _: &[&str], _: Timestamp) -> StoreResult<u64> {
            Ok(0)
        }
        async fn append_event(&self, _: EventId, _: &Event, _: Timestamp) -> StoreResult<()> {
            Ok(())
        }

        fn notify_commits(&self, _: starling_app::ports::CommitListener) {}
    }

    #[tokio::test]
    async fn a_consumer_that_caught_up_makes_its_checkpoint_durable() {
        let outbox = Arc::new(ScriptedOutbox::default());
        let log = OutboxEventLog::new(outbox.clone(), Duration::from_millis(10));
        let mut subscription = log.subscribe("relay").await.unwrap();
        subscription.next_batch(10).await.unwrap();
        let batch = subscription.next_batch(10).await.unwrap();
        // Acknowledged within the checkpoint interval: not written yet.
        subscription
            .ack_through(batch.last().unwrap())
            .await
            .unwrap();
        assert_eq!(*outbox.checkpoint.lock().unwrap(), 2);
        // Waiting for more (there is none) writes it.
        let waited =
            tokio::time::timeout(Duration::from_millis(100), subscription.next_batch(10)).await;
        assert!(waited.is_err(), "no event was left to hand out");
        assert_eq!(*outbox.checkpoint.lock().unwrap(), 4);
    }

    #[tokio::test]
    async fn an_undecodable_row_is_parked_in_order_and_skipped() {
        let outbox = Arc::new(ScriptedOutbox::default());
        let log = OutboxEventLog::new(outbox.clone(), Duration::from_millis(10));
        let mut subscription = log.subscribe("fanout").await.unwrap();
        let sequences = |batch: Vec<EventEnvelope>| -> Vec<i64> {
            batch.iter().map(|envelope| envelope.sequence).collect()
        };
        // What precedes the bad row is handed out first, untouched.
        assert_eq!(
            sequences(subscription.next_batch(10).await.unwrap()),
            vec![1]
        );
        assert!(outbox.parked.lock().unwrap().is_empty());
        // Then the bad row is parked and the log flows on past it.
        assert_eq!(
            sequences(subscription.next_batch(10).await.unwrap()),
            vec![3, 4]
        );
        assert_eq!(*outbox.parked.lock().unwrap(), vec![2]);
        assert_eq!(*outbox.checkpoint.lock().unwrap(), 2);
    }
}
