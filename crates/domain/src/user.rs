//! Accounts: validated handles, emails, names and passwords, and the profile entity.

use std::fmt;

use crate::id::UserId;
use crate::time::Timestamp;
use crate::validation::{FieldError, field_error};

pub const HANDLE_MAX_LEN: usize = 30;
pub const DISPLAY_NAME_MAX_CHARS: usize = 50;
pub const BIO_MAX_CHARS: usize = 160;
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 128;
pub const EMAIL_MAX_LEN: usize = 254;

/// A public handle: 1–30 of `[A-Za-z0-9_]`. Keeps its spelling; unique ignoring case.
/// Serialised as its text (a shared cache holds only what was stored).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Handle(String);

impl Handle {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        if text.is_empty() || text.len() > HANDLE_MAX_LEN {
            return Err(field_error(
                "handle",
                format!("must be 1 to {HANDLE_MAX_LEN} characters long"),
            ));
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(field_error(
                "handle",
                "may contain only letters, digits and underscores",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// A handle read back from the store, which took it only through
    /// [`Handle::parse`]: not checked again on every read.
    pub fn stored(text: String) -> Self {
        Self(text)
    }

    /// The form uniqueness is checked on: handles differing only in case collide.
    pub fn canonical(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address, trimmed and lower-cased so that one mailbox has one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let candidate = text.trim().to_lowercase();
        let invalid = || field_error("email", "must be an email address such as ada@example.org");
        if candidate.len() > EMAIL_MAX_LEN || candidate.chars().any(char::is_whitespace) {
            return Err(invalid());
        }
        let Some((local, domain)) = candidate.split_once('@') else {
            return Err(invalid());
        };
        let domain_ok = !domain.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local.is_empty() || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(candidate))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: trimmed, at most 50 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let trimmed = text.trim();
        if trimmed.chars().count() > DISPLAY_NAME_MAX_CHARS {
            return Err(field_error(
                "display_name",
                format!("must be at most {DISPLAY_NAME_MAX_CHARS} characters long"),
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(field_error(
                "display_name",
                "must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name shown when none was given: the handle.
    pub fn from_handle(handle: &Handle) -> Self {
        Self(handle.as_str().to_owned())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A short biography: trimmed, at most 160 characters; line breaks allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bio(String);

impl Bio {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let text = crate::text::normalise_line_breaks(text);
        let trimmed = text.trim();
        if trimmed.chars().count() > BIO_MAX_CHARS {
            return Err(field_error(
                "bio",
                format!("must be at most {BIO_MAX_CHARS} characters long"),
            ));
        }
        if trimmed.chars().any(|c| c.is_control() && c != '\n') {
            return Err(field_error("bio", "must not contain control characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A plaintext password on its way to the hasher. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let length = text.chars().count();
        if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&length) {
            return Err(field_error(
                "password",
                format!("must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters long"),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// Wraps a password presented at login without judging it: a wrong password
    /// must fail like any other, not with a validation error that reveals rules.
    pub fn presented(text: &str) -> Self {
        Self(text.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// What an account may do besides using Starling: staff roles, in rising
/// order of power (`Ord` follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Role {
    #[default]
    User,
    /// Finds accounts, suspends and unsuspends users, removes posts, reads
    /// the audit log.
    Moderator,
    /// What a moderator does, on moderators too, and grants roles.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::User, Role::Moderator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }

    /// `user`, `moderator` or `admin`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// A role as stored: anything unknown (written by a newer release)
    /// counts as the least powerful.
    pub fn stored(text: &str) -> Self {
        Self::parse(text).unwrap_or_default()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an account stands with moderation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AccountStatus {
    #[default]
    Active,
    /// Cannot sign in; its posts and profile are hidden from everyone until
    /// it is unsuspended.
    Suspended,
    /// Its owner deleted it: gone for everyone while the deletion saga
    /// removes what it had.
    Deleting,
    /// Deleted: only a tombstone row is left.
    Deleted,
}

impl AccountStatus {
    pub const ALL: [AccountStatus; 4] = [
        AccountStatus::Active,
        AccountStatus::Suspended,
        AccountStatus::Deleting,
        AccountStatus::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Deleting => "deleting",
            AccountStatus::Deleted => "deleted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// A status as stored: anything but `active` keeps the account hidden
    /// (a newer release's status must not show what it hid).
    pub fn stored(text: &str) -> Self {
        Self::parse(text).unwrap_or(AccountStatus::Suspended)
    }

    /// Whether others may see the account and its posts.
    pub fn is_visible(self) -> bool {
        self == AccountStatus::Active
    }
}

/// A profile as everyone sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub handle: Handle,
    pub display_name: String,
    pub bio: String,
    pub created_at: Timestamp,
    pub followers_count: i64,
    pub following_count: i64,
    pub posts_count: i64,
    pub role: Role,
    pub status: AccountStatus,
}

impl User {
    pub fn summary(&self) -> UserSummary {
        UserSummary {
            id: self.id,
            handle: self.handle.clone(),
            display_name: self.display_name.clone(),
            hidden: !self.status.is_visible(),
        }
    }
}

/// What a post shows of its author. Serialisable for shared caches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserSummary {
    pub id: UserId,
    pub handle: Handle,
    pub display_name: String,
    /// The account is suspended: its posts are shown to nobody. (Absent in
    /// entries cached by releases before it: visible.)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            #[test]
            fn handles_are_accepted_exactly_by_their_pattern(text in "[A-Za-z0-9_@é. -]{0,34}|\\PC{0,40}") {
                let acceptable = (1..=HANDLE_MAX_LEN).contains(&text.len())
                    && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                prop_assert_eq!(Handle::parse(&text).is_ok(), acceptable);
                if let Ok(handle) = Handle::parse(&text) {
                    prop_assert_eq!(handle.canonical(), text.to_ascii_lowercase());
                }
            }

            #[test]
            fn emails_and_passwords_never_panic_and_stay_bounded(text in "\\PC{0,300}") {
                if let Ok(email) = Email::parse(&text) {
                    prop_assert!(email.as_str().len() <= EMAIL_MAX_LEN);
                }
                if Password::parse(&text).is_ok() {
                    prop_assert!(text.chars().count() <= PASSWORD_MAX_CHARS);
                }
            }
        }
    }

    #[test]
    fn handles_accept_letters_digits_underscores_up_to_thirty() {
        assert!(Handle::parse("ada_Lovelace_1815").is_ok());
        assert!(Handle::parse(&"a".repeat(30)).is_ok());
        for bad in ["", &"a".repeat(31), "ada lovelace", "ada-l", "adà", "@ada"] {
            assert!(Handle::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(Handle::parse("Ada").unwrap().canonical(), "ada");
    }

    #[test]
    fn emails_are_normalised_and_checked_for_shape() {
        assert_eq!(
            Email::parse(" Ada@Example.ORG ").unwrap().as_str(),
            "ada@example.org"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "a b@example.org",
            "a@b@c.org",
            "ada@.org",
            "ada@example..org",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn passwords_count_characters_not_bytes_and_never_print() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("ééééééééé").is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        let password = Password::parse("correct horse").unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }

    #[test]
    fn display_names_and_bios_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("  Ada  ").unwrap().into_string(), "Ada");
        assert!(DisplayName::parse(&"n".repeat(51)).is_err());
        assert!(DisplayName::parse("a\u{7}b").is_err());
        assert!(Bio::parse("line one\nline two").is_ok());
        assert_eq!(Bio::parse("a\r\nb").unwrap().into_string(), "a\nb");
        assert!(Bio::parse(&"b".repeat(161)).is_err());
    }
}
