//! Credentials and tokens: argon2id password hashing, signed access tokens,
//! opaque rotating refresh tokens.

pub mod passwords;
pub mod refresh;
pub mod revoked;
pub mod scopes;
pub mod tokens;

pub use passwords::{PasswordHashing, PasswordParams};
pub use revoked::RevokedSessions;
pub use scopes::{Scope, Scopes};
pub use tokens::{AccessClaims, AccessTokens, TokenError, TokenIdentity};
