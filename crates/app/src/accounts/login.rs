//! Login by handle or email. Unknown accounts and wrong passwords get the
//! same answer after the same work, so logins cannot probe for accounts.

use starling_domain::Password;

use crate::App;
use crate::accounts::Session;
use crate::error::{AppError, AppResult};

/// Longer inputs cannot be valid; refusing them early keeps the hasher from
/// being fed megabytes.
const LOGIN_MAX_LEN: usize = 254;
const PRESENTED_PASSWORD_MAX_LEN: usize = 1024;

#[derive(Debug, Clone)]
pub struct LoginInput {
    pub login: String,
    pub password: String,
}

pub(crate) const BAD_CREDENTIALS: &str = "login or password is incorrect";

impl App {
    #[tracing::instrument(skip_all)]
    pub async fn login(&self, input: LoginInput) -> AppResult<Session> {
        let login = input.login.trim().to_lowercase();
        if login.is_empty()
            || login.len() > LOGIN_MAX_LEN
            || input.password.len() > PRESENTED_PASSWORD_MAX_LEN
        {
            return Err(AppError::Unauthenticated(BAD_CREDENTIALS));
        }
        let credentials = self.ports.store.credentials_by_login(&login).await?;
        let user_id = credentials.as_ref().map(|found| found.user_id);
        let matches = self
            .passwords
            .verify(
                Password::presented(&input.password),
                credentials.map(|found| found.password_hash),
            )
            .await?;
        let Some(user_id) = user_id.filter(|_| matches) else {
            tracing::info!("login refused");
            return Err(AppError::Unauthenticated(BAD_CREDENTIALS));
        };
        let user = self.existing_user(user_id).await?;
        self.open_session(user).await
    }
}
