//! What a credential may do. A session's access token may do everything its
//! account may; an API key only what it was given (`read`, `write`,
//! `follow`, `notifications`, `media`), chosen when it was made.

use std::fmt;

/// One permission a credential can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Read posts, profiles, timelines, lists.
    Read,
    /// Post, reply, like, delete, change the profile.
    Write,
    /// Follow, unfollow, block, mute.
    Follow,
    /// Read notifications and mark them read; the live stream.
    Notifications,
    /// Upload media.
    Media,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Read,
        Scope::Write,
        Scope::Follow,
        Scope::Notifications,
        Scope::Media,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Follow => "follow",
            Scope::Notifications => "notifications",
            Scope::Media => "media",
        }
    }

    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of scopes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    /// Everything: what a session's access token carries.
    pub const ALL: Scopes = Scopes(0b1_1111);

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_all(self) -> bool {
        self == Scopes::ALL
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .into_iter()
            .filter(move |scope| self.contains(*scope))
    }

    /// The scopes named, each at most once; `Err` names the first unknown.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Scopes, String> {
        let mut scopes = Scopes::default();
        for name in names {
            let scope = Scope::parse(name.trim()).ok_or_else(|| name.to_owned())?;
            scopes.0 |= scope.bit();
        }
        Ok(scopes)
    }

    /// Space-separated, in a fixed order (as stored, and as OAuth writes them).
    pub fn to_text(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Scopes(iter.into_iter().fold(0, |bits, scope| bits | scope.bit()))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({})", self.to_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_print_and_hold_what_they_name() {
        let scopes = Scopes::parse(["write", "read", "read"]).unwrap();
        assert!(scopes.contains(Scope::Read) && scopes.contains(Scope::Write));
        assert!(!scopes.contains(Scope::Follow));
        assert_eq!(scopes.to_text(), "read write");
        assert_eq!(Scopes::parse(scopes.to_text().split(' ')), Ok(scopes));
        assert_eq!(Scopes::parse(["read", "admin"]), Err("admin".to_owned()));
        assert!(Scopes::parse([]).unwrap().is_empty());
        let all: Scopes = Scope::ALL.into_iter().collect();
        assert_eq!(all, Scopes::ALL);
        assert!(all.is_all() && !scopes.is_all());
        assert_eq!(
            Scopes::ALL.to_text(),
            "read write follow notifications media"
        );
    }
}
