//! Reading one post, one author's posts newest first, or a post's replies
//! in conversation order.

use std::sync::Arc;

use starling_domain::{PostId, UserId};

use crate::App;
use crate::error::{AppError, AppResult};
use crate::page::{Page, PostView};

impl App {
    pub async fn post(&self, viewer: Option<UserId>, id: PostId) -> AppResult<PostView> {
        self.hydrate(viewer, &[id])
            .await?
            .pop()
            .ok_or(AppError::NotFound("post"))
    }

    pub async fn user_posts(
        &self,
        viewer: Option<UserId>,
        author: UserId,
        before: Option<PostId>,
        limit: usize,
    ) -> AppResult<Page<PostView>> {
        self.existing_user(author).await?;
        let posts = self
            .ports
            .store
            .posts_by_author(author, before, limit + 1)
            .await?;
        let posts = posts.into_iter().map(Arc::new).collect();
        let views = self.views_of(viewer, posts).await?;
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
        if self.ports.store.posts_by_ids(&[parent]).await?.is_empty() {
            return Err(AppError::NotFound("post"));
        }
        let posts = self.ports.store.replies(parent, after, limit + 1).await?;
        let posts = posts.into_iter().map(Arc::new).collect();
        let views = self.views_of(viewer, posts).await?;
        Ok(Page::from_overfetch(views, limit, |view| {
            view.post.id.get()
        }))
    }
}
