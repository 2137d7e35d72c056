//! Followers and following lists, most recent follow first. An account
//! blocked either way by the viewer has no lists for them (404), and shows
//! in nobody's lists to them (a page may then hold fewer than `limit`
//! accounts; its cursor still goes on from where the page ended).

use starling_domain::{User, UserId};

use crate::error::AppResult;
use crate::graph::Graph;
use crate::page::Page;

impl Graph {
    pub async fn followers(
        &self,
        viewer: Option<UserId>,
        user: UserId,
        before: Option<i64>,
        limit: usize,
    ) -> AppResult<Page<User>> {
        crate::accounts::existing_user(self.accounts.as_ref(), user).await?;
        self.hiding.ensure_not_blocked(viewer, user).await?;
        let rows = self
            .follows
            .followers(viewer, user, before, limit + 1)
            .await?;
        self.visible_page(viewer, rows, limit).await
    }

    pub async fn following(
        &self,
        viewer: Option<UserId>,
        user: UserId,
        before: Option<i64>,
        limit: usize,
    ) -> AppResult<Page<User>> {
        crate::accounts::existing_user(self.accounts.as_ref(), user).await?;
        self.hiding.ensure_not_blocked(viewer, user).await?;
        let rows = self
            .follows
            .following(viewer, user, before, limit + 1)
            .await?;
        self.visible_page(viewer, rows, limit).await
    }

    async fn visible_page(
        &self,
        viewer: Option<UserId>,
        rows: Vec<(i64, User)>,
        limit: usize,
    ) -> AppResult<Page<User>> {
        let mut page = follow_page(rows, limit);
        if let Some(viewer) = viewer {
            let hidden = self.hiding.hidden_from(viewer).await?;
            if !hidden.blocked.is_empty() {
                page.items.retain(|user| !hidden.blocked.contains(&user.id));
            }
        }
        Ok(page)
    }
}

fn follow_page(rows: Vec<(i64, User)>, limit: usize) -> Page<User> {
    let page = Page::from_overfetch(rows, limit, |(position, _)| *position);
    Page {
        items: page.items.into_iter().map(|(_, user)| user).collect(),
        next: page.next,
    }
}
