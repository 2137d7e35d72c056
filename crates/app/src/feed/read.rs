//! Reading the home timeline.
//!
//! A page is cut from three sources, merged newest first:
//! 1. the stored timeline (fan-out on write), which is complete from its floor up;
//! 2. the recent posts of followed high-fan-out accounts, merged at read time
//!    (hybrid fan-out), for the range the stored timeline covers;
//! 3. SQL (fan-out on read) below the floor, so paging goes on past the cap
//!    down to the oldest post.
//!
//! The cursor is the id of the last post returned and every source is read
//! strictly below it, so posts arriving while a reader pages cause neither
//! duplicates nor gaps. When the timeline store fails, the page comes from
//! SQL alone: slower, still correct.

use starling_domain::{PostId, UserId};

use crate::error::AppResult;
use crate::feed::Feed;
use crate::page::{Page, PostView};
use crate::ports::{TimelineEntry, TimelineRead, TimelineSlice};

/// Timeline entries one page may look at, as a multiple of what it shows:
/// past it a page is cut short (with a cursor that goes on), so a reader
/// who muted a prolific account pays a bounded cost per page, not a scan of
/// that account's history.
const SCAN_PER_SHOWN: usize = 10;
/// ... and at least this many, so small pages are not cut at once.
const MIN_SCAN: usize = 200;

impl Feed {
    #[tracing::instrument(skip_all, fields(user_id = %reader))]
    pub async fn home_feed(
        &self,
        reader: UserId,
        before: Option<PostId>,
        limit: usize,
    ) -> AppResult<Page<PostView>> {
        let wanted = limit + 1;
        let high_fanout = self.high_fanout_followees(reader).await?;
        // Blocked and muted accounts' posts stay out, including those the
        // timeline held before the block or mute.
        let hidden = self.hiding.hidden_from(reader).await?;
        let mut views: Vec<PostView> = Vec::with_capacity(wanted);
        let mut bound = before;
        let budget = (wanted * SCAN_PER_SHOWN).max(MIN_SCAN);
        let mut scanned = 0;
        // Candidates can turn out deleted or hidden; keep going until the
        // page is full, the sources run dry, or the scan budget is spent.
        loop {
            if scanned >= budget {
                // Cut short: what was found, and a cursor below everything
                // looked at, so the next page goes on from there.
                metrics::counter!(crate::metric::FEED_PAGES_CUT_SHORT_TOTAL).increment(1);
                return Ok(Page {
                    items: views,
                    next: bound.map(PostId::get),
                });
            }
            let needed = (wanted - views.len()).min(budget - scanned);
            let candidates = self
                .feed_candidates(reader, &high_fanout, bound, needed)
                .await?;
            let Some(last) = candidates.last() else {
                break;
            };
            bound = Some(last.post_id);
            scanned += candidates.len();
            let exhausted = candidates.len() < needed;
            let ids: Vec<PostId> = candidates.iter().map(|entry| entry.post_id).collect();
            views.extend(
                self.hydration
                    .hydrate(Some(reader), &ids)
                    .await?
                    .into_iter()
                    .filter(|view| !hidden.hides_content_of(view.post.author_id)),
            );
            if views.len() >= wanted || exhausted {
                break;
            }
        }
        Ok(Page::from_overfetch(views, limit, |view| {
            view.post.id.get()
        }))
    }

    /// Up to `needed` post ids for `reader` below `bound`, newest first.
    async fn feed_candidates(
        &self,
        reader: UserId,
        high_fanout: &[UserId],
        bound: Option<PostId>,
        needed: usize,
    ) -> AppResult<Vec<TimelineEntry>> {
        let Some(slice) = self.stored_slice(reader, bound, needed).await? else {
            metrics::counter!(crate::metric::FEED_SQL_FALLBACKS_TOTAL).increment(1);
            return Ok(self.posts.home_entries(reader, None, bound, needed).await?);
        };
        let floor = slice.floor;
        let mut merged = slice.entries;
        for author in high_fanout {
            let recent = self.author_recent_entries(*author, bound, needed).await?;
            merged.extend(
                recent
                    .into_iter()
                    .filter(|entry| floor.is_none_or(|floor| entry.post_id >= floor)),
            );
        }
        if !high_fanout.is_empty() {
            merged.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.post_id));
            merged.dedup_by_key(|entry| entry.post_id);
        }
        merged.truncate(needed);

        if let Some(floor) = floor
            && merged.len() < needed
        {
            let below = Some(bound.map_or(floor, |bound| bound.min(floor)));
            let older = self
                .posts
                .home_entries(reader, None, below, needed - merged.len())
                .await?;
            merged.extend(older);
        }
        Ok(merged)
    }

    /// The stored timeline's entries below `bound`, rebuilding it first when
    /// absent. `None` when the timeline store cannot serve it.
    async fn stored_slice(
        &self,
        reader: UserId,
        bound: Option<PostId>,
        needed: usize,
    ) -> AppResult<Option<TimelineSlice>> {
        let timelines = &self.timelines;
        match timelines.read(reader, bound, needed).await {
            Ok(TimelineRead::Ready(slice)) => return Ok(Some(slice)),
            Ok(TimelineRead::NotMaterialised) => {}
            Err(error) => {
                tracing::warn!(error = %error, "timeline store failed; reading from SQL");
                return Ok(None);
            }
        }
        if let Err(error) = self.rebuild_timeline(reader).await {
            tracing::warn!(error = %error, "timeline rebuild failed; reading from SQL");
            return Ok(None);
        }
        match timelines.read(reader, bound, needed).await {
            Ok(TimelineRead::Ready(slice)) => Ok(Some(slice)),
            Ok(TimelineRead::NotMaterialised) => Ok(None),
            Err(error) => {
                tracing::warn!(error = %error, "timeline store failed; reading from SQL");
                Ok(None)
            }
        }
    }
}
