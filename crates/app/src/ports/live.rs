//! The live-update port: a short-lived, ordered log of updates per topic,
//! which streaming clients follow and, after a reconnect, replay from where
//! they left off (`Last-Event-ID`).
//!
//! Every update gets a sequence number from the log, increasing in the
//! order the log stores updates (over all topics). The log delivers every
//! update, in that order, to the one sink of this process (the stream hub),
//! and keeps each for a retention window for replays.

use std::sync::Arc;

use async_trait::async_trait;
use starling_domain::{LiveEvent, Topic};

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("live update log unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// An update as stored: where it was published and its place in the log.
#[derive(Debug, Clone)]
pub struct LiveMessage {
    pub sequence: u64,
    pub topic: Topic,
    pub event: Arc<LiveEvent>,
    /// The sequence of the topic's update before this one, when the log
    /// knows it: a reader that saw an earlier update of the topic but not
    /// that one has missed something.
    pub previous_in_topic: Option<u64>,
}

/// What a replay found.
#[derive(Debug, Default)]
pub struct Replay {
    /// The topics' updates after the position, oldest first.
    pub messages: Vec<LiveMessage>,
    /// False when updates after the position may be gone: older than the
    /// retention window, from before the log (re)started, or more than the
    /// replay limit. The reader must then reload what it shows.
    pub complete: bool,
}

/// Where a log delivers its updates, as they are stored. Must not block:
/// it is called in the log's delivery order.
pub trait LiveSink: Send + Sync {
    fn deliver(&self, message: LiveMessage);
}

#[async_trait]
pub trait LiveLog: Send + Sync {
    /// Stores updates; each one already stored under its topic and
    /// `LiveEvent::dedupe_key` within the retention window is dropped, so
    /// a worker redoing an event publishes nothing twice.
    async fn publish(&self, updates: &[(Topic, LiveEvent)]) -> Result<(), LiveError>;

    /// The sequence of the newest update stored so far (0 when none).
    async fn head(&self) -> Result<u64, LiveError>;

    /// The updates of `topics` with `after < sequence <= through`, oldest
    /// first, at most `limit` (beyond it the replay is incomplete).
    async fn replay(
        &self,
        topics: &[Topic],
        after: u64,
        through: u64,
        limit: usize,
    ) -> Result<Replay, LiveError>;

    /// Delivers every update stored from now on to `sink`. Called once.
    async fn attach(&self, sink: Arc<dyn LiveSink>) -> Result<(), LiveError>;
}
