//! Likes: idempotent, counted exactly in the same transaction as the like row.
//! A post hidden from the liker by a block cannot be liked or unliked: the
//! answer is the 404 of a post that does not exist.

use starling_domain::{PostId, Timestamp, UserId};

use crate::error::{AppError, AppResult};
use crate::ports::{LikeOutcome, StoreError, UnlikeOutcome};
use crate::posts::Posts;

fn post_not_found(error: StoreError) -> AppError {
    match error {
        StoreError::NotFound => AppError::NotFound("post"),
        other => other.into(),
    }
}

impl Posts {
    pub async fn like(&self, user: UserId, post: PostId) -> AppResult<()> {
        self.post_to_act_on(user, post).await?;
        let outcome = self
            .posts
            .like(user, post, self.ids.next_event_id(), Timestamp::now())
            .await
            .map_err(post_not_found)?;
        if outcome == LikeOutcome::Liked {
            self.post_cache.invalidate(&post).await;
            self.hydration.refresh_likes(user).await;
        }
        Ok(())
    }

    pub async fn unlike(&self, user: UserId, post: PostId) -> AppResult<()> {
        self.post_to_act_on(user, post).await?;
        let outcome = self
            .posts
            .unlike(user, post, self.ids.next_event_id(), Timestamp::now())
            .await
            .map_err(post_not_found)?;
        if outcome == UnlikeOutcome::Unliked {
            self.post_cache.invalidate(&post).await;
            self.hydration.refresh_likes(user).await;
        }
        Ok(())
    }
}
