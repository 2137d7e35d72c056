//! API keys for scripts and bots: `sk_<prefix>_<secret>`, answered once
//! when made and kept only as the SHA-256 of the whole key. A key speaks for
//! its account with the scopes it was given, until it expires or its owner
//! revokes it.
//!
//! Checking a key reads the store (there is no signature to check), so a
//! key checked is remembered for `auth.api_key_recheck_secs` and then read
//! again, which also records its last use: a revocation reaches the
//! instance that made it at once and every other within that time.

use std::sync::Arc;
use std::time::Duration;

use starling_domain::{Timestamp, UserId, ValidationErrors};

use crate::accounts::{Accounts, Caller};
use crate::auth::refresh::{random_token, token_hash};
use crate::auth::{Scopes, TokenError};
use crate::error::{AppError, AppResult};
use crate::ports::ApiKeyRecord;

/// What every key starts with, so that a leaked one is recognisable (and
/// secret scanners can find it).
pub const API_KEY_PREFIX: &str = "sk_";
/// Characters of the identifying part after `sk_`.
const ID_CHARS: usize = 12;
/// Live keys an account may hold at once.
const KEYS_PER_ACCOUNT: usize = 50;
const NAME_MAX_CHARS: usize = 64;
/// Keys checked and remembered at most, per instance.
const REMEMBERED_KEYS: usize = 10_000;

/// A key's request to be made.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<Timestamp>,
}

/// A key as its owner sees it in a list: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyView {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub scopes: Scopes,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
}

/// A key just made: the only time the key is told.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    pub key: String,
    pub view: ApiKeyView,
}

/// A key checked: who it speaks for, with which scopes, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyIdentity {
    id: i64,
    user: UserId,
    scopes: Scopes,
    expires_at: Option<Timestamp>,
    checked_at_ms: i64,
}

/// The keys an instance has checked lately.
pub(crate) struct CheckedKeys {
    keys: quick_cache::sync::Cache<String, KeyIdentity>,
    recheck_ms: i64,
}

impl CheckedKeys {
    pub(crate) fn new(recheck: Duration) -> Arc<Self> {
        Arc::new(Self {
            keys: quick_cache::sync::Cache::new(REMEMBERED_KEYS),
            recheck_ms: i64::try_from(recheck.as_millis()).unwrap_or(i64::MAX),
        })
    }
}

fn view(record: ApiKeyRecord) -> ApiKeyView {
    ApiKeyView {
        id: record.id,
        scopes: Scopes::parse(record.scopes.split_whitespace()).unwrap_or_default(),
        name: record.name,
        prefix: record.prefix,
        created_at: record.created_at,
        last_used_at: record.last_used_at,
        expires_at: record.expires_at,
    }
}

/// Why a bearer credential was refused, or could not be checked.
#[derive(Debug)]
pub enum BearerError {
    Refused(TokenError),
    Unavailable(AppError),
}

impl Accounts {
    /// Makes a key for the caller, who must be signed in (a key makes no keys).
    #[tracing::instrument(skip_all)]
    pub async fn create_api_key(
        &self,
        caller: Caller,
        input: NewApiKey,
    ) -> AppResult<CreatedApiKey> {
        caller.require_signed_in()?;
        let mut errors = ValidationErrors::default();
        let name = input.name.trim().to_owned();
        if name.is_empty()
            || name.chars().count() > NAME_MAX_CHARS
            || name.chars().any(char::is_control)
        {
            errors.push(
                "name",
                format!("1 to {NAME_MAX_CHARS} characters, none of them control characters"),
            );
        }
        let scopes = match Scopes::parse(input.scopes.iter().map(String::as_str)) {
            Ok(scopes) if scopes.is_empty() => {
                errors.push(
                    "scopes",
                    "name at least one of: read, write, follow, notifications, media",
                );
                Scopes::default()
            }
            Ok(scopes) => scopes,
            Err(unknown) => {
                errors.push(
                    "scopes",
                    format!("unknown scope {unknown:?}: read, write, follow, notifications, media"),
                );
                Scopes::default()
            }
        };
        let now = Timestamp::now();
        if input.expires_at.is_some_and(|at| at <= now) {
            errors.push("expires_at", "must be in the future");
        }
        errors.into_result()?;
        if self.keys.api_keys_of(caller.user, now).await?.len() >= KEYS_PER_ACCOUNT {
            return Err(AppError::Conflict {
                field: "api_keys",
                message: "an account holds at most 50 live API keys: revoke one first",
            });
        }
        let prefix = identifying_part();
        let key = format!("{API_KEY_PREFIX}{prefix}_{}", random_token());
        let record = ApiKeyRecord {
            id: self.ids.next_raw(),
            user_id: caller.user,
            name,
            prefix,
            key_hash: token_hash(&key),
            scopes: scopes.to_text(),
            created_at: now,
            last_used_at: None,
            expires_at: input.expires_at,
        };
        self.keys.insert_api_key(record.clone()).await?;
        metrics::counter!(crate::metric::API_KEYS_CREATED_TOTAL).increment(1);
        tracing::info!(user_id = %caller.user, key_id = record.id, "API key made");
        Ok(CreatedApiKey {
            key,
            view: view(record),
        })
    }

    /// The caller's live keys, newest first.
    pub async fn api_keys(&self, caller: Caller) -> AppResult<Vec<ApiKeyView>> {
        caller.require_signed_in()?;
        Ok(self
            .keys
            .api_keys_of(caller.user, Timestamp::now())
            .await?
            .into_iter()
            .map(view)
            .collect())
    }

    /// Revokes one of the caller's keys. Errors: `NotFound("api key")`.
    #[tracing::instrument(skip_all, fields(key_id = id))]
    pub async fn revoke_api_key(&self, caller: Caller, id: i64) -> AppResult<()> {
        caller.require_signed_in()?;
        if !self
            .keys
            .revoke_api_key(caller.user, id, Timestamp::now())
            .await?
        {
            return Err(AppError::NotFound("api key"));
        }
        self.checked_keys
            .keys
            .retain(|_, identity| identity.id != id);
        metrics::counter!(crate::metric::API_KEYS_REVOKED_TOTAL).increment(1);
        Ok(())
    }

    /// Whether `token` looks like an API key (and is to be checked as one).
    pub fn is_api_key(token: &str) -> bool {
        token.starts_with(API_KEY_PREFIX)
    }

    /// The caller an API key speaks for: from this instance's memory if it
    /// was checked within `auth.api_key_recheck_secs`, else from the store.
    pub async fn authenticate_api_key(&self, key: &str) -> Result<Caller, BearerError> {
        // `sk_` + 12 + `_` + 43: anything else was never made here.
        if key.len() != API_KEY_PREFIX.len() + ID_CHARS + 1 + 43 || !key.is_ascii() {
            return Err(BearerError::Refused(TokenError::Invalid));
        }
        let now = Timestamp::now();
        if let Some(identity) = self.checked_keys.keys.get(key)
            && now.millis() - identity.checked_at_ms < self.checked_keys.recheck_ms
        {
            if identity.expires_at.is_some_and(|at| at <= now) {
                self.checked_keys.keys.remove(key);
                return Err(BearerError::Refused(TokenError::Expired));
            }
            return Ok(caller_of(identity));
        }
        let found = self
            .keys
            .use_api_key(&token_hash(key), now)
            .await
            .map_err(|error| BearerError::Unavailable(error.into()))?;
        let Some(record) = found else {
            self.checked_keys.keys.remove(key);
            return Err(BearerError::Refused(TokenError::Invalid));
        };
        metrics::counter!(crate::metric::API_KEYS_CHECKED_TOTAL).increment(1);
        let identity = KeyIdentity {
            id: record.id,
            user: record.user_id,
            scopes: Scopes::parse(record.scopes.split_whitespace()).unwrap_or_default(),
            expires_at: record.expires_at,
            checked_at_ms: now.millis(),
        };
        self.checked_keys.keys.insert(key.to_owned(), identity);
        Ok(caller_of(identity))
    }
}

fn caller_of(identity: KeyIdentity) -> Caller {
    Caller {
        user: identity.user,
        session: None,
        api_key: Some(identity.id),
        scopes: identity.scopes,
    }
}

/// 12 characters of `[a-z0-9]` (about 62 bits): tells keys apart in lists
/// and logs, and reveals nothing of the secret.
fn identifying_part() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    (0..ID_CHARS)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifying_parts_are_short_lowercase_and_different() {
        let one = identifying_part();
        assert_eq!(one.len(), ID_CHARS);
        assert!(
            one.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_ne!(one, identifying_part());
    }
}
