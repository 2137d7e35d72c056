//! argon2id password hashing, run on the blocking pool: one hash takes tens
//! of milliseconds of CPU and must never stall the async workers.

use std::sync::Arc;
use std::time::Duration;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use starling_domain::Password;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{AppError, AppResult};

/// argon2id cost parameters (OWASP's minimum is m=19 MiB, t=2, p=1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

/// How long a login or registration waits for a hashing slot before the
/// service answers that it is saturated (503).
const SLOT_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct PasswordHashing {
    params: Params,
    /// A hash of a random password, verified against when the login names no
    /// account, so that unknown accounts take as long to refuse as known ones.
    decoy_hash: String,
    /// One hash per core at a time: each takes `memory_kib` of memory and a
    /// core for tens of milliseconds, so a burst of logins must queue here
    /// rather than start hundreds of blocking threads.
    slots: Arc<Semaphore>,
}

impl PasswordHashing {
    pub fn new(params: PasswordParams) -> anyhow::Result<Self> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|error| anyhow::anyhow!("invalid argon2 parameters: {error}"))?;
        let decoy_hash = hash_with(&params, &super::refresh::random_token())?;
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Self {
            params,
            decoy_hash,
            slots: Arc::new(Semaphore::new(cores)),
        })
    }

    /// Waits for a hashing slot; past `SLOT_WAIT` the service is saturated.
    async fn slot(&self) -> AppResult<OwnedSemaphorePermit> {
        match tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(closed)) => Err(AppError::Unexpected(anyhow::anyhow!(
                "hashing slots closed: {closed}"
            ))),
            Err(_) => {
                metrics::counter!(crate::metric::PASSWORD_HASHING_SATURATED_TOTAL).increment(1);
                Err(AppError::Unavailable(anyhow::anyhow!(
                    "password hashing saturated for {SLOT_WAIT:?}"
                )))
            }
        }
    }

    pub async fn hash(&self, password: Password) -> AppResult<String> {
        let params = self.params.clone();
        let slot = self.slot().await?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            hash_with(&params, password.expose())
        })
        .await
        .map_err(|join| {
            AppError::Unexpected(anyhow::anyhow!("password hashing task failed: {join}"))
        })?
        .map_err(AppError::Unexpected)
    }

    /// True when `password` matches `stored_hash`. With no stored hash, a decoy
    /// is verified instead and the answer is false.
    pub async fn verify(&self, password: Password, stored_hash: Option<String>) -> AppResult<bool> {
        let account_exists = stored_hash.is_some();
        let hash = stored_hash.unwrap_or_else(|| self.decoy_hash.clone());
        let params = self.params.clone();
        let slot = self.slot().await?;
        let matches = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .verify_password(password.expose().as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .map_err(|join| {
            AppError::Unexpected(anyhow::anyhow!("password check task failed: {join}"))
        })?;
        Ok(account_exists && matches)
    }
}

fn hash_with(params: &Params, password: &str) -> anyhow::Result<String> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| anyhow::anyhow!("argon2 hashing failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn light() -> PasswordHashing {
        PasswordHashing::new(PasswordParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hashing = light();
        let hash = hashing
            .hash(Password::presented("hunter2hunter2"))
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            hashing
                .verify(Password::presented("hunter2hunter2"), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hashing
                .verify(Password::presented("hunter3hunter3"), Some(hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_missing_account_never_verifies() {
        let hashing = light();
        assert!(
            !hashing
                .verify(Password::presented("anything"), None)
                .await
                .unwrap()
        );
    }
}
