//! A person deletes their account: the password confirms it, and in one
//! transaction the account goes `deleting`, its password and sessions
//! end, and the deletion saga is recorded; the deletion worker
//! (`workers::deletion`) then removes what it had, step by step.

use starling_domain::Timestamp;

use crate::accounts::{Accounts, Caller};
use crate::error::{AppError, AppResult};
use crate::ports::DeletionRecord;

impl Accounts {
    /// Starts deleting the caller's account (a person signed in, giving
    /// their password). From the answer on the account is gone for
    /// everyone and cannot sign in; its data goes in the background.
    #[tracing::instrument(skip_all, fields(user_id = %caller.user))]
    pub async fn delete_account(
        &self,
        caller: Caller,
        password: &str,
    ) -> AppResult<DeletionRecord> {
        caller.require_signed_in()?;
        // Deleting an account, or guessing its password, takes the password.
        self.confirm_password(caller.user, password, "account deletion")
            .await?;
        let Some(ended) = self
            .deletions
            .begin_deletion(caller.user, Timestamp::now())
            .await?
        else {
            return Err(AppError::Conflict {
                field: "account",
                message: "this account cannot be deleted now (it is suspended, or being deleted)",
            });
        };
        self.sessions_ended(caller.user, &ended, "deleted").await;
        // Every instance drops its copy: hydration hides the account's
        // posts from now on.
        self.user_cache.invalidate(&caller.user).await;
        metrics::counter!(crate::metric::ACCOUNT_DELETIONS_STARTED_TOTAL).increment(1);
        tracing::info!("account deletion started");
        self.deletions
            .deletion_of(caller.user)
            .await?
            .ok_or(AppError::NotFound("user"))
    }
}
