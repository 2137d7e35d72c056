//! The event-log port, consumer side: durable, ordered, at-least-once delivery
//! of outbox events to named consumers (fan-out worker, notifier, ...).

use async_trait::async_trait;
use starling_domain::EventEnvelope;

#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("event log unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Another worker consumes this (partition of the) log now, or is to
    /// from now on: a subscription ends, and subscribing waits its turn.
    #[error("another worker consumes this part of the log")]
    Elsewhere,
}

#[async_trait]
pub trait EventLog: Send + Sync {
    /// A subscription that resumes after the last event `consumer` acknowledged.
    async fn subscribe(&self, consumer: &str) -> Result<Box<dyn EventSubscription>, EventLogError>;

    /// A hint that new events were committed, so waiting consumers look now
    /// instead of at their next poll. Never required for correctness.
    fn wake(&self);
}

#[async_trait]
pub trait EventSubscription: Send {
    /// The next events after the last acknowledged one, oldest first, at most
    /// `max`. Waits until some exist; cancel-safe (nothing is lost when the
    /// future is dropped).
    async fn next_batch(&mut self, max: usize) -> Result<Vec<EventEnvelope>, EventLogError>;

    /// Acknowledges every delivered event up to and including `envelope`;
    /// they are not delivered to this consumer again. An adapter may make
    /// acknowledgements durable in batches: after a crash, events since the
    /// last durable one are delivered again (handlers are idempotent).
    async fn ack_through(&mut self, envelope: &EventEnvelope) -> Result<(), EventLogError>;

    /// Makes every acknowledgement so far durable; called before the
    /// subscription is dropped.
    async fn close(&mut self) -> Result<(), EventLogError>;

    /// Parks an event that keeps failing, so that the rest can flow.
    async fn dead_letter(
        &mut self,
        envelope: &EventEnvelope,
        error: &str,
    ) -> Result<(), EventLogError>;
}

/// The producer side of a broker-backed event log: the relay hands it
/// committed outbox events, oldest first.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes `events` and returns once the broker has stored every one.
    /// Idempotent per event id: publishing an event again (after a crash
    /// before the outbox checkpoint moved) stores nothing new.
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), EventLogError>;
}
