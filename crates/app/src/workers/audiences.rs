//! Who receives an author's posts, remembered by the fan-out worker.
//!
//! Loading an author's followers from SQL for every post cost the worker
//! its throughput (and readers their freshness) in the mixed benchmark. The
//! worker sees every follow and unfollow in log order, so it can keep the
//! lists it holds exact by applying those events to them; a minute's time to
//! live bounds the damage should an event ever bypass it. Lists are weighed
//! by length, so memory is bounded in follower ids, not in authors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::Weighter;
use starling_domain::UserId;

use crate::error::AppResult;
use crate::feed::Feed;
use crate::ports::AccountStore;

/// Follower ids held at most (8 bytes each).
const CAPACITY_IDS: u64 = 4_000_000;
const TIME_TO_LIVE: Duration = Duration::from_secs(60);

/// Who gets an author's posts written into their timelines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Audience {
    /// These followers (fan-out on write).
    Followers(Arc<[UserId]>),
    /// Nobody: the author has at least the fan-out threshold of followers,
    /// and readers merge their posts in at read time.
    MergedAtRead,
}

#[derive(Clone)]
struct Held {
    followers: Arc<[UserId]>,
    loaded: Instant,
}

#[derive(Clone)]
struct ByFollowers;

impl Weighter<UserId, Held> for ByFollowers {
    fn weight(&self, _: &UserId, audience: &Held) -> u64 {
        audience.followers.len() as u64 + 1
    }
}

pub(crate) struct Audiences {
    lists: quick_cache::sync::Cache<UserId, Held, ByFollowers>,
}

impl Audiences {
    pub(crate) fn new() -> Self {
        Self {
            lists: quick_cache::sync::Cache::with_weighter(10_000, CAPACITY_IDS, ByFollowers),
        }
    }

    /// Drops every list held: the worker may have missed follows.
    pub(crate) fn forget(&self) {
        self.lists.clear();
    }

    /// Who gets `author`'s posts written into their timelines.
    pub(crate) async fn of(
        &self,
        accounts: &dyn AccountStore,
        feed: &Feed,
        author: UserId,
    ) -> AppResult<Audience> {
        let threshold = feed.fanout_threshold();
        if let Some(audience) = self.lists.get(&author)
            && audience.loaded.elapsed() < TIME_TO_LIVE
        {
            metrics::counter!(crate::metric::CACHE_HITS_TOTAL, "cache" => "audiences").increment(1);
            return Ok(below(audience.followers, threshold));
        }
        metrics::counter!(crate::metric::CACHE_MISSES_TOTAL, "cache" => "audiences").increment(1);
        let Some(user) = accounts.user_by_id(author).await? else {
            return Ok(Audience::Followers(Arc::from([])));
        };
        if user.followers_count >= threshold {
            return Ok(Audience::MergedAtRead);
        }
        let mut followers = Vec::with_capacity(usize::try_from(user.followers_count).unwrap_or(0));
        feed.for_each_follower_batch(author, |batch| {
            followers.extend(batch);
            async { Ok(()) }
        })
        .await?;
        let followers: Arc<[UserId]> = followers.into();
        self.lists.insert(
            author,
            Held {
                followers: followers.clone(),
                loaded: Instant::now(),
            },
        );
        Ok(below(followers, threshold))
    }

    /// Applies a committed follow to a list held.
    pub(crate) fn followed(&self, followee: UserId, follower: UserId) {
        self.change(followee, |followers| {
            if !followers.contains(&follower) {
                followers.push(follower);
            }
        });
    }

    /// Applies a committed unfollow to a list held.
    pub(crate) fn unfollowed(&self, followee: UserId, follower: UserId) {
        self.change(followee, |followers| followers.retain(|id| *id != follower));
    }

    fn change(&self, followee: UserId, edit: impl FnOnce(&mut Vec<UserId>)) {
        if let Some(audience) = self.lists.get(&followee) {
            let mut followers = audience.followers.to_vec();
            edit(&mut followers);
            self.lists.insert(
                followee,
                Held {
                    followers: followers.into(),
                    loaded: audience.loaded,
                },
            );
        }
    }
}

fn below(followers: Arc<[UserId]>, threshold: i64) -> Audience {
    let count = i64::try_from(followers.len()).unwrap_or(i64::MAX);
    if count < threshold {
        Audience::Followers(followers)
    } else {
        Audience::MergedAtRead
    }
}
