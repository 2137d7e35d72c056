//! The fan-out worker: turns graph and post events into timeline changes.
//! Every step is idempotent (inserting a known id or removing an absent one
//! changes nothing), so redelivery after a crash is harmless.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use starling_domain::{
    Event, EventEnvelope, EventId, LiveEvent, Post, PostId, Timestamp, Topic, UserId,
};
use tracing::Instrument;

use crate::App;
use crate::error::AppResult;
use crate::feed::{FANOUT_BATCH, Feed, floor_of};
use crate::ports::{AccountStore, Cache, Cached, GraphStore, LiveLog, PostStore, TimelineEntry};
use crate::workers::EventHandler;
use crate::workers::audiences::{Audience, Audiences};

/// The worker holds the feed service (timelines and their upkeep) and the
/// few ports the feed does not cover: whether a follow still stands,
/// authors' follower counts, their newest posts, the post cache (for
/// tombstones) and the live log.
pub struct FanoutWorker {
    feed: Arc<Feed>,
    graph: Arc<dyn GraphStore>,
    accounts: Arc<dyn AccountStore>,
    posts: Arc<dyn PostStore>,
    post_cache: Arc<dyn Cache<PostId, Cached<Arc<Post>>>>,
    live: Arc<dyn LiveLog>,
    audiences: Audiences,
}

impl FanoutWorker {
    pub const CONSUMER: &'static str = "fanout";

    /// A worker; the follower lists it keeps are exact because it sees,
    /// in order, every event of the parts of the log it consumes, and a
    /// follow lands in the same part (partition) as its followee's posts.
    pub fn new(app: &App) -> Self {
        let ports = app.ports();
        Self {
            feed: app.feed().clone(),
            graph: ports.store.clone(),
            accounts: ports.store.clone(),
            posts: ports.store.clone(),
            post_cache: ports.caches.posts.clone(),
            live: ports.live.clone(),
            audiences: Audiences::new(),
        }
    }

    async fn publish_live(&self, updates: &[(Topic, LiveEvent)]) -> AppResult<()> {
        crate::live::publish(self.live.as_ref(), updates).await
    }

    async fn audience_of(&self, author: UserId) -> AppResult<Audience> {
        self.audiences
            .of(self.accounts.as_ref(), &self.feed, author)
            .await
    }
}

#[async_trait]
impl EventHandler for FanoutWorker {
    fn name(&self) -> &'static str {
        Self::CONSUMER
    }

    fn handles_batches(&self) -> bool {
        true
    }

    /// A part of the log (re)taken may have been consumed elsewhere
    /// meanwhile: the follower lists kept from before could miss its
    /// follows.
    fn subscribed(&self) {
        self.audiences.forget();
    }

    /// Runs of consecutive new posts are fanned out together (their
    /// audiences looked up side by side, their timeline inserts in one go,
    /// their live updates in one publication); anything else is a barrier
    /// handled on its own, in order.
    async fn handle_batch(&self, batch: &[EventEnvelope]) -> AppResult<()> {
        let mut posts: Vec<&EventEnvelope> = Vec::new();
        for envelope in batch {
            if matches!(envelope.event, Event::PostCreated { .. }) {
                posts.push(envelope);
                continue;
            }
            self.fan_out_posts(&std::mem::take(&mut posts)).await?;
            self.handle(envelope).await?;
        }
        self.fan_out_posts(&posts).await
    }

    async fn handle(&self, envelope: &EventEnvelope) -> AppResult<()> {
        let feed = &self.feed;
        match &envelope.event {
            Event::PostCreated { .. } => self.fan_out_posts(&[envelope]).await,
            Event::PostDeleted { post_id, author_id } => {
                let audience = self.audience_of(*author_id).await?;
                self.retract_post(*post_id, *author_id, &audience).await
            }
            Event::Followed {
                follower_id,
                followee_id,
                followee_followers,
            } => {
                self.audiences.followed(*followee_id, *follower_id);
                feed.forget_high_fanout_followees(*follower_id).await;
                if *followee_followers == feed.merge_threshold() {
                    // The account just entered the band merged at read time
                    // (before its posts stop being fanned out, at the
                    // threshold), so its followers' cached lists of such
                    // accounts are out of date.
                    self.account_entered_merge_band(*followee_id).await?;
                }
                // The follow's request backfilled already; this is the retry
                // for when it could not. Not once the follow is gone: an
                // unfollow since then removed the followee's posts, and
                // backfilling now would bring them back until its own event.
                if !self.graph.is_following(*follower_id, *followee_id).await? {
                    return Ok(());
                }
                feed.apply_follow_to_timeline(*follower_id, *followee_id, *followee_followers)
                    .await?;
                // An unfollow that committed between the check above and
                // the insert removed the posts before they went in: take
                // them out again now rather than when its event comes (the
                // request's answer already promised they were gone).
                if !self.graph.is_following(*follower_id, *followee_id).await? {
                    feed.timelines()
                        .remove_author(*follower_id, *followee_id)
                        .await?;
                    return Ok(());
                }
                // The follower's open streams listen to its posts from now
                // on (after the backfill: a stream told of the follow
                // finds the account's posts in the timeline).
                self.publish_live(&[following_update(
                    *follower_id,
                    *followee_id,
                    true,
                    envelope.id,
                )])
                .await
            }
            Event::Unfollowed {
                follower_id,
                followee_id,
                followee_followers,
            } => {
                self.audiences.unfollowed(*followee_id, *follower_id);
                feed.forget_high_fanout_followees(*follower_id).await;
                feed.timelines()
                    .remove_author(*follower_id, *followee_id)
                    .await?;
                if *followee_followers == feed.fanout_threshold() - 1 {
                    // The account just dropped below the threshold: its posts
                    // were merged at read time until now, so write them into
                    // its followers' timelines.
                    self.backfill_to_followers(*followee_id).await?;
                }
                // The follower's open streams listened to it: stop.
                self.publish_live(&[following_update(
                    *follower_id,
                    *followee_id,
                    false,
                    envelope.id,
                )])
                .await
            }
            Event::UserRegistered { .. }
            | Event::ProfileUpdated { .. }
            | Event::Liked { .. }
            | Event::Unliked { .. }
            | Event::MediaUploaded { .. }
            | Event::AccountSuspended { .. }
            | Event::AccountReinstated { .. } => Ok(()),
        }
    }
}

impl FanoutWorker {
    /// `posts` (all `PostCreated`, in log order) fanned out as one, a round
    /// trip per step for them all. Each post's trace gets a `fan_out_post`
    /// span for the time its batch took.
    async fn fan_out_posts(&self, posts: &[&EventEnvelope]) -> AppResult<()> {
        let spans: Vec<tracing::Span> = posts
            .iter()
            .map(|envelope| {
                let span = tracing::info_span!("fan_out_post", post_id = tracing::field::Empty);
                if let Event::PostCreated { post_id, .. } = envelope.event {
                    span.record("post_id", post_id.get());
                }
                if posts.len() > 1 {
                    crate::telemetry::adopt_traceparent(&span, envelope.trace_parent.as_deref());
                }
                span
            })
            .collect();
        match spans.as_slice() {
            [one] => self.fan_out_batch(posts).instrument(one.clone()).await,
            _ => self.fan_out_batch(posts).await,
        }
    }

    async fn fan_out_batch(&self, posts: &[&EventEnvelope]) -> AppResult<()> {
        let created: Vec<(PostId, UserId, Timestamp)> = posts
            .iter()
            .filter_map(|envelope| match envelope.event {
                Event::PostCreated {
                    post_id, author_id, ..
                } => Some((post_id, author_id, envelope.occurred_at)),
                _ => None,
            })
            .collect();
        if created.is_empty() {
            return Ok(());
        }
        let mut authors: Vec<UserId> = created.iter().map(|(_, author, _)| *author).collect();
        authors.sort_unstable();
        authors.dedup();
        // A reader may have cached an author's recent posts from just
        // before these committed.
        self.feed.forget_authors_recent(&authors).await;
        let audiences: HashMap<UserId, Audience> = futures::stream::iter(authors.iter().copied())
            .map(|author| async move {
                self.audience_of(author)
                    .await
                    .map(|audience| (author, audience))
            })
            .buffer_unordered(AUDIENCES_AT_ONCE)
            .try_collect()
            .await?;
        let mut pairs = Vec::new();
        let mut fanned_out = 0u64;
        for (post_id, author_id, _) in &created {
            let entry = TimelineEntry {
                post_id: *post_id,
                author_id: *author_id,
            };
            pairs.push((*author_id, entry));
            match audiences.get(author_id) {
                Some(Audience::Followers(followers)) => {
                    pairs.extend(followers.iter().map(|follower| (*follower, entry)));
                    fanned_out += 1;
                }
                Some(Audience::MergedAtRead) | None => {
                    metrics::counter!(crate::metric::FANOUT_SKIPPED_HIGH_FANOUT_TOTAL).increment(1)
                }
            }
        }
        self.feed.timelines().insert_each(&pairs).await?;
        let inserts = pairs.len() as u64 - created.len() as u64;
        metrics::counter!(crate::metric::FANOUT_TIMELINE_INSERTS_TOTAL).increment(inserts);
        metrics::counter!(crate::metric::FANOUT_POSTS_TOTAL).increment(fanned_out);
        // After the timelines, as for one post.
        let updates: Vec<(Topic, LiveEvent)> = created
            .iter()
            .map(|(post_id, author_id, _)| {
                (
                    Topic::Author(*author_id),
                    LiveEvent::Post {
                        post_id: *post_id,
                        author_id: *author_id,
                    },
                )
            })
            .collect();
        self.publish_live(&updates).await?;
        let now = Timestamp::now_ms();
        for (_, author_id, occurred_at) in &created {
            if matches!(audiences.get(author_id), Some(Audience::Followers(_))) {
                let lag_ms = (now - occurred_at.millis()).max(0);
                metrics::histogram!(crate::metric::FANOUT_LAG_SECONDS)
                    .record(lag_ms as f64 / 1000.0);
            }
        }
        Ok(())
    }
}

/// Authors whose audiences are looked up at once by a batch.
const AUDIENCES_AT_ONCE: usize = 16;

/// Tells `follower`'s streams to listen to `followee`'s posts, or stop.
fn following_update(
    follower: UserId,
    followee: UserId,
    following: bool,
    cause: EventId,
) -> (Topic, LiveEvent) {
    (
        Topic::Inbox(follower),
        LiveEvent::Following {
            follower,
            followee,
            following,
            cause,
        },
    )
}

impl FanoutWorker {
    /// Removes a deleted post from its author's followers' timelines; when
    /// the author is above the threshold (merged at read) their followers
    /// are read from SQL, as the post may predate the crossing.
    async fn retract_post(
        &self,
        post_id: PostId,
        author_id: UserId,
        audience: &Audience,
    ) -> AppResult<()> {
        let timelines = self.feed.timelines();
        self.post_cache
            .put_many(vec![(
                post_id,
                Cached::Found(Arc::new(Post::tombstone(post_id, author_id))),
            )])
            .await;
        self.feed.forget_authors_recent(&[author_id]).await;
        timelines.remove_post(&[author_id], post_id).await?;
        match audience {
            Audience::Followers(audience) => {
                for followers in audience.chunks(FANOUT_BATCH) {
                    timelines.remove_post(followers, post_id).await?;
                }
            }
            Audience::MergedAtRead => {
                self.feed
                    .for_each_follower_batch(author_id, |followers| async move {
                        timelines.remove_post(&followers, post_id).await?;
                        Ok(())
                    })
                    .await?;
            }
        }
        self.publish_live(&[(
            Topic::Author(author_id),
            LiveEvent::PostDeleted { post_id, author_id },
        )])
        .await
    }

    async fn account_entered_merge_band(&self, author: UserId) -> AppResult<()> {
        let feed = &self.feed;
        feed.for_each_follower_batch(author, |followers| async move {
            for follower in &followers {
                feed.forget_high_fanout_followees(*follower).await;
            }
            Ok(())
        })
        .await
    }

    async fn backfill_to_followers(&self, author: UserId) -> AppResult<()> {
        let feed = &self.feed;
        let cap = feed.timeline_cap();
        let entries = self.posts.author_entries(author, None, cap).await?;
        if entries.is_empty() {
            return Ok(());
        }
        let floor = floor_of(&entries, cap);
        let entries = &entries;
        feed.for_each_follower_batch(author, |followers| async move {
            for follower in followers {
                feed.timelines()
                    .insert_many(follower, entries, floor)
                    .await?;
                feed.forget_high_fanout_followees(follower).await;
            }
            Ok(())
        })
        .await
    }
}
