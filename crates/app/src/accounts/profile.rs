//! Profiles: read by id or handle, and the owner's edits.

use std::sync::Arc;

use starling_domain::{Bio, DisplayName, Event, Handle, Timestamp, User, UserId, ValidationErrors};

use crate::accounts::{Accounts, existing_user};
use crate::error::{AppError, AppResult};
use crate::ports::NewEvent;

/// How a request names an account: by id, or by `@handle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Id(UserId),
    Handle(String),
}

#[derive(Debug, Clone, Default)]
pub struct ProfileChanges {
    pub display_name: Option<String>,
    pub bio: Option<String>,
}

/// The caller's own account is missing: its token outlived it or was signed
/// for another installation. That is an authentication failure, not a 404.
const UNKNOWN_CALLER: AppError =
    AppError::Unauthenticated("the account of this token does not exist");

impl Accounts {
    /// The authenticated caller's own profile.
    pub async fn me(&self, caller: UserId) -> AppResult<User> {
        self.accounts
            .user_by_id(caller)
            .await?
            .ok_or(UNKNOWN_CALLER)
    }

    /// The account `which` names, looked up for `reader` (who sees their
    /// own writes).
    pub async fn user(&self, reader: Option<UserId>, which: &UserRef) -> AppResult<User> {
        let found = match which {
            UserRef::Id(id) => self.accounts.user_by_id(*id).await?,
            UserRef::Handle(handle) => match Handle::parse(handle) {
                Ok(handle) => {
                    self.accounts
                        .user_by_handle(reader, &handle.canonical())
                        .await?
                }
                Err(_) => None,
            },
        };
        // A suspended account is not there, for everyone, until reinstated.
        found
            .filter(|user| user.status.is_visible())
            .ok_or(AppError::NotFound("user"))
    }

    /// A profile as `viewer` may see it: 404 when the two block each other
    /// either way.
    pub async fn profile(&self, viewer: Option<UserId>, which: &UserRef) -> AppResult<User> {
        let user = self.user(viewer, which).await?;
        self.hiding.ensure_not_blocked(viewer, user.id).await?;
        Ok(user)
    }

    #[tracing::instrument(skip_all, fields(user_id = %user))]
    pub async fn update_profile(&self, user: UserId, changes: ProfileChanges) -> AppResult<User> {
        let mut errors = ValidationErrors::default();
        let display_name = changes
            .display_name
            .as_deref()
            .and_then(|name| errors.check(DisplayName::parse(name)));
        let bio = changes
            .bio
            .as_deref()
            .and_then(|bio| errors.check(Bio::parse(bio)));
        errors.into_result()?;
        let display_name = match display_name {
            Some(name) if name.is_empty() => {
                // Clearing the name shows the handle again, as at registration.
                let current = existing_user(self.accounts.as_ref(), user).await?;
                Some(current.handle.as_str().to_owned())
            }
            other => other.map(DisplayName::into_string),
        };
        let updated = self
            .accounts
            .update_profile(
                user,
                display_name,
                bio.map(Bio::into_string),
                NewEvent::in_current_trace(
                    self.ids.next_event_id(),
                    Event::ProfileUpdated { user_id: user },
                ),
                Timestamp::now(),
            )
            .await
            .map_err(|error| match AppError::from(error) {
                AppError::NotFound(_) => UNKNOWN_CALLER,
                other => other,
            })?;
        self.user_cache.invalidate(&user).await;
        self.user_cache
            .put_many(vec![(user, Arc::new(updated.summary()))])
            .await;
        Ok(updated)
    }
}
