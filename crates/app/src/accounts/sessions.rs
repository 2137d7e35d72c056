//! A person's sessions: listed, ended one by one or all at once, and ended
//! by a password change; and how every instance learns that a session
//! ended, so that its access tokens stop working within seconds although
//! they are verified by signature alone.

use starling_domain::{Password, Timestamp, UserId, ValidationErrors};

use crate::accounts::Accounts;
use crate::auth::Scopes;
use crate::error::{AppError, AppResult};
use crate::ports::SessionRecord;

/// A session in its account's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub session: SessionRecord,
    /// The session the asking access token belongs to.
    pub current: bool,
}

/// Who is asking: an account, and the session of its access token (none for
/// tokens made by tools).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user: UserId,
    pub session: Option<i64>,
    /// The API key asking, when it is one.
    pub api_key: Option<i64>,
    /// What the credential may do: everything for a session's token.
    pub scopes: Scopes,
}

impl Caller {
    /// Refuses API keys: credentials (keys, sessions, the password) are
    /// managed by a person signed in.
    pub fn require_signed_in(self) -> AppResult<()> {
        if self.api_key.is_some() {
            return Err(AppError::Forbidden(
                "API keys cannot manage keys, sessions or passwords: sign in",
            ));
        }
        Ok(())
    }

    /// A session's access token: everything its account may do.
    pub fn signed_in(user: UserId, session: Option<i64>) -> Self {
        Self {
            user,
            session,
            api_key: None,
            scopes: Scopes::ALL,
        }
    }
}

const WRONG_PASSWORD: &str = "the current password is incorrect";

impl Accounts {
    /// The caller's open sessions, newest first.
    pub async fn sessions(&self, caller: Caller) -> AppResult<Vec<SessionView>> {
        caller.require_signed_in()?;
        let sessions = self
            .sessions
            .sessions_of(caller.user, Timestamp::now())
            .await?;
        Ok(sessions
            .into_iter()
            .map(|session| SessionView {
                current: Some(session.id) == caller.session,
                session,
            })
            .collect())
    }

    /// Ends one of the caller's sessions (the current one too, if named).
    /// Errors: `NotFound("session")` when the caller has no such open one.
    #[tracing::instrument(skip_all, fields(session))]
    pub async fn end_session(&self, caller: Caller, session: i64) -> AppResult<()> {
        caller.require_signed_in()?;
        let ended = self
            .sessions
            .revoke_session(caller.user, session, Timestamp::now())
            .await?;
        if !ended {
            return Err(AppError::NotFound("session"));
        }
        self.sessions_ended(caller.user, &[session], "ended").await;
        Ok(())
    }

    /// Ends every session of the caller, the current one included.
    #[tracing::instrument(skip_all)]
    pub async fn logout_everywhere(&self, caller: Caller) -> AppResult<()> {
        caller.require_signed_in()?;
        let ended = self
            .sessions
            .revoke_sessions_of(caller.user, None, Timestamp::now())
            .await?;
        self.sessions_ended(caller.user, &ended, "logout_everywhere")
            .await;
        Ok(())
    }

    /// Changes the caller's password, given the current one; every other
    /// session ends with the change (in the same transaction), the
    /// caller's own goes on.
    #[tracing::instrument(skip_all)]
    pub async fn change_password(&self, caller: Caller, current: &str, new: &str) -> AppResult<()> {
        caller.require_signed_in()?;
        if current.len() > super::login::PRESENTED_PASSWORD_MAX_LEN {
            return Err(AppError::Forbidden(WRONG_PASSWORD));
        }
        let new = Password::parse(new).map_err(|error| {
            AppError::Validation(ValidationErrors::single("new_password", error.message))
        })?;
        self.confirm_password(caller.user, current, "password change")
            .await?;
        let hash = self.passwords.hash(new).await?;
        let ended = self
            .sessions
            .change_password(caller.user, &hash, caller.session, Timestamp::now())
            .await?;
        tracing::info!(user_id = %caller.user, ended = ended.len(), "password changed");
        self.sessions_ended(caller.user, &ended, "password").await;
        Ok(())
    }

    /// Checks `password` as the account's own, for `what` (a change that
    /// needs it). Guesses back off as logins do: a stolen access token must
    /// not make this an oracle for the password. 403 when it is wrong.
    pub(super) async fn confirm_password(
        &self,
        user: UserId,
        password: &str,
        what: &'static str,
    ) -> AppResult<()> {
        if password.len() > super::login::PRESENTED_PASSWORD_MAX_LEN {
            return Err(AppError::Forbidden(WRONG_PASSWORD));
        }
        let key = format!("u:{user}");
        self.unless_backing_off(&key, "wrong passwords").await?;
        let stored = self.sessions.password_hash_of(user).await?;
        if stored.is_none() {
            return Err(AppError::NotFound("user"));
        }
        let matches = self
            .passwords
            .verify(Password::presented(password), stored)
            .await?;
        if !matches {
            tracing::info!(refused = what, "wrong password");
            self.count_login_failure(&key).await;
            return Err(AppError::Forbidden(WRONG_PASSWORD));
        }
        Ok(())
    }

    /// Learns the sessions that ended anywhere (other instances included)
    /// recently enough for a token of theirs to be unexpired, and forgets
    /// those whose every token has expired. Every instance serving the API
    /// calls this every `auth.revocation_poll_ms`.
    pub async fn sync_revocations(&self) -> AppResult<()> {
        let now = Timestamp::now();
        // A token of a session can be issued up to the moment it ends, and
        // lives its lifetime and the leeway; a minute more covers clocks.
        let window_secs = self.tokens.outlives_session_by_secs() + 60;
        let since = now.plus_seconds(-window_secs);
        let revoked = self.sessions.sessions_revoked_since(since).await?;
        let known = self.tokens.revoked();
        known.add(revoked, now.millis());
        known.forget_before(since.millis());
        metrics::gauge!(crate::metric::SESSIONS_REVOKED_KNOWN).set(known.len() as f64);
        Ok(())
    }
}
