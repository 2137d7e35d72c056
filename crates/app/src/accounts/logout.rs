//! Logout: revoke the refresh-token family of the presented token.

use starling_domain::Timestamp;

use crate::App;
use crate::auth::refresh::token_hash;
use crate::error::AppResult;

impl App {
    /// Always succeeds for well-formed input, known token or not: logout must
    /// not reveal which tokens exist.
    #[tracing::instrument(skip_all)]
    pub async fn logout(&self, refresh_token: &str) -> AppResult<()> {
        if refresh_token.is_empty() || refresh_token.len() > 256 {
            return Ok(());
        }
        self.ports
            .store
            .revoke_refresh_family(&token_hash(refresh_token), Timestamp::now())
            .await?;
        Ok(())
    }
}
