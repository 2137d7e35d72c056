//! The cache port used for hydration (posts and authors by id).
//!
//! A cache may drop anything at any time; callers load misses from SQL and
//! put them back. Writers invalidate what they change.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// What a cache holds for a key whose absence is worth remembering too
/// (negative caching): the value, or the knowledge that there is none, so
/// a flood of lookups of what does not exist stays off the database.
///
/// Stored as the value itself or `null` (untagged), so a shared tier
/// written before this type existed still reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Cached<T> {
    Found(T),
    Missing,
}

#[async_trait]
pub trait Cache<K, V>: Send + Sync
where
    K: Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// One slot per key, in the order of `keys`.
    async fn get_many(&self, keys: &[K]) -> Vec<Option<V>>;

    /// Stores `entries`, replacing what is there: for writers, who know the
    /// value is current.
    async fn put_many(&self, entries: Vec<(K, V)>);

    /// Stores each entry only where the key is absent: for loaders, whose
    /// value was read before a concurrent writer may have stored a newer one
    /// (a delete's tombstone must not be overwritten by the live post a slow
    /// reader loaded just before it).
    async fn fill_many(&self, entries: Vec<(K, V)>);

    async fn invalidate(&self, key: &K);

    /// Invalidates each of `keys`; adapters that tell other processes do
    /// it in one message.
    async fn invalidate_many(&self, keys: &[K]) {
        for key in keys {
            self.invalidate(key).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_entry_is_null_and_a_found_one_its_value() {
        assert_eq!(
            serde_json::to_string(&Cached::<u32>::Missing).unwrap(),
            "null"
        );
        assert_eq!(serde_json::to_string(&Cached::Found(7)).unwrap(), "7");
        assert_eq!(
            serde_json::from_str::<Cached<u32>>("7").unwrap(),
            Cached::Found(7)
        );
        assert_eq!(
            serde_json::from_str::<Cached<u32>>("null").unwrap(),
            Cached::Missing
        );
    }
}
