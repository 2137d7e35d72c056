//! Hydration: post ids to posts ready to show, in one batch per kind through
//! the caches (posts, then authors), with one SQL query for the misses.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use starling_domain::{Post, PostId, UserId, UserSummary};

use crate::App;
use crate::error::AppResult;
use crate::page::PostView;

impl App {
    /// The live posts among `ids`, in the order of `ids`. Tombstones and
    /// unknown ids are dropped: a deleted post is never shown.
    pub(crate) async fn hydrate(
        &self,
        viewer: Option<UserId>,
        ids: &[PostId],
    ) -> AppResult<Vec<PostView>> {
        let posts = self.load_posts(ids).await?;
        self.views_of(viewer, posts).await
    }

    pub(crate) async fn load_posts(&self, ids: &[PostId]) -> AppResult<Vec<Arc<Post>>> {
        let cache = &self.ports.caches.posts;
        let cached = cache.get_many(ids).await;
        let missing: Vec<PostId> = ids
            .iter()
            .zip(&cached)
            .filter(|(_, hit)| hit.is_none())
            .map(|(id, _)| *id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut loaded: HashMap<PostId, Arc<Post>> = HashMap::with_capacity(missing.len());
        if !missing.is_empty() {
            let rows = self.ports.store.posts_by_ids(&missing).await?;
            let entries: Vec<(PostId, Arc<Post>)> = rows
                .into_iter()
                .map(|post| (post.id, Arc::new(post)))
                .collect();
            loaded.extend(entries.iter().cloned());
            cache.fill_many(entries).await;
        }
        Ok(ids
            .iter()
            .zip(cached)
            .filter_map(|(id, hit)| hit.or_else(|| loaded.get(id).cloned()))
            .filter(|post| !post.deleted)
            .collect())
    }

    /// One author's summary, through the cache.
    pub(crate) async fn author_summary(&self, id: UserId) -> AppResult<Arc<UserSummary>> {
        let cache = &self.ports.caches.users;
        if let Some(Some(found)) = cache.get_many(&[id]).await.pop() {
            return Ok(found);
        }
        let summary = self
            .ports
            .store
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
    pub(crate) async fn summaries(
        &self,
        ids: &[UserId],
    ) -> AppResult<HashMap<UserId, Arc<UserSummary>>> {
        let ids: Vec<UserId> = ids
            .iter()
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let cache = &self.ports.caches.users;
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
            let rows = self.ports.store.user_summaries(&missing).await?;
            let entries: Vec<_> = rows
                .into_iter()
                .map(|summary| (summary.id, Arc::new(summary)))
                .collect();
            found.extend(entries.iter().cloned());
            cache.fill_many(entries).await;
        }
        Ok(found)
    }

    /// Attaches authors and the viewer's likes to loaded posts, keeping order.
    pub(crate) async fn views_of(
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
                let author = authors.get(&post.author_id)?.clone();
                Some(PostView {
                    liked_by_me: liked.contains(&post.id),
                    author,
                    post,
                })
            })
            .collect())
    }
}
