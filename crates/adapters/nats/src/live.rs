//! The live-update log of scaled-out mode: a JetStream stream on file.
//!
//! Workers publish to `<prefix>.live.in.<topic>` with `Nats-Msg-Id` set to
//! the topic and the update's dedupe key, so an update published again
//! within the duplicate window is dropped. The stream *republishes* each
//! stored update to `<prefix>.live.out.<topic>` with its sequence
//! (`Nats-Sequence`) and the topic's previous sequence
//! (`Nats-Last-Sequence`); every API instance subscribes to those and hands
//! them to its hub in stream order. Replays are direct gets by subject.
//!
//! On file, not in memory, though every update is disposable: to put the
//! topic's previous sequence on a republished update, nats-server 2.9
//! looks up the subject's last message, which its memory store finds by
//! scanning every message kept (measured: 0.18 ms of server CPU per
//! update with 20,000 kept, 2.5 ms with 60,000), while its file store
//! indexes subjects per block (0.025 ms, flat). The file store is not
//! synced per message, and a restarted server keeps the window.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::stream::{
    Config as StreamConfig, DirectGetErrorKind, Republish, StorageType,
};
use async_nats::{HeaderMap, header};
use async_trait::async_trait;
use futures::future::try_join_all;
use futures::{StreamExt, TryStreamExt};
use starling_app::ports::{LiveError, LiveLog, LiveMessage, LiveSink, Replay};
use starling_app::resilience::{Guard, GuardError};
use starling_domain::{LiveEvent, Topic};

use crate::JetStream;

/// Topics read at once by a replay (a stream listens to every account its
/// reader follows).
const REPLAY_CONCURRENCY: usize = 16;

/// Why a publication failed: the stream is gone, or anything else.
enum Failure {
    Missing,
    Other(LiveError),
}

use Failure::{Missing, Other};

impl From<async_nats::jetstream::context::PublishError> for Failure {
    fn from(error: async_nats::jetstream::context::PublishError) -> Self {
        match error.kind() {
            async_nats::jetstream::context::PublishErrorKind::StreamNotFound => Missing,
            _ => Other(unavailable(error)),
        }
    }
}

impl Failure {
    fn into_error(self) -> LiveError {
        match self {
            Missing => unavailable("the live stream does not exist"),
            Other(error) => error,
        }
    }
}

/// The live log on JetStream.
#[derive(Clone)]
pub struct JetStreamLive {
    log: JetStream,
    stream: String,
    /// Kept to create the stream again if it is deleted under us.
    config: StreamConfig,
    /// `<prefix>.live.in.`, `<prefix>.live.out.`
    inbound: String,
    outbound: String,
}

fn unavailable(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> LiveError {
    LiveError::Unavailable(error.into())
}

fn guarded(error: GuardError<LiveError>) -> LiveError {
    match error {
        GuardError::Failed(error) => error,
        refused => unavailable(refused.to_string()),
    }
}

impl JetStream {
    /// The live log, creating its stream (`<stream>_LIVE`) if needed. Updates
    /// are kept for `retention` and at most `max_bytes` in all.
    pub async fn live(&self, retention: Duration, max_bytes: i64) -> anyhow::Result<JetStreamLive> {
        let prefix = &self.options().subject_prefix;
        let stream = format!("{}{}", self.options().stream, crate::LIVE);
        let inbound = format!("{prefix}.live.in.");
        let outbound = format!("{prefix}.live.out.");
        let config = StreamConfig {
            name: stream.clone(),
            subjects: vec![format!("{inbound}>")],
            storage: StorageType::File,
            max_age: retention,
            max_bytes,
            // Long enough for a worker's retries and redeliveries.
            duplicate_window: retention.min(Duration::from_secs(120)),
            allow_direct: true,
            republish: Some(Republish {
                source: format!("{inbound}>"),
                destination: format!("{outbound}>"),
                headers_only: false,
            }),
            num_replicas: self.options().replicas,
            ..StreamConfig::default()
        };
        let existing = self
            .context
            .get_or_create_stream(config.clone())
            .await
            .map_err(anyhow::Error::new)
            .with_context(|| format!("creating the JetStream stream {stream}"))?;
        if existing.cached_info().config.storage != StorageType::File {
            // Made by an earlier version, in memory (see above); what it
            // holds is disposable, and storage cannot be changed in place.
            tracing::info!(stream = %stream, "moving the live stream from memory to file");
            self.context
                .delete_stream(&stream)
                .await
                .map_err(anyhow::Error::new)
                .with_context(|| format!("replacing the JetStream stream {stream}"))?;
            self.context
                .create_stream(config.clone())
                .await
                .map_err(anyhow::Error::new)
                .with_context(|| format!("creating the JetStream stream {stream}"))?;
        }
        Ok(JetStreamLive {
            log: self.clone(),
            stream,
            config,
            inbound,
            outbound,
        })
    }
}

impl JetStreamLive {
    fn guard(&self) -> &Guard {
        &self.log.guard
    }

    async fn stream(&self) -> Result<async_nats::jetstream::stream::Stream, LiveError> {
        self.log
            .context
            .get_stream(&self.stream)
            .await
            .map_err(unavailable)
    }

    async fn publish_unguarded(&self, updates: &[(Topic, LiveEvent)]) -> Result<(), LiveError> {
        match self.publish_once(updates).await {
            Err(Missing) => {
                // The stream was deleted (or lost with its server's
                // disk): make it again, empty; resuming clients are told
                // to reload.
                tracing::warn!(stream = %self.stream, "the live stream is gone; creating it again");
                self.log
                    .context
                    .get_or_create_stream(self.config.clone())
                    .await
                    .map_err(unavailable)?;
                self.publish_once(updates)
                    .await
                    .map_err(Failure::into_error)
            }
            other => other.map_err(Failure::into_error),
        }
    }

    async fn publish_once(&self, updates: &[(Topic, LiveEvent)]) -> Result<(), Failure> {
        let mut acks = Vec::with_capacity(updates.len());
        for (topic, event) in updates {
            let payload = serde_json::to_vec(event).map_err(|error| Other(unavailable(error)))?;
            let mut headers = HeaderMap::new();
            headers.insert(
                header::NATS_MESSAGE_ID,
                format!("{topic}.{}", event.dedupe_key()).as_str(),
            );
            let ack = self
                .log
                .context
                .publish_with_headers(format!("{}{topic}", self.inbound), headers, payload.into())
                .await
                .map_err(Failure::from)?;
            acks.push(ack.into_future());
        }
        try_join_all(acks).await.map_err(Failure::from)?;
        Ok(())
    }

    async fn replay_unguarded(
        &self,
        topics: &[Topic],
        after: u64,
        through: u64,
        limit: usize,
    ) -> Result<Replay, LiveError> {
        let stream = self.stream().await?;
        let state = &stream.cached_info().state;
        if after > state.last_sequence {
            return Ok(Replay::default());
        }
        // Updates between the position and the oldest kept are gone (of
        // these topics or others: either way, no promise).
        let mut complete = after.saturating_add(1) >= state.first_sequence;
        // A stream listens to every account its reader follows: the topics
        // are read side by side, each in order.
        let stream = &stream;
        let per_topic: Vec<Vec<LiveMessage>> = futures::stream::iter(topics.iter().copied())
            .map(|topic| self.replay_topic(stream, topic, after, through, limit))
            .buffer_unordered(REPLAY_CONCURRENCY)
            .try_collect()
            .await?;
        let mut messages: Vec<LiveMessage> = per_topic.into_iter().flatten().collect();
        messages.sort_by_key(|message| message.sequence);
        if messages.len() > limit {
            messages.truncate(limit);
            complete = false;
        }
        Ok(Replay { messages, complete })
    }

    /// `topic`'s updates in `(after, through]`, oldest first, at most
    /// `limit + 1` (one more says the replay is over its limit).
    async fn replay_topic(
        &self,
        stream: &async_nats::jetstream::stream::Stream,
        topic: Topic,
        after: u64,
        through: u64,
        limit: usize,
    ) -> Result<Vec<LiveMessage>, LiveError> {
        let subject = format!("{}{topic}", self.inbound);
        let mut messages = Vec::new();
        let mut next = after + 1;
        let mut previous = None;
        while messages.len() <= limit {
            let message = match stream
                .direct_get_next_for_subject(&subject, Some(next))
                .await
            {
                Ok(message) => message,
                Err(error) if error.kind() == DirectGetErrorKind::NotFound => break,
                Err(error) => return Err(unavailable(error)),
            };
            if message.sequence > through {
                break;
            }
            let event: LiveEvent = serde_json::from_slice(&message.payload).map_err(unavailable)?;
            messages.push(LiveMessage {
                sequence: message.sequence,
                topic,
                event: Arc::new(event),
                previous_in_topic: previous,
            });
            previous = Some(message.sequence);
            next = message.sequence + 1;
        }
        Ok(messages)
    }

    /// A republished update, as the hub sees it.
    fn decode(&self, message: &async_nats::Message) -> Option<LiveMessage> {
        let headers = message.headers.as_ref()?;
        let number =
            |name: header::HeaderName| -> Option<u64> { headers.get(name)?.as_str().parse().ok() };
        let topic = Topic::parse(message.subject.as_str().strip_prefix(&self.outbound)?)?;
        let event: LiveEvent = serde_json::from_slice(&message.payload).ok()?;
        Some(LiveMessage {
            sequence: number(header::NATS_SEQUENCE)?,
            topic,
            event: Arc::new(event),
            previous_in_topic: number(header::NATS_LAST_SEQUENCE).filter(|sequence| *sequence > 0),
        })
    }
}

#[async_trait]
impl LiveLog for JetStreamLive {
    async fn publish(&self, updates: &[(Topic, LiveEvent)]) -> Result<(), LiveError> {
        if updates.is_empty() {
            return Ok(());
        }
        self.guard()
            .call(self.publish_unguarded(updates))
            .await
            .map_err(guarded)
    }

    async fn head(&self) -> Result<u64, LiveError> {
        self.guard()
            .call(async { Ok(self.stream().await?.cached_info().state.last_sequence) })
            .await
            .map_err(guarded)
    }

    async fn replay(
        &self,
        topics: &[Topic],
        after: u64,
        through: u64,
        limit: usize,
    ) -> Result<Replay, LiveError> {
        self.guard()
            .call(self.replay_unguarded(topics, after, through, limit))
            .await
            .map_err(guarded)
    }

    async fn attach(&self, sink: Arc<dyn LiveSink>) -> Result<(), LiveError> {
        let mut subscription = self
            .log
            .client
            .subscribe(format!("{}>", self.outbound))
            .await
            .map_err(unavailable)?;
        // Subscribed at the server before anything is published after this.
        self.log.client.flush().await.map_err(unavailable)?;
        let live = self.clone();
        tokio::spawn(async move {
            // One subscription, read by one task: updates reach the hub in
            // the order the stream stored them.
            while let Some(message) = subscription.next().await {
                match live.decode(&message) {
                    Some(update) => sink.deliver(update),
                    None => tracing::warn!(subject = %message.subject, "undecodable live update"),
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JetStreamOptions;
    use starling_testing::NatsStream;

    async fn make(
        retention: Duration,
        _topic_capacity: usize,
    ) -> Option<(Arc<dyn LiveLog>, Box<dyn std::any::Any + Send>)> {
        let names = NatsStream::new()?;
        let log = JetStream::connect(
            &names.url,
            JetStreamOptions {
                stream: names.stream.clone(),
                subject_prefix: names.subject_prefix.clone(),
                partitions: 1,
                ..JetStreamOptions::default()
            },
        )
        .await
        .expect("connect to STARLING_TEST_NATS_URL");
        let live = log
            .live(retention, 16 << 20)
            .await
            .expect("the live stream is created");
        Some((Arc::new(live), Box::new(names)))
    }

    starling_app::live_log_contract!(make);
}

#[cfg(test)]
mod restart {
    use super::*;
    use starling_domain::{PostId, UserId};

    /// A server restart keeps the window (the stream is on file) and
    /// publishing goes on once the client reconnects; a stream deleted
    /// under the log is made again by the next publication.
    #[tokio::test]
    async fn the_window_survives_a_server_restart_and_a_lost_stream_is_made_again() {
        let Some(mut server) = starling_testing::OwnServer::nats() else {
            return;
        };
        let log = JetStream::connect(
            &server.url,
            crate::JetStreamOptions {
                partitions: 1,
                ..crate::JetStreamOptions::default()
            },
        )
        .await
        .unwrap();
        let live = log.live(Duration::from_secs(60), 1 << 20).await.unwrap();
        let topic = Topic::Inbox(UserId(1));
        let update = |id| {
            (
                topic,
                LiveEvent::Post {
                    post_id: PostId(id),
                    author_id: UserId(2),
                },
            )
        };
        live.publish(&[update(1)]).await.unwrap();
        server.kill();
        server.restart();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        // The client reconnects on its own; then the publish goes through.
        while live.publish(&[update(2)]).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "never published again"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let replay = live.replay(&[topic], 0, u64::MAX, 10).await.unwrap();
        let kept: Vec<u64> = replay
            .messages
            .iter()
            .map(|message| message.sequence)
            .collect();
        assert_eq!(kept, [1, 2], "the update from before the restart is kept");

        log.context.delete_stream("STARLING_LIVE").await.unwrap();
        live.publish(&[update(3)]).await.unwrap();
        assert_eq!(live.head().await.unwrap(), 1, "a new, empty stream");
    }

    /// A live stream an earlier version made in memory is replaced by one
    /// on file.
    #[tokio::test]
    async fn a_live_stream_in_memory_is_replaced_by_one_on_file() {
        let Some(names) = starling_testing::NatsStream::new() else {
            return;
        };
        let log = JetStream::connect(
            &names.url,
            crate::JetStreamOptions {
                stream: names.stream.clone(),
                subject_prefix: names.subject_prefix.clone(),
                partitions: 1,
                ..crate::JetStreamOptions::default()
            },
        )
        .await
        .unwrap();
        let stream = format!("{}_LIVE", names.stream);
        log.context
            .create_stream(StreamConfig {
                name: stream.clone(),
                subjects: vec![format!("{}.live.in.>", names.subject_prefix)],
                storage: StorageType::Memory,
                ..StreamConfig::default()
            })
            .await
            .unwrap();
        let _live = log.live(Duration::from_secs(60), 1 << 20).await.unwrap();
        let info = log.context.get_stream(&stream).await.unwrap();
        assert_eq!(info.cached_info().config.storage, StorageType::File);
    }
}
