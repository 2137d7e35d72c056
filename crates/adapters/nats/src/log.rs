//! The JetStream streams, the publisher the relay uses and the partitioned
//! pull consumers the workers read.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, AckKind, Context};
use async_nats::{HeaderMap, header};
use async_trait::async_trait;
use futures::StreamExt;
use futures::future::try_join_all;
use parking_lot::Mutex;
use starling_app::ports::{EventLog, EventLogError, EventPublisher, EventSubscription};
use starling_app::resilience::{Guard, GuardError, GuardSettings};
use starling_domain::{EventEnvelope, UserId};
use tokio::task::JoinHandle;

use crate::lease::{Acquired, Lease, Leases};
use crate::wire::{self, TRACEPARENT};

#[derive(Debug, Clone)]
pub struct JetStreamOptions {
    /// The stream holding the events; dead letters go to `<stream>_DEAD`.
    pub stream: String,
    /// Subjects are `<prefix>.events.<partition>.<kind>`, `<prefix>.dead.<consumer>`.
    pub subject_prefix: String,
    /// Number of partitions; fixed for the life of a stream (changing it
    /// moves accounts between partitions, so drain the stream first).
    pub partitions: u32,
    /// Deliveries after which an event is parked as a dead letter.
    pub max_deliveries: i64,
    /// An unacknowledged delivery is sent again after this long. A worker
    /// holding deliveries tells the broker every quarter of it that it is
    /// still at work, so this bounds only how long the deliveries of a
    /// worker that died wait to be sent again.
    pub ack_wait: Duration,
    /// Events of a partition handed out at once (one batch). A partition is
    /// consumed by one worker at a time (`lease.rs`), so its events are
    /// handled in order however many workers share the partitions.
    pub max_in_flight: usize,
    /// A worker's hold on a partition (and its membership of a group)
    /// lapses this long after its last renewal: how long a dead worker's
    /// partitions wait before another takes them.
    pub lease_ttl: Duration,
    /// How long the server remembers an event id to drop a duplicate.
    pub duplicate_window: Duration,
    /// Events are kept this long (consumers far behind lose older ones).
    pub retention: Duration,
    /// A publish (of a batch, acknowledgements included) or a stream query
    /// taking longer fails, and counts against the broker's breaker.
    pub call_timeout: Duration,
    /// Copies of every stream (and its consumers) kept by a JetStream
    /// cluster: 3 survives the loss of a server; 1 for a single server.
    /// Fixed when a stream is made.
    pub replicas: usize,
}

impl Default for JetStreamOptions {
    fn default() -> Self {
        Self {
            stream: "STARLING".to_owned(),
            subject_prefix: "starling".to_owned(),
            partitions: 16,
            max_deliveries: 5,
            ack_wait: Duration::from_secs(4),
            max_in_flight: 256,
            lease_ttl: Duration::from_secs(4),
            duplicate_window: Duration::from_secs(600),
            retention: Duration::from_secs(7 * 24 * 3600),
            call_timeout: Duration::from_secs(5),
            replicas: 1,
        }
    }
}

/// A connection to JetStream with the streams in place.
#[derive(Clone)]
pub struct JetStream {
    pub(crate) client: async_nats::Client,
    pub(crate) context: Context,
    options: JetStreamOptions,
    /// Publishes and stream queries (not the pulls, which wait for events
    /// by design) pass a timeout, a bulkhead and a circuit breaker: a broker
    /// that is down or hangs fails them at once.
    pub(crate) guard: Guard,
    /// Which partitions this process consumes; opened on first use (the
    /// API and the relay never need it).
    leases: Arc<tokio::sync::OnceCell<Leases>>,
}

fn unavailable(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> EventLogError {
    EventLogError::Unavailable(error.into())
}

/// The guard's refusals, or the call's own error.
fn guarded(error: GuardError<EventLogError>) -> EventLogError {
    match error {
        GuardError::Failed(error) => error,
        refused => unavailable(refused.to_string()),
    }
}

impl JetStream {
    /// Connects to `url` (a cluster's servers separated by commas; the
    /// client moves to another when its server is lost) and creates the
    /// event and dead-letter streams if they do not exist.
    pub async fn connect(url: &str, options: JetStreamOptions) -> anyhow::Result<Self> {
        anyhow::ensure!(options.partitions > 0, "nats.partitions must be at least 1");
        anyhow::ensure!(
            (1..=5).contains(&options.replicas),
            "nats.replicas must be 1 to 5 (JetStream keeps at most 5 copies)"
        );
        let servers = url
            .split(',')
            .map(|server| server.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("parsing the NATS URL {url}"))?;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .name("starling")
            .connect(servers)
            .await
            .with_context(|| format!("connecting to NATS at {url}"))?;
        let context = jetstream::new(client.clone());
        let prefix = &options.subject_prefix;
        let streams = [
            StreamConfig {
                name: options.stream.clone(),
                subjects: vec![format!("{prefix}.events.>")],
                storage: StorageType::File,
                duplicate_window: options.duplicate_window,
                max_age: options.retention,
                num_replicas: options.replicas,
                ..StreamConfig::default()
            },
            StreamConfig {
                name: format!("{}{}", options.stream, crate::DEAD),
                subjects: vec![format!("{prefix}.dead.>")],
                storage: StorageType::File,
                max_age: Duration::from_secs(30 * 24 * 3600),
                num_replicas: options.replicas,
                ..StreamConfig::default()
            },
        ];
        for stream in streams {
            // A server busy creating other streams can time a request out;
            // creating is idempotent, so ask again.
            let mut attempt = 0;
            loop {
                attempt += 1;
                match context.get_or_create_stream(stream.clone()).await {
                    Ok(_) => break,
                    Err(error) if attempt < 4 => {
                        tracing::warn!(stream = %stream.name, error = %error, "cannot create the stream yet; retrying");
                        tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
                    }
                    Err(error) => {
                        return Err(anyhow::Error::new(error)).with_context(|| {
                            format!("creating the JetStream stream {}", stream.name)
                        });
                    }
                }
            }
        }
        let guard = Guard::new(
            "nats",
            &GuardSettings {
                timeout: options.call_timeout,
                max_concurrent: 64,
                ..GuardSettings::default()
            },
        );
        Ok(Self {
            client,
            context,
            options,
            guard,
            leases: Arc::new(tokio::sync::OnceCell::new()),
        })
    }

    /// Leaves the worker groups this process joined (after its consumers
    /// stopped): its partitions go to the others at once.
    pub async fn leave(&self) {
        if let Some(leases) = self.leases.get() {
            leases.leave().await;
        }
    }

    async fn leases(&self) -> Result<&Leases, EventLogError> {
        self.leases
            .get_or_try_init(|| {
                Leases::open(
                    &self.context,
                    &self.options.stream,
                    &self.options.subject_prefix,
                    self.options.lease_ttl,
                    self.options.replicas,
                )
            })
            .await
            .map_err(unavailable)
    }

    pub fn options(&self) -> &JetStreamOptions {
        &self.options
    }

    /// The partition of an account's events: a fixed mix of its id, so every
    /// process and version agrees.
    pub fn partition_of(&self, key: UserId) -> u32 {
        let mut mixed = key.0 as u64;
        // splitmix64's finaliser: ids close together spread evenly.
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^= mixed >> 31;
        (mixed % u64::from(self.options.partitions)) as u32
    }

    /// The event log of one partition, for one consumer task.
    pub fn partition(&self, partition: u32) -> JetStreamPartition {
        JetStreamPartition {
            log: self.clone(),
            partition,
        }
    }

    fn subject(&self, envelope: &EventEnvelope) -> String {
        format!(
            "{}.events.{}.{}",
            self.options.subject_prefix,
            self.partition_of(envelope.event.partition_key()),
            envelope.event.kind()
        )
    }

    /// Events not yet acknowledged by `consumer`, over all partitions.
    pub async fn backlog(&self, consumer: &str) -> Result<u64, EventLogError> {
        self.guard
            .call(self.backlog_unguarded(consumer))
            .await
            .map_err(guarded)
    }

    async fn backlog_unguarded(&self, consumer: &str) -> Result<u64, EventLogError> {
        let stream = self
            .context
            .get_stream(&self.options.stream)
            .await
            .map_err(unavailable)?;
        let mut total = 0;
        for partition in 0..self.options.partitions {
            match stream
                .consumer_info(durable_name(consumer, partition))
                .await
            {
                Ok(info) => total += info.num_pending + info.num_ack_pending as u64,
                // Not created yet: its worker has not started.
                Err(error)
                    if error.kind()
                        == async_nats::jetstream::context::ConsumerInfoErrorKind::NotFound => {}
                Err(error) => return Err(unavailable(error)),
            }
        }
        Ok(total)
    }

    async fn publish_dead(
        &self,
        consumer: &str,
        payload: Vec<u8>,
        reason: &str,
    ) -> Result<(), EventLogError> {
        let mut headers = HeaderMap::new();
        headers.insert("Starling-Consumer", consumer);
        headers.insert("Starling-Error", reason.replace(['\r', '\n'], " ").as_str());
        let subject = format!("{}.dead.{consumer}", self.options.subject_prefix);
        self.context
            .publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        metrics::counter!(starling_app::metric::EVENTS_DEAD_LETTERED_TOTAL, "consumer" => consumer.to_owned())
            .increment(1);
        Ok(())
    }
}

fn durable_name(consumer: &str, partition: u32) -> String {
    format!("{consumer}-p{partition}")
}

#[async_trait]
impl EventPublisher for JetStream {
    async fn publish(&self, events: &[EventEnvelope]) -> Result<(), EventLogError> {
        self.guard
            .call(self.publish_unguarded(events))
            .await
            .map_err(guarded)
    }
}

impl JetStream {
    async fn publish_unguarded(&self, events: &[EventEnvelope]) -> Result<(), EventLogError> {
        // Send all, then wait for the acknowledgements together: one round
        // trip per batch, not per event.
        let mut acks = Vec::with_capacity(events.len());
        for envelope in events {
            let payload = wire::encode(envelope).map_err(unavailable)?;
            let mut headers = HeaderMap::new();
            headers.insert(header::NATS_MESSAGE_ID, envelope.id.0.to_string().as_str());
            if let Some(trace_parent) = &envelope.trace_parent {
                headers.insert(TRACEPARENT, trace_parent.as_str());
            }
            let ack = self
                .context
                .publish_with_headers(self.subject(envelope), headers, payload.into())
                .await
                .map_err(unavailable)?;
            acks.push(ack.into_future());
        }
        let stored = try_join_all(acks).await.map_err(unavailable)?;
        let duplicates = stored.iter().filter(|ack| ack.duplicate).count();
        if duplicates > 0 {
            metrics::counter!(starling_app::metric::RELAY_DUPLICATES_TOTAL)
                .increment(duplicates as u64);
        }
        Ok(())
    }
}

/// One partition of the log, as the consumer loop sees an event log.
pub struct JetStreamPartition {
    log: JetStream,
    partition: u32,
}

impl JetStreamPartition {
    /// The partition's durable consumer for `consumer`, made or brought to
    /// this version's settings (an earlier one let one event out at a time
    /// and waited 30 s for a dead worker's).
    async fn consumer(&self, consumer: &str) -> Result<PullConsumer, EventLogError> {
        let options = &self.log.options;
        let name = durable_name(consumer, self.partition);
        let stream = self
            .log
            .context
            .get_stream(&options.stream)
            .await
            .map_err(unavailable)?;
        let config = PullConfig {
            durable_name: Some(name.clone()),
            filter_subject: format!("{}.events.{}.>", options.subject_prefix, self.partition),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: options.ack_wait,
            // Twice what one pull takes: the acknowledgements of the batch
            // before may not be counted yet when the next pull comes, and
            // the broker would cut that pull short.
            max_ack_pending: i64::try_from(options.max_in_flight.saturating_mul(2))
                .unwrap_or(i64::MAX),
            ..PullConfig::default()
        };
        let mut found = stream
            .get_or_create_consumer(&name, config.clone())
            .await
            .map_err(unavailable)?;
        let current = &found.cached_info().config;
        if current.ack_wait != config.ack_wait || current.max_ack_pending != config.max_ack_pending
        {
            found = stream.create_consumer(config).await.map_err(unavailable)?;
        }
        Ok(found)
    }
}

#[async_trait]
impl EventLog for JetStreamPartition {
    /// Takes the partition (its lease) first: `Elsewhere` while another
    /// worker holds it or is preferred for it.
    async fn subscribe(&self, consumer: &str) -> Result<Box<dyn EventSubscription>, EventLogError> {
        let (lease, handed_over) = match self
            .log
            .leases()
            .await?
            .acquire(consumer, self.partition)
            .await
            .map_err(unavailable)?
        {
            Acquired::Taken { lease, handed_over } => (lease, handed_over),
            Acquired::Elsewhere => return Err(EventLogError::Elsewhere),
        };
        let pull_consumer = match self.consumer(consumer).await {
            Ok(pull_consumer) => pull_consumer,
            Err(error) => {
                lease.release().await;
                return Err(error);
            }
        };
        // Deliveries outstanding when the last holder did not hand the
        // partition over were made to a worker that died: they are sent
        // again once their wait runs out, and must come before what follows
        // them. (A holder handing over gave its deliveries back itself.)
        let resume_at =
            (!handed_over && pull_consumer.cached_info().num_ack_pending > 0).then(|| {
                Instant::now()
                    + redeliverable_in(
                        pull_consumer.cached_info().delivered.last_active,
                        self.log.options.ack_wait,
                    )
            });
        let delivered = Arc::new(Mutex::new(VecDeque::new()));
        let progress = tokio::spawn(keep_in_progress(
            delivered.clone(),
            self.log.options.ack_wait / 4,
        ));
        Ok(Box::new(PartitionSubscription {
            log: self.log.clone(),
            consumer_name: consumer.to_owned(),
            consumer: pull_consumer,
            delivered,
            pulling: None,
            lease: Some(lease),
            resume_at,
            progress,
        }))
    }

    /// The server answers waiting pulls at once: nothing to wake.
    fn wake(&self) {}
}

/// How long until deliveries last made at `last_active` (the broker's
/// clock) are sent again: their acknowledgement wait and a margin, less
/// what has passed. A successor started well after its predecessor died
/// does not wait a whole acknowledgement wait more; at most that and a
/// second, whatever the clocks say.
fn redeliverable_in(last_active: Option<time::OffsetDateTime>, ack_wait: Duration) -> Duration {
    let longest = ack_wait + Duration::from_secs(1);
    let Some(last_active) = last_active else {
        return longest;
    };
    let passed = time::OffsetDateTime::now_utc() - last_active;
    let passed = Duration::try_from(passed).unwrap_or(Duration::ZERO);
    (ack_wait + Duration::from_millis(250))
        .saturating_sub(passed)
        .min(longest)
}

/// Tells the broker every `every` that the deliveries held are still being
/// worked on, so that a slow batch (a dependency being retried) is not
/// sent again while its worker lives.
async fn keep_in_progress(
    delivered: Arc<Mutex<VecDeque<(i64, jetstream::Message)>>>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let held: Vec<jetstream::Message> = delivered
            .lock()
            .iter()
            .map(|(_, message)| message.clone())
            .collect();
        for message in held {
            if message.ack_with(AckKind::Progress).await.is_err() {
                break;
            }
        }
    }
}

/// Pulls with requests that are complete before `next_batch` returns: a
/// pull left waiting would take events handed back for redelivery (or the
/// next ones) and hold them unseen until the acknowledgement wait. Each pull
/// runs as a task of its own that always finishes its request: when
/// `next_batch` is dropped mid-pull (shutdown), the next call or `close`
/// takes up the same pull, and what it brought is handed back at once.
struct PartitionSubscription {
    log: JetStream,
    consumer_name: String,
    consumer: PullConsumer,
    /// Handed out, not yet acknowledged: (stream sequence, message).
    delivered: Arc<Mutex<VecDeque<(i64, jetstream::Message)>>>,
    /// The pull under way, if any.
    pulling: Option<JoinHandle<Result<Vec<jetstream::Message>, EventLogError>>>,
    /// The partition's lease; given back on close.
    lease: Option<Lease>,
    /// No pulls before then (a dead holder's deliveries come back first).
    resume_at: Option<Instant>,
    progress: JoinHandle<()>,
}

impl Drop for PartitionSubscription {
    fn drop(&mut self) {
        self.progress.abort();
    }
}

type PullResult = Result<Vec<jetstream::Message>, EventLogError>;

/// How long one waiting pull lasts before it is renewed (and the longest a
/// shutdown waits for the pull under way).
const PULL_WAIT: Duration = Duration::from_secs(1);

impl PartitionSubscription {
    /// The result of the pull under way, starting one when none is.
    /// Cancel-safe: dropped while waiting, the pull carries on and the next
    /// call gets its result.
    async fn pull(&mut self, max: usize) -> PullResult {
        let handle = self.pulling.get_or_insert_with(|| {
            tokio::spawn(pull(
                self.consumer.clone(),
                max.min(self.log.options.max_in_flight),
            ))
        });
        let result = handle.await;
        self.pulling = None;
        result.map_err(unavailable)?
    }

    /// Copies a message that must not be handled to the dead-letter stream,
    /// then acknowledges it.
    async fn park(
        &mut self,
        message: jetstream::Message,
        reason: &str,
    ) -> Result<(), EventLogError> {
        tracing::error!(consumer = %self.consumer_name, reason, "parking an event as a dead letter");
        self.log
            .publish_dead(&self.consumer_name, message.payload.to_vec(), reason)
            .await?;
        message.ack().await.map_err(unavailable)
    }

    fn must_stop(&self) -> bool {
        self.lease.as_ref().is_none_or(Lease::must_stop)
    }
}

/// Waits for the next event, then takes whatever else is ready, up to `max`
/// in all; both requests are complete when this returns.
async fn pull(consumer: PullConsumer, max: usize) -> PullResult {
    let mut messages = Vec::with_capacity(max.min(64));
    let first = consumer
        .batch()
        .max_messages(1)
        .expires(PULL_WAIT)
        .messages()
        .await
        .map_err(unavailable)?;
    collect(first, PULL_WAIT, &mut messages).await?;
    // What else is ready, as the broker counted when it sent the first
    // event (its delivery metadata). Asked for no more than that, the pull
    // is filled at once and ends; asked for more, it waits out its expiry,
    // and nats-server 2.9 at times never ends a partly filled pull, so it
    // was waited for past its grace too (255–321 times in one burst of
    // `starling-bench scaled`, a third of a second each, and the burst's rate fell
    // to a quarter in some runs).
    let ready = messages
        .last()
        .and_then(|message| message.info().ok())
        .map_or(usize::MAX, |info| {
            usize::try_from(info.pending).unwrap_or(usize::MAX)
        });
    let rest = max.saturating_sub(1).min(ready);
    if messages.is_empty() || rest == 0 {
        return Ok(messages);
    }
    // Waiting at most `MORE_WAIT`. The server may refuse part of it (its
    // count of unacknowledged deliveries lags the acknowledgements just
    // sent): then the batch is what came.
    match consumer
        .batch()
        .max_messages(rest)
        .expires(MORE_WAIT)
        .messages()
        .await
    {
        // (`collect` fails only when nothing came; one event already did.)
        Ok(more) => collect(more, MORE_WAIT, &mut messages).await?,
        Err(error) => tracing::debug!(%error, "cannot pull for more"),
    }
    Ok(messages)
}

/// How long the pull for what else is ready waits for it. Not a no-wait
/// fetch: nats-server 2.9 at times answered one neither with the events
/// it had nor with its end, and the client waited out its own timeout
/// (the request's expiry plus 5 s) with the partition stalled (seen in
/// `starling-bench scaled`: one partition held for 5 s with 135 events ready).
const MORE_WAIT: Duration = Duration::from_millis(50);

/// How much longer than its expiry a pull is waited for: its end (the
/// server's timeout status) travels like any message.
const PULL_GRACE: Duration = Duration::from_millis(250);

/// Adds what `batch` brings to `messages`, for at most `expires` and a
/// grace. An error ends it; it is the caller's only when nothing came, for
/// a message received is never dropped (it would wait out the
/// acknowledgement wait, holding its partition back).
async fn collect(
    mut batch: async_nats::jetstream::consumer::pull::Batch,
    expires: Duration,
    messages: &mut Vec<jetstream::Message>,
) -> Result<(), EventLogError> {
    let deadline = tokio::time::Instant::now() + expires + PULL_GRACE;
    loop {
        match tokio::time::timeout_at(deadline, batch.next()).await {
            Ok(Some(Ok(message))) => messages.push(message),
            Ok(None) => return Ok(()),
            Ok(Some(Err(error))) if messages.is_empty() => return Err(unavailable(error)),
            Ok(Some(Err(error))) => {
                tracing::debug!(%error, "a pull ended early");
                return Ok(());
            }
            Err(_) => {
                tracing::debug!("a pull outlived its expiry; going on with what came");
                metrics::counter!(starling_app::metric::EVENT_PULLS_UNFINISHED_TOTAL).increment(1);
                return Ok(());
            }
        }
    }
}

#[async_trait]
impl EventSubscription for PartitionSubscription {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<EventEnvelope>, EventLogError> {
        if let Some(resume_at) = self.resume_at {
            tokio::time::sleep_until(resume_at.into()).await;
            self.resume_at = None;
        }
        loop {
            if self.must_stop() {
                return Err(EventLogError::Elsewhere);
            }
            let messages = self.pull(max.max(1)).await?;
            let mut batch = Vec::with_capacity(messages.len());
            for message in messages {
                let (sequence, delivered) = match message.info() {
                    Ok(info) => (info.stream_sequence, info.delivered),
                    Err(error) => return Err(unavailable(error.to_string())),
                };
                let trace_parent = message
                    .headers
                    .as_ref()
                    .and_then(|headers| headers.get(TRACEPARENT))
                    .map(|value| value.as_str().to_owned());
                if delivered > 1 {
                    // A worker died holding it or a delivery was lost (it
                    // waited out the ack wait), or a holder handing its
                    // partition over gave it back.
                    metrics::counter!(starling_app::metric::EVENTS_REDELIVERED_TOTAL, "consumer" => self.consumer_name.clone())
                        .increment(1);
                }
                match wire::decode(&message.payload, sequence, trace_parent) {
                    Ok(envelope) if delivered <= self.log.options.max_deliveries => {
                        self.delivered
                            .lock()
                            .push_back((envelope.sequence, message));
                        batch.push(envelope);
                    }
                    Ok(_) => {
                        let reason = format!("delivered {delivered} times without success");
                        self.park(message, &reason).await?;
                    }
                    Err(error) => {
                        self.park(message, &format!("undecodable event: {error}"))
                            .await?;
                    }
                }
            }
            if !batch.is_empty() {
                return Ok(batch);
            }
        }
    }

    async fn ack_through(&mut self, envelope: &EventEnvelope) -> Result<(), EventLogError> {
        let done: Vec<jetstream::Message> = {
            let mut delivered = self.delivered.lock();
            let count = delivered
                .iter()
                .take_while(|(sequence, _)| *sequence <= envelope.sequence)
                .count();
            delivered
                .drain(..count)
                .map(|(_, message)| message)
                .collect()
        };
        for message in done {
            message.ack().await.map_err(unavailable)?;
        }
        Ok(())
    }

    /// Hands back what was delivered and not acknowledged, for redelivery
    /// now rather than after the acknowledgement wait.
    async fn close(&mut self) -> Result<(), EventLogError> {
        self.progress.abort();
        let mut unhandled: Vec<jetstream::Message> = self
            .delivered
            .lock()
            .drain(..)
            .map(|(_, message)| message)
            .collect();
        // A pull under way finishes (within its wait); what it brought was
        // never handed out.
        if let Some(pulling) = self.pulling.take()
            && let Ok(Ok(messages)) = pulling.await
        {
            unhandled.extend(messages);
        }
        for message in unhandled {
            message
                .ack_with(AckKind::Nak(None))
                .await
                .map_err(unavailable)?;
        }
        self.log.client.flush().await.map_err(unavailable)?;
        // Handed back whole: the next holder starts where this one stopped.
        if let Some(lease) = self.lease.take() {
            lease.release().await;
        }
        Ok(())
    }

    async fn dead_letter(
        &mut self,
        envelope: &EventEnvelope,
        error: &str,
    ) -> Result<(), EventLogError> {
        let payload = wire::encode(envelope).map_err(unavailable)?;
        self.log
            .publish_dead(&self.consumer_name, payload, error)
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use starling_domain::{Event, EventId, PostId, Timestamp};
    use starling_testing::NatsStream;

    use super::*;

    #[test]
    fn deliveries_of_a_dead_holder_are_waited_for_only_as_long_as_they_wait() {
        let wait = Duration::from_secs(4);
        let now = time::OffsetDateTime::now_utc();
        // Delivered just now: the whole wait and the margin.
        let fresh = redeliverable_in(Some(now), wait);
        assert!(fresh > Duration::from_secs(4) && fresh <= Duration::from_millis(4250));
        // Delivered 3 s ago: about a second and a quarter.
        let older = redeliverable_in(Some(now - time::Duration::seconds(3)), wait);
        assert!(older > Duration::from_secs(1) && older <= Duration::from_millis(1250));
        // Long ago: no wait at all.
        assert_eq!(
            redeliverable_in(Some(now - time::Duration::minutes(1)), wait),
            Duration::ZERO
        );
        // A broker clock far ahead, or no time known: never more than the
        // wait and a second.
        assert!(
            redeliverable_in(Some(now + time::Duration::minutes(1)), wait)
                <= Duration::from_secs(5)
        );
        assert_eq!(redeliverable_in(None, wait), Duration::from_secs(5));
    }

    /// A JetStream with streams and subjects of its own, deleted afterwards.
    struct TestStream {
        log: JetStream,
        _names: NatsStream,
    }

    async fn test_stream(configure: impl FnOnce(&mut JetStreamOptions)) -> Option<TestStream> {
        let names = NatsStream::new()?;
        let mut options = JetStreamOptions {
            stream: names.stream.clone(),
            subject_prefix: names.subject_prefix.clone(),
            partitions: 4,
            ..JetStreamOptions::default()
        };
        configure(&mut options);
        let log = JetStream::connect(&names.url, options)
            .await
            .expect("connect to STARLING_TEST_NATS_URL");
        Some(TestStream { log, _names: names })
    }

    /// One partition that hands out up to 64 events at once.
    async fn batching_partition() -> Option<TestStream> {
        test_stream(|options| {
            options.partitions = 1;
            options.max_in_flight = 64;
        })
        .await
    }

    fn post(id: i64, author: i64) -> EventEnvelope {
        EventEnvelope {
            id: EventId(1000 + id),
            sequence: id,
            occurred_at: Timestamp::now(),
            event: Event::PostCreated {
                post_id: PostId(id),
                author_id: UserId(author),
                reply_to: None,
                mentions: Vec::new(),
            },
            trace_parent: Some(format!("00-{id:032x}-{id:016x}-01")),
        }
    }

    fn ids(batch: &[EventEnvelope]) -> Vec<i64> {
        batch.iter().map(|envelope| envelope.id.0 - 1000).collect()
    }

    async fn stored(log: &JetStream) -> u64 {
        let mut stream = log.context.get_stream(&log.options.stream).await.unwrap();
        stream.info().await.unwrap().state.messages
    }

    async fn dead_letters(log: &JetStream) -> u64 {
        let mut stream = log
            .context
            .get_stream(format!("{}_DEAD", log.options.stream))
            .await
            .unwrap();
        stream.info().await.unwrap().state.messages
    }

    /// Reads batches from `subscription` until `count` events came.
    async fn take(
        subscription: &mut Box<dyn EventSubscription>,
        count: usize,
    ) -> Vec<EventEnvelope> {
        let mut events = Vec::new();
        while events.len() < count {
            let batch = tokio::time::timeout(Duration::from_secs(10), subscription.next_batch(64))
                .await
                .expect("events arrive")
                .unwrap();
            events.extend(batch);
        }
        events
    }

    /// Reads and acknowledges events until `count` came, as a worker does.
    async fn take_acking(
        subscription: &mut Box<dyn EventSubscription>,
        count: usize,
    ) -> Vec<EventEnvelope> {
        let mut events = Vec::new();
        while events.len() < count {
            let batch = take(subscription, 1).await;
            subscription
                .ack_through(batch.last().unwrap())
                .await
                .unwrap();
            events.extend(batch);
        }
        events
    }

    #[tokio::test]
    async fn an_event_published_twice_is_stored_once() {
        let Some(test) = test_stream(|_| {}).await else {
            return;
        };
        let events = [post(1, 7), post(2, 7)];
        test.log.publish(&events).await.unwrap();
        // The relay crashed before moving its checkpoint and publishes again.
        test.log.publish(&events).await.unwrap();
        assert_eq!(stored(&test.log).await, 2);
    }

    #[tokio::test]
    async fn one_authors_events_arrive_in_order_in_one_partition() {
        let Some(test) = test_stream(|_| {}).await else {
            return;
        };
        let log = &test.log;
        let events: Vec<_> = (1..=20).map(|id| post(id, 1 + id % 3)).collect();
        log.publish(&events).await.unwrap();
        let mut seen = Vec::new();
        for partition in 0..log.options.partitions {
            let expected: Vec<i64> = events
                .iter()
                .filter(|envelope| log.partition_of(envelope.event.partition_key()) == partition)
                .map(|envelope| envelope.id.0 - 1000)
                .collect();
            if expected.is_empty() {
                continue;
            }
            let mut subscription = log.partition(partition).subscribe("fanout").await.unwrap();
            let batch = take_acking(&mut subscription, expected.len()).await;
            assert_eq!(ids(&batch), expected, "partition {partition}");
            assert_eq!(
                batch[0].trace_parent,
                events[usize::try_from(expected[0] - 1).unwrap()].trace_parent
            );
            subscription.close().await.unwrap();
            seen.extend(expected);
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn what_was_not_acknowledged_is_delivered_again_and_nothing_else() {
        let Some(test) = batching_partition().await else {
            return;
        };
        let log = &test.log;
        log.publish(&[post(1, 5), post(2, 5), post(3, 5)])
            .await
            .unwrap();
        let mut subscription = log.partition(0).subscribe("fanout").await.unwrap();
        let batch = take(&mut subscription, 3).await;
        subscription.ack_through(&batch[0]).await.unwrap();
        subscription.close().await.unwrap();
        drop(subscription);

        let mut again = log.partition(0).subscribe("fanout").await.unwrap();
        let batch = take(&mut again, 2).await;
        assert_eq!(ids(&batch), vec![2, 3]);
        again.ack_through(&batch[1]).await.unwrap();
        again.close().await.unwrap();
        log.publish(&[post(4, 5)]).await.unwrap();
        let mut third = log.partition(0).subscribe("fanout").await.unwrap();
        assert_eq!(ids(&take(&mut third, 1).await), vec![4]);
    }

    /// A partition has one subscription at a time: a second is refused
    /// while the first holds it, and goes on from where the first stopped
    /// once it is handed over.
    #[tokio::test]
    async fn a_partition_is_consumed_by_one_subscription_at_a_time() {
        let Some(test) = test_stream(|options| options.partitions = 1).await else {
            return;
        };
        let log = &test.log;
        log.publish(&[post(1, 5), post(2, 5), post(3, 5)])
            .await
            .unwrap();
        let mut first = log.partition(0).subscribe("fanout").await.unwrap();
        assert!(matches!(
            log.partition(0).subscribe("fanout").await,
            Err(EventLogError::Elsewhere)
        ));
        let batch = take(&mut first, 3).await;
        assert_eq!(ids(&batch), vec![1, 2, 3]);
        first.ack_through(&batch[0]).await.unwrap();
        first.close().await.unwrap();
        let mut second = log.partition(0).subscribe("fanout").await.unwrap();
        let started = std::time::Instant::now();
        assert_eq!(ids(&take(&mut second, 2).await), vec![2, 3]);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "handed over, the events given back come at once"
        );
    }

    /// Two worker processes share a group's partitions: the second takes
    /// the ones it is preferred for from the first, which hands them over
    /// at its next batch; no partition is held by both.
    #[tokio::test]
    async fn a_second_worker_takes_its_share_of_the_partitions() {
        let Some(test) = test_stream(|options| options.partitions = 8).await else {
            return;
        };
        let other = JetStream::connect(&test._names.url, test.log.options.clone())
            .await
            .unwrap();
        let (first, second) = (&test.log, &other);
        let mut held: Vec<Option<Box<dyn EventSubscription>>> = Vec::new();
        for partition in 0..8 {
            held.push(Some(
                first
                    .partition(partition)
                    .subscribe("fanout")
                    .await
                    .unwrap(),
            ));
        }
        // The second joins; the first notices at its next renewal.
        let mut taken = std::collections::BTreeMap::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            for partition in 0..8u32 {
                let slot = &mut held[partition as usize];
                if let Some(subscription) = slot
                    && matches!(
                        tokio::time::timeout(Duration::from_millis(10), subscription.next_batch(1))
                            .await,
                        Ok(Err(EventLogError::Elsewhere))
                    )
                {
                    subscription.close().await.unwrap();
                    *slot = None;
                }
                // The second asks for every partition it lacks, as its
                // consumer tasks do (refused while the first holds one).
                if !taken.contains_key(&partition)
                    && let Ok(subscription) = second.partition(partition).subscribe("fanout").await
                {
                    assert!(slot.is_none(), "partition {partition} taken while held");
                    taken.insert(partition, subscription);
                }
            }
            if !taken.is_empty() && taken.len() + held.iter().flatten().count() == 8 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no hand-over within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let kept = held.iter().flatten().count();
        assert!(
            kept > 0 && !taken.is_empty(),
            "kept {kept}, taken {:?}",
            taken.keys()
        );
        assert_eq!(
            kept + taken.len(),
            8,
            "every partition has exactly one holder"
        );
    }

    /// A worker that stops (its subscriptions closed, its groups left)
    /// leaves every partition to the others at once, not after its hold
    /// lapses.
    #[tokio::test]
    async fn a_worker_that_leaves_hands_its_partitions_over_at_once() {
        let Some(test) = test_stream(|options| options.partitions = 8).await else {
            return;
        };
        let other = JetStream::connect(&test._names.url, test.log.options.clone())
            .await
            .unwrap();
        let (leaving, staying) = (&test.log, &other);
        let mut held = Vec::new();
        for partition in 0..8 {
            held.push(
                leaving
                    .partition(partition)
                    .subscribe("fanout")
                    .await
                    .unwrap(),
            );
        }
        // The other worker has joined (and been refused everything).
        for partition in 0..8 {
            assert!(
                staying
                    .partition(partition)
                    .subscribe("fanout")
                    .await
                    .is_err()
            );
        }
        for subscription in &mut held {
            subscription.close().await.unwrap();
        }
        leaving.leave().await;
        // Asked again as its consumer tasks do, until all are its own: by
        // its next look at the group, not when the leaver's hold lapses.
        let started = std::time::Instant::now();
        let mut taken = std::collections::BTreeMap::new();
        while taken.len() < 8 {
            for partition in 0..8u32 {
                if !taken.contains_key(&partition)
                    && let Ok(subscription) = staying.partition(partition).subscribe("fanout").await
                {
                    taken.insert(partition, subscription);
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{} of 8 taken after 3 s",
                taken.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    async fn a_pull_cut_short_by_shutdown_hands_its_event_back() {
        let Some(test) = test_stream(|options| options.partitions = 1).await else {
            return;
        };
        let log = &test.log;
        let mut stopping = log.partition(0).subscribe("fanout").await.unwrap();
        // Shutdown drops the wait for events while a pull is under way...
        assert!(
            tokio::time::timeout(Duration::from_millis(100), stopping.next_batch(64))
                .await
                .is_err()
        );
        // ...and an event arrives before that pull ends.
        log.publish(&[post(1, 5)]).await.unwrap();
        stopping.close().await.unwrap();
        drop(stopping);
        // The next worker gets it now, not after the acknowledgement wait.
        let mut next = log.partition(0).subscribe("fanout").await.unwrap();
        let started = std::time::Instant::now();
        assert_eq!(ids(&take(&mut next, 1).await), vec![1]);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn with_more_in_flight_events_come_in_batches() {
        let Some(test) = batching_partition().await else {
            return;
        };
        let log = &test.log;
        let events: Vec<_> = (1..=10).map(|id| post(id, 5)).collect();
        log.publish(&events).await.unwrap();
        let mut subscription = log.partition(0).subscribe("fanout").await.unwrap();
        let batch = subscription.next_batch(64).await.unwrap();
        assert_eq!(ids(&batch), (1..=10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn an_event_delivered_too_often_is_parked_and_the_rest_flows() {
        let Some(test) = test_stream(|options| {
            options.partitions = 1;
            options.max_deliveries = 2;
            options.max_in_flight = 64;
        })
        .await
        else {
            return;
        };
        let log = &test.log;
        log.publish(&[post(1, 5), post(2, 5)]).await.unwrap();
        // A worker that crashes on event 1, twice.
        for _ in 0..2 {
            let mut subscription = log.partition(0).subscribe("fanout").await.unwrap();
            assert_eq!(ids(&take(&mut subscription, 2).await)[0], 1);
            subscription.close().await.unwrap();
        }
        let mut subscription = log.partition(0).subscribe("fanout").await.unwrap();
        // Both were delivered twice: both are parked, none comes out.
        log.publish(&[post(3, 5)]).await.unwrap();
        assert_eq!(ids(&take(&mut subscription, 1).await), vec![3]);
        assert_eq!(dead_letters(log).await, 2);
    }

    #[tokio::test]
    async fn a_dead_letter_is_stored_with_its_reason() {
        let Some(test) = test_stream(|options| options.partitions = 1).await else {
            return;
        };
        let log = &test.log;
        log.publish(&[post(1, 5)]).await.unwrap();
        let mut subscription = log.partition(0).subscribe("fanout").await.unwrap();
        let batch = take(&mut subscription, 1).await;
        subscription
            .dead_letter(&batch[0], "handler failed: boom")
            .await
            .unwrap();
        assert_eq!(dead_letters(log).await, 1);
        let stream = log
            .context
            .get_stream(format!("{}_DEAD", log.options.stream))
            .await
            .unwrap();
        let subject = format!("{}.dead.fanout", log.options.subject_prefix);
        let parked = stream
            .get_last_raw_message_by_subject(&subject)
            .await
            .unwrap();
        let headers = parked.headers;
        assert_eq!(
            headers.get("Starling-Error").map(|value| value.as_str()),
            Some("handler failed: boom")
        );
    }

    #[tokio::test]
    async fn the_backlog_counts_what_consumers_have_not_acknowledged() {
        let Some(test) = test_stream(|options| options.partitions = 2).await else {
            return;
        };
        let log = &test.log;
        assert_eq!(log.backlog("fanout").await.unwrap(), 0);
        let events: Vec<_> = (1..=6).map(|id| post(id, id)).collect();
        log.publish(&events).await.unwrap();
        for partition in 0..2 {
            let _ = log.partition(partition).consumer("fanout").await.unwrap();
        }
        assert_eq!(log.backlog("fanout").await.unwrap(), 6);
    }
}
