//! Logout: revoke the refresh-token family of the presented token, and
//! close the live streams of that session.

use starling_domain::{LiveEvent, Timestamp, Topic};

use crate::accounts::Accounts;
use crate::auth::refresh::token_hash;
use crate::error::AppResult;
use crate::ports::RefreshFamily;

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
        self.tokens
            .revoked()
            .add([family.family_id], Timestamp::now_ms());
        metrics::counter!(crate::metric::SESSIONS_ENDED_TOTAL, "why" => "logout").increment(1);
        self.end_live_session(family).await;
        if everywhere {
            self.logout_everywhere(crate::accounts::Caller::signed_in(
                family.user_id,
                Some(family.family_id),
            ))
            .await?;
        }
        Ok(())
    }

    /// Tells the streams of `family`'s session, on every instance, to close.
    /// The revocation is committed already: if the live log cannot take
    /// the message, the streams end with their access token instead (within
    /// its lifetime), and the failure is logged.
    pub(crate) async fn end_live_session(&self, family: RefreshFamily) {
        let update = LiveEvent::SessionEnded {
            user_id: family.user_id,
            session: family.family_id,
        };
        if let Err(error) = self
            .live
            .publish(&[(Topic::Inbox(family.user_id), update)])
            .await
        {
            tracing::warn!(error = %error, "could not close an ended session's live streams");
        }
    }
}
