//! Keeping timelines right: rebuilds from SQL (fan-out on read), backfills on
//! follow, and the per-reader and per-author lookups the read path merges.

use std::sync::Arc;

use starling_domain::{PostId, UserId};

use crate::error::AppResult;
use crate::feed::Feed;
use crate::ports::TimelineEntry;

/// How many of an author's newest posts are cached for read-time merging.
pub(crate) const AUTHOR_RECENT_WINDOW: usize = 200;
/// Followers handled per fan-out batch.
pub(crate) const FANOUT_BATCH: usize = 1_000;

/// The floor of a list read from SQL with `limit`: when it came back full,
/// older rows may exist below its last entry.
pub(crate) fn floor_of(entries: &[TimelineEntry], limit: usize) -> Option<PostId> {
    if entries.len() >= limit {
        entries.last().map(|entry| entry.post_id)
    } else {
        None
    }
}

impl Feed {
    /// Fan-out on read: builds `user`'s timeline from SQL and stores it.
    /// Posts of high-fan-out accounts are left out: reads merge them in.
    #[tracing::instrument(skip_all, fields(user_id = %user))]
    pub async fn rebuild_timeline(&self, user: UserId) -> AppResult<()> {
        let timelines = &self.timelines;
        timelines.begin_rebuild(user).await?;
        let cap = self.timeline_cap;
        let entries = self
            .posts
            .home_entries(user, Some(self.fanout_threshold), None, cap)
            .await?;
        timelines
            .finish_rebuild(user, &entries, floor_of(&entries, cap))
            .await?;
        metrics::counter!(crate::metric::TIMELINE_REBUILDS_TOTAL).increment(1);
        tracing::debug!(entries = entries.len(), "timeline rebuilt");
        Ok(())
    }

    /// Rebuilds `user`'s timeline from SQL now, dropping what it held (so a
    /// new cap or a lost projection takes effect at once).
    pub async fn rebuild_timeline_from_scratch(&self, user: UserId) -> AppResult<()> {
        self.timelines.evict(user).await?;
        self.rebuild_timeline(user).await
    }

    /// Rebuilds every account's timeline, in id order, `concurrency` at a
    /// time; returns how many were rebuilt.
    pub async fn rebuild_all_timelines(&self, concurrency: usize) -> AppResult<u64> {
        use futures::StreamExt;

        let mut after = None;
        let mut rebuilt = 0u64;
        loop {
            let users = self.accounts.user_ids_after(after, 1_000).await?;
            let Some(last) = users.last() else {
                return Ok(rebuilt);
            };
            after = Some(*last);
            let results: Vec<AppResult<()>> = futures::stream::iter(users)
                .map(|user| self.rebuild_timeline_from_scratch(user))
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
            for result in results {
                result?;
                rebuilt += 1;
            }
        }
    }

    /// Puts `followee`'s recent posts into `follower`'s timeline, unless the
    /// followee has so many followers that reads merge their posts instead.
    pub async fn apply_follow_to_timeline(
        &self,
        follower: UserId,
        followee: UserId,
        followee_followers: i64,
    ) -> AppResult<()> {
        if followee_followers >= self.fanout_threshold {
            return Ok(());
        }
        let cap = self.timeline_cap;
        let entries = self.posts.author_entries(followee, None, cap).await?;
        if entries.is_empty() {
            return Ok(());
        }
        self.timelines
            .insert_many(follower, &entries, floor_of(&entries, cap))
            .await?;
        Ok(())
    }

    /// The accounts `reader` follows whose posts are merged at read time.
    pub async fn high_fanout_followees(&self, reader: UserId) -> AppResult<Arc<Vec<UserId>>> {
        let cache = &self.high_fanout_followees;
        if let Some(Some(found)) = cache.get_many(&[reader]).await.pop() {
            return Ok(found);
        }
        let followees = Arc::new(
            self.graph
                .followed_with_followers_at_least(reader, self.merge_threshold)
                .await?,
        );
        cache.fill_many(vec![(reader, followees.clone())]).await;
        Ok(followees)
    }

    /// Up to `limit` of `author`'s live posts with id < `before`, newest
    /// first, from the per-author cache when it covers the range.
    pub async fn author_recent_entries(
        &self,
        author: UserId,
        before: Option<PostId>,
        limit: usize,
    ) -> AppResult<Vec<TimelineEntry>> {
        let cache = &self.author_recent;
        let recent = match cache.get_many(&[author]).await.pop().flatten() {
            Some(recent) => recent,
            None => {
                let loaded = Arc::new(
                    self.posts
                        .author_entries(author, None, AUTHOR_RECENT_WINDOW)
                        .await?,
                );
                cache.fill_many(vec![(author, loaded.clone())]).await;
                loaded
            }
        };
        let below: Vec<TimelineEntry> = recent
            .iter()
            .filter(|entry| before.is_none_or(|bound| entry.post_id < bound))
            .take(limit)
            .copied()
            .collect();
        let window_holds_everything = recent.len() < AUTHOR_RECENT_WINDOW;
        if below.len() >= limit || window_holds_everything {
            return Ok(below);
        }
        Ok(self.posts.author_entries(author, before, limit).await?)
    }

    /// Calls `apply` with `author`'s followers, a batch at a time.
    pub async fn for_each_follower_batch<F, Fut>(
        &self,
        author: UserId,
        mut apply: F,
    ) -> AppResult<()>
    where
        F: FnMut(Vec<UserId>) -> Fut,
        Fut: std::future::Future<Output = AppResult<()>>,
    {
        let mut after = None;
        loop {
            let batch = self.graph.follower_ids(author, after, FANOUT_BATCH).await?;
            let Some((last, _)) = batch.last().copied() else {
                return Ok(());
            };
            let full = batch.len() == FANOUT_BATCH;
            apply(batch.into_iter().map(|(_, follower)| follower).collect()).await?;
            if !full {
                return Ok(());
            }
            after = Some(last);
        }
    }
}
