//! The relay of the scaled-out mode: tails the SQL outbox and publishes each
//! committed event to the broker, then moves its outbox checkpoint. An event
//! is marked relayed only after the broker stored it; a crash in between
//! publishes it again, and the broker drops the duplicate by event id. While
//! the broker is down the outbox simply grows, and drains in order when it
//! returns: no accepted write is lost to a broker outage.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::ports::{EventLog, EventPublisher};
use crate::workers::ConsumerOptions;
use crate::workers::consumer::{sleep_or_shutdown, subscribe};

/// The outbox consumer name of the relay (its checkpoint).
pub const RELAY_CONSUMER: &str = "relay";

/// Relays until `shutdown`; what was published is acknowledged first.
pub async fn run_relay(
    outbox: Arc<dyn EventLog>,
    publisher: Arc<dyn EventPublisher>,
    options: ConsumerOptions,
    shutdown: CancellationToken,
) {
    let Some(mut subscription) = subscribe(&*outbox, RELAY_CONSUMER, &options, &shutdown).await
    else {
        return;
    };
    tracing::info!(consumer = RELAY_CONSUMER, "relay started");
    let mut failures = 0u32;
    'relay: loop {
        let batch = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            batch = subscription.next_batch(options.batch_size) => batch,
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(consumer = RELAY_CONSUMER, error = %error, "cannot read the outbox");
                failures += 1;
                if sleep_or_shutdown(options.backoff(failures), &shutdown).await {
                    break;
                }
                continue;
            }
        };
        let Some(last) = batch.last() else {
            continue;
        };
        // The same batch again until the broker takes it: publishing is
        // idempotent, and skipping ahead would reorder the log.
        loop {
            match publisher.publish(&batch).await {
                Ok(()) => {
                    failures = 0;
                    break;
                }
                Err(error) => {
                    metrics::counter!(crate::metric::RELAY_PUBLISH_FAILURES_TOTAL).increment(1);
                    tracing::warn!(error = %error, events = batch.len(), "cannot publish; retrying");
                    failures += 1;
                    if sleep_or_shutdown(options.backoff(failures), &shutdown).await {
                        break 'relay;
                    }
                }
            }
        }
        metrics::counter!(crate::metric::RELAY_PUBLISHED_TOTAL).increment(batch.len() as u64);
        let lag_ms = (starling_domain::Timestamp::now_ms() - last.occurred_at.millis()).max(0);
        metrics::histogram!(crate::metric::RELAY_LAG_SECONDS).record(lag_ms as f64 / 1000.0);
        if let Err(error) = subscription.ack_through(last).await {
            // Published but not checkpointed: the next run publishes these
            // again and the broker drops them as duplicates.
            tracing::warn!(error = %error, "cannot move the relay checkpoint");
        }
    }
    if let Err(error) = subscription.close().await {
        tracing::warn!(error = %error, "cannot save the relay checkpoint; events will be published again");
    }
    tracing::info!(consumer = RELAY_CONSUMER, "relay stopped");
}
