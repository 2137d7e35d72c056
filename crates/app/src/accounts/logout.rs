//! Logout: revoke the refresh-token family of the presented token, and
//! close the live streams of that session.

use starling_domain::{LiveEvent, Timestamp, Topic, UserId};

use crate::accounts::Accounts;
use crate::auth::refresh::token_hash;
use crate::error::AppResult;

impl Accounts {
    /// Ends the session of `refresh_token` (spent tokens of it count), and
    /// with `everywhere` every session of its account. Always succeeds for
    /// well-formed input, known token or not: logout must not reveal which
    /// tokens exist.
    #[tracing::instrument(skip_all)]
    pub async fn logout(&self, refresh_token: &str, everywhere: bool) -> AppResult<()> {
        if refresh_token.is_empty() || refresh_token.len() > 256 {
            return Ok(());
        }
        let revoked = self
            .sessions
            .revoke_refresh_family(&token_hash(refresh_token), Timestamp::now())
            .await?;
        let Some(family) = revoked else {
            return Ok(());
        };
        self.sessions_ended(family.user_id, &[family.family_id], "logout")
            .await;
        if everywhere {
            self.logout_everywhere(crate::accounts::Caller::signed_in(
                family.user_id,
                Some(family.family_id),
            ))
            .await?;
        }
        Ok(())
    }

    /// After sessions of `user` ended (their refresh tokens revoked, in the
    /// store already): this instance refuses their access tokens at once
    /// (the others within a revocation poll), their live streams on every
    /// instance are told to close, in one message, and they are counted by
    /// `why`. If the live log cannot take the message, the streams end with
    /// their access token instead (within its lifetime), and the failure is
    /// logged.
    pub(crate) async fn sessions_ended(&self, user: UserId, sessions: &[i64], why: &'static str) {
        if sessions.is_empty() {
            return;
        }
        self.tokens
            .revoked()
            .add(sessions.iter().copied(), Timestamp::now_ms());
        metrics::counter!(crate::metric::SESSIONS_ENDED_TOTAL, "why" => why)
            .increment(sessions.len() as u64);
        let updates: Vec<(Topic, LiveEvent)> = sessions
            .iter()
            .map(|&session| {
                (
                    Topic::Inbox(user),
                    LiveEvent::SessionEnded {
                        user_id: user,
                        session,
                    },
                )
            })
            .collect();
        if let Err(error) = self.live.publish(&updates).await {
            tracing::warn!(error = %error, "could not close an ended session's live streams");
        }
    }
}
