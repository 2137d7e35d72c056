//! Likes: idempotent, counted exactly in the same transaction as the like row.
//! A post hidden from the liker by a block cannot be liked or unliked: the
//! answer is the 404 of a post that does not exist.

use starling_domain::{Event, EventId, PostId, Timestamp, UserId};

use crate::error::AppResult;
use crate::ports::{Announce, LikeOutcome, UnlikeOutcome};
use crate::posts::Posts;

/// A like names the post's author as the transaction found it (the
/// notifier tells them); a repeated like announces nothing.
pub(crate) fn liked(id: EventId, user: UserId, post: PostId) -> Announce<LikeOutcome> {
    Announce::in_current_trace(id, move |outcome| match outcome {
        LikeOutcome::Liked { post_author } => Some(Event::Liked {
            user_id: user,
            post_id: post,
            post_author_id: *post_author,
        }),
        LikeOutcome::AlreadyLiked => None,
    })
}

pub(crate) fn unliked(id: EventId, user: UserId, post: PostId) -> Announce<UnlikeOutcome> {
    Announce::in_current_trace(id, move |outcome| {
        (*outcome == UnlikeOutcome::Unliked).then_some(Event::Unliked {
            user_id: user,
            post_id: post,
        })
    })
}

impl Posts {
    pub async fn like(&self, user: UserId, post: PostId) -> AppResult<()> {
        self.post_to_act_on(user, post).await?;
        let announce = liked(self.ids.next_event_id(), user, post);
        let outcome = self
            .posts
            .like(user, post, announce, Timestamp::now())
            .await?;
        if let LikeOutcome::Liked { .. } = outcome {
            self.post_cache.invalidate(&post).await;
            self.hydration.refresh_likes(user).await;
        }
        Ok(())
    }

    pub async fn unlike(&self, user: UserId, post: PostId) -> AppResult<()> {
        self.post_to_act_on(user, post).await?;
        let unliked = unliked(self.ids.next_event_id(), user, post);
        let outcome = self
            .posts
            .unlike(user, post, unliked, Timestamp::now())
            .await?;
        if outcome == UnlikeOutcome::Unliked {
            self.post_cache.invalidate(&post).await;
            self.hydration.refresh_likes(user).await;
        }
        Ok(())
    }
}
