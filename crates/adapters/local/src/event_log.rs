//! The event log of embedded mode: the SQL outbox itself, tailed in process.
//!
//! Each consumer keeps a checkpoint (the last sequence it handled) in SQL, so
//! after a crash it resumes where it stopped and events are replayed, never
//! lost. Writers call `wake` after committing; consumers also poll, so a
//! missed wake only delays delivery.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use starling_app::ports::{EventLog, EventLogError, EventSubscription, OutboxStore, StoreError};
use starling_domain::{EventEnvelope, Timestamp};
use tokio::sync::watch;

pub struct OutboxEventLog {
    store: Arc<dyn OutboxStore>,
    appended: watch::Sender<u64>,
    poll_interval: Duration,
}

impl OutboxEventLog {
    pub fn new(store: Arc<dyn OutboxStore>, poll_interval: Duration) -> Self {
        Self {
            store,
            appended: watch::Sender::new(0),
            poll_interval,
        }
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
        }))
    }

    fn wake(&self) {
        self.appended
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }
}

struct OutboxSubscription {
    store: Arc<dyn OutboxStore>,
    consumer: String,
    /// The last sequence handed out by `next_batch`.
    position: i64,
    appended: watch::Receiver<u64>,
    poll_interval: Duration,
}

#[async_trait]
impl EventSubscription for OutboxSubscription {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<EventEnvelope>, EventLogError> {
        loop {
            // Mark the current generation seen *before* reading, so a commit
            // that lands after the read still wakes the wait below.
            self.appended.borrow_and_update();
            let batch = self
                .store
                .events_after(self.position, max)
                .await
                .map_err(unavailable)?;
            if let Some(last) = batch.last() {
                self.position = last.sequence;
                return Ok(batch);
            }
            // A closed channel means the log is gone; polling still works.
            let _ = tokio::time::timeout(self.poll_interval, self.appended.changed()).await;
        }
    }

    async fn ack_through(&mut self, envelope: &EventEnvelope) -> Result<(), EventLogError> {
        self.store
            .save_checkpoint(&self.consumer, envelope.sequence)
            .await
            .map_err(unavailable)
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
