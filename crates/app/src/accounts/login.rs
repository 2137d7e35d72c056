//! Login by handle or email. Unknown accounts and wrong passwords get the
//! same answer after the same work, so logins cannot probe for accounts.
//!
//! Failed logins back off per account, on top of the edge's per-address
//! quota: a botnet guessing one account's password from many addresses
//! meets one back-off. Logins naming no account back off the same way (by
//! the name given), so the back-off reveals no account either.

use std::time::Duration;

use starling_domain::{Password, Timestamp};

use crate::accounts::Accounts;
use crate::accounts::{Device, Session};
use crate::error::{AppError, AppResult};
use crate::ports::Failures;

/// Longer inputs cannot be valid; refusing them early keeps the hasher from
/// being fed megabytes.
const LOGIN_MAX_LEN: usize = 254;
pub(crate) const PRESENTED_PASSWORD_MAX_LEN: usize = 1024;

#[derive(Debug, Clone)]
pub struct LoginInput {
    pub login: String,
    pub password: String,
    pub device: Device,
}

pub(crate) const BAD_CREDENTIALS: &str = "login or password is incorrect";
pub(crate) const SUSPENDED: &str = "this account is suspended";

/// The per-account back-off of failed logins: the first `free_failures` in
/// a row cost nothing; from then on each one makes the next attempt wait,
/// one second after the first, doubling each time up to `max_wait`. The
/// count is forgotten on a successful login, or `forget_after` past the
/// last failure. A `max_wait` of zero turns the back-off off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginBackoff {
    pub free_failures: u32,
    pub max_wait: Duration,
    pub forget_after: Duration,
}

impl Default for LoginBackoff {
    fn default() -> Self {
        Self {
            free_failures: 5,
            max_wait: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl LoginBackoff {
    /// How long after its last failure an account with `failures` failures
    /// may try again.
    pub fn wait_after(&self, failures: u32) -> Duration {
        if self.max_wait.is_zero() || failures < self.free_failures.max(1) {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free_failures.max(1)).min(32);
        Duration::from_secs(1u64 << doublings).min(self.max_wait)
    }

    /// What is left of the wait at `now_ms`; `None` when an attempt may go.
    pub fn remaining(&self, failures: Failures, now_ms: i64) -> Option<Duration> {
        let wait = i64::try_from(self.wait_after(failures.count).as_millis()).unwrap_or(i64::MAX);
        let left = failures
            .last_at_ms
            .saturating_add(wait)
            .saturating_sub(now_ms);
        (left > 0).then(|| Duration::from_millis(left.unsigned_abs()))
    }
}

impl Accounts {
    #[tracing::instrument(skip_all)]
    pub async fn login(&self, input: LoginInput) -> AppResult<Session> {
        let login = input.login.trim().to_lowercase();
        if login.is_empty()
            || login.len() > LOGIN_MAX_LEN
            || input.password.len() > PRESENTED_PASSWORD_MAX_LEN
        {
            return Err(AppError::Unauthenticated(BAD_CREDENTIALS));
        }
        let credentials = self.accounts.credentials_by_login(&login).await?;
        let user_id = credentials.as_ref().map(|found| found.user_id);
        // One key per account, whichever of its names is given.
        let key = match user_id {
            Some(id) => format!("u:{id}"),
            None => format!("l:{login}"),
        };
        let failures = self.unless_backing_off(&key, "failed logins").await?;
        let matches = self
            .passwords
            .verify(
                Password::presented(&input.password),
                credentials.map(|found| found.password_hash),
            )
            .await?;
        let Some(user_id) = user_id.filter(|_| matches) else {
            tracing::info!("login refused");
            self.count_login_failure(&key).await;
            return Err(AppError::Unauthenticated(BAD_CREDENTIALS));
        };
        if failures.count > 0
            && let Err(error) = self.login_failures.clear(&key).await
        {
            tracing::warn!(error = %error, "could not clear an account's failed logins");
        }
        let user = self
            .accounts
            .user_by_id(user_id)
            .await?
            .ok_or(AppError::NotFound("user"))?;
        // Told only to whoever knows the password.
        if !user.status.is_visible() {
            tracing::info!(user_id = %user.id, "login refused: suspended");
            return Err(AppError::Forbidden(SUSPENDED));
        }
        self.open_session(user, input.device).await
    }

    /// The failures counted for `key`, or `Throttled` while they back off:
    /// refused before the password is looked at, so guessing on during the
    /// wait learns nothing, whatever was guessed. `what` names the failures
    /// in the answer.
    pub(super) async fn unless_backing_off(&self, key: &str, what: &str) -> AppResult<Failures> {
        let failures = self.login_failures(key).await;
        let Some(wait) = self.login_backoff.remaining(failures, Timestamp::now_ms()) else {
            return Ok(failures);
        };
        metrics::counter!(crate::metric::LOGINS_BACKED_OFF_TOTAL).increment(1);
        let seconds = wait.as_millis().div_ceil(1000).max(1);
        Err(AppError::Throttled {
            detail: format!("too many {what} for this account: try again in {seconds} s"),
            retry_after: Duration::from_secs(u64::try_from(seconds).unwrap_or(u64::MAX)),
        })
    }

    /// The failures counted for `key`; none when they cannot be read (the
    /// back-off fails open: the edge's per-address quota still holds).
    async fn login_failures(&self, key: &str) -> Failures {
        self.login_failures.get(key).await.unwrap_or_else(|error| {
            tracing::warn!(error = %error, "could not read failed logins; not backing off");
            Failures::default()
        })
    }

    pub(super) async fn count_login_failure(&self, key: &str) {
        let forget_after = self.login_backoff.forget_after;
        if let Err(error) = self
            .login_failures
            .add(key, Timestamp::now_ms(), forget_after)
            .await
        {
            tracing::warn!(error = %error, "could not count a failed login");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_after_the_free_failures_up_to_the_cap() {
        let backoff = LoginBackoff {
            free_failures: 3,
            max_wait: Duration::from_secs(60),
            forget_after: Duration::from_secs(3600),
        };
        let waits: Vec<u64> = (0..12).map(|n| backoff.wait_after(n).as_secs()).collect();
        assert_eq!(waits, [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff.wait_after(u32::MAX), Duration::from_secs(60));
        let off = LoginBackoff {
            max_wait: Duration::ZERO,
            ..backoff
        };
        assert_eq!(off.wait_after(100), Duration::ZERO);
    }

    #[test]
    fn what_is_left_counts_from_the_last_failure() {
        let backoff = LoginBackoff::default();
        let failed = |count| Failures {
            count,
            last_at_ms: 10_000,
        };
        assert_eq!(backoff.remaining(failed(4), 10_000), None);
        assert_eq!(
            backoff.remaining(failed(6), 10_500),
            Some(Duration::from_millis(1_500))
        );
        assert_eq!(backoff.remaining(failed(6), 12_000), None);
        assert_eq!(backoff.remaining(Failures::default(), 0), None);
    }
}
