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
use tracing::Instrument;

use crate::error::{AppError, AppResult};
use crate::ports::{EventLog, EventLogError};

#[async_trait]
pub trait EventHandler: Send + Sync {
    /// The durable consumer name: its checkpoint survives restarts.
    fn name(&self) -> &'static str;

    /// Applies one event. Must be idempotent: after a crash, events since the
    /// last acknowledgement are delivered again.
    async fn handle(&self, envelope: &EventEnvelope) -> AppResult<()>;

    /// Applies a batch of consecutive events, oldest first, with the effect
    /// of handling each in turn. A handler that can do a batch in fewer
    /// round trips than its events (the fan-out worker) overrides it; on
    /// an error the loop handles the batch's events one by one instead,
    /// from the first, with retries (so one failing event is isolated).
    async fn handle_batch(&self, batch: &[EventEnvelope]) -> AppResult<()> {
        for envelope in batch {
            self.handle(envelope).await?;
        }
        Ok(())
    }

    /// Whether `handle_batch` does better than one event at a time.
    fn handles_batches(&self) -> bool {
        false
    }

    /// Called on each new subscription, before its first event: what the
    /// handler kept from the events it saw may be out of date (another
    /// worker may have consumed that part of the log meanwhile).
    fn subscribed(&self) {}
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
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
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
    let Some(mut subscription) = subscribe_handler(&*events, &*handler, &options, &shutdown).await
    else {
        return;
    };
    tracing::info!(consumer = name, "consumer started");
    let mut failures = 0u32;
    loop {
        let batch = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            batch = subscription.next_batch(options.batch_size) => batch,
        };
        let batch = match batch {
            Ok(batch) => {
                failures = 0;
                metrics::histogram!(crate::metric::EVENT_BATCH_EVENTS, "consumer" => name)
                    .record(batch.len() as f64);
                batch
            }
            Err(EventLogError::Elsewhere) => {
                // Another worker takes this part of the log over: hand it
                // back whole, then wait for a turn.
                tracing::info!(consumer = name, "another worker takes this part of the log");
                if let Err(error) = subscription.close().await {
                    tracing::warn!(consumer = name, error = %error, "cannot hand the log over cleanly; events will be redelivered");
                }
                match subscribe_handler(&*events, &*handler, &options, &shutdown).await {
                    Some(fresh) => {
                        subscription = fresh;
                        continue;
                    }
                    None => return,
                }
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
        let mut complete = true;
        let at_once =
            batch.len() > 1 && handler.handles_batches() && handle_at_once(&*handler, &batch).await;
        if at_once {
            handled = batch.last();
        }
        for envelope in batch.iter().filter(|_| !at_once) {
            if shutdown.is_cancelled() {
                complete = false;
                break;
            }
            match handle_with_retries(&*handler, &mut *subscription, envelope, &options, &shutdown)
                .await
            {
                Outcome::Done => handled = Some(envelope),
                Outcome::LeftForRedelivery => {
                    complete = false;
                    break;
                }
            }
        }
        if let Some(last) = handled
            && let Err(error) = subscription.ack_through(last).await
        {
            tracing::warn!(consumer = name, error = %error, "cannot acknowledge; events will be redelivered");
            complete = false;
        }
        if !complete && !shutdown.is_cancelled() {
            // The subscription has already moved past events that were not
            // acknowledged: start again from the last acknowledgement so
            // they are delivered again, not skipped.
            if let Err(error) = subscription.close().await {
                tracing::warn!(consumer = name, error = %error, "cannot save the checkpoint; events will be redelivered");
            }
            match subscribe_handler(&*events, &*handler, &options, &shutdown).await {
                Some(fresh) => subscription = fresh,
                None => break,
            }
        }
    }
    if let Err(error) = subscription.close().await {
        tracing::warn!(consumer = name, error = %error, "cannot save the checkpoint; events will be redelivered");
    }
    tracing::info!(consumer = name, "consumer stopped");
}

/// Handles `batch` in one go; false (nothing counted) when that failed and
/// its events are to be handled one by one.
async fn handle_at_once(handler: &dyn EventHandler, batch: &[EventEnvelope]) -> bool {
    let name = handler.name();
    let span = tracing::info_span!("handle_batch", consumer = name, events = batch.len());
    match handler.handle_batch(batch).instrument(span).await {
        Ok(()) => {
            let now = Timestamp::now_ms();
            for envelope in batch {
                let lag_ms = (now - envelope.occurred_at.millis()).max(0);
                metrics::histogram!(crate::metric::EVENT_HANDLING_LAG_SECONDS, "consumer" => name)
                    .record(lag_ms as f64 / 1000.0);
                metrics::counter!(crate::metric::EVENTS_HANDLED_TOTAL, "consumer" => name, "kind" => envelope.event.kind())
                    .increment(1);
            }
            true
        }
        Err(error) => {
            tracing::warn!(consumer = name, events = batch.len(), error = %error, "a batch failed; handling its events one by one");
            false
        }
    }
}

/// How long a worker waits before asking again for a part of the log that
/// another worker holds.
const WAIT_FOR_TURN: Duration = Duration::from_millis(500);

/// `subscribe` for `handler`, which is told of each new subscription.
async fn subscribe_handler(
    events: &dyn EventLog,
    handler: &dyn EventHandler,
    options: &ConsumerOptions,
    shutdown: &CancellationToken,
) -> Option<Box<dyn crate::ports::EventSubscription>> {
    let subscription = subscribe(events, handler.name(), options, shutdown).await?;
    handler.subscribed();
    Some(subscription)
}

/// Subscribes, retrying with backoff; `None` when shutdown came first.
pub(crate) async fn subscribe(
    events: &dyn EventLog,
    name: &str,
    options: &ConsumerOptions,
    shutdown: &CancellationToken,
) -> Option<Box<dyn crate::ports::EventSubscription>> {
    let mut failures = 0u32;
    loop {
        match events.subscribe(name).await {
            Ok(subscription) => return Some(subscription),
            Err(EventLogError::Elsewhere) => {
                // Another worker holds it: no failure, just not our turn.
                if sleep_or_shutdown(WAIT_FOR_TURN, shutdown).await {
                    return None;
                }
            }
            Err(error) => {
                tracing::warn!(consumer = name, error = %error, "cannot subscribe; retrying");
                failures += 1;
                if sleep_or_shutdown(options.backoff(failures), shutdown).await {
                    return None;
                }
            }
        }
    }
}

/// What became of one event.
enum Outcome {
    /// Handled, or parked as a dead letter: acknowledge it.
    Done,
    /// Shutdown came first: leave it, and everything after it, for redelivery.
    LeftForRedelivery,
}

/// Retries an event until it succeeds. A dependency being unavailable is
/// retried for as long as it takes (the event must not be lost to an outage);
/// any other failure is retried `max_attempts` times, then dead-lettered.
async fn handle_with_retries(
    handler: &dyn EventHandler,
    subscription: &mut dyn crate::ports::EventSubscription,
    envelope: &EventEnvelope,
    options: &ConsumerOptions,
    shutdown: &CancellationToken,
) -> Outcome {
    let name = handler.name();
    let kind = envelope.event.kind();
    // The handling joins the trace of the request that caused the event.
    let span = tracing::info_span!("handle_event", consumer = name, kind, event_id = %envelope.id);
    crate::telemetry::adopt_traceparent(&span, envelope.trace_parent.as_deref());
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match handler.handle(envelope).instrument(span.clone()).await {
            Ok(()) => {
                let lag_ms = (Timestamp::now_ms() - envelope.occurred_at.millis()).max(0);
                metrics::histogram!(crate::metric::EVENT_HANDLING_LAG_SECONDS, "consumer" => name)
                    .record(lag_ms as f64 / 1000.0);
                metrics::counter!(crate::metric::EVENTS_HANDLED_TOTAL, "consumer" => name, "kind" => kind)
                    .increment(1);
                return Outcome::Done;
            }
            Err(error) => error,
        };
        let transient = matches!(error, AppError::Unavailable(_));
        if transient || attempt < options.max_attempts {
            tracing::warn!(consumer = name, event_id = %envelope.id, attempt, error = %error, "event failed; retrying");
            metrics::counter!(crate::metric::EVENT_RETRIES_TOTAL, "consumer" => name).increment(1);
            if sleep_or_shutdown(options.backoff(attempt), shutdown).await {
                return Outcome::LeftForRedelivery;
            }
            continue;
        }
        tracing::error!(consumer = name, event_id = %envelope.id, attempt, error = ?error, "event failed for good; dead-lettering");
        metrics::counter!(crate::metric::EVENTS_DEAD_LETTERED_TOTAL, "consumer" => name)
            .increment(1);
        if let Err(park_error) = subscription.dead_letter(envelope, &error.to_string()).await {
            tracing::error!(consumer = name, event_id = %envelope.id, error = %park_error, "cannot dead-letter the event; it will be redelivered");
            return Outcome::LeftForRedelivery;
        }
        return Outcome::Done;
    }
}

/// Sleeps for `duration`; true when shutdown came first.
pub(crate) async fn sleep_or_shutdown(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(duration) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use starling_domain::{Event, EventId, UserId};

    use super::*;
    use crate::ports::{EventLogError, EventSubscription};

    /// An in-memory log: enough of the port to watch the loop's decisions.
    #[derive(Default)]
    struct MemoryLog {
        events: Vec<EventEnvelope>,
        acked_through: Mutex<i64>,
        dead: Mutex<Vec<i64>>,
        /// How many dead-letter attempts fail before they start working.
        dead_letter_failures: Mutex<u32>,
    }

    struct MemorySubscription {
        log: Arc<MemoryLog>,
        position: i64,
    }

    #[async_trait]
    impl EventLog for Arc<MemoryLog> {
        async fn subscribe(&self, _: &str) -> Result<Box<dyn EventSubscription>, EventLogError> {
            let position = *self.acked_through.lock().unwrap();
            Ok(Box::new(MemorySubscription {
                log: self.clone(),
                position,
            }))
        }

        fn wake(&self) {}
    }

    #[async_trait]
    impl EventSubscription for MemorySubscription {
        async fn next_batch(&mut self, max: usize) -> Result<Vec<EventEnvelope>, EventLogError> {
            let batch: Vec<EventEnvelope> = self
                .log
                .events
                .iter()
                .filter(|envelope| envelope.sequence > self.position)
                .take(max)
                .cloned()
                .collect();
            match batch.last() {
                Some(last) => {
                    self.position = last.sequence;
                    Ok(batch)
                }
                None => std::future::pending().await,
            }
        }

        async fn ack_through(&mut self, envelope: &EventEnvelope) -> Result<(), EventLogError> {
            *self.log.acked_through.lock().unwrap() = envelope.sequence;
            Ok(())
        }

        async fn close(&mut self) -> Result<(), EventLogError> {
            Ok(())
        }

        async fn dead_letter(
            &mut self,
            envelope: &EventEnvelope,
            _: &str,
        ) -> Result<(), EventLogError> {
            let mut failures = self.log.dead_letter_failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(EventLogError::Unavailable(
                    "dead letters unavailable".into(),
                ));
            }
            self.log.dead.lock().unwrap().push(envelope.sequence);
            Ok(())
        }
    }

    /// Per sequence, the errors to fail with before succeeding.
    type FailureScript = Mutex<HashMap<i64, Vec<fn() -> AppError>>>;

    struct Scripted {
        failures: FailureScript,
        handled: Mutex<Vec<i64>>,
    }

    #[async_trait]
    impl EventHandler for Scripted {
        fn name(&self) -> &'static str {
            "test"
        }

        async fn handle(&self, envelope: &EventEnvelope) -> AppResult<()> {
            let failure = self
                .failures
                .lock()
                .unwrap()
                .get_mut(&envelope.sequence)
                .and_then(Vec::pop);
            if let Some(make_error) = failure {
                return Err(make_error());
            }
            self.handled.lock().unwrap().push(envelope.sequence);
            Ok(())
        }
    }

    fn log_of(count: i64) -> Arc<MemoryLog> {
        Arc::new(MemoryLog {
            events: (1..=count)
                .map(|sequence| EventEnvelope {
                    id: EventId(sequence),
                    sequence,
                    occurred_at: Timestamp::now(),
                    event: Event::UserRegistered {
                        user_id: UserId(sequence),
                    },
                    trace_parent: None,
                })
                .collect(),
            ..MemoryLog::default()
        })
    }

    fn quick() -> ConsumerOptions {
        ConsumerOptions {
            batch_size: 2,
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        }
    }

    fn unexpected() -> AppError {
        AppError::Unexpected(anyhow::anyhow!("poison"))
    }

    fn unavailable() -> AppError {
        AppError::Unavailable(anyhow::anyhow!("store down"))
    }

    async fn run_until(log: &Arc<MemoryLog>, handler: Arc<Scripted>, acked: i64) {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_consumer(
            Arc::new(log.clone()),
            handler,
            quick(),
            shutdown.clone(),
        ));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while *log.acked_through.lock().unwrap() < acked {
            assert!(std::time::Instant::now() < deadline, "the consumer stalled");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_poisoned_event_is_dead_lettered_and_the_rest_flows() {
        let log = log_of(5);
        let handler = Arc::new(Scripted {
            failures: Mutex::new(HashMap::from([(
                3,
                vec![unexpected as fn() -> AppError; 10],
            )])),
            handled: Mutex::default(),
        });
        run_until(&log, handler.clone(), 5).await;
        assert_eq!(*handler.handled.lock().unwrap(), vec![1, 2, 4, 5]);
        assert_eq!(*log.dead.lock().unwrap(), vec![3]);
    }

    #[tokio::test]
    async fn an_event_that_could_not_be_parked_is_delivered_again() {
        let log = log_of(5);
        *log.dead_letter_failures.lock().unwrap() = 1;
        let handler = Arc::new(Scripted {
            failures: Mutex::new(HashMap::from([(
                3,
                vec![unexpected as fn() -> AppError; 10],
            )])),
            handled: Mutex::default(),
        });
        run_until(&log, handler.clone(), 5).await;
        assert_eq!(*handler.handled.lock().unwrap(), vec![1, 2, 4, 5]);
        assert_eq!(
            *log.dead.lock().unwrap(),
            vec![3],
            "parked on the second delivery"
        );
    }

    #[tokio::test]
    async fn an_outage_is_waited_out_however_long_it_lasts() {
        let log = log_of(3);
        let handler = Arc::new(Scripted {
            // Far more failures than max_attempts: still no dead letter.
            failures: Mutex::new(HashMap::from([(
                2,
                vec![unavailable as fn() -> AppError; 12],
            )])),
            handled: Mutex::default(),
        });
        run_until(&log, handler.clone(), 3).await;
        assert_eq!(*handler.handled.lock().unwrap(), vec![1, 2, 3]);
        assert!(log.dead.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn shutdown_leaves_unhandled_events_unacknowledged() {
        let log = log_of(4);
        let handler = Arc::new(Scripted {
            failures: Mutex::new(HashMap::from([(
                3,
                vec![unavailable as fn() -> AppError; 10_000],
            )])),
            handled: Mutex::default(),
        });
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_consumer(
            Arc::new(log.clone()),
            handler.clone(),
            quick(),
            shutdown.clone(),
        ));
        while handler.handled.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(*log.acked_through.lock().unwrap(), 2);
        assert!(log.dead.lock().unwrap().is_empty());
    }
}
