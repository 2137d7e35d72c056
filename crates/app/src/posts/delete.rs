//! Deleting a post: tombstone plus `PostDeleted` in one transaction. Readers
//! drop tombstones during hydration, so the post disappears at once even
//! before the worker has removed it from every timeline.

use std::sync::Arc;

use starling_domain::{Post, PostId, Timestamp, UserId};

use crate::App;
use crate::error::{AppError, AppResult};
use crate::ports::{DeleteOutcome, StoreError};

impl App {
    #[tracing::instrument(skip_all, fields(post_id = %post, requester = %requester))]
    pub async fn delete_post(&self, requester: UserId, post: PostId) -> AppResult<()> {
        let outcome = self
            .ports
            .store
            .delete_post(post, requester, self.ids.next_event_id(), Timestamp::now())
            .await
            .map_err(|error| match error {
                StoreError::NotFound => AppError::NotFound("post"),
                other => other.into(),
            })?;
        let reply_to = match outcome {
            DeleteOutcome::NotAuthor => {
                return Err(AppError::Forbidden("only the author may delete a post"));
            }
            DeleteOutcome::Deleted { reply_to } => reply_to,
        };
        self.ports.events.wake();
        let caches = &self.ports.caches;
        // A tombstone, not a removal: a reader that loaded the live post just
        // before the delete cannot put it back (loaders only fill absent keys).
        caches
            .posts
            .put_many(vec![(post, Arc::new(Post::tombstone(post, requester)))])
            .await;
        caches.author_recent.invalidate(&requester).await;
        if let Some(parent) = reply_to {
            caches.posts.invalidate(&parent).await;
        }
        if let Err(error) = self.ports.timelines.remove_post(&[requester], post).await {
            tracing::warn!(error = %error, "timeline clean-up deferred to the fan-out worker");
        }
        tracing::info!("deleted");
        Ok(())
    }
}
