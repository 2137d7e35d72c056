//! Accounts as staff handle them: the listing, one account, suspension and
//! reinstatement, roles, and the audit log they all write.

use starling_domain::{AccountStatus, Event, Handle, Role, Timestamp, User, UserId};

use crate::admin::{Admin, Staff, authorize};
use crate::error::{AppError, AppResult};
use crate::ports::{
    AccountQuery, AccountRecord, AuditAction, AuditEntry, AuditQuery, NewEvent, StatusChange, Store,
};

/// One page of the admin listing and how many accounts match in all.
#[derive(Debug, Clone)]
pub struct AccountPage {
    pub accounts: Vec<AccountRecord>,
    pub total: u64,
}

/// One page of the audit log and how many entries match in all.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub total: u64,
}

const ROLE_CHANGED_MEANWHILE: AppError = AppError::Conflict {
    field: "role",
    message: "the account's role changed meanwhile: read it again",
};

impl Admin {
    /// Accounts matching `query` (moderators and admins).
    pub async fn accounts(&self, caller: UserId, query: AccountQuery) -> AppResult<AccountPage> {
        authorize(self.store.as_ref(), caller, Role::Moderator).await?;
        let (mut accounts, total) = self.store.find_accounts(&query).await?;
        for account in &mut accounts {
            self.with_deletion(account).await?;
        }
        Ok(AccountPage { accounts, total })
    }

    /// One account as staff see it, suspended or not.
    pub async fn account(&self, caller: UserId, id: UserId) -> AppResult<AccountRecord> {
        authorize(self.store.as_ref(), caller, Role::Moderator).await?;
        self.record(id).await
    }

    /// Suspends `target`: it cannot sign in, its sessions end on every
    /// instance (access tokens within a revocation poll, live streams at
    /// once), its keys are refused, and its profile and posts disappear
    /// for everyone until it is reinstated. Idempotent.
    #[tracing::instrument(skip_all, fields(caller = %caller, target = %target))]
    pub async fn suspend(
        &self,
        caller: UserId,
        target: UserId,
        reason: Option<&str>,
    ) -> AppResult<AccountRecord> {
        self.change_status(caller, target, AccountStatus::Suspended, reason)
            .await
    }

    /// Lifts `target`'s suspension: its profile and posts are back at once
    /// (nothing was removed); it signs in again. Idempotent.
    #[tracing::instrument(skip_all, fields(caller = %caller, target = %target))]
    pub async fn unsuspend(
        &self,
        caller: UserId,
        target: UserId,
        reason: Option<&str>,
    ) -> AppResult<AccountRecord> {
        self.change_status(caller, target, AccountStatus::Active, reason)
            .await
    }

    async fn change_status(
        &self,
        caller: UserId,
        target: UserId,
        status: AccountStatus,
        reason: Option<&str>,
    ) -> AppResult<AccountRecord> {
        let staff = authorize(self.store.as_ref(), caller, Role::Moderator).await?;
        let reason = reason.map(crate::posts::moderation_reason).transpose()?;
        let current = self.record(target).await?;
        ensure_outranks(staff, &current.user)?;
        let suspend = status != AccountStatus::Active;
        let (action, event) = match suspend {
            true => (
                AuditAction::Suspend,
                Event::AccountSuspended {
                    user_id: target,
                    moderator_id: Some(caller),
                },
            ),
            false => (
                AuditAction::Unsuspend,
                Event::AccountReinstated {
                    user_id: target,
                    moderator_id: Some(caller),
                },
            ),
        };
        let now = Timestamp::now();
        let audit = AuditEntry {
            id: self.ids.next_raw(),
            actor: Some(caller),
            action,
            target_user: Some(target),
            target_post: None,
            reason,
            details: "{}".to_owned(),
            created_at: now,
        };
        let change = self
            .store
            .set_suspended(
                target,
                suspend,
                audit,
                NewEvent::in_current_trace(self.ids.next_event_id(), event),
                now,
            )
            .await?;
        if let StatusChange::Changed { ended_sessions } = change {
            self.accounts
                .sessions_ended(target, &ended_sessions, "suspended")
                .await;
            // Every instance's copy goes (the invalidation is broadcast):
            // hydration then reads the account's new status.
            self.user_cache.invalidate(&target).await;
            metrics::counter!(crate::metric::ADMIN_ACTIONS_TOTAL, "action" => action.as_str())
                .increment(1);
            tracing::info!(action = action.as_str(), "account status changed");
        }
        self.record(target).await
    }

    /// Gives `target` the role `role` (admins only; not to themselves, so
    /// that an installation keeps the admin who acts).
    #[tracing::instrument(skip_all, fields(caller = %caller, target = %target))]
    pub async fn set_role(
        &self,
        caller: UserId,
        target: UserId,
        role: Role,
    ) -> AppResult<AccountRecord> {
        authorize(self.store.as_ref(), caller, Role::Admin).await?;
        if caller == target {
            return Err(AppError::Forbidden("you cannot change your own role"));
        }
        let current = self.record(target).await?;
        if !grant(
            self.store.as_ref(),
            &self.ids,
            Some(caller),
            &current.user,
            role,
        )
        .await?
        {
            return Err(ROLE_CHANGED_MEANWHILE);
        }
        self.record(target).await
    }

    /// The audit log's entries matching `query`, newest first.
    pub async fn audit(&self, caller: UserId, query: AuditQuery) -> AppResult<AuditPage> {
        authorize(self.store.as_ref(), caller, Role::Moderator).await?;
        let (entries, total) = self.store.audit_log(&query).await?;
        Ok(AuditPage { entries, total })
    }

    async fn record(&self, id: UserId) -> AppResult<AccountRecord> {
        let mut record = self
            .store
            .account_record(id)
            .await?
            .ok_or(AppError::NotFound("user"))?;
        self.with_deletion(&mut record).await?;
        Ok(record)
    }

    /// Fills in where the deletion of an account being deleted stands.
    async fn with_deletion(&self, record: &mut AccountRecord) -> AppResult<()> {
        if matches!(
            record.user.status,
            AccountStatus::Deleting | AccountStatus::Deleted
        ) {
            record.deletion = self.store.deletion_of(record.user.id).await?;
        }
        Ok(())
    }
}

/// Staff act on accounts of a lower role only (and so never on themselves):
/// a moderator on users, an admin on users and moderators.
fn ensure_outranks(staff: Staff, target: &User) -> AppResult<()> {
    if staff.id == target.id {
        return Err(AppError::Forbidden(
            "you cannot do this to your own account",
        ));
    }
    if target.role >= staff.role {
        return Err(AppError::Forbidden(
            "staff act only on accounts of a lower role: an admin must change this account's role first",
        ));
    }
    Ok(())
}

/// Gives `user` the role `role` with its audit entry (by `actor`, or by
/// an operator at the command line when `None`). `true` when the role is
/// `role` afterwards; `false` when it changed meanwhile.
async fn grant(
    store: &dyn Store,
    ids: &starling_domain::IdGenerator,
    actor: Option<UserId>,
    user: &User,
    role: Role,
) -> AppResult<bool> {
    if user.role == role {
        return Ok(true);
    }
    let details = serde_json::json!({ "from": user.role.as_str(), "to": role.as_str() });
    let audit = AuditEntry {
        id: ids.next_raw(),
        actor,
        action: AuditAction::GrantRole,
        target_user: Some(user.id),
        target_post: None,
        reason: None,
        details: details.to_string(),
        created_at: Timestamp::now(),
    };
    let changed = store.set_role(user.id, user.role, role, audit).await?;
    if changed {
        metrics::counter!(crate::metric::ADMIN_ACTIONS_TOTAL, "action" => AuditAction::GrantRole.as_str())
            .increment(1);
        tracing::info!(user_id = %user.id, from = user.role.as_str(), to = role.as_str(), "role changed");
    }
    Ok(changed)
}

/// `starling admin grant <handle> <role>`: an operator with the database
/// at hand gives an account a role (how the first admin is made). Audited
/// with no actor. Answers the account and the role it had.
pub async fn grant_by_operator(
    store: &dyn Store,
    ids: &starling_domain::IdGenerator,
    handle: &str,
    role: Role,
) -> AppResult<(User, Role)> {
    let handle = Handle::parse(handle.trim_start_matches('@'))
        .map_err(|error| AppError::Validation(starling_domain::ValidationErrors(vec![error])))?;
    // A concurrent change of the same account's role is retried once.
    for _ in 0..2 {
        let user = store
            .user_by_handle(None, &handle.canonical())
            .await?
            .ok_or(AppError::NotFound("user"))?;
        let before = user.role;
        if grant(store, ids, None, &user, role).await? {
            return Ok((user, before));
        }
    }
    Err(ROLE_CHANGED_MEANWHILE)
}
