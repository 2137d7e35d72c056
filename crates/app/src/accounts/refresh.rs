//! Refresh-token rotation: every refresh spends the presented token and hands
//! out a new one of the same family; a spent token presented again means it
//! leaked, so the whole family is revoked. Except within a short grace
//! window (`auth.refresh_retry_grace_secs`) while the token handed out for
//! it is unspent: that is a client retrying a refresh whose answer it never
//! got, and it gets a new pair in place of the lost one (which stops
//! working), so the family still has one live token.

use starling_domain::Timestamp;

use crate::accounts::Session;
use crate::accounts::{Accounts, existing_user};
use crate::auth::refresh::{random_token, token_hash};
use crate::error::{AppError, AppResult};
use crate::ports::RotateOutcome;

const INVALID_REFRESH: &str = "refresh token is invalid, expired or revoked";

impl Accounts {
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, refresh_token: &str) -> AppResult<Session> {
        if refresh_token.is_empty() || refresh_token.len() > 256 {
            return Err(AppError::Unauthenticated(INVALID_REFRESH));
        }
        let now = Timestamp::now();
        let replacement = random_token();
        let outcome = self
            .sessions
            .rotate_refresh_token(
                &token_hash(refresh_token),
                &token_hash(&replacement),
                now.plus_seconds(self.refresh_token_ttl_secs),
                now.plus_seconds(-self.refresh_retry_grace_secs),
                now,
            )
            .await?;
        match outcome {
            RotateOutcome::Rotated(family) => {
                let user = existing_user(self.accounts.as_ref(), family.user_id)
                    .await
                    .map_err(|error| match error {
                        AppError::NotFound(_) => AppError::Unauthenticated(INVALID_REFRESH),
                        other => other,
                    })?;
                self.session_with(user, family.family_id, replacement, now)
            }
            RotateOutcome::Reused(family) => {
                tracing::warn!("spent refresh token presented again; its family is revoked");
                self.sessions_ended(family.user_id, &[family.family_id], "reuse")
                    .await;
                Err(AppError::Unauthenticated(INVALID_REFRESH))
            }
            RotateOutcome::Expired | RotateOutcome::Unknown => {
                Err(AppError::Unauthenticated(INVALID_REFRESH))
            }
        }
    }
}
