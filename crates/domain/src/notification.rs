//! Notifications: telling an account that someone followed it, liked or
//! answered its post, or mentioned it. The notifier derives them from events;
//! each is keyed by what happened (recipient, kind, actor, post), so an event
//! delivered twice, or a like given twice, notifies once.

use serde::{Deserialize, Serialize};

use crate::id::{NotificationId, PostId, UserId};
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// `actor` followed the recipient.
    Follow,
    /// `actor` liked the recipient's `post`.
    Like,
    /// `actor` answered one of the recipient's posts with `post`.
    Reply,
    /// `actor` named the recipient in `post`.
    Mention,
}

impl NotificationKind {
    pub const ALL: [NotificationKind; 4] = [
        NotificationKind::Follow,
        NotificationKind::Like,
        NotificationKind::Reply,
        NotificationKind::Mention,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Follow => "follow",
            NotificationKind::Like => "like",
            NotificationKind::Reply => "reply",
            NotificationKind::Mention => "mention",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: NotificationId,
    pub recipient: UserId,
    pub kind: NotificationKind,
    pub actor: UserId,
    /// The liked post, the reply, or the post with the mention; `None` for follows.
    pub post: Option<PostId>,
    /// When the action happened (the event's time, not the notifier's).
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in NotificationKind::ALL {
            assert_eq!(NotificationKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.as_str())
            );
        }
        assert_eq!(NotificationKind::parse("Follow"), None);
        assert_eq!(NotificationKind::parse(""), None);
    }
}
