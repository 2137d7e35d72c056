//! Creating a post: its `@handle`s are resolved to accounts, then one
//! transaction stores the post and its `PostCreated` event; the author's own timeline gets it before we answer (read-your-writes);
//! the fan-out worker delivers it to followers from the event.

use std::collections::HashMap;
use std::sync::Arc;

use starling_domain::{
    Event, MediaId, Mention, PostId, PostText, Timestamp, UserId, UserSummary, ValidationErrors,
    find_mentions, mentioned_accounts, mentioned_keys,
};

use crate::error::{AppError, AppResult};
use crate::page::PostView;
use crate::posts::Posts;

use crate::ports::{Cached, NewEvent, NewPost, StoreError, TimelineEntry};

impl Posts {
    #[tracing::instrument(name = "create_post", skip_all, fields(author = %author))]
    pub async fn create(
        &self,
        author: UserId,
        text: &str,
        reply_to: Option<PostId>,
        media: &[MediaId],
    ) -> AppResult<PostView> {
        // A post says something, in words or in pictures.
        let text = if media.is_empty() {
            PostText::parse(text)
        } else {
            PostText::parse_caption(text)
        }
        .map_err(|error| ValidationErrors(vec![error]))?;
        // Everything the answer needs is loaded before the commit, side by
        // side: once the post is committed, nothing may fail the request (a
        // client retrying an error without an Idempotency-Key would post
        // twice).
        let (_, mentions, media, author_summary) = tokio::try_join!(
            async {
                match reply_to {
                    // Checked again by the store's transaction, which knows
                    // nothing of blocks: this is where a blocked parent
                    // answers 404.
                    Some(parent) => self.post_to_act_on(author, parent).await.map(|_| ()),
                    None => Ok(()),
                }
            },
            self.resolve_mentions(author, text.as_str()),
            self.media.attachments(author, media),
            async {
                self.hydration
                    .author_summary(author)
                    .await
                    .map_err(|error| match error {
                        // A valid token of an account this database lacks.
                        AppError::NotFound(_) => StoreError::UnknownAccount.into(),
                        other => other,
                    })
            },
        )?;
        let id = self.ids.next_post_id();
        let created = Event::PostCreated {
            post_id: id,
            author_id: author,
            reply_to,
            mentions: mentioned_accounts(&mentions),
        };
        let post = self
            .posts
            .create_post(NewPost {
                id,
                author_id: author,
                text,
                reply_to,
                mentions,
                media,
                created_at: Timestamp::now(),
                event: NewEvent::in_current_trace(self.ids.next_event_id(), created),
            })
            // A parent deleted since the check above: the same 404 as before it.
            .await?;

        let entry = TimelineEntry {
            post_id: post.id,
            author_id: author,
        };
        let post = Arc::new(post);
        let own_timeline = [author];
        // What follows the commit goes to other engines side by side (one
        // wait instead of three in a row), and none of it can fail the
        // request: the post is committed. Cache steps cannot fail; the
        // timeline insert is only logged (the fan-out worker adds the post
        // to its author's timeline from the event).
        let (inserted, (), ()) = tokio::join!(
            self.feed.timelines().insert(&own_timeline, entry),
            self.feed.forget_authors_recent(&own_timeline),
            async {
                if let Some(parent) = reply_to {
                    self.post_cache.invalidate(&parent).await;
                }
                // Put, not filled: an id looked up before its post existed
                // is cached as missing (here and, through the broadcast,
                // on every instance) and must show now that it does.
                self.post_cache
                    .put_many(vec![(post.id, Cached::Found(post.clone()))])
                    .await;
            },
        );
        if let Err(error) = inserted {
            // The post is committed; the fan-out worker adds it to the
            // author's timeline from the event, so nothing is lost.
            tracing::warn!(error = %error, "could not add the post to its author's timeline");
        }
        tracing::info!(post_id = %post.id, "posted");
        Ok(PostView {
            author: author_summary,
            post,
            // Nobody can have liked a post that did not exist a moment ago.
            liked_by_me: false,
        })
    }
}

impl Posts {
    /// The `@handle`s in `text` that name accounts, with where they are.
    /// Handles naming nobody stay plain text; so do accounts that block the
    /// author or that the author blocks, and suspended accounts (no link, no
    /// notification); past
    /// `MAX_MENTIONS` distinct accounts, the rest do too.
    async fn resolve_mentions(&self, author: UserId, text: &str) -> AppResult<Vec<Mention>> {
        let candidates = find_mentions(text);
        let keys = mentioned_keys(&candidates);
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let accounts: HashMap<String, UserSummary> = self
            .accounts
            .users_by_handles(&keys)
            .await?
            .into_iter()
            .map(|account| (account.handle.canonical(), account))
            .collect();
        // From the store, not the cache (see `post_to_act_on`).
        let hidden = self.relations.hidden_from(author).await?;
        Ok(candidates
            .into_iter()
            .filter(|candidate| keys.contains(&candidate.handle_key))
            .filter_map(|candidate| {
                let account = accounts
                    .get(&candidate.handle_key)
                    .filter(|account| !account.hidden && !hidden.blocked.contains(&account.id))?;
                Some(Mention {
                    user_id: account.id,
                    handle: account.handle.clone(),
                    start: candidate.start,
                    end: candidate.end,
                })
            })
            .collect())
    }
}
