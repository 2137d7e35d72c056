//! One client's live stream: the updates of its topics, replayed from where
//! it left off, then as they arrive; each loaded and shaped for its reader.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use starling_domain::{LiveEvent, PostId, Timestamp, Topic, UserId};
use tokio::time::Instant;

use crate::App;
use crate::auth::TokenIdentity;
use crate::error::{AppError, AppResult};
use crate::feed::Hydration;
use crate::graph::Hiding;
use crate::live::hub::{Connection, LiveHub};
use crate::notifications::{NotificationView, Notifications};
use crate::page::PostView;
use crate::ports::{LiveError, LiveLog, LiveMessage, Replay};

/// Updates replayed on a resume at most; a client further behind reloads.
pub const REPLAY_LIMIT: usize = 1_000;

/// Post ids remembered per stream to send each arrival once (a replay
/// after a follow can overlap what arrived live).
const RECENT_POSTS: usize = 64;

/// What a stream sends.
#[derive(Debug, Clone)]
pub enum StreamItem {
    /// A post arrived in the home timeline.
    Post { sequence: u64, view: PostView },
    /// A post left it (deleted).
    Deleted { sequence: u64, post_id: PostId },
    Notification {
        sequence: u64,
        view: NotificationView,
    },
    /// Updates since the position the client resumed from may be missing:
    /// it should reload its timeline and notifications. The sequence, when
    /// known, is where the stream goes on from (the client's next position).
    Reset { sequence: Option<u64> },
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The hub dropped it (a queue left full by a slow reader) or the
    /// instance is shutting down.
    Dropped,
    /// An update of one of its topics never arrived; the client resumes
    /// (and replays it) on reconnecting.
    Gap,
    /// The access token it was opened with expired: the client reconnects
    /// with a fresh one (and `Last-Event-ID`, so nothing is missed).
    Expired,
    /// The session of that token ended (logout, or a refresh token reused).
    SessionEnded,
}

pub struct LiveStream {
    /// What a stream asks to show an update to its reader.
    hiding: Arc<Hiding>,
    hydration: Arc<Hydration>,
    notifications: Arc<Notifications>,
    viewer: UserId,
    /// The session of the token it was opened with, when it names one.
    session: Option<i64>,
    /// When that token expires.
    deadline: Instant,
    log: Arc<dyn LiveLog>,
    connection: Connection,
    /// What it listens to: its reader's inbox, and the posts of its reader
    /// and of the accounts its reader follows.
    topics: Vec<Topic>,
    /// Replayed updates not sent yet, oldest first.
    replayed: VecDeque<LiveMessage>,
    /// Updates at or below it came in the replay.
    floor: u64,
    /// The newest update seen per topic, to notice a missing one.
    seen: HashMap<Topic, u64>,
    recent_posts: VecDeque<PostId>,
    /// A reset to send first, and from where.
    reset: Option<Option<u64>>,
}

impl LiveStream {
    /// Opens the stream of the token's account, resuming after `after`
    /// when given; it lasts as long as the token and its session. The hub
    /// registration comes before the replay, so nothing published in
    /// between is missed; the replay runs up to the log's head at that
    /// moment, and live updates at or below it are skipped as replayed.
    pub async fn open(
        app: &App,
        hub: &LiveHub,
        token: TokenIdentity,
        after: Option<u64>,
    ) -> AppResult<Self> {
        // Verification tolerates a few seconds of clock skew; a stream is
        // not opened on a token already past its expiry.
        let left_ms = token
            .expires_at
            .saturating_mul(1000)
            .saturating_sub(Timestamp::now_ms());
        if left_ms <= 0 {
            return Err(AppError::Unauthenticated(
                "the access token has expired; refresh it",
            ));
        }
        let deadline = Instant::now() + std::time::Duration::from_millis(left_ms.unsigned_abs());
        let viewer = token.user;
        // Its reader's notifications and control updates, and the posts of
        // its reader and of every account its reader follows (one update
        // per post, on its author's topic).
        let mut topics = vec![Topic::Inbox(viewer), Topic::Author(viewer)];
        topics.extend(
            app.ports()
                .store
                .followed_with_followers_at_least(viewer, 0)
                .await?
                .into_iter()
                .map(Topic::Author),
        );
        let connection = hub.connect(viewer, topics.clone())?;
        // A token outlives its session by up to its lifetime: no stream for
        // a session that has ended. Asked once the hub listens, so a session
        // ending after this answer reaches the stream as an update.
        if let Some(session) = token.session
            && !app
                .ports()
                .store
                .session_is_open(session, Timestamp::now())
                .await?
        {
            return Err(AppError::Unauthenticated(
                "the session of this access token has ended",
            ));
        }
        let mut stream = Self {
            hiding: app.hiding().clone(),
            hydration: app.hydration().clone(),
            notifications: app.notifications().clone(),
            viewer,
            session: token.session,
            deadline,
            log: hub.log().clone(),
            connection,
            topics: topics.clone(),
            replayed: VecDeque::new(),
            floor: 0,
            seen: HashMap::new(),
            recent_posts: VecDeque::with_capacity(RECENT_POSTS),
            reset: None,
        };
        if let Some(after) = after {
            stream.resume(&topics, after).await;
        }
        Ok(stream)
    }

    /// The log's head now, and what `topics` got after `after` up to it.
    async fn replay_to_head(
        &self,
        topics: &[Topic],
        after: u64,
    ) -> Result<(u64, Replay), LiveError> {
        let head = self.log.head().await?;
        let replay = self.log.replay(topics, after, head, REPLAY_LIMIT).await?;
        Ok((head, replay))
    }

    async fn resume(&mut self, topics: &[Topic], after: u64) {
        match self.replay_to_head(topics, after).await {
            Ok((head, replay)) if replay.complete => {
                metrics::counter!(crate::metric::STREAM_RESUMES_TOTAL, "outcome" => "replayed")
                    .increment(1);
                self.floor = head;
                for topic in topics {
                    self.seen.insert(*topic, head);
                }
                self.replayed = replay.messages.into();
            }
            Ok((head, _)) => {
                metrics::counter!(crate::metric::STREAM_RESUMES_TOTAL, "outcome" => "reset")
                    .increment(1);
                self.floor = head;
                for topic in topics {
                    self.seen.insert(*topic, head);
                }
                self.reset = Some(Some(head));
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot replay live updates; the client reloads");
                metrics::counter!(crate::metric::STREAM_RESUMES_TOTAL, "outcome" => "failed")
                    .increment(1);
                self.reset = Some(None);
            }
        }
    }

    /// The next item to send, or why the stream ends. Cancel-safe between
    /// updates: an update taken from the queue is sent or skipped before
    /// this returns.
    pub async fn next(&mut self) -> Result<StreamItem, StreamEnd> {
        if let Some(sequence) = self.reset.take() {
            return Ok(StreamItem::Reset { sequence });
        }
        loop {
            if Instant::now() >= self.deadline {
                return Err(StreamEnd::Expired);
            }
            let message = match self.replayed.pop_front() {
                Some(message) => message,
                None => {
                    let message = tokio::select! {
                        message = self.connection.updates.recv() => message,
                        () = tokio::time::sleep_until(self.deadline) => {
                            return Err(StreamEnd::Expired);
                        }
                    }
                    .ok_or(StreamEnd::Dropped)?;
                    if message.sequence <= self.floor
                        || self
                            .seen
                            .get(&message.topic)
                            .is_some_and(|seen| message.sequence <= *seen)
                    {
                        // Replayed already.
                        continue;
                    }
                    if let (Some(previous), Some(seen)) = (
                        message.previous_in_topic,
                        self.seen.get(&message.topic).copied(),
                    ) && previous > seen
                    {
                        metrics::counter!(crate::metric::STREAM_DROPPED_TOTAL, "reason" => "gap")
                            .increment(1);
                        return Err(StreamEnd::Gap);
                    }
                    message
                }
            };
            let seen = self.seen.entry(message.topic).or_default();
            *seen = (*seen).max(message.sequence);
            if let LiveEvent::SessionEnded { session, .. } = message.event.as_ref() {
                if self.session == Some(*session) {
                    return Err(StreamEnd::SessionEnded);
                }
                continue;
            }
            if let LiveEvent::Following {
                follower,
                followee,
                following,
                ..
            } = message.event.as_ref()
            {
                if *follower == self.viewer {
                    self.follow(Topic::Author(*followee), *following, message.sequence)
                        .await;
                }
                continue;
            }
            match self.item(&message).await {
                Ok(Some(item)) => return Ok(item),
                Ok(None) => {}
                Err(error) => {
                    // The client resumes from the last update it got.
                    tracing::warn!(error = %error, "cannot load a live update; ending the stream");
                    return Err(StreamEnd::Gap);
                }
            }
        }
    }

    /// Starts or stops listening to `topic` (a followed account's posts),
    /// as told at `sequence`. What the topic got since then
    /// (published before the hub listened for this stream) is replayed.
    async fn follow(&mut self, topic: Topic, following: bool, sequence: u64) {
        if following == self.topics.contains(&topic) {
            return;
        }
        if !following {
            self.topics.retain(|listened| *listened != topic);
            self.seen.remove(&topic);
            self.connection.listen_to(self.topics.clone());
            return;
        }
        self.topics.push(topic);
        self.connection.listen_to(self.topics.clone());
        match self.replay_to_head(&[topic], sequence).await {
            Ok((head, replay)) => {
                self.seen.insert(topic, head);
                self.replayed.extend(replay.messages);
            }
            // Live updates of the topic still come; at worst the posts of
            // the moment in between show on the next reload.
            Err(error) => {
                tracing::warn!(error = %error, "cannot replay a followed account's posts")
            }
        }
    }

    /// The update as this reader sees it; `None` when it sees nothing.
    async fn item(&mut self, message: &LiveMessage) -> AppResult<Option<StreamItem>> {
        let sequence = message.sequence;
        let hidden = self.hiding.hidden_from(self.viewer).await?;
        if hidden.hides_content_of(message.event.actor()) {
            return Ok(None);
        }
        Ok(match message.event.as_ref() {
            LiveEvent::Post { post_id, .. } => {
                if self.recent_posts.contains(post_id) {
                    return Ok(None);
                }
                if self.recent_posts.len() == RECENT_POSTS {
                    self.recent_posts.pop_front();
                }
                self.recent_posts.push_back(*post_id);
                self.hydration
                    .hydrate(Some(self.viewer), &[*post_id])
                    .await?
                    .pop()
                    .map(|view| StreamItem::Post { sequence, view })
            }
            LiveEvent::PostDeleted { post_id, .. } => Some(StreamItem::Deleted {
                sequence,
                post_id: *post_id,
            }),
            LiveEvent::Notification { notification } => {
                if notification.recipient != self.viewer {
                    return Ok(None);
                }
                let notifications = &self.notifications;
                let read_through = notifications.read_through(self.viewer).await?;
                notifications
                    .views(self.viewer, vec![notification.clone()], read_through)
                    .await?
                    .pop()
                    .map(|view| StreamItem::Notification { sequence, view })
            }
            // Handled by `next`.
            LiveEvent::Following { .. } | LiveEvent::SessionEnded { .. } => None,
        })
    }
}
