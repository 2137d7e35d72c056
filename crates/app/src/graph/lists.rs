//! Followers and following lists, most recent follow first. An account
//! blocked either way by the viewer has no lists for them (404).

use starling_domain::{User, UserId};

use crate::App;
use crate::error::AppResult;
use crate::page::Page;

impl App {
    pub async fn followers(
        &self,
        viewer: Option<UserId>,
        user: UserId,
        before: Option<i64>,
        limit: usize,
    ) -> AppResult<Page<User>> {
        self.existing_user(user).await?;
        self.ensure_not_blocked(viewer, user).await?;
        let rows = self.ports.store.followers(user, before, limit + 1).await?;
        Ok(follow_page(rows, limit))
    }

    pub async fn following(
        &self,
        viewer: Option<UserId>,
        user: UserId,
        before: Option<i64>,
        limit: usize,
    ) -> AppResult<Page<User>> {
        self.existing_user(user).await?;
        self.ensure_not_blocked(viewer, user).await?;
        let rows = self.ports.store.following(user, before, limit + 1).await?;
        Ok(follow_page(rows, limit))
    }
}

fn follow_page(rows: Vec<(i64, User)>, limit: usize) -> Page<User> {
    let page = Page::from_overfetch(rows, limit, |(position, _)| *position);
    Page {
        items: page.items.into_iter().map(|(_, user)| user).collect(),
        next: page.next,
    }
}
