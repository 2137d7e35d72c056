//! The admin API's use cases: staff find accounts, suspend and reinstate
//! them, change roles, and read the audit log (a moderator's removal of a
//! post is in `posts`, beside the author's delete).
//!
//! Every use case checks its caller's role itself ([`authorize`]), read
//! fresh from the store rather than from the access token, so that a
//! demotion takes effect at the next call and no route can forget the
//! check. Each action writes its audit entry in its own transaction.

mod accounts;

pub use accounts::{AccountPage, AuditPage, grant_by_operator};

use std::sync::Arc;

use starling_domain::{IdGenerator, Role, UserId, UserSummary};

use crate::accounts::Accounts;
use crate::error::{AppError, AppResult};
use crate::ports::{AdminStore, Cache, Store};

/// A caller whose role was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staff {
    pub id: UserId,
    pub role: Role,
}

/// `caller`, when their role is at least `needed` now; `Forbidden`
/// otherwise (counted), `Unauthenticated` when the account is gone.
pub async fn authorize(store: &dyn AdminStore, caller: UserId, needed: Role) -> AppResult<Staff> {
    let Some((role, status)) = store.standing_of(caller).await? else {
        return Err(AppError::Unauthenticated(
            "the account of this token does not exist",
        ));
    };
    if role < needed || !status.is_visible() {
        metrics::counter!(crate::metric::ADMIN_REFUSALS_TOTAL).increment(1);
        return Err(AppError::Forbidden(match needed {
            Role::Admin => "this needs the admin role",
            Role::Moderator | Role::User => "this needs the moderator or admin role",
        }));
    }
    Ok(Staff { id: caller, role })
}

/// Staff's use cases as a service.
pub struct Admin {
    store: Arc<dyn Store>,
    /// Ends a suspended account's sessions everywhere (tokens, streams).
    accounts: Arc<Accounts>,
    /// Dropped on suspension and reinstatement: hydration hides a
    /// suspended author's posts by the summary it caches.
    user_cache: Arc<dyn Cache<UserId, Arc<UserSummary>>>,
    ids: Arc<IdGenerator>,
}

impl Admin {
    pub fn new(
        store: Arc<dyn Store>,
        accounts: Arc<Accounts>,
        user_cache: Arc<dyn Cache<UserId, Arc<UserSummary>>>,
        ids: Arc<IdGenerator>,
    ) -> Self {
        Self {
            store,
            accounts,
            user_cache,
            ids,
        }
    }
}
