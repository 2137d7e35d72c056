//! Sessions ended before their access tokens expire. An access token is
//! verified by its signature alone, so an ended session's tokens stay good
//! until they expire unless every instance refuses them: this is the set
//! it refuses, read on every verification (an empty set costs one atomic
//! load).
//!
//! An instance adds a session here the moment it ends one itself, and
//! learns of the others by polling the store for sessions revoked within
//! the last access-token lifetime (`Accounts::sync_revocations`): within
//! a poll interval in both modes, with no other engine involved. An entry
//! is dropped once every token its session could have had has expired.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Revoked session ids, each with when this instance learnt of it (Unix ms).
#[derive(Debug, Default)]
pub struct RevokedSessions {
    sessions: RwLock<HashMap<i64, i64>>,
    /// `false` while the set is empty: the common case reads no lock.
    any: AtomicBool,
}

impl RevokedSessions {
    pub fn contains(&self, session: i64) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        self.sessions
            .read()
            .map(|sessions| sessions.contains_key(&session))
            // A poisoned lock means a panic while adding: refuse rather
            // than let a revoked token through.
            .unwrap_or(true)
    }

    /// Adds `sessions`, learnt of at `now_ms`.
    pub fn add(&self, sessions: impl IntoIterator<Item = i64>, now_ms: i64) {
        let mut set = match self.sessions.write() {
            Ok(set) => set,
            Err(poisoned) => poisoned.into_inner(),
        };
        for session in sessions {
            set.entry(session).or_insert(now_ms);
        }
        self.any.store(!set.is_empty(), Ordering::Release);
    }

    /// Forgets the sessions learnt of before `before_ms`.
    pub fn forget_before(&self, before_ms: i64) {
        let mut set = match self.sessions.write() {
            Ok(set) => set,
            Err(poisoned) => poisoned.into_inner(),
        };
        set.retain(|_, learnt| *learnt >= before_ms);
        self.any.store(!set.is_empty(), Ordering::Release);
    }

    pub fn len(&self) -> usize {
        self.sessions.read().map_or(0, |set| set.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_it_was_told_until_forgotten() {
        let revoked = RevokedSessions::default();
        assert!(!revoked.contains(7));
        revoked.add([7, 8], 1_000);
        revoked.add([8, 9], 2_000);
        assert!(revoked.contains(7) && revoked.contains(8) && revoked.contains(9));
        assert!(!revoked.contains(10));
        // 8 keeps when it was first learnt of.
        revoked.forget_before(1_500);
        assert!(!revoked.contains(7) && !revoked.contains(8));
        assert!(revoked.contains(9));
        revoked.forget_before(3_000);
        assert!(revoked.is_empty());
        assert!(!revoked.contains(9));
    }
}
