//! Follow and unfollow. The row, the counters and the event commit together;
//! the follower's own timeline is adjusted at once (they see the change on
//! their next read), and the fan-out worker repeats it idempotently from the
//! event, so a crash between the two loses nothing.

use starling_domain::{Event, EventId, Timestamp, UserId, ValidationErrors};

use crate::error::AppResult;
use crate::graph::Graph;
use crate::ports::{Announce, FollowOutcome, UnfollowOutcome};

/// A follow announces the followee's follower count right after it, as
/// its transaction counted it: the fan-out worker tells from it when an
/// account crosses the hybrid threshold.
pub(crate) fn followed(id: EventId, follower: UserId, followee: UserId) -> Announce<FollowOutcome> {
    Announce::in_current_trace(id, move |outcome| match outcome {
        FollowOutcome::Followed { followee_followers } => Some(Event::Followed {
            follower_id: follower,
            followee_id: followee,
            followee_followers: *followee_followers,
        }),
        FollowOutcome::AlreadyFollowing => None,
    })
}

pub(crate) fn unfollowed(
    id: EventId,
    follower: UserId,
    followee: UserId,
) -> Announce<UnfollowOutcome> {
    Announce::in_current_trace(id, move |outcome| match outcome {
        UnfollowOutcome::Unfollowed { followee_followers } => Some(Event::Unfollowed {
            follower_id: follower,
            followee_id: followee,
            followee_followers: *followee_followers,
        }),
        UnfollowOutcome::NotFollowing => None,
    })
}

impl Graph {
    /// Idempotent: following someone already followed changes nothing.
    #[tracing::instrument(skip_all, fields(follower = %follower, followee = %followee))]
    pub async fn follow(&self, follower: UserId, followee: UserId) -> AppResult<()> {
        if follower == followee {
            return Err(ValidationErrors::single("id", "you cannot follow yourself").into());
        }
        // Not between accounts where either blocks the other: 404, as if the
        // account were not there (the store refuses the row regardless).
        self.hiding
            .ensure_not_blocked(Some(follower), followee)
            .await?;
        // Nor of a suspended account, which is not there while it is.
        crate::accounts::existing_user(self.accounts.as_ref(), followee).await?;
        let outcome = self
            .follows
            .follow(
                follower,
                followee,
                self.ids.next_raw(),
                followed(self.ids.next_event_id(), follower, followee),
                Timestamp::now(),
            )
            .await?;
        let FollowOutcome::Followed { followee_followers } = outcome else {
            return Ok(());
        };
        self.feed.forget_high_fanout_followees(follower).await;
        if let Err(error) = self
            .feed
            .apply_follow_to_timeline(follower, followee, followee_followers)
            .await
        {
            tracing::warn!(error = %error, "timeline backfill deferred to the fan-out worker");
        }
        tracing::info!("followed");
        Ok(())
    }

    /// Idempotent: unfollowing someone not followed changes nothing.
    #[tracing::instrument(skip_all, fields(follower = %follower, followee = %followee))]
    pub async fn unfollow(&self, follower: UserId, followee: UserId) -> AppResult<()> {
        if follower == followee {
            return Err(ValidationErrors::single("id", "you cannot unfollow yourself").into());
        }
        let outcome = self
            .follows
            .unfollow(
                follower,
                followee,
                unfollowed(self.ids.next_event_id(), follower, followee),
                Timestamp::now(),
            )
            .await?;
        let UnfollowOutcome::Unfollowed { .. } = outcome else {
            return Ok(());
        };
        self.feed.forget_high_fanout_followees(follower).await;
        if let Err(error) = self
            .feed
            .timelines()
            .remove_author(follower, followee)
            .await
        {
            tracing::warn!(error = %error, "timeline clean-up deferred to the fan-out worker");
        }
        tracing::info!("unfollowed");
        Ok(())
    }
}
