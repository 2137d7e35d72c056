//! The consumer loop: pull a batch, handle each event (retrying with
//! exponential backoff and full jitter), acknowledge, repeat. An event that
//! keeps failing is dead-lettered so the rest of the log keeps flowing.
//! Delivery is at least once: handlers must be idempotent.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use starling_domain::{EventEnvelope, Timestamp};
use tokio_util::sync::CancellationToken;

use crate::error::AppResult;
use crate::ports::EventLog;

#[async_trait]
pub trait EventHandler: Send + Sync {
    /// The durable consumer name: its checkpoint survives restarts.
    fn name(&self) -> &'static str;

    /// Applies one event. Must be idempotent: after a crash, events since the
    /// last acknowledgement are delivered again.
    async fn handle(&self, envelope: &EventEnvelope) -> AppResult<()>;
}

#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    pub batch_size: usize,
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            batch_size: 256,
            max_attempts: 8,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl ConsumerOptions {
    /// Full jitter: a uniform wait in [0, min(max, initial * 2^attempt)].
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.max_backoff);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
    }
}

/// Runs `handler` over the event log until `shutdown` is cancelled. On
/// shutdown, events already handled are acknowledged and the rest are left
/// for the next run.
pub async fn run_consumer(
    events: Arc<dyn EventLog>,
    handler: Arc<dyn EventHandler>,
    options: ConsumerOptions,
    shutdown: CancellationToken,
) {
    let name = handler.name();
    let mut failures = 0u32;
    let mut subscription = loop {
        match events.subscribe(name).await {
            Ok(subscription) => break subscription,
            Err(error) => {
                tracing::warn!(consumer = name, error = %error, "cannot subscribe; retrying");
                failures += 1;
                if sleep_or_shutdown(options.backoff(failures), &shutdown).await {
                    return;
                }
            }
        }
    };
    tracing::info!(consumer = name, "consumer started");
    failures = 0;
    loop {
        let batch = tokio::select! {
            () = shutdown.cancelled() => break,
            batch = subscription.next_batch(options.batch_size) => batch,
        };
        let batch = match batch {
            Ok(batch) => {
                failures = 0;
                batch
            }
            Err(error) => {
                tracing::warn!(consumer = name, error = %error, "cannot read the event log");
                failures += 1;
                if sleep_or_shutdown(options.backoff(failures), &shutdown).await {
                    break;
                }
                continue;
            }
        };
        let mut handled: Option<&EventEnvelope> = None;
        for envelope in &batch {
            if shutdown.is_cancelled() {
                break;
            }
            handle_with_retries(&*handler, &mut *subscription, envelope, &options, &shutdown).await;
            handled = Some(envelope);
        }
        if let Some(last) = handled
            && let Err(error) = subscription.ack_through(last).await
        {
            // Not acknowledged means delivered again: handlers are idempotent.
            tracing::warn!(consumer = name, error = %error, "cannot acknowledge; events will be redelivered");
        }
    }
    tracing::info!(consumer = name, "consumer stopped");
}

async fn handle_with_retries(
    handler: &dyn EventHandler,
    subscription: &mut dyn crate::ports::EventSubscription,
    envelope: &EventEnvelope,
    options: &ConsumerOptions,
    shutdown: &CancellationToken,
) {
    let name = handler.name();
    let kind = envelope.event.kind();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match handler.handle(envelope).await {
            Ok(()) => {
                let lag_ms = (Timestamp::now_ms() - envelope.occurred_at.millis()).max(0);
                metrics::histogram!("starling_event_handling_lag_seconds", "consumer" => name)
                    .record(lag_ms as f64 / 1000.0);
                metrics::counter!("starling_events_handled_total", "consumer" => name, "kind" => kind)
                    .increment(1);
                return;
            }
            Err(error) if attempt < options.max_attempts && !shutdown.is_cancelled() => {
                tracing::warn!(consumer = name, event_id = %envelope.id, attempt, error = %error, "event failed; retrying");
                metrics::counter!("starling_event_retries_total", "consumer" => name).increment(1);
                tokio::time::sleep(options.backoff(attempt)).await;
            }
            Err(error) => {
                tracing::error!(consumer = name, event_id = %envelope.id, attempt, error = ?error, "event failed for good; dead-lettering");
                metrics::counter!("starling_events_dead_lettered_total", "consumer" => name)
                    .increment(1);
                if let Err(park_error) =
                    subscription.dead_letter(envelope, &error.to_string()).await
                {
                    tracing::error!(consumer = name, event_id = %envelope.id, error = %park_error, "cannot dead-letter the event");
                }
                return;
            }
        }
    }
}

/// Sleeps for `duration`; true when shutdown came first.
async fn sleep_or_shutdown(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(duration) => false,
    }
}
