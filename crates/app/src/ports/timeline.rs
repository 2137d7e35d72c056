//! The timeline-store port: each user's home timeline as a capped list of
//! post ids, newest first. A projection of SQL, always rebuildable from it.
//!
//! Only *materialised* timelines receive inserts: a user whose timeline is
//! absent (new, evicted, or after a restart) gets it rebuilt from SQL on the
//! next read. A rebuild first marks the timeline as building, so inserts that
//! race with it land in it, then merges the SQL rows in (a union): no post is
//! lost to the race.
//!
//! Each timeline has a *floor*: it holds every relevant post with an id at or
//! above its floor, and none below it. Capping raises the floor; entries below
//! the floor are not kept. Readers continue below the floor from SQL, so a
//! timeline never shows a gap, whatever was evicted, capped or backfilled.

use async_trait::async_trait;
use starling_domain::{PostId, UserId};

/// One post in a timeline, with its author so that removals by author
/// (unfollow) and read-time filters need no SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimelineEntry {
    pub post_id: PostId,
    pub author_id: UserId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineSlice {
    /// Entries with id < the requested bound, newest first.
    pub entries: Vec<TimelineEntry>,
    /// The timeline holds every post from here up; older ones come from SQL.
    /// `None`: it holds everything, there is nothing older to fetch.
    pub floor: Option<PostId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimelineRead {
    /// No timeline, or one still being rebuilt: rebuild from SQL.
    NotMaterialised,
    Ready(TimelineSlice),
}

#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error("timeline store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type TimelineResult<T> = Result<T, TimelineError>;

#[async_trait]
pub trait TimelineStore: Send + Sync {
    /// Up to `limit` entries with post id < `before` (all when `None`), newest first.
    async fn read(
        &self,
        user: UserId,
        before: Option<PostId>,
        limit: usize,
    ) -> TimelineResult<TimelineRead>;

    /// Adds `entry` to the timeline of each of `users` that is materialised
    /// (or being rebuilt). Idempotent; keeps order and the cap, dropping the
    /// oldest (a store may let a timeline grow an eighth past its cap before
    /// it trims back to it, so that trimming is not paid on every insert);
    /// an entry below a timeline's floor is not kept.
    async fn insert(&self, users: &[UserId], entry: TimelineEntry) -> TimelineResult<()>;

    /// Adds each entry to its user's timeline, same rules as `insert`: the
    /// fan-out of several posts at once, in one go where the store can.
    async fn insert_each(&self, pairs: &[(UserId, TimelineEntry)]) -> TimelineResult<()> {
        for (user, entry) in pairs {
            self.insert(&[*user], *entry).await?;
        }
        Ok(())
    }

    /// Adds several entries to one user's timeline (backfill), same rules as
    /// `insert`. `source_floor` is the floor of the list the entries come from
    /// (`Some(oldest)` when it was cut short, so older posts may exist); the
    /// timeline's floor rises to it.
    async fn insert_many(
        &self,
        user: UserId,
        entries: &[TimelineEntry],
        source_floor: Option<PostId>,
    ) -> TimelineResult<()>;

    /// Removes a post from the timelines of `users`. Idempotent.
    async fn remove_post(&self, users: &[UserId], post: PostId) -> TimelineResult<()>;

    /// Removes every entry by `author` from `user`'s timeline. Idempotent.
    async fn remove_author(&self, user: UserId, author: UserId) -> TimelineResult<()>;

    /// Marks `user`'s timeline as being rebuilt, creating it empty if absent.
    async fn begin_rebuild(&self, user: UserId) -> TimelineResult<()>;

    /// Merges `entries` (newest first, from SQL, whose floor is
    /// `source_floor`) into the timeline and marks it ready. Entries inserted
    /// since `begin_rebuild` are kept, posts and authors removed since then
    /// stay removed, and a floor raised since then stays. Does nothing when
    /// the timeline is no longer being built (evicted, or finished by a
    /// concurrent rebuild).
    async fn finish_rebuild(
        &self,
        user: UserId,
        entries: &[TimelineEntry],
        source_floor: Option<PostId>,
    ) -> TimelineResult<()>;

    /// Forgets `user`'s timeline; the next read rebuilds it.
    async fn evict(&self, user: UserId) -> TimelineResult<()>;

    /// How many timelines are held (for metrics).
    async fn materialised_count(&self) -> TimelineResult<u64>;
}
