//! Reading one post, one author's posts newest first, or a post's replies
//! in conversation order.

use std::sync::Arc;

use starling_domain::{Post, PostId, UserId};

use crate::error::{AppError, AppResult};
use crate::page::{Page, PostView};
use crate::posts::Posts;

impl Posts {
    /// One post; 404 when it is gone, or when its author and the viewer
    /// block each other either way.
    pub async fn post(&self, viewer: Option<UserId>, id: PostId) -> AppResult<PostView> {
        let view = self
            .hydration
            .hydrate(viewer, &[id])
            .await?
            .pop()
            .ok_or(AppError::NotFound("post"))?;
        self.hiding
            .ensure_not_blocked(viewer, view.post.author_id)
            .await
            .map_err(|_| AppError::NotFound("post"))?;
        Ok(view)
    }

    /// The post `actor` is about to act on (reply to, like): 404 when it is
    /// gone or deleted, and the same 404 when its author and the actor block
    /// each other either way, so a refusal reveals no block.
    pub(crate) async fn post_to_act_on(&self, actor: UserId, id: PostId) -> AppResult<Arc<Post>> {
        let post = self
            .hydration
            .load_posts(&[id])
            .await?
            .pop()
            .ok_or(AppError::NotFound("post"))?;
        // Asked of the store, not the per-viewer cache: a fill racing the
        // block's invalidation (a worker's read from just before it) could
        // leave the cache without it, and a write must not slip through.
        if post.author_id != actor
            && self
                .relations
                .blocked_either_way(actor, post.author_id)
                .await?
        {
            return Err(AppError::NotFound("post"));
        }
        Ok(post)
    }

    pub async fn user_posts(
        &self,
        viewer: Option<UserId>,
        author: UserId,
        before: Option<PostId>,
        limit: usize,
    ) -> AppResult<Page<PostView>> {
        crate::accounts::existing_user(self.accounts.as_ref(), author).await?;
        self.hiding.ensure_not_blocked(viewer, author).await?;
        let posts = self
            .posts
            .posts_by_author(viewer, author, before, limit + 1)
            .await?;
        let posts = posts.into_iter().map(Arc::new).collect();
        let views = self.hydration.views_of(viewer, posts).await?;
        Ok(Page::from_overfetch(views, limit, |view| {
            view.post.id.get()
        }))
    }

    /// Live replies to `parent`, oldest first. A deleted parent still lists
    /// its replies (threads keep their shape); one that never existed is 404.
    pub async fn replies(
        &self,
        viewer: Option<UserId>,
        parent: PostId,
        after: Option<PostId>,
        limit: usize,
    ) -> AppResult<Page<PostView>> {
        let Some(parent) = self.posts.posts_by_ids(&[parent]).await?.pop() else {
            return Err(AppError::NotFound("post"));
        };
        self.hiding
            .ensure_not_blocked(viewer, parent.author_id)
            .await
            .map_err(|_| AppError::NotFound("post"))?;
        let posts = self
            .posts
            .replies(viewer, parent.id, after, limit + 1)
            .await?;
        let hidden = match viewer {
            Some(viewer) => Some(self.hiding.hidden_from(viewer).await?),
            None => None,
        };
        // Hidden replies still count for the page's position, so paging
        // neither repeats nor skips.
        let page = Page::from_overfetch(posts, limit, |post| post.id.get());
        let posts = page
            .items
            .into_iter()
            .filter(|post| {
                hidden
                    .as_ref()
                    .is_none_or(|hidden| !hidden.hides_content_of(post.author_id))
            })
            .map(Arc::new)
            .collect();
        Ok(Page {
            items: self.hydration.views_of(viewer, posts).await?,
            next: page.next,
        })
    }
}
