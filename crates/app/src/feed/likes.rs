//! "Did the reader like this post?", answered from memory for recent posts.
//!
//! Every page shows `liked_by_me`; asking SQL for it cost a query per page,
//! the only one left on a warm feed read. Each reader's recent likes (the
//! newest `Settings::liked_window` by post id) are cached as a set that is complete
//! from its floor up; posts below the floor are asked of SQL. After a like
//! or unlike the reader's set is reloaded and replaced, so the reader sees
//! their own change at once; loaders only fill an absent key, so a slow
//! reader cannot replace the fresh set with an older one.

use std::collections::HashSet;
use std::sync::Arc;

use starling_domain::{PostId, UserId};

use crate::error::AppResult;
use crate::feed::Hydration;

/// A reader's likes of every post with id >= `complete_from` (all of them
/// when `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LikedPosts {
    pub posts: HashSet<PostId>,
    pub complete_from: Option<PostId>,
}

impl Hydration {
    async fn load_likes(&self, reader: UserId) -> AppResult<Arc<LikedPosts>> {
        let window = self.liked_window;
        let recent = self.posts.recent_likes(reader, window).await?;
        let complete_from = if recent.len() >= window {
            recent.last().copied()
        } else {
            None
        };
        Ok(Arc::new(LikedPosts {
            posts: recent.into_iter().collect(),
            complete_from,
        }))
    }

    /// Which of `posts` `reader` likes.
    pub async fn liked_among(
        &self,
        reader: UserId,
        posts: &[PostId],
    ) -> AppResult<HashSet<PostId>> {
        let cache = &self.likes;
        let liked = match cache.get_many(&[reader]).await.pop().flatten() {
            Some(liked) => liked,
            None => {
                let loaded = self.load_likes(reader).await?;
                cache.fill_many(vec![(reader, loaded.clone())]).await;
                loaded
            }
        };
        let (covered, older): (Vec<PostId>, Vec<PostId>) = posts
            .iter()
            .partition(|post| liked.complete_from.is_none_or(|floor| **post >= floor));
        let mut answer: HashSet<PostId> = covered
            .into_iter()
            .filter(|post| liked.posts.contains(post))
            .collect();
        if !older.is_empty() {
            answer.extend(self.posts.liked_among(reader, &older).await?);
        }
        Ok(answer)
    }

    /// After `reader` liked or unliked: replace their cached set with a fresh one.
    pub async fn refresh_likes(&self, reader: UserId) {
        let cache = &self.likes;
        match self.load_likes(reader).await {
            Ok(fresh) => cache.put_many(vec![(reader, fresh)]).await,
            Err(error) => {
                tracing::warn!(error = %error, "cannot reload likes; dropping them from the cache");
                cache.invalidate(&reader).await;
            }
        }
    }
}
