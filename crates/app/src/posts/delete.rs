//! Deleting a post: tombstone plus `PostDeleted` in one transaction. Readers
//! drop tombstones during hydration, so the post disappears at once even
//! before the worker has removed it from every timeline.

use std::sync::Arc;

use starling_domain::{Event, EventId, Post, PostId, Timestamp, UserId};

use crate::error::{AppError, AppResult};
use crate::ports::{Announce, Cached, DeleteOutcome};
use crate::posts::Posts;

/// Only the author's delete happens, and announces itself.
pub(crate) fn deleted(id: EventId, post: PostId, requester: UserId) -> Announce<DeleteOutcome> {
    Announce::in_current_trace(id, move |outcome| {
        matches!(outcome, DeleteOutcome::Deleted { .. }).then_some(Event::PostDeleted {
            post_id: post,
            author_id: requester,
        })
    })
}

impl Posts {
    #[tracing::instrument(name = "delete_post", skip_all, fields(post_id = %post, requester = %requester))]
    pub async fn delete(&self, requester: UserId, post: PostId) -> AppResult<()> {
        let deleted = deleted(self.ids.next_event_id(), post, requester);
        let outcome = self
            .posts
            .delete_post(post, requester, deleted, Timestamp::now())
            .await?;
        let reply_to = match outcome {
            DeleteOutcome::NotAuthor => {
                return Err(AppError::Forbidden("only the author may delete a post"));
            }
            DeleteOutcome::Deleted { reply_to } => reply_to,
        };
        // A tombstone, not a removal: a reader that loaded the live post just
        // before the delete cannot put it back (loaders only fill absent keys).
        self.post_cache
            .put_many(vec![(
                post,
                Cached::Found(Arc::new(Post::tombstone(post, requester))),
            )])
            .await;
        self.feed.forget_authors_recent(&[requester]).await;
        if let Some(parent) = reply_to {
            self.post_cache.invalidate(&parent).await;
        }
        if let Err(error) = self.feed.timelines().remove_post(&[requester], post).await {
            tracing::warn!(error = %error, "timeline clean-up deferred to the fan-out worker");
        }
        tracing::info!("deleted");
        Ok(())
    }
}
