//! Registration: validate, hash the password off the async threads, create the
//! account and sign it in.

use starling_domain::{DisplayName, Email, Event, Handle, Password, Timestamp, ValidationErrors};

use crate::accounts::Accounts;
use crate::accounts::{Device, Session};
use crate::error::AppResult;
use crate::ports::{NewEvent, NewUser};

#[derive(Debug, Clone)]
pub struct RegisterInput {
    pub handle: String,
    pub email: String,
    pub password: String,
    pub display_name: Option<String>,
    /// Where the sign-in that registration is comes from.
    pub device: Device,
}

impl Accounts {
    #[tracing::instrument(skip_all, fields(handle = %input.handle))]
    pub async fn register(&self, input: RegisterInput) -> AppResult<Session> {
        let mut errors = ValidationErrors::default();
        let handle = errors.check(Handle::parse(&input.handle));
        let email = errors.check(Email::parse(&input.email));
        let password = errors.check(Password::parse(&input.password));
        let display_name = match input.display_name.as_deref() {
            Some(name) => errors.check(DisplayName::parse(name)),
            None => None,
        };
        let (Some(handle), Some(email), Some(password)) = (handle, email, password) else {
            return Err(errors.into());
        };
        errors.into_result()?;

        let display_name = display_name
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| DisplayName::from_handle(&handle));
        let password_hash = self.passwords.hash(password).await?;
        let device = input.device;
        let id = self.ids.next_user_id();
        let user = self
            .accounts
            .create_user(NewUser {
                id,
                handle,
                email,
                display_name: display_name.into_string(),
                password_hash,
                created_at: Timestamp::now(),
                event: NewEvent::in_current_trace(
                    self.ids.next_event_id(),
                    Event::UserRegistered { user_id: id },
                ),
            })
            .await?;
        tracing::info!(user_id = %user.id, "registered");
        self.open_session(user, device).await
    }
}
