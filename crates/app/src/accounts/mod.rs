//! Accounts: registration, sessions (login, refresh, logout) and profiles.

mod api_keys;
mod delete;
mod login;
mod logout;
mod profile;
mod refresh;
mod register;
mod session;
mod sessions;

pub use api_keys::{API_KEY_PREFIX, ApiKeyView, BearerError, CreatedApiKey, NewApiKey};
pub use login::{LoginBackoff, LoginInput};
pub use profile::{ProfileChanges, UserRef};
pub use register::RegisterInput;
pub(crate) use session::existing_user;
pub use session::{Device, Session};
pub use sessions::{Caller, SessionView};

use std::sync::Arc;

use starling_domain::{IdGenerator, UserId, UserSummary};

use crate::auth::{AccessTokens, PasswordHashing, TokenError, TokenIdentity};
use crate::graph::Hiding;
use crate::ports::{
    AccountStore, ApiKeyStore, Cache, DeletionStore, LiveLog, LoginFailures, TokenStore,
};

/// Accounts as a service: registration, sessions (login, refresh, logout),
/// access tokens, and profiles.
pub struct Accounts {
    accounts: Arc<dyn AccountStore>,
    /// Refresh-token families: the sessions.
    sessions: Arc<dyn TokenStore>,
    keys: Arc<dyn ApiKeyStore>,
    /// Account deletions: started here, run by the deletion worker.
    deletions: Arc<dyn DeletionStore>,
    /// API keys this instance checked lately.
    checked_keys: Arc<api_keys::CheckedKeys>,
    login_failures: Arc<dyn LoginFailures>,
    /// Where an ended session tells its open streams to close.
    live: Arc<dyn LiveLog>,
    user_cache: Arc<dyn Cache<UserId, Arc<UserSummary>>>,
    ids: Arc<IdGenerator>,
    passwords: PasswordHashing,
    tokens: AccessTokens,
    hiding: Arc<Hiding>,
    refresh_token_ttl_secs: i64,
    /// A session's absolute lifetime: refreshes do not extend it.
    session_max_age_secs: i64,
    /// How long a spent refresh token may be presented again as a retry.
    refresh_retry_grace_secs: i64,
    login_backoff: LoginBackoff,
}

/// What `Accounts` is built from besides the store.
pub struct AccountsParts {
    pub login_failures: Arc<dyn LoginFailures>,
    pub live: Arc<dyn LiveLog>,
    pub user_cache: Arc<dyn Cache<UserId, Arc<UserSummary>>>,
    pub ids: Arc<IdGenerator>,
    pub passwords: PasswordHashing,
    pub tokens: AccessTokens,
    pub hiding: Arc<Hiding>,
    pub refresh_token_ttl_secs: i64,
    pub session_max_age_secs: i64,
    pub refresh_retry_grace_secs: i64,
    /// How long an API key checked is trusted before it is read again.
    pub api_key_recheck: std::time::Duration,
    pub login_backoff: LoginBackoff,
}

impl Accounts {
    pub fn new(store: Arc<dyn crate::ports::Store>, parts: AccountsParts) -> Self {
        Self {
            accounts: store.clone(),
            keys: store.clone(),
            deletions: store.clone(),
            sessions: store,
            checked_keys: api_keys::CheckedKeys::new(parts.api_key_recheck),
            login_failures: parts.login_failures,
            live: parts.live,
            user_cache: parts.user_cache,
            ids: parts.ids,
            passwords: parts.passwords,
            tokens: parts.tokens,
            hiding: parts.hiding,
            refresh_token_ttl_secs: parts.refresh_token_ttl_secs,
            session_max_age_secs: parts.session_max_age_secs,
            refresh_retry_grace_secs: parts.refresh_retry_grace_secs,
            login_backoff: parts.login_backoff,
        }
    }

    /// The account, expiry and session of a valid access token, verified
    /// without touching any store (its session is checked against this
    /// instance's set of ended ones).
    pub fn identify(&self, access_token: &str) -> Result<TokenIdentity, TokenError> {
        self.tokens.identify(access_token)
    }
}
