//! The login-failures port: how many logins to one account failed lately,
//! and when the last one did, for the per-account back-off of `login`.
//! In process in embedded mode; in Redis when scaled out, so that a guesser
//! spreading attempts over instances meets one back-off.

use std::time::Duration;

use async_trait::async_trait;

/// Failed logins counted for one key since it was last cleared (or
/// forgotten).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Failures {
    pub count: u32,
    /// When the last one happened, in Unix milliseconds (0 with none).
    pub last_at_ms: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("login failures unavailable")]
pub struct LoginFailuresError(#[source] pub anyhow::Error);

#[async_trait]
pub trait LoginFailures: Send + Sync {
    /// What is counted for `key` (none: the default).
    async fn get(&self, key: &str) -> Result<Failures, LoginFailuresError>;
    /// Counts one more failure at `at_ms`; the whole count is forgotten
    /// `forget_after` from this last failure. Concurrent adds all count.
    async fn add(
        &self,
        key: &str,
        at_ms: i64,
        forget_after: Duration,
    ) -> Result<Failures, LoginFailuresError>;
    /// Forgets `key` (a login succeeded).
    async fn clear(&self, key: &str) -> Result<(), LoginFailuresError>;
}
