//! Logout: revoke the refresh-token family of the presented token, and
//! close the live streams of that session.

use starling_domain::{LiveEvent, Timestamp, Topic};

use crate::accounts::Accounts;
use crate::auth::refresh::token_hash;
use crate::error::AppResult;
use crate::ports::RefreshFamily;

impl Accounts {
    /// Always succeeds for well-formed input, known token or not: logout must
    /// not reveal which tokens exist.
    #[tracing::instrument(skip_all)]
    pub async fn logout(&self, refresh_token: &str) -> AppResult<()> {
        if refresh_token.is_empty() || refresh_token.len() > 256 {
            return Ok(());
        }
        let revoked = self
            .sessions
            .revoke_refresh_family(&token_hash(refresh_token), Timestamp::now())
            .await?;
        if let Some(family) = revoked {
            self.end_live_session(family).await;
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
