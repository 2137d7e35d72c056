//! A signed-in session: an access token and a refresh token for one account.

use starling_domain::{Timestamp, User, UserId};

use crate::accounts::Accounts;
use crate::auth::refresh::{random_token, token_hash};
use crate::error::AppResult;
use crate::ports::{AccountStore, RefreshTokenRecord, SessionRecord};

#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds the access token stays valid.
    pub expires_in: i64,
}

/// Where a sign-in comes from, as the list of sessions shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    pub user_agent: Option<String>,
    /// The client's address as the edge decided it.
    pub address: Option<String>,
}

/// User agents are kept to this many characters.
const USER_AGENT_MAX_CHARS: usize = 256;

impl Device {
    fn kept(self) -> Self {
        Self {
            user_agent: self
                .user_agent
                .map(|agent| agent.chars().take(USER_AGENT_MAX_CHARS).collect::<String>())
                .filter(|agent| !agent.trim().is_empty()),
            address: self.address,
        }
    }
}

impl Accounts {
    /// Starts a new session (refresh-token family) for `user` (a login or
    /// registration), ending at the latest `session_max_age_secs` from now.
    pub(crate) async fn open_session(&self, user: User, device: Device) -> AppResult<Session> {
        let now = Timestamp::now();
        let refresh_token = random_token();
        let family_id = self.ids.next_raw();
        let device = device.kept();
        self.sessions
            .open_session(
                SessionRecord {
                    id: family_id,
                    user_id: user.id,
                    created_at: now,
                    last_used_at: now,
                    expires_at: now.plus_seconds(self.session_max_age_secs),
                    user_agent: device.user_agent,
                    address: device.address,
                },
                RefreshTokenRecord {
                    token_hash: token_hash(&refresh_token),
                    user_id: user.id,
                    family_id,
                    issued_at: now,
                    expires_at: now.plus_seconds(self.refresh_token_ttl_secs),
                },
            )
            .await?;
        metrics::counter!(crate::metric::SESSIONS_OPENED_TOTAL).increment(1);
        self.session_with(user, family_id, refresh_token, now)
    }

    /// The session's answer: a new access token (naming the refresh-token
    /// family as its session) beside `refresh_token`.
    pub(crate) fn session_with(
        &self,
        user: User,
        family_id: i64,
        refresh_token: String,
        now: Timestamp,
    ) -> AppResult<Session> {
        Ok(Session {
            access_token: self.tokens.issue(user.id, Some(family_id), now)?,
            expires_in: self.tokens.ttl_secs(),
            user,
            refresh_token,
        })
    }

    /// A new session for the account a registration created, for a retry
    /// of that registration with its `Idempotency-Key` (same request, the
    /// password included, so no more than a sign-in would grant): the
    /// first answer's tokens are not kept anywhere to be replayed.
    pub async fn session_for_replayed_registration(
        &self,
        user: UserId,
        device: Device,
    ) -> AppResult<Session> {
        let user = existing_user(self.accounts.as_ref(), user).await?;
        self.open_session(user, device).await
    }
}

/// The account `id` as others may see it: `NotFound("user")` when there is
/// none, or it is suspended.
pub(crate) async fn existing_user(accounts: &dyn AccountStore, id: UserId) -> AppResult<User> {
    accounts
        .user_by_id(id)
        .await?
        .filter(|user| user.status.is_visible())
        .ok_or(crate::AppError::NotFound("user"))
}
