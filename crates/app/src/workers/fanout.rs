//! The fan-out worker: turns graph and post events into timeline changes.
//! Every step is idempotent (inserting a known id or removing an absent one
//! changes nothing), so redelivery after a crash is harmless.

use std::sync::Arc;

use async_trait::async_trait;
use starling_domain::{
    Event, EventEnvelope, EventId, LiveEvent, Post, PostId, Timestamp, Topic, UserId,
};

use crate::App;
use crate::error::AppResult;
use crate::feed::{FANOUT_BATCH, floor_of};
use crate::ports::TimelineEntry;
use crate::workers::EventHandler;
use crate::workers::audiences::Audiences;

pub struct FanoutWorker {
    app: Arc<App>,
    audiences: Audiences,
}

impl FanoutWorker {
    pub const CONSUMER: &'static str = "fanout";

    /// A worker that sees every event of the log, in order (embedded mode).
    pub fn new(app: Arc<App>) -> Self {
        Self {
            app,
            audiences: Audiences::new(true),
        }
    }

    /// A worker sharing partitions of the log with other workers: it cannot
    /// keep follower lists exact from the events it sees, so it reads each
    /// post's audience from SQL.
    pub fn sharing_the_log(app: Arc<App>) -> Self {
        Self {
            app,
            audiences: Audiences::new(false),
        }
    }
}

#[async_trait]
impl EventHandler for FanoutWorker {
    fn name(&self) -> &'static str {
        Self::CONSUMER
    }

    async fn handle(&self, envelope: &EventEnvelope) -> AppResult<()> {
        let app = &self.app;
        match &envelope.event {
            Event::PostCreated {
                post_id, author_id, ..
            } => {
                // A reader may have cached the author's recent posts from just
                // before this one committed.
                app.ports.caches.author_recent.invalidate(author_id).await;
                let audience = self.audiences.of(app, *author_id).await?;
                let fanned_out = app
                    .fan_out_post(*post_id, *author_id, audience.as_deref())
                    .await?;
                if fanned_out {
                    // From the commit of the post to its arrival in the last
                    // follower's timeline.
                    let lag_ms = (Timestamp::now_ms() - envelope.occurred_at.millis()).max(0);
                    metrics::histogram!("starling_fanout_lag_seconds")
                        .record(lag_ms as f64 / 1000.0);
                }
                Ok(())
            }
            Event::PostDeleted { post_id, author_id } => {
                let audience = self.audiences.of(app, *author_id).await?;
                app.retract_post(*post_id, *author_id, audience.as_deref())
                    .await
            }
            Event::Followed {
                follower_id,
                followee_id,
                followee_followers,
            } => {
                self.audiences.followed(*followee_id, *follower_id);
                app.ports
                    .caches
                    .high_fanout_followees
                    .invalidate(follower_id)
                    .await;
                if *followee_followers == app.settings.merge_threshold() {
                    // The account just entered the band merged at read time
                    // (before its posts stop being fanned out, at the
                    // threshold), so its followers' cached lists of such
                    // accounts are out of date.
                    app.account_entered_merge_band(*followee_id).await?;
                }
                // The follow's request backfilled already; this is the retry
                // for when it could not. Not once the follow is gone: an
                // unfollow since then removed the followee's posts, and
                // backfilling now would bring them back until its own event.
                if !app
                    .ports
                    .store
                    .is_following(*follower_id, *followee_id)
                    .await?
                {
                    return Ok(());
                }
                app.apply_follow_to_timeline(*follower_id, *followee_id, *followee_followers)
                    .await?;
                // The follower's open streams listen to its posts from now
                // on (after the backfill: a stream told of the follow
                // finds the account's posts in the timeline).
                app.publish_live(&[following_update(
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
                app.ports
                    .caches
                    .high_fanout_followees
                    .invalidate(follower_id)
                    .await;
                app.ports
                    .timelines
                    .remove_author(*follower_id, *followee_id)
                    .await?;
                if *followee_followers == app.settings.fanout_threshold - 1 {
                    // The account just dropped below the threshold: its posts
                    // were merged at read time until now, so write them into
                    // its followers' timelines.
                    app.backfill_to_followers(*followee_id).await?;
                }
                // The follower's open streams listened to it: stop.
                app.publish_live(&[following_update(
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
            | Event::MediaUploaded { .. } => Ok(()),
        }
    }
}

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

impl App {
    /// Delivers a post to `audience` (its author's followers); false when it
    /// was not fanned out (`None`: the author is above the threshold).
    #[tracing::instrument(skip_all, fields(post_id = %post_id, author_id = %author_id))]
    async fn fan_out_post(
        &self,
        post_id: PostId,
        author_id: UserId,
        audience: Option<&[UserId]>,
    ) -> AppResult<bool> {
        let entry = TimelineEntry { post_id, author_id };
        let timelines = &self.ports.timelines;
        timelines.insert(&[author_id], entry).await?;
        let fanned_out = match audience {
            None => {
                metrics::counter!("starling_fanout_skipped_high_fanout_total").increment(1);
                false
            }
            Some(audience) => {
                for followers in audience.chunks(FANOUT_BATCH) {
                    timelines.insert(followers, entry).await?;
                    metrics::counter!("starling_fanout_timeline_inserts_total")
                        .increment(followers.len() as u64);
                }
                metrics::counter!("starling_fanout_posts_total").increment(1);
                true
            }
        };
        // One update per post, on its author's topic: each API instance's
        // hub hands it to the open streams of the author's followers. After
        // the timelines: a live log that fails fails the event (it is
        // retried; the log drops what it already has), never the timelines.
        self.publish_live(&[(
            Topic::Author(author_id),
            LiveEvent::Post { post_id, author_id },
        )])
        .await?;
        Ok(fanned_out)
    }

    /// Removes a deleted post from its author's followers' timelines; when
    /// the author is above the threshold (`None`) their followers are read
    /// from SQL, as the post may predate the crossing.
    async fn retract_post(
        &self,
        post_id: PostId,
        author_id: UserId,
        audience: Option<&[UserId]>,
    ) -> AppResult<()> {
        let timelines = &self.ports.timelines;
        let caches = &self.ports.caches;
        caches
            .posts
            .put_many(vec![(
                post_id,
                Arc::new(Post::tombstone(post_id, author_id)),
            )])
            .await;
        caches.author_recent.invalidate(&author_id).await;
        timelines.remove_post(&[author_id], post_id).await?;
        match audience {
            Some(audience) => {
                for followers in audience.chunks(FANOUT_BATCH) {
                    timelines.remove_post(followers, post_id).await?;
                }
            }
            None => {
                self.for_each_follower_batch(author_id, |followers| async move {
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
        let cache = &self.ports.caches.high_fanout_followees;
        self.for_each_follower_batch(author, |followers| async move {
            for follower in &followers {
                cache.invalidate(follower).await;
            }
            Ok(())
        })
        .await
    }

    async fn backfill_to_followers(&self, author: UserId) -> AppResult<()> {
        let cap = self.settings.timeline_cap;
        let entries = self.ports.store.author_entries(author, None, cap).await?;
        if entries.is_empty() {
            return Ok(());
        }
        let floor = floor_of(&entries, cap);
        let entries = &entries;
        self.for_each_follower_batch(author, |followers| async move {
            for follower in followers {
                self.ports
                    .timelines
                    .insert_many(follower, entries, floor)
                    .await?;
                self.ports
                    .caches
                    .high_fanout_followees
                    .invalidate(&follower)
                    .await;
            }
            Ok(())
        })
        .await
    }
}
