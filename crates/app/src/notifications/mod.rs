//! Notifications, the recipient's side: the list, the read position and the
//! unread count. They are made by the notifier worker from events
//! (`workers::notifier`), never inside the request that caused them.

use std::collections::HashMap;
use std::sync::Arc;

use starling_domain::{Notification, NotificationId, NotificationKind, UserId, UserSummary};

use crate::error::AppResult;
use crate::feed::Hydration;
use crate::graph::Hiding;
use crate::page::{Page, PostView};
use crate::ports::NotificationStore;

/// The unread count is counted up to this many (clients show "999+").
pub const UNREAD_COUNT_CAP: u64 = 1_000;

/// A notification ready to show.
#[derive(Debug, Clone)]
pub struct NotificationView {
    pub notification: Notification,
    pub actor: Arc<UserSummary>,
    /// The post it is about (the liked post, the reply, the mentioning post).
    pub post: Option<PostView>,
    /// At or below the recipient's read position.
    pub read: bool,
}

/// Where an account stands with its notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    pub read_through: Option<NotificationId>,
    /// Counted up to `UNREAD_COUNT_CAP`.
    pub unread: u64,
}

/// The recipient's side of notifications as a service: their rows, who is
/// hidden from the recipient, and hydration of the posts they are about.
pub struct Notifications {
    store: Arc<dyn NotificationStore>,
    hiding: Arc<Hiding>,
    hydration: Arc<Hydration>,
}

impl Notifications {
    pub fn new(
        store: Arc<dyn NotificationStore>,
        hiding: Arc<Hiding>,
        hydration: Arc<Hydration>,
    ) -> Self {
        Self {
            store,
            hiding,
            hydration,
        }
    }

    /// `recipient`'s notifications of the given kinds (all when empty),
    /// newest first. A notification about a post deleted since is left out
    /// (the notifier also removes it, moments after the deletion).
    pub async fn list(
        &self,
        recipient: UserId,
        kinds: &[NotificationKind],
        before: Option<NotificationId>,
        limit: usize,
    ) -> AppResult<Page<NotificationView>> {
        let store = &self.store;
        let rows = store
            .notifications(recipient, kinds, before, limit + 1)
            .await?;
        let mut page = Page::from_overfetch(rows, limit, |notification| notification.id.get());
        // Nothing from accounts blocked either way, or muted.
        let hidden = self.hiding.hidden_from(recipient).await?;
        page.items
            .retain(|notification| !hidden.hides_content_of(notification.actor));
        let read_through = self.read_through(recipient).await?;
        Ok(Page {
            items: self.views(recipient, page.items, read_through).await?,
            next: page.next,
        })
    }

    /// `notifications` of `recipient` ready to show; any whose post is gone
    /// is left out.
    pub async fn views(
        &self,
        recipient: UserId,
        notifications: Vec<Notification>,
        read_through: i64,
    ) -> AppResult<Vec<NotificationView>> {
        let post_ids: Vec<_> = notifications.iter().filter_map(|n| n.post).collect();
        let posts: HashMap<_, PostView> = self
            .hydration
            .hydrate(Some(recipient), &post_ids)
            .await?
            .into_iter()
            .map(|view| (view.post.id, view))
            .collect();
        let actor_ids: Vec<UserId> = notifications.iter().map(|n| n.actor).collect();
        let actors = self.hydration.summaries(&actor_ids).await?;
        Ok(notifications
            .into_iter()
            .filter_map(|notification| {
                let post = match notification.post {
                    Some(id) => Some(posts.get(&id)?.clone()),
                    None => None,
                };
                // Nothing from a suspended account while it is.
                let actor = actors
                    .get(&notification.actor)
                    .filter(|actor| !actor.hidden)?;
                Some(NotificationView {
                    actor: actor.clone(),
                    post,
                    read: notification.id.get() <= read_through,
                    notification,
                })
            })
            .collect())
    }

    /// Marks `recipient`'s notifications read up to `through` (all of them
    /// when `None`); never beyond the newest, never back.
    pub async fn mark_read(
        &self,
        recipient: UserId,
        through: Option<NotificationId>,
    ) -> AppResult<ReadState> {
        self.store
            .mark_notifications_read(recipient, through)
            .await?;
        self.state(recipient).await
    }

    /// The read position alone (0: nothing read), without counting.
    pub async fn read_through(&self, recipient: UserId) -> AppResult<i64> {
        Ok(self
            .store
            .notification_state(recipient, 0)
            .await?
            .read_through)
    }

    /// The read position and the unread count.
    pub async fn state(&self, recipient: UserId) -> AppResult<ReadState> {
        let state = self
            .store
            .notification_state(recipient, UNREAD_COUNT_CAP)
            .await?;
        Ok(ReadState {
            read_through: (state.read_through > 0).then_some(NotificationId(state.read_through)),
            unread: state.unread,
        })
    }
}
