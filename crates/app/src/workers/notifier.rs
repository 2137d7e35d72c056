//! The notifier: turns events into notifications. A follow notifies the
//! followee, a like the post's author, a reply the author of the post it
//! answers, a mention the account mentioned. Never inside the request: the event log delivers each event
//! here at least once, and the store keeps one notification per thing that
//! happened, so redelivery notifies nobody twice.

use std::sync::Arc;

use async_trait::async_trait;
use starling_domain::{
    Event, EventEnvelope, LiveEvent, Notification, NotificationKind, PostId, Timestamp, Topic,
    UserId,
};

use crate::App;
use crate::error::AppResult;
use crate::feed::Hydration;
use crate::graph::Hiding;
use crate::ports::{GraphStore, LiveLog, NotificationStore};
use crate::workers::EventHandler;

/// A like taken back within this long after it was given withdraws its
/// notification (a slip of the thumb should not reach the author).
pub const LIKE_WITHDRAW_WINDOW_MS: i64 = 60_000;

/// The notifier holds the notification rows, whether a follow still
/// stands, who is hidden from whom, post loads (a reply's parent), the live
/// log and ids: no App.
pub struct Notifier {
    notifications: Arc<dyn NotificationStore>,
    graph: Arc<dyn GraphStore>,
    hiding: Arc<Hiding>,
    hydration: Arc<Hydration>,
    live: Arc<dyn LiveLog>,
    ids: Arc<starling_domain::IdGenerator>,
}

impl Notifier {
    pub const CONSUMER: &'static str = "notifier";

    pub fn new(app: &App) -> Self {
        let ports = app.ports();
        Self {
            notifications: ports.store.clone(),
            graph: ports.store.clone(),
            hiding: app.hiding().clone(),
            hydration: app.hydration().clone(),
            live: ports.live.clone(),
            ids: app.ids().clone(),
        }
    }

    /// Stores what is new among `notifications`, leaving out anything that
    /// would notify an account of its own action.
    async fn notify(&self, notifications: Vec<Notification>) -> AppResult<()> {
        let mut kept = Vec::with_capacity(notifications.len());
        for notification in notifications {
            if notification.recipient == notification.actor {
                continue;
            }
            // Nothing between accounts where either blocks the other.
            if self
                .hiding
                .hidden_from(notification.recipient)
                .await?
                .blocked
                .contains(&notification.actor)
            {
                continue;
            }
            kept.push(notification);
        }
        let notifications = kept;
        if notifications.is_empty() {
            return Ok(());
        }
        let stored = self.notifications.add_notifications(&notifications).await?;
        let mut live = Vec::with_capacity(notifications.len());
        let mut added = 0;
        for (mut notification, id) in notifications.into_iter().zip(stored) {
            // A notification stored by an earlier delivery keeps its id.
            added += u64::from(notification.id == id);
            notification.id = id;
            live.push((
                Topic::Inbox(notification.recipient),
                LiveEvent::Notification { notification },
            ));
        }
        if added > 0 {
            metrics::counter!(crate::metric::NOTIFICATIONS_CREATED_TOTAL).increment(added);
        }
        // Again on a redelivery, in case the first delivery stored the
        // notifications but failed to publish them (the log drops copies).
        crate::live::publish(self.live.as_ref(), &live).await
    }

    fn notification(
        &self,
        envelope: &EventEnvelope,
        recipient: UserId,
        kind: NotificationKind,
        actor: UserId,
        post: Option<PostId>,
    ) -> Notification {
        Notification {
            id: self.ids.next_notification_id(),
            recipient,
            kind,
            actor,
            post,
            created_at: envelope.occurred_at,
        }
    }
}

#[async_trait]
impl EventHandler for Notifier {
    fn name(&self) -> &'static str {
        Self::CONSUMER
    }

    async fn handle(&self, envelope: &EventEnvelope) -> AppResult<()> {
        let store = &self.notifications;
        match &envelope.event {
            Event::Followed {
                follower_id,
                followee_id,
                ..
            } => {
                // A follow already taken back notifies nobody.
                if !self.graph.is_following(*follower_id, *followee_id).await? {
                    return Ok(());
                }
                let follow = self.notification(
                    envelope,
                    *followee_id,
                    NotificationKind::Follow,
                    *follower_id,
                    None,
                );
                self.notify(vec![follow]).await
            }
            Event::Liked {
                user_id,
                post_id,
                post_author_id,
            } => {
                let like = self.notification(
                    envelope,
                    *post_author_id,
                    NotificationKind::Like,
                    *user_id,
                    Some(*post_id),
                );
                self.notify(vec![like]).await
            }
            Event::Unliked { user_id, post_id } => {
                let since = Timestamp(envelope.occurred_at.millis() - LIKE_WITHDRAW_WINDOW_MS);
                store
                    .withdraw_notification(NotificationKind::Like, *user_id, *post_id, since)
                    .await?;
                Ok(())
            }
            Event::PostCreated {
                post_id,
                author_id,
                reply_to,
                mentions,
            } => {
                let mut notifications = Vec::with_capacity(mentions.len() + 1);
                // The post answered, unless it is gone since.
                let parent_author = match reply_to {
                    Some(parent) => self
                        .hydration
                        .load_posts(&[*parent])
                        .await?
                        .pop()
                        .map(|parent| parent.author_id),
                    None => None,
                };
                if let Some(parent_author) = parent_author {
                    notifications.push(self.notification(
                        envelope,
                        parent_author,
                        NotificationKind::Reply,
                        *author_id,
                        Some(*post_id),
                    ));
                }
                // Whoever the reply already notifies is not told twice.
                for mentioned in mentions {
                    if Some(*mentioned) != parent_author {
                        notifications.push(self.notification(
                            envelope,
                            *mentioned,
                            NotificationKind::Mention,
                            *author_id,
                            Some(*post_id),
                        ));
                    }
                }
                self.notify(notifications).await
            }
            Event::PostDeleted { post_id, .. } => {
                store.remove_post_notifications(*post_id).await?;
                Ok(())
            }
            Event::Unfollowed { .. }
            | Event::UserRegistered { .. }
            | Event::ProfileUpdated { .. }
            | Event::MediaUploaded { .. }
            | Event::AccountSuspended { .. }
            | Event::AccountReinstated { .. } => Ok(()),
        }
    }
}
