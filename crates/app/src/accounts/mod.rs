//! Accounts: registration, sessions (login, refresh, logout) and profiles.

mod login;
mod logout;
mod profile;
mod refresh;
mod register;
mod session;

pub use login::{LoginBackoff, LoginInput};
pub use profile::{ProfileChanges, UserRef};
pub use register::RegisterInput;
pub use session::Session;
pub(crate) use session::existing_user;
