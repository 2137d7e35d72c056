//! Live updates: what a connected client is told as it happens (a post
//! arriving in its home timeline, a post leaving it, a new notification).
//!
//! Updates are published to *topics*: an account's inbox (what the fan-out
//! worker delivered to its timeline, its notifications) or an author's
//! broadcast (the posts of an account above the fan-out threshold, which no
//! worker copies into timelines; readers merge them, and live readers listen
//! to the author instead).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::id::{EventId, PostId, UserId};
use crate::notification::Notification;

/// Where a live update is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// One account's own updates.
    Inbox(UserId),
    /// Every post of one (high-fan-out) author.
    Author(UserId),
}

impl Topic {
    /// Parses the form `Display` writes (`u42`, `a42`).
    pub fn parse(text: &str) -> Option<Self> {
        let (kind, id) = text.split_at_checked(1)?;
        let id = UserId(id.parse().ok().filter(|id: &i64| *id > 0)?);
        match kind {
            "u" => Some(Self::Inbox(id)),
            "a" => Some(Self::Author(id)),
            _ => None,
        }
    }
}

/// `u<id>` or `a<id>`: short, and a valid NATS subject token.
impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inbox(id) => write!(f, "u{}", id.0),
            Self::Author(id) => write!(f, "a{}", id.0),
        }
    }
}

/// One live update. It names what changed; each reader's connection loads
/// and shapes it for its reader (likes, blocks and mutes differ per reader).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    Post {
        post_id: PostId,
        author_id: UserId,
    },
    PostDeleted {
        post_id: PostId,
        author_id: UserId,
    },
    Notification {
        notification: Notification,
    },
    /// For the follower's own streams, never shown: listen to the
    /// followee's broadcast from now on (`following`), or stop. Sent when
    /// an account in the band merged at read time is followed or
    /// unfollowed, and to every follower of an account entering that band,
    /// so an open stream follows what its reader follows without
    /// reconnecting.
    Following {
        follower: UserId,
        followee: UserId,
        following: bool,
        /// The event that caused it (names it on redelivery).
        cause: EventId,
    },
    /// For the account's own streams, never shown: one of its sessions
    /// ended (logout, or a spent refresh token presented again). Streams
    /// opened with that session's tokens close at once.
    SessionEnded {
        user_id: UserId,
        session: i64,
    },
}

impl LiveEvent {
    /// Names the thing that happened, the same on every redelivery of the
    /// event that caused it: logs drop a second publication under one key.
    pub fn dedupe_key(&self) -> String {
        match self {
            Self::Post { post_id, .. } => format!("p{}", post_id.0),
            Self::PostDeleted { post_id, .. } => format!("d{}", post_id.0),
            Self::Notification { notification: n } => format!(
                "n{}.{}.{}",
                n.kind.as_str(),
                n.actor.0,
                n.post.map_or(0, |post| post.0)
            ),
            Self::Following {
                follower,
                followee,
                cause,
                ..
            } => format!("f{}.{}.{}", follower.0, followee.0, cause.0),
            Self::SessionEnded { session, .. } => format!("s{session}"),
        }
    }

    /// The account whose action this is (hidden from readers who block or
    /// mute it).
    pub fn actor(&self) -> UserId {
        match self {
            Self::Post { author_id, .. } | Self::PostDeleted { author_id, .. } => *author_id,
            Self::Notification { notification } => notification.actor,
            Self::Following { follower, .. } => *follower,
            Self::SessionEnded { user_id, .. } => *user_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NotificationId, NotificationKind, Timestamp};

    #[test]
    fn topics_round_trip_through_their_names() {
        for topic in [Topic::Inbox(UserId(42)), Topic::Author(UserId(7))] {
            assert_eq!(Topic::parse(&topic.to_string()), Some(topic));
        }
        for bad in ["", "u", "x1", "u-1", "u0", "uabc", "a1.2"] {
            assert_eq!(Topic::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_redelivered_notification_has_the_same_key_under_a_new_id() {
        let notification = |id| LiveEvent::Notification {
            notification: Notification {
                id: NotificationId(id),
                recipient: UserId(1),
                kind: NotificationKind::Like,
                actor: UserId(2),
                post: Some(PostId(3)),
                created_at: Timestamp(0),
            },
        };
        assert_eq!(notification(10).dedupe_key(), notification(11).dedupe_key());
        assert_eq!(notification(10).dedupe_key(), "nlike.2.3");
        let post = LiveEvent::Post {
            post_id: PostId(3),
            author_id: UserId(2),
        };
        assert_eq!(post.dedupe_key(), "p3");
        // One per event that caused it: a follow, an unfollow and a follow
        // again are three updates.
        let following = |cause| LiveEvent::Following {
            follower: UserId(1),
            followee: UserId(2),
            following: true,
            cause: crate::EventId(cause),
        };
        assert_ne!(following(5).dedupe_key(), following(6).dedupe_key());
        assert_eq!(following(5).actor(), UserId(1));
        let json = serde_json::to_string(&post).unwrap();
        assert_eq!(serde_json::from_str::<LiveEvent>(&json).unwrap(), post);
    }
}
