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

    async fn put_many(&self, entries: Vec<(K, V)>);

    async fn invalidate(&self, key: &K);
}
