//! Domain events: what the write model tells the read model and the workers.
//!
//! Each event is committed in the same SQL transaction as the change it
//! describes (the transactional outbox), then delivered at least once; its id
//! is the idempotency key of every handler.

use serde::{Deserialize, Serialize};

use crate::id::{EventId, MediaId, PostId, UserId};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    UserRegistered {
        user_id: UserId,
    },
    ProfileUpdated {
        user_id: UserId,
    },
    PostCreated {
        post_id: PostId,
        author_id: UserId,
        reply_to: Option<PostId>,
        /// The accounts the post mentions (absent in events from before
        /// mentions existed).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mentions: Vec<UserId>,
    },
    PostDeleted {
        post_id: PostId,
        author_id: UserId,
    },
    /// `followee_followers` is the followee's follower count right after this
    /// follow committed; handlers use it to tell when an account crosses the
    /// hybrid fan-out threshold.
    Followed {
        follower_id: UserId,
        followee_id: UserId,
        followee_followers: i64,
    },
    Unfollowed {
        follower_id: UserId,
        followee_id: UserId,
        followee_followers: i64,
    },
    Liked {
        user_id: UserId,
        post_id: PostId,
        post_author_id: UserId,
    },
    Unliked {
        user_id: UserId,
        post_id: PostId,
    },
    /// An image is stored; its thumbnail is to be made.
    MediaUploaded {
        media_id: MediaId,
        owner_id: UserId,
    },
    /// Staff suspended the account: its posts and profile are hidden until
    /// it is reinstated. `moderator_id` is absent when an operator acted
    /// from the command line.
    AccountSuspended {
        user_id: UserId,
        moderator_id: Option<UserId>,
    },
    /// Staff lifted the account's suspension.
    AccountReinstated {
        user_id: UserId,
        moderator_id: Option<UserId>,
    },
}

impl Event {
    /// A stable name, stored beside the payload and used as a subject suffix.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::UserRegistered { .. } => "user_registered",
            Event::ProfileUpdated { .. } => "profile_updated",
            Event::PostCreated { .. } => "post_created",
            Event::PostDeleted { .. } => "post_deleted",
            Event::Followed { .. } => "followed",
            Event::Unfollowed { .. } => "unfollowed",
            Event::Liked { .. } => "liked",
            Event::Unliked { .. } => "unliked",
            Event::MediaUploaded { .. } => "media_uploaded",
            Event::AccountSuspended { .. } => "account_suspended",
            Event::AccountReinstated { .. } => "account_reinstated",
        }
    }

    /// The account whose events must be handled in order, the partitioning
    /// key of a partitioned log: the author for posts (a delete after its
    /// create), the followee for follows (its audience changes in order with
    /// its posts), the acting account otherwise.
    pub fn partition_key(&self) -> UserId {
        match self {
            Event::Followed { followee_id, .. } | Event::Unfollowed { followee_id, .. } => {
                *followee_id
            }
            other => other.actor(),
        }
    }

    /// The account that acted (for a moderation event, the account acted on).
    pub fn actor(&self) -> UserId {
        match self {
            Event::UserRegistered { user_id }
            | Event::ProfileUpdated { user_id }
            | Event::Liked { user_id, .. }
            | Event::Unliked { user_id, .. } => *user_id,
            // The account changed, in order with its own events.
            Event::AccountSuspended { user_id, .. } | Event::AccountReinstated { user_id, .. } => {
                *user_id
            }
            Event::MediaUploaded { owner_id, .. } => *owner_id,
            Event::PostCreated { author_id, .. } | Event::PostDeleted { author_id, .. } => {
                *author_id
            }
            Event::Followed { follower_id, .. } | Event::Unfollowed { follower_id, .. } => {
                *follower_id
            }
        }
    }
}

/// An event as delivered: its id, when it happened and its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventEnvelope {
    pub id: EventId,
    /// Position in the log; strictly increasing in commit order.
    pub sequence: i64,
    pub occurred_at: Timestamp,
    pub event: Event,
    /// W3C `traceparent` of the operation that caused the event, when tracing is on.
    pub trace_parent: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_json_with_a_type_tag() {
        let event = Event::PostCreated {
            post_id: PostId(10),
            author_id: UserId(3),
            reply_to: None,
            mentions: Vec::new(),
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"type":"post_created","post_id":"10","author_id":"3","reply_to":null}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
        assert_eq!(event.kind(), "post_created");
        let mentioning = Event::PostCreated {
            post_id: PostId(11),
            author_id: UserId(3),
            reply_to: Some(PostId(10)),
            mentions: vec![UserId(4), UserId(5)],
        };
        let json = serde_json::to_string(&mentioning).unwrap();
        assert_eq!(
            json,
            r#"{"type":"post_created","post_id":"11","author_id":"3","reply_to":"10","mentions":["4","5"]}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), mentioning);
    }
}
