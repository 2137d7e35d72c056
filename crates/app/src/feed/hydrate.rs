//! Hydration: post ids to posts ready to show, in one batch per kind through
//! the caches (posts, then authors), with one SQL query for the misses.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use starling_domain::id::lowest_id_at;
use starling_domain::{Post, PostId, Timestamp, UserId, UserSummary};

use crate::error::AppResult;
use crate::feed::{LikedPosts, SingleFlight};
use crate::page::PostView;
use crate::ports::{AccountStore, Cache, Cached, PostStore};

/// Ids this far ahead of the clock may come from a node whose clock runs
/// ahead; beyond it an id cannot name a post yet.
const FUTURE_ID_TOLERANCE_MS: i64 = 5 * 60 * 1000;

/// Hydration as a service: what every use case that shows posts asks. It
/// holds the post and account reads, their caches and the single-flight
/// loads, nothing else.
pub struct Hydration {
    pub(super) posts: Arc<dyn PostStore>,
    pub(super) accounts: Arc<dyn AccountStore>,
    pub(super) post_cache: Arc<dyn Cache<PostId, Cached<Arc<Post>>>>,
    pub(super) user_cache: Arc<dyn Cache<UserId, Arc<UserSummary>>>,
    pub(super) likes: Arc<dyn Cache<UserId, Arc<LikedPosts>>>,
    /// Post loads in flight, joined by concurrent readers of the same posts.
    pub(super) post_flights: SingleFlight<PostId, Cached<Arc<Post>>>,
    /// Likes remembered per reader (`Settings::liked_window`).
    pub(super) liked_window: usize,
}

impl Hydration {
    pub fn new(
        store: Arc<dyn crate::ports::Store>,
        caches: &crate::Caches,
        liked_window: usize,
    ) -> Self {
        Self {
            posts: store.clone(),
            accounts: store,
            post_cache: caches.posts.clone(),
            user_cache: caches.users.clone(),
            likes: caches.likes.clone(),
            post_flights: SingleFlight::new("posts"),
            liked_window,
        }
    }

    /// Post loads from SQL by hydration so far: each one query, shared by
    /// every reader that missed the same posts meanwhile.
    pub fn post_loads(&self) -> u64 {
        self.post_flights.loads()
    }

    /// The live posts among `ids`, in the order of `ids`. Tombstones and
    /// unknown ids are dropped: a deleted post is never shown.
    pub async fn hydrate(
        &self,
        viewer: Option<UserId>,
        ids: &[PostId],
    ) -> AppResult<Vec<PostView>> {
        let posts = self.load_posts(ids).await?;
        self.views_of(viewer, posts).await
    }

    /// The live posts among `ids`, through the post cache. Misses load in
    /// one SQL query, shared with concurrent readers missing the same posts
    /// (single flight); ids that name no post are remembered as
    /// `Cached::Missing` (negative caching), so a flood of reads of missing posts stays off
    /// SQL; ids from the future cannot name a post and are not looked up.
    pub async fn load_posts(&self, ids: &[PostId]) -> AppResult<Vec<Arc<Post>>> {
        let cache = &self.post_cache;
        let cached = cache.get_many(ids).await;
        let latest_possible = lowest_id_at(Timestamp::now_ms() + FUTURE_ID_TOLERANCE_MS);
        let missing: Vec<PostId> = ids
            .iter()
            .zip(&cached)
            .filter(|(id, hit)| hit.is_none() && id.get() < latest_possible)
            .map(|(id, _)| *id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let loaded = if missing.is_empty() {
            HashMap::new()
        } else {
            let (store, cache) = (self.posts.clone(), cache.clone());
            self.post_flights
                .load(&missing, move |ids| async move {
                    let rows = store.posts_by_ids(&ids).await?;
                    let found: HashSet<PostId> = rows.iter().map(|post| post.id).collect();
                    let mut entries: Vec<(PostId, Cached<Arc<Post>>)> = rows
                        .into_iter()
                        .map(|post| (post.id, Cached::Found(Arc::new(post))))
                        .collect();
                    entries.extend(
                        ids.iter()
                            .filter(|id| !found.contains(id))
                            .map(|id| (*id, Cached::Missing)),
                    );
                    cache.fill_many(entries.clone()).await;
                    Ok(entries)
                })
                .await?
        };
        Ok(ids
            .iter()
            .zip(cached)
            .filter_map(|(id, hit)| hit.or_else(|| loaded.get(id).cloned()))
            .filter_map(|cached| match cached {
                Cached::Found(post) if !post.deleted => Some(post),
                _ => None,
            })
            .collect())
    }

    /// One author's summary, through the cache.
    pub async fn author_summary(&self, id: UserId) -> AppResult<Arc<UserSummary>> {
        let cache = &self.user_cache;
        if let Some(Some(found)) = cache.get_many(&[id]).await.pop() {
            return Ok(found);
        }
        let summary = self
            .accounts
            .user_summaries(&[id])
            .await?
            .pop()
            .map(Arc::new)
            .ok_or(crate::AppError::NotFound("user"))?;
        cache.fill_many(vec![(id, summary.clone())]).await;
        Ok(summary)
    }

    /// The summaries of the accounts among `ids` that exist, through the
    /// cache, with one SQL query for the misses.
    pub async fn summaries(&self, ids: &[UserId]) -> AppResult<HashMap<UserId, Arc<UserSummary>>> {
        let ids: Vec<UserId> = ids
            .iter()
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let cache = &self.user_cache;
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        for (id, hit) in ids.iter().zip(cache.get_many(&ids).await) {
            match hit {
                Some(summary) => {
                    found.insert(*id, summary);
                }
                None => missing.push(*id),
            }
        }
        if !missing.is_empty() {
            let rows = self.accounts.user_summaries(&missing).await?;
            let entries: Vec<_> = rows
                .into_iter()
                .map(|summary| (summary.id, Arc::new(summary)))
                .collect();
            found.extend(entries.iter().cloned());
            cache.fill_many(entries).await;
        }
        Ok(found)
    }

    /// Attaches authors and the viewer's likes to loaded posts, keeping
    /// order; posts of suspended authors are left out.
    pub async fn views_of(
        &self,
        viewer: Option<UserId>,
        posts: Vec<Arc<Post>>,
    ) -> AppResult<Vec<PostView>> {
        if posts.is_empty() {
            return Ok(Vec::new());
        }
        let author_ids: Vec<UserId> = posts.iter().map(|post| post.author_id).collect();
        let authors = self.summaries(&author_ids).await?;

        let liked: HashSet<PostId> = match viewer {
            Some(viewer) => {
                let ids: Vec<PostId> = posts.iter().map(|post| post.id).collect();
                self.liked_among(viewer, &ids).await?
            }
            None => HashSet::new(),
        };

        Ok(posts
            .into_iter()
            .filter_map(|post| {
                // A suspended author's posts are shown to nobody while it
                // is: dropped here, where every list of posts passes, they
                // come back when it is reinstated (nothing was removed).
                let author = authors
                    .get(&post.author_id)
                    .filter(|author| !author.hidden)?
                    .clone();
                Some(PostView {
                    liked_by_me: liked.contains(&post.id),
                    author,
                    post,
                })
            })
            .collect())
    }
}
