//! The cache port used for hydration (posts and authors by id).
//!
//! A cache may drop anything at any time; callers load misses from SQL and
//! put them back. Writers invalidate what they change.

use async_trait::async_trait;

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
