//! The cache port in process memory: quick_cache (sharded, S3-FIFO eviction
//! bounded by entry count) with a time to live per entry, ±10% jittered so
//! that entries loaded together do not all expire in the same instant.
//!
//! moka was the first choice; profiling the feed-read benchmark put its
//! per-lookup bookkeeping at a fifth of a warm feed read's CPU (a page looks
//! up ~25 keys), against a few percent for quick_cache. Expiry is checked on
//! lookup, which is all a cache that may forget anything needs.

use std::hash::Hash;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use quick_cache::sync::GuardResult;
use starling_app::ports::Cache;

#[derive(Clone)]
struct Stamped<V> {
    value: V,
    expires: Instant,
}

pub struct MemoryCache<K, V> {
    inner: quick_cache::sync::Cache<K, Stamped<V>>,
    ttl: Duration,
    /// This cache's hit and miss counters, resolved once: looked up in the
    /// recorder's registry by name and label on every lookup, they were
    /// most of the 6% of a warm feed read's CPU that metrics took (a page
    /// makes several lookups, each counting twice).
    hits: metrics::Counter,
    misses: metrics::Counter,
}

impl<K, V> MemoryCache<K, V>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(name: &'static str, max_entries: u64, ttl: Duration) -> Self {
        Self {
            inner: quick_cache::sync::Cache::new(
                usize::try_from(max_entries).unwrap_or(usize::MAX).max(1),
            ),
            ttl,
            hits: metrics::counter!(starling_app::metric::CACHE_HITS_TOTAL, "cache" => name),
            misses: metrics::counter!(starling_app::metric::CACHE_MISSES_TOTAL, "cache" => name),
        }
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Forgets `key` (synchronously, for invalidations from elsewhere).
    pub fn remove(&self, key: &K) {
        self.inner.remove(key);
    }

    /// Forgets everything (after missing invalidations, say).
    pub fn clear(&self) {
        self.inner.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    fn stamp(&self, value: V, now: Instant) -> Stamped<V> {
        // A cheap per-entry jitter with no RNG on the hot path: the clock's nanoseconds.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let spread = (f64::from(nanos % 2001) / 10_000.0) - 0.1;
        Stamped {
            value,
            expires: now + self.ttl.mul_f64(1.0 + spread),
        }
    }
}

#[async_trait]
impl<K, V> Cache<K, V> for MemoryCache<K, V>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
    V: Clone + Send + Sync + 'static,
{
    async fn get_many(&self, keys: &[K]) -> Vec<Option<V>> {
        let now = Instant::now();
        let found: Vec<Option<V>> = keys
            .iter()
            .map(|key| match self.inner.get(key) {
                Some(entry) if entry.expires > now => Some(entry.value),
                Some(_) => {
                    self.inner.remove(key);
                    None
                }
                None => None,
            })
            .collect();
        let hits = found.iter().filter(|slot| slot.is_some()).count() as u64;
        self.hits.increment(hits);
        self.misses.increment(keys.len() as u64 - hits);
        found
    }

    async fn put_many(&self, entries: Vec<(K, V)>) {
        let now = Instant::now();
        for (key, value) in entries {
            self.inner.insert(key, self.stamp(value, now));
        }
    }

    async fn fill_many(&self, entries: Vec<(K, V)>) {
        let now = Instant::now();
        for (key, value) in entries {
            // The placeholder makes "insert only if absent" atomic: a writer's
            // insert in between removes it, and then this insert is refused.
            match self.inner.get_value_or_guard(&key, Some(Duration::ZERO)) {
                GuardResult::Guard(placeholder) => {
                    let _ = placeholder.insert(self.stamp(value, now));
                }
                GuardResult::Value(existing) if existing.expires <= now => {
                    self.inner.insert(key, self.stamp(value, now));
                }
                GuardResult::Value(_) | GuardResult::Timeout => {}
            }
        }
    }

    async fn invalidate(&self, key: &K) {
        self.inner.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_in_key_order_and_forgets_invalidated_keys() {
        let cache: MemoryCache<u32, &'static str> =
            MemoryCache::new("test", 100, Duration::from_secs(60));
        cache.put_many(vec![(1, "one"), (3, "three")]).await;
        assert_eq!(
            cache.get_many(&[3, 2, 1]).await,
            vec![Some("three"), None, Some("one")]
        );
        cache.invalidate(&3).await;
        assert_eq!(cache.get_many(&[3]).await, vec![None]);
    }

    #[tokio::test]
    async fn filling_never_replaces_what_a_writer_stored() {
        let cache: MemoryCache<u32, &'static str> =
            MemoryCache::new("test", 100, Duration::from_secs(60));
        cache.put_many(vec![(1, "tombstone")]).await;
        cache
            .fill_many(vec![(1, "stale live post"), (2, "loaded")])
            .await;
        assert_eq!(
            cache.get_many(&[1, 2]).await,
            vec![Some("tombstone"), Some("loaded")]
        );
    }

    #[tokio::test]
    async fn entries_expire_after_their_ttl_and_can_be_filled_again() {
        let cache: MemoryCache<u32, u32> = MemoryCache::new("test", 100, Duration::from_millis(50));
        cache.put_many(vec![(1, 1)]).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        cache.fill_many(vec![(1, 2)]).await;
        assert_eq!(cache.get_many(&[1]).await, vec![Some(2)]);
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(cache.get_many(&[1]).await, vec![None]);
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn capacity_bounds_the_entries() {
        let cache: MemoryCache<u32, u32> = MemoryCache::new("test", 100, Duration::from_secs(60));
        cache
            .put_many((0..1_000).map(|key| (key, key)).collect())
            .await;
        assert!(cache.len() <= 110, "{}", cache.len());
    }
}
