//! The home timeline: read path (stored timeline + read-time merge of
//! high-fan-out authors + SQL below the floor), hydration (with single-flight
//! loading), and the timeline
//! maintenance shared by the request path and the fan-out worker.

use std::sync::Arc;

use starling_domain::UserId;

use crate::graph::Hiding;
use crate::ports::{AccountStore, Cache, GraphStore, PostStore, TimelineEntry, TimelineStore};

mod hydrate;
pub use hydrate::Hydration;
mod likes;
pub use likes::LikedPosts;
pub(crate) use maintain::{FANOUT_BATCH, floor_of};
mod maintain;
mod read;
mod single_flight;
pub(crate) use single_flight::SingleFlight;

/// The home timeline as a service: reading it, and keeping it right
/// (rebuilds, backfills on follow, the per-reader and per-author lookups
/// the read merges), for the request path and the fan-out worker alike.
pub struct Feed {
    posts: Arc<dyn PostStore>,
    graph: Arc<dyn GraphStore>,
    accounts: Arc<dyn AccountStore>,
    timelines: Arc<dyn TimelineStore>,
    /// Per reader: the followed accounts whose posts are merged at read time.
    high_fanout_followees: Arc<dyn Cache<UserId, Arc<Vec<UserId>>>>,
    /// Per author: their most recent posts, for read-time merging.
    author_recent: Arc<dyn Cache<UserId, Arc<Vec<TimelineEntry>>>>,
    hiding: Arc<Hiding>,
    hydration: Arc<Hydration>,
    timeline_cap: usize,
    fanout_threshold: i64,
    merge_threshold: i64,
}

impl Feed {
    pub fn new(
        store: Arc<dyn crate::ports::Store>,
        timelines: Arc<dyn TimelineStore>,
        caches: &crate::Caches,
        hiding: Arc<Hiding>,
        hydration: Arc<Hydration>,
        settings: &crate::Settings,
    ) -> Self {
        Self {
            posts: store.clone(),
            graph: store.clone(),
            accounts: store,
            timelines,
            high_fanout_followees: caches.high_fanout_followees.clone(),
            author_recent: caches.author_recent.clone(),
            hiding,
            hydration,
            timeline_cap: settings.timeline_cap,
            fanout_threshold: settings.fanout_threshold,
            merge_threshold: settings.merge_threshold(),
        }
    }

    /// Entries kept per home timeline.
    pub(crate) fn timeline_cap(&self) -> usize {
        self.timeline_cap
    }

    /// Accounts with at least this many followers are not fanned out on write.
    pub(crate) fn fanout_threshold(&self) -> i64 {
        self.fanout_threshold
    }

    /// Accounts with at least this many followers are merged at read time.
    pub(crate) fn merge_threshold(&self) -> i64 {
        self.merge_threshold
    }

    /// The stored timelines (fan-out on write), for the fan-out worker.
    pub(crate) fn timelines(&self) -> &Arc<dyn TimelineStore> {
        &self.timelines
    }

    /// Forgets which of `reader`'s followees are merged at read time (after
    /// a follow, an unfollow, or a followee crossing the threshold).
    pub(crate) async fn forget_high_fanout_followees(&self, reader: UserId) {
        self.high_fanout_followees.invalidate(&reader).await;
    }

    /// Forgets the cached recent posts of `authors` (after they posted or
    /// deleted).
    pub(crate) async fn forget_authors_recent(&self, authors: &[UserId]) {
        self.author_recent.invalidate_many(authors).await;
    }
}
