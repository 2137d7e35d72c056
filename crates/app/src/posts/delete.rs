//! Deleting a post: tombstone plus `PostDeleted` in one transaction. Readers
//! drop tombstones during hydration, so the post disappears at once even
//! before the worker has removed it from every timeline. Its author
//! deletes it, or a moderator removes it with a reason (audited in the
//! same transaction).

use std::sync::Arc;

use starling_domain::{Event, EventId, Post, PostId, Role, Timestamp, UserId, ValidationErrors};

use crate::error::{AppError, AppResult};
use crate::ports::{Announce, AuditAction, AuditEntry, Cached, DeleteOutcome, PostDeleter};
use crate::posts::Posts;

/// The longest reason a moderator may give, in characters.
pub const REASON_MAX_CHARS: usize = 1_000;

/// A delete that happens announces itself, naming the post's author.
pub(crate) fn deleted(id: EventId, post: PostId) -> Announce<DeleteOutcome> {
    Announce::in_current_trace(id, move |outcome| match outcome {
        DeleteOutcome::Deleted { author, .. } => Some(Event::PostDeleted {
            post_id: post,
            author_id: *author,
        }),
        DeleteOutcome::NotAuthor => None,
    })
}

/// A moderator's reason: trimmed, 1 to `REASON_MAX_CHARS` characters.
pub(crate) fn moderation_reason(reason: &str) -> AppResult<String> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > REASON_MAX_CHARS {
        return Err(ValidationErrors::single(
            "reason",
            format!("must be 1 to {REASON_MAX_CHARS} characters long"),
        )
        .into());
    }
    Ok(reason.to_owned())
}

impl Posts {
    #[tracing::instrument(name = "delete_post", skip_all, fields(post_id = %post, requester = %requester))]
    pub async fn delete(&self, requester: UserId, post: PostId) -> AppResult<()> {
        self.delete_as(post, PostDeleter::Author(requester)).await?;
        tracing::info!("deleted");
        Ok(())
    }

    /// A moderator removes someone's post, giving `reason`: the post is
    /// deleted as its author would delete it, and the removal, with the
    /// text it removed, goes to the audit log.
    #[tracing::instrument(name = "remove_post", skip_all, fields(post_id = %post, moderator = %moderator))]
    pub async fn remove(&self, moderator: UserId, post: PostId, reason: &str) -> AppResult<()> {
        let staff =
            crate::admin::authorize(self.staff.as_ref(), moderator, Role::Moderator).await?;
        let reason = moderation_reason(reason)?;
        let Some(found) = self
            .posts
            .posts_by_ids(&[post])
            .await?
            .into_iter()
            .find(|found| !found.deleted)
        else {
            return Err(AppError::NotFound("post"));
        };
        let details = serde_json::json!({
            "author_id": found.author_id.to_string(),
            "text": found.text.as_str(),
        });
        let audit = AuditEntry {
            id: self.ids.next_raw(),
            actor: Some(staff.id),
            action: AuditAction::RemovePost,
            target_user: Some(found.author_id),
            target_post: Some(post),
            reason: Some(reason),
            details: details.to_string(),
            created_at: Timestamp::now(),
        };
        self.delete_as(post, PostDeleter::Moderator(audit)).await?;
        metrics::counter!(crate::metric::ADMIN_ACTIONS_TOTAL, "action" => AuditAction::RemovePost.as_str())
            .increment(1);
        tracing::info!("removed by a moderator");
        Ok(())
    }

    /// Deletes `post` as `deleter` may, then clears what the caches and the
    /// author's timeline held of it.
    async fn delete_as(&self, post: PostId, deleter: PostDeleter) -> AppResult<()> {
        let announce = deleted(self.ids.next_event_id(), post);
        let outcome = self
            .posts
            .delete_post(post, deleter, announce, Timestamp::now())
            .await?;
        let (author, reply_to) = match outcome {
            DeleteOutcome::NotAuthor => {
                return Err(AppError::Forbidden("only the author may delete a post"));
            }
            DeleteOutcome::Deleted { author, reply_to } => (author, reply_to),
        };
        // A tombstone, not a removal: a reader that loaded the live post just
        // before the delete cannot put it back (loaders only fill absent keys).
        self.post_cache
            .put_many(vec![(
                post,
                Cached::Found(Arc::new(Post::tombstone(post, author))),
            )])
            .await;
        self.feed.forget_authors_recent(&[author]).await;
        if let Some(parent) = reply_to {
            self.post_cache.invalidate(&parent).await;
        }
        if let Err(error) = self.feed.timelines().remove_post(&[author], post).await {
            tracing::warn!(error = %error, "timeline clean-up deferred to the fan-out worker");
        }
        Ok(())
    }
}
