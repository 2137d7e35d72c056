//! Home timelines in process memory: a bounded map (quick_cache, S3-FIFO, so inactive
//! readers' timelines are evicted and rebuilt from SQL when they return) of
//! per-user deques of entries, newest first, each behind its own short lock.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use starling_app::ports::{
    TimelineEntry, TimelineError, TimelineRead, TimelineSlice, TimelineStore,
};
use starling_domain::{PostId, UserId};

type TimelineResult<T> = Result<T, TimelineError>;

#[derive(Debug, Default)]
struct Timeline {
    /// Newest first; no duplicate post ids; every entry >= `floor`.
    entries: VecDeque<TimelineEntry>,
    floor: Option<PostId>,
    building: bool,
    /// While building: what was removed since the rebuild began, so that SQL
    /// rows read before a removal do not bring the post back.
    removed_posts: HashSet<PostId>,
    removed_authors: HashSet<UserId>,
}

impl Timeline {
    fn insert(&mut self, entry: TimelineEntry, cap: usize) {
        if self.floor.is_some_and(|floor| entry.post_id < floor) {
            return;
        }
        let position = self
            .entries
            .partition_point(|existing| existing.post_id > entry.post_id);
        if self
            .entries
            .get(position)
            .is_some_and(|existing| existing.post_id == entry.post_id)
        {
            return;
        }
        self.entries.insert(position, entry);
        self.enforce_cap(cap);
    }

    fn raise_floor(&mut self, floor: Option<PostId>) {
        if let Some(floor) = floor {
            self.floor = Some(self.floor.map_or(floor, |current| current.max(floor)));
            while self
                .entries
                .back()
                .is_some_and(|oldest| oldest.post_id < floor)
            {
                self.entries.pop_back();
            }
        }
    }

    fn enforce_cap(&mut self, cap: usize) {
        if self.entries.len() > cap {
            self.entries.truncate(cap);
            let oldest = self.entries.back().map(|entry| entry.post_id);
            self.raise_floor(oldest);
        }
    }

    fn remove_post(&mut self, post: PostId) {
        self.entries.retain(|entry| entry.post_id != post);
        if self.building {
            self.removed_posts.insert(post);
        }
    }

    fn remove_author(&mut self, author: UserId) {
        self.entries.retain(|entry| entry.author_id != author);
        if self.building {
            self.removed_authors.insert(author);
        }
    }

    fn slice(&self, before: Option<PostId>, limit: usize) -> TimelineSlice {
        let start = before.map_or(0, |bound| {
            self.entries.partition_point(|entry| entry.post_id >= bound)
        });
        TimelineSlice {
            entries: self.entries.range(start..).take(limit).copied().collect(),
            floor: self.floor,
        }
    }
}

/// The in-process timeline store.
pub struct LocalTimelines {
    timelines: quick_cache::sync::Cache<UserId, Arc<Mutex<Timeline>>>,
    cap: usize,
}

impl LocalTimelines {
    /// Keeps up to `cap` entries per timeline and up to `max_timelines`
    /// timelines (about `cap * 16` bytes each when full).
    pub fn new(cap: usize, max_timelines: u64) -> Self {
        Self {
            timelines: quick_cache::sync::Cache::new(
                usize::try_from(max_timelines).unwrap_or(usize::MAX).max(1),
            ),
            cap,
        }
    }

    fn get(&self, user: UserId) -> Option<Arc<Mutex<Timeline>>> {
        self.timelines.get(&user)
    }

    fn get_or_create(&self, user: UserId) -> Arc<Mutex<Timeline>> {
        let created = self
            .timelines
            .get_or_insert_with(&user, || Ok::<_, Infallible>(Arc::default()));
        match created {
            Ok(timeline) => timeline,
            Err(never) => match never {},
        }
    }
}

#[async_trait]
impl TimelineStore for LocalTimelines {
    async fn read(
        &self,
        user: UserId,
        before: Option<PostId>,
        limit: usize,
    ) -> TimelineResult<TimelineRead> {
        let Some(timeline) = self.get(user) else {
            return Ok(TimelineRead::NotMaterialised);
        };
        let timeline = timeline.lock();
        if timeline.building {
            return Ok(TimelineRead::NotMaterialised);
        }
        Ok(TimelineRead::Ready(timeline.slice(before, limit)))
    }

    async fn insert(&self, users: &[UserId], entry: TimelineEntry) -> TimelineResult<()> {
        for user in users {
            if let Some(timeline) = self.get(*user) {
                timeline.lock().insert(entry, self.cap);
            }
        }
        Ok(())
    }

    async fn insert_many(
        &self,
        user: UserId,
        entries: &[TimelineEntry],
        source_floor: Option<PostId>,
    ) -> TimelineResult<()> {
        if let Some(timeline) = self.get(user) {
            let mut timeline = timeline.lock();
            for entry in entries {
                timeline.insert(*entry, self.cap);
            }
            timeline.raise_floor(source_floor);
        }
        Ok(())
    }

    async fn remove_post(&self, users: &[UserId], post: PostId) -> TimelineResult<()> {
        for user in users {
            if let Some(timeline) = self.get(*user) {
                timeline.lock().remove_post(post);
            }
        }
        Ok(())
    }

    async fn remove_author(&self, user: UserId, author: UserId) -> TimelineResult<()> {
        if let Some(timeline) = self.get(user) {
            timeline.lock().remove_author(author);
        }
        Ok(())
    }

    async fn begin_rebuild(&self, user: UserId) -> TimelineResult<()> {
        let timeline = self.get_or_create(user);
        let mut timeline = timeline.lock();
        if !timeline.building {
            timeline.building = true;
            timeline.removed_posts.clear();
            timeline.removed_authors.clear();
        }
        Ok(())
    }

    async fn finish_rebuild(
        &self,
        user: UserId,
        entries: &[TimelineEntry],
        source_floor: Option<PostId>,
    ) -> TimelineResult<()> {
        // Evicted since `begin_rebuild`, or finished by a concurrent rebuild:
        // merging now could drop inserts or undo removals. The next read
        // rebuilds if needed.
        let Some(timeline) = self.get(user) else {
            return Ok(());
        };
        let mut timeline = timeline.lock();
        if !timeline.building {
            return Ok(());
        }
        for entry in entries {
            let removed = timeline.removed_posts.contains(&entry.post_id)
                || timeline.removed_authors.contains(&entry.author_id);
            if !removed {
                timeline.insert(*entry, self.cap);
            }
        }
        // Floors only rise: one raised while building (a capped backfill,
        // the cap itself) stays.
        timeline.raise_floor(source_floor);
        timeline.building = false;
        timeline.removed_posts = HashSet::new();
        timeline.removed_authors = HashSet::new();
        Ok(())
    }

    async fn evict(&self, user: UserId) -> TimelineResult<()> {
        self.timelines.remove(&user);
        Ok(())
    }

    async fn materialised_count(&self) -> TimelineResult<u64> {
        Ok(self.timelines.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn make(cap: usize) -> Option<(Arc<dyn TimelineStore>, ())> {
        Some((Arc::new(LocalTimelines::new(cap, 10_000)), ()))
    }

    starling_app::timeline_store_contract!(make);
}
